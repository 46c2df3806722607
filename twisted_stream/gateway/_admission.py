# -*- test-case-name: tests.test_admission -*-
"""
Admission: the one place that decides, from a request's head alone, whether
the gateway serves it and how.

Every way a request comes in asks it once: the HTTP/1.1 channel as soon as
the head has arrived (before any byte of the body is read), HTTP/2 for each
stream's C{HEADERS}, and the gateway's resource for a request that reached
it any other way (in a plain L{twisted.web.server.Site}). The answer is a
L{Refusal}, or an L{Admitted}: a frozen value that says who answers (a route,
the page, a health check...) and carries what was decided on the way (the
route and the rest of the path, the client counted against the stream
limits, whether the connection closes after it), so that nothing decides it
again.

The decision is an ordered list of small rules (L{Rule}), each a callable
that takes the request's L{Head} and what has been admitted so far, and
returns either that, perhaps with more said, or a refusal. A rule that names
an answer the gateway gives itself (a health check, a preflight) ends the
walk. Issues to come add their decision as one more rule: a client's key, a
pool's member, a resumable stream.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from functools import cached_property
from typing import TYPE_CHECKING, Any, Callable, Optional, Protocol, Sequence, Union

from twisted.web.http_headers import Headers

from twisted_stream.exchange._resource import StreamProxyResource
from twisted_stream.exchange._rules import ALLOW_FORWARDED, requestTargetProblem
from twisted_stream.gateway._cors import CorsPolicy
from twisted_stream.gateway._streamlimits import StreamLimits
from twisted_stream.http._refusal import Refusal, headerLinesRefusal, headRefusal, tokenRefusal
from twisted_stream.ops._drain import DRAINING, Drain
from twisted_stream.resume._eventids import RESUME_PREFIX, streamOfEventId
from twisted_stream.resume._resumable import ResumeStore

if TYPE_CHECKING:
    from twisted_stream.gateway._descriptors import DescriptorGuard
    from twisted_stream.http._refusal import RequestLimits
    from twisted_stream.ops._metrics import Metrics

__all__ = [
    "RESUME",
    "RECONNECT",
    "FORWARD",
    "HEALTH",
    "HEALTH_PATHS",
    "METRICS",
    "PAGE",
    "PREFLIGHT",
    "Admission",
    "Admitted",
    "AdmittingSite",
    "Head",
    "Route",
    "Rule",
    "declaredLength",
    "gatewayRules",
]

FORWARD = "forward"
"""Answered by a route's upstream."""
HEALTH = "health"
"""Answered by the gateway: C{/healthz}, C{/readyz}."""
METRICS = "metrics"
"""Answered by the gateway: C{/metrics}."""
PREFLIGHT = "preflight"
"""Answered by the gateway: a CORS preflight."""
PAGE = "page"
"""Answered by the page at C{/}."""
RESUME = "resume"
"""Answered by the gateway from a resumable stream it keeps:
C{/_streams/ID}."""

RECONNECT = "reconnect"
"""Answered from a resumable stream another instance of the fleet reads (a
browser's C{EventSource} reconnecting with C{Last-Event-ID}), if Redis has
it with this target; else forwarded by its route, as a new request."""

_LOCAL = frozenset({HEALTH, METRICS, PREFLIGHT, PAGE, RESUME})

HEALTH_PATHS = (b"/healthz", b"/readyz")
"""Answered by the gateway for load balancers, whatever the routes; never
forwarded, never logged as streams, no token asked."""


@dataclass(frozen=True)
class Route:
    """
    Requests whose path starts with C{prefix} go to C{proxy}.

    @ivar prefix: A path that starts with C{/}. One that ends with C{/}
        matches every path that starts with it; one that does not matches
        itself and the paths below it (C{/stream} matches C{/stream} and
        C{/stream/x}, not C{/streams}).
    @ivar proxy: What forwards the matching requests.
    """

    prefix: bytes
    proxy: StreamProxyResource

    def rest(self, path: bytes) -> Optional[bytes]:
        """
        @param path: A request's path, still percent-encoded.
        @return: The part of C{path} after the prefix, or L{None} if this
            route does not match it.
        """
        prefix = self.prefix
        if path == prefix or path.startswith(prefix if prefix.endswith(b"/") else prefix + b"/"):
            return path[len(prefix) :]
        return None


@dataclass(frozen=True)
class Head:
    """
    A request's head, as every protocol gives it.

    @ivar method: Its method.
    @ivar target: Its target, as the client sent it.
    @ivar version: Its protocol (C{HTTP/1.1}, C{HTTP/2}).
    @ivar headers: Its headers.
    @ivar length: The length its body declares (L{None}: chunked, or not
        said).
    @ivar client: The client's address, as the log shows it.
    @ivar firstOnConnection: Whether it is the first request of its
        connection (a draining gateway serves that one, as the connection's
        last: the client could not know).
    @ivar linesChecked: Whether each header line was checked as it arrived
        (by the HTTP/1.1 channel); if not, admission checks them.
    """

    method: bytes
    target: bytes
    version: bytes
    headers: Headers
    length: Optional[int] = None
    client: str = "-"
    firstOnConnection: bool = False
    linesChecked: bool = False

    @cached_property
    def path(self) -> bytes:
        """
        The target's path, without its query string.
        """
        return self.target.split(b"?", 1)[0]


def declaredLength(headers: Headers) -> Optional[int]:
    """
    @param headers: A request's headers.
    @return: The length its body declares, or L{None}: chunked, not said,
        or not digits (which the header rules refuse on their own).
    """
    length = headers.getRawHeaders(b"content-length", [None])[-1]
    return int(length) if length is not None and length.isdigit() else None


@dataclass(frozen=True)
class Admitted:
    """
    What admission decided for a request it lets in.

    @ivar answer: Who answers it: L{FORWARD} (its route's upstream), or the
        gateway itself (L{HEALTH}, L{METRICS}, L{PREFLIGHT}, L{PAGE}); the
        empty string while rules are still deciding.
    @ivar route: The route that forwards it.
    @ivar rest: Its path below the route's prefix, still percent-encoded.
    @ivar client: Who it is counted as among the streams in flight (its
        address, or its token's digest), if it is counted.
    @ivar lastOnConnection: Whether its connection closes after its answer
        (the gateway is draining).
    @ivar readableBy: The CORS policy and the origin whose page may read its
        answer (or why it was refused).
    """

    answer: str = ""
    route: Optional[Route] = None
    rest: bytes = b""
    client: Optional[str] = None
    lastOnConnection: bool = False
    readableBy: Optional[tuple[CorsPolicy, bytes]] = field(default=None, compare=False)

    def readable(self, refusal: Refusal) -> Refusal:
        """
        @param refusal: A refusal of this request.
        @return: C{refusal}, with the CORS headers that let a page on an
            allowed origin read why.
        """
        if self.readableBy is None:
            return refusal
        cors, origin = self.readableBy
        extra = cors.responseHeaders(origin, [name for name, _ in refusal.headers])
        return replace(refusal, headers=(*refusal.headers, *extra))


Rule = Callable[[Head, Admitted], Union[Admitted, Refusal]]
"""One rule of admission: given a request's head and what has been admitted
so far, that (perhaps with more said) or a refusal."""

_UNDECIDED = Admitted()


class Admission:
    """
    Decides a request's admission by walking its rules in order.
    """

    def __init__(self, rules: Sequence[Rule]) -> None:
        """
        @param rules: The rules, in the order they are asked.
        """
        self.rules = tuple(rules)

    def decide(self, head: Head) -> Admitted | Refusal:
        """
        @param head: A request's head.
        @return: What was admitted, or why the request is refused (with
            the CORS headers an allowed origin's page needs to read it).
        """
        admitted = _UNDECIDED
        for rule in self.rules:
            result = rule(head, admitted)
            if isinstance(result, Refusal):
                return admitted.readable(result)
            admitted = result
            if admitted.answer in _LOCAL:
                break
        return admitted


class AdmittingSite(Protocol):
    """
    The site as the channels that admit its requests see it (the HTTP/1.1
    channel and HTTP/2 connection; L{twisted_stream.gateway._site.GatewaySite}
    provides it).
    """

    admission: Admission
    streams: StreamLimits
    drain: Drain
    limits: RequestLimits
    descriptors: DescriptorGuard
    metrics: Metrics
    reactor: Any


# The rules, in the gateway's order.


def wellFormedHead(head: Head, admitted: Admitted) -> Admitted | Refusal:
    """
    One C{Host} (and one for HTTP/1.1), at most one C{Authorization}, and,
    where the channel has not checked them as they came, header lines that
    are valid HTTP.
    """
    refusal = headRefusal(head.version, head.headers)
    if refusal is None and not head.linesChecked:
        refusal = headerLinesRefusal(head.headers)
    return refusal or admitted


def healthChecks(head: Head, admitted: Admitted) -> Admitted | Refusal:
    """
    C{/healthz} and C{/readyz} are the gateway's, whatever else holds (a
    draining gateway says so on C{/readyz}).
    """
    if head.path in HEALTH_PATHS:
        return replace(admitted, answer=HEALTH)
    return admitted


@dataclass(frozen=True)
class CrossOrigin:
    """
    A page on an allowed origin may read the answer, and its preflight
    requests are answered here, whatever the route: never forwarded.
    """

    cors: CorsPolicy

    def __call__(self, head: Head, admitted: Admitted) -> Admitted | Refusal:
        headers = head.headers
        if self.cors.isPreflight(head.method, headers):
            return replace(admitted, answer=PREFLIGHT)
        origin = headers.getRawHeaders(b"origin", [None])[0]
        if origin is not None and self.cors.allows(origin):
            return replace(admitted, readableBy=(self.cors, origin))
        return admitted


@dataclass(frozen=True)
class Draining:
    """
    A draining gateway takes no new request, but the first request of a
    connection accepted before the drain began is served, as the
    connection's last: the client could not know, and in a reload of
    C{--workers} no other process could take it.
    """

    drain: Drain

    def __call__(self, head: Head, admitted: Admitted) -> Admitted | Refusal:
        if not self.drain.draining:
            return admitted
        if head.firstOnConnection:
            return replace(admitted, lastOnConnection=True)
        return DRAINING


@dataclass(frozen=True)
class MetricsPage:
    """
    C{/metrics} is answered here (when the metrics have no listener of their
    own), to holders of the token if one is set.
    """

    token: Optional[bytes]

    def __call__(self, head: Head, admitted: Admitted) -> Admitted | Refusal:
        if head.path != b"/metrics":
            return admitted
        if self.token is not None:
            refusal = tokenRefusal(head.headers, self.token)
            if refusal is not None:
                return refusal
        return replace(admitted, answer=METRICS)


def originFormTarget(head: Head, admitted: Admitted) -> Admitted | Refusal:
    """
    Not a forward proxy (no C{CONNECT}), and a request target that is a
    path of bytes a request line can carry, whatever protocol brought it:
    checked before routing, so never echoed in a C{404}.
    """
    if head.method == b"CONNECT":
        return Refusal(405, "CONNECT is not supported: this is not a forward proxy", ALLOW_FORWARDED)
    problem = requestTargetProblem(head.target)
    return admitted if problem is None else Refusal(400, problem)


@dataclass(frozen=True)
class Routing:
    """
    The route with the longest prefix that matches the path takes the
    request; where none does, the page answers C{/}, and anything else is a
    C{404}. The route is matched here, once.
    """

    routes: tuple[Route, ...]
    page: bool

    @classmethod
    def of(cls, routes: Sequence[Route], page: bool) -> Routing:
        """
        @param routes: The routes, in any order.
        @param page: Whether there is a page at C{/}.
        """
        return cls(tuple(sorted(routes, key=lambda route: len(route.prefix), reverse=True)), page)

    def __call__(self, head: Head, admitted: Admitted) -> Admitted | Refusal:
        path = head.path
        for route in self.routes:
            rest = route.rest(path)
            if rest is not None:
                return replace(admitted, answer=FORWARD, route=route, rest=rest)
        if path == b"/" and self.page:
            return replace(admitted, answer=PAGE)
        return Refusal(404, "no route for " + path.decode("latin-1"))


@dataclass(frozen=True)
class Resuming:
    """
    C{/_streams/ID} is a resumable stream the gateway keeps (see
    L{twisted_stream.resume._resumable}): read with C{GET}, never
    forwarded; and so is a C{GET} whose C{Last-Event-ID} names an event of
    a stream kept here that started with the same target (a browser's
    C{EventSource} reconnecting).
    """

    store: ResumeStore
    inFlight: Optional[StreamsInFlight] = None
    """The stream limits: a reader of a stream is a stream in flight too
    (each holds a connection, and with Redis a connection to it), counted
    as its client's."""

    def __call__(self, head: Head, admitted: Admitted) -> Admitted | Refusal:
        if head.path.startswith(RESUME_PREFIX):
            if head.method not in (b"GET", b"HEAD"):
                return Refusal(405, "a stream is resumed with GET", ((b"Allow", b"GET, HEAD"),))
            return self._counted(head, replace(admitted, answer=RESUME))
        lastEventId = head.headers.getRawHeaders(b"last-event-id")
        if lastEventId and head.method == b"GET" and self.store.reconnecting(head.target, lastEventId[-1]):
            return self._counted(head, replace(admitted, answer=RESUME))
        return admitted

    def _counted(self, head: Head, admitted: Admitted) -> Admitted | Refusal:
        return admitted if self.inFlight is None else self.inFlight(head, admitted)


@dataclass(frozen=True)
class ReconnectingElsewhere:
    """
    With a store shared by a fleet: a C{GET} to a resumable route whose
    C{Last-Event-ID} names an event of a stream this instance does not
    hold (L{Resuming} took those it holds) may be a browser's
    C{EventSource} reconnecting to a stream another instance reads; that
    is looked up in Redis when it is answered (L{RECONNECT}), which
    admission does not wait for. Asked last: the route's rules and the
    stream limits hold as for the request it may turn out to be.
    """

    def __call__(self, head: Head, admitted: Admitted) -> Admitted | Refusal:
        route = admitted.route
        if head.method != b"GET" or route is None or route.proxy.resume is None:
            return admitted
        lastEventId = head.headers.getRawHeaders(b"last-event-id")
        if lastEventId and streamOfEventId(lastEventId[-1]) is not None:
            return replace(admitted, answer=RECONNECT)
        return admitted


def routeRules(head: Head, admitted: Admitted) -> Admitted | Refusal:
    """
    The route's own rules (L{twisted_stream.exchange._rules.ForwardingRules}): the method,
    a path that stays below the upstream's, the token, the body's size.
    """
    route = admitted.route
    assert route is not None, "routeRules follows Routing"
    refusal = route.proxy.rules.refusal(
        head.method, head.target, admitted.rest, route.prefix.endswith(b"/"), head.headers, head.length
    )
    return refusal or admitted


@dataclass(frozen=True)
class StreamsInFlight:
    """
    The streams in flight, in all and per client, stay within their limits;
    an admitted stream is counted as its client's.
    """

    streams: StreamLimits

    def __call__(self, head: Head, admitted: Admitted) -> Admitted | Refusal:
        client = self.streams.clientOf(head.client, head.headers)
        return self.streams.refusal(client) or replace(admitted, client=client)


def gatewayRules(
    routes: Sequence[Route],
    page: bool = False,
    cors: Optional[CorsPolicy] = None,
    metricsHere: bool = False,
    metricsToken: Optional[bytes] = None,
    drain: Optional[Drain] = None,
    streams: Optional[StreamLimits] = None,
    resume: Optional[ResumeStore] = None,
) -> list[Rule]:
    """
    The gateway's rules, in order.

    @param routes: The routes.
    @param page: Whether there is a page at C{/}.
    @param cors: Which other origins' pages may call the routes.
    @param metricsHere: Whether C{/metrics} is answered here.
    @param metricsToken: The token C{/metrics} asks for, if any.
    @param drain: The gateway's drain (none: never draining).
    @param streams: The limits on streams in flight (none: no limits, and
        nothing counted).
    @param resume: Where the gateway keeps resumable streams, while a route
        has them.
    @return: The rules.
    """
    rules: list[Rule] = [wellFormedHead, healthChecks]
    if cors is not None:
        rules.append(CrossOrigin(cors))
    if drain is not None:
        rules.append(Draining(drain))
    if metricsHere:
        rules.append(MetricsPage(metricsToken))
    rules.append(originFormTarget)
    # One rule of the stream limits, asked by the routes and the resumes.
    inFlight = StreamsInFlight(streams) if streams is not None else None
    if resume is not None:
        rules.append(Resuming(resume, inFlight))
    rules += [Routing.of(routes, page), routeRules]
    if inFlight is not None:
        rules.append(inFlight)
    if resume is not None and resume.shared is not None:
        rules.append(ReconnectingElsewhere())
    return rules
