# -*- test-case-name: tests.test_h2frames -*-
"""
HTTP/2 header blocks bounded as their frames arrive, before the h2 library
buffers them.

A header block is a HEADERS (or PUSH_PROMISE) frame and the CONTINUATION
frames that follow it until one carries END_HEADERS. h2 joins the frames of
a block in its own buffer and only checks them once the block ends; Twisted
goes on feeding it every byte after a protocol error. A client that never
ends a block (the CONTINUATION flood: CVE-2024-27316 in Apache httpd,
CVE-2023-45288 in Go) then grew the gateway by a gigabyte in seconds.
L{HeaderBlockBound} reads only the 9-byte frame headers of the stream of
bytes (the payloads are skipped), and says when a block's declared bytes or
frames pass a bound: nothing of it need ever be buffered.

Sans-IO: bytes in, a reason out; tested byte for byte without sockets.
"""

from __future__ import annotations

from typing import Optional

__all__ = ["MAX_HEADER_BLOCK_FRAMES", "HeaderBlockBound"]

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
"""What a client sends before its first frame (RFC 9113, section 3.4)."""

MAX_HEADER_BLOCK_FRAMES = 32
"""Frames in one header block: clients send a block in frames of up to
16 KiB (the least maximum frame size), so a block within the byte bound
needs a few; 32 leaves room for a client that splits finely, and stops one
that sends empty CONTINUATION frames for ever."""

_FRAME_HEADER = 9
_HEADERS, _PUSH_PROMISE, _CONTINUATION = 0x1, 0x5, 0x9
_END_HEADERS = 0x4


class HeaderBlockBound:
    """
    Follows the frames of one HTTP/2 connection's incoming bytes, and
    bounds each header block in bytes (each frame's header and declared
    payload) and in frames.

    @ivar reason: Why the bound was passed (a line to log), once it has
        been; L{None} until then.
    """

    reason: Optional[str] = None

    def __init__(self, maxBytes: int, maxFrames: int = MAX_HEADER_BLOCK_FRAMES) -> None:
        """
        @param maxBytes: The most bytes of frames one header block may take.
        @param maxFrames: The most frames one header block may take.
        """
        self._maxBytes = maxBytes
        self._maxFrames = maxFrames
        # Bytes still to pass over: the preface, then each frame's payload.
        self._skip = len(PREFACE)
        self._header = b""
        self._blockBytes = 0
        self._blockFrames = 0

    def feed(self, data: bytes) -> bool:
        """
        Follow the next bytes of the connection.

        @param data: The bytes, as they came.
        @return: Whether every header block is still within the bounds
            (once C{False}, L{reason} says why, and it stays so).
        """
        if self.reason is not None:
            return False
        position, end = 0, len(data)
        while position < end:
            if self._skip:
                step = min(self._skip, end - position)
                self._skip -= step
                position += step
                continue
            need = _FRAME_HEADER - len(self._header)
            self._header += data[position : position + need]
            position += need
            if len(self._header) < _FRAME_HEADER:
                break
            header, self._header = self._header, b""
            length = int.from_bytes(header[:3], "big")
            self._skip = length
            kind, flags = header[3], header[4]
            if kind in (_HEADERS, _PUSH_PROMISE):
                self._blockBytes = self._blockFrames = 0
            elif kind != _CONTINUATION:
                continue
            self._blockBytes += _FRAME_HEADER + length
            self._blockFrames += 1
            if self._blockBytes > self._maxBytes:
                self.reason = f"a header block over {self._maxBytes} bytes"
                return False
            if self._blockFrames > self._maxFrames:
                self.reason = f"a header block in over {self._maxFrames} frames"
                return False
            if flags & _END_HEADERS:
                self._blockBytes = self._blockFrames = 0
        return True
