"""
What the tests share: real twistd processes, a strict HTTP/1.1 client that
notes when each piece arrives, and fakes for logic tests.
"""

from __future__ import annotations

import os
import re
import signal as signals
import socket
import sys
from dataclasses import dataclass, field
from io import BytesIO
from typing import Any, Callable, Generator, Optional, Sequence, cast

import h11
from hyperlink import URL
from twisted.internet import reactor as _reactor
from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred, inlineCallbacks, succeed
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.error import ProcessExitedAlready
from twisted.internet.interfaces import IConsumer, IListeningPort, IPushProducer, ITCPTransport
from twisted.internet.protocol import Factory, ProcessProtocol, Protocol, connectionDone
from twisted.internet.task import LoopingCall, deferLater
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase, TestCase
from twisted.web.http_headers import Headers
from twisted.web.iweb import UNKNOWN_LENGTH, IAgent, IBodyProducer, IResponse
from twisted.web.resource import IResource, Resource
from twisted.web.server import NOT_DONE_YET, Request, Site
from twisted.web.test.requesthelper import DummyRequest
from zope.interface import implementer

reactor: Any = _reactor

LOOPBACK_LISTEN = "tcp:0:interface=127.0.0.1"
"""Where test servers listen: a free port on loopback."""


def twistdCommand() -> str:
    """
    @return: The C{twistd} of the Python running the tests.
    """
    beside = os.path.join(os.path.dirname(sys.executable), "twistd")
    return beside if os.path.exists(beside) else "twistd"


def freePort() -> int:
    """
    @return: A loopback TCP port that nothing listens on (just now).
    """
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class _TwistdProtocol(ProcessProtocol):
    def __init__(self) -> None:
        self.output = bytearray()
        self.url: Deferred[str] = Deferred()
        # Fires with None: a Failure given to callback() would fail it.
        self.ended: Deferred[None] = Deferred()
        self.endReason: Optional[Failure] = None

    def outReceived(self, data: bytes) -> None:
        self.output += data
        if not self.url.called:
            found = re.search(rb"listening on (\S+/)", self.output)
            if found:
                self.url.callback(found.group(1).decode("ascii"))

    errReceived = outReceived

    def processEnded(self, reason: Failure) -> None:
        # Noted first: failing self.url runs the test on, and its clean-up.
        self.endReason = reason
        if not self.url.called:
            self.url.errback(
                RuntimeError("twistd ended before listening:\n" + self.output.decode("utf-8", "replace"))
            )
        self.ended.callback(None)


@dataclass
class Server:
    """
    A running server process: C{twistd -n}, or a peer on another stack.

    @ivar url: Its root URL, from its "listening on" log line.
    @ivar pid: Its process id.
    """

    url: str
    pid: int
    _protocol: _TwistdProtocol

    @property
    def output(self) -> str:
        """
        @return: Everything it has logged so far.
        """
        return self._protocol.output.decode("utf-8", "replace")

    @property
    def port(self) -> int:
        """
        @return: The TCP port it listens on.
        """
        port = URL.from_text(self.url).port
        assert port is not None
        return port

    def stopWith(self, name: str) -> Deferred[tuple[float, Optional[int]]]:
        """
        Send it a signal.

        @param name: C{TERM}, C{INT}, ...
        @return: A Deferred that fires, once it has exited, with when it
            exited (reactor seconds) and its exit code.
        """
        os.kill(self.pid, getattr(signals, "SIG" + name))
        ended: Deferred[tuple[float, Optional[int]]] = Deferred()

        def exited(_: object) -> None:
            reason = self._protocol.endReason
            ended.callback((reactor.seconds(), getattr(reason.value, "exitCode", None) if reason else None))

        self._protocol.ended.addCallback(exited)
        return ended

    def rssKiB(self) -> int:
        """
        @return: Its resident set size, in KiB.
        """
        with open(f"/proc/{self.pid}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        raise RuntimeError("no VmRSS")


def startServer(
    case: SynchronousTestCase,
    argv: Sequence[str],
    cwd: Optional[str] = None,
    env: Optional[dict[str, str]] = None,
) -> Deferred[Server]:
    """
    Start a server process that logs C{listening on URL}, and stop it when
    the test ends.

    @param case: The test; the process is stopped in its clean-up.
    @param argv: The command and its arguments.
    @param cwd: Where to start it (a temporary folder by default).
    @param env: Variables to add to its environment.
    @return: A Deferred that fires with the running process once it listens.
    """
    protocol = _TwistdProtocol()
    environment = dict(os.environ, PYTHONUNBUFFERED="1", **(env or {}))
    transport = reactor.spawnProcess(protocol, argv[0], list(argv), env=environment, path=cwd or _mkdir(case))

    def stop() -> Deferred[None]:
        if protocol.endReason is None:
            try:
                transport.signalProcess("TERM")
            except ProcessExitedAlready:
                return protocol.ended
            killer = reactor.callLater(5, transport.signalProcess, "KILL")
            protocol.ended.addBoth(lambda r: killer.cancel() if killer.active() else None)
        return protocol.ended

    case.addCleanup(stop)
    started = protocol.url.addTimeout(15, reactor)
    return started.addCallback(lambda url: Server(url, transport.pid, protocol))


def startTwistd(
    case: SynchronousTestCase,
    plugin: str,
    *options: str,
    twistdOptions: Sequence[str] = ("--pidfile=",),
    cwd: Optional[str] = None,
    env: Optional[dict[str, str]] = None,
) -> Deferred[Server]:
    """
    Start C{twistd -n PLUGIN --listen tcp:0:interface=127.0.0.1 OPTIONS},
    and stop it when the test ends.

    @param case: The test; the process is stopped in its clean-up.
    @param plugin: C{chunkgen} or C{chunkproxy}.
    @param options: More options for the plugin.
    @param twistdOptions: Options for twistd itself.
    @param cwd: Where to start it (a temporary folder by default).
    @param env: Variables to add to its environment.
    @return: A Deferred that fires with the running process once it listens.
    """
    argv = [twistdCommand(), "-n", *twistdOptions, plugin, "--listen", LOOPBACK_LISTEN, *options]
    return startServer(case, argv, cwd, env)


def _mkdir(case: SynchronousTestCase) -> str:
    path = case.mktemp()
    os.makedirs(path)
    return path


class LineProcess(ProcessProtocol):
    """
    A process whose output is taken line by line, each line noted with the
    time it arrived.

    @ivar lines: C{(arrival time, line)} for each line of standard output.
    @ivar stderr: All of standard error.
    @ivar exitCode: Fires with the exit code.
    @ivar pid: Its process id, once spawned.
    """

    pid = 0

    def __init__(self) -> None:
        self.lines: list[tuple[float, bytes]] = []
        self.stderr = b""
        self.exitCode: Deferred[int] = Deferred()
        self._partial = b""

    @classmethod
    def spawn(cls, *argv: str, env: Optional[dict[str, str]] = None) -> LineProcess:
        """
        Start a command.

        @param argv: The command and its arguments.
        @param env: Its environment (this process's by default).
        @return: The started process.
        """
        protocol = cls()
        transport = reactor.spawnProcess(protocol, argv[0], list(argv), env=os.environ if env is None else env)
        protocol.pid = transport.pid
        return protocol

    @property
    def text(self) -> str:
        """
        @return: The standard output so far.
        """
        return "".join(line.decode("utf-8", "replace") + "\n" for _, line in self.lines)

    def outReceived(self, data: bytes) -> None:
        now = reactor.seconds()
        *done, self._partial = (self._partial + data).split(b"\n")
        self.lines.extend((now, line) for line in done)

    def errReceived(self, data: bytes) -> None:
        self.stderr += data

    def processEnded(self, reason: Failure) -> None:
        self.exitCode.callback(reason.value.exitCode)


def stopped(process: LineProcess) -> Deferred[int]:
    """
    Kill C{process} unless it has ended (a test's clean-up).

    @return: A Deferred that fires once it has ended.
    """
    if not process.exitCode.called and process.transport is not None:
        process.transport.signalProcess("KILL")
    return process.exitCode


def readText(path: str) -> str:
    """
    @return: The text of the file at C{path}, empty while there is none (a
        process's log file, not written yet).
    """
    try:
        with open(path, encoding="utf-8") as f:
            return f.read()
    except FileNotFoundError:
        return ""


def until(condition: Callable[[], bool], seconds: float = 15.0, what: Callable[[], str] = str) -> Deferred[None]:
    """
    Wait for something a process does.

    @param condition: Whether it has happened.
    @param seconds: How long it may take.
    @param what: Says what the test saw, for the failure's message.
    @return: A Deferred that fires once C{condition()} holds, checked every
        20 ms, or fails after C{seconds} (with L{AssertionError}).
    """

    @inlineCallbacks
    def poll() -> Any:
        began = reactor.seconds()
        while not condition():
            if reactor.seconds() - began > seconds:
                raise AssertionError(f"not so after {seconds:g} s; saw:\n{what()}")
            yield deferLater(reactor, 0.02, lambda: None)

    result: Deferred[None] = poll()
    return result


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


class BreaksOff(Resource):
    """
    Sends two lines 100 ms apart, then drops the connection mid-body.
    """

    isLeaf = True

    def render_GET(self, request: Request) -> int:
        request.write(b"line 1\n")

        def second() -> None:
            request.write(b"line 2\n")
            reactor.callLater(0.1, request.loseConnection)

        reactor.callLater(0.1, second)
        return NOT_DONE_YET


class StreamingRequest(DummyRequest):
    """
    A L{DummyRequest} that takes a push producer the way a real request
    does (L{DummyRequest} drives every producer as a pull producer), and
    notes a closed connection.
    """

    def __init__(self, postpath: list[bytes], method: bytes = b"GET", uri: bytes = b"/", body: bytes = b"") -> None:
        super().__init__(postpath)
        self.content = BytesIO(body)
        self.method = method
        self.uri = uri
        self.path = uri.partition(b"?")[0]
        self.producer: Optional[IPushProducer] = None
        self.connectionClosed = False
        self.secure = False
        self.sentLength = 0
        self.client = IPv4Address("TCP", "192.168.1.1", 50000)

    def write(self, data: bytes) -> None:
        self.sentLength += len(data)
        super().write(data)

    def isSecure(self) -> bool:
        return self.secure

    def registerProducer(self, producer: IPushProducer, streaming: bool) -> None:
        assert streaming, "only push producers are expected here"
        assert self.producer is None, "a producer is registered already"
        self.producer = producer

    def unregisterProducer(self) -> None:
        self.producer = None

    def loseConnection(self) -> None:
        self.connectionClosed = True


def render(resource: IResource, request: StreamingRequest) -> Any:
    """
    Render a fake request, as a real one would be.

    @param resource: What to render.
    @param request: The fake.
    @return: What C{render} returned.
    """
    return resource.render(cast(Request, request))


def makeCertificates(directory: str, name: str = "test") -> tuple[str, str, str]:
    """
    Make a CA and a server certificate it signs, for C{localhost} and
    C{127.0.0.1}.

    @param directory: Where to write the PEM files.
    @param name: What to call the CA (two calls make two unrelated CAs).
    @return: The paths of the CA certificate, the server certificate and
        the server's key.
    """
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.timezone.utc)
    caKey = ec.generate_private_key(ec.SECP256R1())
    caName = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"twisted-stream {name} CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(caName)
        .issuer_name(caName)
        .public_key(caKey.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
        .sign(caKey, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    certificate = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
        .issuer_name(caName)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .sign(caKey, hashes.SHA256())
    )
    directory = os.path.abspath(directory)
    os.makedirs(directory, exist_ok=True)
    paths = tuple(os.path.join(directory, f"{name}-{what}.pem") for what in ("ca", "cert", "key"))
    contents = (
        ca.public_bytes(serialization.Encoding.PEM),
        certificate.public_bytes(serialization.Encoding.PEM),
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ),
    )
    for path, content in zip(paths, contents, strict=True):
        with open(path, "wb") as f:
            f.write(content)
    return paths[0], paths[1], paths[2]


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


@implementer(IAgent)
class FakeAgent:
    """
    An agent whose requests get the Deferreds the test gives, one each in
    turn (the last one again once they run out), and that notes what it was
    asked.
    """

    def __init__(self, *results: Deferred[IResponse]) -> None:
        self.results = list(results)
        self.requests: list[tuple[bytes, bytes]] = []

    def request(
        self,
        method: bytes,
        uri: bytes,
        headers: Optional[Headers] = None,
        bodyProducer: Optional[IBodyProducer] = None,
    ) -> Deferred[IResponse]:
        self.requests.append((method, uri))
        return self.results.pop(0) if len(self.results) > 1 else self.results[0]


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


@implementer(IBodyProducer)
class BytesBody:
    """
    A request body in memory, written when asked for, at once (as the
    gateway's is), in pieces of C{piece} bytes.
    """

    def __init__(self, data: bytes, known: bool = True, piece: int = 3) -> None:
        """
        @param known: Whether its length is given (else it is sent chunked).
        """
        self._data = data
        self._piece = piece
        self.length = len(data) if known else UNKNOWN_LENGTH

    def startProducing(self, consumer: IConsumer) -> Deferred[None]:
        for i in range(0, len(self._data), self._piece):
            consumer.write(self._data[i : i + self._piece])
        return succeed(None)

    def pauseProducing(self) -> None:
        pass

    def resumeProducing(self) -> None:
        pass

    def stopProducing(self) -> None:
        pass


def loopsStoppedAtCleanup(case: SynchronousTestCase) -> list[LoopingCall]:
    """
    @return: A list for a test's L{LoopingCall}s (a hand-made upstream's
        senders): those still running when the test ends are stopped.
    """
    loops: list[LoopingCall] = []

    def stop() -> None:
        for loop in loops:
            if loop.running:
                loop.stop()

    case.addCleanup(stop)
    return loops
