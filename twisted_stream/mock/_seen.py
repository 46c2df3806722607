# -*- test-case-name: tests.test_seen -*-
"""
The requests the mock saw: C{GET /_mock/requests} lists the last 100 (their
method, target, headers and body), so that a test can assert what a client
sent, through a proxy or not; C{DELETE /_mock/requests} forgets them.

Credentials never leave the mock this way: the values of the headers that
carry them (C{Authorization}, C{X-Api-Key}, C{X-Goog-Api-Key}, ...) and of
a C{key} in the query string (Gemini's) are replaced by C{[removed]}. Each
body is kept up to 64 KiB (C{body_truncated} says when it was cut), so the
list holds a few megabytes at most, whatever clients send.
"""

from __future__ import annotations

import json
from collections import deque
from typing import Any
from urllib.parse import parse_qsl, urlencode

from twisted.internet.interfaces import IReactorTime
from twisted.web.server import Request

from twisted_stream.http._text import PlainResource

__all__ = ["MAX_BODY", "MAX_REQUESTS", "SeenRequests", "SeenRequestsResource"]

MAX_REQUESTS = 100
"""How many requests are kept: the last ones."""

MAX_BODY = 64 * 1024
"""The most bytes of one request's body kept."""

REMOVED = "[removed]"

_CREDENTIALS = frozenset(
    {b"authorization", b"proxy-authorization", b"x-api-key", b"api-key", b"x-goog-api-key", b"cookie"}
)


class SeenRequests:
    """
    The last L{MAX_REQUESTS} requests, as a test reads them back.
    """

    def __init__(self, clock: IReactorTime) -> None:
        self._clock = clock
        self._seen: deque[dict[str, Any]] = deque(maxlen=MAX_REQUESTS)

    def note(self, request: Request) -> None:
        """
        Keep what C{request} holds (its body has arrived: twisted.web reads
        it whole before the resource is looked up).
        """
        content = request.content
        body = b""
        if content is not None:
            content.seek(0)
            body = content.read(MAX_BODY + 1)
            content.seek(0)
        path, _, query = request.uri.decode("latin-1").partition("?")
        if query:
            pairs = parse_qsl(query, keep_blank_values=True)
            path += "?" + urlencode([(name, REMOVED if name == "key" else value) for name, value in pairs])
        self._seen.append(
            {
                "time": self._clock.seconds(),
                "method": request.method.decode("latin-1"),
                "path": path,
                "headers": [
                    [name.decode("latin-1"), REMOVED if name.lower() in _CREDENTIALS else value.decode("latin-1")]
                    for name, values in request.requestHeaders.getAllRawHeaders()
                    for value in values
                ],
                "body": body[:MAX_BODY].decode("utf-8", "replace"),
                "body_truncated": len(body) > MAX_BODY,
            }
        )

    def listed(self) -> list[dict[str, Any]]:
        """
        @return: What was kept, oldest first.
        """
        return list(self._seen)

    def clear(self) -> int:
        """
        Forget them all.

        @return: How many there were.
        """
        count = len(self._seen)
        self._seen.clear()
        return count


class SeenRequestsResource(PlainResource):
    """
    C{/_mock/requests}: C{GET} lists them as JSON (C{{"requests": [...]}}),
    C{DELETE} forgets them (C{204}).
    """

    isLeaf = True

    def __init__(self, seen: SeenRequests) -> None:
        super().__init__()
        self._seen = seen

    def render_GET(self, request: Request) -> bytes:
        request.setHeader(b"Content-Type", b"application/json")
        return json.dumps({"requests": self._seen.listed()}).encode("utf-8")

    def render_DELETE(self, request: Request) -> bytes:
        self._seen.clear()
        request.setResponseCode(204)
        request.defaultContentType = None
        return b""
