# -*- test-case-name: tests.test_sharedstreams -*-
"""
Resumable streams shared by a fleet, in Redis: a resume may land on any
instance behind a load balancer, with no sticky sessions.

The instance that reads a stream's upstream keeps it in its memory as on
one instance (L{twisted_stream.exchange._resumable}: its own readers follow
it there), and copies it to Redis (a L{Mirror}): the stream's head (status,
headers, target, credential) in a hash, each piece of its body as an entry
of a Redis stream (C{XADD}, its body offset beside it, and where the events
that ended in it end), its end as a last entry. Pieces go together: all
that every stream added in the last 20 milliseconds (L{FLUSH_EVERY}) as
one entry per stream, in one command (a short Lua script, L{_TURN}, with
all of it in one argument): one
round trip per batch, never one per chunk, and never waited for. Only the
copy waits: the client and this instance's readers have each piece at
once. (A script that writes many streams' keys is why Redis Cluster is not
supported: one Redis, or a primary with replicas.)

An instance asked to resume a stream it does not hold reads it there (a
L{RemoteResume}): the head, what is kept (C{XRANGE}), then each later entry
the moment it lands (a blocking C{XREAD} on a connection of its own), at its
client's pace. While it follows, it says so in a key with the stream's
window as its expiry, which the writing instance reads before it gives up
an upstream that no reader of its own follows.

Keys: C{chunkproxy:stream:{ID}} (the body),
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

import hmac
from typing import TYPE_CHECKING, Any, Callable, Optional

from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IDelayedCall, IPushProducer
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.server import NOT_DONE_YET, Request
from zope.interface import implementer

from twisted_stream.exchange._bodywriter import bodyWriter
from twisted_stream.exchange._eventids import parseEventId, streamOfEventId
from twisted_stream.exchange._redislink import RedisLink
from twisted_stream.exchange._resumable import (
    COMPLETE,
    OTHER_CREDENTIAL,
    TRUNCATED,
    UNKNOWN_STREAM,
    ResumableStream,
    credentialOf,
    endsWith,
    outside,
    requestedOffset,
    startAnswer,
)
from twisted_stream.http._refusal import Refusal

if TYPE_CHECKING:
    import txredisapi

__all__ = ["Mirror", "RemoteResume", "SharedStreams"]

_log = Logger()

LIVE_TTL = 15.0
"""The least a live stream's keys live past their last refresh, in seconds."""

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

FOLLOW_BLOCK_MS = 1000
"""How long one blocking read waits for an entry before the reader looks
whether the stream is still there."""

REACH_WAIT = 2.0
"""Seconds a resume from an offset a little beyond what Redis has waits for
it to arrive (the writing instance sends what its client had in the same
turn, but another instance's read may overtake it)."""

UNKNOWN_WAIT = 0.05
"""Seconds a resume of an id Redis does not know waits to ask again: the
head of a stream that has just started elsewhere waits there up to
L{FLUSH_EVERY}."""

CONNECT_WAIT = 2.0
"""Seconds a resume waits for the connection to Redis, when it is being
made (the gateway just started, or Redis came back)."""

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


def keysOf(id: str) -> tuple[bytes, bytes, bytes]:
    """
    @return: The keys of a stream in Redis: its body, its head, its readers.
    """
    body = b"chunkproxy:stream:{" + id.encode("ascii") + b"}"
    return body, body + b":head", body + b":readers"


def _ms(seconds: float) -> int:
    return max(1, int(seconds * 1000))


class SharedStreams:
    """
    The Redis side of a L{twisted_stream.exchange._resumable.ResumeStore}:
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
        return self.link.stop()

    def trouble(self, what: str) -> None:
        """
        Say that Redis failed, once a minute at most.
        """
        now = self.clock.seconds()
        if self._saidAt is None or now - self._saidAt >= 60:
            self._saidAt = now
            _log.warn(
                "resume store {address}: {what}; resumable routes stream without resumability until it is back",
                address=str(self.link.address),
                what=what,
            )

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

        command = self.link.command("EVAL", _TURN, b"0", batch, _MAX_ENTRIES)
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
        RemoteResume(self, request, id, query, truncate).start()
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
        RemoteResume(self, request, id, b"", truncate, otherwise).start()
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
            fields.append(b"%d" % (_ms(expiry),))
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
        shared.send(self, "PEXPIRE", self.body, _ms(LIVE_TTL))
        self.broken = True
        shared.ended(self)


def _fields(values: list[bytes]) -> dict[bytes, bytes]:
    return dict(zip(values[::2], values[1::2], strict=True))


@implementer(IPushProducer)
class RemoteResume:
    """
    One resume of a stream another instance reads: its head and what is
    kept, read from Redis, then each later entry as it lands, at the
    client's pace.

    Phases: C{head} (the hash asked for; asked again once, a moment later,
    where Redis does not have it yet), C{kept} (C{XRANGE}; read again every
    L{UNKNOWN_WAIT} for up to L{REACH_WAIT} while the offset or event asked
    for is not there yet and the stream has not ended), C{following}
    (blocking reads on a connection of its own), C{done}.
    """

    def __init__(
        self,
        shared: SharedStreams,
        request: Request,
        id: str,
        query: bytes,
        truncate: Callable[[Request], None],
        otherwise: Optional[Callable[[], None]] = None,
    ) -> None:
        """
        @param otherwise: For a browser's C{EventSource} reconnecting to
            the target it started with: what answers the request where Redis
            has no such stream with that target (or cannot be asked).
        """
        self._otherwise = otherwise
        self._lookedAgain = False
        self._shared = shared
        self._request = request
        self._id = id
        self._query = query
        self._truncate = truncate
        self._body, self._head, self._readers = keysOf(id)
        self.phase = "head"
        self._status = 200
        self._headers: list[tuple[bytes, bytes]] = []
        self._window = LIVE_TTL
        self._offset = 0
        self._end = 0
        self._last = b"0-0"
        self._connection: Optional[txredisapi.RedisProtocol] = None
        self._paused = False
        self._reading = False
        self._saidAt = -1e18
        self._kepts = 0
        self._write: Callable[[bytes], None] = request.write
        request.notifyFinish().addBoth(self._gone)

    def start(self) -> None:
        # (A resume can only be answered from Redis: it waits a little for
        # a connection being made, as no stream's request ever does.)
        link = self._shared.link
        waited = link.whenUp(CONNECT_WAIT)
        waited.addCallback(lambda _: link.command("HGETALL", self._head))
        waited.addCallbacks(self._gotHead, self._unreachable)

    def _lookAgain(self) -> None:
        self._lookedAgain = True
        self._shared.link.command("HGETALL", self._head).addCallbacks(self._gotHead, self._unreachable)

    def _refuse(self, refusal: Refusal) -> None:
        if self.phase == "done":
            return
        self.phase = "done"
        body = refusal.render(self._request)
        self._request.setHeader(b"content-length", b"%d" % (len(body),))
        self._request.write(body)
        self._request.finish()

    def _unreachable(self, failure: Failure) -> None:
        self._shared.trouble(failure.getErrorMessage() or failure.type.__name__)
        if not self._elsewise():
            self._refuse(Refusal(503, "the resume store is unreachable"))

    def _elsewise(self) -> bool:
        # Not a stream to resume after all: the request is answered as any.
        otherwise = self._otherwise
        if otherwise is None or self.phase == "done":
            return False
        self.phase = "done"
        otherwise()
        return True

    def _gotHead(self, values: list[bytes]) -> None:
        if self.phase == "done":
            return
        head = _fields(values)
        if b"status" not in head and not self._lookedAgain:
            # Perhaps a stream just started elsewhere, whose head is on its
            # way (it waits up to FLUSH_EVERY there): asked once more.
            self._shared.clock.callLater(UNKNOWN_WAIT, self._lookAgain)
            return
        if b"status" not in head or (
            self._otherwise is not None and head.get(b"target") != self._request.uri
        ):
            if not self._elsewise():
                self._refuse(UNKNOWN_STREAM)
            return
        owner = head.get(b"owner") or None
        if owner is not None:
            given = credentialOf(self._request.getHeader(b"authorization"))
            if given is None or not hmac.compare_digest(given, owner):
                self._refuse(OTHER_CREDENTIAL)
                return
        self._status = int(head[b"status"])
        self._headers = [
            (name, value)
            for name, _, value in (line.partition(b": ") for line in head.get(b"headers", b"").split(b"\r\n"))
            if name
        ]
        self._window = float(head.get(b"window", b"15"))
        self.phase = "kept"
        self._readKept()

    def _readKept(self) -> None:
        if self.phase != "done":
            self._kepts += 1
            self._shared.link.command("XRANGE", self._body, "-", "+").addCallbacks(
                self._gotKept, self._unreachable
            )

    def _gotKept(self, entries: list[Any]) -> None:
        if self.phase == "done":
            return
        start: Optional[int] = None
        events: dict[int, int] = {}
        for _, values in entries:
            fields = _fields(values)
            if b"o" in fields:
                at = int(fields[b"o"])
                start = at if start is None else start
                self._end = at + len(fields[b"d"])
            for pair in fields.get(b"e", b"").split(b","):
                if pair:
                    number, _, end = pair.partition(b":")
                    events[int(number)] = int(end)
        ended = any(b"end" in _fields(values) for _, values in entries)

        def afterEvent(lastEventId: bytes) -> Optional[int]:
            number = parseEventId(lastEventId, self._id)
            if number == 0:
                return 0
            return events.get(number) if number is not None else None

        offset = requestedOffset(self._request, self._query, afterEvent)
        refusal = offset if isinstance(offset, Refusal) else outside(offset, start or 0, self._end)
        if refusal is not None:
            if refusal.code == 416 and not ended and self._kepts * UNKNOWN_WAIT < REACH_WAIT:
                if isinstance(offset, Refusal) or offset > self._end:
                    # Not in Redis yet, perhaps: it is on its way from the
                    # instance that reads the stream (it waits there up
                    # to FLUSH_EVERY).
                    self._shared.clock.callLater(UNKNOWN_WAIT, self._readKept)
                    return
            self._refuse(refusal)
            return
        assert isinstance(offset, int)
        self._offset = offset
        self._answer()
        self._take(entries)
        if self.phase != "done":
            self._shared.link.command("SET", self._readers, b"1", "PX", _ms(self._window))
            self._shared.link.blockingConnection().addCallbacks(self._connected, self._broken)

    def _answer(self) -> None:
        self.phase = "following"
        request = self._request
        startAnswer(request, self._id, self._status, self._headers)
        self._write = bodyWriter(request)
        request.registerProducer(self, True)

    def _take(self, entries: list[Any]) -> None:
        # Write what the entries hold from the reader's offset on.
        for entryId, values in entries:
            self._last = entryId
            if self.phase == "done":
                return
            fields = _fields(values)
            how = fields.get(b"end")
            if how is not None:
                self._finish(COMPLETE if how == COMPLETE.encode() else TRUNCATED)
                return
            data = fields.get(b"d")
            if data is None:
                continue
            offset = int(fields[b"o"])
            if offset > self._offset:
                # Entries this reader had not had are gone (trimmed past
                # MAX_ENTRIES while it was paused): it cannot be served what
                # is no longer kept.
                self._finish(TRUNCATED)
                return
            self._end = offset + len(data)
            if self._end > self._offset:
                piece = data[self._offset - offset :] if offset < self._offset else data
                self._offset = self._end
                self._write(piece)

    def _connected(self, connection: txredisapi.RedisProtocol) -> None:
        if self.phase == "done":
            connection.transport.loseConnection()
            return
        self._connection = connection
        self._follow()

    def _follow(self) -> None:
        connection = self._connection
        if connection is None or self._paused or self._reading or self.phase == "done":
            return
        self._reading = True
        now = self._shared.clock.seconds()
        if now - self._saidAt >= self._window / 3:
            # Still following: the writing instance keeps the upstream.
            self._saidAt = now
            self._shared.link.command("SET", self._readers, b"1", "PX", _ms(self._window)).addErrback(
                lambda f: None
            )
        connection.execute_command(
            "XREAD",
            "COUNT",
            100,
            "BLOCK",
            FOLLOW_BLOCK_MS,
            "STREAMS",
            self._body,
            self._last,
            apply_timeout=False,
        ).addCallbacks(self._gotNew, self._broken)

    def _gotNew(self, reply: Optional[list[Any]]) -> None:
        self._reading = False
        if self.phase == "done":
            return
        if reply is None:
            # Nothing for a while: is the stream still there?
            self._shared.link.command("EXISTS", self._body).addCallbacks(self._stillThere, self._broken)
            return
        for _, entries in reply:
            self._take(entries)
        self._follow()

    def _stillThere(self, count: object) -> None:
        if int(str(count)) == 0:
            # Its keys expired: the instance that read it is gone.
            self._finish(TRUNCATED)
        else:
            self._follow()

    def _broken(self, failure: Failure) -> None:
        self._reading = False
        if self.phase == "done":
            return
        self._shared.trouble(failure.getErrorMessage() or failure.type.__name__)
        if self.phase == "following":
            self._finish(TRUNCATED)
        else:
            self._refuse(Refusal(503, "the resume store is unreachable"))

    def _finish(self, how: str) -> None:
        if self.phase == "done":
            return
        if self.phase == "following":
            self._request.unregisterProducer()
        self.phase = "done"
        self._close()
        endsWith(self._request, self._truncate)(how)

    def _close(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None and connection.transport is not None:
            connection.transport.loseConnection()

    def _gone(self, reason: object) -> None:
        if self.phase != "done":
            self.phase = "done"
            self._close()

    # IPushProducer: the client's connection paces the reads.

    def pauseProducing(self) -> None:
        self._paused = True

    def resumeProducing(self) -> None:
        self._paused = False
        self._follow()

    def stopProducing(self) -> None:
        self._gone(None)
