"""
Tests for L{twisted_stream.mock.generator}: exact timing on L{task.Clock}, over
StubTreq's in-memory HTTP.
"""

from __future__ import annotations

from typing import Any

import treq
from treq.testing import StubTreq
from twisted.internet.error import ConnectionDone
from twisted.internet.task import Clock
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from tests.support import StreamingRequest, render
from twisted_stream.mock.formats import SSE, TEXT, chunkText
from twisted_stream.mock.generator import (
    GenerateResource,
    GeneratorRoot,
    StreamSpec,
    parseCount,
    parseInterval,
    parseStreamSpec,
)


class ParseTests(SynchronousTestCase):
    def test_defaults(self) -> None:
        """
        No query parameters: the defaults.
        """
        defaults = StreamSpec(count=5, interval=0.5)
        self.assertEqual(parseStreamSpec({}, defaults), defaults)

    def test_overrides(self) -> None:
        """
        Each parameter overrides its default.
        """
        spec = parseStreamSpec(
            {b"count": [b"3"], b"interval": [b"0.25"], b"size": [b"64"], b"format": [b"sse"]},
            StreamSpec(),
        )
        self.assertEqual(spec, StreamSpec(count=3, interval=0.25, size=64, format=SSE))

    def test_limits(self) -> None:
        """
        The largest values allowed are allowed.
        """
        self.assertEqual(parseCount("1000000"), 1_000_000)
        self.assertEqual(parseInterval("60"), 60.0)
        self.assertEqual(parseInterval(".5"), 0.5)
        self.assertEqual(parseInterval("0"), 0.0)

    def test_badValues(self) -> None:
        """
        Each bad value is refused with a one-line reason that names the
        parameter.
        """
        bad = {
            b"count": [b"-1", b"abc", b"1000001", b"1e3", b"+5", b" 5", b"", b"\xd9\xa3"],
            b"interval": [b"-0.1", b"nan", b"inf", b"60.01", b"1e1", b"x", b""],
            b"size": [b"1048577", b"-1", b"big"],
            b"format": [b"xml", b"", b"TEXT"],
        }
        for name, values in bad.items():
            for value in values:
                with self.assertRaises(ValueError, msg=(name, value)) as caught:
                    parseStreamSpec({name: [value]}, StreamSpec())
                reason = str(caught.exception)
                self.assertIn(name.decode(), reason)
                self.assertNotIn("\n", reason)

    def test_unknownAndRepeated(self) -> None:
        """
        An unknown parameter or a repeated one is refused.
        """
        with self.assertRaises(ValueError) as caught:
            parseStreamSpec({b"cnt": [b"3"]}, StreamSpec())
        self.assertIn("unknown parameter 'cnt'", str(caught.exception))
        with self.assertRaises(ValueError) as caught:
            parseStreamSpec({b"count": [b"3", b"4"]}, StreamSpec())
        self.assertIn("count given 2 times", str(caught.exception))


def _expected(i: int, sentAt: float, fmt: Any = TEXT, size: int = 0) -> bytes:
    rendered: bytes = fmt.render(i, sentAt, size)
    return rendered


class StreamTests(SynchronousTestCase):
    """
    The stream, seen by an HTTP client over StubTreq, on a fake clock.
    """

    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(1_764_000_000)
        self.client: Any = StubTreq(GeneratorRoot(StreamSpec(count=4, interval=0.5), self.clock))
        self.pieces: list[bytes] = []

    def get(self, url: str, method: str = "GET") -> Any:
        response = self.successResultOf(self.client.request(method, url))
        self.done = treq.collect(response, self.pieces.append)
        return response

    def test_onePerTick(self) -> None:
        """
        The first chunk goes at once, then one per interval, then the stream
        ends; each carries its number and send time.
        """
        start = self.clock.seconds()
        response = self.get("http://gen/generate")
        self.assertEqual(response.code, 200)
        self.assertEqual(response.headers.getRawHeaders(b"content-type"), [b"text/plain; charset=utf-8"])
        self.assertEqual(response.headers.getRawHeaders(b"cache-control"), [b"no-cache"])
        self.assertEqual(response.headers.getRawHeaders(b"x-accel-buffering"), [b"no"])
        self.client.flush()
        self.assertEqual(self.pieces, [_expected(1, start)])
        for i in range(2, 5):
            self.clock.advance(0.49)
            self.client.flush()
            self.assertEqual(len(self.pieces), i - 1, "a chunk came early")
            self.clock.advance(0.01)
            self.client.flush()
            self.assertEqual(self.pieces[-1], _expected(i, start + (i - 1) * 0.5))
        self.assertIsNone(self.successResultOf(self.done))
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_queryOverrides(self) -> None:
        """
        Query parameters override the defaults for one request.
        """
        start = self.clock.seconds()
        self.get("http://gen/generate?count=2&interval=2&format=sse&size=100")
        self.client.flush()
        self.clock.advance(2)
        self.client.flush()
        self.successResultOf(self.done)
        self.assertEqual(
            self.pieces, [_expected(1, start, SSE, 100), _expected(2, start + 2, SSE, 100)]
        )

    def test_zeroCount(self) -> None:
        """
        C{count=0} is an empty stream that ends at once.
        """
        response = self.get("http://gen/generate?count=0")
        self.client.flush()
        self.assertEqual(response.code, 200)
        self.successResultOf(self.done)
        self.assertEqual(self.pieces, [])

    def test_badRequest(self) -> None:
        """
        A bad parameter gets 400 with a one-line plain-text reason, and no
        timer starts.
        """
        for query in ("count=-1", "interval=61", "size=2000000", "format=xml", "count=x", "bogus=1"):
            self.pieces.clear()
            response = self.get("http://gen/generate?" + query)
            self.client.flush()
            self.successResultOf(self.done)
            self.assertEqual(response.code, 400, query)
            self.assertEqual(response.headers.getRawHeaders(b"content-type"), [b"text/plain; charset=utf-8"])
            body = b"".join(self.pieces)
            self.assertEqual(body.count(b"\n"), 1, body)
            self.assertTrue(body.endswith(b"\n"))
            self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_head(self) -> None:
        """
        HEAD gets the stream's headers, no body, and starts no timer.
        """
        response = self.get("http://gen/generate?format=sse", method="HEAD")
        self.client.flush()
        self.successResultOf(self.done)
        self.assertEqual(response.code, 200)
        self.assertEqual(response.headers.getRawHeaders(b"content-type"), [b"text/event-stream"])
        self.assertEqual(self.pieces, [])
        self.assertEqual(self.clock.getDelayedCalls(), [])
        bad = self.get("http://gen/generate?count=x", method="HEAD")
        self.assertEqual(bad.code, 400)

    def test_notFound(self) -> None:
        """
        Unknown paths get a plain-text 404.
        """
        for url in ("http://gen/nope", "http://gen/generate/more", "http://gen/generate/"):
            self.pieces.clear()
            response = self.get(url)
            self.client.flush()
            self.assertEqual(response.code, 404, url)
            self.assertIn(b"no such resource", b"".join(self.pieces))

    def test_methodNotAllowed(self) -> None:
        """
        Only GET and HEAD are answered, with a 405 that says which.
        """
        response = self.get("http://gen/generate", method="POST")
        self.client.flush()
        self.assertEqual(response.code, 405)
        self.assertEqual(response.headers.getRawHeaders(b"allow"), [b"GET, HEAD"])
        self.assertEqual(b"".join(self.pieces), b"method POST is not allowed here\n")

    def test_usage(self) -> None:
        """
        C{/} describes the generator's parameters and their defaults.
        """
        self.get("http://gen/")
        self.client.flush()
        text = b"".join(self.pieces).decode()
        self.assertIn("GET /generate?count=N", text)
        self.assertIn("(default 4)", text)


class LifecycleTests(SynchronousTestCase):
    """
    The stream's timer, against a request whose connection the test
    controls.
    """

    def setUp(self) -> None:
        self.clock = Clock()
        self.resource = GenerateResource(StreamSpec(count=10, interval=1.0), self.clock)
        self.request = StreamingRequest([])

    def test_clientGoneStopsTimer(self) -> None:
        """
        When the client goes away, the timer stops at once: no timer is left
        behind and nothing more is written.
        """
        render(self.resource, self.request)
        self.clock.advance(1)
        written = list(self.request.written)
        self.assertEqual(len([w for w in written if w]), 2)
        self.request.processingFailed(Failure(ConnectionDone()))
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.clock.advance(10)
        self.assertEqual(self.request.written, written)
        self.assertEqual(self.request.finished, 0)

    def test_pauseAndResume(self) -> None:
        """
        The stream is the request's push producer: while paused (the client's
        connection is full) no chunk is made; on resume it goes on where it
        was, delayed and not dropped.
        """
        render(self.resource, self.request)
        producer = self.request.producer
        assert producer is not None
        producer.pauseProducing()
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.clock.advance(5)
        self.assertEqual([w for w in self.request.written if w], [_expected(1, 0)])
        producer.resumeProducing()
        self.clock.advance(1)
        self.assertEqual([w for w in self.request.written if w][-1], _expected(2, 6))
        # One interval at a time: a LoopingCall skips ticks missed in a jump.
        self.clock.pump([1.0] * 8)
        self.assertEqual(
            [chunkText(i, 0).split(" [")[0] for i in range(1, 11)],
            [w.decode().split(" [")[0] for w in self.request.written if w],
        )
        self.assertEqual(self.request.finished, 1)
        self.assertIsNone(self.request.producer)

    def test_stopProducing(self) -> None:
        """
        C{stopProducing} (the connection is going) stops the timer for good.
        """
        render(self.resource, self.request)
        producer = self.request.producer
        assert producer is not None
        producer.stopProducing()
        self.assertEqual(self.clock.getDelayedCalls(), [])
        producer.resumeProducing()
        self.assertEqual(self.clock.getDelayedCalls(), [])
