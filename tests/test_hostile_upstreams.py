"""
Hostile and broken upstreams, hand-made on raw sockets, behind a real
gateway on loopback: what the client receives, byte for byte, and what the
upstream saw.
"""

from __future__ import annotations

import zlib
from typing import Any

from twisted.internet.defer import inlineCallbacks
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.task import LoopingCall, deferLater
from twisted.trial.unittest import TestCase
from twisted.web.server import Site

from tests.support import (
    Exchange,
    RawClient,
    RawConnection,
    RawUpstream,
    answerWith,
    fetch,
    loopsStoppedAtCleanup,
    portOf,
    reactor,
)
from twisted_stream.gateway import GatewayResource, Route
from twisted_stream.proxy import StreamProxyResource
from twisted_stream.upstream._agent import UpstreamAgent


class HostileUpstreamTests(TestCase):
    timeout = 30

    def gateway(self, upstream: RawUpstream) -> str:
        """
        @return: The URL of a gateway whose C{/up/} goes to C{upstream}.
        """
        agent = UpstreamAgent(reactor)
        self.addCleanup(agent.closeCachedConnections)
        proxy = StreamProxyResource(upstream.url, reactor=reactor, agent=agent)
        port = reactor.listenTCP(0, Site(GatewayResource([Route(b"/up/", proxy)])), interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        return f"http://127.0.0.1:{portOf(port)}/up/"

    def assertRefused(self, exchange: Exchange, reason: bytes) -> None:
        self.assertEqual(exchange.status, 502)
        self.assertEqual(exchange.body, b"upstream sent a bad response: " + reason + b"\n")
        self.assertTrue(exchange.complete, exchange.error)

    @inlineCallbacks
    def test_endlessHead(self) -> Any:
        """
        An upstream that sends header lines without end: the client gets
        502 once 64 KiB have come, and the upstream's connection is closed
        while it is still sending (it managed only the kernel's buffers
        more).
        """
        sending = loopsStoppedAtCleanup(self)

        def script(connection: RawConnection, head: bytes) -> None:
            connection.tcp.write(b"HTTP/1.1 200 OK\r\n")
            sent = [0]

            def more() -> None:
                if connection.closedAt is not None or sent[0] >= 16 * 1024 * 1024:
                    loop.stop()
                    return
                connection.tcp.write(b"X-Filler: " + b"a" * 1000 + b"\r\n")
                sent[0] += 1012

            loop = LoopingCall(more)
            sending.append(loop)
            loop.start(0.0001)

        upstream = RawUpstream(self, script)
        exchange = yield fetch(self.gateway(upstream) + "x")
        self.assertRefused(exchange, b"the response head is over 65536 bytes")
        yield deferLater(reactor, 0.2, lambda: None)
        self.assertEqual(len(upstream.closed), 1)
        self.assertFalse(sending[0].running)

    @inlineCallbacks
    def test_tooManyHeaders(self) -> Any:
        head = b"HTTP/1.1 200 OK\r\n" + b"X-H: v\r\n" * 1000 + b"Content-Length: 2\r\n\r\nhi"
        upstream = RawUpstream(self, answerWith(head))
        exchange = yield fetch(self.gateway(upstream))
        self.assertRefused(exchange, b"the response has over 100 header lines")
        self.assertEqual(exchange.header(b"x-h"), [])

    @inlineCallbacks
    def test_controlBytesInReason(self) -> Any:
        """
        A reason phrase with a control byte is never passed on; a bare CR
        (which would break the client's parser) neither.
        """
        for reason, expected in [
            (b"O\x01K", b"the status line's reason phrase holds a control character"),
            (b"O\x1b[2JK", b"the status line's reason phrase holds a control character"),
            (b"O\rK", b"malformed response: Expected LF after CR"),
        ]:
            upstream = RawUpstream(self, answerWith(b"HTTP/1.1 200 " + reason + b"\r\nContent-Length: 0\r\n\r\n"))
            exchange = yield fetch(self.gateway(upstream))
            self.assertRefused(exchange, expected)

    @inlineCallbacks
    def test_controlBytesInHeader(self) -> Any:
        upstream = RawUpstream(self, answerWith(b"HTTP/1.1 200 OK\r\nX-A: a\x01b\r\nContent-Length: 0\r\n\r\n"))
        exchange = yield fetch(self.gateway(upstream))
        self.assertEqual(exchange.status, 502)
        self.assertTrue(exchange.body.startswith(b"upstream sent a bad response: malformed response: "))

    @inlineCallbacks
    def test_noContentTypeInvented(self) -> Any:
        """
        A response without Content-Type leaves without one (Twisted would
        add text/html), body unchanged.
        """
        upstream = RawUpstream(self, answerWith(b"HTTP/1.1 200 OK\r\nContent-Length: 14\r\n\r\n<b>{\"a\": 1}</b>"[:-1]))
        exchange = yield fetch(self.gateway(upstream))
        self.assertEqual(exchange.status, 200)
        self.assertEqual(exchange.header(b"content-type"), [])
        self.assertEqual(exchange.body, b'<b>{"a": 1}</b')

    @inlineCallbacks
    def test_namedInConnectionDropped(self) -> Any:
        """
        A header the upstream names in its Connection header does not reach
        the client (Twisted's own client hid Connection, so it used to).
        """
        upstream = RawUpstream(
            self,
            answerWith(b"HTTP/1.1 200 OK\r\nConnection: X-Hop\r\nX-Hop: secret\r\nX-End: 1\r\nContent-Length: 0\r\n\r\n"),
        )
        exchange = yield fetch(self.gateway(upstream))
        self.assertEqual(exchange.status, 200)
        self.assertEqual(exchange.header(b"x-hop"), [])
        self.assertEqual(exchange.header(b"x-end"), [b"1"])

    @inlineCallbacks
    def test_deleteNeverSentTwice(self) -> Any:
        """
        A kept-alive upstream connection that closes once a DELETE reached
        it: the client gets 502, and the upstream saw the DELETE once.
        """

        def script(connection: RawConnection, head: bytes) -> None:
            if head.startswith(b"DELETE"):
                connection.tcp.loseConnection()
            else:
                connection.tcp.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")

        upstream = RawUpstream(self, script)
        url = self.gateway(upstream)
        first = yield fetch(url + "a")
        self.assertEqual(first.body, b"ok")
        exchange = yield fetch(url + "a", method=b"DELETE")
        self.assertEqual(exchange.status, 502)
        self.assertEqual(exchange.body, b"upstream failed before responding (ReusedConnectionLost)\n")
        self.assertEqual([head.split(b" ")[0] for head in upstream.requests], [b"GET", b"DELETE"])
        self.assertEqual(len(upstream.connections), 1)

    @inlineCallbacks
    def test_getSentAgainAfterAReusedConnectionEnds(self) -> Any:
        """
        A kept-alive upstream connection that closes as a GET arrives on it,
        before any answer (an upstream closing it as idle just then): the
        GET is sent again, on a new connection, and the client gets the
        answer.
        """

        def script(connection: RawConnection, head: bytes) -> None:
            if connection is upstream.connections[0] and len(upstream.requests) == 2:
                connection.tcp.loseConnection()
            else:
                connection.tcp.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")

        upstream = RawUpstream(self, script)
        url = self.gateway(upstream)
        for _ in range(2):
            exchange = yield fetch(url + "a")
            self.assertEqual((exchange.status, exchange.body), (200, b"ok"))
        self.assertEqual([head.split(b" ")[0] for head in upstream.requests], [b"GET", b"GET", b"GET"])
        self.assertEqual(len(upstream.connections), 2)

    @inlineCallbacks
    def test_corruptGzipPassedAsItCame(self) -> Any:
        """
        A gzip body corrupt at its end reaches the client as it came, with
        its Content-Encoding: the client's decoder sees the damage, rather
        than a clean, empty body.
        """
        body = zlib.compress(b"data: hello\n\n" * 100, 6)[:-6] + b"\xff\xff\xff\xff\xff\xff"
        upstream = RawUpstream(
            self,
            answerWith(
                b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nContent-Encoding: deflate\r\n"
                b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
            ),
        )
        exchange = yield fetch(self.gateway(upstream), headers=[(b"Accept-Encoding", b"deflate")])
        self.assertEqual(exchange.status, 200)
        self.assertEqual(exchange.header(b"content-encoding"), [b"deflate"])
        self.assertEqual(exchange.header(b"content-length"), [b"%d" % (len(body),)])
        self.assertEqual(exchange.body, body)
        self.assertEqual(upstream.requests[0].count(b"\r\nAccept-Encoding: deflate"), 1)

    @inlineCallbacks
    def test_truncatedLengthIsNotACleanEnd(self) -> Any:
        def script(connection: RawConnection, head: bytes) -> None:
            connection.tcp.write(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\npart")
            connection.tcp.loseConnection()

        upstream = RawUpstream(self, script)
        exchange = yield fetch(self.gateway(upstream))
        self.assertEqual(exchange.status, 200)
        self.assertEqual(exchange.body, b"part")
        self.assertFalse(exchange.complete)


class HostileClientHeaderTests(TestCase):
    """
    The header check in the other direction: what a client sends.
    """

    @inlineCallbacks
    def test_controlByteInRequestHeader(self) -> Any:
        """
        A request header whose value holds a control byte gets 400 with a
        one-line reason, and nothing reaches the upstream.
        """
        upstream = RawUpstream(self, answerWith(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"))
        agent = UpstreamAgent(reactor)
        self.addCleanup(agent.closeCachedConnections)
        proxy = StreamProxyResource(upstream.url, reactor=reactor, agent=agent)
        port = reactor.listenTCP(0, Site(GatewayResource([Route(b"/up/", proxy)])), interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        raw = RawClient(b"GET /up/x HTTP/1.1\r\nHost: gateway\r\nX-Evil: a\x01b\r\nConnection: close\r\n\r\n")
        yield connectProtocol(TCP4ClientEndpoint(reactor, "127.0.0.1", portOf(port)), raw)
        answer = yield raw.closed
        self.assertTrue(answer.startswith(b"HTTP/1.1 400 Bad Request\r\n"), answer[:60])
        self.assertTrue(answer.endswith(b"\r\n\r\nrequest header X-Evil holds a control character\n"), answer)
        self.assertEqual(upstream.requests, [])
