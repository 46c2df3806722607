"""
Tests for L{twisted_stream._gc}.
"""

from __future__ import annotations

import gc

from twisted.trial.unittest import SynchronousTestCase

from twisted_stream._gc import STREAMING_THRESHOLDS, GarbageCollectionService


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
