# -*- test-case-name: tests.test_descriptors -*-
"""
File descriptors, which a gateway runs out of before anything else: each
stream holds two sockets. At start the soft limit is raised to the hard one
(L{FileLimitService}); while serving, a connection accepted when the
descriptors are nearly gone is answered C{503} at once (L{DescriptorGuard})
rather than left to fail in the middle of its request, so the streams
already open go on.
"""

from __future__ import annotations

import resource
from typing import Any, Optional

from twisted.application.service import Service
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from twisted_stream.exchange._exhaustion import EXHAUSTION, ExhaustionLog

__all__ = ["DescriptorGuard", "FileLimitService", "raiseFileLimit"]


def raiseFileLimit() -> tuple[int, int]:
    """
    Raise the soft limit of open files to the hard one (the kernel's
    C{nr_open} where the hard one is unlimited): each stream holds two
    sockets, and the usual soft limit of 1024 would end a gateway at 500.

    @return: The soft limit before and after.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY:
        try:
            with open("/proc/sys/fs/nr_open") as f:
                hard = int(f.read())
        except (OSError, ValueError):
            return soft, soft
    if soft != resource.RLIM_INFINITY and soft < hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))
        except (OSError, ValueError):
            return soft, soft
        return soft, hard
    return soft, soft


class FileLimitService(Service):
    """
    Raises the open file limit as the process starts (before it listens:
    put it first), and says so.
    """

    _log = Logger()

    def privilegedStartService(self) -> None:
        super().privilegedStartService()
        before, after = raiseFileLimit()
        if after != before:
            self._log.info("open file limit raised from {before} to {after}", before=before, after=after)


class DescriptorGuard:
    """
    Tells, from an accepted socket's descriptor number, whether the process
    is about to run out of descriptors.

    The kernel gives every new descriptor the lowest number free, so an
    accepted socket numbered M{n} means that M{n} descriptors below it are
    in use; and each client connection open may soon want an upstream
    connection as well. A new connection is refused when either count comes
    within C{reserve} of the soft limit, so that the streams already open,
    and the log, still find descriptors. (Checked in constant time, unlike
    counting C{/proc/self/fd}.) Should they run out all the same (idle
    upstream connections kept for reuse hold some), an upstream connection
    that cannot be made gets C{503} too (see L{twisted_stream.exchange._exhaustion.noteExhausted}).
    """

    def __init__(
        self, clock: IReactorTime, limit: Optional[int] = None, reserve: int = 32, log: Optional[ExhaustionLog] = None
    ) -> None:
        """
        @param clock: What tells the time, for the log's pace.
        @param limit: The soft limit of open files (read from the process
            when the first connection comes, after it was raised, if
            L{None}).
        @param reserve: Descriptors kept free for what is open already.
        @param log: Where refusals are counted (the process's by default).
        """
        self._clock = clock
        self._limit = limit
        self._reserve = reserve
        self._exhaustion = log if log is not None else EXHAUSTION
        self._base: Optional[int] = None
        self.connections = 0

    def exhausted(self, transport: Any) -> bool:
        """
        @param transport: A new connection's transport (TLS or not).
        @return: Whether it should be refused (then it is counted, and
            logged with the others at most once a second); if not, it is
            counted among the open connections until L{closed}.
        """
        while not hasattr(transport, "fileno") and hasattr(transport, "transport"):
            transport = transport.transport
        fileno = getattr(transport, "fileno", None)
        if fileno is None:
            return False
        if self._limit is None:
            self._limit = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        number = fileno()
        if self._base is None:
            # What the process held before its first client.
            self._base = number
        # Each open client may soon hold an upstream connection too: a
        # burst of clients accepted before their upstreams are connected
        # must not find the descriptors gone then.
        needed = max(number + 1, self._base + 2 * (self.connections + 1))
        if needed <= self._limit - self._reserve:
            self.connections += 1
            return False
        self._exhaustion.refused(self._clock, self._limit)
        return True

    def closed(self) -> None:
        """
        A connection L{exhausted} let in has closed.
        """
        self.connections -= 1
