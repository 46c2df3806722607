"""
Tests for L{twisted_stream.gateway._streamlimits}: the counts without sockets, and
a gateway on loopback whose limits hostile crowds push past.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import inlineCallbacks
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.task import deferLater
from twisted.trial.unittest import SynchronousTestCase, TestCase
from twisted.web.http_headers import Headers

from tests.support import RawClient, RawConnection, RawUpstream, portOf, reactor
from twisted_stream.gateway import GatewayResource, GatewaySite, Route
from twisted_stream.gateway._streamlimits import StreamLimits
from twisted_stream.http._refusal import Refusal
from twisted_stream.proxy import StreamProxyResource
from twisted_stream.upstream._agent import UpstreamAgent

_FULL = Refusal(503, "the gateway carries 2 streams already; try again shortly", ((b"Retry-After", b"1"),))
_CLIENT_FULL = Refusal(503, "this client has 1 streams open already; try again shortly", ((b"Retry-After", b"1"),))


class CountTests(SynchronousTestCase):
    def test_limits(self) -> None:
        limits = StreamLimits(2, 1)
        self.assertIsNone(limits.refusal("a"))
        limits.started("a")
        self.assertEqual(limits.refusal("a"), _CLIENT_FULL)
        self.assertIsNone(limits.refusal("b"))
        limits.started("b")
        self.assertEqual(limits.refusal("c"), _FULL)
        limits.ended("a")
        self.assertIsNone(limits.refusal("a"))

    def test_byToken(self) -> None:
        """
        With a token asked for, a client is its token (kept as a digest).
        """
        limits = StreamLimits(byToken=True)
        one = limits.clientOf("10.0.0.1", Headers({b"Authorization": [b"Bearer x"]}))
        self.assertEqual(one, limits.clientOf("10.0.0.2", Headers({b"Authorization": [b"Bearer x"]})))
        self.assertNotIn("Bearer", one)
        self.assertNotEqual(one, limits.clientOf("10.0.0.1", Headers({b"Authorization": [b"Bearer y"]})))


class CrowdTests(TestCase):
    timeout = 30

    def gateway(self, limits: StreamLimits) -> int:
        def script(connection: RawConnection, head: bytes) -> None:
            # Streams that go on: a head and one chunk, then nothing.
            connection.tcp.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhi\r\n")

        self.upstream = RawUpstream(self, script)
        agent = UpstreamAgent(reactor)
        self.addCleanup(agent.closeCachedConnections)
        proxy = StreamProxyResource(self.upstream.url, reactor=reactor, agent=agent)
        site = GatewaySite(GatewayResource([Route(b"/up/", proxy)]), 1000, 5, streams=limits)
        port = reactor.listenTCP(0, site, interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        return portOf(port)

    @inlineCallbacks
    def open(self, port: int, source: str = "127.0.0.1") -> Any:
        client = RawClient(b"GET /up/x HTTP/1.1\r\nHost: g\r\n\r\n")
        yield connectProtocol(TCP4ClientEndpoint(reactor, "127.0.0.1", port, bindAddress=(source, 0)), client)
        yield deferLater(reactor, 0.1, lambda: None)
        self.addCleanup(lambda: client.transport.loseConnection())  # type: ignore[union-attr]
        return client

    @inlineCallbacks
    def test_maxStreams(self) -> Any:
        """
        With room for two streams, a third gets exactly the 503 at once, and
        never reaches the upstream; once one ends, a new one is taken.
        """
        port = self.gateway(StreamLimits(2))
        first = yield self.open(port)
        yield self.open(port)
        third = yield self.open(port)
        self.assertEqual(third.received, _FULL.response())
        self.assertEqual(len(self.upstream.requests), 2)
        first.transport.loseConnection()
        yield first.closed
        yield deferLater(reactor, 0.1, lambda: None)
        fourth = yield self.open(port)
        self.assertTrue(fourth.received.startswith(b"HTTP/1.1 200 OK\r\n"), fourth.received)

    @inlineCallbacks
    def test_perClient(self) -> Any:
        """
        One stream per client address: a second from the same address gets
        503, one from another address is served.
        """
        port = self.gateway(StreamLimits(None, 1))
        yield self.open(port, "127.0.0.1")
        second = yield self.open(port, "127.0.0.1")
        other = yield self.open(port, "127.0.0.2")
        self.assertEqual(second.received, _CLIENT_FULL.response())
        self.assertTrue(other.received.startswith(b"HTTP/1.1 200 OK\r\n"), other.received)
