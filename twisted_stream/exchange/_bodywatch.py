# -*- test-case-name: tests.test_gateway -*-
"""
L{BodyWatch}: what watches a response body while it flows from an upstream
to a client, on a clock: the idle timeout and the heartbeats.

It reads how much has gone out (the request's C{sentLength}) a few times a
period, never per chunk: the forwarding path does not know it is there.
"""

from __future__ import annotations

from typing import Callable, Optional, Protocol

from twisted.internet.interfaces import IDelayedCall, IPushProducer, IReactorTime
from zope.interface import implementer

__all__ = ["HEARTBEAT", "BodyWatch", "Sent", "WatchedProducer"]


class Sent(Protocol):
    """
    What tells how much of a body went out: a client's request, or the
    exchange that forwards it (to a resumable stream, perhaps).
    """

    @property
    def sentLength(self) -> int:
        """
        @return: The body bytes sent so far.
        """

HEARTBEAT = b": keep-alive\n\n"
"""An SSE comment and the blank line that ends it: every client ignores it."""

_EVENT_ENDS = (b"\n\n", b"\r\r", b"\r\n\r\n", b"\n\r\n", b"\r\n\n")


@implementer(IPushProducer)
class WatchedProducer:
    """
    The upstream's producer, registered with the client's request, noting
    whether the client's connection has paused it (so that a slow client is
    not taken for an idle upstream) or stopped it (so that a client that
    left is not taken for an upstream that broke off). Only pause, resume
    and stop pass through here, never a chunk.
    """

    def __init__(self, producer: IPushProducer) -> None:
        self.producer = producer
        self.paused = False
        self.stopped = False

    def pauseProducing(self) -> None:
        self.paused = True
        self.producer.pauseProducing()

    def resumeProducing(self) -> None:
        self.paused = False
        self.producer.resumeProducing()

    def stopProducing(self) -> None:
        # Stopped by the client's connection as it closes (before the
        # request hears of it), or by the exchange: either way, what ends
        # the body next is this stop, not the upstream.
        self.stopped = True
        self.producer.stopProducing()


class BodyWatch:
    """
    Watches one response body.

      - B{Idle timeout}: when the upstream has sent no body bytes for
        C{idleTimeout} seconds, and the client is not what holds it back
        (a paused producer waits for a slow client), C{onIdle} is called.
      - B{Heartbeats}: on an event stream (C{heartbeat} given), when the
        client has heard nothing for C{heartbeat} seconds, an SSE comment is
        written, between events only: L{trackEvents} is the body's writer
        then, noting where the stream stands.

    It checks eight times per period: activity is noticed at most a tick
    late and acted on at most a tick late, so a heartbeat or an idle timeout
    comes at most a quarter of its period late.
    """

    def __init__(
        self,
        clock: IReactorTime,
        request: Sent,
        write: Callable[[bytes], None],
        idleTimeout: Optional[float],
        heartbeat: Optional[float],
        onIdle: Callable[[], None],
    ) -> None:
        """
        @param clock: The clock.
        @param request: What tells how much of the body went out (its
            C{sentLength}).
        @param write: What writes to the client.
        @param idleTimeout: Seconds of upstream silence allowed; L{None}:
            any.
        @param heartbeat: Seconds of silence after which an event stream
            gets a heartbeat; L{None}: never (not an event stream).
        @param onIdle: Called once when the upstream has been idle too
            long; the watch stops.
        """
        self._clock = clock
        self._request = request
        self._write = write
        self._idleTimeout = idleTimeout
        self._heartbeat = heartbeat
        self._onIdle = onIdle
        self._producer: Optional[WatchedProducer] = None
        self._tick: Optional[IDelayedCall] = None
        self._tail = b""
        self._heartbeatBytes = 0
        self._seenUpstream = 0
        self._seenSent = 0
        self._lastUpstream = 0.0
        self._lastSent = 0.0
        periods = [p for p in (idleTimeout, heartbeat) if p]
        self._every = min(periods) / 8 if periods else None

    def trackEvents(self, data: bytes) -> None:
        """
        Write a piece of an event stream, noting how it ends, so that a
        heartbeat never goes into the middle of an event.

        @param data: A piece of the upstream body.
        """
        self._tail = (self._tail + data)[-4:]
        self._write(data)

    def start(self, producer: WatchedProducer) -> None:
        """
        Start watching, now that the body flows from C{producer}.
        """
        if self._every is None:
            return
        self._producer = producer
        self._lastUpstream = self._lastSent = self._clock.seconds()
        self._tick = self._clock.callLater(self._every, self._check)

    def stop(self) -> None:
        """
        Stop watching: the body has ended, or the client has gone.
        """
        self._producer = None
        if self._tick is not None:
            self._tick.cancel()
            self._tick = None

    def _check(self) -> None:
        self._tick = None
        producer = self._producer
        if producer is None:
            return
        now = self._clock.seconds()
        sent = self._request.sentLength
        upstream = sent - self._heartbeatBytes
        if sent != self._seenSent:
            self._seenSent = sent
            self._lastSent = now
        if upstream != self._seenUpstream or producer.paused:
            # A paused upstream is waiting for a slow client, not idle.
            self._seenUpstream = upstream
            self._lastUpstream = now
        if self._idleTimeout is not None and now - self._lastUpstream >= self._idleTimeout:
            self._producer = None
            self._onIdle()
            return
        if (
            self._heartbeat is not None
            and not producer.paused
            and now - self._lastSent >= self._heartbeat
            and (self._tail == b"" or self._tail.endswith(_EVENT_ENDS))
        ):
            self._heartbeatBytes += len(HEARTBEAT)
            self._write(HEARTBEAT)
            self._tail = HEARTBEAT
            # The next heartbeat counts from this one, not from the tick
            # that would notice it.
            self._lastSent = now
            self._seenSent = self._request.sentLength
        assert self._every is not None
        self._tick = self._clock.callLater(self._every, self._check)
