# -*- test-case-name: tests.test_writenow -*-
"""
Send a write at once when nothing is waiting to be sent before it.

A Twisted TCP transport never sends inside C{write}: it buffers the data,
registers the socket for writability (an C{epoll_ctl}), and sends on the
next turn of the reactor, after which it unregisters it (another
C{epoll_ctl}). For a proxy that forwards one small chunk per upstream read,
that is two system calls and a whole reactor event per chunk on top of the
one C{send} that does the work, and a turn of delay.

L{sendAtOnce} changes one connection so that a write made while its buffer
is empty goes straight to C{send}. Only what the kernel does not take is
buffered, the usual way, so everything else holds as before: order (a write
never overtakes buffered data), backpressure (a full socket buffers, and a
registered producer is paused), and errors (a failed C{send} is left for the
buffered path to meet and report).
"""

from __future__ import annotations

from typing import Any, Callable, Iterable

from twisted.internet.tcp import Connection
from twisted.web.http import HTTPChannel
from twisted.web.server import Request

__all__ = ["bodyWriter", "sendAtOnce"]


def sendAtOnce(transport: Any) -> bool:
    """
    Make C{transport} send each write at once while nothing is buffered.

    @param transport: A connection's transport. Only plain TCP connections
        are changed: a TLS connection encrypts in its own buffer.
    @return: Whether it was changed.
    """
    if not isinstance(transport, Connection) or getattr(transport, "TLS", False):
        return False
    buffered = transport.write
    send = transport.socket.send

    def write(data: bytes) -> None:
        if (
            data
            and not transport._tempDataLen
            and not transport.dataBuffer
            and transport.connected
            and not transport.disconnecting
            and not transport._writeDisconnected
        ):
            try:
                sent = send(data)
            except BlockingIOError:
                sent = 0
            except OSError:
                # The buffered path meets the same error on its next send
                # and closes the connection the usual way.
                sent = 0
            if sent == len(data):
                return
            data = data[sent:]
        buffered(data)

    def writeSequence(iovec: Iterable[bytes]) -> None:
        write(b"".join(iovec))

    transport.write = write  # type: ignore[method-assign]
    transport.writeSequence = writeSequence  # type: ignore[method-assign]
    return True


def bodyWriter(request: Request) -> Callable[[bytes], None]:
    """
    What writes the pieces of a response body whose headers are sent.

    That is C{request.write}, but for an HTTP/1.x connection it is the same
    write without twisted.web's per-call bookkeeping (three methods and a
    list per piece): each piece is framed as a chunk when the response is
    chunked, counted in C{request.sentLength}, and handed to the transport
    in one call. After the client has gone, the transport drops it, as
    C{request.write} would.

    @param request: A request whose response headers have been written.
    @return: The writer.
    """
    channel = getattr(request, "channel", None)
    if not isinstance(channel, HTTPChannel) or channel.transport is None:
        # HTTP/2 (an H2Stream), or a request with no connection (a fake).
        return request.write
    if request.method == b"HEAD" or request.finished:
        return request.write
    send = channel.transport.write
    if request.chunked:

        def writeChunk(data: bytes) -> None:
            if data:
                request.sentLength += len(data)
                send(b"%x\r\n%s\r\n" % (len(data), data))

        return writeChunk

    def writeRaw(data: bytes) -> None:
        request.sentLength += len(data)
        send(data)

    return writeRaw
