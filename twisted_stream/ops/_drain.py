# -*- test-case-name: tests.test_drain -*-
"""
Graceful drain: a gateway told to stop (SIGTERM or SIGINT, through twistd's
reactor shutdown) stops accepting connections, answers what still arrives
on open connections with C{503} and C{Connection: close}, lets every stream
in flight go on to its end, and only then lets the process exit; streams
still running when C{--drain-timeout} passes are cut off, as truncated
(never a clean end that lies), with the outcome C{drained}.

L{Drain} is the state the site, its resource and the service share;
L{DrainService} starts it when twistd stops the services (the listening
service, stopped alongside, closes the listening socket).
"""

from __future__ import annotations

import signal
from typing import TYPE_CHECKING, Any, Optional

from twisted.application.service import Service
from twisted.internet.defer import Deferred
from twisted.internet.error import ReactorNotRunning
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger

from twisted_stream.http._refusal import Refusal

if TYPE_CHECKING:
    # (A type only: chunkgen drains too, and needs nothing of the proxy's.)
    from twisted_stream.exchange._hooks import Stream

__all__ = ["DRAINING", "SETTLE_SECONDS", "CleanExitService", "Drain", "DrainService", "exitCleanlyOnSignals"]

DRAINING = Refusal(503, "the gateway is shutting down; send the request again", ((b"Retry-After", b"1"),))
"""The answer to a request that arrives while the gateway drains."""


SETTLE_SECONDS = 0.2
"""How long a drain with nothing in flight waits before it is done: a
connection accepted just before the listening port closed has its first
request read and admitted meanwhile (served, as the connection's last)
instead of cut off by the process's stop (seen in a reload of --workers
under load: four streams ended with nothing sent)."""


class Drain:
    """
    The requests in flight, and whether the gateway is draining.

    @ivar draining: Whether new requests are refused.
    """

    _log = Logger()

    def __init__(self, clock: IReactorTime) -> None:
        self._clock = clock
        self.draining = False
        self._inFlight: set[Stream] = set()
        self._drained: Optional[Deferred[None]] = None
        self._deadline: Optional[IDelayedCall] = None

    @property
    def inFlight(self) -> int:
        """
        @return: How many requests are in flight.
        """
        return len(self._inFlight)

    def started(self, request: Stream) -> None:
        """
        Note a request that is being answered (its stream has begun).

        @param request: The request; L{ended} must be called when its answer
            has ended, however it ends.
        """
        self._inFlight.add(request)

    def ended(self, request: Stream) -> None:
        """
        Note that a request's answer has ended.

        @param request: A request given to L{started} (others are ignored).
        """
        self._inFlight.discard(request)
        if self.draining and not self._inFlight and self._drained is not None:
            # A turn later: what the last answer wrote is sent before the
            # reactor stops.
            self._clock.callLater(0, self._done)

    def start(self, timeout: float) -> Deferred[None]:
        """
        Start draining.

        @param timeout: Seconds to let the requests in flight run on.
        @return: A Deferred that fires when none is left in flight (with
            none, after L{SETTLE_SECONDS}).
        """
        self.draining = True
        drained: Deferred[None] = Deferred()
        self._drained = drained
        self._deadline = self._clock.callLater(timeout, self._cutOff)
        if self._inFlight:
            self._log.info(
                "draining: {count} stream(s) in flight, given up to {timeout:g} s",
                count=len(self._inFlight),
                timeout=timeout,
            )
        else:
            self._clock.callLater(SETTLE_SECONDS, self._done)
        return drained

    def _cutOff(self) -> None:
        self._deadline = None
        left = list(self._inFlight)
        self._log.warn("drain timeout: cutting off {count} stream(s)", count=len(left))
        for request in left:
            request.cutOff(DRAINING)
            self._inFlight.discard(request)
        self._done()

    def _done(self) -> None:
        if self._inFlight:
            # Started while the drain settled: done when it ends (or is cut
            # off at the deadline).
            return
        if self._deadline is not None and self._deadline.active():
            self._deadline.cancel()
        self._deadline = None
        drained, self._drained = self._drained, None
        if drained is not None:
            drained.callback(None)


def exitCleanlyOnSignals(hangup: bool = False, saying: str = "draining, then stopping") -> None:
    """
    Make SIGTERM and SIGINT stop the reactor (and so twistd's services)
    with exit status 0: twistd's own handlers stop it too, but then the
    process exits with the signal (status 143 for SIGTERM), which a
    supervisor takes for a crash; a drained gateway exits 0.

    @param hangup: Whether SIGHUP does the same. A gateway drains on it
        (a terminal's hangup, or a C{systemctl reload} meant for a group of
        C{--workers}, would otherwise end it at once, its streams cut); the
        parent of a group reloads on it instead.
    @param saying: What the log says the process does on the signal.

    Call it when the services start: the handlers replace the reactor's
    own as soon as it has installed them, before its first turn (a turn
    later, a signal in that first turn would find the reactor's).
    """
    from twisted.internet import reactor

    def stop(number: int, frame: Any) -> None:
        # A signal handler runs between two bytecodes of whatever the
        # reactor was doing (a log file's rotation, between closing the old
        # file and opening the new one, where a line would be lost): it
        # only asks for the reactor's next turn.
        reactor.callFromThread(stopOnce, signal.Signals(number).name)  # type: ignore[attr-defined]

    def stopOnce(name: str) -> None:
        _log.info("received {signal}: {saying}", signal=name, saying=saying)
        # A second signal (a terminal sends SIGINT to the whole process
        # group, which a supervisor may follow with SIGTERM) while stopping.
        try:
            reactor.stop()
        except ReactorNotRunning:
            pass

    def install() -> None:
        for number in (signal.SIGTERM, signal.SIGINT, *((signal.SIGHUP,) if hangup else ())):
            signal.signal(number, stop)

    # After startup's "during" phase, where the reactor installs its
    # handlers; at once if that has passed.
    reactor.callWhenRunning(install)


_log = Logger()


class CleanExitService(Service):
    """
    A server with nothing to drain (chunkgen): SIGTERM and SIGINT stop it
    with exit status 0, as they do a drained gateway (twistd's own handlers
    would exit 143 or 130).
    """

    def startService(self) -> None:
        super().startService()
        exitCleanlyOnSignals(saying="stopping")


class DrainService(Service):
    """
    Drains the gateway when twistd stops it (see L{exitCleanlyOnSignals}).
    """

    def __init__(self, drain: Drain, timeout: float, hangup: bool = True) -> None:
        """
        @param drain: The gateway's drain.
        @param timeout: Seconds to let streams in flight run on.
        @param hangup: Whether SIGHUP drains it too (not where it reloads
            its configuration instead).
        """
        self._drain = drain
        self._timeout = timeout
        self._hangup = hangup

    def startService(self) -> None:
        super().startService()
        exitCleanlyOnSignals(hangup=self._hangup)

    def stopService(self) -> Any:
        super().stopService()
        return self._drain.start(self._timeout)
