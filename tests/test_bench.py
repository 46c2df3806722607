"""
The benchmark's own arithmetic: what counts as capacity, what counts as a
lost byte. (The benchmark itself runs as C{bench/run --quick} in
C{.ci/run}; speed is never asserted in a test.)
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from typing import Any

from twisted.trial.unittest import SynchronousTestCase

_spec = importlib.util.spec_from_file_location("bench_run", Path(__file__).resolve().parent.parent / "bench" / "run.py")
assert _spec is not None and _spec.loader is not None
bench: Any = importlib.util.module_from_spec(_spec)
sys.modules["bench_run"] = bench
_spec.loader.exec_module(bench)


def _level(level: int, p99: float, received: int = 500, expected: int = 500, **load: Any) -> Any:
    return bench.Sample(
        "chunkproxy",
        "S2",
        1,
        level,
        load={
            "delayP50Ms": 1.0,
            "delayP99Ms": p99,
            "ttfbP99Ms": 2.0,
            "chunksReceived": received,
            "chunksExpected": expected,
            "failed": 0,
            "corrupt": 0,
            "streams": level,
            **load,
        },
        cpuSeconds=1.0,
        wallSeconds=2.0,
        rssKiB=10240,
    )


class CapacityTests(SynchronousTestCase):
    def test_highestLevelHeld(self) -> None:
        samples = [_level(100, 1), _level(500, 4), _level(1000, 49.9), _level(2000, 50.0), _level(4000, 2)]
        self.assertEqual(bench.capacity(samples), 1000)

    def test_lossEndsIt(self) -> None:
        """
        A level that lost a chunk, failed a stream or mangled a byte is not
        held, however fast the rest was, nor is any level above it.
        """
        for lossy in (
            _level(500, 4, received=499),
            _level(500, 4, failed=1),
            _level(500, 4, corrupt=1),
        ):
            self.assertTrue(lossy.lost)
            self.assertEqual(bench.capacity([_level(100, 1), lossy, _level(1000, 1)]), 100)

    def test_everyRoundMustHold(self) -> None:
        second = _level(500, 60)
        second.round = 2
        self.assertEqual(bench.capacity([_level(100, 1), _level(500, 4), second]), 100)

    def test_notEvenTheFirst(self) -> None:
        self.assertEqual(bench.capacity([_level(100, 51)]), 0)


class ReportTests(SynchronousTestCase):
    def test_ladderRows(self) -> None:
        """
        The ladder table has a row per level with its figures.
        """
        table = bench.report([_level(100, 1.234), _level(1000, 7.5, received=4999, expected=5000)])
        self.assertIn("| chunkproxy | 1,000 | 1.00 ms | 7.5 ms | 2.0 ms | 4,999 / 5,000 | 50 % | 10 MiB |", table)
        self.assertIn("| chunkproxy | 100 | 1.00 ms | 1.2 ms |", table)


def _llm(target: str, scenario: str, level: int = 0, cpu: float = 1.0, **load: Any) -> Any:
    return bench.Sample(
        target,
        scenario,
        1,
        level,
        load={
            "requests": 10,
            "complete": 10,
            "failed": 0,
            "corrupt": 0,
            "tokensExpected": 200,
            "tokensReceived": 200,
            "delayP50Ms": 0.2,
            "delayP99Ms": 0.5,
            "ttftP50Ms": 1.0,
            "ttftP99Ms": 2.0,
            "ttftReusedP50Ms": 1.0,
            "ttftReusedP99Ms": 2.0,
            **load,
        },
        cpuSeconds=cpu,
        wallSeconds=2.0,
    )


class LLMScenarioTests(SynchronousTestCase):
    def test_lost(self) -> None:
        """
        An LLM run lost something when a token is missing, an answer did not
        end with its usage and [DONE], a request failed or an event was
        mangled.
        """
        self.assertFalse(_llm("chunkproxy", "L2", 100).lost)
        for load in ({"tokensReceived": 199}, {"complete": 9}, {"failed": 1}, {"corrupt": 1}):
            self.assertTrue(_llm("chunkproxy", "L2", 100, **load).lost, load)

    def test_report(self) -> None:
        """
        L1's first token and token delay against direct in the same round;
        L2's CPU as a multiple of nginx's at the same level.
        """
        table = bench.report(
            [
                _llm("direct", "L1", ttftReusedP50Ms=1.5, ttftReusedP99Ms=2.5, delayP50Ms=0.1, delayP99Ms=0.3),
                _llm("chunkproxy", "L1", ttftReusedP50Ms=2.0, ttftReusedP99Ms=3.5, delayP50Ms=0.3, delayP99Ms=0.9),
                _llm("nginx", "L2", 1000, cpu=0.5),
                _llm("chunkproxy", "L2", 1000, cpu=0.8, tokensReceived=199, complete=9),
            ]
        )
        self.assertIn("| chunkproxy | 2.00 / 3.50 ms | 0.50 / 1.00 ms | 0.20 / 0.60 ms |", table)
        self.assertIn("| chunkproxy | 1,000 | 40 % | 1.60× | 0.5 ms | 2.0 ms | 199 / 200 | 9 / 10 |", table)
        self.assertIn("| nginx | 1,000 | 25 % | 1.00× |", table)
