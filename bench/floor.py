"""
The benchmark's floors: the least a proxy on Twisted can cost, to tell what
chunkproxy's CPU owes to Python and the reactor from what it owes to what
it does.

    python bench/floor.py http UPSTREAM_PORT   # the target floor-http
    python bench/floor.py tcp UPSTREAM_PORT    # the target floor-tcp

C{http}: an HTTP/1.1 streaming proxy with nothing a gateway needs. Each
request is parsed with httptools and forwarded, head and body in one write,
on a kept-alive upstream connection from an unbounded pool; the answer's
head is sent on, and each piece of body as one chunk the moment it comes.
No access log, metrics, limits, timeouts, admission, header policy beyond
dropping the hop-by-hop fields, usage reading, failover, cancellation or
error answers: it is a measuring stick, not a proxy to run, and it trusts
both sides.

C{tcp}: bytes relayed both ways between each client connection and an
upstream connection of its own, no HTTP at all: the reactor's floor.

Both run on chunkproxy's reactor (L{twisted_stream.ops._reactor}), with
C{TCP_NODELAY} on every connection and each write sent at once
(L{twisted_stream.upstream._writenow.sendAtOnce}), as chunkproxy does, so
that the difference from chunkproxy is the gateway's own work.
"""

from __future__ import annotations

import sys
from typing import Callable, Optional

from twisted_stream.ops import _reactor

_reactor.install()

import httptools  # noqa: E402
from twisted.internet import protocol, reactor  # noqa: E402
from twisted.internet.interfaces import IReactorTCP  # noqa: E402
from twisted.python.failure import Failure  # noqa: E402

from twisted_stream.upstream._writenow import sendAtOnce  # noqa: E402

HOP_BY_HOP = frozenset((b"connection", b"keep-alive", b"transfer-encoding", b"content-length", b"host"))
"""Fields a proxy must not pass on as they are (and C{Host}, which is the
upstream's)."""

tcp: IReactorTCP = reactor


class _Building(protocol.ServerFactory, protocol.ClientFactory):
    """
    Each connection's protocol, as C{build} makes it.
    """

    def __init__(self, build: Callable[[], protocol.Protocol]) -> None:
        self.build = build

    def buildProtocol(self, addr: object) -> protocol.Protocol:
        return self.build()


def sendEachWriteNow(transport: object) -> None:
    transport.setTcpNoDelay(True)  # type: ignore[attr-defined]
    sendAtOnce(transport)


def connectUpstream(port: int, build: Callable[[], protocol.Protocol]) -> None:
    tcp.connectTCP("127.0.0.1", port, _Building(build))


class _UpstreamHTTP(protocol.Protocol):
    """
    One kept-alive connection to the upstream, answering one client's
    request at a time.
    """

    def __init__(self, idle: list[_UpstreamHTTP], client: _ClientHTTP, request: bytes) -> None:
        self.idle = idle
        self.client: Optional[_ClientHTTP] = client
        self.pending = request
        self.fields: list[tuple[bytes, bytes]] = []

    def connectionMade(self) -> None:
        sendEachWriteNow(self.transport)
        self.parser = httptools.HttpResponseParser(self)
        self.transport.write(self.pending)  # type: ignore[union-attr]

    def send(self, client: _ClientHTTP, request: bytes) -> None:
        self.client = client
        self.transport.write(request)  # type: ignore[union-attr]

    def dataReceived(self, data: bytes) -> None:
        self.parser.feed_data(data)

    def on_message_begin(self) -> None:
        self.fields = []

    def on_header(self, name: bytes, value: bytes) -> None:
        self.fields.append((name, value))

    def on_headers_complete(self) -> None:
        head = [b"HTTP/1.1 %d OK\r\n" % (self.parser.get_status_code(),)]
        head += [name + b": " + value + b"\r\n" for name, value in self.fields if name.lower() not in HOP_BY_HOP]
        head.append(b"Transfer-Encoding: chunked\r\n\r\n")
        self.client.transport.write(b"".join(head))  # type: ignore[union-attr]

    def on_body(self, body: bytes) -> None:
        self.client.transport.write(b"%x\r\n%b\r\n" % (len(body), body))  # type: ignore[union-attr]

    def on_message_complete(self) -> None:
        client, self.client = self.client, None
        client.transport.write(b"0\r\n\r\n")  # type: ignore[union-attr]
        self.idle.append(self)

    def connectionLost(self, reason: Failure = protocol.connectionDone) -> None:
        if self in self.idle:
            self.idle.remove(self)
        if self.client is not None:
            self.client.transport.loseConnection()  # type: ignore[union-attr]


class _ClientHTTP(protocol.Protocol):
    """
    One client connection: each request forwarded once it has come whole.
    """

    def __init__(self, upstream: int, idle: list[_UpstreamHTTP]) -> None:
        self.upstream = upstream
        self.idle = idle
        self.host = b"Host: 127.0.0.1:%d\r\n" % (upstream,)

    def connectionMade(self) -> None:
        sendEachWriteNow(self.transport)
        self.parser = httptools.HttpRequestParser(self)

    def dataReceived(self, data: bytes) -> None:
        self.parser.feed_data(data)

    def on_message_begin(self) -> None:
        self.fields: list[tuple[bytes, bytes]] = []
        self.body: list[bytes] = []

    def on_url(self, url: bytes) -> None:
        self.target = url

    def on_header(self, name: bytes, value: bytes) -> None:
        self.fields.append((name, value))

    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_message_complete(self) -> None:
        body = b"".join(self.body)
        head = [self.parser.get_method() + b" " + self.target + b" HTTP/1.1\r\n", self.host]
        head += [name + b": " + value + b"\r\n" for name, value in self.fields if name.lower() not in HOP_BY_HOP]
        head.append(b"Content-Length: %d\r\n\r\n" % (len(body),))
        request = b"".join(head) + body
        if self.idle:
            self.idle.pop().send(self, request)
        else:
            connectUpstream(self.upstream, lambda: _UpstreamHTTP(self.idle, self, request))


class _UpstreamTCP(protocol.Protocol):
    def __init__(self, client: _ClientTCP) -> None:
        self.client = client

    def connectionMade(self) -> None:
        sendEachWriteNow(self.transport)
        self.client.upstreamReady(self)

    def dataReceived(self, data: bytes) -> None:
        self.client.transport.write(data)  # type: ignore[union-attr]

    def connectionLost(self, reason: Failure = protocol.connectionDone) -> None:
        self.client.transport.loseConnection()  # type: ignore[union-attr]


class _ClientTCP(protocol.Protocol):
    def __init__(self, upstream: int) -> None:
        self.upstream = upstream
        self.peer: Optional[_UpstreamTCP] = None
        self.early: list[bytes] = []

    def connectionMade(self) -> None:
        sendEachWriteNow(self.transport)
        connectUpstream(self.upstream, lambda: _UpstreamTCP(self))

    def upstreamReady(self, peer: _UpstreamTCP) -> None:
        self.peer = peer
        if self.early:
            peer.transport.write(b"".join(self.early))  # type: ignore[union-attr]
            self.early = []

    def dataReceived(self, data: bytes) -> None:
        if self.peer is None:
            self.early.append(data)
        else:
            self.peer.transport.write(data)  # type: ignore[union-attr]

    def connectionLost(self, reason: Failure = protocol.connectionDone) -> None:
        if self.peer is not None:
            self.peer.transport.loseConnection()  # type: ignore[union-attr]


def main(kind: str, upstream: int) -> None:
    idle: list[_UpstreamHTTP] = []
    factory = _Building(lambda: _ClientHTTP(upstream, idle) if kind == "http" else _ClientTCP(upstream))
    port = tcp.listenTCP(0, factory, backlog=4096, interface="127.0.0.1")
    print(f"floor-{kind} listening on http://127.0.0.1:{port.getHost().port}/", flush=True)  # type: ignore[attr-defined]
    reactor.run()


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
