# -*- test-case-name: tests.test_pool -*-
"""
L{Pool}: the members of one route's pool, and which one a new stream goes
to. Sans-IO: a clock and a source of randomness in, choices out; the
requests themselves are L{twisted_stream.upstream._failover}'s.

LLM streams last seconds to minutes, so a pool balances on open streams,
not on requests: a member holding forty long answers is busy whatever
round robin says. Each choice looks at two candidates (Envoy's
least-request): the member a smooth weighted round robin (nginx's) names
next, and another drawn at random in proportion to the weights; the one with
fewer open streams for its weight takes the stream, the round robin's on a
tie. Sequential short requests, which leave every member idle, are spread
exactly by weight; under load the less busy of the two wins; and the
random draw, and a round robin that starts at a random place in each
process, keep several gateway processes from all picking the same member.

A member is I{out} while it is ejected (consecutive failures), cooling
down (it answered C{429} or C{503} with C{Retry-After}), or, where the pool
has an active health check, until its probe passes. Out members get no
streams while any member is in; a pool whose members are all out tries
them anyway (Envoy's panic mode), so that a fleet that looks bad is not
refused wholesale by the gateway itself. A member at its stream cap is
skipped in any mode.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Iterable, Optional, Protocol, Sequence

from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

__all__ = ["DEFAULT_POLICY", "DEFAULT_RETRY_STATUSES", "Member", "MemberState", "Pool", "PoolPolicy", "PoolWatch"]

DEFAULT_RETRY_STATUSES = frozenset({429, 502, 503, 504, 529})
"""The statuses LLM APIs and inference servers answer for "not now": a
request answered with one goes to another member."""


@dataclass(frozen=True)
class Member:
    """
    One upstream of a pool, as configured.

    @ivar url: Its base URL (absolute, percent-encoded; requests go to it
        plus the rest of their path and their query string).
    @ivar weight: Its share of the streams, relative to the others'.
    @ivar maxStreams: The most streams it may hold at once (an inference
        server's batch size); L{None}: no cap.
    @ivar injectHeaders: Headers set on its requests, replacing the
        client's and the route's under those names (its own API key).
    @ivar name: What the log and the metrics call it (never its headers).
    """

    url: bytes
    weight: int = 1
    maxStreams: Optional[int] = None
    injectHeaders: tuple[tuple[bytes, bytes], ...] = ()
    name: str = ""

    @property
    def label(self) -> str:
        """
        @return: Its name, or its URL without the query string (which may
            hold a key).
        """
        return self.name or self.url.split(b"?", 1)[0].decode("ascii", "replace")


@dataclass(frozen=True)
class PoolPolicy:
    """
    How a pool fails over, and when its members leave and come back.

    @ivar retryStatuses: Response statuses that send the request on to
        another member.
    @ivar tries: The most attempts at one request (L{None}: the smaller of
        the member count and 3).
    @ivar ejectAfter: Consecutive failures (connection errors, C{5xx}
        heads, timeouts) after which a member is ejected.
    @ivar ejectFor: Seconds of its first ejection; each further one lasts
        as long times the number of its ejections, up to L{maxEjectFor}.
    @ivar maxEjectFor: The longest ejection, in seconds.
    @ivar maxEjectedFraction: The largest share of a pool's members out
        at once by ejection.
    @ivar maxCooldown: The longest cooldown a C{Retry-After} gets, in
        seconds.
    @ivar retryBudget: Attempts beyond a request's first, in flight at once,
        as a share of the requests active on the pool...
    @ivar minRetries: ...plus this many (Envoy's budget: 20 % plus 3).
    """

    retryStatuses: frozenset[int] = DEFAULT_RETRY_STATUSES
    tries: Optional[int] = None
    ejectAfter: int = 5
    ejectFor: float = 30.0
    maxEjectFor: float = 300.0
    maxEjectedFraction: float = 0.5
    maxCooldown: float = 60.0
    retryBudget: float = 0.2
    minRetries: int = 3


DEFAULT_POLICY = PoolPolicy()
"""The policy of a pool that was given none."""


class PoolWatch(Protocol):
    """
    What hears of a pool's members: the gateway's metrics
    (L{twisted_stream.ops._metrics.Metrics}); the pool need not know them.
    """

    def memberOpen(self, route: str, member: str, change: int) -> None:
        """
        C{member}'s attempts and streams in flight went up or down by
        C{change}.
        """

    def memberEvent(self, route: str, member: str, event: str) -> None:
        """
        Something happened to C{member}: C{failover} (a request left it
        for another), C{ejection}, C{cooldown}.
        """


@dataclass(eq=False)
class MemberState:
    """
    A member and what the pool knows of it now.

    @ivar open: Its attempts and streams in flight.
    @ivar failures: Its failures since its last success.
    @ivar ejections: How many times it was ejected.
    @ivar ejectedUntil: Until when it is ejected (reactor seconds).
    @ivar coolingUntil: Until when it is cooling down.
    @ivar checked: Whether its health check passed last (always, without
        an active check).
    @ivar probed: Whether an active health check has probed it yet.
    """

    member: Member
    open: int = 0
    failures: int = 0
    ejections: int = 0
    ejectedUntil: float = 0.0
    coolingUntil: float = 0.0
    checked: bool = True
    probed: bool = False
    current: int = field(default=0, repr=False)
    failoverSaidAt: float = field(default=float("-inf"), repr=False)
    failoversUnsaid: int = field(default=0, repr=False)

    def full(self) -> bool:
        cap = self.member.maxStreams
        return cap is not None and self.open >= cap

    def outBecause(self, now: float) -> Optional[str]:
        """
        @return: Why it gets no streams now (C{ejected}, C{cooling down},
            C{failed its health check}), or L{None} while it is in.
        """
        if self.ejectedUntil > now:
            return "ejected"
        if self.coolingUntil > now:
            return "cooling down"
        if not self.checked:
            return "failed its health check"
        return None


class Pool:
    """
    The members of one route's pool, their state, and the choice of one for
    each attempt at a request.

    @ivar members: Each member's state, in the configured order.
    @ivar active: Requests under way on the pool (from their first attempt
        to their stream's end).
    @ivar retrying: Attempts beyond their request's first, in flight.
    """

    log = Logger()

    def __init__(
        self,
        members: Sequence[Member],
        policy: PoolPolicy = DEFAULT_POLICY,
        clock: Optional[IReactorTime] = None,
        chance: Optional[random.Random] = None,
        states: Iterable[MemberState] = (),
        route: str = "",
        watch: Optional[PoolWatch] = None,
    ) -> None:
        """
        @param members: Its members, at least one.
        @param policy: How it fails over and ejects.
        @param clock: The clock (the reactor by default).
        @param chance: The randomness for choices (a new one by default).
        @param states: The states of the members of the pool this one
            replaces (a reload): a member kept keeps its streams, its
            failures and its ejection.
        @param route: The route's prefix, for the log.
        @param watch: What hears of its members, if anything.
        """
        if not members:
            raise ValueError("a pool needs at least one member")
        if clock is None:
            from twisted.internet import reactor as clock
        self._clock: IReactorTime = clock  # type: ignore[assignment]
        self._chance = chance if chance is not None else random.Random()
        self.policy = policy
        self.route = route
        self.watch = watch
        kept = {state.member: state for state in states}
        self.members = [kept.get(member) or MemberState(member) for member in members]
        self._total = sum(state.member.weight for state in self.members)
        # The round robin starts at a random place in each process.
        for state in self.members:
            state.current = self._chance.randrange(self._total)
        self.active = 0
        self.retrying = 0

    @property
    def tries(self) -> int:
        """
        @return: The most attempts at one request.
        """
        tries = self.policy.tries
        return tries if tries is not None else min(len(self.members), 3)

    def retryAllowed(self) -> bool:
        """
        @return: Whether the retry budget allows one more attempt beyond a
            request's first now.
        """
        return self.retrying < self.policy.retryBudget * self.active + self.policy.minRetries

    # Choosing.

    def choose(self, tried: Sequence[MemberState] = ()) -> Optional[MemberState]:
        """
        Choose the member for an attempt, and count it open there.

        @param tried: The members this request was tried on already; one
            not among them is chosen where there is one with room.
        @return: The member, or L{None} when every member is at its cap.
        """
        members = self.members
        if len(members) == 1:
            # A route with one upstream (most): nothing to choose.
            chosen = members[0]
            if chosen.full():
                return None
        else:
            now = self._clock.seconds()
            withRoom = [state for state in members if not state.full()]
            if not withRoom:
                return None
            untried = [state for state in withRoom if state not in tried] or withRoom
            candidates = [state for state in untried if state.outBecause(now) is None] or untried
            chosen = self._lessBusy(candidates)
        chosen.open += 1
        if self.watch is not None:
            self.watch.memberOpen(self.route, chosen.member.label, 1)
        return chosen

    def _lessBusy(self, candidates: list[MemberState]) -> MemberState:
        if len(candidates) == 1:
            return candidates[0]
        # Smooth weighted round robin (nginx): each gains its weight, the
        # highest is next and loses the candidates' total.
        total = 0
        first = candidates[0]
        for state in candidates:
            state.current += state.member.weight
            total += state.member.weight
            if state.current > first.current:
                first = state
        first.current -= total
        others = [state for state in candidates if state is not first]
        second = self._chance.choices(others, [state.member.weight for state in others])[0]
        if second.open * first.member.weight < first.open * second.member.weight:
            return second
        return first

    def release(self, state: MemberState) -> None:
        """
        An attempt or a stream on C{state} has ended.
        """
        state.open -= 1
        if self.watch is not None:
            self.watch.memberOpen(self.route, state.member.label, -1)

    def failedOver(self, state: MemberState, why: str) -> None:
        """
        A request left C{state} for another member, C{why}: logged at most
        once a second per member, with how many did since the last line (a
        failing fleet would write a line per request).
        """
        if self.watch is not None:
            self.watch.memberEvent(self.route, state.member.label, "failover")
        state.failoversUnsaid += 1
        now = self._clock.seconds()
        if now - state.failoverSaidAt < 1.0:
            return
        self.log.info(
            "pool {route}: {count} request(s) went from {member} to another member (the last: {why})",
            route=self.route,
            member=state.member.label,
            count=state.failoversUnsaid,
            why=why,
            pool_event="failover",
        )
        state.failoverSaidAt = now
        state.failoversUnsaid = 0

    # What attempts found.

    def succeeded(self, state: MemberState) -> None:
        """
        C{state} answered with a head that is not a failure.
        """
        state.failures = 0

    def failed(self, state: MemberState, why: str) -> None:
        """
        C{state} failed: a connection error, a C{5xx} head, a timeout. Its
        failures in a row may eject it, while the pool keeps most members in.
        """
        state.failures += 1
        now = self._clock.seconds()
        if state.failures < self.policy.ejectAfter or state.ejectedUntil > now:
            return
        ejected = sum(1 for other in self.members if other.ejectedUntil > now)
        if ejected + 1 > int(len(self.members) * self.policy.maxEjectedFraction):
            return
        state.ejections += 1
        seconds = min(self.policy.ejectFor * state.ejections, self.policy.maxEjectFor)
        state.ejectedUntil = now + seconds
        state.failures = 0
        if self.watch is not None:
            self.watch.memberEvent(self.route, state.member.label, "ejection")
        self.log.warn(
            "pool {route}: {member} ejected for {seconds:g} s after {failures} failures in a row (the last: {why})",
            route=self.route,
            member=state.member.label,
            seconds=seconds,
            failures=self.policy.ejectAfter,
            why=why,
            pool_event="ejected",
        )

    def coolDown(self, state: MemberState, seconds: float, status: int) -> None:
        """
        C{state} asked for no requests for C{seconds} (its C{Retry-After}),
        which the pool grants up to its C{maxCooldown}.
        """
        seconds = min(seconds, self.policy.maxCooldown)
        if seconds <= 0:
            return
        state.coolingUntil = max(state.coolingUntil, self._clock.seconds() + seconds)
        if self.watch is not None:
            self.watch.memberEvent(self.route, state.member.label, "cooldown")
        self.log.info(
            "pool {route}: {member} answered {status} with Retry-After: cooling down for {seconds:g} s",
            route=self.route,
            member=state.member.label,
            status=status,
            seconds=seconds,
            pool_event="cooldown",
        )

    def checked(self, state: MemberState, passed: bool) -> None:
        """
        C{state}'s active health check passed, or did not: a pass brings
        an ejected member back at once (its count of failures afresh). A
        pass says nothing of the requests it fails meanwhile: their count
        goes on (a member whose probe path answers while its real work
        fails is still ejected).
        """
        state.checked = passed
        if passed and state.ejectedUntil > self._clock.seconds():
            self.log.info(
                "pool {route}: {member} is back: its health check passed",
                route=self.route,
                member=state.member.label,
            )
            state.ejectedUntil = 0.0
            state.failures = 0

    def out(self) -> list[tuple[MemberState, str]]:
        """
        @return: The members out now, each with why.
        """
        now = self._clock.seconds()
        found = [(state, state.outBecause(now)) for state in self.members]
        return [(state, why) for state, why in found if why is not None]
