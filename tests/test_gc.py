"""
Tests for L{twisted_stream.ops._gc}.
"""

from __future__ import annotations

import gc

from twisted.trial.unittest import SynchronousTestCase

from twisted_stream.ops._gc import (
    FULL_COLLECTION_AFTER,
    STREAMING_THRESHOLDS,
    GarbageCollectionService,
    closedCyclicConnection,
)


class GarbageCollectionServiceTests(SynchronousTestCase):
    def test_freezesAndRestores(self) -> None:
        """
        While it runs, what existed at its start is frozen and full
        collections are rare; stopped, everything is as it was.
        """
        before = gc.get_threshold()
        service = GarbageCollectionService()
        service.startService()
        try:
            self.assertEqual(gc.get_threshold(), STREAMING_THRESHOLDS)
            self.assertGreater(gc.get_freeze_count(), 1000)
        finally:
            service.stopService()
        self.assertEqual(gc.get_threshold(), before)
        self.assertEqual(gc.get_freeze_count(), 0)

    def test_fullCollectionAfterClosedConnections(self) -> None:
        """
        Every L{FULL_COLLECTION_AFTER} closed connections noted while the
        service runs make a full collection, which frees their cycles; with
        no service running, noting one does nothing.
        """
        closedCyclicConnection()
        service = GarbageCollectionService()
        service.startService()
        self.addCleanup(service.stopService)
        collections = []

        def noted(phase: str, info: dict[str, int]) -> None:
            if phase == "stop" and info["generation"] == 2:
                collections.append(info["collected"])

        gc.callbacks.append(noted)
        self.addCleanup(gc.callbacks.remove, noted)
        for _ in range(FULL_COLLECTION_AFTER - 1):
            _cycle()
            closedCyclicConnection()
        self.assertEqual(collections, [])
        _cycle()
        closedCyclicConnection()
        self.assertEqual(len(collections), 1)
        self.assertGreaterEqual(collections[0], FULL_COLLECTION_AFTER * 2)


def _cycle() -> None:
    """
    Leave two objects that refer to each other.
    """
    a: dict[str, object] = {}
    b = {"a": a}
    a["b"] = b
