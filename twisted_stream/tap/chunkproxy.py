# -*- test-case-name: tests.test_options,tests.test_gateway_e2e -*-
"""
C{twistd chunkproxy}: the streaming gateway and its page as a twistd plugin.
"""

from __future__ import annotations

import os
import signal
import sys
import tempfile
from dataclasses import replace
from typing import Any, Optional, Sequence

from hyperlink import URL
from prometheus_client import CollectorRegistry
from twisted.application.service import IService, MultiService, Service
from twisted.internet.defer import Deferred, succeed
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.python import usage
from twisted.web.server import Site

from twisted_stream.exchange._recording import DEFAULT_RECORD_MAX_BYTES
from twisted_stream.gateway import (
    DEFAULT_MAX_BODY_MEMORY,
    GatewayResource,
    GatewaySite,
    RequestLimits,
    Route,
)
from twisted_stream.gateway._cors import CorsPolicy
from twisted_stream.gateway._descriptors import FileLimitService
from twisted_stream.gateway._streamlimits import StreamLimits
from twisted_stream.ops._drain import DrainService
from twisted_stream.ops._gc import GarbageCollectionService
from twisted_stream.ops._metrics import Metrics, MetricsResource, groupRegistry
from twisted_stream.ops._service import listeningService
from twisted_stream.ops._workers import (
    METRICS_FOLDER_VARIABLE,
    NotAccepting,
    ParentWatch,
    WorkerPool,
    inheritedListener,
    parseWorkers,
    reportReady,
    workerCommand,
    workerNumber,
    workersWriteLogFiles,
)
from twisted_stream.page import PageResource
from twisted_stream.proxy import FORWARDED_METHODS, StreamProxyResource
from twisted_stream.resume._redislink import RedisAddress, RedisLink, parseRedisURL
from twisted_stream.resume._resumable import DEFAULT_MAX_BYTES as DEFAULT_RESUME_MAX_BYTES
from twisted_stream.resume._resumable import DEFAULT_MAX_MEMORY as DEFAULT_RESUME_MEMORY
from twisted_stream.resume._resumable import ResumeStore
from twisted_stream.resume._sharedstreams import SharedStreams
from twisted_stream.tap._config import ConfigFile, ConfigProblems, MemberOptions, RouteOptions, readConfig
from twisted_stream.tap.options import (
    PluginOptions,
    checkEndpoint,
    parseHeader,
    parseHTTPURL,
    parseOptionalSeconds,
    parseOrigin,
    parseRoute,
    parseTimeout,
    resolveSecret,
    wholeNumberOption,
)
from twisted_stream.upstream._agent import UpstreamAgent, tlsPolicy
from twisted_stream.upstream._health import HealthChecker
from twisted_stream.upstream._wire import ResponseLimits

__all__ = ["Options", "makeService"]

_log = Logger()


class _PoolService(Service):
    """
    Closes the upstream agent's idle connections on shutdown.
    """

    def __init__(self, agent: UpstreamAgent) -> None:
        self._agent = agent

    def stopService(self) -> Deferred[None]:
        super().stopService()
        return self._agent.closeCachedConnections()


class _ResumeStoreService(Service):
    """
    Keeps the connection to the resume store in Redis, where there is one,
    while the gateway runs; and says in the metrics, once a second, what
    the resumable streams hold.
    """

    def __init__(self, reactor: Any, store: ResumeStore, shared: Optional[SharedStreams], metrics: Metrics) -> None:
        self._store = store
        self._shared = shared
        self._metrics = metrics
        self._loop = LoopingCall(self._say)
        self._loop.clock = reactor

    def _say(self) -> None:
        shared = self._shared
        self._metrics.resumeStore(
            len(self._store),
            self._store.kept,
            shared.link.up if shared else None,
            shared.reads.readers if shared else 0,
        )

    def startService(self) -> None:
        super().startService()
        if self._shared is not None:
            self._shared.start()
        self._loop.start(1.0, now=False)

    def stopService(self) -> Deferred[None]:
        super().stopService()
        if self._loop.running:
            self._loop.stop()
        return self._shared.stop() if self._shared is not None else succeed(None)


def _resumeStore(text: str) -> Optional[RedisAddress]:
    # "memory" (the default), or a redis:// URL, or env:VARNAME naming one
    # (so that a password is never on the command line).
    if text.strip() == "memory":
        return None
    try:
        return parseRedisURL(resolveSecret(text.strip(), "--resume-store").strip())
    except ValueError as e:
        raise ValueError(f"--resume-store: {e} (or 'memory')") from None


def _chooseReactor() -> None:
    """
    Run on L{twisted_stream.ops._reactor.StreamEPollReactor} where epoll exists,
    unless twistd was told which reactor to use (C{--reactor}).
    """
    try:
        from twisted_stream.ops._reactor import installIfNoneChosen
    except ImportError:
        # No epoll here: twistd's default reactor it is.
        return
    installIfNoneChosen()


class Options(PluginOptions):
    """
    Options of C{twistd chunkproxy}.
    """

    tapname = "chunkproxy"
    synopsis = "[options]"
    longdesc = (
        "Forwards requests to upstream URLs by path prefix (--route), any method with its body, "
        "streaming each response back the moment each piece arrives; serves a live page at /. "
        "--upstream is the route for /stream. --route given again with the same prefix adds a member "
        "to that route's pool. --inject-header applies to the upstream of the --route given before "
        "it, or to every route when given before any --route. --config FILE says all of it in TOML "
        "(the command line overrides it; SIGHUP reloads it)."
    )
    optParameters = [
        [
            "config",
            None,
            None,
            "A TOML file with the gateway's options and routes (pools, members, weights, caps, health"
            " checks); options given here override it. SIGHUP re-reads it: new requests take the new"
            " routes, streams under way finish on theirs, a file with problems is refused.",
        ],
        ["listen", "l", "tcp:8080", "Endpoint description to listen on."],
        [
            "upstream",
            "u",
            "http://localhost:8081/generate",
            "The URL that /stream forwards to.",
            parseHTTPURL,
        ],
        [
            "connect-timeout",
            None,
            "10",
            "Seconds until the upstream's response headers must have arrived"
            " (502 if it could not be reached by then, 504 if it sent no headers).",
            parseTimeout,
        ],
        [
            "idle-timeout",
            None,
            "300",
            "Seconds the upstream may send no body bytes mid-stream before the client's"
            " connection is closed as truncated; 0: never.",
            parseOptionalSeconds,
        ],
        [
            "heartbeat",
            None,
            "15",
            "Seconds of silence on a text/event-stream response (also before its first event)"
            " after which ': keep-alive' is sent between events; 0: never.",
            parseOptionalSeconds,
        ],
        [
            "client-timeout",
            None,
            "60",
            "Seconds a client connection may send nothing (while no response streams to it)"
            " before it is closed.",
            parseTimeout,
        ],
        [
            "workers",
            None,
            None,
            "Worker processes serving --listen together under a parent, each on a core of its own"
            " (auto: one per core); one that dies is replaced, and SIGHUP to the parent replaces each"
            " without cutting a stream (new code, same options). Without it, one process serves."
            " Limits below hold per worker.",
            parseWorkers,
        ],
        [
            "max-streams",
            None,
            0,
            "Most streams at once; beyond, 503 with Retry-After at once (0: no limit).",
            wholeNumberOption("max-streams"),
        ],
        [
            "max-streams-per-client",
            None,
            0,
            "Most streams at once per client address (per bearer token with --require-token);"
            " beyond, 503 with Retry-After at once (0: no limit).",
            wholeNumberOption("max-streams-per-client"),
        ],
        [
            "drain-timeout",
            None,
            "30",
            "On SIGTERM or SIGINT: seconds the streams in flight may run on (no new ones are"
            " accepted) before they are cut off and the process exits.",
            parseTimeout,
        ],
        [
            "retries",
            None,
            1,
            "Times to try again a request whose connection failed before it was sent, or a"
            " bodiless GET, HEAD or OPTIONS whose kept-alive connection ended before any answer"
            " (never another that may have reached the upstream).",
            wholeNumberOption("retries"),
        ],
        [
            "max-body",
            None,
            1024 * 1024,
            "Largest request body forwarded, in bytes (413 above).",
            wholeNumberOption("max-body"),
        ],
        [
            "record-max-bytes",
            None,
            DEFAULT_RECORD_MAX_BYTES,
            "Most body bytes --record writes of one response: past them the recording ends"
            " with a truncated marker and the response goes on.",
            wholeNumberOption("record-max-bytes"),
        ],
        [
            "resume-max-bytes",
            None,
            DEFAULT_RESUME_MAX_BYTES,
            "Most bytes a resumable stream keeps (--resumable); past them it is no longer resumable and"
            " goes on as on any route.",
            wholeNumberOption("resume-max-bytes"),
        ],
        [
            "resume-memory",
            None,
            DEFAULT_RESUME_MEMORY,
            "Most bytes all resumable streams keep together; a stream that would pass them is no longer"
            " resumable.",
            wholeNumberOption("resume-memory"),
        ],
        [
            "resume-store",
            None,
            None,
            "Where resumable streams are kept: in this process's memory (the default), or in Redis"
            " (redis://[[USER]:PASSWORD@]HOST:PORT/DB, rediss:// over TLS with ?ssl_ca_certs=PEM for"
            " CAs of your own, or env:VARNAME naming one), so that a resume may land on any instance"
            " of a fleet.",
            _resumeStore,
        ],
        [
            "max-body-memory",
            None,
            DEFAULT_MAX_BODY_MEMORY,
            "Most bytes of request bodies held at once by all connections together; 503 above.",
            wholeNumberOption("max-body-memory"),
        ],
        [
            "max-request-line-bytes",
            None,
            RequestLimits.maxLineBytes,
            "Longest request line, and longest request header line, in bytes (414 and 431 above).",
            wholeNumberOption("max-request-line-bytes"),
        ],
        [
            "max-request-header-bytes",
            None,
            RequestLimits.maxHeaderBytes,
            "Largest request head (request line and headers), in bytes; 431 above.",
            wholeNumberOption("max-request-header-bytes"),
        ],
        [
            "max-request-headers",
            None,
            RequestLimits.maxHeaders,
            "Most header lines in a request; 431 above.",
            wholeNumberOption("max-request-headers"),
        ],
        [
            "max-response-header-bytes",
            None,
            64 * 1024,
            "Largest upstream response head (status line and headers), in bytes; 502 above.",
            wholeNumberOption("max-response-header-bytes"),
        ],
        [
            "max-response-headers",
            None,
            100,
            "Most header lines in an upstream response; 502 above.",
            wholeNumberOption("max-response-headers"),
        ],
        [
            "dns-ttl",
            None,
            "60",
            "Seconds an upstream host name's addresses are used before they are looked up again"
            " (sooner after a connection to them fails).",
            parseTimeout,
        ],
        [
            "upstream-ca",
            None,
            None,
            "PEM file of the CA certificates to trust for https:// upstreams, instead of the system's.",
        ],
        [
            "metrics-listen",
            None,
            None,
            "Endpoint description for Prometheus metrics at /metrics on a listener of their own"
            " (by default they are at /metrics on --listen, behind --require-token).",
        ],
        [
            "require-token",
            None,
            None,
            "env:VARNAME: answer 401 to requests without 'Authorization: Bearer <its value>'"
            " (which is then not passed on).",
        ],
    ]

    def __init__(self) -> None:
        super().__init__()
        self.routes: list[RouteOptions] = []
        self.injectHeaders: list[tuple[bytes, bytes]] = []
        self.corsOrigins: list[bytes] = []
        self.arguments: list[str] = []
        self.recordAll: Optional[str] = None
        self._lastMember: Optional[MemberOptions] = None
        self.resumableAll: Optional[float] = None
        self.file: Optional[ConfigFile] = None

    def parseOptions(self, options: Optional[Sequence[str]] = None) -> None:
        # The reactor is chosen before anything imports one (checking
        # --listen does).
        _chooseReactor()
        # Kept as given: each of --workers runs with them again.
        self.arguments = list(sys.argv[1:] if options is None else options)
        super().parseOptions(options)

    def opt_cors_origin(self, text: str) -> None:
        """
        ORIGIN: let pages on ORIGIN (such as https://app.example) call the
        routes from the browser: preflight requests are answered here
        (repeatable; * for any origin, not with --require-token).
        """
        try:
            self.corsOrigins.append(parseOrigin(text))
        except ValueError as e:
            raise usage.UsageError(str(e)) from None

    def opt_route(self, text: str) -> None:
        """
        PREFIX=URL: forward paths that start with PREFIX to URL plus the rest
        of the path plus the query string (repeatable; the longest prefix
        wins; the same PREFIX again adds URL to its pool).
        """
        try:
            prefix, url = parseRoute(text)
        except ValueError as e:
            raise usage.UsageError(str(e)) from None
        member = MemberOptions(url)
        for route in self.routes:
            if route.prefix == prefix:
                if any(other.url == url for other in route.members):
                    raise usage.UsageError(f"the pool of {prefix.decode()} has {url.decode()} twice")
                route.members.append(member)
                break
        else:
            self.routes.append(RouteOptions(prefix, [member]))
        self._lastMember = member

    def opt_inject_header(self, text: str) -> None:
        """
        'NAME: VALUE' (VALUE may be env:VARNAME): set this header on every
        upstream request to the --route before it (to that upstream of a
        pool; to every route, given before any), replacing the client's
        (repeatable).
        """
        try:
            header = parseHeader(text)
        except ValueError as e:
            raise usage.UsageError(str(e)) from None
        (self._lastMember.injectHeaders if self._lastMember is not None else self.injectHeaders).append(header)

    def opt_resumable(self, text: str) -> None:
        """
        SECONDS: the streamed answers of the --route before it (of every
        route, given before any) get an X-Stream-Id and can be resumed at
        /_streams/ID?from=N; a client that leaves no longer stops the
        upstream until no reader has come back for SECONDS; an ended stream
        stays readable for SECONDS.
        """
        try:
            seconds = parseTimeout(text)
        except ValueError as e:
            raise usage.UsageError(f"--resumable: {e}") from None
        if self.routes:
            self.routes[-1].resumable = seconds
        else:
            self.resumableAll = seconds

    def opt_record(self, folder: str) -> None:
        """
        DIR: record every response the --route before it forwards (every
        route's, given before any) to DIR, one file each, with each piece's
        time, for chunkgen --replay.
        """
        if self.routes:
            self.routes[-1].record = folder
        else:
            self.recordAll = folder

    def worker(self) -> Optional[int]:
        return workerNumber()

    def postOptions(self) -> None:
        """
        Read C{--config}, check the options, and resolve C{--require-token}.
        """
        if self["config"] is not None:
            self._readConfig(self["config"])
        super().postOptions()
        if self["metrics-listen"] is not None:
            checkEndpoint(self["metrics-listen"], "--metrics-listen")
        if self["require-token"] is not None:
            try:
                self["require-token"] = resolveSecret(self["require-token"], "--require-token").encode("utf-8")
            except ValueError as e:
                raise usage.UsageError(str(e)) from None
        if b"*" in self.corsOrigins and self["require-token"] is not None:
            raise usage.UsageError(
                "--cors-origin * would let any page spend the token: name the origins with --require-token"
            )
        if self["upstream-ca"] is not None and not os.path.isfile(self["upstream-ca"]):
            raise usage.UsageError(f"--upstream-ca {self['upstream-ca']!r} is not a file")

    def _readConfig(self, path: str) -> None:
        parsers = self.valueParsers()
        del parsers["config"]
        try:
            config = readConfig(path, parsers)
        except ConfigProblems as e:
            raise usage.UsageError(str(e)) from None
        for name, value in config.options.items():
            if name not in self.given:
                self.opts[name] = value
        if not self.corsOrigins and config.corsOrigins:
            self.corsOrigins = config.corsOrigins
        # The file's headers first: the command line's, under the same
        # names, replace them.
        self.injectHeaders = [*config.injectHeaders, *self.injectHeaders]
        if self.recordAll is None:
            self.recordAll = config.record
        if self.resumableAll is None:
            self.resumableAll = config.resumable
        self.file = config

    def allRoutes(self) -> list[RouteOptions]:
        """
        @return: Every route: C{--upstream} as C{/stream} (unless a route
            claims C{/stream}), then each route of the config file and each
            C{--route} (one for the same prefix replaces the file's), or,
            when there are none, C{/v1/} to the C{--upstream}'s origin, the
            generator's mock LLM; each with the headers to inject into its
            requests.
        """
        given = {route.prefix for route in self.routes}
        fromFile = self.file.routes if self.file is not None else []
        routes = [route for route in fromFile if route.prefix not in given] + list(self.routes)
        if not routes:
            # No routes given: /v1/ goes to the generator's mock LLM, beside
            # the generator's stream, so the page's chat mode works too.
            origin = URL.from_text(self["upstream"].decode("ascii")).replace(path=("v1", ""), query=(), fragment="")
            routes.append(RouteOptions(b"/v1/", [MemberOptions(origin.to_text().encode("ascii"))]))
        if not any(route.prefix == b"/stream" for route in routes):
            routes.insert(0, RouteOptions(b"/stream", [MemberOptions(self["upstream"])]))
        return [
            replace(
                route,
                injectHeaders=[*self.injectHeaders, *route.injectHeaders],
                record=route.record or self.recordAll,
                resumable=route.resumable or self.resumableAll,
            )
            for route in routes
        ]


_PATHS = [("page", ""), ("stream", "stream")]


def makeService(options: Options) -> IService:
    """
    Build the gateway's service: the gateway itself, or, with
    C{--workers}, the parent of that many (each, run again with the same
    options, a gateway serving the parent's listening socket).

    @param options: The parsed command line.
    @return: A service that serves the routes and the page on C{--listen}.
    """
    from twisted.internet import reactor

    worker = workerNumber()
    if worker is None and options["workers"] is not None:
        return _groupService(reactor, options)
    return _gatewayService(reactor, options, worker)


def _groupService(reactor: Any, options: Options) -> IService:
    folder = tempfile.mkdtemp(prefix="chunkproxy-metrics-")
    twistdConfig = getattr(options, "parent", None) or {}
    pool = WorkerPool(
        reactor,
        options["workers"],
        lambda number: workerCommand(options.tapname, options.arguments, twistdConfig, number),
        folder,
        grace=options["drain-timeout"] + 5,
        logFiles=workersWriteLogFiles(twistdConfig),
        check=(lambda: _checkConfig(options)) if options["config"] is not None else None,
    )
    service = MultiService()
    listeningService(
        reactor,
        options["listen"],
        NotAccepting(),
        "chunkproxy",
        _PATHS,
        options["backlog"],
        then=pool.adopt,
        reactorForEndpoint=pool.binding,
    ).setServiceParent(service)
    pool.setServiceParent(service)
    if options["metrics-listen"] is not None:
        _metricsService(reactor, options, groupRegistry(folder)).setServiceParent(service)
    return service


def _metricsService(reactor: Any, options: Options, registry: CollectorRegistry) -> IService:
    metricsSite = Site(MetricsResource(registry))
    metricsSite.displayTracebacks = False
    return listeningService(
        reactor, options["metrics-listen"], metricsSite, "chunkproxy metrics", [("metrics", "")], options["backlog"]
    )


_RELOADED = ("connect-timeout", "idle-timeout", "heartbeat", "retries", "record-max-bytes")
"""The options a reload applies (with the routes, their members and their
headers): they are the routes' own. Any other takes a restart."""


def _routes(
    reactor: Any,
    options: Options,
    agent: UpstreamAgent,
    metrics: Metrics,
    store: ResumeStore,
    previous: Sequence[Route] = (),
) -> tuple[list[Route], list[HealthChecker]]:
    """
    @param metrics: Where the pools' members are counted.
    @param store: Where resumable routes keep their streams.
    @param previous: The routes these replace (a reload): a pool kept keeps
        what it knows of its members.
    @return: The gateway's routes, and their pools' health checks (not
        started).
    """
    before = {route.prefix: route.proxy.pool for route in previous}
    routes: list[Route] = []
    checkers: list[HealthChecker] = []
    for route in options.allRoutes():
        proxy = StreamProxyResource(
            [member.member() for member in route.members],
            reactor=reactor,
            agent=agent,
            connectTimeout=options["connect-timeout"],
            idleTimeout=options["idle-timeout"],
            heartbeat=options["heartbeat"],
            retries=options["retries"],
            maxBody=options["max-body"],
            injectHeaders=route.injectHeaders,
            requireToken=options["require-token"],
            recordTo=route.record,
            recordMaxBytes=options["record-max-bytes"],
            policy=route.policy,
            tryTimeout=route.tryTimeout,
            name=route.prefix.decode("ascii"),
            replacing=before.get(route.prefix),
            watch=metrics,
            resume=(store, route.resumable) if route.resumable is not None else None,
        )
        routes.append(Route(route.prefix, proxy))
        if route.healthCheck is not None:
            checkers.append(HealthChecker(proxy.pool, route.healthCheck, agent, reactor))
    return routes, checkers


class _RoutesService(Service):
    """
    The gateway's routes: their health checks run while it serves, and
    with C{--config}, C{SIGHUP} re-reads the file and replaces them in
    place (see L{reload}).
    """

    def __init__(
        self, reactor: Any, options: Options, agent: UpstreamAgent, site: GatewaySite, store: ResumeStore
    ) -> None:
        self._reactor = reactor
        self._options = options
        self._agent = agent
        self._site = site
        self._store = store
        self.routes, self._checkers = _routes(reactor, options, agent, site.metrics, store)

    def startService(self) -> None:
        super().startService()
        for checker in self._checkers:
            checker.start()
        if self._options["config"] is not None:
            # After the drain's handlers (which leave SIGHUP alone here).
            self._reactor.callWhenRunning(
                signal.signal, signal.SIGHUP, lambda number, frame: self._reactor.callFromThread(self.reload)
            )

    def stopService(self) -> None:
        super().stopService()
        for checker in self._checkers:
            checker.stop()

    def reload(self) -> None:
        """
        Read the command line and the config file again: new requests take
        the new routes, members, weights and headers; streams under way
        finish on what they started with. A file with problems is refused,
        each problem said in the log, and the routes stay as they were.
        """
        path = self._options["config"]
        fresh = Options()
        try:
            fresh.parseOptions(self._options.arguments)
        except usage.UsageError as e:
            for line in str(e).splitlines():
                _log.error("reload refused: {problem}", problem=line)
            _log.warn("reload of {path} refused: the routes stay as they were", path=path)
            return
        routes, checkers = _routes(self._reactor, fresh, self._agent, self._site.metrics, self._store, self.routes)
        for checker in self._checkers:
            checker.stop()
        self.routes, self._checkers = routes, checkers
        self._site.replaceRoutes(routes)
        for checker in checkers:
            checker.start()
        changed = sorted(
            name for name, value in fresh.opts.items()
            if name not in _RELOADED and value != self._options.opts.get(name)
        )  # fmt: skip
        self._options = fresh
        _log.info(
            "reloaded {path}: {routes} routes, {members} upstreams",
            path=path,
            routes=len(routes),
            members=sum(len(route.proxy.pool.members) for route in routes),
        )
        if changed:
            _log.warn(
                "reload: {names} changed in {path}; a restart applies them", names=", ".join(changed), path=path
            )


def _checkConfig(options: Options) -> list[str]:
    # A group's reload: its workers would read the file as this does.
    try:
        Options().parseOptions(options.arguments)
    except usage.UsageError as e:
        return str(e).splitlines()
    return []


def _gatewayService(reactor: Any, options: Options, worker: Optional[int]) -> IService:
    agent = UpstreamAgent(
        reactor,
        tlsPolicy(options["upstream-ca"]),
        ResponseLimits(options["max-response-header-bytes"], options["max-response-headers"]),
        dnsTTL=options["dns-ttl"],
    )
    cors = CorsPolicy(frozenset(options.corsOrigins), FORWARDED_METHODS) if options.corsOrigins else None
    # A worker's metrics are the group's; the parent serves --metrics-listen.
    metrics = Metrics(exposed=groupRegistry(os.environ[METRICS_FOLDER_VARIABLE])) if worker else Metrics()
    metricsListen = None if worker else options["metrics-listen"]
    shared = None
    if options["resume-store"] is not None:
        shared = SharedStreams(RedisLink(reactor, options["resume-store"]), reactor)
    store = ResumeStore(reactor, options["resume-max-bytes"], options["resume-memory"], shared)
    site = GatewaySite(
        GatewayResource(
            [], PageResource(), cors, metricsHere=options["metrics-listen"] is None,
            metricsToken=options["require-token"], resume=store,
        ),
        options["max-body"],
        options["client-timeout"],
        RequestLimits(
            options["max-request-line-bytes"], options["max-request-header-bytes"], options["max-request-headers"]
        ),
        options["max-body-memory"],
        StreamLimits(
            options["max-streams"] or None,
            options["max-streams-per-client"] or None,
            byToken=options["require-token"] is not None,
        ),
        metrics,
    )
    routes = _RoutesService(reactor, options, agent, site, store)
    site.replaceRoutes(routes.routes)
    service = MultiService()
    _PoolService(agent).setServiceParent(service)
    _ResumeStoreService(reactor, store, shared, metrics).setServiceParent(service)
    routes.setServiceParent(service)
    GarbageCollectionService().setServiceParent(service)
    FileLimitService().setServiceParent(service)
    DrainService(site.drain, options["drain-timeout"], hangup=options["config"] is None).setServiceParent(service)
    listeningService(
        reactor,
        options["listen"],
        site,
        f"chunkproxy worker {worker}" if worker else "chunkproxy",
        _PATHS,
        options["backlog"],
        then=reportReady if worker else None,
        reactorForEndpoint=inheritedListener(reactor) if worker else None,
    ).setServiceParent(service)
    if worker:
        ParentWatch().setServiceParent(service)
    if metricsListen is not None:
        _metricsService(reactor, options, metrics.exposed).setServiceParent(service)
    return service
