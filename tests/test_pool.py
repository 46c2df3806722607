"""
Tests for L{twisted_stream.upstream._pool}: which member a stream goes to,
and when members leave and come back, on a fake clock.
"""

from __future__ import annotations

from collections import Counter
from random import Random

from twisted.internet.task import Clock
from twisted.logger import capturedLogs
from twisted.trial.unittest import SynchronousTestCase

from twisted_stream.upstream._pool import Member, MemberState, Pool, PoolPolicy


def _members(*weights: int, maxStreams: int | None = None) -> list[Member]:
    return [Member(b"http://m%d/" % (n,), weight, maxStreams) for n, weight in enumerate(weights)]


class BalancingTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()

    def pool(self, *weights: int, seed: int = 0) -> Pool:
        return Pool(_members(*weights), PoolPolicy(), self.clock, chance=Random(seed))

    def test_shortStreamsByWeight(self) -> None:
        """
        Streams that each end before the next starts are spread exactly by
        weight, whatever the random draws.
        """
        for seed in range(5):
            pool = self.pool(1, 2, 3, seed=seed)
            chosen: Counter[bytes] = Counter()
            for _ in range(300):
                state = pool.choose()
                assert state is not None
                chosen[state.member.url] += 1
                pool.release(state)
            self.assertEqual(
                [chosen[b"http://m0/"], chosen[b"http://m1/"], chosen[b"http://m2/"]], [50, 100, 150], seed
            )

    def test_longStreamsGoToTheLessBusy(self) -> None:
        """
        With 30 long streams open on one member, the next 10 go to the
        others.
        """
        pool = self.pool(1, 1, 1)
        busy = pool.members[0]
        busy.open = 30
        for _ in range(10):
            state = pool.choose()
            self.assertIsNot(state, busy)

    def test_busyRelativeToWeight(self) -> None:
        """
        Open streams count against the weight: 4 on a member of weight 4 is
        as busy as 1 on a member of weight 1.
        """
        pool = self.pool(4, 1)
        for _ in range(50):
            pool.choose()
        heavy, light = pool.members
        self.assertEqual((heavy.open, light.open), (40, 10))

    def test_processesStartApart(self) -> None:
        """
        Two processes (two seeds) with idle members do not pick the same
        first member every time.
        """
        firsts = set()
        for seed in range(20):
            state = self.pool(1, 1, 1, seed=seed).choose()
            assert state is not None
            firsts.add(state.member.url)
        self.assertGreater(len(firsts), 1)

    def test_caps(self) -> None:
        """
        A member at its cap is skipped; all at their caps: nothing.
        """
        pool = Pool(_members(1, 1, maxStreams=2), clock=self.clock, chance=Random(0))
        chosen = [pool.choose() for _ in range(4)]
        self.assertEqual(sorted(state.open for state in pool.members), [2, 2])
        self.assertNotIn(None, chosen)
        self.assertIsNone(pool.choose())
        assert chosen[0] is not None
        pool.release(chosen[0])
        self.assertIs(pool.choose(), chosen[0])

    def test_untriedFirst(self) -> None:
        pool = self.pool(1, 1, 1)
        tried: list[MemberState] = []
        for _ in range(3):
            state = pool.choose(tried)
            assert state is not None
            self.assertNotIn(state, tried)
            tried.append(state)
        # All tried: any of them again.
        self.assertIn(pool.choose(tried), tried)


class EjectionTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()

    def pool(self, members: int = 3, maxEjectFor: float = 300) -> Pool:
        policy = PoolPolicy(ejectAfter=3, ejectFor=10, maxEjectFor=maxEjectFor)
        return Pool(_members(*[1] * members), policy, self.clock, chance=Random(0))

    def test_ejectedAfterFailuresInARow(self) -> None:
        """
        Three failures in a row eject a member: it gets no streams for the
        ejection time, then is back; a success between failures starts the
        count again.
        """
        pool = self.pool()
        bad = pool.members[1]
        pool.failed(bad, "refused")
        pool.failed(bad, "refused")
        pool.succeeded(bad)
        pool.failed(bad, "refused")
        pool.failed(bad, "refused")
        self.assertEqual(pool.out(), [])
        pool.failed(bad, "refused")
        self.assertEqual(pool.out(), [(bad, "ejected")])
        for _ in range(20):
            state = pool.choose()
            self.assertIsNot(state, bad)
        self.clock.advance(10)
        self.assertEqual(pool.out(), [])

    def test_longerEachTime(self) -> None:
        """
        Each ejection lasts the base time times the member's ejections, up
        to the longest.
        """
        pool = self.pool(maxEjectFor=25)
        bad = pool.members[0]
        for expected in (10, 20, 25):
            for _ in range(3):
                pool.failed(bad, "refused")
            self.assertEqual(bad.ejectedUntil - self.clock.seconds(), expected)
            self.clock.advance(expected)

    def test_neverMoreThanHalf(self) -> None:
        """
        At most half of a pool is ejected at once; a pool of one never is.
        """
        pool = self.pool(members=4)
        for state in pool.members:
            for _ in range(3):
                pool.failed(state, "refused")
        self.assertEqual(len(pool.out()), 2)
        single = self.pool(members=1)
        for _ in range(10):
            single.failed(single.members[0], "refused")
        self.assertEqual(single.out(), [])

    def test_panicWhenAllAreOut(self) -> None:
        """
        Members all out (ejected, cooling down): they are tried anyway.
        """
        pool = self.pool(members=2)
        first, second = pool.members
        for _ in range(3):
            pool.failed(first, "refused")
        pool.coolDown(second, 30, 429)
        self.assertEqual(len(pool.out()), 2)
        self.assertIsNotNone(pool.choose())

    def test_cooldownCapped(self) -> None:
        pool = self.pool()
        pool.coolDown(pool.members[0], 3600, 429)
        self.assertEqual(pool.members[0].coolingUntil, 60)

    def test_healthCheckBringsBack(self) -> None:
        """
        A failed probe keeps a member out; a passed one brings an ejected
        member back at once.
        """
        pool = self.pool()
        state = pool.members[0]
        pool.checked(state, False)
        self.assertEqual(pool.out(), [(state, "failed its health check")])
        for _ in range(3):
            pool.failed(state, "refused")
        pool.checked(state, True)
        self.assertEqual(pool.out(), [])

    def test_reloadKeepsWhatItKnows(self) -> None:
        """
        A pool that replaces another keeps its kept members' state: their
        open streams and ejections; a new member starts afresh.
        """
        old = self.pool(members=2)
        kept = old.members[0]
        kept.open = 5
        for _ in range(3):
            old.failed(kept, "refused")
        new = Pool(
            [kept.member, Member(b"http://new/")], PoolPolicy(), self.clock, chance=Random(0), states=old.members
        )
        self.assertIs(new.members[0], kept)
        self.assertEqual(new.members[1].open, 0)
        self.assertEqual(new.out(), [(kept, "ejected")])


class FailoverLogTests(SynchronousTestCase):
    def test_pacedPerMember(self) -> None:
        """
        Failovers are logged at most once a second per member, each line
        with how many there were since the last.
        """
        clock = Clock()
        pool = Pool(_members(1, 1), clock=clock, chance=Random(0), route="/v1/")
        first, second = pool.members
        with capturedLogs() as said:
            for _ in range(5):
                pool.failedOver(first, "answered 429")
            pool.failedOver(second, "answered 503")
            clock.advance(1)
            pool.failedOver(first, "answered 429")
        lines = [(event["member"], event["count"]) for event in said if event.get("pool_event") == "failover"]
        self.assertEqual(lines, [("http://m0/", 1), ("http://m1/", 1), ("http://m0/", 5)])
