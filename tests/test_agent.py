"""
Tests for L{twisted_stream.upstream._agent}: the pool, the name cache and the
absence of hidden retries, against hand-made upstreams on real loopback
sockets.
"""

from __future__ import annotations

from typing import Any, Optional

from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.internet.error import ConnectionRefusedError, DNSLookupError
from twisted.internet.interfaces import IHostnameResolver, IHostResolution, IResolutionReceiver
from twisted.internet.task import Clock, deferLater
from twisted.internet.testing import StringTransport
from twisted.logger import capturedLogs, formatEvent
from twisted.trial.unittest import SynchronousTestCase, TestCase
from twisted.web.client import ResponseNeverReceived, readBody
from twisted.web.http_headers import Headers
from twisted.web.iweb import IResponse
from zope.interface import implementer

from tests.support import (
    NODE_PEERS,
    BytesBody,
    LineProcess,
    RawConnection,
    RawUpstream,
    answerWith,
    nodeExecutable,
    portOf,
    reactor,
    startTwistd,
    stopped,
    until,
)
from twisted_stream.upstream._agent import RELEARN_AFTER, UpstreamAgent, _parseOrigin

OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"


@implementer(IHostnameResolver)
class _Names:
    """
    A name resolver that counts its lookups and answers from a list, one
    answer per lookup (the last one again when they run out), at once or
    when the test says.
    """

    def __init__(self, *answers: list[str], held: bool = False) -> None:
        self.answers = list(answers)
        self.lookups: list[str] = []
        self.held: list[Any] = []
        self._hold = held

    def resolveHostName(
        self,
        resolutionReceiver: IResolutionReceiver,
        hostName: str,
        portNumber: int = 0,
        addressTypes: Any = None,
        transportSemantics: str = "TCP",
    ) -> IHostResolution:
        self.lookups.append(hostName)
        answer = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]

        def complete() -> None:
            for host in answer:
                resolutionReceiver.addressResolved(IPv4Address("TCP", host, portNumber))
            resolutionReceiver.resolutionComplete()

        if self._hold:
            self.held.append(complete)
        else:
            complete()
        return None  # type: ignore[return-value]


class _Reactor:
    """
    The real reactor, with its own name resolver and a clock that can be
    moved ahead of real time.
    """

    def __init__(self, names: _Names) -> None:
        self.nameResolver = names
        self.ahead = 0.0
        self.connected = 0

    def connectTCP(self, *args: Any, **kwargs: Any) -> Any:
        self.connected += 1
        return reactor.connectTCP(*args, **kwargs)

    def seconds(self) -> float:
        return float(reactor.seconds()) + self.ahead

    def __getattr__(self, name: str) -> Any:
        return getattr(reactor, name)


class _ClosesIdle:
    """
    A L{RawUpstream} script: answers each request with C{answer}, and
    behaves as an upstream that closes connections idle for a second
    (uvicorn's is five): a request that comes on a connection idle for 0.9 s
    or more crossed that close (the connection closes, unanswered).
    """

    def __init__(self, case: TestCase, answer: bytes, closesAfter: Optional[float] = None) -> None:
        """
        @param closesAfter: Also close connections idle this long (L{None}:
            only those a request crosses).
        """
        self._answer = answer
        self._closesAfter = closesAfter
        self._idleSince: dict[RawConnection, float] = {}
        self._timers: list[Any] = []
        case.addCleanup(lambda: [timer.cancel() for timer in self._timers if timer.active()])

    def __call__(self, connection: RawConnection, head: bytes) -> None:
        since = self._idleSince.pop(connection, None)
        if since is not None and reactor.seconds() - since >= 0.9:
            connection.tcp.loseConnection()
            return
        connection.tcp.write(self._answer)
        self._idleSince[connection] = reactor.seconds()
        if self._closesAfter is not None:
            self._timers.append(reactor.callLater(self._closesAfter, self._closeIfIdle, connection))

    def _closeIfIdle(self, connection: RawConnection) -> None:
        if connection in self._idleSince:
            connection.tcp.loseConnection()


class AgentTests(TestCase):
    def agent(self, names: Optional[_Names] = None, **kwargs: Any) -> UpstreamAgent:
        self.fakeReactor = _Reactor(names or _Names(["127.0.0.1"]))
        agent = UpstreamAgent(self.fakeReactor, **kwargs)
        self.addCleanup(agent.closeCachedConnections)
        return agent

    @inlineCallbacks
    def get(self, agent: UpstreamAgent, url: str, method: bytes = b"GET") -> Any:
        response: IResponse = yield agent.request(method, url.encode("ascii"))
        body = yield readBody(response)
        return response.code, body

    @inlineCallbacks
    def test_keptAlive(self) -> Any:
        """
        A second request finds the first one's connection idle and uses it:
        no new connection, no handshake.
        """
        upstream = RawUpstream(self, answerWith(OK))
        agent = self.agent()
        for _ in range(3):
            answer = yield self.get(agent, upstream.url + "x")
            self.assertEqual(answer, (200, b"ok"))
        self.assertEqual(len(upstream.connections), 1)
        self.assertEqual(len(upstream.requests), 3)
        self.assertEqual(upstream.requests[0], b"GET /x HTTP/1.1\r\nHost: 127.0.0.1:%d" % (portOf(upstream.port),))

    @inlineCallbacks
    def test_postOnAKeptAliveConnectionIsNotHeldBack(self) -> Any:
        """
        A POST with a JSON body on a reused connection, as every LLM SDK
        sends one, to a real upstream in its own process (chunkgen's mock
        embeddings, which answer at once): the answer comes within
        milliseconds. (The head and the body sent in two writes with no
        C{TCP_NODELAY}, the body waited ~40 ms for the upstream's delayed
        ACK, on every request but a connection's first; TCP_NODELAY alone
        or one write alone is enough, the wire does both.)
        """
        chunkgen = yield startTwistd(self, "chunkgen")
        url = (chunkgen.url + "v1/embeddings").encode()
        body = b'{"model": "mock-embed", "input": "hello"}'
        agent = self.agent()
        took = []
        for _ in range(7):
            started = reactor.seconds()
            response = yield agent.request(
                b"POST", url, Headers({b"content-type": [b"application/json"]}), BytesBody(body, piece=len(body))
            )
            took.append(reactor.seconds() - started)
            self.assertEqual(response.code, 200)
            yield readBody(response)
            # A client's next request comes a moment later, not at once
            # (at once, the upstream's ACKs happen to come in time).
            yield deferLater(reactor, 0.01, lambda: None)
        self.assertEqual(self.fakeReactor.connected, 1, "one kept-alive connection")
        # The six on the reused connection: over 40 ms each without the fix.
        self.assertLess(sorted(took[1:])[3], 0.02, took)

    @inlineCallbacks
    def test_quietConnections(self) -> Any:
        """
        Opening and closing upstream connections puts nothing in the log.
        """
        upstream = RawUpstream(self, answerWith(OK.replace(b"OK\r\n", b"OK\r\nConnection: close\r\n")))
        agent = self.agent()
        with capturedLogs() as events:
            for _ in range(2):
                yield self.get(agent, upstream.url)
            yield deferLater(reactor, 0.1, lambda: None)
        self.assertEqual(len(upstream.closed), 2)
        self.assertEqual([e.get("log_format") for e in events], [])

    @inlineCallbacks
    def test_noHiddenRetry(self) -> Any:
        """
        A kept-alive connection the upstream closes after it has received a
        request: the request fails and is never sent again, not even a
        DELETE (Twisted's pool would send it twice).
        """

        def script(connection: RawConnection, head: bytes) -> None:
            if head.startswith(b"DELETE"):
                connection.tcp.loseConnection()
            else:
                connection.tcp.write(OK)

        upstream = RawUpstream(self, script)
        agent = self.agent()
        yield self.get(agent, upstream.url + "first")
        failed = agent.request(b"DELETE", (upstream.url + "thing").encode())
        yield self.assertFailure(failed, ResponseNeverReceived)
        yield deferLater(reactor, 0.2, lambda: None)
        self.assertEqual([head.split(b" ")[0] for head in upstream.requests], [b"GET", b"DELETE"])
        self.assertEqual(len(upstream.connections), 1)

    @inlineCallbacks
    def test_idleConnectionsExpire(self) -> Any:
        upstream = RawUpstream(self, answerWith(OK))
        agent = self.agent(idleTimeout=0.2)
        yield self.get(agent, upstream.url)
        self.assertEqual(upstream.closed, [])
        yield deferLater(reactor, 0.4, lambda: None)
        self.assertEqual(len(upstream.closed), 1)

    @inlineCallbacks
    def test_learnsWhenTheUpstreamClosesIdleConnections(self) -> Any:
        """
        An upstream that closes connections idle for a second (as uvicorn
        does after five): once it has closed one, the pool closes its idle
        connections sooner (at 80 % of that) and says so once, so that a
        request made just before the upstream's close takes a new
        connection instead of one whose close crosses it (which fails).
        """
        upstream = RawUpstream(self, _ClosesIdle(self, OK, closesAfter=1.0))
        agent = self.agent()
        with capturedLogs() as events:
            yield self.get(agent, upstream.url)
            yield deferLater(reactor, 1.3, lambda: None)
            self.assertEqual(len(upstream.closed), 1)
            for _ in range(2):
                answer = yield self.get(agent, upstream.url)
                self.assertEqual(answer, (200, b"ok"))
                yield deferLater(reactor, 0.95, lambda: None)
        self.assertEqual(len(upstream.connections), 3)
        lines = [formatEvent(e) for e in events]
        self.assertEqual(len(lines), 1, lines)
        self.assertRegex(
            lines[0],
            r"^upstream http://127\.0\.0\.1:\d+ closed an idle connection after 1(\.\d+)? s: idle connections to it"
            r" are closed after 0\.8\d* s$",
        )

    @inlineCallbacks
    def test_keepAliveTimeoutHeeded(self) -> Any:
        """
        An upstream whose answers say C{Keep-Alive: timeout=1}: its idle
        connections are closed here after 80 % of that, from the first, so
        a request made just before its own close takes a new connection.
        """
        sayOneSecond = OK.replace(b"OK\r\n", b"OK\r\nKeep-Alive: timeout=1\r\n")
        upstream = RawUpstream(self, _ClosesIdle(self, sayOneSecond))
        agent = self.agent()
        for _ in range(2):
            answer = yield self.get(agent, upstream.url)
            self.assertEqual(answer, (200, b"ok"))
            yield deferLater(reactor, 0.95, lambda: None)
        self.assertEqual(len(upstream.connections), 2)

    @inlineCallbacks
    def test_realNodeUpstream(self) -> Any:
        """
        A real Node server keeping idle connections for a second (it says
        C{Keep-Alive: timeout=1}): a request after 0.95 s of quiet takes a
        new connection, the first one closed here at 0.8 s, not left to
        cross Node's close.
        """
        node = LineProcess.spawn(nodeExecutable(), str(NODE_PEERS / "keepalive_upstream.mjs"), "1000")
        self.addCleanup(stopped, node)
        yield until(lambda: node.text.startswith("listening "), what=lambda: node.stderr.decode())
        url = f"http://127.0.0.1:{node.text.split()[1]}/"
        agent = self.agent()
        for _ in range(2):
            answer = yield self.get(agent, url)
            self.assertEqual(answer, (200, b"ok"))
            yield deferLater(reactor, 0.95, lambda: None)
        self.assertEqual(node.text.count("connection"), 2)

    @inlineCallbacks
    def test_namesResolvedOncePerTTL(self) -> Any:
        """
        A host name is looked up once, used for every connection (kept-alive
        or new) until the TTL has passed, then looked up again.
        """
        upstream = RawUpstream(self, lambda c, h: c.tcp.write(OK.replace(b"OK\r\n", b"OK\r\nConnection: close\r\n")))
        names = _Names(["127.0.0.1"])
        agent = self.agent(names, dnsTTL=60)
        url = f"http://upstream.test:{portOf(upstream.port)}/"
        for _ in range(3):
            answer = yield self.get(agent, url)
            self.assertEqual(answer, (200, b"ok"))
        self.assertEqual(names.lookups, ["upstream.test"])
        self.assertEqual(len(upstream.connections), 3)
        self.assertEqual(upstream.requests[0], b"GET / HTTP/1.1\r\nHost: upstream.test:%d" % (portOf(upstream.port),))
        self.fakeReactor.ahead = 61
        yield self.get(agent, url)
        self.assertEqual(names.lookups, ["upstream.test"] * 2)

    @inlineCallbacks
    def test_lookedUpAgainAfterAFailure(self) -> Any:
        """
        A connection to a resolved address that fails makes the name stale:
        the next request looks it up again.
        """
        upstream = RawUpstream(self, answerWith(OK))
        # Nothing listens on 127.0.0.2 at that port: refused.
        names = _Names(["127.0.0.2"], ["127.0.0.1"])
        agent = self.agent(names)
        url = f"http://upstream.test:{portOf(upstream.port)}/"
        yield self.assertFailure(agent.request(b"GET", url.encode()), ConnectionRefusedError)
        answer = yield self.get(agent, url)
        self.assertEqual(answer, (200, b"ok"))
        self.assertEqual(len(names.lookups), 2)

    @inlineCallbacks
    def test_oneLookupForManyStarts(self) -> Any:
        """
        Streams that start together while a name is being looked up share
        that one lookup.
        """
        upstream = RawUpstream(self, answerWith(OK))
        names = _Names(["127.0.0.1"], held=True)
        agent = self.agent(names)
        url = f"http://upstream.test:{portOf(upstream.port)}/".encode()
        pending = [agent.request(b"GET", url) for _ in range(5)]
        # One that leaves while the name is looked up takes nothing with it.
        pending[0].cancel()
        self.assertEqual(len(names.lookups), 1)
        names.held[0]()
        for d in pending[1:]:
            response = yield d
            yield readBody(response)
        yield self.assertFailure(pending[0], Exception)
        self.assertEqual(len(names.lookups), 1)

    @inlineCallbacks
    def test_unresolvable(self) -> Any:
        agent = self.agent(_Names([]))
        yield self.assertFailure(agent.request(b"GET", b"http://nowhere.test/"), DNSLookupError)

    @inlineCallbacks
    def test_cancelledWhileConnecting(self) -> Any:
        """
        Cancelling a request that is still connecting stops the attempt.
        """
        agent = self.agent()
        # A connection to a port nothing answers on would be refused at
        # once on loopback; cancel before the reactor runs instead.
        upstream = RawUpstream(self, answerWith(OK))
        d: Deferred[IResponse] = agent.request(b"GET", upstream.url.encode())
        d.cancel()
        yield self.assertFailure(d, Exception)
        yield deferLater(reactor, 0.1, lambda: None)
        self.assertEqual(upstream.requests, [])


class _IdleConnection:
    """
    What the pool sees of a connection: a transport it can close, what its
    last response said of the upstream's keep-alive (nothing), and whether
    the upstream closed it.
    """

    keepAliveTimeout = None
    upstreamClosed = True

    def __init__(self) -> None:
        self.transport = StringTransport()


class LearnedIdleTimeTests(SynchronousTestCase):
    def test_forgottenAfterTenMinutes(self) -> None:
        """
        What the pool learns from an upstream's close of an idle connection
        holds for L{RELEARN_AFTER} seconds; then idle connections are kept
        the full C{idleTimeout} again (an upstream that closed them once, as
        in a restart, does not keep the pool short for ever).
        """
        clock = Clock()
        agent = UpstreamAgent(clock, idleTimeout=50)
        origin = _parseOrigin(b"http:", b"upstream.example:8000")
        closedByUpstream = _IdleConnection()
        agent._release(origin, closedByUpstream)  # type: ignore[arg-type]
        clock.advance(5)
        agent._forget(closedByUpstream)  # type: ignore[arg-type]
        for keptFor in (4.0, 4.0, 50.0):
            if keptFor == 50.0:
                clock.advance(RELEARN_AFTER)
            idle = _IdleConnection()
            agent._release(origin, idle)  # type: ignore[arg-type]
            clock.advance(keptFor - 0.01)
            self.assertFalse(idle.transport.disconnecting)
            clock.advance(0.02)
            self.assertTrue(idle.transport.disconnecting)
            agent._forget(idle)  # type: ignore[arg-type]

