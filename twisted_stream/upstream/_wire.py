# -*- test-case-name: tests.test_wire -*-
"""
The wire to an upstream: an HTTP/1.1 client protocol that parses responses
with httptools (Node's C parser, llhttp), strict and bounded.

This module knows bytes and one connection, nothing of pools, routes or
clients (that is L{twisted_stream.upstream._agent}). It exists because Twisted's
C{_newclient} is the wrong wire for a streaming gateway: its pure-Python
parser costs more per chunk than the rest of the forwarding path, it hides
the response's C{Connection} header (twisted#10126), it buffers response
headers without limit, and its pool silently sends a GET or DELETE again
when a kept-alive connection turns out stale.

The body of a response is never decoded: what the upstream sent, less its
transfer framing, is what L{IResponse.deliverBody}'s protocol gets, each
piece the moment it is parsed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Callable, Optional

import httptools
from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.error import ConnectionDone, ConnectionLost
from twisted.internet.interfaces import IPushProducer
from twisted.internet.protocol import Protocol, connectionDone
from twisted.python.failure import Failure
from twisted.web.client import (
    PotentialDataLoss,
    RequestTransmissionFailed,
    ResponseDone,
    ResponseFailed,
    ResponseNeverReceived,
)
from twisted.web.http_headers import Headers
from twisted.web.iweb import UNKNOWN_LENGTH, IBodyProducer, IResponse
from zope.interface import implementer

from twisted_stream.http.headers import headerProblem, valueProblem
from twisted_stream.upstream._writenow import gathered, sendAtOnce

__all__ = [
    "DEFAULT_LIMITS",
    "HTTP11UpstreamProtocol",
    "ResponseLimits",
    "ReusedConnectionLost",
    "UpstreamProtocolError",
    "UpstreamResponse",
]


_KEEP_ALIVE_TIMEOUT = re.compile(rb"(?:^|[\s,;])timeout\s*=\s*(\d{1,9})", re.IGNORECASE)


class ReusedConnectionLost(ResponseNeverReceived):
    """
    A kept-alive connection, reused for a request, ended before any byte of
    the response: most likely the upstream closed it as idle while the
    request was on its way (it may also have read the request, and died).
    """


@dataclass(frozen=True)
class ResponseLimits:
    """
    How much of an upstream response's head the gateway will hold.

    @ivar maxHeaderBytes: The status line and all header lines together,
        in bytes (Envoy's default is 60 KiB; nginx fails above its 4-8 KiB
        buffer).
    @ivar maxHeaders: How many header lines (Envoy's default is 100).
    """

    maxHeaderBytes: int = 64 * 1024
    maxHeaders: int = 100


DEFAULT_LIMITS = ResponseLimits()


class UpstreamProtocolError(Exception):
    """
    The upstream broke HTTP/1.1, or a limit: its response is not passed on.

    Its message is a one-line reason, safe to show a client.
    """


class _Refused(Exception):
    """
    Raised inside a parser callback to stop the parse; carries the reason.
    """


_IDLE, _WAITING, _BODY, _CLOSED = "IDLE", "WAITING", "BODY", "CLOSED"

_RESPONSE_DONE = Failure(ResponseDone())
"""How every complete body ends: one shared failure, as Twisted shares
C{connectionDone}, so that what its C{check} works out is worked out once."""

_PARSER_ERRORS = (httptools.HttpParserError, httptools.HttpParserUpgrade)
"""What the parser raises (an upgrade is not an error to httptools)."""


def _noBody(data: bytes) -> None:
    pass


@implementer(IPushProducer)
class _BodyProducer:
    """
    What a response body's protocol gets as its transport: the upstream
    socket, seen as a producer, so that whoever consumes the body can pause
    it (backpressure) and stop it (the consumer left).

    It speaks for one response only: once that body has ended, the
    connection may carry another request, which it must not touch.
    """

    def __init__(self, protocol: HTTP11UpstreamProtocol) -> None:
        self._protocol = protocol

    def pauseProducing(self) -> None:
        if self._protocol.bodyProducer is self:
            self._protocol.pauseBody()

    def resumeProducing(self) -> None:
        if self._protocol.bodyProducer is self:
            self._protocol.resumeBody()

    def stopProducing(self) -> None:
        if self._protocol.bodyProducer is self:
            self._protocol.stopBody()

    # What Twisted's readBody calls to give up on a body.
    abortConnection = stopProducing


@implementer(IResponse)
class UpstreamResponse:
    """
    An upstream's response, as L{IAgent} hands it over.

    @ivar fields: Every header line as it came, C{(name, value)}, in order,
        C{Connection}, C{Content-Length} and C{Transfer-Encoding} included,
        so that the gateway can see what the upstream names as hop-by-hop.
    """

    request = None
    previousResponse = None

    def __init__(
        self,
        protocol: HTTP11UpstreamProtocol,
        code: int,
        phrase: bytes,
        fields: list[tuple[bytes, bytes]],
        length: Any,
    ) -> None:
        self.version = (b"HTTP", 1, 1)
        self.code = code
        self.phrase = phrase
        self.fields = fields
        self.length = length
        self._protocol = protocol
        self._headers: Optional[Headers] = None

    @property
    def headers(self) -> Headers:
        """
        The headers as a L{Headers}, made when first asked for: the gateway
        reads L{fields} instead, and a stream's start is spared the cost.
        """
        if self._headers is None:
            self._headers = Headers()
            for name, value in self.fields:
                self._headers.addRawHeader(name, value)
        return self._headers

    def deliverBody(self, protocol: Protocol) -> None:
        """
        Hand the body, as it comes, to C{protocol}.

        @param protocol: Its C{dataReceived} gets each piece, its
            C{connectionLost} the end: L{ResponseDone}, L{PotentialDataLoss}
            (the body ended with the connection, so it may be whole or not),
            or L{ResponseFailed} (it broke off).
        """
        self._protocol.deliverBody(protocol)

    def setPreviousResponse(self, response: IResponse) -> None:
        self.previousResponse = response


class _ChunkedConsumer:
    """
    Frames a request body of unknown length as HTTP/1.1 chunks.
    """

    def __init__(self, transport: Any) -> None:
        self._transport = transport

    def write(self, data: bytes) -> None:
        if data:
            self._transport.writeSequence([b"%x\r\n" % (len(data),), data, b"\r\n"])

    def registerProducer(self, producer: Any, streaming: bool) -> None:
        self._transport.registerProducer(producer, streaming)

    def unregisterProducer(self) -> None:
        self._transport.unregisterProducer()


class HTTP11UpstreamProtocol(Protocol):
    """
    One connection to an upstream, carrying one request at a time.

    Its states:
      - C{IDLE}: connected, no request outstanding; it may wait in a pool.
        Bytes from the upstream now are a protocol error (it closes).
      - C{WAITING}: a request has been written; the response's head is
        being read, and counted against the L{ResponseLimits}.
      - C{BODY}: the response has been handed over; each piece of its
        body goes straight to the body protocol (held only until
        C{deliverBody} names one, with the socket paused meanwhile).
      - C{CLOSED}: the connection is gone or going; nothing more is parsed.

    After a complete response on a connection both sides keep alive, it
    goes back to C{IDLE} and calls C{whenIdle}.

    @ivar whenIdle: Called with this protocol each time it becomes free for
        another request.
    @ivar whenGone: Called with this protocol when its connection is lost.
    @ivar keepAliveTimeout: The seconds the last response's C{Keep-Alive:
        timeout=N} says the upstream keeps the connection open while idle
        (Node's servers send it), or L{None}.
    @ivar upstreamClosed: Whether the connection ended because the upstream
        closed it cleanly, not because this side closed it (or the reactor
        dropped it at shutdown).
    """

    keepAliveTimeout: Optional[float] = None
    upstreamClosed = False
    _reused = False

    def __init__(
        self,
        limits: ResponseLimits = DEFAULT_LIMITS,
        whenIdle: Callable[[HTTP11UpstreamProtocol], None] = lambda p: None,
        whenGone: Callable[[HTTP11UpstreamProtocol], None] = lambda p: None,
    ) -> None:
        self._limits = limits
        self.whenIdle = whenIdle
        self.whenGone = whenGone
        self.state = _IDLE
        self._deliver: Callable[[bytes], None] = _noBody
        # One parser for the connection: bytes that follow a response in
        # the same read are the next response's, as on the wire.
        self._parser: Any = httptools.HttpResponseParser(self)
        self._response: Optional[Deferred[IResponse]] = None
        self._bodyProtocol: Optional[Protocol] = None
        self.bodyProducer: Optional[_BodyProducer] = None
        self._held: list[bytes] = []
        self._ended: Optional[Failure] = None
        self._paused = False
        self._pauseAfterRead = False
        self._head = False

    def connectionMade(self) -> None:
        # A request leaves in the write that makes it, and is never held
        # back by Nagle's algorithm: without TCP_NODELAY a body sent after
        # its head on a kept-alive connection waits ~40 ms for the
        # upstream's delayed ACK (Twisted's own client protocol sets it).
        sendAtOnce(self.transport)
        setNoDelay = getattr(self.transport, "setTcpNoDelay", None)
        if setNoDelay is not None:
            setNoDelay(True)

    # The request.

    def request(
        self,
        method: bytes,
        target: bytes,
        host: bytes,
        headers: Headers,
        bodyProducer: Optional[IBodyProducer] = None,
    ) -> Deferred[IResponse]:
        """
        Send a request on this idle connection.

        @param method: The method.
        @param target: The request target (origin-form: path and query).
        @param host: The C{Host} header's value.
        @param headers: Every other header, as they are to be sent (no
            C{Host}, C{Content-Length} or C{Transfer-Encoding}: this
            protocol frames the body).
        @param bodyProducer: The body, if any: with a known C{length} it is
            sent with a C{Content-Length}, otherwise chunked.
        @return: A Deferred that fires with the L{UpstreamResponse} once
            its head has arrived, or fails with L{UpstreamProtocolError}
            (the upstream broke the protocol or a limit),
            L{ResponseNeverReceived} (the connection ended first; a
            L{ReusedConnectionLost} on a connection that had served a
            response before), or L{CancelledError}. Cancelling it closes
            the connection.
        """
        assert self.state == _IDLE, f"a request on a connection that is {self.state}"
        assert self.transport is not None
        self.state = _WAITING
        self._head = method == b"HEAD"
        self._reason = b""
        self._fields: list[tuple[bytes, bytes]] = []
        self._headBytes = 0
        self._received = 0
        self._informational = False
        self._idleAfterDelivery = False
        self._response = Deferred(self._cancel)
        lines = [b"%s %s HTTP/1.1\r\nHost: %s\r\n" % (method, target, host)]
        for name, values in headers.getAllRawHeaders():
            for value in values:
                lines.append(b"%s: %s\r\n" % (name, value))
        if bodyProducer is not None:
            if bodyProducer.length is UNKNOWN_LENGTH:
                lines.append(b"Transfer-Encoding: chunked\r\n")
            else:
                lines.append(b"Content-Length: %d\r\n" % (bodyProducer.length,))
        lines.append(b"\r\n")
        response = self._response
        # The head and a body its producer writes at once (one in memory)
        # leave in one send.
        gathered(self._send, b"".join(lines), bodyProducer)
        return response

    def _send(self, head: bytes, bodyProducer: Optional[IBodyProducer]) -> None:
        self._transport().write(head)
        if bodyProducer is not None:
            self._sendBody(bodyProducer)

    def _sendBody(self, bodyProducer: IBodyProducer) -> None:
        chunked = bodyProducer.length is UNKNOWN_LENGTH
        consumer = _ChunkedConsumer(self.transport) if chunked else self.transport

        def sent(_: object) -> None:
            if chunked and self.state != _CLOSED:
                assert self.transport is not None
                self.transport.write(b"0\r\n\r\n")

        def failed(reason: Failure) -> None:
            self._fail(RequestTransmissionFailed([reason]))
            self._abort()

        bodyProducer.startProducing(consumer).addCallbacks(sent, failed)

    def _cancel(self, response: Deferred[IResponse]) -> None:
        # The Deferred is failed with CancelledError by Deferred.cancel
        # itself once this returns: just drop the connection.
        self._response = None
        self._abort()

    def _fail(self, reason: Exception) -> None:
        response, self._response = self._response, None
        if response is not None:
            response.errback(Failure(reason))

    def _abort(self) -> None:
        self.state = _CLOSED
        self._deliver = _noBody
        if self.transport is not None:
            self.transport.abortConnection()  # type: ignore[attr-defined]

    # Bytes from the upstream.

    def dataReceived(self, data: bytes) -> None:
        state = self.state
        if state == _BODY:
            # The path of every chunk: kept to one call into the parser.
            try:
                self._parser.feed_data(data)
            except _PARSER_ERRORS as e:
                self._parseFailed(e)
            if self._pauseAfterRead:
                # (A next response's head, in the read that ended one.)
                self._pauseIfStillHeld()
            return
        if state == _WAITING:
            self._received += len(data)
            # A read that holds the head may hold the whole response: what
            # it makes the gateway write to its client leaves in one send.
            gathered(self._feed, data)
            if self._pauseAfterRead:
                self._pauseIfStillHeld()
            if self.state == _WAITING and self._received > self._limits.maxHeaderBytes:
                self._refuse(f"the response head is over {self._limits.maxHeaderBytes} bytes")
            return
        if state == _IDLE:
            # No request is outstanding: nothing the upstream says now can
            # belong to anything. Drop the connection rather than guess.
            self._abort()

    def _pauseIfStillHeld(self) -> None:
        self._pauseAfterRead = False
        if self._paused and self.state == _BODY:
            self._transport().pauseProducing()

    def _feed(self, data: bytes) -> None:
        try:
            self._parser.feed_data(data)
        except _PARSER_ERRORS as e:
            self._parseFailed(e)

    def _parseFailed(self, error: Exception) -> None:
        if isinstance(error, httptools.HttpParserUpgrade):
            self._refuse("the upstream switched protocols unasked")
            return
        refused = error.__context__
        if isinstance(refused, _Refused):
            self._refuse(str(refused))
        elif self.state != _CLOSED:
            self._refuse("malformed response: " + str(error).split("\n")[0][:100])

    def _refuse(self, reason: str) -> None:
        """
        The upstream broke the protocol or a limit: fail the request if its
        response has not been handed over yet, or else end the body as
        broken; either way, close the connection.
        """
        if self.state == _WAITING:
            self._fail(UpstreamProtocolError(reason))
        elif self.state == _BODY:
            self._endBody(Failure(ResponseFailed([Failure(UpstreamProtocolError(reason))])))
        self._abort()

    # httptools' callbacks.

    def on_status(self, status: bytes) -> None:
        if self.state != _WAITING:
            raise _Refused("the upstream sent a response to no request")
        self._reason += status
        self._headBytes += len(status)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headBytes += len(name) + len(value) + 4
        fields = self._fields
        if len(fields) >= self._limits.maxHeaders:
            raise _Refused(f"the response has over {self._limits.maxHeaders} header lines")
        fields.append((name, value))

    def on_headers_complete(self) -> None:
        parser = self._parser
        code = parser.get_status_code()
        if 100 <= code < 200:
            # An interim response (such as 103 Early Hints): not passed on.
            # The parser reads the final one next.
            self._informational = True
            self._reason = b""
            self._fields = []
            return
        if self._headBytes > self._limits.maxHeaderBytes:
            raise _Refused(f"the response head is over {self._limits.maxHeaderBytes} bytes")
        problem = valueProblem(self._reason)
        if problem is not None:
            raise _Refused("the status line's reason phrase " + problem)
        chunked = False
        length: Any = UNKNOWN_LENGTH
        keepAlive = None
        for name, value in self._fields:
            problem = headerProblem(name, value)
            if problem is not None:
                raise _Refused(f"response header {name[:40]!r} {problem}")
            lowered = name.lower()
            if lowered == b"transfer-encoding":
                chunked = True
            elif lowered == b"content-length":
                length = int(value)
            elif lowered == b"keep-alive":
                timeout = _KEEP_ALIVE_TIMEOUT.search(value)
                keepAlive = float(timeout.group(1)) if timeout else None
        self.keepAliveTimeout = keepAlive
        if self._head or code in (204, 304):
            length = 0
        elif chunked:
            length = UNKNOWN_LENGTH
        self._closeDelimited = length is UNKNOWN_LENGTH and not chunked
        self.state = _BODY
        self._held = []
        self._ended = None
        self._deliver = self._held.append
        # Held until a body protocol is named: the socket waits meanwhile.
        # It is told so only at the end of this read (nothing is read
        # before then anyway), and not at all when the response's callback
        # names one at once, as the gateway's does: an epoll_ctl pair saved
        # per response.
        self._paused = self._pauseAfterRead = True
        response, self._response = self._response, None
        assert response is not None
        response.callback(UpstreamResponse(self, code, self._reason, self._fields, length))
        if self._head and self.state == _BODY:
            # The head is all there is; the connection is not used again
            # (a length the upstream declared would confuse the parser).
            self._endBody(_RESPONSE_DONE)
            self._abort()

    def on_body(self, body: bytes) -> None:
        self._deliver(body)

    def on_message_complete(self) -> None:
        if self._informational:
            self._informational = False
            return
        if self.state != _BODY:
            return
        if not self._parser.should_keep_alive():
            self.state = _CLOSED
            self._transport().loseConnection()
            self._endBody(_RESPONSE_DONE)
            return
        if self._bodyProtocol is None:
            # Nobody has taken the body yet: the connection stays with this
            # response (paused) until somebody does.
            self._idleAfterDelivery = True
            self._endBody(_RESPONSE_DONE)
            return
        # Free before the body's end is told: whoever hears of it may well
        # start the next request at once, and should find this connection.
        self._becomeIdle()
        self._endBody(_RESPONSE_DONE)

    def _becomeIdle(self) -> None:
        self.state = _IDLE
        self._reused = True
        if self._paused:
            self._paused = False
            self._transport().resumeProducing()
        self.whenIdle(self)

    # The body's consumer.

    def deliverBody(self, protocol: Protocol) -> None:
        """
        Start handing the body to C{protocol}: what was held first, then
        each piece as it is parsed.
        """
        self._bodyProtocol = protocol
        self.bodyProducer = _BodyProducer(self)
        protocol.makeConnection(self.bodyProducer)
        for data in self._held:
            protocol.dataReceived(data)
        self._held = []
        if self._ended is not None:
            ended, self._ended = self._ended, None
            self._bodyProtocol = self.bodyProducer = None
            if self._idleAfterDelivery and self.state == _BODY:
                self._becomeIdle()
            protocol.connectionLost(ended)
            return
        if self.state == _BODY:
            self._deliver = self._deliverFirst
            self.resumeBody()

    def _deliverFirst(self, data: bytes) -> None:
        protocol = self._bodyProtocol
        assert protocol is not None
        protocol.dataReceived(data)
        # Looked up once more, after the first piece, then kept: a body
        # protocol may hand the rest to another callable on its first (the
        # proxy's notes the first byte's time, then steps out of the path).
        if self._deliver == self._deliverFirst and self._bodyProtocol is protocol:
            self._deliver = protocol.dataReceived

    def _endBody(self, reason: Failure) -> None:
        protocol = self._bodyProtocol
        self._deliver = _noBody
        if protocol is None:
            # The first end is the one that counts.
            if self._ended is None:
                self._ended = reason
            return
        self._bodyProtocol = self.bodyProducer = None
        protocol.connectionLost(reason)

    def pauseBody(self) -> None:
        if self.state == _BODY and not self._paused:
            self._paused = True
            self._transport().pauseProducing()

    def resumeBody(self) -> None:
        if self.state == _BODY and self._paused:
            self._paused = False
            self._transport().resumeProducing()

    def stopBody(self) -> None:
        """
        The body's consumer has gone: close the connection at once, so the
        upstream stops generating.
        """
        if self.state == _BODY:
            self._endBody(Failure(ResponseFailed([Failure(CancelledError())])))
            self._abort()

    def _transport(self) -> Any:
        assert self.transport is not None
        return self.transport

    # The connection's end.

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        # The parser refers back to this protocol: let both go without the
        # garbage collector.
        self._parser = None
        self.upstreamClosed = reason.check(ConnectionDone) is not None and not getattr(
            self.transport, "disconnecting", False
        )
        state, self.state = self.state, _CLOSED
        if state == _WAITING:
            if self._received:
                self._fail(ResponseFailed([reason]))
            elif self._reused:
                self._fail(ReusedConnectionLost([reason]))
            else:
                self._fail(ResponseNeverReceived([reason]))
        elif state == _BODY:
            if self._closeDelimited:
                self._endBody(Failure(PotentialDataLoss()))
            else:
                self._endBody(Failure(ResponseFailed([reason])))
        self.whenGone(self)


def whyBrokenOff(failure: Failure) -> str:
    """
    Say what broke a response body off, in words, for a log line or a
    summary: the cause comes wrapped in L{ResponseFailed}, whose C{repr} is
    a list of nested failures.

    @param failure: Why the upstream's body ended early.
    @return: The cause, as the end of a sentence.
    """
    causes = getattr(failure.value, "reasons", None) or [failure]
    cause = causes[0]
    if cause.check(ConnectionDone):
        return "the upstream closed the connection"
    if cause.check(ConnectionLost):
        return "the connection to the upstream was lost"
    if cause.check(UpstreamProtocolError):
        return f"the upstream sent a bad body: {cause.value}"
    return f"{type(cause.value).__name__}: {cause.value}" if str(cause.value) else type(cause.value).__name__
