"""
Tests for L{twisted_stream.gateway._descriptors}: the guard on a clock with
stand-in transports, and a real chunkproxy whose descriptors run out.
"""

from __future__ import annotations

import shutil
from typing import Any

from twisted.internet.defer import inlineCallbacks
from twisted.internet.task import Clock, deferLater
from twisted.logger import capturedLogs
from twisted.trial.unittest import SynchronousTestCase, TestCase

from tests.support import RawClient, Server, rawClients, reactor, startServer, startTwistd, twistdCommand
from twisted_stream.exchange._exhaustion import ExhaustionLog
from twisted_stream.gateway._descriptors import DescriptorGuard


class _Socket:
    def __init__(self, number: int) -> None:
        self.number = number

    def fileno(self) -> int:
        return self.number


class _TLS:
    """
    A transport over another, as TLS is.
    """

    def __init__(self, transport: _Socket) -> None:
        self.transport = transport


class GuardTests(SynchronousTestCase):
    def test_reserve(self) -> None:
        """
        With 5 descriptors held before the first client, a limit of 100 and
        a reserve of 10: 42 clients fit (5 + 2 x 42 = 89, each may soon
        hold an upstream connection too), the 43rd does not; one that
        closes makes room again. A descriptor number within the reserve is
        refused whatever the count; a TLS transport is judged by the socket
        under it; one without a socket never.
        """
        guard = DescriptorGuard(Clock(), limit=100, reserve=10, log=ExhaustionLog())
        admitted = [guard.exhausted(_Socket(5 + i)) for i in range(43)]
        self.assertEqual(admitted, [False] * 42 + [True])
        guard.closed()
        self.assertFalse(guard.exhausted(_TLS(_Socket(47))))
        self.assertTrue(guard.exhausted(_Socket(90)))
        self.assertFalse(guard.exhausted(object()))

    def test_loggedOnceASecond(self) -> None:
        """
        Refusals are logged at most once a second, with how many there were.
        """
        clock = Clock()
        guard = DescriptorGuard(clock, limit=100, reserve=10, log=ExhaustionLog())
        guard.exhausted(_Socket(5))
        with capturedLogs() as events:
            for _ in range(5):
                guard.exhausted(_Socket(95))
                clock.advance(0.3)
            guard.exhausted(_Socket(95))
        self.assertEqual([event["count"] for event in events], [1, 4])
        self.assertEqual(events[0]["log_level"].name, "warn")


class OutOfDescriptorsTests(TestCase):
    timeout = 60

    @inlineCallbacks
    def test_newConnectionsGet503(self) -> Any:
        """
        A chunkproxy allowed 128 open files, with 70 streams opened on it:
        those it has room for stream, the rest get 503 at once with
        C{Retry-After}, and the first stream goes on after them; the log
        says so once a second at most.
        """
        generator: Server = yield startTwistd(self, "chunkgen", "--count", "60", "--interval", "0.1")
        proxy: Server = yield startServer(
            self,
            [
                shutil.which("prlimit") or "prlimit",
                "--nofile=128:128",
                twistdCommand(),
                "-n",
                "--pidfile=",
                "chunkproxy",
                "--listen",
                "tcp:0:interface=127.0.0.1",
                "--upstream",
                generator.url + "generate",
            ],
        )
        clients: list[RawClient] = yield rawClients(proxy.port, 70, b"GET /stream HTTP/1.1\r\nHost: g\r\n\r\n")
        yield deferLater(reactor, 1.5, lambda: None)
        refused = [client for client in clients if client.received.startswith(b"HTTP/1.1 503 ")]
        streaming = [client for client in clients if client.received.startswith(b"HTTP/1.1 200 OK\r\n")]
        self.assertGreater(len(refused), 0)
        self.assertGreater(len(streaming), 30)
        self.assertEqual(len(refused) + len(streaming), 70, [client.received[:60] for client in clients])
        for client in refused:
            head, _, body = client.received.partition(b"\r\n\r\n")
            self.assertIn(b"\r\nRetry-After: 1\r\n", head)
            self.assertEqual(body, b"the gateway is out of file descriptors; try again shortly\n")
        before = len(clients[0].received)
        yield deferLater(reactor, 0.5, lambda: None)
        self.assertGreater(len(clients[0].received), before, "the first stream goes on")
        warnings = proxy.output.count("out of file descriptors (limit 128)")
        self.assertTrue(1 <= warnings <= 3, warnings)
        for client in clients:
            if not client.closed.called:
                client.transport.loseConnection()  # type: ignore[union-attr]
                yield client.closed
