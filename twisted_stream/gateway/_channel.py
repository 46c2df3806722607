# -*- test-case-name: tests.test_channel -*-
"""
L{GatewayChannel}: the gateway's HTTP/1.1 server channel, strict where
attackers push.

Twisted's L{HTTPChannel} parses requests well (no desync under conflicting
lengths, bad chunked framing or pipelining), but answers what it refuses
with a bare C{400} or a silent close, reads a whole request body before
anyone may look at the request, and gives a request that trickles in a byte
at a time for ever. This channel keeps its parser and adds, as named steps of
a request's arrival:

  - B{the line}: a request line over the limit is C{414}, a header line
    C{431}, as soon as that many bytes have come without a line end;
  - B{the head}: over the size or count limit, C{431}; each header line
    checked as it comes (L{headerLineRefusal}); once all have come, the
    site's admission (L{twisted_stream.gateway._admission}: the head's rules, the
    route, method, token, declared length, the limits): a request refused
    there gets its answer I{before} any byte of its body is read, and
    C{100 Continue} is sent only to one that passed;
  - B{the body}: a chunk size of more than 16 hex digits is refused at
    once, not waited for;
  - B{the deadline}: the whole request must arrive within C{timeOut}
    seconds of its first byte (C{408});
  - B{the connection}: one accepted while the process's file descriptors
    are nearly gone is answered C{503} at once (L{DescriptorGuard}); over
    TLS as soon as the client speaks, so that an HTTP/2 connection can
    answer in HTTP/2 (L{pendingRefusal}).

Every refusal is a status with a one-line reason (a L{Refusal}), logged in
the access log, and followed by a lingering close: the channel shuts its
side, then reads and drops what the client still sends for a moment, so
that the client reads the answer instead of a reset.

Its writes go out at once while nothing is buffered (L{sendAtOnce}).
"""

from __future__ import annotations

from typing import Any, Callable, Optional

from twisted.internet.interfaces import IDelayedCall
from twisted.internet.protocol import connectionDone
from twisted.python.failure import Failure
from twisted.web.server import Request

from twisted_stream._compat import BoundedChunkedDecoder, HTTPChannelBase, MalformedChunkedData
from twisted_stream.exchange._exhaustion import OUT_OF_DESCRIPTORS
from twisted_stream.exchange._streamlog import clientOf, logAnswered
from twisted_stream.gateway._admission import AdmittingSite, Head
from twisted_stream.gateway._request import GatewayRequest
from twisted_stream.http._refusal import Refusal, headerLineRefusal
from twisted_stream.upstream._writenow import sendAtOnce

__all__ = ["LINGER_SECONDS", "SPEAK_WITHIN_SECONDS", "GatewayChannel"]

SPEAK_WITHIN_SECONDS = 5.0
"""How long a TLS client accepted when the descriptors were nearly gone has to
send something (to be refused in its protocol) before it is closed."""

LINGER_SECONDS = 2.0
"""How long a refused client's further bytes are read and dropped before the
connection is closed (nginx's C{lingering_close}, shorter)."""

_OUT_OF_DESCRIPTORS = Refusal(503, OUT_OF_DESCRIPTORS, ((b"Retry-After", b"1"),))


class GatewayChannel(HTTPChannelBase):
    """
    An HTTP/1.x channel that refuses early, with a status and a reason.

    @ivar site: Its site, which gives the limits and the admission rule.
    """

    site: AdmittingSite
    # The site's limits take over from Twisted's (which answer a bare 400).
    totalHeadersSize = 2**31
    maxHeaders = 2**31

    _arrival: Optional[IDelayedCall] = None
    _counted = False
    _responding = False
    _refused = False
    _headLines = 0
    _headBytes = 0
    requestsSeen = 0
    """How many requests' heads have arrived on the connection."""
    pendingRefusal: Optional[Refusal] = None
    """How the connection is answered once the client speaks (over TLS, where
    the protocol is not known when it is accepted)."""

    def connectionMade(self) -> None:
        super().connectionMade()
        # Each forwarded chunk is sent in the write that forwards it, not a
        # reactor turn later.
        sendAtOnce(self.transport)
        self._secure = super().isSecure()
        self._limits = self.site.limits
        self.MAX_LENGTH = self._limits.maxLineBytes
        if not self.site.descriptors.exhausted(self.transport):
            self._counted = True
        elif self._secure:
            # Over TLS, ALPN may yet pick HTTP/2, which this channel's
            # answer is not: refused once the client speaks (and by the
            # HTTP/2 connection, if it took over), which it must do soon.
            self.pendingRefusal = _OUT_OF_DESCRIPTORS
            self.setTimeout(SPEAK_WITHIN_SECONDS)
        else:
            # Logged by the guard, once a second at most, not one by one.
            self.refuse(_OUT_OF_DESCRIPTORS, logged=False)

    def isSecure(self) -> bool:
        # Asked for every request (X-Forwarded-Proto), answered by adapting
        # the transport to an interface: once per connection is enough.
        return self._secure

    _host: Any = None
    _peer: Any = None

    # A connection's addresses do not change, but Twisted asks the
    # transport for them for every request: its own address with a
    # getsockname system call, the client's as a new address object.

    def getHost(self) -> Any:
        host = self._host
        if host is None:
            host = self._host = self.transport.getHost()  # type: ignore[union-attr]
        return host

    def getPeer(self) -> Any:
        peer = self._peer
        if peer is None:
            peer = self._peer = self.transport.getPeer()  # type: ignore[union-attr]
        return peer

    # The deadline

    def dataReceived(self, data: bytes) -> None:
        if self._refused:
            return
        if self.pendingRefusal is not None:
            self.refuse(self.pendingRefusal, logged=False)
            return
        if self._arrival is None and not self._responding and self.timeOut:
            self._arrival = self.callLater(self.timeOut, self._tooSlow)
        super().dataReceived(data)

    def _stopDeadline(self) -> None:
        if self._arrival is not None:
            if self._arrival.active():
                self._arrival.cancel()
            self._arrival = None

    def _tooSlow(self) -> None:
        self._arrival = None
        self.refuse(Refusal(408, f"the request did not arrive in full within {self.timeOut or 0:g} s"))

    # The line and the head

    def lineLengthExceeded(self, line: bytes) -> None:
        self.refuse(self._limits.lineTooLong(firstLine=self._headLines == 0))

    def lineReceived(self, line: bytes) -> None:
        if self._refused:
            return
        if line or self._headLines:
            # (An empty line before the request line is left to Twisted,
            # which forgives one, as old browsers sent one after a POST.)
            self._headLines += 1
            self._headBytes += len(line) + 2
            if self._headBytes > self._limits.maxHeaderBytes:
                self.refuse(self._limits.headTooLarge())
                return
            if line and self._headLines > self._limits.maxHeaders + 1:
                self.refuse(self._limits.tooManyHeaders())
                return
        super().lineReceived(line)

    def headerReceived(self, line: bytes) -> bool:
        name, colon, value = line.partition(b":")
        if colon:
            refusal = headerLineRefusal(name, value.strip(b" \t"))
            if (
                refusal is None
                and self.bodyDecoder is not None
                and name.lower() in (b"content-length", b"transfer-encoding")
            ):
                refusal = Refusal(
                    400, "the request gives its length twice (Content-Length or Transfer-Encoding)"
                )
            if refusal is not None:
                self.refuse(refusal)
                return False
        ok: bool = super().headerReceived(line)
        return ok

    def allHeadersReceived(self) -> None:
        if self._refused:
            return
        request = self.requests[-1]
        assert isinstance(request, GatewayRequest), "a GatewaySite makes GatewayRequests"
        self.requestsSeen += 1
        # (The method is the request's from now on, as Twisted would set it.)
        request.method = self.requestMethod
        site = self.site
        decided = site.admission.decide(
            Head(
                self.requestMethod,
                self.requestTarget,
                self.requestVersion,
                request.requestHeaders,
                self.length,
                clientOf(self.getPeer()),
                firstOnConnection=self.requestsSeen == 1,
                linesChecked=True,
            )
        )
        if isinstance(decided, Refusal):
            self.refuse(decided)
            return
        request.admit(decided, site.streams, site.drain)
        # Only now: 100 Continue, and the request's room for its body.
        super().allHeadersReceived()

    def malformed(self) -> None:
        # Twisted's own refusals (a request line it cannot parse, a bad
        # header name) come here: with a reason, as every other.
        self.refuse(Refusal(400, "the request is malformed"))

    # The body

    def lengthHeaderReceived(self, header: bytes, data: bytes) -> bool:
        ok = super().lengthHeaderReceived(header, data)
        if ok:
            # A chunk size of more than 16 hex digits (64 bits) is refused
            # at its 17th digit.
            self.bodyDecoder = BoundedChunkedDecoder.replacing(self.bodyDecoder)
        return ok

    def rawDataReceived(self, data: bytes) -> None:
        if self._refused:
            return
        if self.answering:
            super().rawDataReceived(data)
            return
        try:
            self.bodyDecoder.dataReceived(data)
        except MalformedChunkedData as e:
            self.refuse(Refusal(400, f"the chunked body is malformed: {e}"))

    def allContentReceived(self) -> None:
        if self._refused:
            return
        self._stopDeadline()
        self._responding = True
        self._headLines = self._headBytes = 0
        super().allContentReceived()

    def requestDone(self, request: Request) -> None:
        # Before the base class, which may go on to a pipelined request.
        self._responding = False
        super().requestDone(request)

    # Refusing

    def refuse(self, refusal: Refusal, logged: bool = True) -> None:
        """
        Answer the request that is arriving with C{refusal}, read no more of
        it, and close the connection.

        @param refusal: The answer.
        @param logged: Whether to log it in the access log.
        """
        if self._refused or self.transport is None:
            return
        self._refused = True
        self._stopDeadline()
        self.setTimeout(None)
        command = self.requestMethod
        target = self.requestTarget
        if logged:
            logAnswered(
                self.transport.getPeer(), command, target, refusal.code, 0, self.site.reactor.seconds(), self.site.metrics
            )
        self.transport.write(refusal.response())
        # A lingering close: shut our side (the answer goes first), drop
        # what still comes for a moment, then close.
        transport = self.transport
        shutWrites = getattr(transport, "loseWriteConnection", None)
        if shutWrites is None:
            transport.loseConnection()
            return
        shutWrites()
        self._arrival = self.callLater(LINGER_SECONDS, transport.loseConnection)

    def handOver(self) -> Optional[Callable[[], None]]:
        """
        The connection goes on in another protocol (HTTP/2, as TLS
        negotiated), and this channel will not see it close.

        @return: What that protocol must call once the connection has
            closed (the descriptor guard counts the connection), or L{None}.
        """
        if not self._counted:
            return None
        self._counted = False
        return self.site.descriptors.closed

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self._stopDeadline()
        if self._counted:
            self._counted = False
            self.site.descriptors.closed()
        super().connectionLost(reason)
        # A request refused before it was served stays in the queue, and it
        # and the channel refer to each other: a cycle per refused request
        # for the garbage collector, unless broken here.
        del self.requests[:]
