"""
Tests for L{twisted_stream.mock.formats}.
"""

from __future__ import annotations

import json
import time

from twisted.trial.unittest import SynchronousTestCase

from twisted_stream.mock.formats import FORMATS, NDJSON, SSE, TEXT, clockTime

SENT = 1_764_000_000.25  # a fixed moment, with a fraction of a second


class ClockTimeTests(SynchronousTestCase):
    def test_millisecondsAndLocalTime(self) -> None:
        """
        The time is the local wall-clock time with three decimals.
        """
        local = time.strftime("%H:%M:%S", time.localtime(SENT))
        self.assertEqual(clockTime(SENT), local + ".250")
        self.assertEqual(clockTime(SENT + 0.0019), local + ".251")


class RenderTests(SynchronousTestCase):
    def test_text(self) -> None:
        """
        Text is one line per chunk.
        """
        self.assertEqual(TEXT.render(7, SENT, 0), f"Chunk 7 [{clockTime(SENT)}]\n".encode())
        self.assertEqual(TEXT.contentType, b"text/plain; charset=utf-8")

    def test_sse(self) -> None:
        """
        SSE is one event per chunk, with the sequence number as its id.
        """
        self.assertEqual(
            SSE.render(7, SENT, 0), f"id: 7\ndata: Chunk 7 [{clockTime(SENT)}]\n\n".encode()
        )
        self.assertEqual(SSE.contentType, b"text/event-stream")

    def test_ndjson(self) -> None:
        """
        NDJSON is one JSON object per line, with the sequence number and the
        send time.
        """
        line = NDJSON.render(7, SENT, 0)
        self.assertTrue(line.endswith(b"}\n"))
        self.assertEqual(line.count(b"\n"), 1)
        self.assertEqual(
            json.loads(line),
            {"seq": 7, "sent": SENT, "text": f"Chunk 7 [{clockTime(SENT)}]"},
        )
        self.assertEqual(NDJSON.contentType, b"application/x-ndjson")

    def test_paddedToExactSize(self) -> None:
        """
        Every format pads a chunk to exactly the size asked for, and stays
        valid: one line, one event, one JSON object.
        """
        for fmt in FORMATS.values():
            natural = len(fmt.render(12, SENT, 0))
            for size in (natural + 1, natural + 2, 1000, 1024 * 1024):
                chunk = fmt.render(12, SENT, size)
                self.assertEqual(len(chunk), size, (fmt.name, size))
                self.assertTrue(chunk.startswith(fmt.render(12, SENT, 0)[:10]))
            self.assertEqual(TEXT.render(12, SENT, 100).count(b"\n"), 1)
            self.assertTrue(SSE.render(12, SENT, 100).endswith(b"\n\n"))
            self.assertEqual(SSE.render(12, SENT, 100).count(b"\n"), 3)
            self.assertEqual(json.loads(NDJSON.render(12, SENT, 100))["seq"], 12)

    def test_sizeBelowNaturalLength(self) -> None:
        """
        A size smaller than the chunk leaves it as it is: never cut.
        """
        for fmt in FORMATS.values():
            self.assertEqual(fmt.render(3, SENT, 5), fmt.render(3, SENT, 0))
