"""
Tests for L{twisted_stream.upstream._retry}: the deadline and the retry rule, on a
fake clock with an agent the test answers. (What a client sees of them is
tested through L{StreamProxyResource} in C{tests.test_proxy}.)
"""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import CancelledError, Deferred, fail
from twisted.internet.error import ConnectingCancelledError, ConnectionLost, ConnectionRefusedError
from twisted.internet.task import Clock
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.client import RequestNotSent, ResponseNeverReceived
from twisted.web.iweb import IResponse

from tests.support import FakeAgent
from twisted_stream.upstream._retry import DeadlineAgent, NoResponseInTime
from twisted_stream.upstream._wire import ReusedConnectionLost

_SOME_BODY: Any = object()
"""A request body, which the retry rule only checks for."""


class DeadlineAgentTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()

    def agent(self, inner: FakeAgent, deadline: float = 10, retries: int = 2) -> DeadlineAgent:
        return DeadlineAgent(inner, self.clock, deadline, retries)

    def test_response(self) -> None:
        """
        The response of an attempt in time is the answer, and the deadline
        is off the clock.
        """
        response: Any = object()
        attempt: Deferred[IResponse] = Deferred()
        d = self.agent(FakeAgent(attempt)).request(b"GET", b"http://u/")
        self.assertNoResult(d)
        attempt.callback(response)
        self.assertIs(self.successResultOf(d), response)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_retriesWhatWasNotSent(self) -> None:
        """
        Refused connections and requests the agent says it did not send are
        tried again, later each time; then the answer is the last failure.
        """
        inner = FakeAgent(fail(ConnectionRefusedError()), fail(RequestNotSent()), fail(ConnectionRefusedError()))
        d = self.agent(inner).request(b"POST", b"http://u/")
        self.assertEqual(len(inner.requests), 1)
        self.clock.advance(0.1)
        self.assertEqual(len(inner.requests), 2)
        self.clock.advance(0.2)
        self.assertEqual(len(inner.requests), 3)
        self.failureResultOf(d, ConnectionRefusedError)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_neverWhatMayHaveBeenSent(self) -> None:
        inner = FakeAgent(fail(ResponseNeverReceived([Failure(ConnectionLost())])))
        d = self.agent(inner).request(b"POST", b"http://u/")
        self.failureResultOf(d, ResponseNeverReceived)
        self.assertEqual(len(inner.requests), 1)

    def test_safeRequestOnAReusedConnection(self) -> None:
        """
        A reused connection that ended before any answer: a GET, HEAD or
        OPTIONS without a body is sent again (on another connection); a
        POST, a DELETE or a GET with a body never is.
        """
        for method, body, attempts in (
            (b"GET", None, 2),
            (b"HEAD", None, 2),
            (b"OPTIONS", None, 2),
            (b"POST", None, 1),
            (b"DELETE", None, 1),
            (b"GET", _SOME_BODY, 1),
        ):
            inner = FakeAgent(fail(ReusedConnectionLost([Failure(ConnectionLost())])), Deferred())
            d = self.agent(inner).request(method, b"http://u/", None, body)
            self.clock.advance(0.1)
            self.assertEqual(len(inner.requests), attempts, method)
            self.clock.advance(10)
            # Sent again: out of time waiting for the second answer; else the
            # first failure.
            self.failureResultOf(d, NoResponseInTime if attempts == 2 else ReusedConnectionLost)

    def test_deadlineWhileConnected(self) -> None:
        inner = FakeAgent(Deferred())
        d = self.agent(inner, deadline=2).request(b"GET", b"http://u/")
        self.clock.advance(1.9)
        self.assertNoResult(d)
        self.clock.advance(0.1)
        self.failureResultOf(d, NoResponseInTime)

    def test_deadlineWhileConnecting(self) -> None:
        connecting: Deferred[IResponse] = Deferred(lambda d: d.errback(ConnectingCancelledError(None)))
        d = self.agent(FakeAgent(connecting), deadline=2).request(b"GET", b"http://u/")
        self.clock.advance(2)
        self.failureResultOf(d, ConnectingCancelledError)

    def test_cancelBetweenAttempts(self) -> None:
        """
        A caller that leaves while a retry waits: no further attempt, and
        nothing left on the clock.
        """
        inner = FakeAgent(fail(ConnectionRefusedError()), Deferred())
        d = self.agent(inner).request(b"GET", b"http://u/")
        d.cancel()
        self.failureResultOf(d, CancelledError)
        self.clock.advance(5)
        self.assertEqual(len(inner.requests), 1)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_cancelInFlight(self) -> None:
        cancelled: list[bool] = []
        inner = FakeAgent(Deferred(lambda d: cancelled.append(True)))
        d = self.agent(inner).request(b"GET", b"http://u/")
        d.cancel()
        self.failureResultOf(d, CancelledError)
        self.assertEqual(cancelled, [True])
        self.assertEqual(self.clock.getDelayedCalls(), [])
