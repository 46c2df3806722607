"""
Tests for L{twisted_stream.ops._service} and the twistd plugins' services.
"""

from __future__ import annotations

import shutil
import socket
from typing import Any

from twisted.internet.address import IPv4Address, IPv6Address, UNIXAddress
from twisted.internet.defer import inlineCallbacks
from twisted.internet.interfaces import IListeningPort
from twisted.internet.utils import getProcessOutput
from twisted.trial.unittest import SynchronousTestCase, TestCase
from zope.interface import implementer

from tests.support import LineProcess, onceAcrossRunners, startServer, twistdCommand
from twisted_stream.ops._service import DEFAULT_BACKLOG, baseURL, withBacklog


@implementer(IListeningPort)
class _Port:
    def __init__(self, address: Any) -> None:
        self._address = address

    def getHost(self) -> Any:
        return self._address

    def startListening(self) -> None:
        pass

    def stopListening(self) -> None:
        pass


class BaseURLTests(SynchronousTestCase):
    def test_addresses(self) -> None:
        """
        The announced URL is one a person on this machine can open.
        """
        cases = [
            (IPv4Address("TCP", "0.0.0.0", 8080), False, "http://localhost:8080/"),
            (IPv4Address("TCP", "127.0.0.1", 41000), False, "http://127.0.0.1:41000/"),
            (IPv6Address("TCP", "::", 8080), False, "http://localhost:8080/"),
            (IPv6Address("TCP", "::1", 8443), True, "https://[::1]:8443/"),
            (UNIXAddress(b"/run/proxy.sock"), False, "http+unix://%2Frun%2Fproxy.sock/"),
        ]
        for address, secure, url in cases:
            self.assertEqual(baseURL(_Port(address), secure), url)


@onceAcrossRunners
class ListenFailureTests(TestCase):
    @inlineCallbacks
    def test_portInUse(self) -> Any:
        """
        A port that cannot be bound stops twistd at start-up with one line
        on its standard error, the reason, and exit code 1, instead of a
        traceback or a process that runs on serving nothing.
        """
        holder = socket.socket()
        holder.bind(("127.0.0.1", 0))
        holder.listen(1)
        self.addCleanup(holder.close)
        port = holder.getsockname()[1]
        for plugin in ["chunkgen", "chunkproxy"]:
            process = LineProcess.spawn(
                twistdCommand(), "-n", "--pidfile=", plugin, "--listen", f"tcp:{port}:interface=127.0.0.1"
            )
            code = yield process.exitCode
            self.assertEqual(code, 1)
            self.assertEqual(
                process.stderr.decode(),
                f"{plugin}: cannot listen on tcp:{port}:interface=127.0.0.1: address already in use\n",
            )
            self.assertNotIn("Traceback", process.text)


class BacklogTests(SynchronousTestCase):
    def test_added(self) -> None:
        """
        The backlog goes into descriptions that take one and name none.
        """
        self.assertEqual(withBacklog("tcp:8080", 4096), "tcp:8080:backlog=4096")
        self.assertEqual(withBacklog("unix:/run/p.sock", 9), "unix:/run/p.sock:backlog=9")
        self.assertEqual(withBacklog("ssl:8443:privateKey=k.pem", 9), "ssl:8443:privateKey=k.pem:backlog=9")
        self.assertEqual(withBacklog("tcp:8080:backlog=10", 4096), "tcp:8080:backlog=10")
        self.assertEqual(withBacklog("systemd:domain=INET:index=0", 4096), "systemd:domain=INET:index=0")

    def test_defaultIsSomaxconn(self) -> None:
        with open("/proc/sys/net/core/somaxconn") as f:
            self.assertEqual(DEFAULT_BACKLOG, int(f.read()))


@onceAcrossRunners
class CrowdTests(TestCase):
    timeout = 30

    @inlineCallbacks
    def test_backlogAndFileLimit(self) -> Any:
        """
        A chunkproxy started with a soft open file limit of 256 (and a hard
        one of 2048) raises it to 2048, and listens with the kernel's
        somaxconn as its backlog (the kernel shows a listening socket's
        backlog as its Send-Q).
        """
        server = yield startServer(
            self,
            [shutil.which("prlimit") or "prlimit", "--nofile=256:2048", twistdCommand(), "-n", "--pidfile=", "chunkproxy",
             "--listen", "tcp:0:interface=127.0.0.1"],
        )
        with open(f"/proc/{server.pid}/limits") as f:
            limits = [line for line in f if line.startswith("Max open files")]
        self.assertEqual(limits[0].split()[3:5], ["2048", "2048"])
        self.assertIn("open file limit raised from 256 to 2048", server.output)
        listening = yield getProcessOutput("ss", ["-ltnH", f"sport = :{server.port}"])
        self.assertEqual(int(listening.split()[2]), DEFAULT_BACKLOG)
