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
each one a delay for every chunk in flight (p99 chunk delay 32 ms at 1,000
streams with the defaults; 2.4 ms with collection off).

So, once the process is set up: what exists then is frozen (never walked
again), and full collections are made rare (the third threshold counts
young collections: 1,000 of them, some seven million allocations, instead
of 10). Young collections stay as they are: they are short, and they are
what reclaims a closed stream's cycles.
"""

from __future__ import annotations

import gc

from twisted.application.service import Service

__all__ = ["STREAMING_THRESHOLDS", "GarbageCollectionService"]

STREAMING_THRESHOLDS = (700, 10, 1000)
"""C{gc.set_threshold}'s arguments while the service runs."""


class GarbageCollectionService(Service):
    """
    Freezes what exists at start-up and makes full collections rare, while
    it runs.
    """

    def startService(self) -> None:
        super().startService()
        self._before = gc.get_threshold()
        gc.collect()
        gc.freeze()
        gc.set_threshold(*STREAMING_THRESHOLDS)

    def stopService(self) -> None:
        super().stopService()
        gc.set_threshold(*self._before)
        gc.unfreeze()
