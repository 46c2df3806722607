"""
Tests for L{twisted_stream.upstream._health}: active health checks of a
pool's members, on a fake clock with an agent the test answers.
"""

from __future__ import annotations

from random import Random
from typing import Any

from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.error import ConnectionRefusedError
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.iweb import IAgent, IResponse
from zope.interface import implementer

from tests.support import FakeResponse
from twisted_stream.upstream._failover import onOrigin
from twisted_stream.upstream._health import HealthCheck, HealthChecker
from twisted_stream.upstream._pool import Member, Pool


@implementer(IAgent)
class _Agent:
    """
    Answers each probe as the test's table says for its URL.
    """

    def __init__(self, answers: dict[bytes, Any]) -> None:
        self.answers = answers
        self.asked: list[bytes] = []

    def request(self, method: bytes, uri: bytes, headers: Any = None, body: Any = None) -> Deferred[IResponse]:
        self.asked.append(uri)
        answer = self.answers[uri]
        if isinstance(answer, int):
            return succeed(FakeResponse(answer))
        if isinstance(answer, Exception):
            return fail(answer)
        return Deferred()


class HealthCheckerTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.pool = Pool(
            [Member(b"http://a:1/v1/"), Member(b"https://b/v1/?k=1")], clock=self.clock, chance=Random(0)
        )
        self.agent = _Agent({b"http://a:1/health": 200, b"https://b/health": 200})
        self.checker = HealthChecker(self.pool, HealthCheck(interval=5, timeout=1), self.agent, self.clock)
        self.addCleanup(self.checker.stop)

    def test_newMembersWaitForTheirFirstProbe(self) -> None:
        """
        Members are out until their first probe passed; the first probes go
        at once, on each member's origin.
        """
        self.assertEqual(len(self.pool.out()), 2)
        self.checker.start()
        self.assertEqual(sorted(self.agent.asked), [b"http://a:1/health", b"https://b/health"])
        self.assertEqual(self.pool.out(), [])

    def test_failedProbeKeepsOut(self) -> None:
        """
        A wrong status, a refused connection, or no answer within the
        timeout: out until a probe passes; probes every interval.
        """
        self.checker.start()
        for answer in (503, ConnectionRefusedError(), None):
            self.agent.answers[b"http://a:1/health"] = answer
            self.clock.advance(5)
            if answer is None:
                self.clock.advance(1)
            self.assertEqual([(state.member.url, why) for state, why in self.pool.out()], [
                (b"http://a:1/v1/", "failed its health check")
            ])  # fmt: skip
        self.agent.answers[b"http://a:1/health"] = 200
        self.clock.advance(4)
        self.assertEqual(self.pool.out(), [])

    def test_passKeepsTheFailuresCount(self) -> None:
        """
        A probe that passes between failed requests does not start their
        count again: a member whose probe path answers while its real
        work fails is ejected all the same.
        """
        self.checker.start()
        state = self.pool.members[0]
        self.pool.failed(state, "reset")
        self.pool.failed(state, "reset")
        self.clock.advance(5)
        for _ in range(3):
            self.pool.failed(state, "reset")
        self.assertEqual(self.pool.out(), [(state, "ejected")])

    def test_passBringsEjectedBack(self) -> None:
        self.checker.start()
        state = self.pool.members[0]
        for _ in range(5):
            self.pool.failed(state, "refused")
        self.assertEqual(self.pool.out(), [(state, "ejected")])
        self.clock.advance(5)
        self.assertEqual(self.pool.out(), [])

    def test_stopCancels(self) -> None:
        """
        Stopped, its probes in flight are cancelled and judge nothing.
        """
        self.checker.start()
        self.agent.answers[b"http://a:1/health"] = None
        self.clock.advance(5)
        self.checker.stop()
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.assertEqual(self.pool.out(), [])

    def test_onOrigin(self) -> None:
        self.assertEqual(onOrigin(b"http://[::1]:8000/v1/x?k=1", b"/healthz"), b"http://[::1]:8000/healthz")
