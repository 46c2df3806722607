# -*- test-case-name: tests.test_proxy -*-
"""
C{chunkproxy}: forward a streaming HTTP response the moment each piece
arrives.

The upstream is requested with treq, and each piece of its body is pushed to
C{request.write} as C{treq.collect} would push it to a collector. Unlike
C{collect}, the body is taken with the response's C{deliverBody}, and the
transport that hands it over (a producer over the upstream socket) is
registered as the client request's producer. That one registration gives:

  - backpressure: while the client's socket is full, Twisted pauses the
    producer, so the proxy stops reading the upstream and holds no more than
    the kernel's socket buffers, however slow the client;
  - cancellation: when the client leaves, the producer is stopped, which
    closes the upstream connection, so the source stops generating (and
    billing) at once.

C{treq.collect} can do neither: its Deferred has no canceller and it never
pauses, so a client that does not read makes it hold the whole body.
"""

from __future__ import annotations

from typing import Any, Optional, cast

from treq.client import HTTPClient
from twisted.internet.defer import Deferred
from twisted.internet.error import (
    ConnectingCancelledError,
    ConnectionRefusedError,
    DNSLookupError,
)
from twisted.internet.interfaces import IDelayedCall, IPushProducer, IReactorTime
from twisted.internet.protocol import Protocol, connectionDone
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.client import PotentialDataLoss, ResponseDone
from twisted.web.iweb import IAgent, IResponse
from twisted.web.server import NOT_DONE_YET, Request

from twisted_stream._http import STREAMING_HEADERS, PlainResource, textError

__all__ = ["StreamProxyResource"]


def _failureReason(failure: Failure, timedOut: bool, timeout: float) -> tuple[int, str]:
    """
    Say why an upstream request failed before its response headers came.

    @param failure: What the request's Deferred failed with.
    @param timedOut: Whether the proxy's own deadline cancelled it.
    @param timeout: That deadline, in seconds.
    @return: The status code for the client (502 or 504) and a one-line
        reason. The upstream's address is left out: it is the operator's
        business, not the client's.
    """
    if failure.check(ConnectingCancelledError):
        return 502, f"upstream unreachable: no connection within {timeout:g} s"
    if timedOut:
        return 504, f"upstream sent no response headers within {timeout:g} s"
    if failure.check(ConnectionRefusedError):
        return 502, "upstream refused the connection"
    if failure.check(DNSLookupError):
        return 502, "upstream host name could not be resolved"
    return 502, f"upstream failed before responding ({type(failure.value).__name__})"


class _UpstreamBody(Protocol):
    """
    Receives the upstream response body and writes it to the client.

    C{dataReceived} I{is} the client request's C{write}: the per-chunk path
    has no frame of this project's in it.
    """

    _log = Logger()

    def __init__(self, exchange: _Exchange) -> None:
        self._exchange = exchange
        self.dataReceived = exchange.request.write  # type: ignore[method-assign]

    def connectionMade(self) -> None:
        # The transport is a producer over the upstream socket.
        self._exchange.bodyStarted(cast(IPushProducer, self.transport))

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self._exchange.bodyEnded(reason)


class _Exchange:
    """
    One client request and the upstream request that serves it.

    @ivar request: The client's request.
    """

    _log = Logger()

    def __init__(
        self,
        request: Request,
        url: bytes,
        agent: IAgent,
        clock: IReactorTime,
        timeout: float,
    ) -> None:
        self.request = request
        self._url = url
        self._agent = agent
        self._clock = clock
        self._timeout = timeout
        self._clientGone = False
        self._timedOut = False
        # treq fires it with its own IResponse wrapper.
        self._pending: Optional[Deferred[Any]] = None
        self._deadline: Optional[IDelayedCall] = None
        self._body: Optional[IPushProducer] = None

    def start(self) -> None:
        """
        Send the upstream request.
        """
        self.request.notifyFinish().addErrback(self._lostClient)
        # A new HTTPClient per request: each has its own cookie jar, so no
        # cookie set for one client's request rides on another's.
        client = HTTPClient(self._agent)
        pending = client.request(
            self.request.method.decode("ascii"),
            self._url,
            # treq otherwise keeps every piece of the body in memory.
            unbuffered=True,
            # A redirect is the client's to follow or not, never the proxy's.
            allow_redirects=False,
        )
        self._pending = pending
        self._deadline = self._clock.callLater(self._timeout, self._timeIsUp)
        pending.addCallbacks(self._gotResponse, self._requestFailed)
        pending.addErrback(self._bug)

    def _timeIsUp(self) -> None:
        self._deadline = None
        self._timedOut = True
        if self._pending is not None:
            self._pending.cancel()

    def _stopDeadline(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _gotResponse(self, response: IResponse) -> None:
        self._pending = None
        self._stopDeadline()
        request = self.request
        request.setResponseCode(response.code, response.phrase)
        contentType = response.headers.getRawHeaders(b"Content-Type")
        if contentType:
            request.setHeader(b"Content-Type", contentType[-1])
        for name, value in STREAMING_HEADERS:
            request.setHeader(name, value)
        # The headers go out now, before the first piece of the body, and
        # write is looked up only after that: on a HEAD request Twisted
        # replaces it with a no-op once the headers are written.
        request.write(b"")
        response.deliverBody(_UpstreamBody(self))

    def _requestFailed(self, failure: Failure) -> None:
        self._pending = None
        self._stopDeadline()
        if self._clientGone:
            # Cancelled by _lostClient, or failed while it was being
            # cancelled: either way there is no one left to tell.
            return
        code, reason = _failureReason(failure, self._timedOut, self._timeout)
        self._log.warn(
            "{method} {url}: {code} {reason} ({failure.value!r})",
            method=self.request.method.decode("ascii"),
            url=self._url.split(b"?", 1)[0].decode("ascii"),
            code=code,
            reason=reason,
            failure=failure,
        )
        body = textError(self.request, code, reason)
        self.request.setHeader(b"Content-Length", b"%d" % (len(body),))
        self.request.write(body)
        self.request.finish()

    def _bug(self, failure: Failure) -> None:
        self._log.failure("proxying {url} failed", failure, url=self._url)
        if not self._clientGone:
            self.request.loseConnection()

    def bodyStarted(self, producer: IPushProducer) -> None:
        """
        The upstream body is about to flow: let the client's connection pace
        it.

        @param producer: A producer over the upstream socket.
        """
        if self._clientGone:
            producer.stopProducing()
            return
        self._body = producer
        self.request.registerProducer(producer, True)

    def bodyEnded(self, reason: Failure) -> None:
        """
        The upstream body is over, completely or not.

        @param reason: Why: L{ResponseDone} for a complete body,
            L{PotentialDataLoss} for one delimited by the connection's end
            (which cannot be told from a truncated one), anything else for a
            broken one.
        """
        self._body = None
        if self._clientGone:
            return
        self.request.unregisterProducer()
        if reason.check(ResponseDone, PotentialDataLoss):
            self.request.finish()
            return
        # Never pass a broken upstream off as a clean end: close without the
        # terminating chunk, so the client sees a truncated response.
        self._log.warn(
            "{url}: upstream body broke off after the headers ({reason.value!r});"
            " closing the client's connection",
            url=self._url.split(b"?", 1)[0].decode("ascii"),
            reason=reason,
        )
        self.request.loseConnection()

    def _lostClient(self, reason: Failure) -> None:
        # The client has gone: stop the upstream, whatever stage it is at.
        self._clientGone = True
        self._stopDeadline()
        if self._pending is not None:
            self._pending.cancel()
        if self._body is not None:
            self._body.stopProducing()


class StreamProxyResource(PlainResource):
    """
    Forwards C{GET} and C{HEAD} requests to one upstream URL, with the
    request's query string appended, and streams the answer back piece by
    piece as it arrives.

    The client gets the upstream's status and C{Content-Type}, plus
    C{Cache-Control: no-cache} and C{X-Accel-Buffering: no} so that nothing
    in front of the proxy buffers the stream either. When the upstream
    cannot be reached it gets C{502}, when it sends no headers in time
    C{504}, each with a one-line reason; when the upstream breaks off
    mid-body, the client's connection is closed without the terminating
    chunk.
    """

    isLeaf = True

    def __init__(
        self,
        upstream: bytes,
        agent: IAgent,
        clock: IReactorTime,
        connectTimeout: float = 10.0,
    ) -> None:
        """
        @param upstream: The absolute C{http} or C{https} URL to forward to.
        @param agent: What makes the upstream requests, for example an
            L{twisted.web.client.Agent} over a persistent connection pool.
        @param clock: What times the deadline.
        @param connectTimeout: Seconds from the start of a request until the
            upstream's response headers must have arrived.
        """
        super().__init__()
        self._upstream = upstream
        self._separator = b"&" if b"?" in upstream else b"?"
        self._agent = agent
        self._clock = clock
        self._connectTimeout = connectTimeout

    def upstreamURL(self, request: Request) -> bytes:
        """
        The URL a request is forwarded to.

        @param request: The client's request.
        @return: The upstream URL with the request's query string appended.
        @raise ValueError: If the query string is not ASCII.
        """
        _, _, query = request.uri.partition(b"?")
        if not query:
            return self._upstream
        if not query.isascii():
            raise ValueError("the query string must be ASCII; percent-encode other bytes")
        return self._upstream + self._separator + query

    def render_GET(self, request: Request) -> bytes | int:
        """
        Forward the request.

        @param request: A C{GET} or C{HEAD} request.
        @return: L{NOT_DONE_YET}, or an error body.
        """
        if request.postpath:
            return textError(request, 404, "no such resource: " + request.path.decode("latin-1"))
        try:
            url = self.upstreamURL(request)
        except ValueError as e:
            return textError(request, 400, str(e))
        _Exchange(request, url, self._agent, self._clock, self._connectTimeout).start()
        return NOT_DONE_YET

    render_HEAD = render_GET
