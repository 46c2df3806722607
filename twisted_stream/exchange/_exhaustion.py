# -*- test-case-name: tests.test_descriptors -*-
"""
Running out of file descriptors: the one reason a client gets, and a log
paced to a line a second, whether it shows when a connection is accepted
(L{twisted_stream.gateway._descriptors.DescriptorGuard}) or when an upstream
connection cannot be made (the exchange).
"""

from __future__ import annotations

import resource

from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

__all__ = ["EXHAUSTION", "OUT_OF_DESCRIPTORS", "ExhaustionLog", "noteExhausted"]


OUT_OF_DESCRIPTORS = "the gateway is out of file descriptors; try again shortly"
"""The reason a client gets with its C{503} when descriptors run out."""


class ExhaustionLog:
    """
    Logs that descriptors ran out, at most once a second with how many
    requests were refused meanwhile. One per process, as the descriptors
    are.
    """

    _log = Logger(namespace="chunkproxy.descriptors")

    def __init__(self) -> None:
        self._refused = 0
        self._lastLog = -1.0

    def refused(self, clock: IReactorTime, limit: int) -> None:
        """
        Count one refusal; log if a second has passed since the last line.
        """
        self._refused += 1
        now = clock.seconds()
        if now - self._lastLog >= 1.0:
            self._log.warn(
                "out of file descriptors (limit {limit}): refused {count} new request(s) with 503",
                limit=limit,
                count=self._refused,
            )
            self._lastLog = now
            self._refused = 0


EXHAUSTION = ExhaustionLog()
"""The process's log of exhaustion (one per process, as the descriptors are)."""


def noteExhausted(clock: IReactorTime) -> None:
    """
    Note that a request was refused because descriptors ran out (an
    upstream connection could not be made), for the paced log.
    """
    EXHAUSTION.refused(clock, resource.getrlimit(resource.RLIMIT_NOFILE)[0])
