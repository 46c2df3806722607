"""
Tests for L{twisted_stream.upstream._writenow}: a write that finds nothing buffered
is sent inside C{write}, on real loopback connections.
"""

from __future__ import annotations

import socket
from typing import Any

from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.testing import StringTransport
from twisted.trial.unittest import TestCase

from tests.support import portOf, reactor
from twisted_stream.upstream._writenow import gathered, sendAtOnce


class _Accepted(Protocol):
    def __init__(self, made: Deferred[Protocol]) -> None:
        self._made = made

    def connectionMade(self) -> None:
        self._made.callback(self)


class _CountingSocket:
    """
    A socket that notes each C{send}.
    """

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self.sends: list[bytes] = []

    def send(self, data: bytes) -> int:
        self.sends.append(bytes(data))
        return self._sock.send(data)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sock, name)


class SendAtOnceTests(TestCase):
    @inlineCallbacks
    def connected(self) -> Any:
        """
        @return: The server side's protocol (its transport changed by
            L{sendAtOnce}) and a blocking client socket.
        """
        made: Deferred[Protocol] = Deferred()
        port = reactor.listenTCP(0, Factory.forProtocol(lambda: _Accepted(made)), interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        client = socket.create_connection(("127.0.0.1", portOf(port)))
        client.settimeout(1)
        self.addCleanup(client.close)
        server = yield made
        self.addCleanup(server.transport.loseConnection)
        self.sock = server.transport.socket = _CountingSocket(server.transport.socket)
        self.assertTrue(sendAtOnce(server.transport))
        return server, client

    @inlineCallbacks
    def test_sentInsideWrite(self) -> Any:
        """
        The peer can read the data before the reactor has turned once, and
        the socket was never registered for writability.
        """
        server, client = yield self.connected()
        server.transport.write(b"one")
        server.transport.writeSequence([b"two", b"three"])
        self.assertNotIn(server.transport, reactor.getWriters())
        received = _receive(client, 11)
        self.assertEqual(received, b"onetwothree")

    @inlineCallbacks
    def test_neverOvertakesBufferedData(self) -> Any:
        """
        While the kernel's buffer is full, writes are buffered the usual way
        and leave in order.
        """
        server, client = yield self.connected()
        big = bytes(range(256)) * 40_000
        server.transport.write(big)
        self.assertIn(server.transport, reactor.getWriters())
        server.transport.write(b"tail")
        received = bytearray()
        client.setblocking(False)
        while len(received) < len(big) + 4:
            try:
                received += client.recv(1 << 20)
            except BlockingIOError:
                yield Deferred.fromCoroutine(_turn())
        self.assertEqual(bytes(received), big + b"tail")

    @inlineCallbacks
    def test_gathered(self) -> Any:
        """
        The writes made inside L{gathered} leave in one send when it
        returns, in order.
        """
        server, client = yield self.connected()

        def writes() -> str:
            server.transport.write(b"head ")
            server.transport.writeSequence([b"body ", b"end"])
            self.assertEqual(self.sock.sends, [])
            return "done"

        self.assertEqual(gathered(writes), "done")
        self.assertEqual(self.sock.sends, [b"head body end"])
        server.transport.write(b"!")
        self.assertEqual(self.sock.sends, [b"head body end", b"!"])
        received = _receive(client, 14)
        self.assertEqual(received, b"head body end!")

    @inlineCallbacks
    def test_closeSendsWhatIsHeld(self) -> Any:
        """
        A connection closed inside L{gathered} sends what it holds first.
        """
        server, client = yield self.connected()

        def writeAndClose() -> None:
            server.transport.write(b"last words")
            server.transport.loseConnection()

        gathered(writeAndClose)
        received = _receive(client, 10)
        self.assertEqual(received, b"last words")
        # Then the connection closes, once the reactor has turned.
        client.setblocking(False)
        while True:
            try:
                self.assertEqual(client.recv(100), b"")
                break
            except BlockingIOError:
                yield Deferred.fromCoroutine(_turn())

    def test_onlyPlainTCP(self) -> None:
        self.assertFalse(sendAtOnce(StringTransport()))


def _receive(client: socket.socket, size: int) -> bytes:
    """
    Read C{size} bytes from a blocking socket (its timeout fails the test
    if they do not come without the reactor turning).
    """
    received = b""
    while len(received) < size:
        received += client.recv(100)
    return received


async def _turn() -> None:
    from twisted.internet.task import deferLater

    await deferLater(reactor, 0.001, lambda: None)
