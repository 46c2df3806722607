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

Sending at once costs a C{send} per write, where Twisted's buffering would
have joined the writes of one reactor turn. When one event is known to make
several writes (an upstream read that holds a response's head, its body and
its end; a request's head and its body), L{gathered} runs it with the
writes of each connection gathered, and sends them in one C{send} when it
returns.

This module knows sockets, nothing of requests, logs or metrics: the
upstream wire imports it (the response body's writer is
L{twisted_stream.http._bodywriter}).
"""

from __future__ import annotations

from typing import Any, Callable, Iterable, TypeVar

from twisted.internet.tcp import Connection

from twisted_stream._compat import nothingBuffered

__all__ = ["gathered", "sendAtOnce"]

_Result = TypeVar("_Result")


class _Gathering:
    """
    The writes held back while L{gathered} runs, per connection, in order.
    """

    active = False
    writes: dict[Any, list[bytes]] = {}


def gathered(f: Callable[..., _Result], *args: Any) -> _Result:
    """
    Call C{f}, holding back the writes it makes to connections changed by
    L{sendAtOnce}, and send each connection's in one C{send} when it
    returns.

    @param f: What to call.
    @param args: Its arguments.
    @return: What it returns.
    """
    if _Gathering.active:
        return f(*args)
    _Gathering.active = True
    try:
        return f(*args)
    finally:
        _Gathering.active = False
        writes, _Gathering.writes = _Gathering.writes, {}
        for transport, pieces in writes.items():
            transport.write(b"".join(pieces))


class _SendsAtOnce(Connection):
    """
    The behaviour L{sendAtOnce} gives a TCP connection, as a class to put
    in front of the connection's own: methods, not closures, so that a
    connection holds no reference to itself and is freed the moment it is
    done with.
    """

    def write(self, data: bytes) -> None:
        if _Gathering.active:
            held = _Gathering.writes.get(self)
            if held is None:
                _Gathering.writes[self] = [data]
            else:
                held.append(data)
            return
        if data and nothingBuffered(self):
            try:
                sent = self.socket.send(data)
            except BlockingIOError:
                sent = 0
            except OSError:
                # The buffered path meets the same error on its next send
                # and closes the connection the usual way.
                sent = 0
            if sent == len(data):
                return
            data = data[sent:]
        super().write(data)

    def writeSequence(self, iovec: Iterable[bytes]) -> None:
        self.write(b"".join(iovec))

    def loseConnection(self) -> None:
        # What is held back goes first: a clean close sends what was written.
        held = _Gathering.writes.pop(self, None)
        if held is not None:
            active, _Gathering.active = _Gathering.active, False
            self.write(b"".join(held))
            _Gathering.active = active
        super().loseConnection()


_changed: dict[type, type] = {}


def sendAtOnce(transport: Any) -> bool:
    """
    Make C{transport} send each write at once while nothing is buffered.

    @param transport: A connection's transport. Only plain TCP connections
        are changed (their class becomes a subclass of theirs with
        L{_SendsAtOnce}'s methods): a TLS connection encrypts in its own
        buffer.
    @return: Whether it was changed.
    """
    if not isinstance(transport, Connection) or getattr(transport, "TLS", False):
        return False
    base = type(transport)
    if not issubclass(base, _SendsAtOnce):
        changed = _changed.get(base)
        if changed is None:
            changed = _changed[base] = type(base.__name__, (_SendsAtOnce, base), {})
        transport.__class__ = changed
    return True
