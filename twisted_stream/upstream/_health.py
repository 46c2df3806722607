# -*- test-case-name: tests.test_health -*-
"""
Active health checks of a pool's members (L{HealthChecker}): every
C{interval} seconds each member is asked for C{path} on its origin, and
passes when it answers C{expect} within C{timeout} seconds. A member that
fails a probe is out until one passes; a pass brings an ejected member
back at once; a member new to the pool gets traffic once its first probe
passed (while every member is out the pool tries them anyway).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.http_headers import Headers
from twisted.web.iweb import IAgent, IResponse

from twisted_stream.upstream._failover import discard, onOrigin
from twisted_stream.upstream._pool import MemberState, Pool

__all__ = ["HealthCheck", "HealthChecker"]

_log = Logger()


@dataclass(frozen=True)
class HealthCheck:
    """
    A pool's active health check.

    @ivar path: What is asked for, on each member's origin (C{/health}).
    @ivar interval: Seconds between probes.
    @ivar expect: The status that passes.
    @ivar timeout: Seconds a probe may take.
    """

    path: bytes = b"/health"
    interval: float = 5.0
    expect: int = 200
    timeout: float = 2.0


class HealthChecker:
    """
    Probes a pool's members on a L{LoopingCall} (see the module's
    docstring).
    """

    def __init__(self, pool: Pool, check: HealthCheck, agent: IAgent, clock: IReactorTime) -> None:
        self._pool = pool
        self._check = check
        self._agent = agent
        self._clock = clock
        self._loop: Optional[LoopingCall] = None
        self._stopped = False
        self._pending: dict[MemberState, Deferred[IResponse]] = {}
        for state in pool.members:
            if not state.probed:
                # New to the pool: traffic once its first probe passed.
                state.checked = False

    def start(self) -> None:
        """
        Probe now, and every C{interval} seconds.
        """
        self._loop = LoopingCall(self.probeAll)
        self._loop.clock = self._clock
        self._loop.start(self._check.interval, now=True)

    def stop(self) -> None:
        """
        Stop probing (the probes in flight are cancelled, and judge
        nothing: a reload's next checker probes the same members).
        """
        self._stopped = True
        if self._loop is not None and self._loop.running:
            self._loop.stop()
        for pending in list(self._pending.values()):
            pending.cancel()

    def probeAll(self) -> None:
        """
        Probe every member that has no probe in flight.
        """
        for state in self._pool.members:
            if state not in self._pending:
                self._probe(state)

    def _probe(self, state: MemberState) -> None:
        url = onOrigin(state.member.url, self._check.path)
        pending = self._agent.request(b"GET", url, Headers({b"user-agent": [b"chunkproxy-health-check"]}))
        self._pending[state] = pending
        timer = self._clock.callLater(self._check.timeout, pending.cancel)

        def answered(response: IResponse) -> Optional[str]:
            discard(response)
            if response.code == self._check.expect:
                return None
            return f"answered {response.code}"

        def failed(failure: Failure) -> str:
            return "no answer in time" if not timer.active() else type(failure.value).__name__

        def judged(why: Optional[str]) -> None:
            del self._pending[state]
            if timer.active():
                timer.cancel()
            if self._stopped:
                return
            was = state.checked
            state.probed = True
            self._pool.checked(state, why is None)
            if was != (why is None):
                _log.info(
                    "pool {route}: {member} {verdict}",
                    route=self._pool.route,
                    member=state.member.label,
                    verdict="passed its health check" if why is None else f"failed its health check ({why})",
                )

        pending.addCallbacks(answered, failed).addCallback(judged)
