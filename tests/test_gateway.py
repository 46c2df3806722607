"""
Tests for L{twisted_stream.gateway._site} and the gateway behaviour of
L{twisted_stream.exchange._resource}: routes, methods and bodies, headers both ways,
credentials, no open relay, idle timeout and heartbeats. In memory, on a
fake clock.
"""

from __future__ import annotations

import gc
import json
from typing import Any, Optional

from treq.testing import RequestTraversalAgent
from twisted.internet import tcp
from twisted.internet.defer import inlineCallbacks
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase, TestCase
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request

from tests.support import (
    RawConnection,
    RawUpstream,
    StreamingRequest,
    fetch,
    portOf,
    reactor,
    render,
)
from twisted_stream.gateway import GatewayResource, GatewaySite, Route
from twisted_stream.page import PageResource
from twisted_stream.proxy import StreamProxyResource


class _Echo(Resource):
    """
    An upstream that answers every request with what it received, as JSON,
    and some headers to pass back.
    """

    isLeaf = True

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[dict[str, Any]] = []

    def render(self, request: Request) -> bytes:
        assert request.content is not None
        seen = {
            "method": request.method.decode(),
            "uri": request.uri.decode(),
            "headers": {k.decode().lower(): [v.decode() for v in vs] for k, vs in request.requestHeaders.getAllRawHeaders()},
            "body": request.content.read().decode(),
        }
        self.seen.append(seen)
        if request.uri.endswith(b"/redirect"):
            request.setResponseCode(302)
            request.setHeader(b"Location", b"http://elsewhere.example/")
            return b""
        request.responseHeaders.setRawHeaders(b"Set-Cookie", [b"session=abc; Path=/", b"theme=dark"])
        request.setHeader(b"Connection", b"X-Hop")
        request.setHeader(b"X-Hop", b"1")
        request.setHeader(b"X-End", b"2")
        request.setHeader(b"Content-Type", b"application/json")
        return json.dumps(seen).encode()


class _Held(Resource):
    """
    An upstream whose responses the test writes by hand.
    """

    isLeaf = True

    def __init__(self, contentType: bytes) -> None:
        super().__init__()
        self.contentType = contentType
        self.requests: list[Request] = []

    def render_GET(self, request: Request) -> int:
        request.setHeader(b"Content-Type", self.contentType)
        request.write(b"")
        self.requests.append(request)
        return NOT_DONE_YET


class _Gateway:
    """
    A gateway with routes to in-memory upstreams, and a way to send it
    requests and pump everything.
    """

    def __init__(self, case: SynchronousTestCase, upstream: Resource, **options: Any) -> None:
        self.clock = Clock()
        self.agent = RequestTraversalAgent(upstream)
        self.proxy = StreamProxyResource("http://up.example/api/", agent=self.agent, reactor=self.clock, **options)
        self.stream = StreamProxyResource(
            "http://up.example/generate", agent=self.agent, reactor=self.clock, **options
        )
        self.inner = StreamProxyResource("http://inner.example/", agent=self.agent, reactor=self.clock)
        self.gateway = GatewayResource(
            [Route(b"/v1/", self.proxy), Route(b"/stream", self.stream), Route(b"/v1/inner/", self.inner)],
            PageResource(),
        )

    def send(
        self,
        uri: bytes,
        method: bytes = b"GET",
        body: bytes = b"",
        headers: Optional[dict[bytes, list[bytes]]] = None,
    ) -> StreamingRequest:
        request = StreamingRequest([], method=method, uri=uri, body=body)
        request.clientproto = b"HTTP/1.1"
        request.requestHeaders.setRawHeaders(b"host", [b"gateway.example"])
        for name, values in (headers or {}).items():
            request.requestHeaders.setRawHeaders(name, values)
        result = render(self.gateway, request)
        if result != NOT_DONE_YET:
            request.write(result)
            request.finish()
        self.pump()
        return request

    def pump(self) -> None:
        for _ in range(4):
            self.agent.flush()


def _body(request: StreamingRequest) -> bytes:
    return b"".join(request.written)


def _echoed(request: StreamingRequest) -> dict[str, Any]:
    return json.loads(_body(request))


class RoutingTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.echo = _Echo()
        self.gw = _Gateway(self, self.echo)

    def test_prefixAndRest(self) -> None:
        """
        A path under a prefix goes to the route's URL plus the rest of the
        path plus the query string.
        """
        request = self.gw.send(b"/v1/chat/completions?stream=true&x=%20")
        self.assertEqual(request.responseCode, 200)
        self.assertEqual(_echoed(request)["uri"], "/api/chat/completions?stream=true&x=%20")

    def test_longestPrefixWins(self) -> None:
        self.gw.send(b"/v1/inner/thing")
        self.assertEqual(self.echo.seen[-1]["headers"]["host"], ["inner.example"])
        self.assertEqual(self.echo.seen[-1]["uri"], "/thing")

    def test_prefixWithoutSlashMatchesWholeSegments(self) -> None:
        """
        C{/stream} matches C{/stream} and C{/stream/x}, not C{/streams}.
        """
        self.assertEqual(_echoed(self.gw.send(b"/stream?count=2"))["uri"], "/generate?count=2")
        self.assertEqual(_echoed(self.gw.send(b"/stream/x"))["uri"], "/generate/x")
        request = self.gw.send(b"/streams")
        self.assertEqual(request.responseCode, 404)
        self.assertEqual(_body(request), b"no route for /streams\n")

    def test_noRoute(self) -> None:
        request = self.gw.send(b"/v2/models")
        self.assertEqual(request.responseCode, 404)
        self.assertEqual(len(self.echo.seen), 0)

    def test_page(self) -> None:
        request = self.gw.send(b"/")
        self.assertEqual(request.responseCode, None)  # 200 by default
        self.assertIn(b"<title>twisted-stream", _body(request))


class MethodsAndBodiesTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.echo = _Echo()
        self.gw = _Gateway(self, self.echo, maxBody=100)

    def test_everyMethodWithItsBody(self) -> None:
        """
        Each method goes upstream as it came, with its body unchanged.
        """
        payload = b'{"model":"m","messages":[{"role":"user","content":"hi \\u00e9"}],"stream":true}'
        for method in (b"POST", b"PUT", b"PATCH", b"DELETE"):
            request = self.gw.send(b"/v1/chat/completions", method, payload)
            seen = self.echo.seen[-1]
            self.assertEqual((seen["method"], seen["body"]), (method.decode(), payload.decode()), method)
            self.assertEqual(seen["headers"]["content-length"], [str(len(payload))])
            self.assertEqual(request.responseCode, 200)
        for method in (b"GET", b"OPTIONS", b"HEAD"):
            self.gw.send(b"/v1/models", method)
            seen = self.echo.seen[-1]
            self.assertEqual((seen["method"], seen["body"]), (method.decode(), ""))
            self.assertNotIn("content-length", seen["headers"])

    def test_emptyPost(self) -> None:
        """
        An empty POST is still a POST with a body of length 0.
        """
        self.gw.send(b"/v1/x", b"POST", b"", {b"Content-Length": [b"0"]})
        self.assertEqual(self.echo.seen[-1]["headers"]["content-length"], ["0"])

    def test_bodyTooLarge(self) -> None:
        """
        A body over the limit gets 413 and is never forwarded.
        """
        request = self.gw.send(b"/v1/x", b"POST", b"x" * 101)
        self.assertEqual(request.responseCode, 413)
        self.assertEqual(_body(request), b"the request body is over 100 bytes\n")
        self.assertEqual(self.echo.seen, [])
        self.assertEqual(self.gw.send(b"/v1/x", b"POST", b"x" * 100).responseCode, 200)


class HeaderTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.echo = _Echo()
        self.gw = _Gateway(self, self.echo)

    def test_toUpstream(self) -> None:
        """
        The upstream gets its own Host, the client's end-to-end headers, and
        where the request came from; hop-by-hop headers stay behind.
        """
        self.gw.send(
            b"/v1/x",
            headers={
                b"Host": [b"gateway.example"],
                b"Connection": [b"keep-alive, X-Client-Hop"],
                b"X-Client-Hop": [b"1"],
                b"TE": [b"trailers"],
                b"Accept": [b"text/event-stream"],
                b"X-Forwarded-For": [b"198.51.100.9"],
            },
        )
        headers = self.echo.seen[-1]["headers"]
        self.assertEqual(headers["host"], ["up.example"])
        self.assertEqual(headers["accept"], ["text/event-stream"])
        self.assertEqual(headers["x-forwarded-for"], ["198.51.100.9, 192.168.1.1"])
        self.assertEqual(headers["x-forwarded-proto"], ["http"])
        self.assertEqual(headers["x-forwarded-host"], ["gateway.example"])
        self.assertEqual(headers["via"], ["1.1 chunkproxy"])
        for hop in ("x-client-hop", "te"):
            self.assertNotIn(hop, headers)

    def test_hostCannotPickAnotherUpstream(self) -> None:
        self.gw.send(b"/v1/x", headers={b"Host": [b"evil.example"]})
        self.assertEqual(self.echo.seen[-1]["headers"]["host"], ["up.example"])

    def test_toClient(self) -> None:
        """
        The client gets the upstream's end-to-end headers, repeated ones
        kept, hop-by-hop ones dropped, and Via.
        """
        request = self.gw.send(b"/v1/x")
        headers = request.responseHeaders
        self.assertEqual(headers.getRawHeaders(b"set-cookie"), [b"session=abc; Path=/", b"theme=dark"])
        self.assertEqual(headers.getRawHeaders(b"x-end"), [b"2"])
        self.assertIsNone(headers.getRawHeaders(b"connection"))
        self.assertIsNone(headers.getRawHeaders(b"content-encoding"))
        # (X-Hop, which the upstream's Connection names, is not checked:
        # Twisted's client keeps that Connection header to itself.)
        self.assertEqual(headers.getRawHeaders(b"via"), [b"1.1 chunkproxy"])
        self.assertEqual(headers.getRawHeaders(b"x-accel-buffering"), [b"no"])

    def test_redirectPassedOn(self) -> None:
        """
        A redirect goes to the client as it is; the proxy does not follow it.
        """
        request = self.gw.send(b"/v1/redirect")
        self.assertEqual(request.responseCode, 302)
        self.assertEqual(request.responseHeaders.getRawHeaders(b"location"), [b"http://elsewhere.example/"])
        self.assertEqual(len(self.echo.seen), 1)

    def test_noCookieJar(self) -> None:
        """
        A cookie the upstream set for one client never rides on the next
        request.
        """
        self.gw.send(b"/v1/x")
        self.gw.send(b"/v1/x")
        self.assertNotIn("cookie", self.echo.seen[-1]["headers"])


class CredentialTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.echo = _Echo()
        self.gw = _Gateway(
            self,
            self.echo,
            requireToken=b"s3cret-token",
            injectHeaders=[(b"Authorization", b"Bearer sk-server-key"), (b"X-Org", b"server-org")],
        )

    def test_tokenRequired(self) -> None:
        """
        Without the right bearer token: 401, and nothing goes upstream.
        """
        for given in ([], [b"Bearer wrong"], [b"Basic s3cret-token"], [b"Bearer s3cret-token-and-more"]):
            headers = {b"Authorization": given} if given else {}
            request = self.gw.send(b"/v1/x", headers=headers)
            self.assertEqual(request.responseCode, 401, given)
            self.assertEqual(_body(request), b"a valid Authorization: Bearer token is required\n")
            self.assertEqual(request.responseHeaders.getRawHeaders(b"www-authenticate"), [b'Bearer realm="chunkproxy"'])
        self.assertEqual(self.echo.seen, [])

    def test_keyInjectedTokenStripped(self) -> None:
        """
        With the token, the request goes upstream with the server's key in
        place of the client's token, and injected headers replace the
        client's.
        """
        request = self.gw.send(
            b"/v1/x", headers={b"Authorization": [b"Bearer s3cret-token"], b"X-Org": [b"client-org"]}
        )
        self.assertEqual(request.responseCode, 200)
        headers = self.echo.seen[-1]["headers"]
        self.assertEqual(headers["authorization"], ["Bearer sk-server-key"])
        self.assertEqual(headers["x-org"], ["server-org"])


class OpenRelayTests(SynchronousTestCase):
    """
    Nothing a client sends can make the proxy request anything but a URL
    below a configured upstream.
    """

    def setUp(self) -> None:
        self.echo = _Echo()
        self.gw = _Gateway(self, self.echo)

    def test_absoluteForm(self) -> None:
        request = self.gw.send(b"http://other.example/v1/x")
        self.assertEqual(request.responseCode, 400)
        self.assertIn(b"origin-form", _body(request))

    def test_connect(self) -> None:
        request = self.gw.send(b"other.example:443", method=b"CONNECT")
        self.assertEqual(request.responseCode, 405)

    def test_pathTricks(self) -> None:
        """
        Dot segments (plain, encoded, double-encoded), an empty segment after
        the prefix, backslashes, NUL and CR/LF, anywhere in the target: 400.
        """
        tricks = [
            b"/v1/../admin",
            b"/v1/a/../../admin",
            b"/v1/%2e%2e/admin",
            b"/v1/%2E%2e/admin",
            b"/v1/.%2e/admin",
            b"/v1/%252e%252e/admin",
            b"/v1/./x",
            b"/v1//evil.example/x",
            b"/v1/a\\b",
            b"/v1/a%5cb",
            b"/v1/a%00b",
            b"/v1/a\x00b",
            b"/v1/a%0d%0aX-Injected: 1",
            b"/v1/x?q=%0d%0aX-Injected:%201",
            b"/v1/a%2f..%2fb",
        ]
        for target in tricks:
            request = self.gw.send(target)
            self.assertEqual(request.responseCode, 400, target)
            self.assertEqual(_body(request).count(b"\n"), 1, target)
        self.assertEqual(self.echo.seen, [])

    def test_emptySegmentBelowAnyMount(self) -> None:
        """
        An empty segment right after the mount point is refused whether or
        not the prefix ends with a slash.
        """
        for target in (b"/stream//evil.example/x", b"/v1//x"):
            self.assertEqual(self.gw.send(target).responseCode, 400, target)
        self.assertEqual(self.echo.seen, [])

    def test_ordinaryPathsPass(self) -> None:
        for target in (b"/v1/a.b/c..d/...", b"/v1/%20x", b"/v1/models?limit=2&after=a.b"):
            self.assertEqual(self.gw.send(target).responseCode, 200, target)


class StreamWatchTests(SynchronousTestCase):
    """
    Idle timeout and heartbeats, on a fake clock.
    """

    def start(self, contentType: bytes, **options: Any) -> tuple[_Gateway, _Held, StreamingRequest]:
        held = _Held(contentType)
        gw = _Gateway(self, held, **options)
        request = gw.send(b"/stream")
        self.assertEqual(len(held.requests), 1)
        return gw, held, request

    def upstreamWrites(self, gw: _Gateway, held: _Held, data: bytes) -> None:
        held.requests[-1].write(data)
        gw.pump()

    def test_heartbeatBetweenEvents(self) -> None:
        """
        A silent event stream gets a comment line once it has been silent for
        the heartbeat period (also before its first event), never in the
        middle of an event.
        """
        gw, held, request = self.start(b"text/event-stream", heartbeat=1.0)
        gw.clock.pump([0.125] * 7)
        self.assertEqual(_body(request), b"")
        gw.clock.pump([0.125] * 2)
        self.assertEqual(_body(request), b": keep-alive\n\n")
        self.upstreamWrites(gw, held, b"data: part of an event\n")
        gw.clock.pump([0.125] * 40)
        self.assertEqual(_body(request), b": keep-alive\n\ndata: part of an event\n")
        self.upstreamWrites(gw, held, b"\n")
        gw.clock.pump([0.125] * 9)
        self.assertEqual(_body(request), b": keep-alive\n\ndata: part of an event\n\n: keep-alive\n\n")
        # Silent on: one heartbeat a period, counted from the last one.
        gw.clock.pump([0.125] * 8)
        self.assertEqual(_body(request).count(b": keep-alive"), 3)
        gw.clock.pump([0.125] * 8)
        self.assertEqual(_body(request).count(b": keep-alive"), 4)

    def test_noHeartbeatInOtherContent(self) -> None:
        gw, held, request = self.start(b"application/x-ndjson", heartbeat=1.0)
        gw.clock.pump([0.125] * 80)
        self.assertEqual(_body(request), b"")

    def test_idleUpstream(self) -> None:
        """
        An upstream that sends nothing for the idle timeout mid-stream: the
        client's connection is closed without a clean end, the upstream is
        stopped, and heartbeats do not count as upstream activity.
        """
        gw, held, request = self.start(b"text/event-stream", idleTimeout=2.0, heartbeat=0.5)
        self.upstreamWrites(gw, held, b"data: one\n\n")
        upstream = held.requests[-1]
        gone: list[object] = []
        upstream.notifyFinish().addErrback(gone.append)
        gw.clock.pump([0.0625] * 30)
        self.assertFalse(request.connectionClosed)
        gw.clock.pump([0.0625] * 4)
        gw.pump()
        self.assertTrue(request.connectionClosed)
        self.assertEqual(request.finished, 0)
        self.assertIn(b": keep-alive", _body(request))
        self.assertEqual(len(gone), 1, "the upstream request should be closed")
        self.assertEqual(gw.clock.getDelayedCalls(), [])

    def test_slowClientIsNotIdle(self) -> None:
        """
        While the client's connection has paused the upstream, the upstream
        is not idle.
        """
        gw, held, request = self.start(b"text/plain", idleTimeout=2.0)
        assert request.producer is not None
        request.producer.pauseProducing()
        gw.clock.pump([0.25] * 40)
        self.assertFalse(request.connectionClosed)
        request.producer.resumeProducing()
        gw.clock.pump([0.25] * 9)
        self.assertTrue(request.connectionClosed)


class NoCycleTests(TestCase):
    """
    What a stream leaves behind.
    """

    @inlineCallbacks
    def test_finishedStreamsLeaveNoCycle(self) -> Any:
        """
        Streams that end (whole, or cut off by their upstream) leave none of
        this project's objects for the cyclic garbage collector: reference
        counting frees them the moment they are done. (The collector's
        pauses delay every chunk in flight, and grow with what it finds.)
        """

        def script(connection: RawConnection, head: bytes) -> None:
            if b"/cut" in head:
                connection.tcp.write(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\npart")
                connection.tcp.loseConnection()
            else:
                connection.tcp.write(
                    b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"
                    b"9\r\ndata: a\n\n\r\n0\r\n\r\n"
                )

        upstream = RawUpstream(self, script)
        # The gateway's defaults: every stream watched, event streams too.
        proxy = StreamProxyResource(upstream.url, reactor=reactor, idleTimeout=300, heartbeat=15)
        self.addCleanup(proxy.agent.closeCachedConnections)  # type: ignore[attr-defined]
        port = reactor.listenTCP(0, GatewaySite(GatewayResource([Route(b"/up/", proxy)]), 1000, 10), interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        url = f"http://127.0.0.1:{portOf(port)}/up/"
        yield fetch(url + "warm")
        gc.collect()
        gc.disable()
        self.addCleanup(gc.enable)
        for path in ("a", "cut", "b"):
            exchange = yield fetch(url + path)
            self.assertEqual(exchange.body, b"part" if path == "cut" else b"data: a\n\n")
        gc.set_debug(gc.DEBUG_SAVEALL)
        try:
            gc.collect()
            garbage = list(gc.garbage)
            gc.garbage.clear()
        finally:
            gc.set_debug(0)
        # A client connection and its Connector refer to each other in
        # Twisted itself: one such pair per upstream connection closed (not
        # per stream: kept-alive connections are reused).
        ours = sorted(
            {
                type(o).__qualname__
                for o in garbage
                if type(o).__module__.startswith("twisted_stream") and not isinstance(o, tcp.Client)
            }
        )
        self.assertEqual(ours, [])
