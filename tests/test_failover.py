"""
Tests for L{twisted_stream.upstream._failover} (and the rule of
L{twisted_stream.upstream._retry} it asks): the deadline, the retry rule
and failover over a pool, on a fake clock with an agent the test answers.
(What a client sees of them is tested through L{StreamProxyResource} in
C{tests.test_proxy}, and on real processes in C{tests.test_pools_e2e}.)
"""

from __future__ import annotations

from random import Random
from typing import Any

from twisted.internet.defer import CancelledError, Deferred, fail, succeed
from twisted.internet.error import ConnectingCancelledError, ConnectionLost, ConnectionRefusedError
from twisted.internet.task import Clock
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.client import RequestNotSent, ResponseNeverReceived
from twisted.web.http_headers import Headers
from twisted.web.iweb import IResponse

from tests.support import FakeAgent, FakeResponse
from twisted_stream.upstream._failover import Failover, PoolFull, Served, joinURL, retryAfter
from twisted_stream.upstream._pool import DEFAULT_POLICY, Member, Pool, PoolPolicy
from twisted_stream.upstream._retry import NoResponseInTime
from twisted_stream.upstream._wire import ReusedConnectionLost

_SOME_BODY: Any = object()
"""A request body, which the retry rule only checks for."""


class _Requests:
    """
    A one-member route's requests, asked as an agent would be.
    """

    def __init__(self, failover: Failover) -> None:
        self.failover = failover

    def request(self, method: bytes, uri: bytes, headers: Any = None, body: Any = None) -> Deferred[Any]:
        served = self.failover.request(method, b"", b"", headers or Headers(), body)
        return served.addCallback(lambda answer: answer.response)


class OneUpstreamTests(SynchronousTestCase):
    """
    A route with one upstream: the deadline and the retry rule.
    """

    def setUp(self) -> None:
        self.clock = Clock()

    def agent(self, inner: FakeAgent, deadline: float = 10, retries: int = 2) -> _Requests:
        pool = Pool([Member(b"http://u/")], clock=self.clock)
        return _Requests(Failover(inner, self.clock, pool, deadline, retries))

    def test_response(self) -> None:
        """
        The response of an attempt in time is the answer, and the deadline
        is off the clock.
        """
        response = FakeResponse()
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


def _answer(code: int, **headers: str) -> Deferred[IResponse]:
    return succeed(FakeResponse(code, {name.replace("_", "-").encode(): value.encode() for name, value in headers.items()}))


class PoolFailoverTests(SynchronousTestCase):
    """
    A route with a pool: each attempt on a member not yet tried, the
    answers that send a request on, and the ones that never do.
    """

    def setUp(self) -> None:
        self.clock = Clock()

    def failover(
        self, inner: FakeAgent, members: int = 3, policy: PoolPolicy = DEFAULT_POLICY, retries: int = 1, **kw: Any
    ) -> Failover:
        self.pool = Pool(
            [Member(b"http://m%d/v1/" % (n,), **kw) for n in range(members)], policy, self.clock, chance=Random(1)
        )
        return Failover(inner, self.clock, self.pool, 10, retries)

    def members(self, inner: FakeAgent) -> list[bytes]:
        return [uri.split(b"/")[2] for _, uri in inner.requests]

    def test_statusFailsOverToAnUntriedMember(self) -> None:
        """
        A 429 and then a 503 go on to the third member, whose answer is the
        request's; the two put aside are closed; each member's slot is free
        once the stream is done.
        """
        first, second = FakeResponse(429), FakeResponse(503)
        inner = FakeAgent(succeed(first), succeed(second), _answer(200))
        d = self.failover(inner).request(b"POST", b"/chat", b"", Headers(), _SOME_BODY)
        served: Served = self.successResultOf(d)
        self.assertEqual(served.response.code, 200)
        self.assertEqual((served.tries, served.failovers), (3, 2))
        self.assertEqual(len(set(self.members(inner))), 3)
        self.assertTrue(first.stopped and second.stopped)
        self.assertEqual(sorted(state.open for state in self.pool.members), [0, 0, 1])
        served.done()
        served.done()
        self.assertEqual([state.open for state in self.pool.members], [0, 0, 0])
        self.assertEqual(self.pool.active, 0)

    def test_lastAnswerAsItCame(self) -> None:
        """
        When every member answered "not now", the client gets the last
        answer, its Retry-After with it, not a 502.
        """
        inner = FakeAgent(_answer(429), _answer(503), _answer(429, retry_after="7"))
        served = self.successResultOf(self.failover(inner).request(b"POST", b"/c", b"", Headers(), _SOME_BODY))
        self.assertEqual(served.response.code, 429)
        self.assertEqual(served.response.headers.getRawHeaders(b"retry-after"), [b"7"])
        self.assertEqual(served.tries, 3)

    def test_triesBounded(self) -> None:
        """
        No more attempts than the pool's tries, whatever its size.
        """
        inner = FakeAgent(*[_answer(503) for _ in range(6)])
        served = self.successResultOf(
            self.failover(inner, members=6, policy=PoolPolicy(tries=4)).request(b"GET", b"/", b"", Headers(), None)
        )
        self.assertEqual(len(inner.requests), 4)
        self.assertEqual(len(set(self.members(inner))), 4)
        self.assertEqual(served.response.code, 503)

    def test_otherStatusesAreAnswers(self) -> None:
        """
        A 500, a 400 or a 404 is the member's answer: never sent elsewhere.
        """
        for code in (500, 400, 404, 200):
            inner = FakeAgent(_answer(code))
            served = self.successResultOf(self.failover(inner).request(b"POST", b"/", b"", Headers(), _SOME_BODY))
            self.assertEqual((served.response.code, len(inner.requests)), (code, 1))

    def test_refusedGoesToAnotherMemberAtOnce(self) -> None:
        """
        A refused connection goes on to another member with no wait.
        """
        inner = FakeAgent(fail(ConnectionRefusedError()), _answer(200))
        served = self.successResultOf(self.failover(inner).request(b"POST", b"/", b"", Headers(), _SOME_BODY))
        self.assertEqual(len(set(self.members(inner))), 2)
        self.assertEqual(served.failovers, 1)

    def test_neverWhatMayHaveBeenProcessed(self) -> None:
        """
        A POST whose connection was lost after it went out is not sent to
        another member either.
        """
        inner = FakeAgent(fail(ResponseNeverReceived([Failure(ConnectionLost())])), _answer(200))
        d = self.failover(inner).request(b"POST", b"/", b"", Headers(), _SOME_BODY)
        self.failureResultOf(d, ResponseNeverReceived)
        self.assertEqual(len(inner.requests), 1)
        self.assertEqual(self.pool.active, 0)
        self.assertEqual([state.open for state in self.pool.members], [0, 0, 0])

    def test_tryTimeout(self) -> None:
        """
        An attempt still connecting when its try-timeout runs out goes on
        to another member; one connected and waiting for its head does not
        (it may have been processed): the request fails with the try's time.
        """
        connecting: Deferred[IResponse] = Deferred(lambda d: d.errback(ConnectingCancelledError(None)))
        inner = FakeAgent(connecting, _answer(200))
        failover = self.failover(inner, members=2)
        failover.tryTimeout = 1
        d = failover.request(b"POST", b"/", b"", Headers(), _SOME_BODY)
        self.clock.advance(1)
        self.assertEqual(self.successResultOf(d).failovers, 1)
        self.assertEqual(len(set(self.members(inner))), 2)
        waiting: Deferred[IResponse] = Deferred()
        inner = FakeAgent(waiting, _answer(200))
        failover = self.failover(inner, members=2)
        failover.tryTimeout = 1
        d = failover.request(b"POST", b"/", b"", Headers(), _SOME_BODY)
        self.clock.advance(1)
        self.assertEqual(self.failureResultOf(d, NoResponseInTime).value.seconds, 1)
        self.assertEqual(len(inner.requests), 1)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_lostOnAReusedConnectionCounts(self) -> None:
        """
        A POST lost on a reused connection is not sent again, and counts as
        its member's failure: a member that resets every request is
        ejected however its connections came (seen: its health check's
        connection, kept alive, took the next request).
        """
        inner = FakeAgent(*[fail(ReusedConnectionLost([Failure(ConnectionLost())])) for _ in range(4)])
        failover = self.failover(inner, members=2, policy=PoolPolicy(ejectAfter=2))
        for _ in range(4):
            self.failureResultOf(failover.request(b"POST", b"/", b"", Headers(), _SOME_BODY), ReusedConnectionLost)
        self.assertEqual(len(inner.requests), 4)
        self.assertEqual([why for _, why in self.pool.out()], ["ejected"])

    def test_eachMembersHeadersAndURL(self) -> None:
        """
        Each member's URL takes the rest of the path and the query; its own
        headers go over the route's on a copy.
        """
        seen: list[Any] = []

        class Agent(FakeAgent):
            def request(self, method: bytes, uri: bytes, headers: Any = None, body: Any = None) -> Any:
                seen.append((uri, headers.getRawHeaders(b"authorization"), headers.getRawHeaders(b"x-route")))
                return super().request(method, uri, headers, body)

        self.pool = Pool(
            [
                Member(b"http://a/v1/?key=1", injectHeaders=((b"Authorization", b"Bearer a"),)),
                Member(b"http://b/base", injectHeaders=((b"Authorization", b"Bearer b"),)),
            ],
            clock=self.clock,
            chance=Random(3),
        )
        routeHeaders = Headers({b"authorization": [b"Bearer route"], b"x-route": [b"r"]})
        Failover(Agent(_answer(503), _answer(200)), self.clock, self.pool, 10, 0).request(
            b"GET", b"/chat", b"q=1", routeHeaders, None
        )
        self.assertEqual(
            sorted(seen),
            [
                (b"http://a/v1/chat?key=1&q=1", [b"Bearer a"], [b"r"]),
                (b"http://b/base/chat?q=1", [b"Bearer b"], [b"r"]),
            ],
        )
        self.assertEqual(routeHeaders.getRawHeaders(b"authorization"), [b"Bearer route"])

    def test_retryAfterCoolsDown(self) -> None:
        """
        A 429 with Retry-After puts its member aside for that long; a 429 is
        not a failure, a 503 is.
        """
        inner = FakeAgent(_answer(429, retry_after="2"), _answer(200))
        self.successResultOf(self.failover(inner, members=2).request(b"GET", b"/", b"", Headers(), None))
        cooling = [state for state in self.pool.members if state.coolingUntil]
        self.assertEqual(len(cooling), 1)
        self.assertEqual(cooling[0].coolingUntil, 2)
        self.assertEqual(cooling[0].failures, 0)
        self.assertEqual(self.pool.out(), [(cooling[0], "cooling down")])
        self.clock.advance(2)
        self.assertEqual(self.pool.out(), [])

    def test_allAtTheirCaps(self) -> None:
        """
        Every member at its cap: the request fails with PoolFull, holding
        nothing.
        """
        failover = self.failover(FakeAgent(Deferred()), members=2, maxStreams=1)
        failover.request(b"GET", b"/", b"", Headers(), None)
        failover.request(b"GET", b"/", b"", Headers(), None)
        self.failureResultOf(failover.request(b"GET", b"/", b"", Headers(), None), PoolFull)
        self.assertEqual(self.pool.active, 2)

    def test_retryBudget(self) -> None:
        """
        Failover attempts in flight stay within 20 % of the active requests
        plus 3: past it, the first member's answer is the client's.
        """
        pending: list[Deferred[IResponse]] = []

        class Agent(FakeAgent):
            def request(self, method: bytes, uri: bytes, headers: Any = None, body: Any = None) -> Any:
                self.requests.append((method, uri))
                if uri.startswith(b"http://m0/"):
                    return _answer(503)
                d: Deferred[IResponse] = Deferred()
                pending.append(d)
                return d

        inner = Agent()
        failover = self.failover(inner, members=2, policy=PoolPolicy(ejectAfter=1000))
        # Requests that find m0 first get its 503 and go on to m1, where
        # nothing answers: their failover attempts stay in flight.
        answers = [failover.request(b"GET", b"/", b"", Headers(), None) for _ in range(40)]
        straight = [d for d in answers if d.called]
        wentOn = len([uri for _, uri in inner.requests if uri.startswith(b"http://m0/")]) - len(straight)
        self.assertEqual(self.pool.retrying, wentOn)
        self.assertLessEqual(self.pool.retrying, 0.2 * self.pool.active + 3)
        self.assertGreater(wentOn, 0)
        # Without the budget, every one would have gone on.
        self.assertGreater(len(straight), 0)
        for d in straight:
            self.assertEqual(self.successResultOf(d).response.code, 503)


class HelpersTests(SynchronousTestCase):
    def test_joinURL(self) -> None:
        for base, rest, query, expected in (
            (b"http://u/v1/", b"/chat", b"", b"http://u/v1/chat"),
            (b"http://u/v1", b"/chat", b"", b"http://u/v1/chat"),
            (b"http://u/v1", b"chat", b"a=1", b"http://u/v1/chat?a=1"),
            (b"http://u/v1/?key=k", b"", b"a=1", b"http://u/v1/?key=k&a=1"),
        ):
            self.assertEqual(joinURL(base, rest, query), expected)

    def test_retryAfter(self) -> None:
        self.assertEqual(retryAfter(FakeResponse(429, {b"retry-after": b"3"}), 0), 3)
        self.assertEqual(retryAfter(FakeResponse(429, {b"retry-after": b"Thu, 01 Jan 1970 00:00:10 GMT"}), 4), 6)
        self.assertIsNone(retryAfter(FakeResponse(429, {b"retry-after": b"soon"}), 0))
        self.assertIsNone(retryAfter(FakeResponse(429), 0))
