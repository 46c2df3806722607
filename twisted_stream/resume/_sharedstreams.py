# -*- test-case-name: tests.test_sharedstreams -*-
"""
Resumable streams shared by a fleet, in Redis: a resume may land on any
instance behind a load balancer, with no sticky sessions.

The instance that reads a stream's upstream keeps it in its memory as on
one instance (L{twisted_stream.resume._resumable}: its own readers follow
it there), and copies it to Redis (a L{Mirror}): the stream's head (status,
headers, target, credential) in a hash, each piece of its body as an entry
of a Redis stream (C{XADD}, its body offset beside it, and where the events
that ended in it end), its end as a last entry. Pieces go together: all
that every stream added in the last 20 milliseconds (L{FLUSH_EVERY}) as
one entry per stream, in one command (a short Lua script, L{_TURN},
loaded once per connection and called by its SHA1, with
all of it in one argument): one round trip per batch, never one per chunk,
and never waited for. Only the
copy waits: the client and this instance's readers have each piece at
once. (A script that writes many streams' keys is why Redis Cluster is not
supported: one Redis, or a primary with replicas.)

An instance asked to resume a stream it does not hold reads it there (a
L{twisted_stream.resume._remoteresume.RemoteResume}): the head, what is kept (C{XRANGE}), then each later entry
the moment it lands (the instance's blocking reads, shared by its readers,
L{twisted_stream.resume._livereads.LiveReads}), at its client's pace. While it follows, it says so in a key with the stream's
window as its expiry, which the writing instance reads before it gives up
an upstream that no reader of its own follows.

Keys (L{twisted_stream.resume._redislink.keysOf}): C{chunkproxy:stream:{ID}} (the body),
C{chunkproxy:stream:{ID}:head}, C{chunkproxy:stream:{ID}:readers}. While a
stream is live its keys expire C{max(window, 15 s)} after the last refresh
(every 5 s), so that the copy of an instance that died goes away; once it
has ended, C{window} seconds after its end.

Redis unreachable or slow (a reply later than the link's reply timeout, or
more than C{maxBacklog} bytes sent and not yet answered): the streams being
copied stop being resumable (their log events say C{resumable_lost: store
unreachable}) and go on as on any route; new streams are not resumable
until Redis is back; said once a minute at most. No request waits for Redis
or fails because of it, but a resume that can only be answered from it
(C{503}).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Optional

from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IDelayedCall
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.server import NOT_DONE_YET, Request

from twisted_stream.resume._eventids import streamOfEventId
from twisted_stream.resume._livereads import LiveReads
from twisted_stream.resume._redislink import LIVE_TTL, RedisLink, keysOf, milliseconds
from twisted_stream.resume._remoteresume import RemoteResume
from twisted_stream.resume._resumable import (
    TRUNCATED,
    ResumableStream,
)

if TYPE_CHECKING:
    pass

__all__ = ["Mirror", "SharedStreams"]

_log = Logger()

REFRESH = 5.0
"""Seconds between refreshes of live streams' expiries."""

MAX_ENTRIES = 100_000
"""The most entries a stream keeps in Redis (C{MAXLEN ~}): a bound beside
the bytes' bound, for a body of many tiny pieces."""
_MAX_ENTRIES = b"%d" % (MAX_ENTRIES,)

FLUSH_EVERY = 0.02
"""Seconds the pieces wait, at most, to go to Redis together: every
stream's of that time in one command. Only the copy waits: the client, and
every reader on this instance, have each piece at once; a reader on
another instance has it this much later at most. Measured: at 5 ms, the
timer's and the reply's wake-ups of an otherwise idle gateway (100
streams of 10 chunks a second) cost more than the writes themselves."""

UNREACHABLE = "store unreachable"


_TURN = b"""
local batch, maxlen = ARGV[1], ARGV[2]
local at, streams = 1, 0
local function field()
  local colon = string.find(batch, ':', at, true)
  local size = tonumber(string.sub(batch, at, colon - 1))
  at = colon + size + 1
  return string.sub(batch, colon + 1, colon + size)
end
while at <= #batch do
  local body = field()
  local what = field()
  local head = body .. ':head'
  if string.find(what, 'h', 1, true) then
    local status, headers, target, owner, window = field(), field(), field(), field(), field()
    redis.call('HSET', head, 'status', status, 'headers', headers, 'target', target, 'owner', owner, 'window', window)
  end
  if string.find(what, 'p', 1, true) then
    local offset, data = field(), field()
    redis.call('XADD', body, 'MAXLEN', '~', maxlen, '*', 'o', offset, 'd', data)
  elseif string.find(what, 'e', 1, true) then
    local offset, data, events = field(), field(), field()
    redis.call('XADD', body, 'MAXLEN', '~', maxlen, '*', 'o', offset, 'd', data, 'e', events)
  end
  if string.find(what, 'x', 1, true) then
    redis.call('XADD', body, '*', 'end', field())
  end
  if string.find(what, 't', 1, true) then
    local expiry = field()
    redis.call('PEXPIRE', body, expiry)
    redis.call('PEXPIRE', head, expiry)
  end
  streams = streams + 1
end
return streams
"""
"""The writes of every stream that has some, in one command. Its first
argument is the batch: for each stream, its body's key, what it has
(letters: C{h} its head, C{p} a piece or C{e} a piece with the ends of
events, C{x} its end, C{t} an expiry), then the fields of each (see
L{Mirror.turn}), each field a netstring (C{LENGTH:BYTES}); its second, the
most entries a body keeps. One command, and one argument, for all: a
command's round through the client library costs ~37 µs, and each
argument ~0.7 µs more (measured), against a few for the bytes.
(Its keys are in the batch, not declared: one Redis, not a cluster.)"""


def batchOf(fields: list[bytes]) -> bytes:
    """
    @return: C{fields} as L{_TURN}'s batch reads them: netstrings.
    """
    return b"".join([b"%d:%s" % (len(field), field) for field in fields])


class SharedStreams:
    """
    The Redis side of a L{twisted_stream.resume._resumable.ResumeStore}:
    copies of the streams this instance reads, and resumes of those another
    instance reads.
    """

    def __init__(
        self, link: RedisLink, clock: Any, maxBacklog: int = 16 * 1024 * 1024, flushEvery: float = FLUSH_EVERY
    ) -> None:
        """
        @param link: The connection to Redis.
        @param clock: The reactor's clock.
        @param maxBacklog: The most bytes sent to Redis and not yet
            answered before Redis is taken as too slow.
        @param flushEvery: Seconds pieces wait, at most, to go together.
        """
        self.flushEvery = flushEvery
        self.link = link
        self.reads = LiveReads(link, clock)
        # Sent once per connection; each turn then sends its SHA1 only.
        link.load(_TURN)
        self.clock = clock
        self.maxBacklog = maxBacklog
        self.backlog = 0
        self._due: list[Mirror] = []
        self._flush: Optional[IDelayedCall] = None
        self._live: set[Mirror] = set()
        self._refresh = LoopingCall(self._refreshLive)
        self._refresh.clock = clock
        self._saidAt: Optional[float] = None

    def start(self) -> None:
        self.link.start()
        self._refresh.start(REFRESH, now=False)

    def stop(self) -> Deferred[None]:
        if self._refresh.running:
            self._refresh.stop()
        self.reads.close()
        return self.link.stop()

    def trouble(self, what: str, then: str = "resumable routes stream without resumability until it is back") -> None:
        """
        Say that Redis failed, once a minute at most.

        @param what: What failed.
        @param then: What the gateway does meanwhile.
        """
        now = self.clock.seconds()
        if self._saidAt is None or now - self._saidAt >= 60:
            self._saidAt = now
            # (What it does is part of the text, not a field of its own.)
            saying = "resume store {address}: {what}; " + then.replace("{", "{{").replace("}", "}}")
            _log.warn(saying, address=str(self.link.address), what=what)

    # Writing: the streams this instance reads.

    def mirror(self, stream: ResumableStream) -> Optional[Mirror]:
        """
        @return: A copy of C{stream} in Redis, or L{None} while Redis cannot
            take one (not connected, or behind).
        """
        if not self.link.up:
            self.trouble("not connected")
            return None
        if self.backlog > self.maxBacklog:
            self.trouble(f"more than {self.maxBacklog} bytes sent and not yet answered")
            return None
        mirror = Mirror(self, stream)
        self._live.add(mirror)
        self.due(mirror)
        return mirror

    def due(self, mirror: Mirror) -> None:
        """
        C{mirror} has something to send: it goes with the next command.
        """
        self._due.append(mirror)
        if self._flush is None:
            self._flush = self.clock.callLater(self.flushEvery, self._send)

    def _send(self) -> None:
        # What every stream added since the last command, in one: one round
        # trip and one reply, however many streams and chunks.
        self._flush = None
        due, self._due = self._due, []
        if self.backlog > self.maxBacklog:
            self.trouble(f"more than {self.maxBacklog} bytes sent and not yet answered")
            for mirror in due:
                mirror.failed()
            return
        fields: list[bytes] = []
        sent: list[Mirror] = []
        for mirror in due:
            added = mirror.turn()
            if added is not None:
                fields += added
                sent.append(mirror)
        if not sent:
            return
        batch = batchOf(fields)
        size = len(batch)
        self.backlog += size

        def answered(result: object) -> None:
            self.backlog -= size

        def failed(failure: Failure) -> None:
            self.backlog -= size
            self.trouble(failure.getErrorMessage() or failure.type.__name__)
            for mirror in sent:
                mirror.failed()

        command = self.link.evaluate(_TURN, b"0", batch, _MAX_ENTRIES)
        command.addCallbacks(answered, failed)

    def send(self, mirror: Mirror, *command: bytes | str | int) -> None:
        """
        Send one command for C{mirror} on its own (what is rare: a stream
        that is no longer resumable); a failure ends the mirror.
        """

        def failed(failure: Failure) -> None:
            self.trouble(failure.getErrorMessage() or failure.type.__name__)
            mirror.failed()

        self.link.command(*command).addErrback(failed)

    def ended(self, mirror: Mirror) -> None:
        self._live.discard(mirror)

    def _refreshLive(self) -> None:
        for mirror in self._live:
            mirror.refresh()

    # Reading: a stream another instance reads.

    def resume(self, request: Request, id: str, query: bytes, truncate: Callable[[Request], None]) -> int:
        """
        Answer a resume of a stream this instance does not hold, from Redis.

        @return: L{NOT_DONE_YET}.
        """
        RemoteResume(self.link, self.reads, self.clock, self.trouble, request, id, query, truncate).start()
        return NOT_DONE_YET

    def reconnect(
        self, request: Request, otherwise: Callable[[], None], truncate: Callable[[Request], None]
    ) -> int:
        """
        Answer a request whose C{Last-Event-ID} names a stream this
        instance does not hold (a browser's C{EventSource} reconnecting):
        from Redis, if it has that stream and it started with this very
        target; else C{otherwise()} answers it (its route forwards it).

        @return: L{NOT_DONE_YET}.
        """
        lastEventId = request.getHeader(b"last-event-id") or b""
        id = streamOfEventId(lastEventId)
        assert id is not None, "admission asks for a stream's event id"
        RemoteResume(self.link, self.reads, self.clock, self.trouble, request, id, b"", truncate, otherwise).start()
        return NOT_DONE_YET


class Mirror:
    """
    The copy in Redis of one stream this instance reads.

    @ivar broken: Whether it has stopped (Redis failed, or the stream was
        lost): nothing more is sent.
    """

    def __init__(self, shared: SharedStreams, stream: ResumableStream) -> None:
        self._shared = shared
        self.stream = stream
        self.body, self.head, self.readers = keysOf(stream.id)
        self._pieces: list[bytes] = []
        self._offset = 0
        self._eventsSent = 0
        self._headSent = False
        self._ended: Optional[str] = None
        self._endSent = False
        self._refresh = False
        self._scheduled = True  # (the head, with the next command)
        self.broken = False

    def append(self, data: bytes) -> None:
        self._pieces.append(data)
        self._schedule()

    def finish(self, how: str) -> None:
        self._ended = how
        self._schedule()

    def _schedule(self) -> None:
        if not self._scheduled and not self.broken:
            self._scheduled = True
            self._shared.due(self)

    def turn(self) -> Optional[list[bytes]]:
        """
        What it added since its last turn, as L{_TURN}'s fields for one
        stream: its body's key, what it has, then its head (status, headers, target, owner,
        window: the first time only), its new piece (offset, bytes, and
        the ends of the events that ended in it, if any), its end, the
        expiry its keys get now; or L{None} if nothing.
        """
        self._scheduled = False
        if self.broken:
            return None
        stream = self.stream
        what = b""
        fields: list[bytes] = [self.body, what]
        expiry: float | None = None
        if not self._headSent:
            self._headSent = True
            headers = b"".join(name + b": " + value + b"\r\n" for name, value in stream.headers)
            what += b"h"
            fields += [
                b"%d" % (stream.status,),
                headers,
                stream.target,
                stream.owner or b"",
                repr(stream.window).encode(),
            ]
            expiry = max(stream.window, LIVE_TTL)
        if self._pieces:
            data = b"".join(self._pieces) if len(self._pieces) > 1 else self._pieces[0]
            self._pieces = []
            events = self._events(data)
            what += b"e" if events else b"p"
            fields += [b"%d" % (self._offset,), data, events] if events else [b"%d" % (self._offset,), data]
            self._offset += len(data)
        if self._ended is not None and not self._endSent:
            self._endSent = True
            what += b"x"
            fields.append(self._ended.encode())
            expiry = stream.window
            self._shared.ended(self)
        if self._refresh and expiry is None:
            expiry = max(stream.window, LIVE_TTL)
        self._refresh = False
        if expiry is not None:
            what += b"t"
            fields.append(b"%d" % (milliseconds(expiry),))
        if not what:
            return None
        fields[1] = what
        return fields

    def _events(self, data: bytes) -> bytes:
        # Where the events that ended in these pieces end, as "N:OFFSET,...".
        ids = self.stream.events
        if ids is None:
            return b""
        ends = ids.ends
        upTo = len(ends)
        if upTo and ends[-1] == self._offset + len(data) and data.endswith(b"\r") and self._ended is None:
            # A CR that may be the first half of a CR LF: that event's end
            # moves past the LF when the next piece starts with one.
            upTo -= 1
        new = b",".join(b"%d:%d" % (number + 1, ends[number]) for number in range(self._eventsSent, upTo))
        self._eventsSent = max(self._eventsSent, upTo)
        return new

    def refresh(self) -> None:
        """
        The stream is still live: its keys live on (with the next command).
        """
        self._refresh = True
        self._schedule()

    def readersElsewhere(self) -> Deferred[bool]:
        """
        @return: Whether a reader on another instance follows the stream.
        """
        if self.broken:
            return succeed(False)
        asked: Deferred[Any] = self._shared.link.command("EXISTS", self.readers)
        return asked.addCallbacks(lambda count: bool(int(count)), lambda failure: False)

    def failed(self) -> None:
        """
        A command failed: nothing more goes to Redis, and the stream, if it
        has not ended, stops being resumable.
        """
        if self.broken:
            return
        self.broken = True
        self._shared.ended(self)
        if self.stream.ended is None:
            self.stream.lose(UNREACHABLE)

    def lose(self) -> None:
        """
        The stream is no longer resumable (it outgrew its bounds): its
        readers elsewhere get a truncated end, and new resumes a C{404}.
        """
        if self.broken:
            return
        self._pieces = []
        shared = self._shared
        shared.send(self, "XADD", self.body, "*", "end", TRUNCATED)
        shared.send(self, "DEL", self.head)
        shared.send(self, "PEXPIRE", self.body, milliseconds(LIVE_TTL))
        self.broken = True
        shared.ended(self)
