"""
End-to-end tests: the real C{twistd -n chunkgen} and C{twistd -n chunkproxy}
processes, on loopback sockets, with real timing, real failures and real
clients.
"""

from __future__ import annotations

import os
from typing import Any, Optional

from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.internet.interfaces import IDelayedCall
from twisted.internet.protocol import Factory, Protocol, connectionDone
from twisted.internet.task import LoopingCall, deferLater
from twisted.python.failure import Failure
from twisted.trial.unittest import TestCase
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request

from tests.support import (
    BreaksOff,
    Exchange,
    Server,
    StrictClient,
    Upstream,
    curl,
    fetch,
    freePort,
    onceAcrossRunners,
    portOf,
    reactor,
    startTwistd,
)

MiB = 1024 * 1024


class _Ticker(Resource):
    """
    Streams a line every 20 ms until its client goes away, and notes when
    that happens.
    """

    isLeaf = True

    def __init__(self) -> None:
        super().__init__()
        self.gone: Deferred[float] = Deferred()
        self.ticks = 0

    def render_GET(self, request: Request) -> int:
        def tick() -> None:
            self.ticks += 1
            request.write(b"tick %d\n" % (self.ticks,))

        loop = LoopingCall(tick)
        loop.start(0.02)

        def gone(reason: Failure) -> None:
            loop.stop()
            self.gone.callback(reactor.seconds())

        request.notifyFinish().addErrback(gone)
        return NOT_DONE_YET


class _Silent(Protocol):
    """
    Accepts a connection and never answers.
    """


class _SilentWatched(Protocol):
    """
    Accepts a connection, never answers, and notes when it opens and closes.
    """

    opened: Deferred[None]
    closed: Deferred[float]

    def connectionMade(self) -> None:
        self.opened.callback(None)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self.closed.callback(reactor.seconds())




@onceAcrossRunners
class StreamingTests(TestCase):
    """
    Chunks through the real proxy from the real generator.
    """

    timeout = 60

    @inlineCallbacks
    def startBoth(self, *proxyOptions: str) -> Any:
        generator: Server = yield startTwistd(self, "chunkgen")
        proxy: Server = yield startTwistd(
            self, "chunkproxy", "--upstream", generator.url + "generate", *proxyOptions
        )
        return generator, proxy

    @inlineCallbacks
    def test_realTime(self) -> Any:
        """
        With the defaults (100 chunks, 100 ms apart) the first chunk reaches
        the client within 300 ms, and the chunks arrive spread over the whole
        10 s, each about when the generator sent it: the proxy holds nothing
        back.
        """
        _, proxy = yield self.startBoth()
        exchange: Exchange = yield fetch(proxy.url + "stream")
        self.assertEqual(exchange.status, 200)
        self.assertTrue(exchange.complete, exchange.error)
        lines = exchange.lineArrivals()
        self.assertEqual(
            [line.split(b" [")[0] for _, line in lines],
            [b"Chunk %d" % (i,) for i in range(1, 101)],
        )
        first = lines[0][0]
        self.assertLess(first - exchange.sentAt, 0.3)
        self.assertGreaterEqual(lines[-1][0] - first, 9.0)
        for i, (when, line) in enumerate(lines):
            # Chunk i+1 is sent at i * 100 ms: it must not arrive early
            # (bunched) or late (held back), beyond scheduling noise.
            self.assertGreater(when - first, i * 0.1 - 0.05, line)
            self.assertLess(when - first, i * 0.1 + 0.25, line)

    @inlineCallbacks
    def test_curl(self) -> Any:
        """
        C{curl -N} through the proxy gets each chunk as it is sent, and a
        clean end.
        """
        _, proxy = yield self.startBoth()
        client = curl(proxy.url + "stream?count=5&interval=0.2&format=sse")
        exitCode = yield client.exitCode
        self.assertEqual(exitCode, 0, client.stderr)
        events = [(when, line) for when, line in client.lines if line.startswith(b"data: ")]
        self.assertEqual(len(events), 5)
        gaps = [later - earlier for (earlier, _), (later, _) in zip(events[:-1], events[1:], strict=True)]
        for gap in gaps:
            self.assertGreater(gap, 0.1, gaps)

    @inlineCallbacks
    def test_bothFromOneDirectory(self) -> Any:
        """
        C{twistd -n chunkgen} and C{twistd -n chunkproxy} started from one
        directory, with no C{--pidfile}, both run: each writes its own
        pidfile.
        """
        here = self.mktemp()
        os.makedirs(here)
        generator: Server = yield startTwistd(self, "chunkgen", twistdOptions=(), cwd=here)
        proxy: Server = yield startTwistd(
            self, "chunkproxy", "--upstream", generator.url + "generate", twistdOptions=(), cwd=here
        )
        for name, process in (("chunkgen", generator), ("chunkproxy", proxy)):
            with open(os.path.join(here, name + ".pid")) as pidfile:
                self.assertEqual(int(pidfile.read()), process.pid)
        self.assertFalse(os.path.exists(os.path.join(here, "twistd.pid")))
        exchange: Exchange = yield fetch(proxy.url + "stream?count=2&interval=0")
        self.assertEqual(len(exchange.lineArrivals()), 2)

    @inlineCallbacks
    def test_slowClientBoundedMemory(self) -> Any:
        """
        A client reading a 256 MiB stream at 1 MiB/s does not make the
        proxy's memory grow: it stops reading the upstream while the client
        is behind. (A proxy that buffered would hold hundreds of MiB within
        a second.)
        """
        _, proxy = yield self.startBoth()
        baseline = proxy.rssKiB()
        reader = _SlowReader(MiB)
        reader.request = b"GET /stream?count=256&size=1048576&interval=0 HTTP/1.1\r\nHost: p\r\n\r\n"
        connected = yield _connect(proxy.port, reader)
        self.addCleanup(reader.stop)
        peak = baseline
        for _ in range(16):
            yield deferLater(reactor, 0.25)
            peak = max(peak, proxy.rssKiB())
        grewMiB = (peak - baseline) / 1024
        self.assertGreater(reader.received, 2 * MiB, "the stream should be flowing")
        self.assertLess(reader.received, 8 * MiB, "the reader should be slow")
        self.assertLess(grewMiB, 32, f"proxy RSS grew {grewMiB:.1f} MiB")
        del connected


class _SlowReader(Protocol):
    """
    Reads at a fixed rate, by pausing its transport whenever it is ahead.
    """

    request = b""

    def __init__(self, bytesPerSecond: int) -> None:
        self.rate = bytesPerSecond
        self.received = 0
        self.started = 0.0
        self._resume: Optional[IDelayedCall] = None

    def connectionMade(self) -> None:
        self.started = reactor.seconds()
        self.transport.write(self.request)  # type: ignore[union-attr]

    def dataReceived(self, data: bytes) -> None:
        self.received += len(data)
        ahead = self.received / self.rate - (reactor.seconds() - self.started)
        if ahead > 0 and self._resume is None:
            self.transport.pauseProducing()  # type: ignore[union-attr]
            self._resume = reactor.callLater(ahead, self._go)

    def _go(self) -> None:
        self._resume = None
        self.transport.resumeProducing()  # type: ignore[union-attr]

    def stop(self) -> None:
        if self._resume is not None:
            self._resume.cancel()
            self._resume = None
        if self.transport is not None:
            self.transport.abortConnection()  # type: ignore[attr-defined]


def _connect(port: int, protocol: Protocol) -> Deferred[Any]:
    from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol

    return connectProtocol(TCP4ClientEndpoint(reactor, "127.0.0.1", port), protocol)


@onceAcrossRunners
class FailureTests(TestCase):
    """
    Each way the upstream or the client can fail, against the real proxy.
    """

    timeout = 60

    def proxy(self, upstream: str, *options: str) -> Deferred[Server]:
        return startTwistd(self, "chunkproxy", "--upstream", upstream, *options)

    @inlineCallbacks
    def assertOneLineError(self, proxy: Server, code: int, reason: bytes) -> Any:
        exchange: Exchange = yield fetch(proxy.url + "stream")
        self.assertEqual(exchange.status, code)
        self.assertTrue(exchange.complete, exchange.error)
        self.assertEqual(exchange.header(b"content-type"), [b"text/plain; charset=utf-8"])
        self.assertEqual(exchange.body, reason + b"\n")
        return exchange

    @inlineCallbacks
    def test_refused(self) -> Any:
        """
        An upstream that refuses the connection: 502, a one-line reason, and
        a log line.
        """
        proxy = yield self.proxy(f"http://127.0.0.1:{freePort()}/generate")
        yield self.assertOneLineError(proxy, 502, b"upstream refused the connection")
        self.assertIn("502 upstream refused the connection", proxy.output)

    @inlineCallbacks
    def test_unresolvable(self) -> Any:
        """
        An upstream whose name does not resolve: 502.
        """
        proxy = yield self.proxy("http://no-such-host.invalid/generate")
        yield self.assertOneLineError(proxy, 502, b"upstream host name could not be resolved")

    @inlineCallbacks
    def test_noHeadersInTime(self) -> Any:
        """
        An upstream that accepts the connection and never answers: 504 once
        C{--connect-timeout} has passed.
        """
        silent = reactor.listenTCP(0, Factory.forProtocol(_Silent), interface="127.0.0.1")
        self.addCleanup(silent.stopListening)
        proxy = yield self.proxy(
            f"http://127.0.0.1:{portOf(silent)}/", "--connect-timeout", "0.5"
        )
        exchange = yield self.assertOneLineError(
            proxy, 504, b"upstream sent no response headers within 0.5 s"
        )
        waited = exchange.closedAt - exchange.sentAt
        self.assertTrue(0.5 <= waited < 2.0, waited)

    @inlineCallbacks
    def test_brokenMidStream(self) -> Any:
        """
        An upstream that breaks off mid-body: the client gets what was sent,
        then a connection closed without the terminating chunk, which a
        strict client reports as truncated (never a clean end).
        """
        upstream = Upstream(self, BreaksOff())
        proxy = yield self.proxy(upstream.url)
        exchange: Exchange = yield fetch(proxy.url + "stream")
        self.assertEqual(exchange.status, 200)
        self.assertEqual(exchange.body, b"line 1\nline 2\n")
        self.assertFalse(exchange.complete)
        self.assertIsNotNone(exchange.error)
        self.assertIn(
            f"GET {upstream.url}: the upstream body broke off after 14 bytes (the upstream closed the connection);"
            " the client's connection is closed before the end of the body",
            proxy.output,
        )

    @inlineCallbacks
    def test_brokenMidStreamCurl(self) -> Any:
        """
        C{curl} sees the same truncation: exit code 18 (partial transfer).
        """
        upstream = Upstream(self, BreaksOff())
        proxy = yield self.proxy(upstream.url)
        client = curl(proxy.url + "stream")
        exitCode = yield client.exitCode
        self.assertEqual(exitCode, 18, client.stderr)
        self.assertEqual([line for _, line in client.lines], [b"line 1", b"line 2"])

    @inlineCallbacks
    def test_clientLeavesUpstreamClosed(self) -> Any:
        """
        A client that disconnects mid-stream makes the proxy close its
        upstream connection within 100 ms, so the source stops generating.
        """
        ticker = _Ticker()
        upstream = Upstream(self, ticker)
        proxy = yield self.proxy(upstream.url)
        leftAt: list[float] = []

        def leaveAfterThird(client: StrictClient) -> None:
            if len(client.exchange.pieces) == 3 and not leftAt:
                leftAt.append(reactor.seconds())
                client.tcp.abortConnection()

        exchange: Exchange = yield fetch(proxy.url + "stream", onPiece=leaveAfterThird)
        self.assertEqual(len(exchange.pieces), 3)
        goneAt = yield ticker.gone.addTimeout(5, reactor)
        self.assertLess(goneAt - leftAt[0], 0.1)
        ticksThen = ticker.ticks
        yield deferLater(reactor, 0.1)
        self.assertEqual(ticker.ticks, ticksThen, "the upstream kept generating")

    @inlineCallbacks
    def test_clientLeavesBeforeHeaders(self) -> Any:
        """
        A client that disconnects while the proxy still waits for the
        upstream's headers makes the proxy cancel the upstream request: its
        connection closes within 100 ms.
        """
        watched = _SilentWatched()
        watched.opened = Deferred()
        watched.closed = Deferred()
        silent = reactor.listenTCP(0, Factory.forProtocol(lambda: watched), interface="127.0.0.1")
        self.addCleanup(silent.stopListening)
        proxy = yield self.proxy(f"http://127.0.0.1:{portOf(silent)}/")
        client = StrictClient(b"GET", b"/stream", [(b"Host", b"proxy")])
        yield _connect(proxy.port, client)
        yield watched.opened.addTimeout(5, reactor)
        leftAt = reactor.seconds()
        client.tcp.abortConnection()
        closedAt = yield watched.closed.addTimeout(5, reactor)
        self.assertLess(closedAt - leftAt, 0.1)
