# -*- test-case-name: tests.test_retry,tests.test_proxy -*-
"""
L{retriable}: whether a request that failed may be sent again, the
gateway's whole rule for it, in one place (the attempts themselves are
L{twisted_stream.upstream._failover}'s). A request is sent
again when it failed before anything was sent (no connection could be made,
or the agent says it sent nothing), and a safe request without a body
(C{GET}, C{HEAD}, C{OPTIONS}: RFC 9110, section 9.2.1) whose kept-alive
connection ended before any byte of the answer (most likely closed as idle
by the upstream as the request went out; Go's HTTP client sends those again
too). Any other request that may have reached an upstream (a POST to an
LLM, a DELETE) never is. The agent underneath must not retry on its own
(L{UpstreamAgent} does not; Twisted's pool would).
"""

from __future__ import annotations

from typing import Optional

from twisted.internet.error import ConnectError, ConnectingCancelledError, DNSLookupError
from twisted.python.failure import Failure
from twisted.web.client import RequestNotSent

from twisted_stream.upstream._wire import ReusedConnectionLost

__all__ = ["SAFE", "NoResponseInTime", "retriable"]


class NoResponseInTime(Exception):
    """
    Connected, but the upstream sent no response head before the deadline.

    @ivar seconds: The time it had (one attempt's, or the whole request's),
        where known.
    """

    def __init__(self, seconds: Optional[float] = None) -> None:
        super().__init__(seconds)
        self.seconds = seconds


SAFE = frozenset({b"GET", b"HEAD", b"OPTIONS"})
"""The safe methods (RFC 9110, section 9.2.1) the gateway forwards: sent
again after a reused connection's end (a DELETE, idempotent but not safe,
is not: a second one may answer 404 for what the first did)."""


def retriable(failure: Failure, method: bytes = b"POST", bodyless: bool = False) -> bool:
    """
    @param failure: Why the request failed.
    @param method: Its method (by default one that is not safe).
    @param bodyless: Whether it has no body (by default, as if it had one).
    @return: Whether it may be sent again: no connection was made, or the
        agent says it sent nothing, or a safe request without a body met
        the end of a reused connection before any answer.
    """
    if failure.check(ConnectingCancelledError):
        return False
    if failure.check(ConnectError, DNSLookupError, RequestNotSent):
        return True
    return bodyless and method in SAFE and bool(failure.check(ReusedConnectionLost))
