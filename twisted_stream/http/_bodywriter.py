# -*- test-case-name: tests.test_bodywriter -*-
"""
The writer of a response body whose headers are sent: what the proxy hands
each upstream piece to, on the path of every chunk.
"""

from __future__ import annotations

from typing import Callable, Optional, Protocol

from twisted.web.http import HTTPChannel
from twisted.web.server import Request

__all__ = ["PieceCount", "bodyWriter"]


class PieceCount(Protocol):
    """
    Where the pieces written are counted (a stream's log record,
    L{twisted_stream.exchange._streamlog.StreamRecord}).
    """

    chunks: int


class _Uncounted:
    chunks = 0


def bodyWriter(request: Request, record: Optional[PieceCount] = None) -> Callable[[bytes], None]:
    """
    What writes the pieces of a response body whose headers are sent.

    That is C{request.write}, but for an HTTP/1.x connection it is the same
    write without twisted.web's per-call bookkeeping (three methods and a
    list per piece): each piece is framed as a chunk when the response is
    chunked, counted in C{request.sentLength}, and handed to the transport
    in one call. After the client has gone, the transport drops it, as
    C{request.write} would.

    @param request: A request whose response headers have been written.
    @param record: Where to count the pieces written, if anywhere.
    @return: The writer.
    """
    channel = getattr(request, "channel", None)
    if (
        not isinstance(channel, HTTPChannel)
        or channel.transport is None
        or request.method == b"HEAD"
        or request.finished
    ):
        # HTTP/2 (an H2Stream), a request with no connection (a fake), HEAD.
        if record is None:
            return request.write
        write = request.write

        def countedWrite(data: bytes) -> None:
            record.chunks += 1
            write(data)

        return countedWrite
    send = channel.transport.write
    counts = record if record is not None else _Uncounted()
    if request.chunked:

        def writeChunk(data: bytes) -> None:
            if data:
                request.sentLength += len(data)
                counts.chunks += 1
                send(b"%x\r\n%s\r\n" % (len(data), data))

        return writeChunk

    def writeRaw(data: bytes) -> None:
        request.sentLength += len(data)
        counts.chunks += 1
        send(data)

    return writeRaw
