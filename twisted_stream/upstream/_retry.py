# -*- test-case-name: tests.test_retry,tests.test_proxy -*-
"""
L{DeadlineAgent}: an agent wrapper that gives a request a deadline for its
response's head, and tries again a request that failed where sending it
again is safe.

This is the gateway's whole retry rule, in one place. A request is sent
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

from typing import Any, Optional

from twisted.internet.defer import Deferred
from twisted.internet.error import ConnectError, ConnectingCancelledError, DNSLookupError
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.client import RequestNotSent
from twisted.web.http_headers import Headers
from twisted.web.iweb import IAgent, IBodyProducer, IResponse
from zope.interface import implementer

from twisted_stream.upstream._wire import ReusedConnectionLost

__all__ = ["SAFE", "DeadlineAgent", "NoResponseInTime", "retriable"]


class NoResponseInTime(Exception):
    """
    Connected, but the upstream sent no response head before the deadline.
    """


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


@implementer(IAgent)
class DeadlineAgent:
    """
    Gives each request C{deadline} seconds to get its response's head, and
    tries again, after 0.1 s, 0.2 s, ..., up to C{retries} times, a request
    that failed in a way L{retriable} allows, while time remains.

    The Deferred it returns fails, when time runs out, with
    L{NoResponseInTime} if the attempt had connected, with
    L{ConnectingCancelledError} if it was still connecting, and with the
    last attempt's failure if time ran out while waiting to try again.
    Cancelling it cancels the attempt in flight, or the one to come.
    """

    log = Logger()

    def __init__(self, agent: IAgent, clock: IReactorTime, deadline: float, retries: int) -> None:
        self._agent = agent
        self._clock = clock
        self.deadline = deadline
        self.retries = retries

    def request(
        self,
        method: bytes,
        uri: bytes,
        headers: Optional[Headers] = None,
        bodyProducer: Optional[IBodyProducer] = None,
    ) -> Deferred[IResponse]:
        return _Attempts(self, method, uri, headers, bodyProducer).result


class _Attempts:
    """
    The attempts at one request, until one gets a response's head, or the
    time or the retries run out, or the caller cancels.
    """

    def __init__(
        self,
        policy: DeadlineAgent,
        method: bytes,
        uri: bytes,
        headers: Optional[Headers],
        bodyProducer: Optional[IBodyProducer],
    ) -> None:
        self._policy = policy
        self._request: tuple[bytes, bytes, Optional[Headers], Optional[IBodyProducer]] = (
            method,
            uri,
            headers,
            bodyProducer,
        )
        self._made = 0
        self._pending: Optional[Deferred[IResponse]] = None
        self._retry: Optional[IDelayedCall] = None
        self._lastFailure: Optional[Failure] = None
        self._outOfTime = False
        self._cancelled = False
        self.result: Deferred[IResponse] = Deferred(self._cancel)
        self._deadline: Optional[IDelayedCall] = policy._clock.callLater(policy.deadline, self._timeIsUp)
        self._attempt()

    def _attempt(self) -> None:
        self._retry = None
        self._made += 1
        pending = self._policy._agent.request(*self._request)
        self._pending = pending
        pending.addCallbacks(self._succeeded, self._failed)

    def _succeeded(self, response: IResponse) -> None:
        self._pending = None
        self._stopDeadline()
        if not self._cancelled:
            self.result.callback(response)

    def _failed(self, failure: Failure) -> None:
        self._pending = None
        if self._cancelled:
            # The caller has gone: there is no one left to tell.
            return
        policy = self._policy
        method, uri, _, body = self._request
        if retriable(failure, method, body is None) and self._made <= policy.retries and self._deadline is not None:
            policy.log.info(
                "{method} {url}: attempt {attempt} failed ({failure.value!r}) before any answer; trying again",
                method=method.decode("ascii"),
                url=uri.split(b"?", 1)[0].decode("ascii", "replace"),
                attempt=self._made,
                failure=failure,
            )
            self._lastFailure = failure
            self._retry = policy._clock.callLater(0.1 * self._made, self._attempt)
            return
        self._stopDeadline()
        if self._outOfTime and not failure.check(ConnectingCancelledError):
            failure = Failure(NoResponseInTime())
        self.result.errback(failure)

    def _timeIsUp(self) -> None:
        self._deadline = None
        self._outOfTime = True
        if self._pending is not None:
            self._pending.cancel()
        elif self._retry is not None and self._lastFailure is not None:
            # Out of time between attempts: the caller hears why the last
            # attempt failed (it never connected, so no NoResponseInTime).
            self._retry.cancel()
            self._retry = None
            self.result.errback(self._lastFailure)

    def _stopDeadline(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _cancel(self, result: Deferred[Any]) -> None:
        # Deferred.cancel fails the result with CancelledError once this
        # returns.
        self._cancelled = True
        self._stopDeadline()
        if self._retry is not None:
            self._retry.cancel()
            self._retry = None
        if self._pending is not None:
            self._pending.cancel()
