"""
Tests for L{twisted_stream.ops._reactor}: events go straight to their
handlers, a handler's failure is logged and ends only its own connection,
and chunkproxy runs on the reactor unless twistd was told another.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from typing import Optional

from twisted.internet.abstract import FileDescriptor
from twisted.python.failure import Failure
from twisted.trial.unittest import TestCase

from twisted_stream.ops._reactor import StreamEPollReactor


class _Reader(FileDescriptor):
    """
    One end of a socket pair, noting what the reactor does with it.
    """

    def __init__(self, reactor: StreamEPollReactor, sock: socket.socket, fail: Optional[str] = None) -> None:
        super().__init__(reactor)
        self.sock = sock
        self.fail = fail
        self.read: list[bytes] = []
        self.lost: list[Failure] = []
        self.connected = 1

    def fileno(self) -> int:
        return self.sock.fileno()

    def logPrefix(self) -> str:
        return "reader-under-test"

    def doRead(self) -> None:
        if self.fail == "read":
            raise ZeroDivisionError("doRead failed")
        self.read.append(self.sock.recv(100))

    def connectionLost(self, reason: Failure) -> None:
        self.lost.append(reason)
        self.reactor.removeReader(self)
        if self.fail == "read":
            raise ValueError("connectionLost failed too")


class DispatchTests(TestCase):
    """
    L{StreamEPollReactor.doPoll} on a reactor of its own (never run: the
    test polls it).
    """

    def setUp(self) -> None:
        self.reactor = StreamEPollReactor()
        self.addCleanup(self._unbuild)

    def _unbuild(self) -> None:
        # As Twisted's own reactor tests clean up a reactor they built (its
        # waker comes only when it runs).
        for reader in list(self.reactor._internalReaders):
            self.reactor.removeReader(reader)
            reader.connectionLost(None)
        self.reactor._poller.close()

    def _pair(self, fail: Optional[str] = None) -> tuple[_Reader, socket.socket]:
        ours, theirs = socket.socketpair()
        ours.setblocking(False)
        self.addCleanup(ours.close)
        self.addCleanup(theirs.close)
        reader = _Reader(self.reactor, ours, fail)
        self.reactor.addReader(reader)
        # (Cleanups run last first: unwatched before closed.)
        self.addCleanup(lambda: reader in self.reactor.getReaders() and self.reactor.removeReader(reader))
        return reader, theirs

    def test_readableDescriptorIsRead(self) -> None:
        """
        A descriptor with data waiting has its C{doRead} called, once per
        poll, and one without data is left alone.
        """
        ready, readySender = self._pair()
        idle, _ = self._pair()
        readySender.send(b"hello")
        self.reactor.doPoll(0)
        self.assertEqual((ready.read, idle.read), ([b"hello"], []))

    def test_failingHandlerEndsOnlyItsConnection(self) -> None:
        """
        A handler that raises: its error and the one its C{connectionLost}
        raised are logged (the latter with the descriptor's log prefix), it
        is disconnected, and a descriptor ready in the same poll is still
        read.
        """
        broken, brokenSender = self._pair(fail="read")
        healthy, healthySender = self._pair()
        brokenSender.send(b"x")
        healthySender.send(b"still here")
        self.reactor.doPoll(0)
        self.assertEqual(healthy.read, [b"still here"])
        self.assertEqual([f.type for f in broken.lost], [ZeroDivisionError])
        self.assertEqual(len(self.flushLoggedErrors(ZeroDivisionError)), 1)
        self.assertEqual(len(self.flushLoggedErrors(ValueError)), 1)
        self.assertNotIn(broken, self.reactor.getReaders())


def _reactorClassOf(twistdArgs: list[str]) -> str:
    """
    @return: The class of the reactor installed once twistd has read
        C{twistdArgs}, in a new process (a reactor is chosen once per
        process).
    """
    program = (
        "import sys\n"
        "from twisted.scripts.twistd import ServerOptions\n"
        "ServerOptions().parseOptions(sys.argv[1:])\n"
        "from twisted.internet import reactor\n"
        "print(type(reactor).__module__ + '.' + type(reactor).__name__)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", program, *twistdArgs],
        capture_output=True,
        text=True,
        timeout=60,
        env=dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path)),
    )
    if done.returncode != 0:
        raise AssertionError(done.stderr)
    return done.stdout.strip()


class ChoiceTests(TestCase):
    """
    Which reactor twistd runs chunkproxy on.
    """

    def test_chunkproxyDefault(self) -> None:
        """
        C{twistd -n chunkproxy} runs on L{StreamEPollReactor}, chosen before
        its options are checked (C{--listen}'s check needs a reactor).
        """
        self.assertEqual(
            _reactorClassOf(["-n", "chunkproxy", "--listen", "tcp:0:interface=127.0.0.1"]),
            "twisted_stream.ops._reactor.StreamEPollReactor",
        )

    def test_twistdChoiceKept(self) -> None:
        """
        A reactor named with twistd's C{--reactor} is kept.
        """
        self.assertEqual(
            _reactorClassOf(["--reactor", "epoll", "-n", "chunkproxy"]),
            "twisted.internet.epollreactor.EPollReactor",
        )

    def test_namedForOtherApplications(self) -> None:
        """
        C{twistd --reactor streamepoll} chooses it for any application.
        """
        self.assertEqual(
            _reactorClassOf(["--reactor", "streamepoll", "-n", "chunkgen"]),
            "twisted_stream.ops._reactor.StreamEPollReactor",
        )
