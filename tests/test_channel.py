"""
Hostile clients against the gateway's channel: byte for byte in memory for
each refusal (L{RefusedAtOnceTests}), and hand-made on raw sockets on
loopback where socket behaviour is under test (a client that sends a
megabyte behind a refused head, the lingering close, 100 Continue, pipelined
requests, bodies held), with an upstream that records what reaches it.
"""

from __future__ import annotations

from typing import Any, Optional

from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.error import ConnectionDone
from twisted.internet.protocol import connectionDone
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase, TestCase

from tests.support import FakeAgent, RawClient, RawConnection, RawUpstream, answerWith, portOf, reactor
from twisted_stream.gateway import GatewayResource, GatewaySite, RequestLimits, Route
from twisted_stream.gateway._channel import GatewayChannel
from twisted_stream.http._refusal import Refusal
from twisted_stream.proxy import StreamProxyResource
from twisted_stream.upstream._agent import UpstreamAgent

_OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
_LIMITS = RequestLimits(maxLineBytes=1024, maxHeaderBytes=4096, maxHeaders=20)


class HostileClientTests(TestCase):
    timeout = 30

    def gateway(self, token: Optional[bytes] = None, maxBodyMemory: int = 10**6, holdUpstream: bool = False) -> None:
        """
        Start a gateway (bodies up to 1000 bytes, requests given 5 s to
        arrive) whose C{/up/} goes to a raw upstream.
        """

        def script(connection: RawConnection, head: bytes) -> None:
            if not holdUpstream:
                connection.tcp.write(_OK)

        self.upstream = RawUpstream(self, script)
        agent = UpstreamAgent(reactor)
        self.addCleanup(agent.closeCachedConnections)
        proxy = StreamProxyResource(self.upstream.url, reactor=reactor, agent=agent, maxBody=1000, requireToken=token)
        site = GatewaySite(GatewayResource([Route(b"/up/", proxy)]), 1000, 5, _LIMITS, maxBodyMemory)
        site.channel = _Counted
        self.site = site
        self.port = reactor.listenTCP(0, site, interface="127.0.0.1")
        self.addCleanup(self.port.stopListening)

    @property
    def serverClosed(self) -> int:
        """
        @return: How many connections the gateway has seen close.
        """
        return getattr(self.site, "closedConnections", 0)

    @inlineCallbacks
    def send(self, request: bytes) -> Any:
        """
        Send C{request} on a new connection.

        @return: A Deferred firing with what came back until the gateway
            closed the connection, and how many seconds that took (once the
            gateway's side has closed too).
        """
        raw = RawClient(request)
        began = reactor.seconds()
        closedBefore = self.serverClosed
        yield connectProtocol(TCP4ClientEndpoint(reactor, "127.0.0.1", portOf(self.port)), raw)
        answer = yield raw.closed
        took = reactor.seconds() - began
        while self.serverClosed == closedBefore:
            yield _turn()
        return answer, took

    @inlineCallbacks
    def assertRefused(self, request: bytes, refusal: Refusal) -> Any:
        """
        C{request} gets exactly C{refusal} within a second (not after the
        arrival deadline), and nothing reaches the upstream.
        """
        answer, took = yield self.send(request)
        self.assertEqual(answer, refusal.response())
        self.assertLess(took, 1.0)
        self.assertEqual(self.upstream.requests, [])

    @inlineCallbacks
    def test_goodRequestPasses(self) -> Any:
        """
        The control case: a plain request is forwarded and answered.
        """
        self.gateway()
        answer, _ = yield self.send(b"GET /up/x HTTP/1.1\r\nHost: g\r\nConnection: close\r\n\r\n")
        self.assertTrue(answer.startswith(b"HTTP/1.1 200 OK\r\n"), answer)
        self.assertTrue(answer.endswith(b"\r\n\r\nok"), answer)
        self.assertEqual(len(self.upstream.requests), 1)

    @inlineCallbacks
    def test_endlessRequestLine(self) -> Any:
        """
        A request line that never ends (a megabyte, no line end) is refused
        once the limit has passed, and the client reads the whole answer
        although it sent much more: the gateway drops the rest before it
        closes, instead of resetting the connection.
        """
        self.gateway()
        yield self.assertRefused(b"GET /up/" + b"a" * 1024 * 1024, Refusal(414, "the request line is over 1024 bytes"))

    # Refused while the client still sends

    @inlineCallbacks
    def test_refusedWhileBodyComes(self) -> Any:
        """
        A client that sends a megabyte of body behind a refused head still
        reads the whole answer.
        """
        self.gateway(token=b"secret")
        answer, _ = yield self.send(
            b"POST /up/x HTTP/1.1\r\nHost: g\r\nContent-Length: 1048576\r\n\r\n" + b"a" * 1048576
        )
        self.assertTrue(answer.startswith(b"HTTP/1.1 401 Unauthorized\r\n"), answer[:80])
        self.assertTrue(answer.endswith(b"\r\n\r\na valid Authorization: Bearer token is required\n"), answer)

    @inlineCallbacks
    def test_lingeringClose(self) -> Any:
        """
        A client that reads nothing until the gateway has closed still
        reads the whole answer: the gateway read and dropped the body it
        refused before it closed (closing with unread bytes would send a
        reset, and the client's kernel would throw the answer away).
        """
        self.gateway(token=b"secret")
        raw = RawClient(b"POST /up/x HTTP/1.1\r\nHost: g\r\nContent-Length: 1048576\r\n\r\n" + b"a" * 1048576)
        yield connectProtocol(TCP4ClientEndpoint(reactor, "127.0.0.1", portOf(self.port)), raw)
        raw.transport.pauseProducing()  # type: ignore[union-attr]
        while not self.serverClosed:
            yield _turn()
        raw.transport.resumeProducing()  # type: ignore[union-attr]
        answer = yield raw.closed
        self.assertTrue(answer.startswith(b"HTTP/1.1 401 Unauthorized\r\n"), answer[:80])
        self.assertTrue(answer.endswith(b"\r\n\r\na valid Authorization: Bearer token is required\n"), answer)

    @inlineCallbacks
    def test_continueOnlyWhenAdmitted(self) -> Any:
        """
        C{Expect: 100-continue} gets no C{100 Continue} when refused; when
        admitted it does, and the upstream, which gets the body the gateway
        read, gets no C{Expect}.
        """
        self.gateway(token=b"secret")
        head = b"POST /up/x HTTP/1.1\r\nHost: g\r\nExpect: 100-continue\r\nContent-Length: 2\r\n"
        answer, _ = yield self.send(head + b"\r\n")
        self.assertTrue(answer.startswith(b"HTTP/1.1 401 Unauthorized\r\n"), answer[:80])
        raw = _Continuing(head + b"Authorization: Bearer secret\r\nConnection: close\r\n\r\n", b"hi")
        yield connectProtocol(TCP4ClientEndpoint(reactor, "127.0.0.1", portOf(self.port)), raw)
        answer = yield raw.closed
        self.assertTrue(answer.startswith(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\n"), answer[:80])
        self.assertEqual(len(self.upstream.requests), 1)
        self.assertNotIn(b"expect", self.upstream.requests[0].lower())

    # What passes

    @inlineCallbacks
    def test_addressAskedOncePerConnection(self) -> Any:
        """
        Three requests on one connection are each told the gateway's
        address (C{request.getHost()}) and the client's, which the
        transport was asked once each.
        """
        self.gateway()
        request = b"GET /up/x HTTP/1.1\r\nHost: g\r\n\r\n"
        answer, _ = yield self.send(request * 2 + request.replace(b"\r\n\r\n", b"\r\nConnection: close\r\n\r\n"))
        self.assertEqual(answer.count(b"HTTP/1.1 200 OK\r\n"), 3)
        self.assertEqual(len(self.upstream.requests), 3)
        self.assertEqual(self.site.hostAsked, 1)  # type: ignore[attr-defined]
        self.assertEqual(self.site.peerAsked, 1)  # type: ignore[attr-defined]

    @inlineCallbacks
    def test_formBodyForwardedUnread(self) -> Any:
        """
        A form body is the upstream's to read: one that is no valid
        multipart goes upstream byte for byte (Twisted's site would parse
        it, and answer 400 itself), and the client gets the upstream's
        answer.
        """
        self.gateway()
        body = b"not a multipart body"
        answer, _ = yield self.send(
            b"POST /up/form HTTP/1.1\r\nHost: g\r\nConnection: close\r\n"
            b"Content-Type: multipart/form-data; boundary=xyz\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)
        )
        self.assertTrue(answer.startswith(b"HTTP/1.1 200 OK\r\n"), answer)
        self.assertEqual(len(self.upstream.requests), 1)
        self.assertEqual(self.upstream.connections[0]._buffer, body)

    # Memory for bodies

    @inlineCallbacks
    def test_bodyMemoryBounded(self) -> Any:
        """
        With room for 1500 bytes of bodies in all, a second request of 1000
        while the first is held upstream gets 503 with C{Retry-After}; once
        the first has gone, the room is free again.
        """
        self.gateway(maxBodyMemory=1500, holdUpstream=True)
        first = RawClient(b"POST /up/x HTTP/1.1\r\nHost: g\r\nContent-Length: 1000\r\n\r\n" + b"a" * 1000)
        yield connectProtocol(TCP4ClientEndpoint(reactor, "127.0.0.1", portOf(self.port)), first)
        while not self.upstream.requests:
            yield _turn()
        answer, _ = yield self.send(b"POST /up/y HTTP/1.1\r\nHost: g\r\nContent-Length: 1000\r\n\r\n" + b"a" * 1000)
        self.assertEqual(
            answer,
            Refusal(
                503,
                "the gateway holds as many request bodies as it may; try again shortly",
                ((b"Retry-After", b"1"),),
            ).response(),
        )
        first.transport.loseConnection()  # type: ignore[union-attr]
        yield first.closed
        yield _turn()
        self.upstream.script = answerWith(_OK)
        answer, _ = yield self.send(
            b"POST /up/z HTTP/1.1\r\nHost: g\r\nConnection: close\r\nContent-Length: 1000\r\n\r\n" + b"a" * 1000
        )
        self.assertTrue(answer.startswith(b"HTTP/1.1 200 OK\r\n"), answer[:80])



class RefusedAtOnceTests(SynchronousTestCase):
    """
    The same gateway channel in memory (no socket behaviour under test):
    each refusal's exact bytes, written as the head (or the byte too many)
    arrives, with no time passing, and nothing asked of the upstream.
    """

    def gateway(self, token: Optional[bytes] = None) -> None:
        self.agent = FakeAgent(Deferred())
        proxy = StreamProxyResource(
            "http://up.example/", reactor=Clock(), agent=self.agent, maxBody=1000, requireToken=token
        )
        self.site = GatewaySite(GatewayResource([Route(b"/up/", proxy)]), 1000, 5, _LIMITS)

    def assertRefused(self, request: bytes, refusal: Refusal) -> None:
        """
        C{request}, arriving in one read, gets exactly C{refusal}, the
        connection's write side is shut, and nothing goes upstream.
        """
        protocol = self.site.buildProtocol(IPv4Address("TCP", "127.0.0.1", 40000))
        assert protocol is not None
        transport = _ShuttingTransport()
        protocol.makeConnection(transport)
        protocol.dataReceived(request)
        self.assertEqual(transport.value(), refusal.response())
        self.assertTrue(transport.writesShut)
        self.assertEqual(self.agent.requests, [])
        protocol.connectionLost(Failure(ConnectionDone()))

    def test_longRequestLine(self) -> None:
        self.gateway()
        self.assertRefused(
            b"GET /up/" + b"a" * 1100 + b" HTTP/1.1\r\nHost: g\r\n\r\n", Refusal(414, "the request line is over 1024 bytes")
        )

    def test_longHeaderLine(self) -> None:
        self.gateway()
        self.assertRefused(
            b"GET /up/x HTTP/1.1\r\nHost: g\r\nX-Big: " + b"a" * 1100 + b"\r\n\r\n",
            Refusal(431, "a request header line is over 1024 bytes"),
        )

    def test_headTooLarge(self) -> None:
        self.gateway()
        headers = b"".join(b"X-H%d: %s\r\n" % (i, b"a" * 300) for i in range(15))
        self.assertRefused(
            b"GET /up/x HTTP/1.1\r\nHost: g\r\n" + headers + b"\r\n",
            Refusal(431, "the request's headers are over 4096 bytes in all"),
        )

    def test_tooManyHeaders(self) -> None:
        self.gateway()
        headers = b"".join(b"X-H%d: a\r\n" % (i,) for i in range(20))
        self.assertRefused(
            b"GET /up/x HTTP/1.1\r\nHost: g\r\n" + headers + b"\r\n",
            Refusal(431, "the request has more than 20 headers"),
        )

    def test_tokenBeforeBody(self) -> None:
        """
        A request without the token is answered 401 when its head has
        come: the client that sends only the head (announcing a body) gets
        it at once.
        """
        self.gateway(token=b"secret")
        self.assertRefused(
            b"POST /up/x HTTP/1.1\r\nHost: g\r\nContent-Length: 900\r\n\r\n",
            Refusal(
                401,
                "a valid Authorization: Bearer token is required",
                ((b"WWW-Authenticate", b'Bearer realm="chunkproxy"'),),
            ),
        )

    def test_declaredLengthTooLarge(self) -> None:
        self.gateway()
        self.assertRefused(
            b"POST /up/x HTTP/1.1\r\nHost: g\r\nContent-Length: 1001\r\n\r\n",
            Refusal(413, "the request body is over 1000 bytes"),
        )

    def test_chunkedBodyCutOff(self) -> None:
        """
        A chunked body is refused once its 1001st byte comes; the client
        that goes on sending is not waited for.
        """
        self.gateway()
        self.assertRefused(
            b"POST /up/x HTTP/1.1\r\nHost: g\r\nTransfer-Encoding: chunked\r\n\r\n"
            + b"1f4\r\n" + b"a" * 500 + b"\r\n" + b"1f5\r\n" + b"a" * 501 + b"\r\n",
            Refusal(413, "the request body is over 1000 bytes"),
        )

    def test_noRoute(self) -> None:
        self.gateway()
        self.assertRefused(
            b"POST /nowhere HTTP/1.1\r\nHost: g\r\nContent-Length: 900\r\n\r\n", Refusal(404, "no route for /nowhere")
        )

    def test_noHost(self) -> None:
        self.gateway()
        self.assertRefused(
            b"GET /up/x HTTP/1.1\r\n\r\n", Refusal(400, "an HTTP/1.1 request must have a Host header")
        )

    def test_twoHosts(self) -> None:
        self.gateway()
        self.assertRefused(
            b"GET /up/x HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", Refusal(400, "the request has more than one Host header")
        )

    def test_controlCharacterInValue(self) -> None:
        self.gateway()
        self.assertRefused(
            b"GET /up/x HTTP/1.1\r\nHost: g\r\nX-Evil: a\x1bb\r\n\r\n",
            Refusal(400, "request header X-Evil holds a control character"),
        )

    def test_longChunkSize(self) -> None:
        """
        A chunk size of 17 hex digits is refused at once, not waited for.
        """
        self.gateway()
        self.assertRefused(
            b"POST /up/x HTTP/1.1\r\nHost: g\r\nTransfer-Encoding: chunked\r\n\r\n00000000000000001",
            Refusal(400, "the chunked body is malformed: a chunk size has more than 16 hex digits"),
        )

    def test_twoAuthorizations(self) -> None:
        self.gateway(token=b"secret")
        self.assertRefused(
            b"GET /up/x HTTP/1.1\r\nHost: g\r\nAuthorization: Bearer secret\r\nAuthorization: Bearer other\r\n\r\n",
            Refusal(400, "the request has more than one Authorization header"),
        )

    def test_transferEncodingNotChunked(self) -> None:
        self.gateway()
        for coding in [b"gzip", b"identity", b"chunked, chunked"]:
            self.assertRefused(
                b"POST /up/x HTTP/1.1\r\nHost: g\r\nTransfer-Encoding: " + coding + b"\r\n\r\n",
                Refusal(501, "Transfer-Encoding must be exactly chunked"),
            )

    def test_lengthTwice(self) -> None:
        self.gateway()
        self.assertRefused(
            b"POST /up/x HTTP/1.1\r\nHost: g\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\nhi",
            Refusal(400, "the request gives its length twice (Content-Length or Transfer-Encoding)"),
        )

    def test_malformedRequestLine(self) -> None:
        """
        What Twisted's parser refuses by itself gets a reason too.
        """
        self.gateway()
        self.assertRefused(b"GET\r\n\r\n", Refusal(400, "the request is malformed"))


class _ShuttingTransport(StringTransport):
    """
    A transport whose write side can be shut (a TCP connection's can; the
    gateway shuts it, then lingers, after a refusal).
    """

    writesShut = False

    def loseWriteConnection(self) -> None:
        self.writesShut = True

class _Counted(GatewayChannel):
    """
    Counts, on its site, the connections that have closed (a count, not the
    channels: nothing kept alive from one test to the next).
    """

    def connectionMade(self) -> None:
        super().connectionMade()
        # Each time the connection's own address is asked of the socket.
        transport: Any = self.transport
        asked = transport.getHost
        site: Any = self.site

        def getHost() -> Any:
            site.hostAsked = getattr(site, "hostAsked", 0) + 1
            return asked()

        transport.getHost = getHost
        askedPeer = transport.getPeer

        def getPeer() -> Any:
            site.peerAsked = getattr(site, "peerAsked", 0) + 1
            return askedPeer()

        transport.getPeer = getPeer

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        super().connectionLost(reason)
        site: Any = self.site
        site.closedConnections = getattr(site, "closedConnections", 0) + 1


def _turn() -> Deferred[None]:
    d: Deferred[None] = Deferred()
    reactor.callLater(0.01, d.callback, None)
    return d


class _Continuing(RawClient):
    """
    Sends a head, and its body only after C{100 Continue}.
    """

    def __init__(self, head: bytes, body: bytes) -> None:
        super().__init__(head)
        self._body = body

    def dataReceived(self, data: bytes) -> None:
        super().dataReceived(data)
        if self._body and self.received.startswith(b"HTTP/1.1 100 Continue\r\n\r\n"):
            self.transport.write(self._body)  # type: ignore[union-attr]
            self._body = b""


class UnauthenticatedBodiesTests(TestCase):
    timeout = 60

    @inlineCallbacks
    def test_bodiesNotHeld(self) -> Any:
        """
        100 clients each sending a 1 MiB body without the token, at once, to
        a real chunkproxy: each gets 401 as soon as its head has come, and
        the gateway's memory does not grow with their bodies (before, it
        read and held each body until it could check the token).
        """
        from tests.support import Server, startTwistd

        proxy: Server = yield startTwistd(
            self, "chunkproxy", "--require-token", "env:TOKEN", env={"TOKEN": "secret"}
        )
        baseline = proxy.rssKiB()
        clients = [
            RawClient(b"POST /v1/chat/completions HTTP/1.1\r\nHost: g\r\nContent-Length: 1048576\r\n\r\n" + b"a" * 1048576)
            for _ in range(100)
        ]
        for client in clients:
            yield connectProtocol(TCP4ClientEndpoint(reactor, "127.0.0.1", proxy.port), client)
        peak = baseline
        began = reactor.seconds()
        while not all(client.closed.called for client in clients) and reactor.seconds() - began < 10:
            peak = max(peak, proxy.rssKiB())
            yield _turn()
        for client in clients:
            self.assertTrue(client.received.startswith(b"HTTP/1.1 401 Unauthorized\r\n"), client.received[:60])
            self.assertTrue(client.closed.called, "the gateway closes each refused connection")
        self.assertLess((peak - baseline) / 1024, 16, f"grew {(peak - baseline) / 1024:.1f} MiB")
