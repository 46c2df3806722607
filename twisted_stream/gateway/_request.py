# -*- test-case-name: tests.test_gateway -*-
"""
L{GatewayRequest}: a request to the gateway, from its admission to the end
of its answer, holding its body in memory within the site's bounds.
"""

from __future__ import annotations

from io import BytesIO
from typing import Optional

from twisted.python.failure import Failure
from twisted.web.server import Request

from twisted_stream.exchange._hooks import Stream
from twisted_stream.exchange._resource import DEFAULT_MAX_BODY
from twisted_stream.gateway._admission import FORWARD, RECONNECT, Admitted
from twisted_stream.gateway._cors import CorsPolicy
from twisted_stream.gateway._streamlimits import StreamLimits
from twisted_stream.http._refusal import Refusal
from twisted_stream.ops._drain import Drain

__all__ = ["BodyMemory", "GatewayRequest"]


class BodyMemory:
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

    @ivar admitted: What its site's admission decided, once its head has
        arrived (L{None} until then, and where no site decided).
    @ivar bodyRefusal: How to answer a request whose body was not kept.
    """

    admitted: Optional[Admitted] = None
    bodyRefusal: Optional[Refusal] = None
    streamed = False
    """Whether it was forwarded: its stream logs itself."""
    _stream: Optional[Stream] = None
    _drain: Optional[Drain] = None
    _counted: Optional[tuple[StreamLimits, str]] = None
    _held = 0

    def admit(self, admitted: Admitted, streams: StreamLimits, drain: Drain) -> None:
        """
        Take what admission decided: a stream is counted as its client's,
        and as in flight for the drain, until its answer ends.

        @param admitted: What was decided.
        @param streams: The site's limits on streams in flight.
        @param drain: The site's drain.
        """
        self.admitted = admitted
        if admitted.client is not None:
            self._counted = (streams, admitted.client)
            streams.started(admitted.client)
        if admitted.answer in (FORWARD, RECONNECT):
            self._drain = drain
            drain.started(self)

    _readableBy: Optional[tuple[CorsPolicy, bytes]] = None

    def streamStarted(self, stream: Stream) -> None:
        """
        It is being forwarded, as C{stream}: cut off through it.
        """
        self.streamed = True
        self._stream = stream

    def cutOff(self, refusal: Refusal) -> None:
        """
        End it now (a draining gateway's time has run out): its stream is
        cut off, or, not forwarded yet, its connection is closed.

        @param refusal: The answer to a request whose upstream has not
            answered yet.
        """
        stream = self._stream
        if stream is not None:
            stream.cutOff(refusal)
        else:
            self.loseConnection()

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
        self._bodies: Optional[BodyMemory] = getattr(site, "bodies", None)

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
        # It and its stream refer to each other until here.
        self._stream = None
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
