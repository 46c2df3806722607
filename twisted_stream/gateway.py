# -*- test-case-name: tests.test_gateway -*-
"""
C{chunkproxy}'s gateway: routes by path prefix to upstreams, each a
L{StreamProxyResource}, and the page at C{/}.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from io import BytesIO
from typing import Optional, Sequence

from twisted.python.failure import Failure
from twisted.web import http
from twisted.web.http import HTTPChannel
from twisted.web.http_headers import Headers
from twisted.web.resource import Resource
from twisted.web.server import Request, Site

from twisted_stream._channel import GatewayChannel
from twisted_stream._cors import CorsPolicy
from twisted_stream._descriptors import DescriptorGuard
from twisted_stream._drain import DRAINING, Drain
from twisted_stream._h2 import negotiatingChannel
from twisted_stream._http import PlainResource
from twisted_stream._metrics import Metrics, MetricsResource
from twisted_stream._refusal import Refusal, RequestLimits, tokenRefusal
from twisted_stream._streamlimits import StreamLimits
from twisted_stream._streamlog import clientOf, logAnswered
from twisted_stream.proxy import (
    DEFAULT_MAX_BODY,
    FORWARDED_METHODS,
    StreamProxyResource,
    requestTargetProblem,
)

__all__ = [
    "DEFAULT_MAX_BODY_MEMORY",
    "GatewayChannel",
    "GatewayRequest",
    "GatewayResource",
    "GatewaySite",
    "RequestLimits",
    "Route",
]


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


class GatewayResource(PlainResource):
    """
    Sends each request to the route with the longest matching prefix, or the
    page at C{/} where no route matches it; anything else is a 404.
    """

    isLeaf = True

    def __init__(
        self,
        routes: Sequence[Route],
        page: Optional[Resource] = None,
        cors: Optional[CorsPolicy] = None,
        metricsHere: bool = True,
        metricsToken: Optional[bytes] = None,
    ) -> None:
        """
        @param routes: The routes, in any order.
        @param page: What answers C{/} when no route matches it.
        @param cors: Which other origins' pages may call the routes (none
            by default): their preflight requests are answered here, and
            every answer to them says they may read it.
        @param metricsHere: Whether C{/metrics} answers here (not when the
            metrics have a listener of their own).
        @param metricsToken: The bearer token C{/metrics} asks for, if any.
        """
        super().__init__()
        self.routes = sorted(routes, key=lambda route: len(route.prefix), reverse=True)
        self._page = page
        self._cors = cors
        self._metricsHere = metricsHere
        self._metricsToken = metricsToken

    def _routeFor(self, path: bytes) -> Optional[tuple[Route, bytes]]:
        for route in self.routes:
            rest = route.rest(path)
            if rest is not None:
                return route, rest
        return None

    def refusal(
        self, method: bytes, target: bytes, headers: Headers, length: Optional[int]
    ) -> Optional[Refusal]:
        """
        Decide from a request's head alone whether it is refused: the one
        place that knows what goes where, asked by the channel before the
        request's body is read.

        @param method: The request's method.
        @param target: Its target, as the client sent it.
        @param headers: Its headers.
        @param length: The length its body declares, L{None} if chunked.
        @return: Why it is refused, or L{None}.
        """
        if self._metricsHere and target.split(b"?", 1)[0] == b"/metrics":
            return tokenRefusal(headers, self._metricsToken) if self._metricsToken is not None else None
        cors = self._cors
        if cors is None:
            return self._refusal(method, target, headers, length)
        if cors.isPreflight(method, headers):
            # Answered by render, whatever the route: never forwarded.
            return None
        refusal = self._refusal(method, target, headers, length)
        origin = headers.getRawHeaders(b"origin", [None])[0]
        if refusal is not None and origin is not None and cors.allows(origin):
            # A page on an allowed origin may read why it was refused.
            readable = cors.responseHeaders(origin, [name for name, _ in refusal.headers])
            refusal = replace(refusal, headers=(*refusal.headers, *readable))
        return refusal

    def _refusal(self, method: bytes, target: bytes, headers: Headers, length: Optional[int]) -> Optional[Refusal]:
        if method == b"CONNECT":
            return Refusal(405, "CONNECT is not supported: this is not a forward proxy", _ALLOW)
        problem = requestTargetProblem(target)
        if problem is not None:
            # Refused here, before routing: over HTTP/2 too, and never
            # echoed in a 404.
            return Refusal(400, problem)
        path = target.split(b"?", 1)[0]
        found = self._routeFor(path)
        if found is not None:
            route, rest = found
            return route.proxy.refusal(method, target, rest, route.prefix.endswith(b"/"), headers, length)
        if path == b"/" and self._page is not None:
            return None
        return Refusal(404, "no route for " + path.decode("latin-1"))

    def render(self, request: Request) -> bytes | int:
        """
        Route the request.

        @param request: Any request.
        @return: What the route or the page answers, or an error.
        """
        path = request.path
        drain: Optional[Drain] = getattr(getattr(request, "site", None), "drain", None)
        if path in HEALTH_PATHS:
            return _health(request, drain)
        if path == b"/metrics" and self._metricsHere:
            return self._metricsPage(request)
        if drain is not None and drain.draining:
            # The connection's last answer.
            channel = getattr(request, "channel", None)
            if isinstance(channel, HTTPChannel):
                channel.persistent = False
                request.setHeader(b"Connection", b"close")
            if not getattr(request, "servedWhileDraining", False):
                # Arrived on a connection that had served before the drain.
                return DRAINING.render(request)
        cors = self._cors
        if cors is not None:
            if cors.isPreflight(request.method, request.requestHeaders):
                return self._preflight(cors, request)
            origin = request.requestHeaders.getRawHeaders(b"origin", [None])[0]
            if origin is not None and cors.allows(origin) and isinstance(request, GatewayRequest):
                request.readableBy(cors, origin)
        if isinstance(request, GatewayRequest) and request.bodyRefusal is not None:
            return request.bodyRefusal.render(request)
        found = self._routeFor(path) if request.uri.startswith(b"/") else None
        if found is not None and request.method != b"CONNECT":
            route, rest = found
            if isinstance(request, GatewayRequest):
                request.route = route.prefix
                if drain is not None:
                    request.inFlightOf(drain)
            return route.proxy.forward(request, rest, route.prefix.endswith(b"/"))
        refusal = self.refusal(request.method, request.uri, request.requestHeaders, None)
        if refusal is not None:
            return refusal.render(request)
        assert self._page is not None
        result: bytes | int = self._page.render(request)
        return result


    def _metricsPage(self, request: Request) -> bytes:
        if self._metricsToken is not None and not getattr(request, "admitted", False):
            refusal = tokenRefusal(request.requestHeaders, self._metricsToken)
            if refusal is not None:
                return refusal.render(request)
        metrics: Optional[Metrics] = getattr(getattr(request, "site", None), "metrics", None)
        if metrics is None:
            return Refusal(404, "no metrics here").render(request)
        return MetricsResource(metrics.exposed).render_GET(request)

    @staticmethod
    def _preflight(cors: CorsPolicy, request: Request) -> bytes:
        answer = cors.preflight(request.requestHeaders)
        if answer.code != 204:
            return Refusal(answer.code, answer.reason).render(request)
        request.setResponseCode(204)
        for name, value in answer.headers:
            request.setHeader(name, value)
        # Nothing is invented: a 204 has no body, and no Content-Type.
        request.defaultContentType = None
        return b""


_ALLOW = ((b"Allow", b", ".join(FORWARDED_METHODS)),)

HEALTH_PATHS = (b"/healthz", b"/readyz")
"""Answered by the gateway for load balancers, whatever the routes; never
forwarded, never logged as streams, no token asked."""


_UNLOGGED = (*HEALTH_PATHS, b"/metrics")


def _health(request: Request, drain: Optional[Drain]) -> bytes:
    request.setHeader(b"Content-Type", b"text/plain; charset=utf-8")
    request.setHeader(b"Cache-Control", b"no-cache")
    if request.path == b"/readyz" and drain is not None and drain.draining:
        request.setResponseCode(503)
        return b"draining\n"
    return b"ok\n"


class _BodyMemory:
    """
    The bytes of request bodies held by all of a site's connections
    together, against a limit.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.held = 0

    def take(self, size: int) -> bool:
        """
        @return: Whether C{size} more bytes fit (then they are counted).
        """
        if self.held + size > self.limit:
            return False
        self.held += size
        return True

    def give(self, size: int) -> None:
        """
        Count C{size} bytes as no longer held.
        """
        self.held -= size


class GatewayRequest(Request):
    """
    A request that keeps its body in memory, up to its site's C{maxBody}
    bytes. One byte more, or more than the site's memory for bodies allows,
    and the channel answers at once (C{413}, C{503}) and reads no more; a
    channel that cannot answer early (HTTP/2) has the request answered so
    when it has arrived (L{bodyRefusal}), its body no longer kept.

    @ivar admitted: Whether the channel has checked the request's head
        against the site's rules (then they need not be checked again).
    @ivar bodyRefusal: How to answer a request whose body was not kept.
    @ivar route: The prefix of the route that took it, once routed.
    @ivar servedWhileDraining: Whether it is served though the gateway
        drains (the first request of a connection accepted before the drain
        began), its connection closed after it.
    """

    admitted = False
    bodyRefusal: Optional[Refusal] = None
    route: Optional[bytes] = None
    servedWhileDraining = False
    _drain: Optional[Drain] = None
    _counted: Optional[tuple[StreamLimits, str]] = None

    def countedBy(self, streams: StreamLimits, client: str) -> None:
        """
        Count this request among C{client}'s streams until its answer ends.
        """
        self._counted = (streams, client)
        streams.started(client)

    def inFlightOf(self, drain: Drain) -> None:
        """
        Count this request as in flight until its answer ends.

        @param drain: The gateway's drain.
        """
        self._drain = drain
        drain.started(self)
    _held = 0
    _readableBy: Optional[tuple[CorsPolicy, bytes]] = None

    def readableBy(self, cors: CorsPolicy, origin: bytes) -> None:
        """
        Let a page on C{origin} read the answer: the CORS headers go out
        with the response's head, whatever answers (the upstream's own
        C{Access-Control-*} headers are replaced).

        @param cors: The policy that allows C{origin}.
        @param origin: The request's C{Origin}.
        """
        self._readableBy = (cors, origin)

    def write(self, data: bytes) -> None:
        readable = self._readableBy
        if readable is not None and not self.startedWriting:
            self._readableBy = None
            headers = self.responseHeaders
            names = [name for name, _ in headers.getAllRawHeaders()]
            for name in names:
                if name.lower().startswith(b"access-control-"):
                    headers.removeHeader(name)
            for name, value in readable[0].responseHeaders(readable[1], names):
                if name == b"Vary" and headers.hasHeader(b"vary"):
                    value = b", ".join([*headers.getRawHeaders(b"vary", []), value])
                headers.setRawHeaders(name, [value])
        super().write(data)

    def gotLength(self, length: Optional[int]) -> None:
        # Never a temporary file (blocking disk I/O in the reactor): the
        # limit keeps the body small.
        self._kept = BytesIO()
        self.content = self._kept  # type: ignore[assignment]
        site = getattr(self.channel, "site", None)
        self._maxBody: int = getattr(site, "maxBody", DEFAULT_MAX_BODY)
        self._bodies: Optional[_BodyMemory] = getattr(site, "bodies", None)

    def handleContentChunk(self, data: bytes) -> None:
        if self.bodyRefusal is not None:
            return
        if self._kept.tell() + len(data) > self._maxBody:
            self._refuseBody(Refusal(413, f"the request body is over {self._maxBody} bytes"))
            return
        if self._bodies is not None:
            if not self._bodies.take(len(data)):
                self._refuseBody(_BUSY)
                return
            self._held += len(data)
        self._kept.write(data)

    def _refuseBody(self, refusal: Refusal) -> None:
        refuse = getattr(self.channel, "refuse", None)
        if refuse is not None:
            refuse(refusal)
            return
        self.bodyRefusal = refusal
        self._letGo()
        self._kept = BytesIO()
        self.content = self._kept  # type: ignore[assignment]

    def _letGo(self) -> None:
        if self._held and self._bodies is not None:
            self._bodies.give(self._held)
            self._held = 0
        counted, self._counted = self._counted, None
        if counted is not None:
            counted[0].ended(counted[1])
        drain, self._drain = self._drain, None
        if drain is not None:
            drain.ended(self)

    def finish(self) -> None:
        # After the end is written: a drain waiting for this request lets
        # the process exit next.
        super().finish()
        self._letGo()

    def connectionLost(self, reason: Failure) -> None:
        self._letGo()
        super().connectionLost(reason)


_BUSY = Refusal(
    503, "the gateway holds as many request bodies as it may; try again shortly", ((b"Retry-After", b"1"),)
)

DEFAULT_MAX_BODY_MEMORY = 128 * 1024 * 1024
"""The most bytes of request bodies all connections hold at once, by
default: 128 full bodies of the default C{--max-body}."""


class GatewaySite(Site):
    """
    The gateway's site: L{GatewayRequest}s, no tracebacks to clients, a
    client timeout both for connections that send nothing and for requests
    that take too long to arrive, requests refused as soon as their head has
    arrived (L{GatewayChannel}), a bound on the memory all request bodies
    together hold, and an access log of structured events without query
    strings (they may hold keys).

    Over TLS it speaks HTTP/2 where the client's ALPN offers it (L{_h2}),
    HTTP/1.x otherwise.
    """

    requestFactory = GatewayRequest
    # Twisted types this as its HTTP/2-negotiating wrapper, but any
    # HTTPChannel will do: buildProtocol only sets callLater, timeOut,
    # requestFactory and site on it.
    protocol = negotiatingChannel
    channel: type[GatewayChannel] = GatewayChannel
    """What speaks HTTP/1.x on each connection."""
    displayTracebacks = False

    def __init__(
        self,
        resource: Resource,
        maxBody: int,
        clientTimeout: float,
        limits: Optional[RequestLimits] = None,
        maxBodyMemory: int = DEFAULT_MAX_BODY_MEMORY,
        streams: Optional[StreamLimits] = None,
        metrics: Optional[Metrics] = None,
    ) -> None:
        """
        @param resource: The root resource; a L{GatewayResource} is asked
            about each request as soon as its head has arrived.
        @param maxBody: The largest request body to keep.
        @param clientTimeout: Seconds a client connection may send nothing
            (while no response is being streamed to it), and seconds a
            request may take to arrive in full, before it is closed.
        @param limits: How large a request's head may be (by default,
            L{RequestLimits}' defaults).
        @param maxBodyMemory: The most bytes of request bodies held at once
            by all connections together (C{503} beyond).
        @param streams: How many streams at once, in all and per client (no
            limit by default).
        @param metrics: Where its streams are counted (metrics of its own by
            default).
        """
        # A form body is the upstream's to read: Twisted's site would parse
        # it (every multipart part in memory) and answer 400 itself to one
        # it cannot.
        super().__init__(resource, timeout=clientTimeout, parsePOSTFormSubmission=False)
        self.maxBody = maxBody
        self.limits = limits if limits is not None else RequestLimits()
        self.bodies = _BodyMemory(maxBodyMemory)
        self.drain = Drain(self.reactor)
        self.streams = streams if streams is not None else StreamLimits()
        self.metrics = metrics if metrics is not None else Metrics()
        self.descriptors = DescriptorGuard(self.reactor)
        self._admission = resource.refusal if isinstance(resource, GatewayResource) else None

    def admission(
        self, method: bytes, target: bytes, headers: Headers, length: Optional[int], client: str = "-"
    ) -> Optional[Refusal]:
        """
        Decide whether a request whose head has arrived is refused (over
        HTTP/2, before Twisted makes a request of it).

        @param method: Its method.
        @param target: Its target.
        @param headers: Its headers.
        @param length: The length its body declares (L{None}: unknown).
        @param client: The client's address.
        @return: The refusal, or L{None} to read its body and serve it.
        """
        if target.split(b"?", 1)[0] in HEALTH_PATHS:
            return None
        if self.drain.draining:
            return DRAINING
        return self._rules(method, target, headers, length, client)

    def _rules(
        self, method: bytes, target: bytes, headers: Headers, length: Optional[int], client: str
    ) -> Optional[Refusal]:
        if self._admission is not None:
            refusal = self._admission(method, target, headers, length)
            if refusal is not None:
                return refusal
        return self.streams.refusal(self.streams.clientOf(client, headers))

    def refusalOf(self, request: Request, target: bytes, length: Optional[int]) -> Optional[Refusal]:
        """
        Decide whether a request whose head has arrived is refused.

        @param request: The request (its headers have arrived, nothing else).
        @param target: Its target.
        @param length: The length its body declares (L{None}: chunked).
        @return: The refusal, or L{None} to read its body and serve it (the
            request is then marked as admitted, if the root resource is a
            L{GatewayResource} that could judge it).
        """
        client = clientOf(request.getClientAddress())
        health = target.split(b"?", 1)[0] in HEALTH_PATHS
        if self.drain.draining and not health and getattr(request.channel, "requestsSeen", None) == 1:
            # The first request of a connection accepted before the drain
            # began: the client could not know, and in a reload of
            # --workers no other process could take it. Served, as the
            # connection's last.
            refusal = self._rules(request.method, target, request.requestHeaders, length, client)
            if refusal is None and isinstance(request, GatewayRequest):
                request.servedWhileDraining = True
        else:
            refusal = self.admission(request.method, target, request.requestHeaders, length, client)
        if refusal is None and not health:
            self.admitted(request)
        return refusal

    def admitted(self, request: Request) -> None:
        """
        Note a request that passed the site's checks at its head: counted
        among the streams in flight until its answer ends.

        @param request: The request.
        """
        if isinstance(request, GatewayRequest):
            request.admitted = self._admission is not None
            request.countedBy(self.streams, self.streams.clientOf(clientOf(request.getClientAddress()), request.requestHeaders))

    def log(self, request: http.Request) -> None:
        """
        Log a request that has been answered, as one structured event.

        Twisted's own access log formats a combined-log line (with its own
        date stamp) for every request, whether anything reads it or not:
        at thousands of short streams a second that was a fifth of the
        gateway's CPU. An event carries the fields, and only an observer
        that writes text formats them.

        @param request: The request.
        """
        if getattr(request, "streamRecord", None) is not None or request.path in _UNLOGGED:
            # A stream logs itself when it ends, however it ends; health
            # checks every few seconds are not worth a line each.
            return
        logAnswered(
            request.getClientAddress(),
            request.method,
            request.uri,
            request.code,
            request.sentLength,
            self.reactor.seconds(),
            self.metrics,
        )
