# -*- test-case-name: tests.test_formats -*-
"""
Wire formats of the chunks that C{chunkgen} streams.

A format turns one chunk (its sequence number and the time it is sent) into
the bytes of one HTTP chunk. Every format carries the send time, so that a
watcher at the far end of a proxy can tell how long each chunk took to
arrive, and every format can be padded to an exact size without ceasing to be
valid (a padded SSE event is still one event, a padded NDJSON line still one
JSON object).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Callable, Mapping

__all__ = [
    "ChunkFormat",
    "FORMATS",
    "NDJSON",
    "SSE",
    "TEXT",
    "chunkText",
    "clockTime",
]


def clockTime(when: float) -> str:
    """
    Format a POSIX time as local wall-clock time with milliseconds.

    @param when: Seconds since the epoch.
    @return: C{HH:MM:SS.mmm}.
    """
    moment = datetime.fromtimestamp(when)
    return f"{moment:%H:%M:%S}.{moment.microsecond // 1000:03d}"


def chunkText(sequence: int, sentAt: float) -> str:
    """
    The human-readable text of one chunk.

    @param sequence: The chunk's number, counting from 1.
    @param sentAt: When the chunk is sent, in seconds since the epoch.
    @return: C{Chunk {sequence} [HH:MM:SS.mmm]}.
    """
    return f"Chunk {sequence} [{clockTime(sentAt)}]"


@dataclass(frozen=True)
class ChunkFormat:
    """
    One wire format for generated chunks.

    @ivar name: The value of the C{format} query parameter that selects it.
    @ivar contentType: The response's C{Content-Type}.
    @ivar render: Turns C{(sequence, sentAt, size)} into one chunk's bytes,
        exactly C{size} bytes long when C{size} exceeds the chunk's natural
        length, and its natural length otherwise.
    """

    name: str
    contentType: bytes
    render: Callable[[int, float, int], bytes]


def _padded(head: bytes, tail: bytes, size: int, filler: bytes) -> bytes:
    """
    Join C{head} and C{tail} with enough C{filler} between them to reach
    C{size} bytes; with none when they already reach it.
    """
    missing = size - len(head) - len(tail)
    if missing <= 0:
        return head + tail
    return head + filler * missing + tail


def _renderText(sequence: int, sentAt: float, size: int) -> bytes:
    return _padded(chunkText(sequence, sentAt).encode("ascii"), b"\n", size, b".")


def _renderSSE(sequence: int, sentAt: float, size: int) -> bytes:
    # The padding goes inside the data field, so a padded chunk is still
    # exactly one event.
    head = f"id: {sequence}\ndata: {chunkText(sequence, sentAt)}".encode("ascii")
    return _padded(head, b"\n\n", size, b".")


def _renderNDJSON(sequence: int, sentAt: float, size: int) -> bytes:
    body = json.dumps(
        {"seq": sequence, "sent": round(sentAt, 6), "text": chunkText(sequence, sentAt)},
        separators=(",", ":"),
    ).encode("ascii")
    # White space before the closing brace is insignificant in JSON, so
    # padding with it keeps the line one valid object of any size.
    return _padded(body[:-1], b"}\n", size, b" ")


TEXT = ChunkFormat("text", b"text/plain; charset=utf-8", _renderText)
SSE = ChunkFormat("sse", b"text/event-stream", _renderSSE)
NDJSON = ChunkFormat("ndjson", b"application/x-ndjson", _renderNDJSON)

FORMATS: Mapping[str, ChunkFormat] = {f.name: f for f in (TEXT, SSE, NDJSON)}
"""Every format, by the name the C{format} query parameter gives it."""
