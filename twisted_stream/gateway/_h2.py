# -*- test-case-name: tests.test_h2 -*-
"""
HTTP/2 to browsers, on a TLS listener, by ALPN: Twisted's own HTTP/2 server
(C{twisted.web._http2}, on the h2 library), with what the gateway's
HTTP/1.1 channel has besides.

A browser keeps at most six HTTP/1.1 connections per origin, so a tab with
eight live streams makes the last two wait for the first to end; over
HTTP/2 they share one connection. Twisted's HTTP/2 already streams with
backpressure per stream (the stream's flow-control window pauses the
producer, so the upstream is read no faster than the client reads) and
cancels a request whose stream the client resets. This module adds:

  - B{honest truncation}: a response that breaks off is ended with
    C{RST_STREAM(INTERNAL_ERROR)} after what was written, never with the
    clean C{END_STREAM} that Twisted's C{loseConnection} sends on a stream
    (see L{truncate});
  - B{refusal at the head}: a stream whose request the site refuses (route,
    method, token, declared length, the head rules) is answered as soon as
    its headers have come, before Twisted makes a request of it (so no
    C{100 Continue} either), and then reset with C{NO_ERROR}, which tells
    the client to send no more of its body (RFC 9113, section 8.1);
  - B{the arrival deadline}: each stream's request must arrive in full
    within the site's timeout of its headers, or the stream is reset with
    C{CANCEL} (Twisted's own timeout is per connection, and any frame on any
    stream starts it again);
  - B{bounded header blocks}: each header block's frames are counted as
    they arrive, against C{--max-request-header-bytes} and
    L{MAX_HEADER_BLOCK_FRAMES}, before h2 buffers them; past a bound, or
    after any protocol error, the connection reads nothing more and is
    closed after its GOAWAY (Twisted goes on feeding h2 after an error,
    and h2 buffers an unended block without limit: the CONTINUATION flood);
  - B{a refused stream, not a lost connection}: a stream opened past the
    100 concurrent streams announced in SETTINGS is reset with
    C{REFUSED_STREAM} (RFC 9113, section 5.1.2) and the others go on (h2
    ends the whole connection);
  - B{the choice}: L{negotiatingChannel}, a site's protocol that speaks
    HTTP/2 where ALPN picked it and the gateway's HTTP/1.1 channel
    elsewhere.
"""

from __future__ import annotations

from typing import Any, Callable, Optional

import h2.connection
import h2.errors
import h2.events
import h2.settings
from twisted.internet.error import ConnectionLost
from twisted.internet.interfaces import IDelayedCall
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.http import HTTPChannel
from twisted.web.http_headers import Headers
from twisted.web.server import Request

from twisted_stream._compat import H2ConnectionBase, H2StateBase, NegotiatingChannel, streamOf
from twisted_stream.exchange._hooks import DEFAULT_HOOKS
from twisted_stream.exchange._streamlog import clientOf, logAnswered
from twisted_stream.gateway._admission import AdmittingSite, Head, declaredLength
from twisted_stream.gateway._channel import GatewayChannel
from twisted_stream.gateway._h2frames import MAX_HEADER_BLOCK_FRAMES, HeaderBlockBound
from twisted_stream.gateway._request import GatewayRequest
from twisted_stream.http._refusal import Refusal
from twisted_stream.ops._gc import closedCyclicConnection

__all__ = ["CLOSE_WITHIN_SECONDS", "MAX_CONCURRENT_STREAMS", "GatewayH2Connection", "negotiatingChannel", "truncate"]

CLOSE_WITHIN_SECONDS = 5.0
"""How long a connection being closed for a protocol error or a bound may
take to send its GOAWAY and close (a client that reads nothing would keep
it open for ever): then it is dropped."""

MAX_CONCURRENT_STREAMS = 100
"""The concurrent streams a client may open, announced in SETTINGS (h2's
default); one more is refused with C{REFUSED_STREAM}."""


class _RefusesExtraStreams(H2StateBase):
    """
    h2's connection, where a stream opened past the announced limit of
    concurrent streams is a stream error (C{REFUSED_STREAM}), as RFC 9113
    allows, and not the end of the connection, as h2 makes it.

    The refused stream's header block is still decoded (HPACK's table must
    stay in step with the client's) and the stream is made and reset at
    once, so that h2 answers the rest of its frames as those of a reset
    stream.
    """

    _admitting = False

    @property
    def open_inbound_streams(self) -> int:
        # While a refused stream is made, the limit check sees one stream
        # fewer: this is the one place h2 checks it.
        count: int = super().open_inbound_streams
        return count - 1 if self._admitting else count

    def headersFrameReceived(self, frame: Any) -> Any:
        streamID = frame.stream_id
        if streamID in self.streams or self.open_inbound_streams < self.local_settings.max_concurrent_streams:
            return super().headersFrameReceived(frame)
        self._admitting = True
        try:
            frames, events = super().headersFrameReceived(frame)
        finally:
            self._admitting = False
        self.reset_stream(streamID, error_code=h2.errors.ErrorCodes.REFUSED_STREAM)
        return frames, [event for event in events if getattr(event, "stream_id", None) != streamID]



class GatewayH2Connection(H2ConnectionBase):
    """
    Twisted's HTTP/2 server connection, with the arrival deadline per stream
    and truncation that says so.

    @ivar whenClosed: Called once the connection has closed (what the
        HTTP/1.1 channel it took over from would have done then).
    @ivar refuseAndClose: How to answer the connection's first stream,
        after which it is closed (it was accepted when the process's file
        descriptors were nearly gone), or L{None}.
    """

    log = Logger()
    site: AdmittingSite  # type: ignore[assignment]
    whenClosed: Optional[Callable[[], None]] = None
    refuseAndClose: Optional[Refusal] = None

    def __init__(self, reactor: Any = None) -> None:
        super().__init__(reactor)
        self.conn = _RefusesExtraStreams(config=self.conn.config)
        self._bound: Optional[HeaderBlockBound] = None
        self._closing: Optional[IDelayedCall] = None
        self._deadlines: dict[int, IDelayedCall] = {}
        self._truncated: set[int] = set()
        # The one place a stream ends cleanly: where it was truncated, it
        # is reset instead, after the data queued before it.
        endStream = self.conn.end_stream

        def endOrReset(streamID: int) -> None:
            if streamID in self._truncated:
                self._truncated.discard(streamID)
                self.conn.reset_stream(streamID, error_code=h2.errors.ErrorCodes.INTERNAL_ERROR)
            else:
                endStream(streamID)

        self.conn.end_stream = endOrReset

    def connectionMade(self) -> None:
        # The site is known by now (the negotiating protocol sets it before
        # the connection is made): both bounds are its head limit, the
        # frames' bytes as they arrive and the headers once decoded (HPACK
        # can make a few bytes stand for many; h2 allows 64 KiB), and the
        # latter is announced in the SETTINGS that connectionMade sends.
        maxBytes = self.site.limits.maxHeaderBytes
        self._bound = HeaderBlockBound(maxBytes, MAX_HEADER_BLOCK_FRAMES)
        self.conn.local_settings = h2.settings.Settings(
            client=False,
            initial_values={
                h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS: MAX_CONCURRENT_STREAMS,
                h2.settings.SettingCodes.MAX_HEADER_LIST_SIZE: maxBytes,
            },
        )
        self.conn.decoder.max_header_list_size = maxBytes
        super().connectionMade()

    def dataReceived(self, data: bytes) -> None:
        if self._closing is not None:
            # Closing for an error or a bound: nothing more is parsed.
            return
        bound = self._bound
        assert bound is not None, "data before connectionMade"
        if not bound.feed(data):
            self.log.info(
                "HTTP/2 connection from {client}: {reason}; closed",
                client=clientOf(self.getPeer()),
                reason=bound.reason,
            )
            self.conn.close_connection(error_code=h2.errors.ErrorCodes.ENHANCE_YOUR_CALM)
            self._closeAfterGoAway()
            return
        super().dataReceived(data)
        if self.conn.state_machine.state is h2.connection.ConnectionState.CLOSED:
            # A protocol error (h2 has queued its GOAWAY), or the client's
            # GOAWAY: Twisted would go on feeding h2 every later byte.
            self._closeAfterGoAway()

    def _closeAfterGoAway(self) -> None:
        """
        Stop reading, send what is queued (the GOAWAY), close; drop the
        connection if that has not happened within L{CLOSE_WITHIN_SECONDS}.
        """
        if self._closing is not None:
            return
        transport: Any = self.transport
        self._closing = self.clock.callLater(CLOSE_WITHIN_SECONDS, transport.abortConnection)
        transport.pauseProducing()
        self.sendQueued()
        # TLS closes only once no producer is registered: this connection
        # is its transport's.
        transport.unregisterProducer()
        transport.loseConnection()

    def truncateAfterWrites(self, streamID: int) -> None:
        """
        End a stream's response as broken off: the data written so far goes
        out, then C{RST_STREAM(INTERNAL_ERROR)} instead of C{END_STREAM}.

        @param streamID: The stream.
        """
        if streamID in self.streams:
            self._truncated.add(streamID)
            self.endRequest(streamID)

    def headersReceived(self, event: h2.events.RequestReceived) -> None:
        method, target, headers = _head(event.headers)
        if self.refuseAndClose is not None:
            # Logged by the descriptor guard, once a second at most.
            self._refuse(event, method, target, self.refuseAndClose, logged=False)
            self.conn.close_connection()
            self.sendQueued()
            self.transport.loseConnection()  # type: ignore[union-attr]
            return
        site = self.site
        decided = site.admission.decide(
            Head(
                method,
                target,
                b"HTTP/2",
                headers,
                declaredLength(headers),
                clientOf(self.getPeer()),
            )
        )
        if isinstance(decided, Refusal):
            self._refuse(event, method, target, decided)
            return
        super().headersReceived(event)
        request = self.requestOf(event.stream_id)
        assert isinstance(request, GatewayRequest), "a GatewaySite makes GatewayRequests"
        request.admit(decided, site.streams, site.drain)
        if self.timeOut and not event.stream_ended:
            self._deadlines[event.stream_id] = self.clock.callLater(self.timeOut, self._tooSlow, event.stream_id)

    def _refuse(
        self, event: h2.events.RequestReceived, method: bytes, target: bytes, refusal: Refusal, logged: bool = True
    ) -> None:
        streamID = event.stream_id
        if logged:
            logAnswered(
                self.getPeer(), method, target, refusal.code, 0, self.clock.seconds(), self.site.metrics
            )
        self.conn.send_headers(streamID, [(b":status", b"%d" % (refusal.code,)), *refusal.fields()])
        self.conn.send_data(streamID, refusal.body, end_stream=True)
        if not event.stream_ended:
            self.conn.reset_stream(streamID, error_code=h2.errors.ErrorCodes.NO_ERROR)
        self.sendQueued()

    # Frames that arrive, in the same read, for a stream refused at its
    # head: there is no stream to give them to.

    def bodyReceived(self, event: h2.events.DataReceived) -> None:
        if event.stream_id not in self.streams:
            # Its bytes still count against the connection's window.
            self.conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
            return
        super().bodyReceived(event)

    def streamReset(self, event: h2.events.StreamReset) -> None:
        if event.stream_id in self.streams:
            super().streamReset(event)

    def bodyEnded(self, event: h2.events.StreamEnded) -> None:
        self._stopDeadline(event.stream_id)
        if event.stream_id in self.streams:
            super().bodyEnded(event)

    def streamDone(self, streamID: int) -> None:
        self._stopDeadline(streamID)
        self._truncated.discard(streamID)
        super().streamDone(streamID)

    def connectionEnded(self, reason: Failure, transportClosed: bool) -> None:
        # Twisted calls this itself when it ends a connection, before the
        # transport has closed: the drop stays armed until the transport's
        # own call.
        if transportClosed and self._closing is not None and self._closing.active():
            self._closing.cancel()
        for streamID in list(self._deadlines):
            self._stopDeadline(streamID)
        whenClosed, self.whenClosed = self.whenClosed, None
        if whenClosed is not None:
            whenClosed()
        super().connectionEnded(reason, transportClosed)
        if transportClosed:
            # The transport's own call: the connection is done with, and
            # only a full collection frees it (see _gc).
            closedCyclicConnection()

    def _stopDeadline(self, streamID: int) -> None:
        deadline = self._deadlines.pop(streamID, None)
        if deadline is not None and deadline.active():
            deadline.cancel()

    def _tooSlow(self, streamID: int) -> None:
        self._deadlines.pop(streamID, None)
        stream = self.streams.get(streamID)
        if stream is None:
            return
        self.log.info(
            "HTTP/2 stream {stream}: the request did not arrive in full within {timeout:g} s; reset",
            stream=streamID,
            timeout=self.timeOut,
        )
        self.conn.reset_stream(streamID, error_code=h2.errors.ErrorCodes.CANCEL)
        stillActive = self.sendQueued()
        stream.connectionLost(Failure(ConnectionLost("the request did not arrive in time")))
        if stillActive:
            self.streamDone(streamID)


def _head(fields: list[tuple[bytes, bytes]]) -> tuple[bytes, bytes, Headers]:
    """
    @return: An HTTP/2 request's method, target and headers (with
        C{:authority} as C{Host}), as Twisted's L{H2Stream} reads them.
    """
    method = target = b""
    headers = Headers()
    for name, value in fields:
        if name == b":method":
            method = value
        elif name == b":path":
            target = value
        elif name == b":authority":
            headers.addRawHeader(b"host", value)
        elif not name.startswith(b":"):
            headers.addRawHeader(name, value)
    return method, target, headers


def truncate(request: Request) -> None:
    """
    End a response so that the client sees it broke off, after what was
    written: on the gateway's HTTP/2 connection, the data written so far
    goes out and then the stream is reset; anywhere else as any site's
    (L{DEFAULT_HOOKS}).

    @param request: The request whose response broke off.
    """
    stream = streamOf(request)
    if stream is not None and isinstance(stream[0], GatewayH2Connection):
        stream[0].truncateAfterWrites(stream[1])
        return
    DEFAULT_HOOKS.truncate(request)


def _takingOver(old: HTTPChannel) -> GatewayH2Connection:
    """
    @param old: The HTTP/1.1 channel of a connection on which ALPN picked
        HTTP/2.
    @return: The gateway's HTTP/2 connection to take over from it.
    """
    connection = GatewayH2Connection()
    if isinstance(old, GatewayChannel):
        # The old channel counted the connection, and will not see it
        # close: this one says when it has.
        connection.whenClosed = old.handOver()
        connection.refuseAndClose = old.pendingRefusal
    return connection


def negotiatingChannel(site: Any) -> NegotiatingChannel:
    """
    A site's C{protocol} (as Twisted's own, called with the site) that
    speaks HTTP/2 where TLS negotiated it, and otherwise HTTP/1.x on the
    site's C{channel}.

    @param site: The site; its C{channel} makes the HTTP/1.x channel.
    @return: The protocol for one connection.
    """
    channel: Callable[[], HTTPChannel] = site.channel
    return NegotiatingChannel(channel(), _takingOver)
