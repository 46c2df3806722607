# -*- test-case-name: tests.test_recording -*-
"""
Streams recorded with their timing (C{chunkproxy --record DIR}), to be
replayed with it (C{chunkgen --replay DIR}, L{twisted_stream.mock._replay}):
a bug seen with a real provider, reproduced, timing included, in a test
with no key. This module writes recordings, and holds their format and the
rule a request matches one by.

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
from typing import IO, Any, Sequence

from twisted.internet.interfaces import IReactorTime

__all__ = [
    "DEFAULT_RECORD_MAX_BYTES",
    "VOLATILE",
    "Recorder",
    "RecordingWriter",
    "bytesOf",
    "matchKey",
]

DEFAULT_RECORD_MAX_BYTES = 64 * 1024 * 1024
"""The most body bytes recorded of one response by default."""

VOLATILE = frozenset({"stream_options", "user", "metadata", "store", "service_tier", "seed", "n", "safety_identifier"})
"""Top-level request fields left out when a request is matched with a
recording: they change between runs without changing the answer."""

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


def bytesOf(record: dict[str, Any], name: str) -> bytes:
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
