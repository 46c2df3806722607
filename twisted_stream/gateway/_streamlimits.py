# -*- test-case-name: tests.test_streamlimits -*-
"""
How many streams the gateway carries at once: in all (C{--max-streams}) and
per client (C{--max-streams-per-client}; a client is its address, or its
bearer token where the gateway asks for one). Beyond either, a request is
answered C{503} with C{Retry-After} as soon as its head has come: at once,
never a queue that hangs.
"""

from __future__ import annotations

import hashlib
from typing import Optional

from twisted.web.http_headers import Headers

from twisted_stream.http._refusal import Refusal

__all__ = ["StreamLimits"]


class StreamLimits:
    """
    Counts the streams in flight, in all and per client, against limits.
    """

    def __init__(self, maxStreams: Optional[int] = None, maxPerClient: Optional[int] = None, byToken: bool = False) -> None:
        """
        @param maxStreams: The most streams at once (L{None}: no limit).
        @param maxPerClient: The most streams at once per client.
        @param byToken: Whether a client is its bearer token (with
            C{--require-token}) rather than its address.
        """
        self._max = maxStreams
        self._maxPerClient = maxPerClient
        self._byToken = byToken
        self.inFlight = 0
        self._perClient: dict[str, int] = {}
        self._full = (
            Refusal(503, f"the gateway carries {maxStreams} streams already; try again shortly", _RETRY)
            if maxStreams is not None
            else None
        )
        self._clientFull = (
            Refusal(503, f"this client has {maxPerClient} streams open already; try again shortly", _RETRY)
            if maxPerClient is not None
            else None
        )

    def clientOf(self, address: str, headers: Headers) -> str:
        """
        @param address: The client's address.
        @param headers: Its request's headers.
        @return: Who the client is, for the per-client limit (a token is
            kept only as a digest).
        """
        if self._byToken:
            given = headers.getRawHeaders(b"authorization", [b""])[-1]
            return "token:" + hashlib.sha256(given).hexdigest()[:16]
        return address

    def refusal(self, client: str) -> Optional[Refusal]:
        """
        @param client: Who asks (see L{clientOf}).
        @return: Why one more stream for C{client} is refused, or L{None}.
        """
        if self._max is not None and self.inFlight >= self._max:
            return self._full
        if self._maxPerClient is not None and self._perClient.get(client, 0) >= self._maxPerClient:
            return self._clientFull
        return None

    def started(self, client: str) -> None:
        """
        Count one more stream for C{client}.
        """
        self.inFlight += 1
        self._perClient[client] = self._perClient.get(client, 0) + 1

    def ended(self, client: str) -> None:
        """
        Count one stream of C{client}'s as ended.
        """
        self.inFlight -= 1
        left = self._perClient.get(client, 0) - 1
        if left > 0:
            self._perClient[client] = left
        else:
            self._perClient.pop(client, None)


_RETRY = ((b"Retry-After", b"1"),)
