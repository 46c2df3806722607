"""
Tests for L{twisted_stream.ops._workers}: the pool's supervision on a clock,
and real C{twistd chunkproxy --workers 2} groups serving, replacing a
killed worker, draining on SIGTERM, and reporting their metrics together.
"""

from __future__ import annotations

import json
import os
import re
import signal
from contextlib import ExitStack
from typing import Any, Optional

from prometheus_client.parser import text_string_to_metric_families
from twisted.internet.defer import gatherResults, inlineCallbacks
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.error import ConnectionRefusedError, ProcessDone, ProcessTerminated
from twisted.internet.task import Clock, deferLater
from twisted.logger import capturedLogs, formatEvent
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase, TestCase

from tests.support import (
    LOOPBACK_LISTEN,
    LineProcess,
    RawClient,
    Server,
    curl,
    fetch,
    freePort,
    onceAcrossRunners,
    reactor,
    readText,
    startTwistd,
    stopped,
    twistdCommand,
    until,
)
from twisted_stream.ops._workers import (
    READY_DESCRIPTOR,
    READY_TIMEOUT,
    WORKER_VARIABLE,
    WorkerPool,
    parseWorkers,
    workerCommand,
    workerNumber,
)


class ParseWorkersTests(SynchronousTestCase):
    def test_auto(self) -> None:
        """
        C{auto} is the number of cores the process may run on.
        """
        self.assertEqual(parseWorkers("auto"), len(os.sched_getaffinity(0)))

    def test_number(self) -> None:
        self.assertEqual(parseWorkers("3"), 3)

    def test_bad(self) -> None:
        for text in ("0", "-1", "two", "1.5", ""):
            with self.assertRaises(ValueError):
                parseWorkers(text)


class WorkerCommandTests(SynchronousTestCase):
    def test_logsWhereTheParentDoes(self) -> None:
        """
        A worker is twistd in the foreground with the parent's plugin
        options, without a pidfile; it logs to standard output when the
        parent does, else to a file of its own beside the parent's.
        """
        command = workerCommand("chunkproxy", ["--workers", "2"], {"nodaemon": True, "logfile": None}, 1)
        self.assertEqual(command[-5:], ["--pidfile=", "--logfile=-", "chunkproxy", "--workers", "2"])
        self.assertIn("--nodaemon", command)
        command = workerCommand("chunkproxy", [], {"nodaemon": False, "logfile": "/var/log/cp.log"}, 2)
        self.assertIn("--logfile=/var/log/cp.worker2.log", command)
        command = workerCommand("chunkproxy", [], {"syslog": True, "prefix": "gw"}, 2)
        self.assertIn("--syslog", command)
        self.assertIn("--prefix=gw", command)

    def test_workerNumber(self) -> None:
        self.assertIsNone(workerNumber({}))
        self.assertEqual(workerNumber({WORKER_VARIABLE: "2"}), 2)


class _FakeTransport:
    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.signals: list[str] = []

    def closeStdin(self) -> None:
        pass

    def signalProcess(self, name: str) -> None:
        self.signals.append(name)


class _ProcessReactor(Clock):
    """
    A clock that spawns fake processes and remembers them.
    """

    def __init__(self) -> None:
        super().__init__()
        self.spawned: list[tuple[Any, list[str], dict[int, Any], _FakeTransport]] = []

    def spawnProcess(self, protocol: Any, executable: str, args: list[str], env: Any, path: str,
                     childFDs: dict[int, Any]) -> _FakeTransport:  # fmt: skip
        transport = _FakeTransport(1000 + len(self.spawned))
        self.spawned.append((protocol, args, childFDs, transport))
        return transport


class _Port:
    def __init__(self, descriptor: int) -> None:
        self.descriptor = descriptor
        self.reading = True
        self.listening = True

    def stopReading(self) -> None:
        self.reading = False

    def stopListening(self) -> None:
        self.listening = False

    def fileno(self) -> int:
        return self.descriptor


def _died(code: Optional[int] = None, signal: Optional[int] = None) -> Failure:
    if code == 0:
        return Failure(ProcessDone(0))
    return Failure(ProcessTerminated(code, signal))


class WorkerPoolTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.reactor = _ProcessReactor()
        self.folder = self.mktemp()
        os.makedirs(self.folder)
        self.pool = WorkerPool(self.reactor, 2, lambda n: ["twistd", f"w{n}"], self.folder, grace=10)
        # As the parent's listening service would have bound them.
        self.ports = [_Port(7), _Port(8)]
        self.pool.binding.ports.extend(self.ports)
        self.pool.adopt(self.ports[0])  # type: ignore[arg-type]
        self.pool.startService()

    def test_startsEach(self) -> None:
        """
        The parent's sockets stop accepting; each worker gets one of them as
        its descriptor 3, and a command of its own.
        """
        self.assertEqual([port.reading for port in self.ports], [False, False])
        self.assertEqual([args for _, args, _, _ in self.reactor.spawned], [["twistd", "w1"], ["twistd", "w2"]])
        self.assertEqual([fds[3] for _, _, fds, _ in self.reactor.spawned], [7, 8])

    def test_replacedAtOnce(self) -> None:
        """
        A worker that dies after its first second is replaced at once, with
        its number and its socket.
        """
        self.reactor.advance(5)
        protocol, _, _, _ = self.reactor.spawned[0]
        protocol.processEnded(_died(signal=signal.SIGKILL))
        self.reactor.advance(0)
        self.assertEqual(len(self.reactor.spawned), 3)
        self.assertEqual(self.reactor.spawned[2][1], ["twistd", "w1"])
        self.assertEqual(self.reactor.spawned[2][2][3], 7)

    def test_crashLoopSlowed(self) -> None:
        """
        One that dies within its first second is replaced a second later,
        not at once: a worker that cannot start does not spin.
        """
        protocol, _, _, _ = self.reactor.spawned[1]
        protocol.processEnded(_died(code=1))
        self.reactor.advance(0.9)
        self.assertEqual(len(self.reactor.spawned), 2)
        self.reactor.advance(0.1)
        self.assertEqual(self.reactor.spawned[2][1], ["twistd", "w2"])

    def test_stopDrainsEach(self) -> None:
        """
        Stopping sends each worker SIGTERM and fires once the last has
        exited; none is replaced meanwhile, and the metrics folder goes.
        The sockets close (the first is the listening service's to close).
        """
        stopped = self.pool.stopService()
        self.assertEqual([port.listening for port in self.ports], [True, False])
        self.assertEqual([t.signals for _, _, _, t in self.reactor.spawned], [["TERM"], ["TERM"]])
        self.reactor.spawned[0][0].processEnded(_died(code=0))
        self.assertNoResult(stopped)
        self.reactor.spawned[1][0].processEnded(_died(code=0))
        self.successResultOf(stopped)
        self.reactor.advance(5)
        self.assertEqual(len(self.reactor.spawned), 2)
        self.assertFalse(os.path.exists(self.folder))
        self.assertEqual(self.reactor.getDelayedCalls(), [])

    def test_killedAfterGrace(self) -> None:
        """
        A worker still running C{grace} seconds after SIGTERM is killed.
        """
        stopped = self.pool.stopService()
        self.reactor.spawned[0][0].processEnded(_died(code=0))
        self.reactor.advance(10)
        self.assertEqual(self.reactor.spawned[1][3].signals, ["TERM", "KILL"])
        self.reactor.spawned[1][0].processEnded(_died(signal=signal.SIGKILL))
        self.successResultOf(stopped)


class ReloadTests(SynchronousTestCase):
    """
    L{WorkerPool.reload}: a new worker beside each, the old one stopped only
    once its successor serves.
    """

    def setUp(self) -> None:
        self.reactor = _ProcessReactor()
        folder = self.mktemp()
        os.makedirs(folder)
        self.pool = WorkerPool(self.reactor, 2, lambda n: ["twistd", f"w{n}"], folder, grace=10)
        ports = [_Port(7), _Port(8)]
        self.pool.binding.ports.extend(ports)
        self.pool.adopt(ports[0])  # type: ignore[arg-type]
        self.pool.startService()
        self.reactor.advance(5)
        logs = ExitStack()
        self.events = logs.enter_context(capturedLogs())
        self.addCleanup(logs.close)
        self.pool.reload()

    def lastLine(self) -> str:
        """
        @return: What the pool logged last.
        """
        return formatEvent([e for e in self.events if e.get("log_namespace") == "twisted_stream.ops._workers"][-1])

    def process(self, index: int) -> tuple[Any, _FakeTransport]:
        """
        @return: The protocol and transport of the C{index}-th process
            spawned (0, 1: the first workers; 2, 3: their successors).
        """
        protocol, _, _, transport = self.reactor.spawned[index]
        return protocol, transport

    def test_replacedOnceServing(self) -> None:
        """
        Each worker's successor starts at once, on its socket; the old one
        is sent SIGTERM only when its successor says it serves, and is not
        replaced when it has drained.
        """
        self.assertEqual([args for _, args, _, _ in self.reactor.spawned[2:]], [["twistd", "w1"], ["twistd", "w2"]])
        self.assertEqual([fds[3] for _, _, fds, _ in self.reactor.spawned[2:]], [7, 8])
        self.assertEqual([fds[READY_DESCRIPTOR] for _, _, fds, _ in self.reactor.spawned], ["r"] * 4)
        self.assertEqual([self.process(i)[1].signals for i in range(4)], [[], [], [], []])
        self.process(2)[0].childDataReceived(READY_DESCRIPTOR, b"ready\n")
        self.assertEqual([self.process(i)[1].signals for i in range(4)], [["TERM"], [], [], []])
        self.process(0)[0].processEnded(_died(code=0))
        self.reactor.advance(5)
        self.assertEqual(len(self.reactor.spawned), 4)
        self.process(3)[0].childDataReceived(READY_DESCRIPTOR, b"ready\n")
        self.assertEqual([self.process(i)[1].signals for i in range(4)], [["TERM"], ["TERM"], [], []])
        self.assertEqual(self.reactor.getDelayedCalls(), [])
        self.assertEqual(self.lastLine(), "reload: every worker replaced")

    def test_brokenSuccessorGivenUp(self) -> None:
        """
        A successor that exits before it serves, or does not serve within
        L{READY_TIMEOUT} (then it is killed), is given up on: the old worker
        goes on, untouched, and nothing is started in its place.
        """
        self.process(2)[0].processEnded(_died(code=1))
        self.reactor.advance(READY_TIMEOUT)
        self.assertEqual(self.process(3)[1].signals, ["KILL"])
        self.assertEqual(self.lastLine(), "reload: 0 of 2 workers replaced")
        self.process(3)[0].processEnded(_died(signal=signal.SIGKILL))
        self.reactor.advance(5)
        self.assertEqual(len(self.reactor.spawned), 4)
        self.assertEqual([self.process(i)[1].signals for i in range(2)], [[], []])
        # They are still the group's: a reload can be tried again.
        self.pool.reload()
        self.assertEqual(len(self.reactor.spawned), 6)

    def test_oldDiesMeanwhile(self) -> None:
        """
        An old worker that dies while its successor starts is not replaced
        twice: the successor takes the slot when it serves.
        """
        self.process(0)[0].processEnded(_died(signal=signal.SIGKILL))
        self.reactor.advance(5)
        self.assertEqual(len(self.reactor.spawned), 4)
        self.process(2)[0].childDataReceived(READY_DESCRIPTOR, b"ready\n")
        self.process(3)[0].childDataReceived(READY_DESCRIPTOR, b"ready\n")
        self.assertEqual([self.process(i)[1].signals for i in range(4)], [[], ["TERM"], [], []])
        self.reactor.advance(5)
        self.assertEqual(len(self.reactor.spawned), 4)

    def test_oneAtATime(self) -> None:
        """
        A reload asked for while one is under way is ignored.
        """
        self.pool.reload()
        self.assertEqual(len(self.reactor.spawned), 4)

    def test_stopDuringReload(self) -> None:
        """
        Stopping in the middle of a reload sends every process SIGTERM, old
        and new, and fires once all have exited.
        """
        self.process(2)[0].childDataReceived(READY_DESCRIPTOR, b"ready\n")
        stopped = self.pool.stopService()
        self.assertEqual([self.process(i)[1].signals for i in range(4)], [["TERM"], ["TERM"], ["TERM"], ["TERM"]])
        for index in range(3):
            self.process(index)[0].processEnded(_died(code=0))
        self.assertNoResult(stopped)
        self.process(3)[0].processEnded(_died(code=0))
        self.successResultOf(stopped)
        self.assertEqual(len(self.reactor.spawned), 4)
        self.assertEqual(self.reactor.getDelayedCalls(), [])


def _streamEvents(server: Server) -> list[dict[str, Any]]:
    return [
        record
        for record in (json.loads(line) for line in server.output.splitlines() if line.startswith("{"))
        if record["namespace"] == "chunkproxy.stream"
    ]


def _workerPids(output: str) -> list[int]:
    found = re.findall(r"workers started \(pids ([\d ]+)\)", output)
    assert found, output
    return [int(pid) for pid in found[0].split()]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie (exited, not yet reaped) is gone too.
    with open(f"/proc/{pid}/stat") as stat:
        return stat.read().rsplit(")", 1)[1].split()[0] != "Z"


@onceAcrossRunners
class GroupTests(TestCase):
    """
    A real C{chunkproxy --workers 2} before a real C{chunkgen}.
    """

    timeout = 60

    @inlineCallbacks
    def startGroup(self, *options: str) -> Any:
        generator: Server = yield startTwistd(self, "chunkgen")
        proxy: Server = yield startTwistd(
            self, "chunkproxy", "--upstream", generator.url + "generate", "--workers", "2", "--log-format", "json",
            *options,
        )  # fmt: skip
        # The parent listens first, then starts the workers, which take a
        # while to start on a loaded machine: a test begins once both serve.
        yield until(
            lambda: all(f"chunkproxy worker {n} listening on" in proxy.output for n in (1, 2)),
            what=lambda: proxy.output[-3000:],
        )
        return proxy

    @inlineCallbacks
    def streams(self, proxy: Server, count: int, path: str = "stream?count=5&interval=0.05") -> Any:
        exchanges = yield gatherResults([fetch(proxy.url + path) for _ in range(count)])
        return exchanges

    @inlineCallbacks
    def streamsUnderWay(self, proxy: Server, count: int) -> Any:
        """
        Start C{count} three-second streams (30 chunks) with curl.

        @return: A Deferred firing with the curl processes once every
            stream has had its first chunk: on a loaded machine a worker
            may still be starting a second after the group, and a
            connection no worker has accepted yet is reset when the
            listener closes (as with nginx).
        """
        clients = [curl(proxy.url + "stream?count=30&interval=0.1") for _ in range(count)]
        yield until(
            lambda: all(any(line.startswith(b"Chunk ") for _, line in client.lines) for client in clients),
            seconds=10,
            what=lambda: "the streams did not all start",
        )
        return clients

    @inlineCallbacks
    def assertWhole(self, clients: list[LineProcess]) -> Any:
        """
        Every stream of L{streamsUnderWay} ends whole: curl exits 0 with
        all 30 chunks.
        """
        codes = yield gatherResults([client.exitCode for client in clients])
        self.assertEqual(codes, [0] * len(clients), [c.stderr for c in clients])
        for client in clients:
            self.assertEqual(len([line for _, line in client.lines if line.startswith(b"Chunk ")]), 30)

    @inlineCallbacks
    def scrapedOnceCounted(self, url: str, streams: int) -> Any:
        """
        Scrape C{url} until it counts C{streams} complete streams (a stream
        is counted just after its last bytes are sent: a client that asks at
        once may be a moment early), for 5 s at most.

        @return: A Deferred firing with the scraped text.
        """
        counted = f'chunkproxy_requests_total{{api="other",outcome="complete",route="/stream",status="200"}} {float(streams)}'
        deadline = reactor.seconds() + 5
        scraped = yield fetch(url)
        while counted.encode() not in scraped.body and reactor.seconds() < deadline:
            yield deferLater(reactor, 0.05, lambda: None)
            scraped = yield fetch(url)
        self.assertIn(counted, scraped.body.decode())
        return scraped.body.decode()

    @inlineCallbacks
    def test_bothServeOneSocket(self) -> Any:
        """
        Streams made at once are served by both workers (the stream events
        carry the two workers' numbers and process ids, neither the
        parent's), each whole; C{/metrics}, from whichever worker answers,
        counts every stream of the group.
        """
        proxy = yield self.startGroup()
        pids = _workerPids(proxy.output)
        workers = set(pids)
        total = 0
        for _ in range(10):
            exchanges = yield self.streams(proxy, 20)
            total += len(exchanges)
            for exchange in exchanges:
                self.assertEqual(exchange.status, 200)
                self.assertEqual(exchange.body.count(b"Chunk "), 5)
            yield deferLater(reactor, 0.1, lambda: None)
            if len({event["pid"] for event in _streamEvents(proxy)}) == 2:
                break
        self.assertEqual({event["pid"] for event in _streamEvents(proxy)}, workers)
        self.assertEqual({(event["worker"], event["pid"]) for event in _streamEvents(proxy)}, {(1, pids[0]), (2, pids[1])})
        yield self.scrapedOnceCounted(proxy.url + "metrics", total)
        for _ in range(4):
            scraped = yield fetch(proxy.url + "metrics")
            families = {f.name: f for f in text_string_to_metric_families(scraped.body.decode("utf-8"))}
            requests = [s for s in families["chunkproxy_requests"].samples if s.name.endswith("_total")]
            self.assertEqual(
                [(s.labels, s.value) for s in requests],
                [({"api": "other", "route": "/stream", "status": "200", "outcome": "complete"}, float(total))],
            )
            inFlight = families["chunkproxy_streams_in_flight"].samples
            self.assertEqual([(s.labels, s.value) for s in inFlight], [({"route": "/stream"}, 0.0)])

    @inlineCallbacks
    def test_textLogNamesTheWorker(self) -> Any:
        """
        Workers writing text to the parent's standard output are told apart:
        each line of a worker's names it in the system field; the parent's
        line for each socket it binds names it the workers' socket.
        """
        proxy = yield self.startGroup("--log-format", "text")
        for number in (1, 2):
            self.assertRegex(proxy.output, rf"\[[\w.]+#info,worker {number}\] chunkproxy worker {number} listening on")
        self.assertRegex(proxy.output, r"\[[\w.]+#info\] 2 workers started")
        self.assertEqual(proxy.output.count("[-] workers' socket starting on"), 2)
        self.assertNotIn("NotAccepting", proxy.output)

    @inlineCallbacks
    def test_metricsListenOnly(self) -> Any:
        """
        With C{--metrics-listen}, the group's metrics are there (served by
        the parent) and not at C{/metrics} on C{--listen}.
        """
        port = freePort()
        proxy = yield self.startGroup("--metrics-listen", f"tcp:{port}:interface=127.0.0.1")
        exchanges = yield self.streams(proxy, 3)
        self.assertEqual([e.status for e in exchanges], [200] * 3)
        yield self.scrapedOnceCounted(f"http://127.0.0.1:{port}/metrics", 3)
        onMain = yield fetch(proxy.url + "metrics")
        self.assertEqual(onMain.status, 404)

    @inlineCallbacks
    def startGroupWithLogFiles(self) -> Any:
        """
        Start two workers whose parent logs to a file, once both serve.

        @return: A Deferred firing with the parent, its log file, and the
            workers' log files.
        """
        here = os.path.abspath(self.mktemp())
        os.makedirs(here)
        log = os.path.join(here, "chunkproxy.log")
        workerLogs = [os.path.join(here, f"chunkproxy.worker{n}.log") for n in (1, 2)]
        process = LineProcess.spawn(
            twistdCommand(), "-n", "--pidfile=", f"--logfile={log}", "chunkproxy", "--listen", LOOPBACK_LISTEN,
            "--upstream", "http://127.0.0.1:9/", "--workers", "2",
        )  # fmt: skip
        self.addCleanup(stopped, process)
        yield until(lambda: all("listening on" in readText(path) for path in workerLogs))
        return process, log, workerLogs

    @inlineCallbacks
    def test_SIGUSR1WhileAWorkerStarts(self) -> Any:
        """
        C{SIGUSR1} to the parent while a worker it replaces is still
        starting (C{logrotate} at that moment) does not end that worker.
        """
        process, log, workerLogs = yield self.startGroupWithLogFiles()
        # Past the first second of its life, which is slowed down as a
        # crash loop's would be.
        yield deferLater(reactor, 1.2, lambda: None)
        first = _workerPids(readText(log))[0]
        os.kill(first, signal.SIGKILL)
        yield until(lambda: f"(pid {first}) was killed by SIGKILL" in readText(log), seconds=5, what=lambda: readText(log))
        os.kill(process.pid, signal.SIGUSR1)
        yield until(lambda: readText(workerLogs[0]).count("listening on") >= 2, what=lambda: readText(log))
        self.assertNotIn("SIGUSR1", readText(log))

    @inlineCallbacks
    def test_SIGUSR1RotatesEveryLog(self) -> Any:
        """
        With a log file, each worker writes its own beside the parent's,
        and C{SIGUSR1} to the parent rotates the parent's and every
        worker's (C{logrotate} need not know the workers' pids, which
        change as workers are replaced).
        """
        process, log, workerLogs = yield self.startGroupWithLogFiles()
        os.kill(process.pid, signal.SIGUSR1)
        yield until(lambda: all(os.path.exists(path + ".1") for path in [log, *workerLogs]))
        for path in workerLogs:
            self.assertIn("listening on", readText(path + ".1"))
        # The workers go on, and write to their new files.
        os.kill(process.pid, signal.SIGTERM)
        code = yield process.exitCode
        self.assertEqual(code, 0, process.stderr)
        for path in workerLogs:
            self.assertIn("draining", readText(path))

    @inlineCallbacks
    def test_deadWorkerReplaced(self) -> Any:
        """
        A worker killed with SIGKILL is replaced at once, logged with how it
        died; streams asked for meanwhile are all served whole (they wait in
        the socket's queue, which the parent keeps).
        """
        proxy = yield self.startGroup()
        first, second = _workerPids(proxy.output)
        # Past the first second of its life, which is slowed down as a
        # crash loop's would be.
        yield deferLater(reactor, 1.2, lambda: None)
        os.kill(first, signal.SIGKILL)
        exchanges = yield self.streams(proxy, 10)
        self.assertEqual([e.body.count(b"Chunk ") for e in exchanges], [5] * 10)
        replaced = f"worker 1 (pid {first}) was killed by SIGKILL; starting another"
        yield until(lambda: replaced in proxy.output, seconds=5, what=lambda: proxy.output[-2000:])
        # When the replacement starts (at once, or a second later in a crash
        # loop) is the pool's clock tests' to check; its start-up here takes
        # what the machine takes.
        yield until(
            lambda: proxy.output.count("chunkproxy worker 1 listening on") >= 2, what=lambda: proxy.output[-3000:]
        )
        self.assertTrue(_alive(second))

    @inlineCallbacks
    def test_SIGTERMDrainsEveryWorker(self) -> Any:
        """
        SIGTERM to the parent while each worker streams: every stream
        completes whole, new connections are refused, the parent exits 0
        with the last stream's end, not at the drain timeout (30 s), and no
        worker is left.
        """
        proxy = yield self.startGroup()
        workers = _workerPids(proxy.output)
        clients = yield self.streamsUnderWay(proxy, 12)
        exited = proxy.stopWith("TERM")
        yield deferLater(reactor, 0.3, lambda: None)
        yield self.assertFailure(
            connectProtocol(TCP4ClientEndpoint(reactor, "127.0.0.1", proxy.port), RawClient(b"")),
            ConnectionRefusedError,
        )
        yield self.assertWhole(clients)
        streamsEnded = reactor.seconds()
        when, exitCode = yield exited
        self.assertEqual(exitCode, 0)
        # Two processes end in turn (the worker, then the parent): about
        # 0.3 s idle, 1.2 s seen with both test runners loading the cores.
        self.assertLess(when - streamsEnded, 5.0)
        self.assertEqual([pid for pid in workers if _alive(pid)], [])
        self.assertEqual({event["pid"] for event in _streamEvents(proxy)}, set(workers))

    @inlineCallbacks
    def test_SIGHUPReplacesEveryWorker(self) -> Any:
        """
        SIGHUP to the parent while each worker streams: a new worker starts
        beside each; the streams under way complete whole on the old ones,
        which then exit; requests made meanwhile are all served whole; and
        afterwards the new workers serve, the parent still running.
        """
        proxy = yield self.startGroup()
        old = _workerPids(proxy.output)
        clients = yield self.streamsUnderWay(proxy, 8)
        os.kill(proxy.pid, signal.SIGHUP)
        meanwhile: list[Any] = []
        reloaded = reactor.seconds()
        while "reload: every worker replaced" not in proxy.output:
            self.assertLess(reactor.seconds() - reloaded, 30, proxy.output[-3000:])
            meanwhile += yield self.streams(proxy, 2, "stream?count=2&interval=0.01")
            yield deferLater(reactor, 0.05, lambda: None)
        self.assertGreater(len(meanwhile), 0)
        self.assertEqual([(e.status, e.body.count(b"Chunk ")) for e in meanwhile], [(200, 2)] * len(meanwhile))
        replaced = {int(old): int(new) for new, old in re.findall(r"replaced: pid (\d+) serves, pid (\d+) drains", proxy.output)}
        self.assertEqual(set(replaced), set(old))
        yield self.assertWhole(clients)
        yield until(lambda: not any(_alive(pid) for pid in old), seconds=10, what=lambda: proxy.output[-3000:])
        served = len(_streamEvents(proxy))
        yield self.streams(proxy, 20)
        self.assertLessEqual({event["pid"] for event in _streamEvents(proxy)[served:]}, set(replaced.values()))
        self.assertTrue(_alive(proxy.pid))
        self.assertNotIn("starting another", proxy.output)

    @inlineCallbacks
    def test_oneWorkerReloads(self) -> Any:
        """
        C{--workers 1} is a parent and one worker, which SIGHUP replaces as
        it would several: a reload on one core.
        """
        generator: Server = yield startTwistd(self, "chunkgen")
        proxy: Server = yield startTwistd(self, "chunkproxy", "--upstream", generator.url + "generate", "--workers", "1")
        yield until(lambda: "chunkproxy worker 1 listening on" in proxy.output, what=lambda: proxy.output[-3000:])
        first = int(re.findall(r"1 worker started \(pid (\d+)\)", proxy.output)[0])
        os.kill(proxy.pid, signal.SIGHUP)
        yield until(lambda: "reload: every worker replaced" in proxy.output, what=lambda: proxy.output[-3000:])
        self.assertIn(f"pid {first} drains", proxy.output)
        exchanges = yield self.streams(proxy, 4)
        self.assertEqual([e.body.count(b"Chunk ") for e in exchanges], [5] * 4, [(e.status, e.body[:200]) for e in exchanges] + [proxy.output[-4000:]])

    @inlineCallbacks
    def test_orphanedWorkersStop(self) -> Any:
        """
        A parent killed with SIGKILL (no chance to stop its workers): they
        notice within a couple of seconds and stop, rather than serve on
        unsupervised; the group's metrics folder goes with them.
        """
        proxy = yield self.startGroup()
        workers = _workerPids(proxy.output)
        with open(f"/proc/{workers[0]}/environ", "rb") as environ:
            folder = dict(v.split(b"=", 1) for v in environ.read().split(b"\0") if v)[b"PROMETHEUS_MULTIPROC_DIR"]
        self.assertTrue(os.path.isdir(folder))
        os.kill(proxy.pid, signal.SIGKILL)
        deadline = reactor.seconds() + 3
        while any(_alive(pid) for pid in workers):
            self.assertLess(reactor.seconds(), deadline, "workers outlived their parent")
            yield deferLater(reactor, 0.1, lambda: None)
        self.assertFalse(os.path.exists(folder))
