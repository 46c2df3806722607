"""
HTTP on real loopback sockets: a strict HTTP/1.1 client that notes when
each piece arrives, upstreams in the test process, and hand-made clients
and upstreams that send whatever bytes a test needs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Generator, Optional, Sequence, cast

import h11
from hyperlink import URL
from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.interfaces import IListeningPort, ITCPTransport
from twisted.internet.protocol import Factory, Protocol, connectionDone
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase, TestCase
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request, Site

from tests.support.processes import reactor  # noqa: F401 (used below)


@dataclass
class Exchange:
    """
    What a strict HTTP/1.1 client saw of one request.

    @ivar sentAt: When the request was sent (reactor seconds).
    @ivar status: The response's status code (0 before the headers came).
    @ivar headers: The response's headers, names lower-cased.
    @ivar pieces: C{(arrival time, data)} for each piece of the body.
    @ivar complete: Whether the response ended cleanly (h11 saw its end).
    @ivar error: What h11 objected to, if anything (a truncated body
        among others).
    @ivar closedAt: When the connection closed.
    """

    sentAt: float = 0.0
    status: int = 0
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)
    pieces: list[tuple[float, bytes]] = field(default_factory=list)
    complete: bool = False
    error: Optional[str] = None
    closedAt: Optional[float] = None

    @property
    def body(self) -> bytes:
        """
        @return: The body received so far.
        """
        return b"".join(data for _, data in self.pieces)

    def header(self, name: bytes) -> list[bytes]:
        """
        @return: The values of one header.
        """
        return [v for n, v in self.headers if n == name.lower()]

    def lineArrivals(self) -> list[tuple[float, bytes]]:
        """
        @return: C{(time, line)} for each complete line of the body, the time
            being when its last byte arrived.
        """
        lines: list[tuple[float, bytes]] = []
        partial = b""
        for when, data in self.pieces:
            partial += data
            *done, partial = partial.split(b"\n")
            lines.extend((when, line) for line in done)
        return lines


class StrictClient(Protocol):
    """
    Sends one request and parses the answer with h11, which refuses anything
    that is not valid HTTP/1.1, noting when each piece arrives.
    """

    def __init__(
        self,
        method: bytes,
        target: bytes,
        headers: Sequence[tuple[bytes, bytes]],
        onPiece: Optional[Callable[[StrictClient], None]] = None,
        body: Optional[bytes] = None,
    ) -> None:
        self.exchange = Exchange()
        self.done: Deferred[Exchange] = Deferred()
        self._h11 = h11.Connection(h11.CLIENT)
        if body is not None:
            headers = [*headers, (b"Content-Length", b"%d" % (len(body),))]
        self._request = h11.Request(method=method, target=target, headers=list(headers))
        self._body = body
        self._onPiece = onPiece

    @property
    def tcp(self) -> ITCPTransport:
        """
        @return: The connection.
        """
        return cast(ITCPTransport, self.transport)

    def connectionMade(self) -> None:
        self.exchange.sentAt = reactor.seconds()
        data = self._h11.send(self._request)
        if self._body:
            data += self._h11.send(h11.Data(data=self._body))
        self.tcp.write(data + self._h11.send(h11.EndOfMessage()))

    def dataReceived(self, data: bytes) -> None:
        now = reactor.seconds()
        try:
            self._h11.receive_data(data)
            self._drain(now)
        except h11.RemoteProtocolError as e:
            self.exchange.error = str(e)
            self.tcp.abortConnection()

    def _drain(self, now: float) -> None:
        while True:
            event = self._h11.next_event()
            if event is h11.NEED_DATA or event is h11.PAUSED:
                return
            if isinstance(event, h11.Response):
                self.exchange.status = event.status_code
                self.exchange.headers = [(n, v) for n, v in event.headers]
            elif isinstance(event, h11.Data):
                self.exchange.pieces.append((now, bytes(event.data)))
                if self._onPiece is not None:
                    self._onPiece(self)
            elif isinstance(event, h11.EndOfMessage):
                self.exchange.complete = True
                self.tcp.loseConnection()
                return

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self.exchange.closedAt = reactor.seconds()
        if not self.exchange.complete and self.exchange.error is None:
            try:
                self._h11.receive_data(b"")
                self._drain(self.exchange.closedAt)
            except h11.RemoteProtocolError as e:
                self.exchange.error = str(e)
        self.done.callback(self.exchange)


def fetch(
    url: str,
    method: bytes = b"GET",
    headers: Sequence[tuple[bytes, bytes]] = (),
    onPiece: Optional[Callable[[StrictClient], None]] = None,
    body: Optional[bytes] = None,
) -> Deferred[Exchange]:
    """
    Make one request with L{StrictClient}.

    @param url: An C{http://127.0.0.1:PORT/...} URL.
    @param method: The method.
    @param headers: Headers besides C{Host}.
    @param onPiece: Called with the client after each piece of the body.
    @param body: The request body, if any.
    @return: A Deferred that fires with what the client saw, once the
        connection has closed.
    """
    parsed = URL.from_text(url)
    assert parsed.port is not None
    # The target exactly as written in the URL: no re-encoding on the way.
    target = b"/" + url.split("/", 3)[3].encode("ascii")
    client = StrictClient(
        method, target, [(b"Host", f"{parsed.host}:{parsed.port}".encode()), *headers], onPiece, body
    )
    endpoint = TCP4ClientEndpoint(reactor, parsed.host, parsed.port)
    connecting = endpoint.connect(Factory.forProtocol(lambda: client))
    return connecting.addCallback(lambda _: client.done)


class Upstream:
    """
    A server in the test process that the proxy forwards to, so that a test
    can see the upstream side: what it was sent, when its connection closed.
    """

    def __init__(self, case: TestCase, resource: Resource) -> None:
        site = Site(resource)
        self.port: IListeningPort = reactor.listenTCP(0, site, interface="127.0.0.1")
        case.addCleanup(self.port.stopListening)

    @property
    def url(self) -> str:
        """
        @return: Its root URL.
        """
        return f"http://127.0.0.1:{portOf(self.port)}/"


def portOf(listening: IListeningPort) -> int:
    """
    @return: The TCP port a listening port listens on.
    """
    address = listening.getHost()
    assert isinstance(address, IPv4Address)
    return address.port


class RawConnection(Protocol):
    """
    One connection to a L{RawUpstream}: collects request heads and hands
    each to the upstream's script.
    """

    def __init__(self, upstream: RawUpstream) -> None:
        self._upstream = upstream
        self._buffer = b""
        self.closedAt: Optional[float] = None

    @property
    def tcp(self) -> ITCPTransport:
        """
        @return: The connection, for the script to write to or close.
        """
        return cast(ITCPTransport, self.transport)

    def connectionMade(self) -> None:
        self._upstream.connections.append(self)

    def dataReceived(self, data: bytes) -> None:
        self._buffer += data
        while b"\r\n\r\n" in self._buffer:
            head, _, self._buffer = self._buffer.partition(b"\r\n\r\n")
            self._upstream.requests.append(head)
            self._upstream.script(self, head)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self.closedAt = reactor.seconds()
        self._upstream.closed.append(self.closedAt)


class RawUpstream:
    """
    A hand-made upstream on a real loopback socket, for what no real server
    would send: C{script} is called with the connection and each request
    head (bodies are not expected) and writes whatever bytes it likes.

    @ivar requests: Each request head received, in order.
    @ivar connections: Each connection accepted.
    @ivar closed: When each connection closed.
    """

    def __init__(self, case: SynchronousTestCase, script: Callable[[RawConnection, bytes], None]) -> None:
        self.script = script
        self.requests: list[bytes] = []
        self.connections: list[RawConnection] = []
        self.closed: list[float] = []
        self.port: IListeningPort = reactor.listenTCP(
            0, Factory.forProtocol(lambda: RawConnection(self)), interface="127.0.0.1"
        )
        case.addCleanup(self.port.stopListening)

    @property
    def url(self) -> str:
        """
        @return: Its root URL.
        """
        return f"http://127.0.0.1:{portOf(self.port)}/"


def answerWith(response: bytes) -> Callable[[RawConnection, bytes], None]:
    """
    @return: A L{RawUpstream} script that answers every request with the
        same bytes.
    """
    return lambda connection, head: connection.tcp.write(response)


@inlineCallbacks
def rawClients(port: int, count: int, request: bytes = b"") -> Generator[Deferred[Any], Any, list[RawClient]]:
    """
    Connect C{count} L{RawClient}s to C{127.0.0.1:port}, one after another,
    each sending C{request}.

    @return: A Deferred firing with them, once all are connected.
    """
    clients = []
    for _ in range(count):
        client = RawClient(request)
        yield connectProtocol(TCP4ClientEndpoint(reactor, "127.0.0.1", port), client)
        clients.append(client)
    return clients


class RawClient(Protocol):
    """
    Sends bytes as they are, hand-made, and collects the answer until the
    connection closes.

    @ivar closed: Fires with all that was received.
    """

    def __init__(self, request: bytes, closeAfterHead: bool = False) -> None:
        """
        @param request: What to send once connected.
        @param closeAfterHead: Close the connection as soon as a response
            head has come.
        """
        self.request = request
        self.received = b""
        self.closed: Deferred[bytes] = Deferred()
        self._closeAfterHead = closeAfterHead

    def connectionMade(self) -> None:
        self.transport.write(self.request)  # type: ignore[union-attr]

    def dataReceived(self, data: bytes) -> None:
        self.received += data
        if self._closeAfterHead and b"\r\n\r\n" in self.received:
            self.transport.loseConnection()  # type: ignore[union-attr]

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self.closed.callback(self.received)


def h2Frame(kind: int, flags: int, payload: bytes, stream: int = 1) -> bytes:
    """
    @return: An HTTP/2 frame made by hand: its 9-byte header, then
        C{payload}.
    """
    return len(payload).to_bytes(3, "big") + bytes([kind, flags]) + stream.to_bytes(4, "big") + payload


class SlowPieces(Resource):
    """
    An upstream that sends a piece every 0.1 s, 40 in all, and notes when
    its client (the gateway) went.
    """

    isLeaf = True

    def __init__(self) -> None:
        super().__init__()
        self.gone: Deferred[float] = Deferred()

    def render_GET(self, request: Request) -> int:
        request.setHeader(b"Content-Type", b"text/plain")
        sent = [0]

        def piece() -> None:
            if request.finished or self.gone.called:
                return
            sent[0] += 1
            request.write(b"piece %d\n" % (sent[0],))
            if sent[0] == 40:
                request.finish()
            else:
                reactor.callLater(0.1, piece)

        request.notifyFinish().addErrback(lambda _: self.gone.callback(reactor.seconds()))
        piece()
        return NOT_DONE_YET
