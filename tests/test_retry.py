"""
Tests for L{twisted_stream._retry}: the deadline and the retry rule, on a
fake clock with an agent the test answers. (What a client sees of them is
tested through L{StreamProxyResource} in C{tests.test_proxy}.)
"""

from __future__ import annotations

from typing import Any, Optional

from twisted.internet.defer import CancelledError, Deferred, fail
from twisted.internet.error import ConnectingCancelledError, ConnectionLost, ConnectionRefusedError
from twisted.internet.task import Clock
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.client import RequestNotSent, ResponseNeverReceived
from twisted.web.http_headers import Headers
from twisted.web.iweb import IAgent, IBodyProducer, IResponse
from zope.interface import implementer

from twisted_stream._retry import DeadlineAgent, NoResponseInTime


@implementer(IAgent)
class _Agent:
    """
    Answers each request with the next Deferred it was given, counting the
    requests.
    """

    def __init__(self, *results: Deferred[IResponse]) -> None:
        self.results = list(results)
        self.requests = 0

    def request(
        self,
        method: bytes,
        uri: bytes,
        headers: Optional[Headers] = None,
        bodyProducer: Optional[IBodyProducer] = None,
    ) -> Deferred[IResponse]:
        self.requests += 1
        return self.results.pop(0)


class DeadlineAgentTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()

    def agent(self, inner: _Agent, deadline: float = 10, retries: int = 2) -> DeadlineAgent:
        return DeadlineAgent(inner, self.clock, deadline, retries)

    def test_response(self) -> None:
        """
        The response of an attempt in time is the answer, and the deadline
        is off the clock.
        """
        response: Any = object()
        attempt: Deferred[IResponse] = Deferred()
        d = self.agent(_Agent(attempt)).request(b"GET", b"http://u/")
        self.assertNoResult(d)
        attempt.callback(response)
        self.assertIs(self.successResultOf(d), response)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_retriesWhatWasNotSent(self) -> None:
        """
        Refused connections and requests the agent says it did not send are
        tried again, later each time; then the answer is the last failure.
        """
        inner = _Agent(fail(ConnectionRefusedError()), fail(RequestNotSent()), fail(ConnectionRefusedError()))
        d = self.agent(inner).request(b"POST", b"http://u/")
        self.assertEqual(inner.requests, 1)
        self.clock.advance(0.1)
        self.assertEqual(inner.requests, 2)
        self.clock.advance(0.2)
        self.assertEqual(inner.requests, 3)
        self.failureResultOf(d, ConnectionRefusedError)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_neverWhatMayHaveBeenSent(self) -> None:
        inner = _Agent(fail(ResponseNeverReceived([Failure(ConnectionLost())])))
        d = self.agent(inner).request(b"POST", b"http://u/")
        self.failureResultOf(d, ResponseNeverReceived)
        self.assertEqual(inner.requests, 1)

    def test_deadlineWhileConnected(self) -> None:
        inner = _Agent(Deferred())
        d = self.agent(inner, deadline=2).request(b"GET", b"http://u/")
        self.clock.advance(1.9)
        self.assertNoResult(d)
        self.clock.advance(0.1)
        self.failureResultOf(d, NoResponseInTime)

    def test_deadlineWhileConnecting(self) -> None:
        connecting: Deferred[IResponse] = Deferred(lambda d: d.errback(ConnectingCancelledError(None)))
        d = self.agent(_Agent(connecting), deadline=2).request(b"GET", b"http://u/")
        self.clock.advance(2)
        self.failureResultOf(d, ConnectingCancelledError)

    def test_cancelBetweenAttempts(self) -> None:
        """
        A caller that leaves while a retry waits: no further attempt, and
        nothing left on the clock.
        """
        inner = _Agent(fail(ConnectionRefusedError()), Deferred())
        d = self.agent(inner).request(b"GET", b"http://u/")
        d.cancel()
        self.failureResultOf(d, CancelledError)
        self.clock.advance(5)
        self.assertEqual(inner.requests, 1)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_cancelInFlight(self) -> None:
        cancelled: list[bool] = []
        inner = _Agent(Deferred(lambda d: cancelled.append(True)))
        d = self.agent(inner).request(b"GET", b"http://u/")
        d.cancel()
        self.failureResultOf(d, CancelledError)
        self.assertEqual(cancelled, [True])
        self.assertEqual(self.clock.getDelayedCalls(), [])
