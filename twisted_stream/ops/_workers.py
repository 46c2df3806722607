# -*- test-case-name: tests.test_workers -*-
"""
C{--workers N}: one listening address, served by N worker processes, each a
reactor of its own, kept at N by their parent.

The parent binds N sockets on the address with C{SO_REUSEPORT} (the
kernel spreads new connections over them by a hash of each connection's
addresses, so long-lived streams are shared out evenly, where workers
accepting from one shared socket leave most to whichever wakes first),
never accepts on them, and hands worker I{i} the I{i}-th as its
descriptor 3; a worker adopts it (L{inheritedListener}) and serves it as a
single gateway would. The parent keeps every socket open: connections
queued on the socket of a worker that died wait there for the one started
in its place (within a second), instead of being reset with it. (A UNIX
socket cannot be shared out so: its workers share the one socket.)

A worker is C{twistd -n chunkproxy} run again with the parent's plugin
options (L{workerCommand}); C{CHUNKPROXY_WORKER} in its environment tells it
that it is one. Its metrics go to files in a folder the group shares
(prometheus-client's multiprocess mode), so that C{/metrics}, from any
worker or the parent's C{--metrics-listen}, is the whole group's.

C{SIGHUP} to the parent reloads the group (L{WorkerPool.reload}): since the
socket never closes, a new worker can start beside an old one and take over
its share of new connections while the old one drains, which is how a new
version is deployed without a proxy in front to move traffic.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import sys
from typing import Any, Callable, Mapping, Optional, Sequence

from prometheus_client.multiprocess import mark_process_dead
from twisted.application.service import Service
from twisted.internet import tcp
from twisted.internet.defer import Deferred, DeferredList
from twisted.internet.error import ProcessExitedAlready
from twisted.internet.interfaces import IListeningPort, IProtocolFactory
from twisted.internet.protocol import Factory, ProcessProtocol
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.protocols.tls import TLSMemoryBIOFactory
from twisted.python.failure import Failure

from twisted_stream.ops._drain import exitCleanlyOnSignals
from twisted_stream.ops._logformat import logsToStandardOutput

__all__ = [
    "LISTENING_DESCRIPTOR",
    "METRICS_FOLDER_VARIABLE",
    "READY_DESCRIPTOR",
    "READY_TIMEOUT",
    "WORKER_VARIABLE",
    "NotAccepting",
    "ParentWatch",
    "WorkerPool",
    "inheritedListener",
    "parseWorkers",
    "reportReady",
    "workerCommand",
    "workersWriteLogFiles",
    "workerNumber",
]

WORKER_VARIABLE = "CHUNKPROXY_WORKER"
"""Set, to its number (from 1), in a worker's environment."""

METRICS_FOLDER_VARIABLE = "PROMETHEUS_MULTIPROC_DIR"
"""Set, to the folder the group's metrics are kept in, in a worker's
environment (prometheus-client's multiprocess mode reads it)."""

_PARENT_VARIABLE = "CHUNKPROXY_PARENT"
"""Set, to its parent's process id, in a worker's environment: a parent that
died while the worker started would otherwise go unnoticed."""

LISTENING_DESCRIPTOR = 3
"""The descriptor a worker finds the listening socket on."""

READY_DESCRIPTOR = 4
"""The descriptor on which a worker tells its parent it serves
(L{reportReady}): a worker replacing another in a reload takes over then."""

READY_TIMEOUT = 60.0
"""Seconds a worker started by a reload has to serve before the reload of its
slot is given up (it is killed; the worker it was to replace goes on)."""

_log = Logger()


def parseWorkers(text: str) -> int:
    """
    @param text: C{auto}, or a whole number from 1.
    @return: How many workers: C{auto} is the number of cores this process
        may run on (its CPU affinity, as C{taskset} sets it).
    @raise ValueError: For anything else.
    """
    if text == "auto":
        return len(os.sched_getaffinity(0))
    if not text.isdigit() or int(text) < 1:
        raise ValueError(f"must be auto or a whole number from 1, not {text!r}")
    return int(text)


def workerNumber(environ: Mapping[str, str] = os.environ) -> Optional[int]:
    """
    @return: This process's number as a worker, or L{None} when it is not one.
    """
    value = environ.get(WORKER_VARIABLE)
    return int(value) if value else None


_WORKER_PROGRAM = (
    "import signal; signal.signal(signal.SIGUSR1, signal.SIG_IGN);"
    " signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGUSR1});"
    " from twisted.scripts.twistd import run; run()"
)
"""twistd, with C{SIGUSR1} ignored until its log is set up: the parent passes
C{SIGUSR1} on to every worker (L{WorkerPool}), and its default action would
end one still starting (C{logrotate} running while a worker is replaced).
The parent starts it with the signal blocked, so that one sent before this
program runs waits, and is then ignored."""


def workerCommand(
    tapname: str, pluginArguments: Sequence[str], twistdConfig: Mapping[str, Any], number: int
) -> list[str]:
    """
    The command line of a worker.

    @param tapname: The plugin, such as C{chunkproxy}.
    @param pluginArguments: The parent's plugin options, as given.
    @param twistdConfig: The parent's twistd options.
    @param number: The worker's number.
    @return: C{twistd} again, in the foreground, without a pidfile, logging
        where the parent logs: to standard output (shared) when the parent
        does, else to a file of its own beside the parent's, C{NAME.log}
        becoming C{NAME.worker2.log} (one log file cannot be rotated by
        several processes).
    """
    command = [sys.executable, "-c", _WORKER_PROGRAM, "--nodaemon", "--pidfile="]
    if twistdConfig.get("syslog"):
        command += ["--syslog", f"--prefix={twistdConfig.get('prefix') or tapname}"]
    elif workersWriteLogFiles(twistdConfig):
        root, extension = os.path.splitext(twistdConfig.get("logfile") or f"{tapname}.log")
        command.append(f"--logfile={root}.worker{number}{extension}")
    else:
        command.append("--logfile=-")
    return [*command, tapname, *pluginArguments]


def workersWriteLogFiles(twistdConfig: Mapping[str, Any]) -> bool:
    """
    @param twistdConfig: The parent's twistd options.
    @return: Whether each worker writes a log file of its own (not when the
        group logs to standard output or to syslog).
    """
    nodaemon = bool(twistdConfig.get("nodaemon"))
    return not twistdConfig.get("syslog") and not logsToStandardOutput(twistdConfig.get("logfile"), nodaemon)


class NotAccepting(Factory):
    """
    The factory of the socket the parent binds for its workers: it is never
    asked for a protocol (the parent does not accept), and says nothing
    but what Twisted's port says as it binds, where its name reads
    C{workers' socket starting on PORT} (not the class's name).
    """

    noisy = False

    def logPrefix(self) -> str:
        return "workers' socket"


class _ReusePort(tcp.Port):
    """
    A TCP port bound with C{SO_REUSEPORT}: several bound to one address
    share its new connections.
    """

    def createInternetSocket(self) -> socket.socket:
        skt: socket.socket = super().createInternetSocket()
        skt.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        return skt


class _Binding:
    """
    A reactor whose C{listenTCP} and C{listenSSL} bind one socket per
    worker, with C{SO_REUSEPORT}, on the address an endpoint description
    names (the port the first was given, for port 0); C{listenUNIX} binds
    one. TLS is the workers' business: the parent never accepts.

    @ivar ports: What was bound.
    """

    def __init__(self, reactor: Any, count: int) -> None:
        self._reactor = reactor
        self._count = count
        self.ports: list[Any] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self._reactor, name)

    def listenTCP(self, port: int, factory: IProtocolFactory, backlog: int = 50, interface: str = "") -> IListeningPort:
        for _ in range(self._count):
            bound = _ReusePort(port, factory, backlog, interface, self._reactor)
            bound.startListening()
            self.ports.append(bound)
            port = bound.getHost().port
        first: IListeningPort = self.ports[0]
        return first

    def listenSSL(
        self, port: int, factory: IProtocolFactory, contextFactory: Any, backlog: int = 50, interface: str = ""
    ) -> IListeningPort:
        return self.listenTCP(port, factory, backlog, interface)

    def listenUNIX(
        self, address: str, factory: IProtocolFactory, backlog: int = 50, mode: int = 0o666, wantPID: int = 0
    ) -> IListeningPort:
        bound: IListeningPort = self._reactor.listenUNIX(address, factory, backlog, mode, wantPID)
        self.ports.append(bound)
        return bound


class _InheritedSocket:
    """
    A reactor whose C{listenTCP}, C{listenSSL} and C{listenUNIX} adopt an
    inherited listening socket instead of binding one: an endpoint parsed
    from the same description as the parent's listens on the parent's
    socket, TLS and all.
    """

    def __init__(self, reactor: Any, descriptor: int) -> None:
        self._reactor = reactor
        self._descriptor = descriptor

    def __getattr__(self, name: str) -> Any:
        return getattr(self._reactor, name)

    def _adopt(self, factory: IProtocolFactory) -> IListeningPort:
        inherited = socket.socket(fileno=self._descriptor)
        family = inherited.family
        inherited.detach()
        port: IListeningPort = self._reactor.adoptStreamPort(self._descriptor, family, factory)
        # Twisted listens on a duplicate.
        os.close(self._descriptor)
        return port

    def listenTCP(self, port: int, factory: IProtocolFactory, backlog: int = 50, interface: str = "") -> IListeningPort:
        return self._adopt(factory)

    def listenSSL(
        self, port: int, factory: IProtocolFactory, contextFactory: Any, backlog: int = 50, interface: str = ""
    ) -> IListeningPort:
        # As the reactor's own listenSSL does.
        return self._adopt(TLSMemoryBIOFactory(contextFactory, False, factory))

    def listenUNIX(
        self, address: str, factory: IProtocolFactory, backlog: int = 50, mode: int = 0o666, wantPID: int = 0
    ) -> IListeningPort:
        return self._adopt(factory)


def reportReady(port: object = None, descriptor: int = READY_DESCRIPTOR) -> None:
    """
    Tell the parent that this worker serves (it listens on the inherited
    socket): once, then the descriptor is closed.

    @param port: The listening port (unused: a listening service's C{then}).
    @param descriptor: Where the parent listens for it.
    """
    try:
        os.write(descriptor, b"ready\n")
        os.close(descriptor)
    except OSError:
        # Started by something else than a pool: nobody to tell.
        pass


def inheritedListener(reactor: Any, descriptor: int = LISTENING_DESCRIPTOR) -> Any:
    """
    @param reactor: The reactor.
    @param descriptor: The inherited listening socket.
    @return: What an endpoint should listen with to serve that socket.
    """
    return _InheritedSocket(reactor, descriptor)


class _Worker(ProcessProtocol):
    """
    One worker process, as its parent sees it.

    @ivar transport: Its process transport, once spawned.
    @ivar ready: Whether it has said it serves (L{reportReady}).
    """

    transport: Any

    def __init__(
        self,
        number: int,
        startedAt: float,
        exited: Callable[[_Worker, Failure], None],
        serving: Callable[[_Worker], None],
    ) -> None:
        self.number = number
        self.startedAt = startedAt
        self.pid: Optional[int] = None
        self.ready = False
        self.ended: Deferred[None] = Deferred()
        self._exited = exited
        self._serving = serving

    def childDataReceived(self, childFD: int, data: bytes) -> None:
        if childFD == READY_DESCRIPTOR and not self.ready:
            self.ready = True
            self._serving(self)

    def processEnded(self, reason: Failure) -> None:
        self._exited(self, reason)
        self.ended.callback(None)


class WorkerPool(Service):
    """
    N worker processes serving one listening socket, kept at N.

    Its phases:

      - I{binding}: the parent's listening service binds the sockets with
        L{binding} and hands them over (L{adopt}); the parent never
        accepts on them;
      - I{running}: a worker that exits, whatever the reason, is logged
        and replaced: at once, or a second after it started if it lived
        less than that (one that cannot start must not spin);
      - I{reloading} (L{reload}, on C{SIGHUP}): a new worker is started
        beside each (new code, same options, same socket); as each says it
        serves, the old one it replaces is sent SIGTERM and drains, its
        streams running to their end. A new worker that exits, or does not
        serve within L{READY_TIMEOUT}, is given up on and the old one goes
        on: a reload with broken code keeps the group serving;
      - I{stopping}: each worker is sent SIGTERM and drains as a single
        gateway does; the pool has stopped when the last has exited (any
        still running C{grace} seconds later are killed).
    """

    def __init__(
        self,
        reactor: Any,
        count: int,
        command: Callable[[int], list[str]],
        metricsFolder: str,
        grace: float,
        logFiles: bool = False,
        check: Optional[Callable[[], list[str]]] = None,
    ) -> None:
        """
        @param reactor: The reactor.
        @param count: How many workers.
        @param command: A worker's command line, given its number.
        @param metricsFolder: Where the workers keep their metrics; removed
            when the pool has stopped.
        @param grace: Seconds the workers may take to stop before they are
            killed.
        @param logFiles: Whether the workers write log files of their own:
            then C{SIGUSR1} to the parent is passed on to each, so that they
            rotate theirs with the parent's (as nginx's master reopens its
            workers' logs), whatever their pids are by then.
        @param check: What a reload checks before any worker is replaced
            (the workers' config file): the problems it finds, each a line;
            a reload with any is refused, and the workers serve on.
        """
        self._check = check
        self._reactor = reactor
        self._count = count
        self._command = command
        self._metricsFolder = metricsFolder
        self._grace = grace
        self._binding = _Binding(reactor, count)
        self._descriptors: list[int] = []
        self._serving: dict[int, _Worker] = {}
        self._incoming: dict[int, tuple[_Worker, Any]] = {}
        self._outgoing: set[_Worker] = set()
        self._replaced = 0
        self._stopping = False
        self._logFiles = logFiles

    @property
    def binding(self) -> Any:
        """
        @return: What the parent's endpoint should listen with: it binds a
            socket for each worker.
        """
        return self._binding

    def adopt(self, port: IListeningPort) -> None:
        """
        Take the sockets the parent has just bound with L{binding}, to hand
        them to the workers; they stop accepting here, before the reactor
        could let them.

        @param port: The first of them.
        """
        for bound in self._binding.ports:
            bound.stopReading()
            self._descriptors.append(bound.fileno())

    def startService(self) -> None:
        super().startService()
        exitCleanlyOnSignals()
        if self._logFiles:
            self._passOnSIGUSR1()
        signal.signal(signal.SIGHUP, lambda signum, frame: self._reactor.callFromThread(self.reload))
        for number in range(1, self._count + 1):
            self._serving[number] = self._spawn(number)
        _log.info(
            "{count} workers started (pids {pids})" if self._count > 1 else "1 worker started (pid {pids})",
            count=self._count,
            pids=" ".join(str(worker.pid) for worker in self._serving.values()),
        )

    def _passOnSIGUSR1(self) -> None:
        previous = signal.getsignal(signal.SIGUSR1)

        def rotate(signum: int, frame: Any) -> None:
            if callable(previous):
                # The parent's own log first (L{_logformat}'s rotation).
                previous(signum, frame)
            # (Twisted's signalProcess knows this signal by number only.)
            self._reactor.callFromThread(self._signalAll, signal.SIGUSR1)

        signal.signal(signal.SIGUSR1, rotate)

    def _everyWorker(self) -> list[_Worker]:
        return [*self._serving.values(), *(worker for worker, _ in self._incoming.values()), *self._outgoing]

    def _signalAll(self, signalID: str | int) -> None:
        for worker in self._everyWorker():
            _signal(worker.transport, signalID)

    def _spawn(self, number: int) -> _Worker:
        assert self._descriptors, "no listening socket adopted"
        descriptor = self._descriptors[(number - 1) % len(self._descriptors)]
        worker = _Worker(number, self._reactor.seconds(), self._exited, self._ready)
        command = self._command(number)
        env = dict(
            os.environ,
            **{
                WORKER_VARIABLE: str(number),
                _PARENT_VARIABLE: str(os.getpid()),
                METRICS_FOLDER_VARIABLE: self._metricsFolder,
            },
        )
        # A SIGUSR1 passed on to it before its program ignores the signal
        # waits: the signal mask is inherited through exec, handlers are not.
        mask = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR1})
        try:
            transport = self._reactor.spawnProcess(
                worker, command[0], command, env=env, path=os.getcwd(),
                childFDs={0: "w", 1: 1, 2: 2, LISTENING_DESCRIPTOR: descriptor, READY_DESCRIPTOR: "r"},
            )  # fmt: skip
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        transport.closeStdin()
        worker.pid = transport.pid
        worker.transport = transport
        return worker

    def _replace(self, number: int) -> None:
        if not self._stopping:
            self._serving[number] = self._spawn(number)

    def reload(self) -> None:
        """
        Replace every worker with a new one, without refusing or cutting a
        connection (see the class's phases).
        """
        if self._stopping:
            return
        if self._incoming:
            _log.warn("reload: one is under way already; SIGHUP ignored")
            return
        problems = self._check() if self._check is not None else []
        if problems:
            for line in problems:
                _log.error("reload refused: {problem}", problem=line)
            _log.warn("reload refused: the workers serve on as they were")
            return
        _log.info("reload: starting {count} new workers; each old one drains once its successor serves", count=self._count)
        self._replaced = 0
        for number in range(1, self._count + 1):
            worker = self._spawn(number)
            self._incoming[number] = (worker, self._reactor.callLater(READY_TIMEOUT, self._tooSlow, worker))

    def _ready(self, worker: _Worker) -> None:
        incoming = self._incoming.get(worker.number)
        if incoming is None or incoming[0] is not worker:
            # A worker started to keep the group at N: it serves already.
            return
        old = self._serving.get(worker.number)
        self._serving[worker.number] = worker
        if old is not None:
            self._outgoing.add(old)
            _signal(old.transport, "TERM")
        _log.info(
            "worker {number} replaced: pid {new} serves, pid {old} drains",
            number=worker.number,
            new=worker.pid,
            old=old.pid if old is not None else "-",
        )
        self._settle(worker, replaced=True)

    def _tooSlow(self, worker: _Worker) -> None:
        _log.warn(
            "reload: new worker {number} (pid {pid}) did not serve within {timeout:g} s: killed; the old one goes on",
            number=worker.number,
            pid=worker.pid,
            timeout=READY_TIMEOUT,
        )
        _signal(worker.transport, "KILL")
        self._settle(worker, replaced=False)

    def _settle(self, worker: _Worker, replaced: bool) -> None:
        """
        A new worker of a reload has taken over, or been given up on.
        """
        _, deadline = self._incoming.pop(worker.number)
        if deadline.active():
            deadline.cancel()
        if self._stopping:
            return
        if replaced:
            self._replaced += 1
        elif worker.number not in self._serving:
            # The old one has gone meanwhile: the slot is filled as usual.
            self._reactor.callLater(1, self._replace, worker.number)
        if not self._incoming:
            if self._replaced == self._count:
                _log.info("reload: every worker replaced")
            else:
                _log.warn("reload: {replaced} of {count} workers replaced", replaced=self._replaced, count=self._count)

    def _exited(self, worker: _Worker, reason: Failure) -> None:
        if worker.pid is not None:
            # Its gauges (streams in flight) no longer count; its counters do.
            mark_process_dead(worker.pid, self._metricsFolder)
        number, how = worker.number, _exitOf(reason)
        if worker in self._outgoing:
            self._outgoing.discard(worker)
            _log.info("replaced worker {number} (pid {pid}) {how}", number=number, pid=worker.pid, how=how)
            return
        incoming = self._incoming.get(number)
        if incoming is not None and incoming[0] is worker:
            if not self._stopping:
                _log.warn(
                    "reload: new worker {number} (pid {pid}) {how} before it served; the old one goes on",
                    number=number,
                    pid=worker.pid,
                    how=how,
                )
            self._settle(worker, replaced=False)
            return
        if self._serving.get(number) is not worker:
            # A new worker given up on, killed.
            return
        del self._serving[number]
        if self._stopping:
            return
        if number in self._incoming:
            _log.warn("worker {number} (pid {pid}) {how}; its successor is starting", number=number, pid=worker.pid, how=how)
            return
        lived = self._reactor.seconds() - worker.startedAt
        _log.warn("worker {number} (pid {pid}) {how}; starting another", number=number, pid=worker.pid, how=how)
        self._reactor.callLater(0 if lived >= 1 else 1, self._replace, number)

    def stopService(self) -> Deferred[None]:
        super().stopService()
        self._stopping = True
        # The first is the listening service's to close.
        for bound in self._binding.ports[1:]:
            bound.stopListening()
        for _, deadline in self._incoming.values():
            if deadline.active():
                deadline.cancel()
        workers = self._everyWorker()
        for worker in workers:
            if worker not in self._outgoing:
                # (Those replaced in a reload are draining already.)
                _signal(worker.transport, "TERM")
        killer = self._reactor.callLater(self._grace, self._kill)
        stopped: Deferred[Any] = DeferredList([worker.ended for worker in workers])

        def done(_: object) -> None:
            if killer.active():
                killer.cancel()
            shutil.rmtree(self._metricsFolder, ignore_errors=True)

        return stopped.addCallback(done)

    def _kill(self) -> None:
        for worker in self._everyWorker():
            _log.warn("worker {number} (pid {pid}) did not stop in time: killed", number=worker.number, pid=worker.pid)
            _signal(worker.transport, "KILL")


def _signal(transport: Any, signalID: str | int) -> None:
    try:
        transport.signalProcess(signalID)
    except ProcessExitedAlready:
        # Its end is on its way.
        pass


def _exitOf(reason: Failure) -> str:
    number = getattr(reason.value, "signal", None)
    if number:
        return f"was killed by {signal.Signals(number).name}"
    return f"exited with status {getattr(reason.value, 'exitCode', None)}"


class ParentWatch(Service):
    """
    Stops a worker whose parent has gone (killed without the chance to stop
    it): the worker drains and exits, rather than serve on alone, unsupervised.
    The group's metrics folder, which the parent would have removed, goes as
    the worker exits (the first of them to exit; the others no longer count
    their own metrics, as a group that has lost its parent is not scraped).
    """

    def __init__(self, interval: float = 1.0, environ: Mapping[str, str] = os.environ) -> None:
        self._parent = int(environ.get(_PARENT_VARIABLE) or os.getppid())
        self._metricsFolder = environ.get(METRICS_FOLDER_VARIABLE)
        self._loop = LoopingCall(self._check)
        self._interval = interval

    def startService(self) -> None:
        super().startService()
        self._loop.start(self._interval, now=False)

    def stopService(self) -> None:
        super().stopService()
        if self._loop.running:
            self._loop.stop()

    def _check(self) -> None:
        if os.getppid() != self._parent:
            _log.warn("the parent (pid {pid}) has gone: stopping", pid=self._parent)
            from twisted.internet import reactor

            self._loop.stop()
            if self._metricsFolder:
                reactor.addSystemEventTrigger("after", "shutdown", shutil.rmtree, self._metricsFolder, True)
            reactor.stop()
