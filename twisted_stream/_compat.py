# -*- test-case-name: tests.test_compat -*-
"""
Every name of Twisted's (and h2's) that is not public, in one place.

The gateway reaches below Twisted's public API where that API cannot do what
it must: answer a request before its body is read, refuse a chunk size at
its 17th digit, bound HTTP/2's header blocks and refuse one stream rather
than the connection, switch to the gateway's own HTTP/2 connection after
ALPN, send a write without waiting for a reactor turn. Each use is here,
under a name of the project's, with what it relies on; no other module
imports a private name or module of Twisted's or h2's, overrides a private
method, or reads a private attribute (C{tests/test_compat.py} checks the
source).

Checked with Twisted 26.4.0 and 26.10.0 (the bounds in C{setup.py}), and h2
4.1.0 and 4.4.1; CI runs the tests that exercise this module against the
newest Twisted on PyPI too (C{scripts/test-newest-twisted}), so that a
release that changes one of these shows as a failing step.
"""

from __future__ import annotations

from typing import Any, Callable, Optional

import h2.connection
import h2.events
from twisted.application.internet import StreamServerEndpointService

# What trustRootFromCertificates makes (the CAs a TLS client trusts): public
# as a function, its interface named in a private module only.
from twisted.internet._sslverify import IOpenSSLTrustRoot as TrustRoot
from twisted.internet.epollreactor import EPollReactor
from twisted.internet.interfaces import IReactorTime
from twisted.internet.protocol import connectionDone
from twisted.internet.tcp import Connection
from twisted.python import usage
from twisted.python.failure import Failure
from twisted.web._http2 import H2Connection, H2Stream
from twisted.web.http import (
    HTTPChannel,
    _ChunkedTransferDecoder,
    _GenericHTTPChannelProtocol,
    _MalformedChunkedDataError,
)
from twisted.web.server import Request

__all__ = [
    "BoundedChunkedDecoder",
    "EPollReactorBase",
    "H2ConnectionBase",
    "H2StateBase",
    "HTTPChannelBase",
    "MalformedChunkedData",
    "NegotiatingChannel",
    "TrustRoot",
    "nothingBuffered",
    "optionParsers",
    "raiseAtStart",
    "streamOf",
]


MalformedChunkedData = _MalformedChunkedDataError
"""What Twisted's chunked decoder raises for a body it cannot parse
(C{twisted.web.http._MalformedChunkedDataError}, since 22.4)."""


# HTTP/1.1: twisted.web.http.HTTPChannel


class HTTPChannelBase(HTTPChannel):
    """
    Twisted's HTTP/1.x server channel, with the parts of its parser a
    channel that refuses early must see, under names of the project's.

    Relies on C{HTTPChannel} keeping the request line's pieces in
    C{_command}, C{_path} and C{_version} once it is parsed, the body's
    decoder in C{_transferDecoder}, C{_handlingRequest} while a request is
    being answered, and calling C{_maybeChooseTransferDecoder} for each
    C{Content-Length} or C{Transfer-Encoding} line and
    C{_respondToBadRequestAndDisconnect} for what it refuses itself.
    """

    @property
    def requestMethod(self) -> bytes:
        """
        The request line's method, once it has been parsed.
        """
        method: bytes = getattr(self, "_command", b"-")
        return method

    @property
    def requestTarget(self) -> bytes:
        """
        The request line's target, once it has been parsed.
        """
        target: bytes = getattr(self, "_path", b"-")
        return target

    @property
    def requestVersion(self) -> bytes:
        """
        The request line's protocol, once it has been parsed.
        """
        version: bytes = self._version
        return version

    @property
    def bodyDecoder(self) -> Any:
        """
        What decodes the body of the request arriving (L{None} before its
        length is known).
        """
        return self._transferDecoder

    @bodyDecoder.setter
    def bodyDecoder(self, decoder: Any) -> None:
        self._transferDecoder = decoder

    @property
    def answering(self) -> bool:
        """
        Whether a request is being answered (bytes that come meanwhile are
        a pipelined request's, and are held).
        """
        answering: bool = self._handlingRequest
        return answering

    def _maybeChooseTransferDecoder(self, header: bytes, data: bytes) -> bool:
        return self.lengthHeaderReceived(header, data)

    def lengthHeaderReceived(self, header: bytes, data: bytes) -> bool:
        """
        A C{Content-Length} or C{Transfer-Encoding} line has arrived: pick
        the body's decoder, as Twisted does.

        @return: Whether the line is acceptable.
        """
        ok: bool = HTTPChannel._maybeChooseTransferDecoder(self, header, data)
        return ok

    def _respondToBadRequestAndDisconnect(self) -> None:
        self.malformed()

    def malformed(self) -> None:
        """
        Twisted's parser refuses the request (a request line it cannot
        parse, a bad header name): it answers a bare C{400} and closes.
        """
        HTTPChannel._respondToBadRequestAndDisconnect(self)


class BoundedChunkedDecoder(_ChunkedTransferDecoder):
    """
    Twisted's chunked body decoder, refusing a chunk-size line as soon as
    it is longer than C{maxSizeDigits} hex digits, where Twisted's would
    wait for the rest of a line of up to 1 KiB, then for that many bytes.

    Relies on C{_ChunkedTransferDecoder} keeping what it has not parsed in
    C{_buffer} and parsing a size line in C{_dataReceived_CHUNK_LENGTH}.
    """

    maxSizeDigits = 16

    def _dataReceived_CHUNK_LENGTH(self) -> bool:
        buffer: bytes | bytearray = self._buffer
        digits = len(buffer) - len(buffer.lstrip(b"0123456789abcdefABCDEF"))
        if digits > self.maxSizeDigits:
            raise MalformedChunkedData(f"a chunk size has more than {self.maxSizeDigits} hex digits")
        ok: bool = super()._dataReceived_CHUNK_LENGTH()
        return ok

    @classmethod
    def replacing(cls, decoder: Any) -> Any:
        """
        @param decoder: The body decoder Twisted chose.
        @return: A bounded one in its place, if it is a chunked one.
        """
        if isinstance(decoder, _ChunkedTransferDecoder) and not isinstance(decoder, cls):
            return cls(decoder.dataCallback, decoder.finishCallback)
        return decoder


# HTTP/2: twisted.web._http2 and h2


def streamOf(request: Request) -> Optional[tuple[H2Connection, int]]:
    """
    @param request: A request.
    @return: The HTTP/2 connection and stream it came on, or L{None} if it
        did not come over HTTP/2 (relies on C{H2Stream._conn}).
    """
    # (Read with a default: any IRequest may come, test doubles too.)
    channel = getattr(request, "channel", None)
    if isinstance(channel, H2Stream):
        return channel._conn, channel.streamID
    return None


class H2ConnectionBase(H2Connection):
    """
    Twisted's HTTP/2 server connection, with the steps it takes for each of
    h2's events under names of the project's.

    Relies on C{H2Connection} handling h2's events in C{_requestReceived},
    C{_requestDataReceived}, C{_requestEnded}, C{_requestAborted}, ending a
    stream in C{_requestDone}, sending what h2 has queued in
    C{_tryToWriteControlData}, keeping its reactor in C{_reactor}, each
    stream's request in C{H2Stream._request}, and calling
    C{connectionLost} itself, with C{_cancelTimeouts=False}, when it ends a
    connection before its transport has closed.
    """

    @property
    def clock(self) -> IReactorTime:
        """
        The connection's reactor.
        """
        clock: IReactorTime = self._reactor
        return clock

    def requestOf(self, streamID: int) -> Request:
        """
        @return: The request of an open stream.
        """
        request: Request = self.streams[streamID]._request
        return request

    def sendQueued(self) -> bool:
        """
        Send what h2 has queued (frames of control, a GOAWAY).

        @return: Whether the connection is still open.
        """
        open_: bool = self._tryToWriteControlData()
        return open_

    def _requestReceived(self, event: h2.events.RequestReceived) -> None:
        self.headersReceived(event)

    def headersReceived(self, event: h2.events.RequestReceived) -> None:
        """
        A stream's request head has arrived: Twisted makes its request.
        """
        H2Connection._requestReceived(self, event)

    def _requestDataReceived(self, event: h2.events.DataReceived) -> None:
        self.bodyReceived(event)

    def bodyReceived(self, event: h2.events.DataReceived) -> None:
        """
        Body data for a stream has arrived.
        """
        H2Connection._requestDataReceived(self, event)

    def _requestEnded(self, event: h2.events.StreamEnded) -> None:
        self.bodyEnded(event)

    def bodyEnded(self, event: h2.events.StreamEnded) -> None:
        """
        A stream's request has arrived in full.
        """
        H2Connection._requestEnded(self, event)

    def _requestAborted(self, event: h2.events.StreamReset) -> None:
        self.streamReset(event)

    def streamReset(self, event: h2.events.StreamReset) -> None:
        """
        The client reset a stream.
        """
        H2Connection._requestAborted(self, event)

    def _requestDone(self, streamID: int) -> None:
        self.streamDone(streamID)

    def streamDone(self, streamID: int) -> None:
        """
        A stream's response has ended.
        """
        H2Connection._requestDone(self, streamID)

    def connectionLost(self, reason: Failure = connectionDone, _cancelTimeouts: bool = True) -> None:
        self.connectionEnded(reason, transportClosed=_cancelTimeouts)

    def connectionEnded(self, reason: Failure, transportClosed: bool) -> None:
        """
        The connection has ended: called by Twisted as it ends it
        (C{transportClosed} false), and again by the transport once closed.
        """
        H2Connection.connectionLost(self, reason, transportClosed)


class H2StateBase(h2.connection.H2Connection):
    """
    h2's connection state machine, with the step that receives a
    C{HEADERS} frame under a name of the project's.

    Relies on h2 (4.x) receiving each C{HEADERS} frame in
    C{_receive_headers_frame}, which returns the frames to send and the
    events, and checking the limit of concurrent streams only there.
    """

    def _receive_headers_frame(self, frame: Any) -> Any:
        return self.headersFrameReceived(frame)

    def headersFrameReceived(self, frame: Any) -> Any:
        """
        @return: The frames to send and the events of a C{HEADERS} frame.
        """
        return h2.connection.H2Connection._receive_headers_frame(self, frame)


class NegotiatingChannel(_GenericHTTPChannelProtocol):
    """
    Twisted's protocol that speaks HTTP/2 or HTTP/1.1 by what TLS negotiated
    (ALPN), switching to an HTTP/2 connection of the caller's making.

    Relies on C{_GenericHTTPChannelProtocol} keeping the HTTP/1.1 channel
    in C{_channel}, the negotiated protocol in C{_negotiatedProtocol}, and
    the site's settings it passes on in C{_requestFactory}, C{_site},
    C{_factory}, C{_timeOut}, C{_callLater}; and on the HTTP/1.1 channel's
    C{_networkProducer}. The switch is Twisted's own (in its
    C{dataReceived}), with the connection made by C{makeH2}.
    """

    def __init__(self, channel: HTTPChannel, makeH2: Callable[[HTTPChannel], H2Connection]) -> None:
        """
        @param channel: The HTTP/1.x channel it starts with.
        @param makeH2: Makes the HTTP/2 connection that takes over from the
            channel, if ALPN picks C{h2}.
        """
        super().__init__(channel)
        self._makeH2 = makeH2

    def dataReceived(self, data: bytes) -> None:
        if self._negotiatedProtocol is None:
            negotiated = getattr(self._channel.transport, "negotiatedProtocol", None) or b"http/1.1"
            if negotiated == b"h2":
                old = self._channel
                networkProducer = old._networkProducer
                networkProducer.unregisterProducer()
                old.setTimeout(None)
                transport = old.transport
                connection: Any = self._makeH2(old)
                self._channel = connection
                connection.requestFactory = self._requestFactory
                connection.site = self._site
                connection.factory = self._factory
                connection.timeOut = self._timeOut
                connection.callLater = self._callLater
                connection.makeConnection(transport)
                networkProducer.registerProducer(connection, True)
            self._negotiatedProtocol = negotiated  # type: ignore[assignment]
        self._channel.dataReceived(data)


# TCP: twisted.internet.tcp.Connection


def nothingBuffered(transport: Connection) -> bool:
    """
    @param transport: A TCP connection.
    @return: Whether a write now may go straight to C{send}: nothing waits
        to be sent before it, and the connection is open for writing.

    Relies on C{FileDescriptor} counting the bytes written since its last
    send in C{_tempDataLen} (kept in C{_tempDataBuffer}, beside
    C{dataBuffer}), and C{_writeDisconnected} once its writing side is shut.
    """
    return bool(
        not transport._tempDataLen
        and not transport.dataBuffer
        and transport.connected
        and not transport.disconnecting
        and not transport._writeDisconnected
    )


# The reactor: twisted.internet.epollreactor


class EPollReactorBase(EPollReactor):
    """
    Twisted's epoll reactor, with the parts of its loop that a reactor of
    the project's runs itself under names of the project's.

    Relies on C{EPollReactor} keeping its C{select.epoll} in C{_poller},
    the selectables it watches by descriptor in C{_selectables}, and
    handling one event in C{_doReadOrWrite(selectable, fd, event)}.
    """

    def pollEvents(self, timeout: Optional[float]) -> list[tuple[int, int]]:
        """
        Wait for events (at most C{timeout} seconds; L{None}: until one
        comes), as many at most as descriptors are watched, as Twisted's.

        @raise OSError: As C{epoll.poll} does (C{EINTR} among them).
        """
        return self._poller.poll(-1 if timeout is None else timeout, len(self._selectables))

    @property
    def selectables(self) -> dict[int, Any]:
        """
        The selectables watched, by descriptor.
        """
        selectables: dict[int, Any] = self._selectables
        return selectables

    @property
    def eventHandler(self) -> Callable[[Any, int, int], None]:
        """
        Twisted's handler of one event: C{(selectable, fd, event)}.
        """
        handler: Callable[[Any, int, int], None] = self._doReadOrWrite
        return handler


# Services and options: twisted.application, twisted.python.usage


def raiseAtStart(service: StreamServerEndpointService) -> None:
    """
    Make a listening service raise at start if its port cannot be bound,
    as C{twisted.application.strports.service} does (relies on
    C{StreamServerEndpointService._raiseSynchronously}), instead of
    logging it while the process runs on serving nothing.
    """
    service._raiseSynchronously = True


def optionParsers(options: usage.Options) -> dict[str, Any]:
    """
    @return: The parser of each option that takes a value, by name, as
        C{usage.Options} keeps them (in C{_dispatch}); the dict itself, to
        read or replace parsers in.
    """
    parsers: dict[str, Any] = options._dispatch
    return parsers
