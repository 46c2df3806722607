# -*- test-case-name: tests.test_resumable -*-
"""
Resumable streams, kept in the process's memory: what a resumable route
forwarded, so that a client whose connection dropped picks the stream up
where it was (C{GET /_streams/ID?from=N}), and a second reader follows it
live.

A L{ResumableStream} is the forwarded body as it grows: the upstream's
pieces are appended as they arrive, and every reader (the client that
started it, and any that resume it) is a L{StreamReader} that writes to its
own connection from its own offset, at its own pace: a reader whose
connection is full is paused (it is its request's producer) and takes up
again where it stopped, so a slow reader slows no other reader and not the
upstream. Memory is bounded per stream (C{maxBytes}) and for all streams
together (C{maxMemory}): a stream that would outgrow either stops being
resumable (L{ResumableStream.overflowed}); the exchange then falls back to
today's backpressure.

Lifetimes (C{window} seconds each): a stream with no reader attached keeps
reading its upstream for C{window} seconds, then gives it up (the exchange
cancels it, as for a client that left a route that is not resumable); a
stream that has ended stays readable for C{window} seconds, then is
forgotten.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from bisect import bisect_right
from typing import Callable, Optional, Protocol
from urllib.parse import parse_qs

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IDelayedCall, IPushProducer, IReactorTime
from twisted.web.server import NOT_DONE_YET, Request
from zope.interface import implementer

from twisted_stream.http._bodywriter import bodyWriter
from twisted_stream.http._refusal import Refusal
from twisted_stream.resume._eventids import RESUME_PREFIX, EventIds, isStreamId, parseEventId

__all__ = [
    "DEFAULT_MAX_BYTES",
    "DEFAULT_MAX_MEMORY",
    "COMPLETE",
    "TRUNCATED",
    "ResumableStream",
    "ResumeStore",
    "ResumableWriter",
    "SharedStore",
    "StreamCopy",
    "StreamReader",
    "afterEvent",
    "credentialOf",
    "endsWith",
    "resumeAnswer",
]

DEFAULT_MAX_BYTES = 8 * 1024 * 1024
"""The most bytes one resumable stream keeps, by default."""

DEFAULT_MAX_MEMORY = 256 * 1024 * 1024
"""The most bytes all resumable streams keep together, by default."""

COMPLETE, TRUNCATED = "complete", "truncated"
"""How a stream ended: as the upstream ended it, or broken off."""


class StreamCopy(Protocol):
    """
    A stream's copy in a store a fleet shares (L{SharedStore}), told of
    everything the stream is told.
    """

    def append(self, data: bytes) -> None:
        """A piece of the body, appended."""

    def finish(self, how: str) -> None:
        """The body has ended, C{how} (L{COMPLETE}, L{TRUNCATED})."""

    def lose(self) -> None:
        """The stream is no longer resumable: its copy goes too."""

    def readersElsewhere(self) -> Deferred[bool]:
        """Whether a reader on another instance follows the stream."""


class SharedStore(Protocol):
    """
    Where a fleet keeps its resumable streams, beside each instance's
    memory (L{twisted_stream.resume._sharedstreams.SharedStreams}, in
    Redis): declared here, so that this module needs nothing of Redis.
    """

    def mirror(self, stream: ResumableStream) -> Optional[StreamCopy]:
        """A copy of C{stream}, or L{None} while the store cannot take one."""

    def resume(self, request: Request, id: str, query: bytes, truncate: Callable[[Request], None]) -> int:
        """Answer a resume of a stream this instance does not hold."""

    def reconnect(
        self, request: Request, otherwise: Callable[[], None], truncate: Callable[[Request], None]
    ) -> int:
        """Answer an C{EventSource} reconnecting to a stream held elsewhere,
        or, if there is none, C{otherwise()}."""


def credentialOf(authorization: Optional[bytes]) -> Optional[bytes]:
    """
    @param authorization: The C{Authorization} header a request came with.
    @return: What is kept of it to know the same credential again (a
        SHA-256 digest: never the credential itself), or L{None}.
    """
    return hashlib.sha256(authorization).digest() if authorization else None


class ResumableStream:
    """
    One stream's body as forwarded, its readers and its end.

    @ivar id: Its id (128 random bits, URL-safe): the capability to resume
        it, where no credential is asked for.
    @ivar status: The status it was answered with.
    @ivar headers: The headers it was answered with, as forwarded.
    @ivar target: The request target that started it (a browser's
        C{EventSource} reconnects to it, with C{Last-Event-ID}).
    @ivar start: The body offset of the first byte still kept.
    @ivar end: The body offset after the last byte appended.
    @ivar ended: How it ended (L{COMPLETE}, L{TRUNCATED}), or L{None}.
    @ivar overflowed: Whether it outgrew its bounds (it is no longer
        resumable, and its readers but the first have been cut off).
    """

    def __init__(
        self,
        store: ResumeStore,
        window: float,
        owner: Optional[bytes],
        status: int,
        headers: list[tuple[bytes, bytes]],
        target: bytes = b"",
    ) -> None:
        self.id = secrets.token_urlsafe(16)
        self.window = window
        self.target = target
        self.owner = owner
        self.status = status
        self.headers = headers
        self._store = store
        self._pieces: list[bytes] = []
        self._offsets: list[int] = []
        self.start = 0
        self.end = 0
        self.held = 0
        """Bytes it keeps, as its store counts them."""
        self.ended: Optional[str] = None
        self.overflowed = False
        self.readers: list[StreamReader] = []
        self.events: Optional[EventIds] = None
        """Where its events end, for an event stream (see
        L{twisted_stream.resume._eventids})."""
        self._alone: Optional[IDelayedCall] = None
        self.abandoned: Callable[[], None] = lambda: None
        """Called when no reader has come back within the window (the
        exchange cancels its upstream)."""
        self.lost: Optional[str] = None
        """Why it is no longer resumable, once it is not."""
        self.whenLost: Callable[[str], None] = lambda why: None
        """Called once when it stops being resumable, with why."""
        self.mirror: Optional[StreamCopy] = None
        """Its copy in a store shared by a fleet, if it has one."""

    @property
    def short(self) -> str:
        """
        @return: The first characters of its id, as logs show it.
        """
        return self.id[:6]

    def may(self, authorization: Optional[bytes]) -> bool:
        """
        @return: Whether a request with this C{Authorization} may read it:
            the credential that started it (compared in constant time), or
            any, where none did.
        """
        if self.owner is None:
            return True
        given = credentialOf(authorization)
        return given is not None and hmac.compare_digest(given, self.owner)

    def bytesFrom(self, offset: int) -> bytes:
        """
        @param offset: A body offset from L{start} to L{end}.
        @return: The bytes kept from there to L{end}.
        """
        if offset == self.end:
            return b""
        # The piece that holds the offset, then all after it: a reader that
        # keeps up asks for the last piece only.
        at = bisect_right(self._offsets, offset) - 1
        first = self._pieces[at][offset - self._offsets[at] :]
        return first + b"".join(self._pieces[at + 1 :]) if at + 1 < len(self._pieces) else first

    def append(self, data: bytes) -> bool:
        """
        Keep a piece of the body, and hand it to every reader.

        @return: Whether it was kept: C{False} once the stream has outgrown
            its bounds (it has then L{overflowed}).
        """
        if self.overflowed:
            return False
        if not self._store.charge(self, len(data)):
            self.lose("too large")
            return False
        start = self.end
        self._pieces.append(data)
        self._offsets.append(start)
        self.end = end = start + len(data)
        if self.mirror is not None:
            self.mirror.append(data)
        for reader in self.readers if len(self.readers) == 1 else list(self.readers):
            if reader.offset == start and reader.ready:
                # Up to date and not paused (most readers, most pieces):
                # this piece is all it has not had.
                reader.offset = end
                reader.write(data)
            else:
                reader.wake()
        return True

    def finish(self, how: str) -> None:
        """
        The upstream's body has ended, C{how}: every reader gets the rest,
        then the same end; the stream stays readable for the window.
        """
        if self.ended is not None:
            return
        self.ended = how
        self._stopAlone()
        if self.mirror is not None:
            self.mirror.finish(how)
        for reader in list(self.readers):
            reader.wake()
        self._store.ended(self)

    def lose(self, why: str) -> None:
        """
        It is no longer resumable (it outgrew its bounds, or its shared
        store failed): forgotten, its readers but the client that started
        it cut off, and L{whenLost} told.

        @param why: Why, as its log event says it.
        """
        if self.overflowed:
            return
        self.overflowed = True
        self.lost = why
        self._stopAlone()
        self._store.forget(self)
        mirror, self.mirror = self.mirror, None
        if mirror is not None:
            mirror.lose()
        # The first reader is the client that started it, if it is still
        # there: the exchange goes on with it directly. Any other cannot
        # be served what is no longer kept: a truncated end.
        for reader in self.readers[1:] if self.readers and self.readers[0].first else self.readers:
            reader.cutOff()
        self.whenLost(why)
        # What it kept is no longer anyone's (the client that started it has
        # had it by now): its memory goes at once, not with the exchange.
        self._pieces, self._offsets = [], []
        self.start = self.end

    # Readers.

    def attach(self, reader: StreamReader) -> None:
        self.readers.append(reader)
        self._stopAlone()

    def detach(self, reader: StreamReader) -> None:
        if reader in self.readers:
            self.readers.remove(reader)
        if not self.readers and self.ended is None and not self.overflowed:
            self._alone = self._store.clock.callLater(self.window, self._giveUp)

    def _stopAlone(self) -> None:
        if self._alone is not None and self._alone.active():
            self._alone.cancel()
        self._alone = None

    def _giveUp(self) -> None:
        self._alone = None
        if self.mirror is None:
            self.abandoned()
            return

        # Readers on other instances follow it in the shared store.
        def answered(elsewhere: bool) -> None:
            if self.readers or self.ended is not None or self.overflowed or self._alone is not None:
                return
            if elsewhere:
                self._alone = self._store.clock.callLater(self.window, self._giveUp)
            else:
                self.abandoned()

        self.mirror.readersElsewhere().addCallback(answered)


class ResumeStore:
    """
    The resumable streams of one gateway, in its memory.

    @ivar kept: Bytes kept by all streams together.
    """

    def __init__(
        self,
        clock: IReactorTime,
        maxBytes: int = DEFAULT_MAX_BYTES,
        maxMemory: int = DEFAULT_MAX_MEMORY,
        shared: Optional[SharedStore] = None,
    ) -> None:
        """
        @param shared: Where a fleet keeps its resumable streams (Redis), so
            that any instance serves a resume: each stream is kept here for
            this instance's readers, and copied there.
        """
        self.clock = clock
        self.maxBytes = maxBytes
        self.maxMemory = maxMemory
        self.shared = shared
        self.kept = 0
        self._streams: dict[str, ResumableStream] = {}
        self._expiry: dict[str, IDelayedCall] = {}

    def open(
        self,
        window: float,
        owner: Optional[bytes],
        status: int,
        headers: list[tuple[bytes, bytes]],
        target: bytes = b"",
    ) -> Optional[ResumableStream]:
        """
        @param window: Seconds it keeps its upstream with no reader, and
            stays readable after its end.
        @param owner: The credential that may read it (L{credentialOf}).
        @param target: The request target that started it.
        @return: A new stream, readable by its id from now on; or L{None}
            while the shared store cannot take it (it is not there, or is
            behind): the answer is then streamed as on any route.
        """
        stream = ResumableStream(self, window, owner, status, headers, target)
        if self.shared is not None:
            stream.mirror = self.shared.mirror(stream)
            if stream.mirror is None:
                return None
        self._streams[stream.id] = stream
        return stream

    def get(self, id: str) -> Optional[ResumableStream]:
        """
        @return: The stream with that id, while it is kept.
        """
        return self._streams.get(id)

    def reconnecting(self, target: bytes, lastEventId: bytes) -> Optional[ResumableStream]:
        """
        @param target: A request's target.
        @param lastEventId: Its C{Last-Event-ID}.
        @return: The stream that request resumes, where it is a browser's
            C{EventSource} reconnecting to a stream kept here (the id names
            it, and the target is the one that started it).
        """
        stream = self._streams.get(lastEventId.decode("ascii", "replace").strip().rpartition(".")[0])
        return stream if stream is not None and stream.target == target else None

    def charge(self, stream: ResumableStream, size: int) -> bool:
        """
        @return: Whether C{stream} may keep C{size} more bytes (they are
            counted if so).
        """
        held = stream.held + size
        if held > self.maxBytes or self.kept + size > self.maxMemory:
            return False
        stream.held = held
        self.kept += size
        return True

    def ended(self, stream: ResumableStream) -> None:
        if stream.id in self._streams:
            self._expiry[stream.id] = self.clock.callLater(stream.window, self.forget, stream)

    def forget(self, stream: ResumableStream) -> None:
        """
        Keep C{stream} no longer: its id is unknown from now on.
        """
        if self._streams.pop(stream.id, None) is None:
            return
        self.kept -= stream.held
        expiry = self._expiry.pop(stream.id, None)
        if expiry is not None and expiry.active():
            expiry.cancel()

    def __len__(self) -> int:
        return len(self._streams)


@implementer(IPushProducer)
class StreamReader:
    """
    One reader of a L{ResumableStream}: writes to its request from its
    offset as the stream grows, while its connection takes it.

    @ivar first: Whether it is the client that started the stream.
    """

    def __init__(
        self,
        stream: ResumableStream,
        request: Request,
        offset: int,
        write: Callable[[bytes], None],
        ended: Callable[[str], None],
        first: bool = False,
    ) -> None:
        """
        @param write: Writes body bytes to the request.
        @param ended: Called once with how the stream ended for this
            reader (L{COMPLETE}, L{TRUNCATED}), when it has all of it.
        """
        self.stream = stream
        self.offset = offset
        self.first = first
        self._request = request
        self.write = write
        """Writes body bytes to its request."""
        self._ended = ended
        self.ready = True
        """Neither paused nor done: what it is given is written at once."""
        self._paused = False
        self._done = False
        request.registerProducer(self, True)
        stream.attach(self)
        request.notifyFinish().addBoth(self._gone)
        # What the stream has already, and its end if it has ended.
        self.wake()

    def wake(self) -> None:
        """
        The stream has grown or ended: write what this reader has not had.
        """
        if self._paused or self._done:
            return
        stream = self.stream
        if self.offset < stream.end:
            data = stream.bytesFrom(self.offset)
            self.offset = stream.end
            self.write(data)
        if stream.ended is not None and self.offset == stream.end:
            self._finish(stream.ended)

    def cutOff(self) -> None:
        """
        What this reader needs is no longer kept: it ends truncated.
        """
        self._finish(TRUNCATED)

    def _finish(self, how: str) -> None:
        if self._done:
            return
        self._done = True
        self.ready = False
        self.stream.detach(self)
        self._request.unregisterProducer()
        self._ended(how)

    def release(self) -> None:
        """
        Stop reading the stream, the request left to whoever wrote to it
        (the exchange, when the stream outgrew its bounds).
        """
        if not self._done:
            self._done = True
            self.ready = False
            self.stream.detach(self)
            self._request.unregisterProducer()

    def _gone(self, reason: object) -> None:
        # The client's connection closed (or its answer ended).
        if not self._done:
            self._done = True
            self.ready = False
            self.stream.detach(self)

    # IPushProducer: the reader's connection paces it.

    def pauseProducing(self) -> None:
        self._paused = True
        self.ready = False

    def resumeProducing(self) -> None:
        self._paused = False
        self.ready = not self._done
        self.wake()

    def stopProducing(self) -> None:
        self._gone(None)


def resumeAnswer(request: Request, store: ResumeStore, truncate: Callable[[Request], None]) -> bytes | int:
    """
    Answer C{GET /_streams/ID?from=N}: the stream's status and headers,
    then its body from offset N (0 by default; or, with C{Last-Event-ID}
    and no C{from}, just after that event), then each later byte as it
    arrives, then the end the original had.

    @param request: The resume request.
    @param store: Where the streams are kept.
    @param truncate: Ends a response as broken off, in its protocol.
    @return: L{NOT_DONE_YET}, or a refusal's body: C{404} for an id
        unknown or expired, C{401} for another credential than the one that
        started it, C{400} for a C{from} that is not a whole number, C{416}
        for one outside what is kept.
    """
    path, _, query = request.uri.partition(b"?")
    if path.startswith(RESUME_PREFIX):
        if not isStreamId(path[len(RESUME_PREFIX) :]):
            return UNKNOWN_STREAM.render(request)
        id = path[len(RESUME_PREFIX) :].decode("ascii")
        stream = store.get(id)
        if stream is None and store.shared is not None:
            # Perhaps another instance of the fleet reads its upstream.
            return store.shared.resume(request, id, query, truncate)
    else:
        # A browser's EventSource, reconnecting where it started.
        stream = store.reconnecting(request.uri, request.getHeader(b"last-event-id") or b"")
        query = b""
    if stream is None:
        return UNKNOWN_STREAM.render(request)
    if not stream.may(request.getHeader(b"authorization")):
        return OTHER_CREDENTIAL.render(request)
    offset = requestedOffset(request, query, lambda lastEvent: afterEvent(stream, lastEvent))
    if isinstance(offset, Refusal):
        return offset.render(request)
    refusal = outside(offset, stream.start, stream.end)
    if refusal is not None:
        return refusal.render(request)
    startAnswer(request, stream.id, stream.status, stream.headers)
    StreamReader(stream, request, offset, bodyWriter(request), endsWith(request, truncate))
    return NOT_DONE_YET


UNKNOWN_STREAM = Refusal(404, "no stream with that id: it is unknown, has expired, or outgrew what is kept")
OTHER_CREDENTIAL = Refusal(401, "this stream was started with another credential")


def requestedOffset(
    request: Request, query: bytes, afterEvent: Callable[[bytes], Optional[int]]
) -> int | Refusal:
    """
    @param query: The resume request's query string.
    @param afterEvent: The offset just after the event a C{Last-Event-ID}
        names, or L{None}.
    @return: The body offset a resume asks for (C{from}; or, without it,
        just after its C{Last-Event-ID}'s event; or 0), or why it is
        refused.
    """
    given = parse_qs(query.decode("ascii", "replace")).get("from", [None])[-1]
    lastEvent = request.getHeader(b"last-event-id")
    if given is None and lastEvent is not None:
        offset = afterEvent(lastEvent)
        return Refusal(416, "Last-Event-ID names no event of this stream") if offset is None else offset
    if given is not None and (not given.isdigit() or len(given) > 18):
        return Refusal(400, f"from must be a whole number of bytes, not {given[:40]!r}")
    return int(given or 0)


def outside(offset: int, start: int, end: int) -> Optional[Refusal]:
    """
    @return: Why C{offset} cannot be resumed from, where it is not within
        what is kept (C{start} to C{end}).
    """
    if offset > end:
        return Refusal(416, f"from={offset} is beyond the {end} bytes the stream has so far")
    if offset < start:
        return Refusal(416, f"from={offset} is before the {start} bytes no longer kept")
    return None


def startAnswer(request: Request, id: str, status: int, headers: list[tuple[bytes, bytes]]) -> None:
    """
    Send a resume's head: the stream's status and headers, as the original
    had them, and its id.
    """
    request.setResponseCode(status)
    setHeader = request.responseHeaders.addRawHeader
    for name, value in headers:
        setHeader(name, value)
    request.responseHeaders.setRawHeaders(b"x-stream-id", [id.encode("ascii")])
    if not any(name == b"content-type" for name, _ in headers):
        request.defaultContentType = None
    request.write(b"")


class ResumableWriter:
    """
    What the pieces of a resumable answer are written to: its stream, which
    every reader follows (the client that started it first, at its own
    pace); once the stream has outgrown its bounds, that client directly.

    @ivar stream: The stream, while it is resumable.
    """

    def __init__(
        self,
        stream: ResumableStream,
        request: Request,
        write: Callable[[bytes], None],
        truncate: Callable[[Request], None],
        lost: Callable[[ResumableStream, bool], None],
    ) -> None:
        """
        @param request: The request of the client that started it.
        @param write: Writes body bytes to that request.
        @param truncate: Ends a response as broken off, in its protocol.
        @param lost: Called once the stream is no longer resumable (it
            outgrew its bounds, or its shared store failed: see
            L{ResumableStream.lost}), with the stream and whether its
            client is still there (then it has had all that was kept, and
            gets the rest directly).
        """
        self.stream: Optional[ResumableStream] = stream
        self._write = write
        self._lost = lost
        stream.whenLost = self._whenLost
        StreamReader(stream, request, 0, write, endsWith(request, truncate), first=True)

    def __call__(self, data: bytes) -> None:
        stream = self.stream
        if stream is None or not stream.append(data):
            self._write(data)

    def _whenLost(self, why: str) -> None:
        # No longer resumable (its other readers have been cut off).
        stream, self.stream = self.stream, None
        if stream is None:
            return
        first = next((reader for reader in stream.readers if reader.first), None)
        if first is not None:
            rest = stream.bytesFrom(first.offset)
            first.release()
            if rest:
                self._write(rest)
        self._lost(stream, first is not None)


def afterEvent(stream: ResumableStream, lastEventId: bytes) -> Optional[int]:
    """
    @param lastEventId: A C{Last-Event-ID}, as a browser's C{EventSource}
        sends it back: C{STREAM.N} (or C{N}).
    @return: The body offset just after event N of C{stream} (0 for event
        0), or L{None} where it names none.
    """
    number = parseEventId(lastEventId, stream.id)
    ends = stream.events.ends if stream.events is not None else []
    if number is None or number > len(ends):
        return None
    return ends[number - 1] if number else 0


def endsWith(request: Request, truncate: Callable[[Request], None]) -> Callable[[str], None]:
    """
    @return: What ends a reader's response as the stream ended: finished,
        or truncated (in the request's protocol).
    """

    def ended(how: str) -> None:
        if how == COMPLETE:
            request.finish()
        else:
            truncate(request)

    return ended
