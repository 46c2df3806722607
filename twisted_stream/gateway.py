# -*- test-case-name: tests.test_gateway -*-
"""
C{chunkproxy}'s gateway: routes by path prefix to upstreams, each a
L{StreamProxyResource}, and the page at C{/}.
"""

from __future__ import annotations

from dataclasses import dataclass
from io import BytesIO
from typing import Optional, Sequence

from twisted.internet.interfaces import IDelayedCall
from twisted.internet.protocol import connectionDone
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web import http
from twisted.web.http import HTTPChannel
from twisted.web.resource import Resource
from twisted.web.server import Request, Site

from twisted_stream._http import PlainResource, textError
from twisted_stream._writenow import sendAtOnce
from twisted_stream.proxy import DEFAULT_MAX_BODY, FORWARDED_METHODS, NOT_ORIGIN_FORM, StreamProxyResource

__all__ = ["ArrivalDeadlineChannel", "GatewayRequest", "GatewayResource", "GatewaySite", "Route"]


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

    def __init__(self, routes: Sequence[Route], page: Optional[Resource] = None) -> None:
        """
        @param routes: The routes, in any order.
        @param page: What answers C{/} when no route matches it.
        """
        super().__init__()
        self.routes = sorted(routes, key=lambda route: len(route.prefix), reverse=True)
        self._page = page

    def render(self, request: Request) -> bytes | int:
        """
        Route the request.

        @param request: Any request.
        @return: What the route or the page answers, or an error.
        """
        if request.method == b"CONNECT":
            request.setHeader(b"Allow", b", ".join(FORWARDED_METHODS))
            return textError(request, 405, "CONNECT is not supported: this is not a forward proxy")
        if not request.uri.startswith(b"/"):
            # Refused here, before routing: such a target matches no route.
            return textError(request, 400, NOT_ORIGIN_FORM)
        path = request.path
        for route in self.routes:
            rest = route.rest(path)
            if rest is not None:
                return route.proxy.forward(request, rest, route.prefix.endswith(b"/"))
        if path == b"/" and self._page is not None:
            result: bytes | int = self._page.render(request)
            return result
        return textError(request, 404, "no route for " + path.decode("latin-1"))


class GatewayRequest(Request):
    """
    A request that keeps at most its site's C{maxBody} + 1 bytes of its body,
    in memory: a larger body is read and dropped, and
    L{StreamProxyResource} answers it with C{413}.
    """

    def gotLength(self, length: Optional[int]) -> None:
        # Never a temporary file (blocking disk I/O in the reactor): the
        # limit keeps the body small.
        self._kept = BytesIO()
        self.content = self._kept  # type: ignore[assignment]
        site = getattr(self.channel, "site", None)
        self._room = getattr(site, "maxBody", DEFAULT_MAX_BODY) + 1

    def handleContentChunk(self, data: bytes) -> None:
        if self._room > 0:
            kept = data[: self._room]
            self._room -= len(kept)
            self._kept.write(kept)


class ArrivalDeadlineChannel(HTTPChannel):
    """
    An HTTP channel that gives each request C{timeOut} seconds to arrive in
    full, headers and body, from its first byte.

    Twisted's own idle timeout starts again with every byte received, so a
    client that trickles a request a byte at a time would hold a connection
    for ever; this one is answered with C{408} and closed. The deadline is
    off while a response is being sent, so streams of any length are spared.

    Its writes go out at once while nothing is buffered (L{sendAtOnce}).
    """

    _arrival: Optional[IDelayedCall] = None
    _responding = False

    def connectionMade(self) -> None:
        super().connectionMade()
        # Each forwarded chunk is sent in the write that forwards it, not a
        # reactor turn later.
        sendAtOnce(self.transport)
        self._secure = super().isSecure()

    def isSecure(self) -> bool:
        # Asked for every request (X-Forwarded-Proto), answered by adapting
        # the transport to an interface: once per connection is enough.
        return self._secure

    def dataReceived(self, data: bytes) -> None:
        if self._arrival is None and not self._responding and self.timeOut:
            self._arrival = self.callLater(self.timeOut, self._tooSlow)
        super().dataReceived(data)

    def allContentReceived(self) -> None:
        self._stopDeadline()
        self._responding = True
        super().allContentReceived()

    def requestDone(self, request: Request) -> None:
        # Before the base class, which may go on to a pipelined request.
        self._responding = False
        super().requestDone(request)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self._stopDeadline()
        super().connectionLost(reason)

    def _stopDeadline(self) -> None:
        if self._arrival is not None:
            if self._arrival.active():
                self._arrival.cancel()
            self._arrival = None

    def _tooSlow(self) -> None:
        self._arrival = None
        body = b"the request did not arrive in full within %g s\n" % (self.timeOut or 0,)
        assert self.transport is not None
        self.transport.write(
            b"HTTP/1.1 408 Request Timeout\r\nContent-Type: text/plain; charset=utf-8\r\n"
            b"Content-Length: %d\r\nConnection: close\r\n\r\n%s" % (len(body), body)
        )
        self.transport.loseConnection()


_accessLog = Logger(namespace="chunkproxy.access")
"""The access log's events (a module's logger: as a class attribute, a
L{Logger} would take the class's name as its namespace)."""


class GatewaySite(Site):
    """
    The gateway's site: L{GatewayRequest}s, no tracebacks to clients, a
    client timeout both for connections that send nothing and for requests
    that take too long to arrive (L{ArrivalDeadlineChannel}), and an access
    log of structured events without query strings (they may hold keys).

    (Its channels speak HTTP/1.x: the HTTP/2 negotiation that Site's default
    protocol adds over TLS is not used.)
    """

    requestFactory = GatewayRequest
    # Twisted types this as its HTTP/2-negotiating wrapper, but any
    # HTTPChannel will do: buildProtocol only sets callLater, timeOut,
    # requestFactory and site on it.
    protocol = ArrivalDeadlineChannel  # type: ignore[assignment]
    displayTracebacks = False

    def __init__(self, resource: Resource, maxBody: int, clientTimeout: float) -> None:
        """
        @param resource: The root resource.
        @param maxBody: The largest request body to keep.
        @param clientTimeout: Seconds a client connection may send nothing
            (while no response is being streamed to it), and seconds a
            request may take to arrive in full, before it is closed.
        """
        super().__init__(resource, timeout=clientTimeout)
        self.maxBody = maxBody

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
        client = request.getClientAddress()
        _accessLog.info(
            "{client} {method} {path} {code} {sent}",
            client=getattr(client, "host", "-"),
            method=request.method.decode("latin-1"),
            path=request.path.decode("latin-1"),
            code=request.code,
            sent=request.sentLength,
        )

