"""
The gateway end to end: the real C{twistd -n chunkproxy} process, with
upstreams in this process (to see what they received), on other stacks,
and over TLS, and real clients.
"""

from __future__ import annotations

import json
import sys
import zlib
from pathlib import Path
from typing import Any

from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.internet.endpoints import SSL4ServerEndpoint, TCP4ClientEndpoint, connectProtocol
from twisted.internet.interfaces import IListeningPort
from twisted.internet.protocol import Protocol, connectionDone
from twisted.internet.task import LoopingCall, deferLater
from twisted.python.failure import Failure
from twisted.trial.unittest import TestCase
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request, Site

from tests.support import (
    ChatUpstream,
    Exchange,
    FileContext,
    LineProcess,
    RawClient,
    Server,
    Upstream,
    curl,
    fetch,
    makeCertificates,
    onceAcrossRunners,
    portOf,
    reactor,
    startServer,
    startTwistd,
)

PEERS = Path(__file__).resolve().parent / "peers"
KEY = "Bearer sk-server-side-key-0123456789"
TOKEN = "client-token-abcdefghij"




class _Stalls(Resource):
    """
    An upstream that sends one SSE event, then nothing, until its client
    goes.
    """

    isLeaf = True

    def __init__(self) -> None:
        super().__init__()
        self.gone: Deferred[float] = Deferred()

    def render_GET(self, request: Request) -> int:
        request.setHeader(b"Content-Type", b"text/event-stream")
        request.write(b"data: first\n\n")
        request.notifyFinish().addErrback(lambda _: self.gone.callback(reactor.seconds()))
        return NOT_DONE_YET


class _GzipUpstream(Resource):
    """
    An upstream that sends a gzip-compressed body, flushed chunk by chunk,
    100 ms apart.
    """

    isLeaf = True

    def __init__(self) -> None:
        super().__init__()
        self.sent: list[bytes] = []
        self.acceptEncoding: list[bytes] = []

    def render_GET(self, request: Request) -> int:
        self.acceptEncoding = list(request.requestHeaders.getRawHeaders(b"accept-encoding", []))
        request.setHeader(b"Content-Type", b"text/plain")
        request.setHeader(b"Content-Encoding", b"gzip")
        compressor = zlib.compressobj(6, zlib.DEFLATED, 31)

        def write(data: bytes) -> None:
            self.sent.append(data)
            request.write(data)

        def tick() -> None:
            write(compressor.compress(b"line %d\n" % (len(self.sent) + 1,)) + compressor.flush(zlib.Z_SYNC_FLUSH))
            if len(self.sent) == 5:
                loop.stop()
                write(compressor.flush())
                request.finish()

        loop = LoopingCall(tick)
        loop.start(0.1)
        return NOT_DONE_YET


def _spread(exchange: Exchange) -> float:
    return exchange.pieces[-1][0] - exchange.pieces[0][0]


@onceAcrossRunners
class DoneWhenTests(TestCase):
    """
    The issue's own command: a streamed POST through a route, the key added
    on the server, the client's token checked and stripped.
    """

    timeout = 60

    @inlineCallbacks
    def test_streamedPostWithInjectedKey(self) -> Any:
        chat = ChatUpstream()
        upstream = Upstream(self, chat)
        proxy: Server = yield startTwistd(
            self,
            "chunkproxy",
            "--route", f"/v1/={upstream.url}v1/",
            "--inject-header", "Authorization: env:KEY",
            "--require-token", "env:TOKEN",
            env={"KEY": KEY, "TOKEN": TOKEN},
        )
        body = json.dumps({"model": "m", "stream": True, "messages": [{"role": "user", "content": "hi"}]}).encode()
        exchange: Exchange = yield fetch(
            proxy.url + "v1/chat/completions",
            method=b"POST",
            headers=[(b"Authorization", b"Bearer " + TOKEN.encode()), (b"Content-Type", b"application/json")],
            body=body,
        )
        self.assertEqual(exchange.status, 200)
        self.assertTrue(exchange.complete, exchange.error)
        events = [line for _, line in exchange.lineArrivals() if line.startswith(b"data: ")]
        self.assertEqual(events[-1], b"data: [DONE]")
        self.assertEqual(len(events), 6)
        self.assertGreater(_spread(exchange), 0.3, "the events should arrive as they are sent")
        seen = chat.seen[-1]
        self.assertEqual(seen["uri"], b"/v1/chat/completions")
        self.assertEqual(seen["body"], body)
        self.assertEqual(seen["headers"][b"authorization"], [KEY.encode()])
        self.assertEqual(seen["headers"][b"content-type"], [b"application/json"])

        refused: Exchange = yield fetch(proxy.url + "v1/chat/completions", method=b"POST", body=body)
        self.assertEqual(refused.status, 401)
        self.assertEqual(len(chat.seen), 1)
        # Neither the key nor the client's token is ever logged.
        self.assertNotIn(KEY, proxy.output)
        self.assertNotIn(TOKEN, proxy.output)
        self.assertNotIn("sk-server", proxy.output)


@onceAcrossRunners
class TLSUpstreamTests(TestCase):
    """
    C{https://} upstreams, verified, against a CA the test makes.
    """

    timeout = 60

    # trial waits for a Deferred from setUp; unittest's stubs say None.
    @inlineCallbacks
    def setUp(self) -> Any:  # type: ignore[override]
        directory = self.mktemp()
        self.ca, cert, key = makeCertificates(directory)
        self.otherCA, _, _ = makeCertificates(directory, "other")
        site = Site(ChatUpstream())
        endpoint = SSL4ServerEndpoint(reactor, 0, FileContext(cert, key), interface="127.0.0.1")
        port: IListeningPort = yield endpoint.listen(site)
        self.addCleanup(port.stopListening)
        self.url = f"https://localhost:{portOf(port)}/"

    @inlineCallbacks
    def post(self, *options: str) -> Any:
        proxy: Server = yield startTwistd(self, "chunkproxy", "--route", f"/s/={self.url}", *options)
        exchange: Exchange = yield fetch(proxy.url + "s/x", method=b"POST", body=b"{}")
        return proxy, exchange

    @inlineCallbacks
    def test_trustedCA(self) -> Any:
        """
        With C{--upstream-ca}, the upstream's certificate verifies, and the
        stream flows.
        """
        _, exchange = yield self.post("--upstream-ca", self.ca)
        self.assertEqual(exchange.status, 200)
        self.assertTrue(exchange.complete)
        self.assertIn(b"data: [DONE]", exchange.body)

    @inlineCallbacks
    def test_systemTrustRefuses(self) -> Any:
        """
        By default the system's trust store is used, which does not know the
        test's CA: 502 with a one-line reason.
        """
        proxy, exchange = yield self.post()
        self.assertEqual(exchange.status, 502)
        self.assertEqual(exchange.body, b"upstream TLS certificate did not verify\n")

    @inlineCallbacks
    def test_otherCARefuses(self) -> Any:
        _, exchange = yield self.post("--upstream-ca", self.otherCA)
        self.assertEqual(exchange.status, 502)
        self.assertEqual(exchange.body, b"upstream TLS certificate did not verify\n")


@onceAcrossRunners
class PeerTests(TestCase):
    """
    Upstreams and clients on other stacks.
    """

    timeout = 60

    def peer(self, script: str) -> Deferred[Server]:
        return startServer(self, [sys.executable, str(PEERS / script)])

    @inlineCallbacks
    def test_stdlibUpstream(self) -> Any:
        """
        Chunked text from the standard library's http.server is forwarded
        line by line as it is sent.
        """
        upstream: Server = yield self.peer("stdlib_chunked.py")
        proxy: Server = yield startTwistd(self, "chunkproxy", "--route", f"/s/={upstream.url}")
        exchange: Exchange = yield fetch(proxy.url + "s/path?q=1")
        self.assertTrue(exchange.complete, exchange.error)
        lines = exchange.lineArrivals()
        self.assertEqual([line for _, line in lines], [b"line %d /path?q=1" % (i,) for i in range(1, 6)])
        self.assertGreater(lines[-1][0] - lines[0][0], 0.3)

    @inlineCallbacks
    def test_aiohttpSSE(self) -> Any:
        """
        Server-Sent Events from an aiohttp app reach h11, curl and httpx
        event by event.
        """
        upstream: Server = yield self.peer("aiohttp_sse.py")
        proxy: Server = yield startTwistd(self, "chunkproxy", "--route", f"/sse/={upstream.url}")
        url = proxy.url + "sse/events"
        exchange: Exchange = yield fetch(url)
        self.assertTrue(exchange.complete, exchange.error)
        self.assertEqual(exchange.header(b"content-type"), [b"text/event-stream"])
        self.assertEqual(len([1 for _, line in exchange.lineArrivals() if line.startswith(b"data: ")]), 5)
        self.assertGreater(_spread(exchange), 0.3)

        viaCurl = curl(url)
        code = yield viaCurl.exitCode
        self.assertEqual(code, 0, viaCurl.stderr)
        data = [when for when, line in viaCurl.lines if line.startswith(b"data: ")]
        self.assertEqual(len(data), 5)
        self.assertGreater(data[-1] - data[0], 0.3)

        viaHttpx = LineProcess.spawn(sys.executable, str(PEERS / "httpx_stream.py"), url)
        code = yield viaHttpx.exitCode
        self.assertEqual(code, 0, viaHttpx.stderr)
        self.assertEqual(viaHttpx.lines[0][1], b"status 200")
        pieces = [float(line.split()[0]) for _, line in viaHttpx.lines if b"data: " in line]
        self.assertGreaterEqual(len(pieces), 4, viaHttpx.text)
        self.assertGreater(pieces[-1] - pieces[0], 0.3, viaHttpx.text)


class _Silent(Protocol):
    """
    Connects, sends nothing, and notes when the far side closes.
    """

    def __init__(self) -> None:
        self.closed: Deferred[float] = Deferred()

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self.closed.callback(reactor.seconds())


class _KeepAlive(Protocol):
    """
    Sends one request after another on the same connection, each once the
    previous chunked response has ended.
    """

    def __init__(self, requests: list[bytes], pause: float) -> None:
        self.requests = requests
        self.pause = pause
        self.answers: list[bytes] = [b""]
        self.closed: Deferred[float] = Deferred()

    def connectionMade(self) -> None:
        self.transport.write(self.requests.pop(0))  # type: ignore[union-attr]

    def dataReceived(self, data: bytes) -> None:
        self.answers[-1] += data
        if self.answers[-1].endswith(b"0\r\n\r\n") and self.requests:
            self.answers.append(b"")
            reactor.callLater(self.pause, self.transport.write, self.requests.pop(0))  # type: ignore[union-attr]

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self.closed.callback(reactor.seconds())


@onceAcrossRunners
class EdgeTests(TestCase):
    """
    What clients can do wrong or strangely, against the real gateway.
    """

    timeout = 60

    # trial waits for a Deferred from setUp; unittest's stubs say None.
    @inlineCallbacks
    def setUp(self) -> Any:  # type: ignore[override]
        self.generator: Server = yield startTwistd(self, "chunkgen")
        self.chat = ChatUpstream()
        self.upstream = Upstream(self, self.chat)
        self.proxy: Server = yield startTwistd(
            self,
            "chunkproxy",
            "--upstream", self.generator.url + "generate",
            "--route", f"/v1/={self.upstream.url}v1/",
            "--max-body", "1000",
            "--client-timeout", "0.5",
            "--connect-timeout", "2",
        )

    @inlineCallbacks
    def test_everyResponseIsStrictHTTP(self) -> Any:
        """
        Every kind of response the gateway sends parses cleanly with h11 as
        a strict HTTP/1.1 client, and ends as it should.
        """
        url = self.proxy.url
        cases: list[tuple[bytes, str, bytes | None, int]] = [
            (b"GET", "stream?count=3&interval=0.05", None, 200),
            (b"HEAD", "stream", None, 200),
            (b"POST", "v1/chat", b"{}", 200),
            (b"GET", "", None, 200),
            (b"GET", "nowhere", None, 404),
            (b"GET", "stream?count=-1", None, 400),
            (b"GET", "v1/%2e%2e/x", None, 400),
            (b"POST", "v1/chat", b"x" * 1001, 413),
            (b"BREW", "v1/chat", None, 405),
        ]
        for method, path, body, status in cases:
            exchange: Exchange = yield fetch(url + path, method=method, body=body)
            self.assertEqual(exchange.status, status, (method, path))
            self.assertIsNone(exchange.error, (method, path))
            self.assertTrue(exchange.complete, (method, path))
        self.assertEqual(len(self.chat.seen), 1, "only the one good POST went upstream")

    @inlineCallbacks
    def test_acceptEncodingGzipStillLive(self) -> Any:
        """
        A client that accepts gzip still gets each chunk as it is sent: the
        proxy adds no compression.
        """
        exchange: Exchange = yield fetch(
            self.proxy.url + "stream?count=5&interval=0.15", headers=[(b"Accept-Encoding", b"gzip, br")]
        )
        self.assertEqual(exchange.header(b"content-encoding"), [])
        self.assertEqual(len(exchange.lineArrivals()), 5)
        self.assertGreater(_spread(exchange), 0.45)

    @inlineCallbacks
    def test_gzipUpstreamPassedOnAsItStreams(self) -> Any:
        """
        A gzip-compressed upstream body reaches the client byte for byte as
        the upstream sent it, with its Content-Encoding, each flushed piece
        as it comes: the gateway decodes nothing. The client's
        Accept-Encoding reaches the upstream as the client sent it.
        """
        upstream = _GzipUpstream()
        gzipped = Upstream(self, upstream)
        proxy: Server = yield startTwistd(self, "chunkproxy", "--route", f"/z/={gzipped.url}")
        exchange: Exchange = yield fetch(proxy.url + "z/x", headers=[(b"Accept-Encoding", b"gzip;q=0.5, br")])
        self.assertTrue(exchange.complete, exchange.error)
        self.assertEqual(upstream.acceptEncoding, [b"gzip;q=0.5, br"])
        self.assertEqual(exchange.header(b"content-encoding"), [b"gzip"])
        self.assertEqual(exchange.body, b"".join(upstream.sent))
        self.assertEqual(zlib.decompress(exchange.body, 31), b"".join(b"line %d\n" % (i,) for i in range(1, 6)))
        self.assertGreater(_spread(exchange), 0.3)

    @inlineCallbacks
    def test_silentClientClosed(self) -> Any:
        """
        A client that connects and sends nothing is disconnected after
        C{--client-timeout}.
        """
        silent = _Silent()
        yield connectProtocol(TCP4ClientEndpoint(reactor, "127.0.0.1", self.proxy.port), silent)
        opened = reactor.seconds()
        closedAt = yield silent.closed.addTimeout(10, reactor)
        self.assertTrue(0.4 < closedAt - opened < 3.0, closedAt - opened)

    @inlineCallbacks
    def test_tricklingClientClosed(self) -> Any:
        """
        A client that sends a request a byte at a time (each byte would
        restart an idle timer) is answered 408 and closed once
        C{--client-timeout} has passed since its first byte.
        """
        raw = RawClient(b"GET /stream HTTP/1.1\r\nHost: gateway\r\nX-Slow: ", closeAfterHead=True)
        yield connectProtocol(TCP4ClientEndpoint(reactor, "127.0.0.1", self.proxy.port), raw)
        opened = reactor.seconds()
        trickle = LoopingCall(lambda: raw.transport.write(b"a"))  # type: ignore[union-attr]
        trickle.start(0.05)
        self.addCleanup(lambda: trickle.stop() if trickle.running else None)
        answer = yield raw.closed.addTimeout(10, reactor)
        waited = reactor.seconds() - opened
        self.assertTrue(answer.startswith(b"HTTP/1.1 408 Request Timeout\r\n"), answer[:80])
        self.assertTrue(answer.endswith(b"\r\n\r\nthe request did not arrive in full within 0.5 s\n"), answer)
        self.assertTrue(0.45 < waited < 2.0, waited)

    @inlineCallbacks
    def test_keepAliveRequestsEachGetTheirTime(self) -> Any:
        """
        On one kept-alive connection, each request gets its own arrival
        deadline, and the connection idles out after the last.
        """
        request = b"GET /stream?count=2&interval=0.1 HTTP/1.1\r\nHost: gateway\r\n\r\n"
        client = _KeepAlive([request, request, request], pause=0.3)
        yield connectProtocol(TCP4ClientEndpoint(reactor, "127.0.0.1", self.proxy.port), client)
        yield client.closed.addTimeout(10, reactor)
        self.assertEqual(len(client.answers), 3)
        for answer in client.answers:
            self.assertTrue(answer.startswith(b"HTTP/1.1 200 OK\r\n"), answer[:60])
            self.assertEqual(answer.count(b"Chunk "), 2)
            self.assertTrue(answer.endswith(b"0\r\n\r\n"))

    @inlineCallbacks
    def test_rawTargets(self) -> Any:
        """
        An absolute-form target gets 400, CONNECT 405, whatever Host says.
        """
        for request, status in (
            (b"GET http://other.example/v1/x HTTP/1.1\r\nHost: other.example\r\n\r\n", b"400"),
            (b"CONNECT other.example:443 HTTP/1.1\r\nHost: other.example:443\r\n\r\n", b"405"),
        ):
            raw = RawClient(request, closeAfterHead=True)
            yield connectProtocol(TCP4ClientEndpoint(reactor, "127.0.0.1", self.proxy.port), raw)
            answer = yield raw.closed
            self.assertTrue(answer.startswith(b"HTTP/1.1 " + status), answer[:80])
        yield deferLater(reactor, 0)
        self.assertEqual(self.chat.seen, [])


@onceAcrossRunners
class StreamTimingTests(TestCase):
    """
    Idle timeout, heartbeats and retries, on real sockets and clocks.
    """

    timeout = 60

    @inlineCallbacks
    def test_heartbeatsThenIdleTimeout(self) -> Any:
        """
        A stalled event stream gets a heartbeat every C{--heartbeat}
        seconds, and is cut off (truncated, upstream closed) once the
        upstream has sent nothing for C{--idle-timeout}.
        """
        stalls = _Stalls()
        upstream = Upstream(self, stalls)
        proxy: Server = yield startTwistd(
            self, "chunkproxy", "--route", f"/s/={upstream.url}", "--heartbeat", "0.3", "--idle-timeout", "1.2"
        )
        exchange: Exchange = yield fetch(proxy.url + "s/events")
        self.assertFalse(exchange.complete)
        self.assertIsNotNone(exchange.error)
        # Timed from the first event's arrival, when the proxy's watch
        # began (from the request, the stream's start on a loaded machine
        # counted too: a CI run saw the first beat 0.48 s after it). The
        # watch starts a moment before the event reaches the client.
        lines = [(when, line) for when, line in exchange.lineArrivals() if line]
        self.assertEqual(lines[0][1], b"data: first")
        began = lines[0][0] - 0.01
        beats = [when - began for when, line in lines if line == b": keep-alive"]
        self.assertTrue(3 <= len(beats) <= 4, lines)
        self.assertTrue(0.3 <= beats[0] < 0.45, beats)
        assert exchange.closedAt is not None
        self.assertTrue(1.2 <= exchange.closedAt - began < 1.6, exchange.closedAt - began)
        goneAt = yield stalls.gone.addTimeout(5, reactor)
        self.assertLess(abs(goneAt - exchange.closedAt), 0.1)

    @inlineCallbacks
    def test_retryReachesAnUpstreamThatCameUp(self) -> Any:
        """
        An upstream that refused the first connection and listens once the
        proxy has said it will try again is reached by the retry.
        """
        from tests.support import freePort

        port = freePort()
        proxy: Server = yield startTwistd(
            self, "chunkproxy", "--route", f"/s/=http://127.0.0.1:{port}/", "--retries", "3"
        )
        late: list[IListeningPort] = []

        def comeUpAfterRefusal() -> None:
            # Up only after a refusal: a timer could come before the first
            # attempt on a loaded machine, and then nothing is retried.
            if "trying again" in proxy.output:
                late.append(reactor.listenTCP(port, Site(ChatUpstream()), interface="127.0.0.1"))
            else:
                reactor.callLater(0.005, comeUpAfterRefusal)

        comeUpAfterRefusal()
        self.addCleanup(lambda: late[0].stopListening() if late else None)
        exchange: Exchange = yield fetch(proxy.url + "s/x", method=b"POST", body=b"{}")
        self.assertEqual(exchange.status, 200)
        self.assertIn(b"data: [DONE]", exchange.body)
        self.assertEqual(len(late), 1)

    @inlineCallbacks
    def test_clientTimeoutSparesStreams(self) -> Any:
        """
        C{--client-timeout} closes silent clients, never a response that is
        streaming to one.
        """
        generator: Server = yield startTwistd(self, "chunkgen")
        proxy: Server = yield startTwistd(
            self, "chunkproxy", "--upstream", generator.url + "generate", "--client-timeout", "0.3"
        )
        exchange: Exchange = yield fetch(proxy.url + "stream?count=4&interval=0.4")
        self.assertTrue(exchange.complete, exchange.error)
        self.assertEqual(len(exchange.lineArrivals()), 4)
