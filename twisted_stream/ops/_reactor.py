# -*- test-case-name: tests.test_reactor -*-
"""
Twisted's epoll reactor, without a legacy log context around every event.

Twisted's poll-like reactors hand each ready descriptor to its handler
through C{log.callWithLogger}: ask the descriptor for its log prefix, copy
the legacy log context, push the copy, call, pop. That exists so that a
legacy C{log.msg} made while the event is handled names the connection in
its C{[system]}. A proxy that forwards a chunk per upstream read pays it at
every read, a large share of its CPU at many streams (C{bench/run} measures
it: see C{docs/benchmark.md}), for lines the gateway does not write: its own
events are L{twisted.logger} events, which name their namespace, not that
context.

L{StreamEPollReactor} dispatches each event straight to the reactor's own
handler (Twisted's C{_doReadOrWrite}, reached through L{twisted_stream._compat}), which already turns anything the handler raises into a
logged error and a closed connection, as before; only what escapes that
(a C{connectionLost} that raises) is caught here, logged with the
descriptor's prefix, and the loop goes on with the next event. The one
difference a log reader sees: a legacy line logged from inside a
connection's handler says C{[-]} where it said C{[HTTPChannel,3,127.0.0.1]}.

chunkproxy runs on it unless twistd was told which reactor to use
(C{twistd --reactor epoll -n chunkproxy} keeps Twisted's own);
C{twistd --reactor streamepoll ...} chooses it for any other application.
"""

from __future__ import annotations

import errno
import sys
from typing import Optional

from twisted.internet.main import installReactor
from twisted.python import log

from twisted_stream._compat import EPollReactorBase

__all__ = ["StreamEPollReactor", "install", "installIfNoneChosen"]


class StreamEPollReactor(EPollReactorBase):
    """
    An epoll reactor whose events go straight to their handlers.
    """

    def doPoll(self, timeout: Optional[float]) -> None:
        """
        Wait for events (at most C{timeout} seconds; L{None}: until one
        comes) and handle each.
        """
        try:
            events = self.pollEvents(timeout)
        except OSError as e:
            if e.errno == errno.EINTR:
                return
            raise
        handle = self.eventHandler
        selectableOf = self.selectables.get
        for fd, event in events:
            selectable = selectableOf(fd)
            if selectable is None:
                # Removed by an earlier event of this same poll.
                continue
            try:
                handle(selectable, fd, event)
            except KeyboardInterrupt:
                raise
            except BaseException:
                log.err(None, "Unhandled error in an event handler", system=_prefixOf(selectable))

    def doIteration(self, delay: Optional[float]) -> None:
        """
        One turn of the loop: L{doPoll}, as Twisted's epoll reactor does.
        """
        self.doPoll(delay)


def _prefixOf(selectable: object) -> str:
    try:
        return str(selectable.logPrefix())  # type: ignore[attr-defined]
    except BaseException:
        return "-"


def install() -> None:
    """
    Install a L{StreamEPollReactor} as the global reactor (what
    C{twistd --reactor streamepoll} calls).
    """
    installReactor(StreamEPollReactor())


def installIfNoneChosen() -> bool:
    """
    Install a L{StreamEPollReactor} unless a reactor is installed already
    (twistd's C{--reactor}, or an application that imported
    C{twisted.internet.reactor}).

    @return: Whether it was installed.
    """
    if "twisted.internet.reactor" in sys.modules:
        return False
    install()
    return True
