"""
The benchmark still runs. (Speed itself is measured by C{bench/run}, never
asserted in a test.)
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from twisted.internet.defer import inlineCallbacks
from twisted.trial.unittest import TestCase

from tests.support import LineProcess

PROJECT = Path(__file__).resolve().parent.parent


class BenchSmokeTests(TestCase):
    timeout = 120

    @inlineCallbacks
    def test_oneSmallRound(self) -> Any:
        """
        One round of a few chunks measures every target, with every chunk
        through each.
        """
        out = Path(self.mktemp()).resolve() / "bench.json"
        bench = LineProcess.spawn(
            sys.executable, str(PROJECT / "bench" / "run.py"), "--rounds", "1", "--chunks", "20", "--json", str(out)
        )
        code = yield bench.exitCode
        self.assertEqual(code, 0, bench.text + bench.stderr.decode())
        samples = json.loads(out.read_text())["samples"]
        targets = {sample["target"] for sample in samples}
        self.assertTrue({"chunkproxy", "reverseproxy", "direct"} <= targets, targets)
        for sample in samples:
            self.assertEqual(sample["chunks"], 20)
            if sample["target"] != "direct":
                self.assertGreater(sample["cpuMicrosPerChunk"], 0)
        self.assertIn("÷ reverseproxy", bench.text)
