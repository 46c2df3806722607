"""
Tests for L{twisted_stream.gateway._h2frames}: header blocks bounded frame by frame,
byte for byte, without sockets.
"""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from tests.support import h2Frame
from twisted_stream.gateway._h2frames import PREFACE, HeaderBlockBound

_END_STREAM, _END_HEADERS = 0x1, 0x4


SETTINGS = h2Frame(0x4, 0, b"", stream=0)


def headers(payload: bytes, flags: int = _END_HEADERS) -> bytes:
    return h2Frame(0x1, flags, payload)


def continuation(payload: bytes, flags: int = 0) -> bytes:
    return h2Frame(0x9, flags, payload)


class HeaderBlockBoundTests(SynchronousTestCase):
    def test_withinBounds(self) -> None:
        """
        Blocks within the bounds, in one frame or several, among other
        frames, pass; each new block is counted from zero.
        """
        bound = HeaderBlockBound(maxBytes=100, maxFrames=3)
        data = PREFACE + SETTINGS
        for _ in range(5):
            data += headers(b"h" * 40, flags=0) + continuation(b"c" * 20) + continuation(b"", _END_HEADERS)
            data += h2Frame(0x0, _END_STREAM, b"d" * 5000)
        self.assertTrue(bound.feed(data))
        self.assertIsNone(bound.reason)

    def test_byteByByte(self) -> None:
        """
        Frame headers and payloads split anywhere are followed the same.
        """
        data = PREFACE + SETTINGS + headers(b"h" * 40, flags=0) + continuation(b"c" * 60)
        bound = HeaderBlockBound(maxBytes=100)
        results = [bound.feed(data[i : i + 1]) for i in range(len(data))]
        # The block passes 100 bytes at the CONTINUATION's header (49 + 69),
        # before any byte of its payload.
        over = len(PREFACE + SETTINGS) + 49 + 9 - 1
        self.assertEqual(results.index(False), over)
        self.assertEqual(bound.reason, "a header block over 100 bytes")

    def test_continuationFlood(self) -> None:
        """
        A block that never ends is stopped at the frame header that passes
        the bound: its payload is never needed.
        """
        bound = HeaderBlockBound(maxBytes=32 * 1024)
        data = PREFACE + SETTINGS + headers(b"h" * 100, flags=0)
        self.assertTrue(bound.feed(data))
        sent = 0
        while bound.feed(continuation(b"x" * 16000)):
            sent += 1
        # 109 + 2 x 16,009 bytes are within 32 KiB; the third frame is not.
        self.assertEqual(sent, 2)
        self.assertEqual(bound.reason, "a header block over 32768 bytes")

    def test_emptyContinuationFlood(self) -> None:
        """
        Empty CONTINUATION frames are bounded in number.
        """
        bound = HeaderBlockBound(maxBytes=32 * 1024, maxFrames=32)
        self.assertTrue(bound.feed(PREFACE + headers(b"", flags=0)))
        fed = [bound.feed(continuation(b"")) for _ in range(40)]
        self.assertEqual(fed.index(False), 31)
        self.assertEqual(bound.reason, "a header block in over 32 frames")

    def test_staysOver(self) -> None:
        bound = HeaderBlockBound(maxBytes=10)
        self.assertFalse(bound.feed(PREFACE + headers(b"x" * 20)))
        self.assertFalse(bound.feed(SETTINGS))

    def test_pushPromiseCounted(self) -> None:
        bound = HeaderBlockBound(maxBytes=50)
        self.assertFalse(bound.feed(PREFACE + h2Frame(0x5, 0, b"p" * 60)))

    def test_dataNotCounted(self) -> None:
        """
        DATA frames, however large, are not header blocks; a DATA frame in
        the middle of a block does not end it.
        """
        bound = HeaderBlockBound(maxBytes=50)
        self.assertTrue(bound.feed(PREFACE + h2Frame(0x0, 0, b"d" * 1000)))
        self.assertTrue(bound.feed(headers(b"h" * 30, flags=0)))
        self.assertTrue(bound.feed(h2Frame(0x0, 0, b"d" * 1000)))
        self.assertFalse(bound.feed(continuation(b"c" * 10)))
