# -*- test-case-name: tests.test_recording -*-
"""
Streams recorded with their timing (C{chunkproxy --record DIR}) and
replayed with it (C{chunkgen --replay DIR}): a bug seen with a real
provider, reproduced, timing included, in a test with no key.

A recording is one file, one JSON object per line, readable and diffable:

  1. the head: C{method}, C{path} (without the query string, which may
     hold a key), C{body} (the request body as text, C{body_base64} when
     it is not UTF-8), C{status} and C{headers} (the response's, as
     forwarded, C{[name, value]} pairs); request headers are not recorded
     at all, so neither credentials nor injected headers are;
  2. one line per piece of the body as it was forwarded: C{t}, seconds
     since the request arrived, and C{data} (C{data_base64} for bytes that
     are not UTF-8);
  3. the end: C{end}, the stream's outcome (C{complete}, C{client_gone},
     C{truncated}, ...), and its C{t}; or, for a response whose body passed
     the recorder's C{maxBytes}, C{truncated} (that bound) and its C{t}
     instead: the body's first C{maxBytes} bytes are recorded, the rest of
     the response goes on to the client unrecorded, and a replay ends there
     as broken off (it does not know the rest).

A request matches a recording when its method and path are the same, and
its body too, compared as JSON with the top-level fields in L{VOLATILE}
and every C{mock_*} field left out (a body that is not a JSON object is
compared byte for byte).
"""

from __future__ import annotations

import base64
import json
import os
import re
from dataclasses import dataclass
from typing import IO, Any, Optional, Sequence

from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.web.resource import IResource, Resource, getChildForRequest
from twisted.web.server import NOT_DONE_YET, Request

from twisted_stream.headers import headerProblem

__all__ = [
    "DEFAULT_RECORD_MAX_BYTES",
    "VOLATILE",
    "Library",
    "Recorder",
    "Recording",
    "RecordingWriter",
    "ReplayResource",
    "matchKey",
]

DEFAULT_RECORD_MAX_BYTES = 64 * 1024 * 1024
"""The most body bytes recorded of one response by default."""

VOLATILE = frozenset({"stream_options", "user", "metadata", "store", "service_tier", "seed", "n", "safety_identifier"})
"""Top-level request fields left out when a request is matched with a
recording: they change between runs without changing the answer."""

_SKIPPED_HEADERS = frozenset({b"content-length", b"transfer-encoding", b"connection", b"date", b"server", b"via"})
"""Response headers a replay does not send as recorded: its own
connection's, or its server's."""

def matchKey(method: bytes, path: bytes, body: bytes) -> tuple[str, str, str]:
    """
    @return: What a request is matched with a recording by.
    """
    try:
        value = json.loads(body) if body else None
    except (ValueError, UnicodeDecodeError):
        value = None
    if isinstance(value, dict):
        kept = {k: v for k, v in value.items() if k not in VOLATILE and not k.startswith("mock_")}
        text = json.dumps(kept, sort_keys=True, separators=(",", ":"))
    else:
        text = base64.b64encode(body).decode("ascii")
    return method.decode("latin-1"), path.split(b"?", 1)[0].decode("latin-1"), text


def _textOrBase64(name: str, data: bytes) -> dict[str, str]:
    try:
        return {name: data.decode("utf-8")}
    except UnicodeDecodeError:
        return {name + "_base64": base64.b64encode(data).decode("ascii")}


def _bytesOf(record: dict[str, Any], name: str) -> bytes:
    if name in record:
        return str(record[name]).encode("utf-8")
    return base64.b64decode(record.get(name + "_base64", ""))


class RecordingWriter:
    """
    One stream being written to its file.
    """

    def __init__(self, out: IO[str], started: float, clock: IReactorTime, maxBytes: int) -> None:
        self._out = out
        self._started = started
        self._clock = clock
        self._room = maxBytes
        self._maxBytes = maxBytes

    def _line(self, record: dict[str, Any]) -> None:
        self._out.write(json.dumps(record, ensure_ascii=False, separators=(",", ":")) + "\n")

    def _offset(self) -> float:
        return round(self._clock.seconds() - self._started, 6)

    def piece(self, data: bytes) -> None:
        """
        Note a piece of the body, as it was forwarded: the bytes within the
        bound; at the bound, the C{truncated} marker, and the file is closed.
        """
        if self._out.closed:
            return
        room = self._room
        if len(data) <= room:
            self._room = room - len(data)
            self._line({"t": self._offset(), **_textOrBase64("data", data)})
            return
        if room:
            self._line({"t": self._offset(), **_textOrBase64("data", data[:room])})
        self._line({"truncated": self._maxBytes, "t": self._offset()})
        self._out.close()

    def end(self, outcome: str) -> None:
        """
        Note the stream's end, and close the file (unless the bound closed
        it first).
        """
        if self._out.closed:
            return
        self._line({"end": outcome, "t": self._offset()})
        self._out.close()


class Recorder:
    """
    Writes the streams of one route to files in a folder.
    """

    def __init__(self, folder: str, clock: IReactorTime, maxBytes: int = DEFAULT_RECORD_MAX_BYTES) -> None:
        """
        @param folder: Where; made if missing.
        @param clock: What times the pieces.
        @param maxBytes: The most body bytes recorded of one response.
        """
        os.makedirs(folder, exist_ok=True)
        self._folder = folder
        self._clock = clock
        self._maxBytes = maxBytes
        self._count = 0

    def start(
        self, method: bytes, path: bytes, body: bytes, status: int, headers: Sequence[tuple[bytes, bytes]], started: float
    ) -> RecordingWriter:
        """
        Begin a recording: its file, and its head.

        @param started: When the request arrived (the clock's seconds).
        """
        self._count += 1
        # Without the query string, which may hold a key.
        path = path.split(b"?", 1)[0]
        where = re.sub(r"[^A-Za-z0-9]+", "-", path.decode("latin-1")).strip("-") or "root"
        name = f"{int(started * 1000)}-{os.getpid()}-{self._count}-{method.decode('latin-1')}-{where[:60]}.jsonl"
        # Written as the stream goes, buffered (no flush per piece), closed
        # at its end: like a log file, never waited on by the client.
        out = open(os.path.join(self._folder, name), "w", encoding="utf-8")
        head = {
            "method": method.decode("latin-1"),
            "path": path.decode("latin-1"),
            **_textOrBase64("body", body),
            "status": status,
            "headers": [[n.decode("latin-1"), v.decode("latin-1")] for n, v in headers],
        }
        recording = RecordingWriter(out, started, self._clock, self._maxBytes)
        recording._line(head)
        return recording


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
        if type(status) is not int or not 100 <= status <= 599:
            raise ValueError(f"status {status!r} is not a number from 100 to 599")
        headers = []
        for name, value in head["headers"]:
            raw = (name.encode("latin-1"), value.encode("latin-1"))
            problem = headerProblem(*raw)
            if problem is not None:
                raise ValueError(f"header {name[:40]!r} {problem}")
            headers.append(raw)
        key = matchKey(head["method"].encode("latin-1"), head["path"].encode("latin-1"), _bytesOf(head, "body"))
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
                pieces.append((before, _bytesOf(record, "data")))
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
