"""
Tests for L{twisted_stream.chunkwatch}: C{chunkwatch}.
"""

from __future__ import annotations

import io
import json
import os
import sys
from datetime import datetime
from typing import Any

from twisted.internet.defer import inlineCallbacks
from twisted.internet.error import ConnectionLost
from twisted.internet.task import Clock
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase, TestCase
from twisted.web.client import ResponseDone, ResponseFailed

from tests.support import BreaksOff, LineProcess, Server, Upstream, onceAcrossRunners, startTwistd
from twisted_stream.chunkwatch import EXIT_CLEAN, EXIT_TRUNCATED, Watcher, _shown, percentile, sendTime
from twisted_stream.mock.formats import NDJSON, SSE, TEXT

NOW = 1_764_000_000.5


def chunkwatch(*args: str) -> LineProcess:
    """
    Start the installed C{chunkwatch} console script.
    """
    command = os.path.join(os.path.dirname(sys.executable), "chunkwatch")
    return LineProcess.spawn(command, *args, env=dict(os.environ, PYTHONUNBUFFERED="1"))


# (trial's assertAlmostEqual takes delta= but ignores it: bounds are explicit.)
class SendTimeTests(SynchronousTestCase):
    def test_generatorFormats(self) -> None:
        """
        Each of the generator's formats says when its chunk was sent: to the
        microsecond in NDJSON, to the millisecond in text and SSE.
        """
        sent = NOW - 0.0123456
        self.assertEqual(sendTime(NDJSON.render(1, sent, 0), NOW), round(sent, 6))
        for fmt in (TEXT, SSE):
            found = sendTime(fmt.render(1, sent, 0), NOW)
            assert found is not None
            self.assertLess(abs(found - sent), 0.001)

    def test_firstChunkOfAPiece(self) -> None:
        """
        A piece that holds several chunks is timed by its first, which waited
        longest.
        """
        piece = TEXT.render(1, NOW - 2, 0) + TEXT.render(2, NOW - 1, 0)
        found = sendTime(piece, NOW)
        assert found is not None
        self.assertLess(abs(found - (NOW - 2)), 0.001)

    def test_acrossMidnight(self) -> None:
        """
        A chunk sent just before midnight and received just after is a
        moment old, not a day.
        """
        arrived = datetime(2026, 11, 24, 0, 0, 0, 200_000).timestamp()
        found = sendTime(b"Chunk 1 [23:59:59.900]\n", arrived)
        assert found is not None
        self.assertLess(abs(arrived - found - 0.3), 0.001)

    def test_none(self) -> None:
        """
        A piece with no send time, or a nonsense clock, has none.
        """
        self.assertIsNone(sendTime(b"hello\n", NOW))
        self.assertIsNone(sendTime(b"[25:61:00.000]", NOW))


class ShownTests(SynchronousTestCase):
    def test_chatDeltasByContent(self) -> None:
        """
        A piece of an OpenAI-style event stream is shown by the content of
        its deltas; anything else as its text.
        """
        from twisted_stream.mock.apis import openai

        piece = openai.event(openai.chunk("id", 1, "m", {"content": "Hello"})) + openai.event(
            openai.chunk("id", 1, "m", {"content": " wörld"})
        )
        self.assertEqual(_shown(piece), 'delta "Hello" " wörld"')
        self.assertEqual(_shown(b"data: [DONE]\n\n"), "data: [DONE]")
        self.assertEqual(_shown(b"line one\nline two\n"), "line one | line two")
        self.assertEqual(_shown(b"data: {not json\n\n"), "data: {not json")
        self.assertTrue(_shown(b"x" * 100).endswith("..."))


class PercentileTests(SynchronousTestCase):
    def test_nearestRank(self) -> None:
        values = [5.0, 1.0, 4.0, 2.0, 3.0]
        self.assertEqual(percentile(values, 0.5), 3.0)
        self.assertEqual(percentile(values, 0.9), 5.0)
        self.assertEqual(percentile(values, 0.2), 1.0)
        self.assertEqual(percentile([7.0], 0.99), 7.0)


class WatcherTests(SynchronousTestCase):
    """
    The watcher fed pieces on a fake clock.
    """

    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(NOW)
        self.out = io.StringIO()
        self.watcher = Watcher(self.clock.seconds(), self.clock, self.out)
        self.codes: list[int] = []
        self.watcher.done.addCallback(self.codes.append)

    def feed(self) -> None:
        for i in range(1, 4):
            self.clock.advance(0.1)
            self.watcher.dataReceived(NDJSON.render(i, self.clock.seconds() - 0.002, 0))

    def test_linePerPieceAndSummary(self) -> None:
        """
        Each piece is printed as it arrives, with its arrival time, gap and
        delay; the summary gives counts and percentiles, and a clean end
        exits 0.
        """
        self.watcher.dataReceived(b"")  # nothing arrived yet is still nothing
        self.out.truncate(0)
        self.out.seek(0)
        self.watcher = Watcher(self.clock.seconds(), self.clock, self.out)
        self.watcher.done.addCallback(self.codes.append)
        self.feed()
        lines = self.out.getvalue().splitlines()
        self.assertEqual(len(lines), 3)
        self.assertRegex(lines[0], r"^\s+1\s+0\.100 s\s+2\.0 ms\s+\d+ B  \{\"seq\":1,")
        self.assertRegex(lines[1], r"^\s+2\s+0\.200 s\s+100\.0 ms\s+2\.0 ms")
        self.watcher.connectionLost(Failure(ResponseDone()))
        summary = self.out.getvalue().splitlines()[3:]
        self.assertRegex(summary[0], r"^-- 3 chunks, \d+ bytes in 0\.300 s; first byte after 100\.0 ms$")
        self.assertEqual(summary[1], "   gap ms  : p50 100.0  p90 100.0  p99 100.0  max 100.0")
        self.assertEqual(summary[2], "   delay ms: p50 2.0  p90 2.0  p99 2.0  max 2.0")
        self.assertEqual(summary[3], "   ended cleanly")
        self.assertEqual(self.codes, [EXIT_CLEAN])

    def test_truncated(self) -> None:
        """
        A body that breaks off is reported as truncated, and exits 1.
        """
        self.feed()
        self.watcher.connectionLost(Failure(ResponseFailed([Failure(ConnectionLost())])))
        self.assertIn(
            "TRUNCATED: the stream broke off (the connection to the upstream was lost)", self.out.getvalue()
        )
        self.assertEqual(self.codes, [EXIT_TRUNCATED])

    def test_quiet(self) -> None:
        """
        Quiet: the summary only.
        """
        self.watcher.quiet = True
        self.feed()
        self.watcher.connectionLost(Failure(ResponseDone()))
        self.assertTrue(self.out.getvalue().startswith("-- 3 chunks"))


@onceAcrossRunners
class ChunkwatchTests(TestCase):
    """
    The real C{chunkwatch} command against the real generator and proxy.
    """

    timeout = 60

    @inlineCallbacks
    def test_live(self) -> Any:
        """
        Lines are printed as the chunks arrive, not at the end, and a clean
        end exits 0.
        """
        generator: Server = yield startTwistd(self, "chunkgen")
        watched = chunkwatch(generator.url + "generate?count=5&interval=0.3")
        code = yield watched.exitCode
        self.assertEqual(code, 0, watched.stderr)
        rows = [(when, line) for when, line in watched.lines if b"Chunk " in line]
        self.assertEqual(len(rows), 5)
        self.assertGreater(rows[-1][0] - rows[0][0], 1.0)
        self.assertIn("ended cleanly", watched.text)
        self.assertRegex(watched.text, r"delay ms: p50 \d+\.\d")

    @inlineCallbacks
    def test_chatCompletion(self) -> Any:
        """
        C{--data} POSTs a chat completion; the deltas are shown by their
        content as they arrive, at the mock's pace.
        """
        generator: Server = yield startTwistd(self, "chunkgen", "--ttft", "0.1", "--tokens-per-second", "20")
        body = json.dumps(
            {"model": "mock-echo", "stream": True, "messages": [{"role": "user", "content": "one two three four"}]}
        )
        watched = chunkwatch("--data", body, "-H", "X-Mock-Tokens-Per-Second: 10", generator.url + "v1/chat/completions")
        code = yield watched.exitCode
        self.assertEqual(code, 0, watched.stderr)
        self.assertIn("chunkwatch: POST", watched.text)
        rows = [(when, line) for when, line in watched.lines if b" delta " in line]
        self.assertEqual([line.split(b" delta ")[1] for _, line in rows], [b'"one"', b'" two"', b'" three"', b'" four"'])
        self.assertGreater(rows[-1][0] - rows[0][0], 0.25, "the header's pace: 10 tokens a second")
        self.assertIn("ended cleanly", watched.text)

    @inlineCallbacks
    def test_truncatedExitsOne(self) -> Any:
        """
        A stream that breaks off (here, through the proxy) exits 1.
        """
        upstream = Upstream(self, BreaksOff())
        proxy: Server = yield startTwistd(self, "chunkproxy", "--upstream", upstream.url)
        watched = chunkwatch(proxy.url + "stream")
        code = yield watched.exitCode
        self.assertEqual(code, 1)
        self.assertIn("TRUNCATED", watched.text)

    @inlineCallbacks
    def test_httpErrorExitsThree(self) -> Any:
        """
        An HTTP error status exits 3, after showing the body.
        """
        generator: Server = yield startTwistd(self, "chunkgen")
        watched = chunkwatch(generator.url + "generate?count=oops")
        code = yield watched.exitCode
        self.assertEqual(code, 3)
        self.assertIn("HTTP 400 Bad Request", watched.text)
        self.assertIn("count must be a whole number", watched.text)
        self.assertIn("   HTTP ERROR 400: the answer is an error (its body arrived whole)", watched.text)
        self.assertNotIn("ended cleanly", watched.text)

    @inlineCallbacks
    def test_badCommandLineExitsTwo(self) -> Any:
        """
        A bad URL exits 2 with the reason.
        """
        watched = chunkwatch("ftp://example.com/")
        code = yield watched.exitCode
        self.assertEqual(code, 2)
        self.assertEqual(
            watched.stderr,
            b"chunkwatch: need an absolute http:// or https:// URL, not 'ftp://example.com/'\n"
            b"(chunkwatch --help lists the options.)\n",
        )
