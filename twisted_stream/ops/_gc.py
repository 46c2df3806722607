# -*- test-case-name: tests.test_gc -*-
"""
Garbage collection tuned for a process that holds thousands of long-lived
streams.

CPython's full collection walks every tracked object. In a gateway those are
the modules' objects (tens of thousands, alive for ever) and each open
stream's (its requests, protocols, Deferreds: alive for as long as the
stream). By default a full collection runs whenever the long-lived objects
have grown by a quarter, which is exactly what a ramp of new streams does:
at 1,000 to 2,000 streams the benchmark saw pauses of tens of milliseconds,
each one a delay for every chunk in flight.

So, once the process is set up: what exists then is frozen (never walked
again), and full collections are made rare (the third threshold counts
young collections: 1,000 of them, some seven million allocations, instead
of 10). Young collections stay as they are: they are short, and they are
what reclaims a closed stream's cycles.

What a young collection cannot reclaim is a cycle that lived long enough to
be old: a closed HTTP/2 connection is one (h2's connection object refers to
itself, through its frame dispatch table, and Twisted's connection, its
streams and TLS transport hang from it: some 25 KB each). With full
collections made rare, a gateway serving many short HTTP/2 connections grew
by that much per connection for minutes. So such a connection says when it
has closed (L{closedCyclicConnection}), and every
L{FULL_COLLECTION_AFTER} of them make a full collection: the memory they
hold stays bounded, and the pause is paid once per that many connections.
"""

from __future__ import annotations

import gc
from typing import Optional

from twisted.application.service import Service

__all__ = ["FULL_COLLECTION_AFTER", "STREAMING_THRESHOLDS", "GarbageCollectionService", "closedCyclicConnection"]

STREAMING_THRESHOLDS = (700, 10, 1000)
"""C{gc.set_threshold}'s arguments while the service runs."""

FULL_COLLECTION_AFTER = 64
"""Closed connections that only a full collection frees, between two full
collections made for them (while the service runs)."""


def closedCyclicConnection() -> None:
    """
    A connection whose objects only a full collection frees has closed: a
    full collection is made once L{FULL_COLLECTION_AFTER} have, while a
    L{GarbageCollectionService} runs (otherwise Python's own thresholds
    reach them in time).
    """
    service = GarbageCollectionService.current
    if service is not None:
        service.closed += 1
        if service.closed >= FULL_COLLECTION_AFTER:
            service.closed = 0
            gc.collect()


class GarbageCollectionService(Service):
    """
    Freezes what exists at start-up and makes full collections rare, while
    it runs.

    @cvar current: The one running, if any (the tuning is the process's).
    @ivar closed: Connections noted by L{closedCyclicConnection} since the
        last full collection made for them.
    """

    current: Optional[GarbageCollectionService] = None
    closed = 0

    def startService(self) -> None:
        super().startService()
        GarbageCollectionService.current = self
        self._before = gc.get_threshold()
        gc.collect()
        gc.freeze()
        gc.set_threshold(*STREAMING_THRESHOLDS)

    def stopService(self) -> None:
        super().stopService()
        if GarbageCollectionService.current is self:
            GarbageCollectionService.current = None
        gc.set_threshold(*self._before)
        gc.unfreeze()
