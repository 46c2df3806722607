"""
Tests for L{twisted_stream.http._bodywriter}: a response body's writer, on real
loopback connections.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import inlineCallbacks
from twisted.trial.unittest import TestCase
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request, Site

from tests.support import Exchange, fetch, portOf, reactor
from twisted_stream.http._bodywriter import bodyWriter


class _Pieces(Resource):
    """
    Writes its body with L{bodyWriter}, noting what it was given.
    """

    isLeaf = True

    def __init__(self, length: bool = False) -> None:
        super().__init__()
        self._length = length
        self.direct: list[bool] = []
        self.sent: list[int] = []

    def render_GET(self, request: Request) -> int:
        if self._length:
            request.setHeader(b"Content-Length", b"6")
        request.write(b"")
        write = bodyWriter(request)
        self.direct.append(write != request.write)
        for piece in (b"one", b"", b"two"):
            write(piece)
        self.sent.append(request.sentLength)
        request.finish()
        return NOT_DONE_YET

    render_HEAD = render_GET


class BodyWriterTests(TestCase):
    @inlineCallbacks
    def fetchFrom(self, resource: _Pieces, method: bytes = b"GET") -> Any:
        port = reactor.listenTCP(0, Site(resource), interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        exchange: Exchange = yield fetch(f"http://127.0.0.1:{portOf(port)}/", method=method)
        return exchange

    @inlineCallbacks
    def test_chunked(self) -> Any:
        """
        Each non-empty piece is one valid chunk, counted in sentLength.
        """
        resource = _Pieces()
        exchange = yield self.fetchFrom(resource)
        self.assertTrue(exchange.complete, exchange.error)
        self.assertEqual(exchange.body, b"onetwo")
        self.assertEqual(resource.direct, [True])
        self.assertEqual(resource.sent, [6])

    @inlineCallbacks
    def test_withLength(self) -> Any:
        resource = _Pieces(length=True)
        exchange = yield self.fetchFrom(resource)
        self.assertTrue(exchange.complete, exchange.error)
        self.assertEqual(exchange.header(b"transfer-encoding"), [])
        self.assertEqual(exchange.body, b"onetwo")
        self.assertEqual(resource.sent, [6])

    @inlineCallbacks
    def test_headIsRequestWrite(self) -> Any:
        resource = _Pieces(length=True)
        exchange = yield self.fetchFrom(resource, b"HEAD")
        self.assertTrue(exchange.complete, exchange.error)
        self.assertEqual(resource.direct, [False])
