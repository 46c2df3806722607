"""
Tests for L{twisted_stream.resume._eventids}: event ids put into an event
stream as it passes, byte for byte, however it is cut into pieces.
"""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from twisted_stream.resume._eventids import EventIds, isStreamId, parseEventId, streamOfEventId


def _numbered(*pieces: bytes) -> tuple[list[bytes], list[int]]:
    written: list[bytes] = []
    ids = EventIds("S", written.append)
    for piece in pieces:
        ids(piece)
    return written, ids.ends


class EventIdsTests(SynchronousTestCase):
    def test_eachEvent(self) -> None:
        written, ends = _numbered(b"data: a\n\ndata: b\nevent: x\n\n")
        self.assertEqual(written, [b"data: a\nid: S.1\n\ndata: b\nevent: x\nid: S.2\n\n"])
        self.assertEqual(ends, [len(b"data: a\nid: S.1\n\n"), len(written[0])])

    def test_lineEndings(self) -> None:
        """
        CR LF, CR and LF line ends: the id goes before the blank line.
        """
        for stream, expected in (
            (b"data: a\r\n\r\n", b"data: a\r\nid: S.1\n\r\n"),
            (b"data: a\r\r", b"data: a\rid: S.1\n\r"),
            (b"data: a\n\r\n", b"data: a\nid: S.1\n\r\n"),
            (b"data: a\r\n\n", b"data: a\r\nid: S.1\n\n"),
        ):
            written, ends = _numbered(stream)
            self.assertEqual(b"".join(written), expected, stream)
            self.assertEqual(ends, [len(expected)], stream)

    def test_anyCut(self) -> None:
        """
        However the stream is cut into pieces, the bytes written are the
        same, each piece at once, and the ends are the same.
        """
        stream = b"data: one\r\n\r\n: comment\n\ndata: two\rdata: 2\r\rdata: three\n\n"
        whole, wholeEnds = _numbered(stream)
        for cut in range(1, len(stream)):
            written, ends = _numbered(stream[:cut], stream[cut:])
            self.assertEqual(b"".join(written), whole[0], cut)
            self.assertEqual(ends, wholeEnds, cut)
            self.assertEqual(len(written), 2)
        self.assertEqual(len(wholeEnds), 4)
        for cut1 in range(1, len(stream) - 1, 3):
            for cut2 in range(cut1 + 1, len(stream)):
                written, ends = _numbered(stream[:cut1], stream[cut1:cut2], stream[cut2:])
                self.assertEqual((b"".join(written), ends), (whole[0], wholeEnds), (cut1, cut2))

    def test_resumeAfterAnEnd(self) -> None:
        """
        The bytes after event N's end start event N + 1.
        """
        written, ends = _numbered(b"data: a\n\ndata: b\n\ndata: c\n\n")
        body = written[0]
        self.assertTrue(body[ends[0] :].startswith(b"data: b\nid: S.2\n\n"))
        self.assertTrue(body[ends[1] :].startswith(b"data: c\n"))
        self.assertEqual(body[ends[2] :], b"")

    def test_emptyBlocksNotNumbered(self) -> None:
        written, ends = _numbered(b"\n\n\r\ndata: a\n\n\n\n")
        self.assertEqual(b"".join(written), b"\n\n\r\ndata: a\nid: S.1\n\n\n\n")
        self.assertEqual(len(ends), 1)

    def test_parseEventId(self) -> None:
        self.assertEqual(parseEventId(b"S.3", "S"), 3)
        self.assertEqual(parseEventId(b" 7 ", "S"), 7)
        self.assertIsNone(parseEventId(b"T.3", "S"))
        self.assertIsNone(parseEventId(b"S.x", "S"))
        self.assertIsNone(parseEventId(b"S.-1", "S"))
        self.assertIsNone(parseEventId(b"9" * 13, "S"))


class StreamIdTests(SynchronousTestCase):
    def test_isStreamId(self) -> None:
        """
        A stream's id is 22 URL-safe characters, nothing else.
        """
        self.assertTrue(isStreamId(b"AbCdEfGhIjKlMnOpQrSt-_"))
        for text in (b"", b"A" * 21, b"A" * 23, b"AbCdEfGhIjKlMnOpQrSt-{", b"AbCdEfGhIjKlMnOpQrSt-\n"):
            self.assertFalse(isStreamId(text), text)

    def test_streamOfEventId(self) -> None:
        """
        C{Last-Event-ID} as this gateway gives it (C{STREAM.N}) names its
        stream; anything else names none.
        """
        id = b"AbCdEfGhIjKlMnOpQrSt-_"
        self.assertEqual(streamOfEventId(id + b".12"), id.decode())
        self.assertEqual(streamOfEventId(b" " + id + b".0\n"), id.decode())
        for value in (b"12", id, id + b".", id + b".x", b"short.3", id + b"." + b"9" * 13):
            self.assertIsNone(streamOfEventId(value), value)
