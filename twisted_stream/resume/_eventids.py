# -*- test-case-name: tests.test_eventids -*-
"""
L{EventIds}: numbers the events of an event stream as they pass, so that a
reader can say where it was (C{Last-Event-ID}) and resume after the last
event it had.

Each event (a block of lines ended by a blank line, RFC-free but as the
HTML standard's event stream format reads it: lines end with CR LF, LF or
CR) gets an C{id: STREAM.N} line just before its blank line. The HTML
standard allows the field anywhere in the event; the OpenAI, Anthropic and
Gemini SDKs ignore it; a browser's C{EventSource} keeps it and sends it
back as C{Last-Event-ID} when it reconnects, to the same URL, which is how
a page resumes with no code of its own. Blocks with nothing in them are
not numbered.

Nothing is held back: a piece is written at once, with its ids in it; an
event whose blank line starts the next piece gets its id at the start of
that piece.
"""

from __future__ import annotations

import re
from typing import Callable

__all__ = ["RESUME_PREFIX", "EventIds", "isStreamId", "parseEventId", "streamOfEventId"]

RESUME_PREFIX = b"/_streams/"
"""Where a resumable stream is read (L{twisted_stream.resume._resumable}):
C{/_streams/ID?from=N}, C{ID} a stream id (L{isStreamId}); its ids are
never whole in a log."""

_BREAK = re.compile(rb"\r\n|\r|\n")


def parseEventId(value: bytes, stream: str) -> int | None:
    """
    @param value: A C{Last-Event-ID}: C{STREAM.N}, or C{N}.
    @param stream: The id of the stream it should name.
    @return: N, where C{value} names an event of that stream, else L{None}.
    """
    text = value.decode("ascii", "replace").strip()
    name, dot, number = text.rpartition(".")
    if (dot and name != stream) or not number.isdigit() or len(number) > 12:
        return None
    return int(number)


def streamOfEventId(value: bytes) -> str | None:
    """
    @param value: A C{Last-Event-ID}.
    @return: The id of the stream it names, where it reads as one of the
        ids this gateway gives (C{STREAM.N}, STREAM 22 URL-safe characters),
        else L{None}.
    """
    name, dot, number = value.strip().rpartition(b".")
    if dot and isStreamId(name) and number.isdigit() and len(number) <= 12:
        return name.decode("ascii")
    return None


def isStreamId(text: bytes) -> bool:
    """
    @return: Whether C{text} reads as a stream's id as this gateway makes
        them (C{secrets.token_urlsafe(16)}: 22 URL-safe characters): what
        is not is unknown without asking any store.
    """
    return _STREAM_ID.fullmatch(text) is not None


_STREAM_ID = re.compile(rb"[A-Za-z0-9_-]{22}")


class EventIds:
    """
    Numbers events as they pass (see the module's docstring), and notes
    where each ends.

    @ivar ends: The body offset just after each event, in order: event N
        ends at C{ends[N - 1]}.
    """

    def __init__(self, stream: str, write: Callable[[bytes], None]) -> None:
        """
        @param stream: The stream's id, each event id's first part.
        @param write: Where the pieces go, numbered.
        """
        self._prefix = b"id: " + stream.encode("ascii") + b"."
        self._write = write
        self.ends: list[int] = []
        self._written = 0
        self._lineEmpty = True
        self._blockHasContent = False
        self._cr = False
        self._crEnded = False

    def __call__(self, data: bytes) -> None:
        out: list[bytes] = []
        start = 0
        position = 0
        if self._cr and data[:1] == b"\n":
            # The LF of a CR LF whose CR ended the last piece: one break,
            # which may have ended an event (it ends after the LF).
            position = 1
            if self._crEnded:
                self.ends[-1] += 1
        self._cr = self._crEnded = False
        ended = False
        for found in _BREAK.finditer(data, position):
            at = found.start()
            if at > position:
                self._lineEmpty = False
            ended = False
            if self._lineEmpty:
                # A blank line: the block before it ends here.
                if self._blockHasContent:
                    ended = True
                    out.append(data[start:at])
                    out.append(self._prefix + b"%d\n" % (len(self.ends) + 1,))
                    start = at
                    self.ends.append(self._written + sum(len(piece) for piece in out) + (found.end() - at))
                self._blockHasContent = False
            else:
                self._blockHasContent = True
            self._lineEmpty = True
            position = found.end()
        if position < len(data):
            self._lineEmpty = False
        elif data.endswith(b"\r") and not data.endswith(b"\r\n"):
            self._cr = True
            self._crEnded = ended
        out.append(data[start:])
        piece = b"".join(out) if len(out) > 1 else data
        self._written += len(piece)
        self._write(piece)
