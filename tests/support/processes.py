"""
Real processes for the tests: twistd servers (C{startTwistd}), other
programs line by line (C{LineProcess}), and waiting for what they do.
"""

from __future__ import annotations

import os
import re
import shutil
import signal as signals
import socket
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

from hyperlink import URL
from twisted.internet import reactor as _reactor
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.internet.error import ProcessExitedAlready
from twisted.internet.protocol import ProcessProtocol
from twisted.internet.task import deferLater
from twisted.python.failure import Failure
from twisted.trial.unittest import SkipTest, SynchronousTestCase

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


PEERS = Path(__file__).resolve().parent.parent / "peers"
"""The clients and upstreams on other stacks the tests drive."""

NODE_PEERS = PEERS / "node"
"""The Node ones (their modules installed by scripts/test with npm)."""


def curl(url: str) -> LineProcess:
    """
    Start C{curl -sS -N URL}.

    @raise SkipTest: Where curl is not installed.
    """
    command = shutil.which("curl")
    if command is None:
        raise SkipTest("curl is not installed (.ci/run installs it)")
    return LineProcess.spawn(command, "-sS", "-N", url)


def nodeExecutable() -> str:
    """
    @return: Where C{node} is.
    @raise SkipTest: Where it is not installed (a machine with only python3).
    """
    node = shutil.which("node")
    if node is None:
        raise SkipTest("node is not installed (.ci/run installs nodejs)")
    return node


CHROMIUM = shutil.which("chromium")
CHROMEDRIVER = shutil.which("chromedriver")


def browser(profile: str, *arguments: str) -> Any:
    """
    Start headless Chromium under chromedriver, with a fresh profile and
    none of its own network traffic.

    @param arguments: More command-line arguments for Chromium.
    @raise SkipTest: Where Chromium or chromedriver is not installed.
    """
    if CHROMIUM is None or CHROMEDRIVER is None:
        raise SkipTest(
            "Chromium is not installed: apt-get install chromium chromium-driver (.ci/run does)"
        )
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--window-size=1100,900",
        f"--user-data-dir={profile}",
        *arguments,
    ):
        options.add_argument(argument)
    return webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)


@dataclass
class RedisServer:
    """
    A C{redis-server} a test started on a free port of loopback.

    @ivar port: Its port.
    @ivar process: The process.
    """

    port: int
    process: LineProcess

    @property
    def url(self) -> str:
        """
        @return: Its database 0, as C{--resume-store} takes it.
        """
        return f"redis://127.0.0.1:{self.port}/0"

    def kill(self) -> Deferred[int]:
        """
        Kill it (C{SIGKILL}: no goodbye to its clients).

        @return: A Deferred that fires once it has ended.
        """
        return stopped(self.process)


def startRedis(
    case: SynchronousTestCase, *options: str, tls: Optional[tuple[str, str]] = None
) -> Deferred[RedisServer]:
    """
    Start C{redis-server} on a free port of loopback, keeping nothing on
    disk, and stop it when the test ends.

    @param options: More of its options (C{--requirepass SECRET}).
    @param tls: Its certificate's and key's PEM files, to speak TLS only
        (clients are not asked for certificates).

    @raise SkipTest: Where redis-server is not installed (.ci/run installs
        it: Debian's redis-server).
    """
    command = shutil.which("redis-server")
    if command is None:
        raise SkipTest("redis-server is not installed (.ci/run installs it)")
    port = freePort()
    listen = ["--port", str(port)]
    if tls is not None:
        listen = ["--port", "0", "--tls-port", str(port), "--tls-cert-file", tls[0], "--tls-key-file", tls[1],
                  "--tls-auth-clients", "no"]  # fmt: skip
    process = LineProcess.spawn(
        command, *listen, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
        "--protected-mode", "yes", "--dir", _mkdir(case), *options,
    )  # fmt: skip
    case.addCleanup(stopped, process)
    ready = until(
        lambda: "Ready to accept connections" in process.text, 10, lambda: process.text + repr(process.stderr)
    )
    return ready.addCallback(lambda _: RedisServer(port, process))
