"""
Tests for L{twisted_stream.ops._drain}: the drain on a clock, and a real
chunkproxy stopped with SIGTERM while it streams.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

from twisted.internet.defer import inlineCallbacks
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.error import ConnectionRefusedError
from twisted.internet.task import Clock, deferLater
from twisted.trial.unittest import SynchronousTestCase, TestCase

from tests.support import RawClient, Server, curl, fetch, onceAcrossRunners, reactor, startTwistd, until
from twisted_stream.http._refusal import Refusal
from twisted_stream.ops._drain import DRAINING, SETTLE_SECONDS, Drain


class _InFlight:
    """
    A stream in flight, cut off on demand.
    """

    def __init__(self) -> None:
        self.cutOffWith: list[Refusal] = []

    def cutOff(self, refusal: Refusal) -> None:
        self.cutOffWith.append(refusal)


class DrainTests(SynchronousTestCase):
    def test_nothingInFlight(self) -> None:
        """
        With nothing in flight, the drain is done once it has settled, and
        leaves no call behind.
        """
        clock = Clock()
        drain = Drain(clock)
        drained = drain.start(30)
        self.assertTrue(drain.draining)
        clock.advance(SETTLE_SECONDS - 0.01)
        self.assertNoResult(drained)
        clock.advance(0.01)
        self.assertIsNone(self.successResultOf(drained))
        self.assertEqual(clock.getDelayedCalls(), [])

    def test_startedWhileSettling(self) -> None:
        """
        A request admitted while the drain settles (its connection accepted
        just before the port closed) is waited for, not cut off by the
        process's stop.
        """
        clock = Clock()
        drain = Drain(clock)
        drained = drain.start(30)
        late = _InFlight()
        clock.advance(SETTLE_SECONDS / 2)
        drain.started(late)
        clock.advance(SETTLE_SECONDS)
        self.assertNoResult(drained)
        clock.advance(5)
        drain.ended(late)
        clock.advance(0)
        self.successResultOf(drained)
        self.assertEqual(late.cutOffWith, [])
        self.assertEqual(clock.getDelayedCalls(), [])

    def test_waitsForTheLast(self) -> None:
        clock = Clock()
        drain = Drain(clock)
        first, second = _InFlight(), _InFlight()
        drain.started(first)
        drain.started(second)
        drained = drain.start(30)
        drain.ended(first)
        self.assertNoResult(drained)
        clock.advance(10)
        drain.ended(second)
        # A turn later, so that the last answer's bytes go out first.
        self.assertNoResult(drained)
        clock.advance(0)
        self.successResultOf(drained)
        self.assertEqual(clock.getDelayedCalls(), [])

    def test_cutOffAtTimeout(self) -> None:
        """
        What is still in flight when the time is up is cut off, and a
        request still waiting for its upstream will be answered 503.
        """
        clock = Clock()
        drain = Drain(clock)
        request = _InFlight()
        drain.started(request)
        drained = drain.start(5)
        clock.advance(4.9)
        self.assertNoResult(drained)
        clock.advance(0.1)
        self.successResultOf(drained)
        self.assertEqual(request.cutOffWith, [DRAINING])
        self.assertEqual(DRAINING.code, 503)
        self.assertEqual(drain.inFlight, 0)


def _withHandlers(then: str) -> subprocess.CompletedProcess[str]:
    """
    Run a process whose log goes to its standard output (and to the list
    C{seen}), with L{exitCleanlyOnSignals} called before its reactor runs,
    as twistd starts its services; then C{then}'s lines, then the reactor.

    @return: What it did, its output as text, once it has ended (a minute
        at most).
    """
    program = (
        "import os, signal, sys\n"
        "from twisted.internet import reactor\n"
        "from twisted.logger import globalLogBeginner, textFileLogObserver\n"
        "from twisted_stream.ops._drain import exitCleanlyOnSignals\n"
        "seen = []\n"
        "globalLogBeginner.beginLoggingTo([seen.append, textFileLogObserver(sys.stdout)])\n"
        "exitCleanlyOnSignals()\n"
        f"{then}"
        "reactor.run()\n"
    )
    return subprocess.run(
        [sys.executable, "-c", program],
        capture_output=True,
        text=True,
        timeout=60,
        env=dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path)),
    )


class SignalHandlersTests(SynchronousTestCase):
    def test_inPlaceBeforeTheFirstTurn(self) -> None:
        """
        L{exitCleanlyOnSignals}, called before the reactor runs (as twistd
        starts its services), has replaced the reactor's SIGTERM handler
        before the reactor's first turn: a SIGTERM then drains rather than
        finding the reactor's own (which exits with the signal).
        """
        done = _withHandlers("reactor.callWhenRunning(os.kill, os.getpid(), signal.SIGTERM)\n")
        self.assertEqual(done.returncode, 0, done.stderr)
        self.assertIn("received SIGTERM: draining, then stopping", done.stdout)
        self.assertNotIn("Received SIGTERM, shutting down", done.stdout)

    def test_loggedInTheReactorsTurn(self) -> None:
        """
        The handler logs nothing itself: it runs between two bytecodes of
        whatever the reactor was doing (a log file's rotation, between
        closing the old file and opening the new, where its line was lost
        once), and the line is logged in the reactor's next turn.
        """
        done = _withHandlers(
            "def midway():\n"
            "    os.kill(os.getpid(), signal.SIGTERM)\n"
            "    sum(range(100000))\n"
            "    said = any('received' in str(e.get('log_format')) for e in seen)\n"
            "    print('logged inside the call' if said else 'not logged inside the call', flush=True)\n"
            "reactor.callWhenRunning(reactor.callLater, 0.1, midway)\n"
        )
        self.assertEqual(done.returncode, 0, done.stderr)
        self.assertIn("not logged inside the call", done.stdout)
        self.assertIn("received SIGTERM: draining, then stopping", done.stdout)


@onceAcrossRunners
class SIGTERMTests(TestCase):
    timeout = 60

    @inlineCallbacks
    def startBoth(self, *options: str) -> Any:
        generator: Server = yield startTwistd(self, "chunkgen")
        proxy: Server = yield startTwistd(
            self, "chunkproxy", "--upstream", generator.url + "generate", "--log-format", "json", *options
        )
        return proxy

    @inlineCallbacks
    def test_streamCompletesWhole(self) -> Any:
        """
        A 3-second stream, SIGTERM after 1 s: the stream completes whole
        (curl exits 0), a new connection is refused; a request on a
        kept-alive connection that served one before gets 503 with
        C{Connection: close} (the client may send it elsewhere), while the
        first request of a connection accepted before the drain is served,
        with C{Connection: close} (the client could not know); and the
        process exits 0 with the stream's end, not at the drain timeout
        (30 s).
        """
        proxy = yield self.startBoth()
        keptAlive = RawClient(b"GET /healthz HTTP/1.1\r\nHost: g\r\n\r\n")
        fresh = RawClient(b"")
        for connection in (keptAlive, fresh):
            yield connectProtocol(TCP4ClientEndpoint(reactor, "127.0.0.1", proxy.port), connection)
        client = curl(proxy.url + "stream?count=30&interval=0.1")
        yield deferLater(reactor, 1.0, lambda: None)
        served = keptAlive.received
        self.assertTrue(served.startswith(b"HTTP/1.1 200 OK\r\n") and served.endswith(b"\r\n\r\nok\n"), served)
        exited = proxy.stopWith("TERM")
        yield deferLater(reactor, 0.3, lambda: None)
        yield self.assertFailure(
            connectProtocol(TCP4ClientEndpoint(reactor, "127.0.0.1", proxy.port), RawClient(b"")),
            ConnectionRefusedError,
        )
        for connection in (keptAlive, fresh):
            connection.transport.write(b"GET /stream?count=3&interval=0.05 HTTP/1.1\r\nHost: g\r\n\r\n")  # type: ignore[union-attr]
        answer = yield keptAlive.closed
        answer = answer[len(served) :]
        self.assertTrue(answer.startswith(b"HTTP/1.1 503 Service Unavailable\r\n"), answer[:60])
        self.assertIn(b"\r\nConnection: close\r\n", answer)
        self.assertTrue(answer.endswith(b"\r\n\r\nthe gateway is shutting down; send the request again\n"), answer)
        answer = yield fresh.closed
        head, _, body = answer.partition(b"\r\n\r\n")
        self.assertTrue(head.startswith(b"HTTP/1.1 200 OK\r\n"), head)
        self.assertIn(b"\r\nConnection: close\r\n", head + b"\r\n")
        self.assertEqual(body.count(b"Chunk "), 3)
        self.assertTrue(body.endswith(b"\r\n0\r\n\r\n"), body[-40:])
        code = yield client.exitCode
        streamEnded = reactor.seconds()
        self.assertEqual(code, 0, client.stderr)
        self.assertEqual(len([line for _, line in client.lines if line.startswith(b"Chunk ")]), 30)
        when, exitCode = yield exited
        self.assertEqual(exitCode, 0)
        # A process's end takes what the machine takes (two test runners
        # may load both cores): the bound tells it from the timeout.
        self.assertLess(when - streamEnded, 5.0)
        # The upstream connections the shutdown closed taught the pool
        # nothing (it logged that the upstream closed idle ones after 2 ms).
        self.assertNotIn("closed an idle connection", proxy.output)

    @inlineCallbacks
    def test_generatorExitsZero(self) -> Any:
        """
        chunkgen told to stop (SIGINT, as Ctrl-C sends; SIGTERM, as a
        supervisor does) exits 0 and says so, as chunkproxy does after its
        drain (it exited 130 and 143, the signal's status).
        """
        for name in ("INT", "TERM"):
            generator: Server = yield startTwistd(self, "chunkgen")
            # Serving: its reactor runs (it logs "listening on" as it binds,
            # before the reactor has started and the handlers are in place).
            served = yield fetch(generator.url + "generate?count=1&interval=0")
            self.assertEqual(served.status, 200)
            _, code = yield generator.stopWith(name)
            self.assertEqual(code, 0, generator.output)
            self.assertIn(f"received SIG{name}: stopping", generator.output)

    @inlineCallbacks
    def test_hangupDrainsToo(self) -> Any:
        """
        SIGHUP (a terminal's hangup, or a C{systemctl reload} meant for a
        group of workers) drains a gateway as SIGTERM does: the stream in
        flight completes whole and the process exits 0, rather than die of
        the signal with the stream cut.
        """
        proxy = yield self.startBoth()
        client = curl(proxy.url + "stream?count=10&interval=0.1")
        yield until(lambda: any(line.startswith(b"Chunk ") for _, line in client.lines), what=lambda: proxy.output)
        exited = proxy.stopWith("HUP")
        code = yield client.exitCode
        self.assertEqual(code, 0, client.stderr)
        self.assertEqual(len([line for _, line in client.lines if line.startswith(b"Chunk ")]), 10)
        _, exitCode = yield exited
        self.assertEqual(exitCode, 0)
        self.assertIn("received SIGHUP: draining, then stopping", proxy.output)

    @inlineCallbacks
    def test_drainTimeoutCutsOff(self) -> Any:
        """
        With C{--drain-timeout 1}, a 5-second stream is cut off a second
        after SIGTERM, as truncated (curl exits 18), logged as C{drained};
        the process exits 0.
        """
        proxy = yield self.startBoth("--drain-timeout", "1")
        client = curl(proxy.url + "stream?count=50&interval=0.1")
        yield deferLater(reactor, 0.5, lambda: None)
        signalled = reactor.seconds()
        exited = proxy.stopWith("TERM")
        code = yield client.exitCode
        self.assertEqual(code, 18, client.stderr)
        when, exitCode = yield exited
        self.assertEqual(exitCode, 0)
        self.assertTrue(0.9 < when - signalled < 2.5, when - signalled)
        streams = [
            record
            for record in (json.loads(line) for line in proxy.output.splitlines())
            if record["namespace"] == "chunkproxy.stream"
        ]
        self.assertEqual([(r["path"], r["outcome"]) for r in streams], [("/stream", "drained")])


@onceAcrossRunners
class HealthTests(TestCase):
    timeout = 30

    @inlineCallbacks
    def test_healthAndReady(self) -> Any:
        """
        C{/healthz} and C{/readyz} answer 200 without a token, are neither
        forwarded nor logged as streams.
        """
        proxy: Server = yield startTwistd(
            self, "chunkproxy", "--upstream", "http://127.0.0.1:9/none", "--require-token", "env:T",
            "--log-format", "json", env={"T": "secret"},
        )
        for path, body in (("healthz", b"ok\n"), ("readyz", b"ok\n")):
            exchange = yield fetch(proxy.url + path)
            self.assertEqual((exchange.status, exchange.body), (200, body))
        yield deferLater(reactor, 0.2, lambda: None)
        self.assertNotIn("chunkproxy.stream", proxy.output)
