"""
Tests for L{twisted_stream.upstream._wire}: the upstream HTTP/1.1 client protocol,
byte for byte, on an in-memory transport.
"""

from __future__ import annotations

import subprocess
import sys
from typing import Any, Optional

from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.error import ConnectionDone, ConnectionLost
from twisted.internet.protocol import Protocol, connectionDone
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.client import PotentialDataLoss, ResponseDone, ResponseFailed, ResponseNeverReceived
from twisted.web.http_headers import Headers
from twisted.web.iweb import UNKNOWN_LENGTH, IResponse

from tests.support import BytesBody
from twisted_stream.upstream._wire import (
    HTTP11UpstreamProtocol,
    ResponseLimits,
    ReusedConnectionLost,
    UpstreamProtocolError,
)


class _Body(Protocol):
    """
    Notes each piece of a body and how it ended.
    """

    def __init__(self) -> None:
        self.pieces: list[bytes] = []
        self.ended: Optional[Failure] = None

    def dataReceived(self, data: bytes) -> None:
        self.pieces.append(data)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self.ended = reason


class ImportTests(SynchronousTestCase):
    def test_standsAlone(self) -> None:
        """
        The wire loads nothing of the project above it: no log, no metrics
        (nor prometheus-client), no gateway; only the socket-writing helpers,
        the header rules and the fence around Twisted's private names
        (checked in a fresh interpreter).
        """
        loaded = subprocess.run(
            [
                sys.executable,
                "-c",
                "import sys, twisted_stream.upstream._wire; "
                "print(' '.join(sorted(m for m in sys.modules if m.startswith(('twisted_stream', 'prometheus')))))",
            ],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split()
        self.assertEqual(
            loaded,
            [
                "twisted_stream",
                "twisted_stream._compat",
                "twisted_stream.http",
                "twisted_stream.http.headers",
                "twisted_stream.upstream",
                "twisted_stream.upstream._wire",
                "twisted_stream.upstream._writenow",
            ],
        )


class _NoDelayTransport(StringTransport):
    def __init__(self) -> None:
        super().__init__()
        self.noDelay: list[bool] = []

    def setTcpNoDelay(self, enabled: bool) -> None:
        self.noDelay.append(enabled)


_SMALL = ResponseLimits(maxHeaderBytes=200, maxHeaders=5)


class WireTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.idle: list[HTTP11UpstreamProtocol] = []
        self.gone: list[HTTP11UpstreamProtocol] = []
        self.protocol = HTTP11UpstreamProtocol(
            ResponseLimits(maxHeaderBytes=200, maxHeaders=5), self.idle.append, self.gone.append
        )
        self.transport = StringTransport()
        self.protocol.makeConnection(self.transport)

    def send(
        self, method: bytes = b"GET", headers: Optional[Headers] = None, body: Optional[BytesBody] = None
    ) -> Deferred[IResponse]:
        self.transport.clear()
        return self.protocol.request(method, b"/v1/x?a=1", b"up.example:8081", headers or Headers(), body)

    def respond(self, *pieces: bytes) -> Any:
        d = self.send()
        for piece in pieces:
            self.protocol.dataReceived(piece)
        return d

    def lose(self, reason: Optional[Exception] = None) -> None:
        self.protocol.connectionLost(Failure(reason or ConnectionDone()))

    def bodyOf(self, response: IResponse) -> _Body:
        body = _Body()
        response.deliverBody(body)
        return body

    def test_requestBytes(self) -> None:
        """
        A request goes out in one write: the request line, Host, each
        header value on its own line (repeats kept, in order), the blank
        line.
        """
        headers = Headers()
        headers.addRawHeader(b"X-A", b"1")
        headers.addRawHeader(b"X-A", b"2")
        headers.addRawHeader(b"Accept-Encoding", b"gzip")
        self.send(headers=headers)
        self.assertEqual(
            self.transport.value(),
            b"GET /v1/x?a=1 HTTP/1.1\r\nHost: up.example:8081\r\nX-A: 1\r\nX-A: 2\r\n"
            b"Accept-Encoding: gzip\r\n\r\n",
        )

    def test_noDelay(self) -> None:
        """
        The connection is told C{TCP_NODELAY}: a write that follows another
        (a chunked body's pieces) is never held for the upstream's ACK.
        """
        transport = _NoDelayTransport()
        HTTP11UpstreamProtocol().makeConnection(transport)
        self.assertEqual(transport.noDelay, [True])

    def test_requestBodyWithLength(self) -> None:
        self.send(b"POST", body=BytesBody(b"hello world"))
        self.assertEqual(
            self.transport.value(),
            b"POST /v1/x?a=1 HTTP/1.1\r\nHost: up.example:8081\r\nContent-Length: 11\r\n\r\nhello world",
        )

    def test_emptyBodyHasLengthZero(self) -> None:
        self.send(b"POST", body=BytesBody(b""))
        self.assertTrue(self.transport.value().endswith(b"Content-Length: 0\r\n\r\n"))

    def test_requestBodyChunked(self) -> None:
        self.send(b"POST", body=BytesBody(b"hello", known=False))
        self.assertEqual(
            self.transport.value(),
            b"POST /v1/x?a=1 HTTP/1.1\r\nHost: up.example:8081\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"3\r\nhel\r\n2\r\nlo\r\n0\r\n\r\n",
        )

    def test_chunkedResponse(self) -> None:
        """
        Each chunk is handed over as it is parsed, one piece per chunk, with
        none of its framing; every header is kept, Connection and
        Transfer-Encoding included. After the last chunk the connection is
        idle again.
        """
        d = self.respond(
            b"HTTP/1.1 200 Fine\r\nContent-Type: text/event-stream\r\nConnection: X-Hop\r\nX-Hop: 1\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n"
        )
        response = self.successResultOf(d)
        self.assertEqual((response.code, response.phrase, response.length), (200, b"Fine", UNKNOWN_LENGTH))
        self.assertEqual(response.headers.getRawHeaders(b"connection"), [b"X-Hop"])
        self.assertEqual(response.headers.getRawHeaders(b"transfer-encoding"), [b"chunked"])
        body = self.bodyOf(response)
        self.assertEqual(self.transport.producerState, "producing")
        self.protocol.dataReceived(b"7\r\ndata: a\r\n")
        self.assertEqual(body.pieces, [b"data: a"])
        self.protocol.dataReceived(b"3\r\n\n\nd\r\n")
        self.assertEqual(body.pieces, [b"data: a", b"\n\nd"])
        self.assertIsNone(body.ended)
        self.protocol.dataReceived(b"0\r\n\r\n")
        assert body.ended is not None
        body.ended.trap(ResponseDone)
        self.assertEqual(self.idle, [self.protocol])
        self.assertFalse(self.transport.disconnecting)
        # Ready for the next request on the same connection.
        d = self.respond(b"HTTP/1.1 204 No Content\r\n\r\n")
        self.assertEqual(self.successResultOf(d).code, 204)

    def test_keepAliveTimeout(self) -> None:
        """
        C{Keep-Alive: timeout=N} (as Node's servers send it, any case,
        among other parameters) is read from each response; a response
        without it, or with nothing readable in it, says nothing.
        """
        for header, said in (
            (b"Keep-Alive: timeout=5\r\n", 5.0),
            (b"keep-alive: max=100, Timeout=7\r\n", 7.0),
            (b"", None),
            (b"Keep-Alive: max=5\r\n", None),
            (b"Keep-Alive: xtimeout=5\r\n", None),
        ):
            d = self.respond(b"HTTP/1.1 200 OK\r\n" + header + b"Content-Length: 0\r\n\r\n")
            self.bodyOf(self.successResultOf(d))
            self.assertEqual(self.protocol.keepAliveTimeout, said, header)

    def test_connectionCloseEndsIt(self) -> None:
        d = self.respond(b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nhi")
        body = self.bodyOf(self.successResultOf(d))
        self.assertEqual(body.pieces, [b"hi"])
        assert body.ended is not None
        body.ended.trap(ResponseDone)
        self.assertEqual(self.idle, [])
        self.assertTrue(self.transport.disconnecting)

    def test_namedAtOnceNeverPaused(self) -> None:
        """
        When the response's callback names a body protocol at once (as the
        gateway's does), the socket is never paused and resumed for it:
        each would be an C{epoll_ctl}.
        """
        told: list[str] = []
        self.transport.pauseProducing = lambda: told.append("pause")  # type: ignore[method-assign]
        self.transport.resumeProducing = lambda: told.append("resume")  # type: ignore[method-assign]
        bodies: list[_Body] = []
        d = self.send()
        d.addCallback(lambda response: bodies.append(self.bodyOf(response)))
        self.protocol.dataReceived(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nab")
        self.assertEqual(told.count("pause"), 0)
        self.protocol.dataReceived(b"cde")
        self.assertEqual(bodies[0].pieces, [b"ab", b"cde"])

    def test_heldUntilDelivered(self) -> None:
        """
        Body bytes that come with the head are held, with the socket paused,
        until a body protocol is named.
        """
        d = self.respond(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nab")
        response = self.successResultOf(d)
        self.assertEqual(response.length, 5)
        self.assertEqual(self.transport.producerState, "paused")
        body = self.bodyOf(response)
        self.assertEqual(self.transport.producerState, "producing")
        self.protocol.dataReceived(b"cde")
        self.assertEqual(body.pieces, [b"ab", b"cde"])
        assert body.ended is not None
        body.ended.trap(ResponseDone)

    def test_closeDelimited(self) -> None:
        """
        A body with neither length nor chunks ends with the connection: it
        may or may not be whole.
        """
        d = self.respond(b"HTTP/1.1 200 OK\r\n\r\npart")
        body = self.bodyOf(self.successResultOf(d))
        self.lose()
        self.assertEqual(body.pieces, [b"part"])
        assert body.ended is not None
        body.ended.trap(PotentialDataLoss)

    def test_truncatedLength(self) -> None:
        d = self.respond(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\npart")
        body = self.bodyOf(self.successResultOf(d))
        self.lose(ConnectionLost())
        assert body.ended is not None
        body.ended.trap(ResponseFailed)

    def test_truncatedChunk(self) -> None:
        d = self.respond(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab")
        body = self.bodyOf(self.successResultOf(d))
        self.lose()
        self.assertEqual(body.pieces, [b"ab"])
        assert body.ended is not None
        body.ended.trap(ResponseFailed)
        self.assertEqual(self.gone, [self.protocol])

    def test_headResponse(self) -> None:
        """
        A HEAD response is its head: its body ends at once, whatever length
        it declares, and the connection is not used again.
        """
        d = self.send(b"HEAD")
        self.protocol.dataReceived(b"HTTP/1.1 200 OK\r\nContent-Length: 99\r\n\r\n")
        response = self.successResultOf(d)
        self.assertEqual(response.length, 0)
        body = self.bodyOf(response)
        assert body.ended is not None
        body.ended.trap(ResponseDone)
        self.assertTrue(self.transport.disconnected)

    def test_interimResponsesSkipped(self) -> None:
        d = self.respond(
            b"HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
        )
        response = self.successResultOf(d)
        self.assertEqual(response.code, 200)
        self.assertIsNone(response.headers.getRawHeaders(b"link"))
        self.assertEqual(self.bodyOf(response).pieces, [b"ok"])

    def test_pauseAndStop(self) -> None:
        """
        The body's transport pauses and resumes the socket, and stopping it
        closes the connection at once.
        """
        d = self.respond(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
        body = self.bodyOf(self.successResultOf(d))
        producer: Any = body.transport
        producer.pauseProducing()
        self.assertEqual(self.transport.producerState, "paused")
        producer.resumeProducing()
        self.assertEqual(self.transport.producerState, "producing")
        producer.stopProducing()
        self.assertTrue(self.transport.disconnected)
        assert body.ended is not None
        body.ended.trap(ResponseFailed)
        # What is still parsed from the last read goes nowhere.
        self.protocol.dataReceived(b"2\r\nhi\r\n")
        self.assertEqual(body.pieces, [])

    def test_cancelWhileWaiting(self) -> None:
        d = self.send()
        d.cancel()
        self.failureResultOf(d, CancelledError)
        self.assertTrue(self.transport.disconnected)

    def test_whoClosed(self) -> None:
        """
        C{upstreamClosed} says whether the upstream closed the connection
        cleanly: not when this side closed it, nor when it was dropped
        (the reactor's C{disconnectAll} at shutdown gives C{ConnectionLost}).
        """
        self.assertFalse(self.protocol.upstreamClosed)
        self.lose()
        self.assertTrue(self.protocol.upstreamClosed)
        for closedHere, reason in ((True, ConnectionDone()), (False, ConnectionLost())):
            protocol = HTTP11UpstreamProtocol()
            transport = StringTransport()
            protocol.makeConnection(transport)
            if closedHere:
                transport.loseConnection()
            protocol.connectionLost(Failure(reason))
            self.assertFalse(protocol.upstreamClosed)

    def test_lostBeforeAnyByte(self) -> None:
        """
        A connection that ends before any byte of the response came: the
        request may or may not have reached the upstream, and the failure
        says so (L{ResponseNeverReceived}), for the caller to decide.
        """
        d = self.send()
        self.lose()
        self.failureResultOf(d, ResponseNeverReceived)

    def test_reusedLostBeforeAnyByte(self) -> None:
        """
        The same on a connection that had served a response before: a
        L{ReusedConnectionLost} (the upstream most likely closed it as idle
        while the request went out), which the first request's failure is
        not.
        """
        d = self.respond(b"HTTP/1.1 204 No Content\r\n\r\n")
        self.bodyOf(self.successResultOf(d))
        self.assertEqual(self.idle, [self.protocol])
        d = self.send()
        self.lose()
        self.failureResultOf(d, ReusedConnectionLost)

    def test_firstLostIsNotReused(self) -> None:
        d = self.send()
        self.lose()
        self.assertFalse(self.failureResultOf(d, ResponseNeverReceived).check(ReusedConnectionLost))

    def test_lostMidHead(self) -> None:
        d = self.respond(b"HTTP/1.1 200 OK\r\nX-A")
        self.lose()
        self.failureResultOf(d, ResponseFailed)

    def test_freeBeforeTheEndIsTold(self) -> None:
        """
        A kept-alive connection is free again before its body's end is
        told, so that whoever hears of it can send the next request on it
        at once.
        """
        d = self.respond(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n")
        body = _Body()
        seen: list[list[HTTP11UpstreamProtocol]] = []
        body.connectionLost = lambda reason=None: seen.append(list(self.idle))  # type: ignore[method-assign]
        self.successResultOf(d).deliverBody(body)
        self.protocol.dataReceived(b"ok")
        self.assertEqual(seen, [[self.protocol]])

    def test_oldBodyLeavesTheNextAlone(self) -> None:
        """
        The producer handed out with one body does nothing once that body
        has ended, though its connection now carries another request.
        """
        d = self.respond(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        producer: Any = self.bodyOf(self.successResultOf(d)).transport
        self.send()
        producer.pauseProducing()
        producer.stopProducing()
        self.assertEqual(self.transport.producerState, "producing")
        self.assertFalse(self.transport.disconnected)

    def test_responseToNoRequest(self) -> None:
        """
        Bytes that follow a complete response in the same read, with no
        request outstanding, drop the connection.
        """
        d = self.respond(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokHTTP/1.1 200 OK\r\n\r\n")
        body = self.bodyOf(self.successResultOf(d))
        self.assertTrue(self.transport.disconnected)
        self.assertEqual(body.pieces, [b"ok"])
        assert body.ended is not None
        body.ended.trap(ResponseDone)
        self.assertEqual(self.idle, [])

    def test_bytesWhileIdle(self) -> None:
        """
        Bytes from the upstream when no request is outstanding belong to
        nothing: the connection is dropped.
        """
        self.protocol.dataReceived(b"HTTP/1.1 200 OK\r\n\r\n")
        self.assertTrue(self.transport.disconnected)


class StrictTests(SynchronousTestCase):
    """
    What the upstream must not send: each refused with a one-line reason,
    the connection closed, nothing handed over.
    """

    def refused(self, *pieces: bytes, limits: ResponseLimits = _SMALL) -> str:
        protocol = HTTP11UpstreamProtocol(limits)
        transport = StringTransport()
        protocol.makeConnection(transport)
        d = protocol.request(b"GET", b"/", b"up", Headers())
        for piece in pieces:
            protocol.dataReceived(piece)
        failure = self.failureResultOf(d, UpstreamProtocolError)
        self.assertTrue(transport.disconnected)
        return str(failure.value)

    def test_headTooLargeInPieces(self) -> None:
        """
        A head that never ends is refused once it is over the limit, though
        no line of it has ended: at most one read more than the limit is
        ever held.
        """
        reason = self.refused(b"HTTP/1.1 200 OK\r\nX-Long: ", *[b"a" * 50] * 4)
        self.assertEqual(reason, "the response head is over 200 bytes")

    def test_headTooLargeInOneRead(self) -> None:
        head = b"HTTP/1.1 200 OK\r\n" + b"".join(b"X-%d: %s\r\n" % (i, b"v" * 60) for i in range(4))
        reason = self.refused(head + b"\r\n", limits=ResponseLimits(200, 100))
        self.assertEqual(reason, "the response head is over 200 bytes")

    def test_tooManyHeaders(self) -> None:
        head = b"HTTP/1.1 200 OK\r\n" + b"".join(b"X-%d: v\r\n" % (i,) for i in range(6))
        reason = self.refused(head + b"\r\n", limits=ResponseLimits(10_000, 5))
        self.assertEqual(reason, "the response has over 5 header lines")

    def test_controlInReason(self) -> None:
        for bad in (b"\x01", b"\x7f", b"\x1b[31m"):
            reason = self.refused(b"HTTP/1.1 200 O" + bad + b"K\r\nContent-Length: 0\r\n\r\n")
            self.assertEqual(reason, "the status line's reason phrase holds a control character")

    def test_bareCRInReason(self) -> None:
        reason = self.refused(b"HTTP/1.1 200 O\rK\r\nContent-Length: 0\r\n\r\n")
        self.assertTrue(reason.startswith("malformed response: "), reason)

    def test_controlInHeaderValue(self) -> None:
        for bad in (b"\x01", b"\x7f", b"\x00", b"\r"):
            reason = self.refused(b"HTTP/1.1 200 OK\r\nX-A: a" + bad + b"b\r\n\r\n")
            self.assertTrue(reason.startswith("malformed response: "), (bad, reason))

    def test_badHeaderName(self) -> None:
        reason = self.refused(b"HTTP/1.1 200 OK\r\nX A: b\r\n\r\n")
        self.assertTrue(reason.startswith("malformed response: "), reason)

    def test_conflictingLengths(self) -> None:
        reason = self.refused(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nhi")
        self.assertTrue(reason.startswith("malformed response: "), reason)

    def test_switchingProtocolsUnasked(self) -> None:
        reason = self.refused(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\nConnection: upgrade\r\n\r\n")
        self.assertEqual(reason, "the upstream switched protocols unasked")

    def test_chunkSizeTooLong(self) -> None:
        """
        A chunk size over 16 hex digits ends the body as broken at once.
        """
        protocol = HTTP11UpstreamProtocol()
        transport = StringTransport()
        protocol.makeConnection(transport)
        d = protocol.request(b"GET", b"/", b"up", Headers())
        protocol.dataReceived(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
        body = _Body()
        self.successResultOf(d).deliverBody(body)
        protocol.dataReceived(b"1" * 17 + b"\r\n")
        assert body.ended is not None
        body.ended.trap(ResponseFailed)
        self.assertIsInstance(body.ended.value.reasons[0].value, UpstreamProtocolError)
        self.assertTrue(transport.disconnected)
