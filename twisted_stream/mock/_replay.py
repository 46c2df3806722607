# -*- test-case-name: tests.test_recording -*-
"""
Replay of recordings (C{chunkgen --replay DIR}): each recorded stream
served again with its timing, to a request that matches it (see
L{twisted_stream.exchange._recording} for the format and the match).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Optional, Sequence

from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.web.resource import IResource, Resource, getChildForRequest
from twisted.web.server import NOT_DONE_YET, Request

from twisted_stream._numbers import isWholeIn
from twisted_stream.exchange._recording import bytesOf, matchKey
from twisted_stream.http.headers import headerProblem

__all__ = ["Library", "Recording", "ReplayResource"]

_SKIPPED_HEADERS = frozenset({b"content-length", b"transfer-encoding", b"connection", b"date", b"server", b"via"})
"""Response headers a replay does not send as recorded: its own
connection's, or its server's."""



@dataclass(frozen=True)
class Recording:
    """
    A recorded stream, read back.

    @ivar status: The response's status.
    @ivar headers: Its headers.
    @ivar pieces: C{(offset, bytes)} for each piece.
    @ivar outcome: How it ended.
    """

    status: int
    headers: Sequence[tuple[bytes, bytes]]
    pieces: Sequence[tuple[float, bytes]]
    outcome: str


class Library:
    """
    The recordings of a folder, by what requests match them by.
    """

    def __init__(self, recordings: dict[tuple[str, str, str], Recording]) -> None:
        self._recordings = recordings

    @classmethod
    def load(cls, folder: str) -> Library:
        """
        Read every C{*.jsonl} file of a folder (the last recorded of
        requests that match the same wins).

        @raise ValueError: For a file that is not a recording, or one that
            would put on the wire what no HTTP server may send, naming the
            file and the line.
        """
        found: dict[tuple[str, str, str], Recording] = {}
        for name in sorted(os.listdir(folder)):
            if name.endswith(".jsonl"):
                path = os.path.join(folder, name)
                key, recording = _read(path)
                found[key] = recording
        return cls(found)

    def match(self, method: bytes, path: bytes, body: bytes) -> Optional[Recording]:
        """
        @return: The recording a request matches, if any.
        """
        return self._recordings.get(matchKey(method, path, body))


_MAX_GAP = 24 * 60 * 60.0
"""The longest a recording may wait between two lines, in seconds: more is
not a recording of a stream, and would hang a replay with no headers."""


def _read(path: str) -> tuple[tuple[str, str, str], Recording]:
    """
    Read and check one recording.

    @return: What requests match it by, and the recording.
    @raise ValueError: Naming the file, and the line where it can.
    """
    number = 0
    try:
        with open(path, encoding="utf-8") as f:
            lines = [(number, json.loads(line)) for number, line in enumerate(f, 1) if line.strip()]
        if not lines:
            raise ValueError("it is empty")
        number, head = lines[0]
        status = head["status"]
        if not isWholeIn(status, 100, 599):
            raise ValueError(f"status {status!r} is not a number from 100 to 599")
        headers = []
        for name, value in head["headers"]:
            raw = (name.encode("latin-1"), value.encode("latin-1"))
            problem = headerProblem(*raw)
            if problem is not None:
                raise ValueError(f"header {name[:40]!r} {problem}")
            headers.append(raw)
        key = matchKey(head["method"].encode("latin-1"), head["path"].encode("latin-1"), bytesOf(head, "body"))
        pieces = []
        outcome = "truncated"
        before = 0.0
        for line in lines[1:]:
            # (The line's number is kept for the message.)
            number, record = line
            offset = record["t"]
            if type(offset) not in (int, float) or not before <= offset <= before + _MAX_GAP:
                raise ValueError(f"t {offset!r} is not a number of seconds from {before:g} to a day after it")
            before = float(offset)
            if "end" in record:
                outcome = str(record["end"])
            elif "truncated" not in record:
                pieces.append((before, bytesOf(record, "data")))
    except (OSError, ValueError, KeyError, IndexError, TypeError, AttributeError) as e:
        where = f"{path} line {number}" if number else path
        raise ValueError(f"{where} is not a recording: {e}") from None
    return key, Recording(status, headers, pieces, outcome)


class ReplayResource(Resource):
    """
    Serves recorded streams at their recorded offsets (divided by
    C{X-Mock-Speed}, default 1); a request that matches none goes on to
    C{fallback}, as if this were not here.
    """

    isLeaf = True

    def __init__(self, library: Library, fallback: IResource, clock: IReactorTime) -> None:
        super().__init__()
        self._library = library
        self._fallback = fallback
        self._clock = clock

    def render(self, request: Request) -> bytes | int:
        content = request.content
        body = content.read() if content is not None else b""
        if content is not None:
            content.seek(0)
        recording = self._library.match(request.method, request.path, body)
        if recording is None:
            result: bytes | int = getChildForRequest(self._fallback, request).render(request)
            return result
        try:
            speed = float(request.getHeader(b"x-mock-speed") or 1)
        except ValueError:
            speed = 0
        if not 0.01 <= speed <= 1000:
            request.setResponseCode(400)
            request.setHeader(b"Content-Type", b"text/plain; charset=utf-8")
            return b"X-Mock-Speed must be a number from 0.01 to 1000\n"
        _Replay(request, recording, speed, self._clock).start()
        return NOT_DONE_YET


class _Replay:
    """
    One recording being played back to one request.
    """

    def __init__(self, request: Request, recording: Recording, speed: float, clock: IReactorTime) -> None:
        self._request = request
        self._recording = recording
        self._speed = speed
        self._clock = clock
        self._next = 0
        self._origin = clock.seconds()
        self._call: Optional[IDelayedCall] = None
        self._gone = False

    def start(self) -> None:
        request = self._request
        request.setResponseCode(self._recording.status)
        request.defaultContentType = None
        for name, value in self._recording.headers:
            if name.lower() not in _SKIPPED_HEADERS:
                request.responseHeaders.addRawHeader(name, value)
        request.notifyFinish().addErrback(self._left)
        self._schedule()

    def _left(self, reason: object) -> None:
        self._gone = True
        if self._call is not None and self._call.active():
            self._call.cancel()

    def _schedule(self) -> None:
        pieces = self._recording.pieces
        if self._next >= len(pieces):
            # (The outcomes of an answer that ended cleanly: see _streamlog.)
            if self._recording.outcome in ("complete", "upstream_error_status"):
                self._request.finish()
            else:
                # It broke off when recorded: so it does again.
                self._request.loseConnection()
            return
        due = self._origin + pieces[self._next][0] / self._speed
        self._call = self._clock.callLater(max(0.0, due - self._clock.seconds()), self._send)

    def _send(self) -> None:
        self._call = None
        if self._gone:
            return
        self._request.write(self._recording.pieces[self._next][1])
        self._next += 1
        self._schedule()
