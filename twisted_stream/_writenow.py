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

from typing import Any, Iterable

from twisted.internet.tcp import Connection

__all__ = ["sendAtOnce"]


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
