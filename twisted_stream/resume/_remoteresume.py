# -*- test-case-name: tests.test_sharedstreams -*-
"""
A resume answered from Redis: the stream is read by another instance of
the fleet (see L{twisted_stream.resume._sharedstreams}, which writes it
there); this instance reads its head, what is kept, then each entry the
moment it lands, at its client's pace (L{RemoteResume}).
"""

from __future__ import annotations

import hmac
from typing import Any, Callable, Optional

from twisted.internet.interfaces import IPushProducer, IReactorTime
from twisted.python.failure import Failure
from twisted.web.server import Request
from zope.interface import implementer

from twisted_stream.http._bodywriter import bodyWriter
from twisted_stream.http._refusal import Refusal
from twisted_stream.resume._eventids import parseEventId
from twisted_stream.resume._livereads import LiveReads, ReadOf
from twisted_stream.resume._redislink import LIVE_TTL, RedisLink, keysOf, milliseconds
from twisted_stream.resume._resumable import (
    COMPLETE,
    OTHER_CREDENTIAL,
    TRUNCATED,
    UNKNOWN_STREAM,
    credentialOf,
    endsWith,
    outside,
    requestedOffset,
    startAnswer,
)

__all__ = ["RemoteResume"]

REACH_WAIT = 2.0
"""Seconds a resume from an offset a little beyond what Redis has waits for
it to arrive (the writing instance sends what its client had in the same
turn, but another instance's read may overtake it)."""

UNKNOWN_WAIT = 0.05
"""Seconds a resume of an id Redis does not know waits to ask again: the
head of a stream that has just started elsewhere waits there up to
the writer's C{FLUSH_EVERY}."""

CONNECT_WAIT = 2.0
"""Seconds a resume waits for the connection to Redis, when it is being
made (the gateway just started, or Redis came back)."""


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
    (its stream in the instance's blocking reads, L{LiveReads}), C{done}.
    """

    def __init__(
        self,
        link: RedisLink,
        reads: LiveReads,
        clock: IReactorTime,
        trouble: Callable[..., None],
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
        self._link = link
        self._reads = reads
        self._clock = clock
        self._trouble = trouble
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
        self._following: Optional[ReadOf] = None
        self._saidAt = -1e18
        self._kepts = 0
        self._write: Callable[[bytes], None] = request.write
        request.notifyFinish().addBoth(self._gone)

    def start(self) -> None:
        # (A resume can only be answered from Redis: it waits a little for
        # a connection being made, as no stream's request ever does.)
        link = self._link
        waited = link.whenUp(CONNECT_WAIT)
        waited.addCallback(lambda _: link.command("HGETALL", self._head))
        waited.addCallbacks(self._gotHead, self._unreachable).addErrback(self._unreadable)

    def _lookAgain(self) -> None:
        self._lookedAgain = True
        self._link.command("HGETALL", self._head).addCallbacks(self._gotHead, self._unreachable).addErrback(
            self._unreadable
        )

    def _refuse(self, refusal: Refusal) -> None:
        if self.phase == "done":
            return
        self.phase = "done"
        body = refusal.render(self._request)
        self._request.setHeader(b"content-length", b"%d" % (len(body),))
        self._request.write(body)
        self._request.finish()

    def _unreachable(self, failure: Failure) -> None:
        self._trouble(failure.getErrorMessage() or failure.type.__name__)
        if not self._elsewise():
            self._refuse(Refusal(503, "the resume store is unreachable"))

    def _unreadable(self, failure: Failure) -> None:
        # What Redis holds there is not what an instance writes (changed by
        # hand, or another program's keys): said, and answered, not a hang.
        self._trouble(
            f"stream {self._id[:6]}... cannot be read ({failure.getErrorMessage() or failure.type.__name__})",
            "its resumes are answered 502",
        )
        if self.phase == "following":
            self._finish(TRUNCATED)
        else:
            self._refuse(Refusal(502, "the resume store holds this stream in a form that cannot be read"))

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
            self._clock.callLater(UNKNOWN_WAIT, self._lookAgain)
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
            kept = self._link.command("XRANGE", self._body, "-", "+")
            kept.addCallbacks(self._gotKept, self._unreachable).addErrback(self._unreadable)

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
                    self._clock.callLater(UNKNOWN_WAIT, self._readKept)
                    return
            self._refuse(refusal)
            return
        assert isinstance(offset, int)
        self._offset = offset
        self._answer()
        self._take(entries)
        if self.phase != "done":
            self._following = self._reads.follow(self, self._body, self._last)

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

    # LiveReader: what the instance's live reads give it.

    def liveEntries(self, entries: list[Any]) -> None:
        self._take(entries)

    def liveReading(self) -> None:
        now = self._clock.seconds()
        if now - self._saidAt >= self._window / 3:
            # Still following: the writing instance keeps the upstream.
            self._saidAt = now
            self._link.command("SET", self._readers, b"1", "PX", milliseconds(self._window)).addErrback(
                lambda f: None
            )

    def liveQuiet(self) -> None:
        self._link.command("EXISTS", self._body).addCallbacks(self._stillThere, self._broken)

    def liveBroken(self, failure: Failure) -> None:
        self._following = None
        self._broken(failure)

    def _stillThere(self, count: object) -> None:
        if int(str(count)) == 0:
            # Its keys expired: the instance that read it is gone.
            self._finish(TRUNCATED)

    def _broken(self, failure: Failure) -> None:
        if self.phase == "done":
            return
        self._trouble(failure.getErrorMessage() or failure.type.__name__)
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
        following, self._following = self._following, None
        if following is not None:
            following.stop()

    def _gone(self, reason: object) -> None:
        if self.phase != "done":
            self.phase = "done"
            self._close()

    # IPushProducer: the client's connection paces the reads.

    def pauseProducing(self) -> None:
        if self._following is not None:
            self._following.pause()

    def resumeProducing(self) -> None:
        if self._following is not None:
            self._following.resume()

    def stopProducing(self) -> None:
        self._gone(None)
