# -*- test-case-name: tests.test_gateway -*-
"""
C{chunkproxy}'s gateway: its site (L{GatewaySite}), which admits each
request once, as its head arrives (L{twisted_stream.gateway._admission}), and is
what its routes' streams report to (L{IStreamHooks}); and its resource
(L{GatewayResource}), which answers as admitted: a route's
L{StreamProxyResource}, the page at C{/}, health checks, metrics, CORS
preflights.
"""

from __future__ import annotations

from typing import Callable, Optional, Sequence

from twisted.web import http
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request, Site
from zope.interface import implementer

from twisted_stream.exchange._hooks import IStreamHooks, Stream, hooksOf
from twisted_stream.exchange._streamlog import clientOf, logAnswered
from twisted_stream.gateway._admission import (
    HEALTH,
    HEALTH_PATHS,
    METRICS,
    PAGE,
    PREFLIGHT,
    RECONNECT,
    RESUME,
    Admission,
    Head,
    Route,
    Rule,
    declaredLength,
    gatewayRules,
)
from twisted_stream.gateway._channel import GatewayChannel
from twisted_stream.gateway._cors import CorsPolicy
from twisted_stream.gateway._descriptors import DescriptorGuard
from twisted_stream.gateway._h2 import negotiatingChannel, truncate
from twisted_stream.gateway._request import BodyMemory, GatewayRequest
from twisted_stream.gateway._streamlimits import StreamLimits
from twisted_stream.http._refusal import Refusal, RequestLimits
from twisted_stream.http._text import PlainResource
from twisted_stream.ops._drain import Drain
from twisted_stream.ops._metrics import Metrics, MetricsResource
from twisted_stream.resume._resumable import ResumeStore, resumeAnswer

__all__ = ["DEFAULT_MAX_BODY_MEMORY", "GatewayResource", "GatewaySite", "headOf"]


class GatewayResource(PlainResource):
    """
    Answers each request as admission decided (L{twisted_stream.gateway._admission}):
    the route with the longest matching prefix forwards it, or the gateway
    answers it itself (the page at C{/}, health checks, metrics, CORS
    preflights); anything else is refused (a 404 where no route matches).

    Under a L{GatewaySite} the decision was made as the request's head
    arrived and travels with the request; anywhere else (a plain L{Site})
    it is made here, by the same rules.
    """

    isLeaf = True

    def __init__(
        self,
        routes: Sequence[Route],
        page: Optional[Resource] = None,
        cors: Optional[CorsPolicy] = None,
        metricsHere: bool = True,
        metricsToken: Optional[bytes] = None,
        resume: Optional[ResumeStore] = None,
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
        @param resume: Where the resumable routes keep their streams, which
            C{/_streams/ID} reads while a route is resumable.
        """
        super().__init__()
        self.routes = list(routes)
        self._page = page
        self._cors = cors
        self._metricsHere = metricsHere
        self._metricsToken = metricsToken
        self._resume = resume
        self.admission = Admission(self.rules())

    def rules(self, drain: Optional[Drain] = None, streams: Optional[StreamLimits] = None) -> list[Rule]:
        """
        @param drain: The drain of the site this resource serves, if any.
        @param streams: Its limits on streams in flight, if any.
        @return: The rules of admission for this resource's routes, page,
            CORS policy and metrics, in the site's drain and limits.
        """
        return gatewayRules(
            self.routes,
            self._page is not None,
            self._cors,
            self._metricsHere,
            self._metricsToken,
            drain,
            streams,
            resume=self._resume if any(route.proxy.resume for route in self.routes) else None,
        )

    def render(self, request: Request) -> bytes | int:
        """
        Answer the request as admitted.

        @param request: Any request.
        @return: What the route or the page answers, or an error.
        """
        admitted = request.admitted if isinstance(request, GatewayRequest) else None
        if admitted is None:
            decided = self.admission.decide(headOf(request))
            if isinstance(decided, Refusal):
                return decided.render(request)
            admitted = decided
        answer = admitted.answer
        site = request.site if isinstance(request, Request) else None
        gateway = site if isinstance(site, GatewaySite) else None
        if answer == HEALTH:
            return _health(request, gateway.drain if gateway is not None else None, self.routes)
        if answer == METRICS:
            if gateway is None:
                return Refusal(404, "no metrics here").render(request)
            return MetricsResource(gateway.metrics.exposed).render_GET(request)
        if answer == PREFLIGHT:
            assert self._cors is not None
            return self._preflight(self._cors, request)
        if answer == RESUME:
            assert self._resume is not None
            return resumeAnswer(request, self._resume, hooksOf(request).truncate)
        if isinstance(request, GatewayRequest):
            if admitted.readableBy is not None:
                request.readableBy(*admitted.readableBy)
            if admitted.lastOnConnection or (gateway is not None and gateway.drain.draining):
                # The connection's last answer.
                request.channel.persistent = False
                request.setHeader(b"Connection", b"close")
            if request.bodyRefusal is not None:
                return request.bodyRefusal.render(request)
        if answer == PAGE:
            assert self._page is not None
            result: bytes | int = self._page.render(request)
            return result
        route = admitted.route
        assert route is not None
        if answer == RECONNECT:
            # Perhaps a stream another instance reads: answered from Redis,
            # or, if it is not there, forwarded as any request.
            assert self._resume is not None and self._resume.shared is not None

            def forward() -> None:
                assert route is not None
                result = route.proxy.forward(request, admitted.rest, route.prefix)
                if result != NOT_DONE_YET:
                    assert isinstance(result, bytes)
                    request.write(result)
                    request.finish()

            return self._resume.shared.reconnect(request, forward, hooksOf(request).truncate)
        return route.proxy.forward(request, admitted.rest, route.prefix)

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


def headOf(request: Request) -> Head:
    """
    @param request: A request that reached a resource with no admission
        before it (in a plain L{Site}).
    @return: Its head, for admission.
    """
    return Head(
        request.method,
        request.uri,
        request.clientproto,
        request.requestHeaders,
        declaredLength(request.requestHeaders),
        clientOf(request.getClientAddress()),
    )


_UNLOGGED = (*HEALTH_PATHS, b"/metrics")


def _health(request: Request, drain: Optional[Drain], routes: Sequence[Route]) -> bytes:
    """
    C{/healthz}: the process answers. C{/readyz}: it takes new streams, not
    draining, and every route has an upstream that is in; its body lists
    the upstreams that are out, and why.
    """
    request.setHeader(b"Content-Type", b"text/plain; charset=utf-8")
    request.setHeader(b"Cache-Control", b"no-cache")
    if request.path != b"/readyz":
        return b"ok\n"
    if drain is not None and drain.draining:
        request.setResponseCode(503)
        return b"draining\n"
    lines = []
    ready = True
    for route in routes:
        pool = route.proxy.pool
        out = pool.out()
        if len(out) == len(pool.members):
            ready = False
        prefix = route.prefix.decode("ascii")
        lines += [f"out: {prefix} {state.member.label} ({why})\n" for state, why in out]
    if not ready:
        request.setResponseCode(503)
    return (("ok\n" if ready else "no upstream in for a route\n") + "".join(lines)).encode("utf-8")


DEFAULT_MAX_BODY_MEMORY = 128 * 1024 * 1024
"""The most bytes of request bodies all connections hold at once, by
default: 128 full bodies of the default C{--max-body}."""


@implementer(IStreamHooks)
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
        resource: GatewayResource,
        maxBody: int,
        clientTimeout: float,
        limits: Optional[RequestLimits] = None,
        maxBodyMemory: int = DEFAULT_MAX_BODY_MEMORY,
        streams: Optional[StreamLimits] = None,
        metrics: Optional[Metrics] = None,
    ) -> None:
        """
        @param resource: The root resource, whose rules of admission (with
            this site's drain and limits) decide about each request as soon
            as its head has arrived.
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
        self.bodies = BodyMemory(maxBodyMemory)
        self.drain = Drain(self.reactor)
        self.streams = streams if streams is not None else StreamLimits()
        self.metrics = metrics if metrics is not None else Metrics()
        self.descriptors = DescriptorGuard(self.reactor)
        self.admission = Admission(resource.rules(self.drain, self.streams))

    def replaceRoutes(self, routes: Sequence[Route]) -> None:
        """
        Take new routes (a reloaded configuration): requests admitted from
        now on go to them; those admitted before keep the route they were
        admitted to, and finish on it.

        @param routes: The new routes, in any order.
        """
        resource = self.resource
        assert isinstance(resource, GatewayResource)
        resource.routes = list(routes)
        resource.admission = Admission(resource.rules())
        self.admission = Admission(resource.rules(self.drain, self.streams))

    # IStreamHooks: what its routes' streams tell it.

    def streamStarted(self, request: Request, stream: Stream) -> None:
        """
        A request is being forwarded: it logs itself, and a drain cuts it
        off through C{stream}.
        """
        if isinstance(request, GatewayRequest):
            request.streamStarted(stream)

    def outlives(self, request: Request, stream: Stream) -> Callable[[], None]:
        """
        A stream goes on after its client left (see
        L{IStreamHooks.outlives}): counted again as its client's, and for
        the drain, until its end.
        """
        if not isinstance(request, GatewayRequest) or request.admitted is None:
            return lambda: None
        client = request.admitted.client
        if client is not None:
            self.streams.started(client)
        self.drain.started(stream)
        released: list[bool] = []

        def ended() -> None:
            if not released:
                released.append(True)
                if client is not None:
                    self.streams.ended(client)
                self.drain.ended(stream)

        return ended

    def truncate(self, request: Request) -> None:
        """
        End a response as broken off, in the protocol its client speaks
        (see L{twisted_stream.gateway._h2.truncate}).
        """
        truncate(request)

    def log(self, request: http.Request) -> None:
        """
        Log a request that has been answered, as one structured event.

        Twisted's own access log formats a combined-log line (with its own
        date stamp) for every request, whether anything reads it or not,
        a large share of the CPU of many short streams. An event carries
        the fields, and only an observer that writes text formats them.

        @param request: The request.
        """
        if (isinstance(request, GatewayRequest) and request.streamed) or request.path in _UNLOGGED:
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
