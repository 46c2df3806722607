"""
Tests for L{twisted_stream.exchange._recording}: the file format and matching on a
clock, and a stream recorded through a real C{chunkproxy --record} from the
mock, replayed by a real C{chunkgen --replay} at its recorded pace.
"""

from __future__ import annotations

import json
import os
from typing import Any

from twisted.internet.defer import inlineCallbacks
from twisted.internet.task import Clock, deferLater
from twisted.trial.unittest import SynchronousTestCase, TestCase
from twisted.web.resource import Resource

from tests.support import (
    LineProcess,
    Server,
    StreamingRequest,
    fetch,
    onceAcrossRunners,
    reactor,
    render,
    startTwistd,
    stopped,
    twistdCommand,
    until,
)
from twisted_stream.exchange._recording import Recorder, matchKey
from twisted_stream.mock._replay import Library, ReplayResource


class MatchTests(SynchronousTestCase):
    def test_volatileFieldsIgnored(self) -> None:
        """
        The body is compared as JSON, without the volatile fields and the
        mock's own; the method and the path (not its query) count.
        """
        a = matchKey(b"POST", b"/v1/chat", b'{"model":"m","messages":[1],"stream_options":{"include_usage":true}}')
        b = matchKey(b"POST", b"/v1/chat?key=x", b'{"messages": [1], "model": "m", "mock_ttft": 0, "user": "u"}')
        self.assertEqual(a, b)
        self.assertNotEqual(a, matchKey(b"POST", b"/v1/chat", b'{"model":"m","messages":[2]}'))
        self.assertNotEqual(a, matchKey(b"GET", b"/v1/chat", b'{"model":"m","messages":[1]}'))
        self.assertEqual(matchKey(b"GET", b"/x", b"\xff"), matchKey(b"GET", b"/x", b"\xff"))
        self.assertNotEqual(matchKey(b"GET", b"/x", b"\xff"), matchKey(b"GET", b"/x", b"\xfe"))


class FormatTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.folder = self.mktemp()
        self.clock = Clock()

    def record(self) -> None:
        recorder = Recorder(self.folder, self.clock)
        self.clock.advance(100)
        recording = recorder.start(b"POST", b"/v1/x?key=secret", b'{"a":1}', 200,
                                   [(b"Content-Type", b"text/event-stream")], started=99.5)  # fmt: skip
        recording.piece(b"data: one\n\n")
        self.clock.advance(0.25)
        recording.piece(b"\xff\xfe")
        recording.end("complete")

    def test_oneJSONLinePerPiece(self) -> None:
        """
        The head (no query string), a line per piece with its offset from
        the request, bytes that are not UTF-8 as base64, then the end.
        """
        self.record()
        (name,) = os.listdir(self.folder)
        with open(os.path.join(self.folder, name)) as f:
            lines = [json.loads(line) for line in f]
        self.assertEqual(lines[0], {"method": "POST", "path": "/v1/x", "body": '{"a":1}', "status": 200,
                                    "headers": [["Content-Type", "text/event-stream"]]})  # fmt: skip
        self.assertEqual(lines[1:], [{"t": 0.5, "data": "data: one\n\n"}, {"t": 0.75, "data_base64": "//4="},
                                     {"end": "complete", "t": 0.75}])  # fmt: skip

    def test_replayedAtItsOffsets(self) -> None:
        """
        A matching request gets the recorded status, headers and pieces at
        their offsets, divided by C{X-Mock-Speed}; one that matches nothing
        goes to the fallback.
        """
        self.record()
        fallback = Resource()
        fallback.putChild(b"v1", _Static(b"live"))
        replay = ReplayResource(Library.load(self.folder), fallback, self.clock)
        for speed, offsets in ((None, (0.5, 0.75)), (b"2", (0.25, 0.375))):
            request = StreamingRequest([b"v1", b"x"], method=b"POST", uri=b"/v1/x", body=b'{"a": 1, "mock_x": 2}')
            if speed is not None:
                request.requestHeaders.setRawHeaders(b"x-mock-speed", [speed])
            render(replay, request)
            self.assertEqual((request.responseCode, request.responseHeaders.getRawHeaders(b"content-type")),
                             (200, [b"text/event-stream"]))  # fmt: skip
            self.clock.advance(offsets[0] - 0.001)
            self.assertEqual(request.written, [])
            self.clock.advance(0.001)
            self.assertEqual(request.written, [b"data: one\n\n"])
            self.clock.advance(offsets[1] - offsets[0])
            self.assertEqual(request.written, [b"data: one\n\n", b"\xff\xfe"])
            self.assertEqual(request.finished, 1)
        request = StreamingRequest([b"v1", b"x"], method=b"POST", uri=b"/v1/x", body=b'{"a": 2}')
        self.assertEqual(render(replay, request), b"live")

    def test_recordingStopsAtItsBound(self) -> None:
        """
        Past C{maxBytes} of body, a recording holds the bytes up to the
        bound, then the C{truncated} marker, and nothing more, whatever
        follows; replayed, it ends there as broken off.
        """
        recorder = Recorder(self.folder, self.clock, maxBytes=10)
        recording = recorder.start(b"GET", b"/x", b"", 200, [], started=0)
        for piece in (b"12345", b"6789", b"abcdef", b"more", b"and more"):
            self.clock.advance(1)
            recording.piece(piece)
        recording.end("complete")
        (name,) = os.listdir(self.folder)
        with open(os.path.join(self.folder, name)) as f:
            lines = [json.loads(line) for line in f]
        self.assertEqual(
            lines[1:],
            [{"t": 1, "data": "12345"}, {"t": 2, "data": "6789"}, {"t": 3, "data": "a"}, {"truncated": 10, "t": 3}],
        )
        replayed = Library.load(self.folder).match(b"GET", b"/x", b"")
        assert replayed is not None
        self.assertEqual((replayed.pieces[-1], replayed.outcome), ((3.0, b"a"), "truncated"))

    def test_notARecording(self) -> None:
        os.makedirs(self.folder)
        with open(os.path.join(self.folder, "bad.jsonl"), "w") as f:
            f.write("{nope\n")
        with self.assertRaises(ValueError) as caught:
            Library.load(self.folder)
        self.assertIn("bad.jsonl is not a recording", str(caught.exception))


@onceAcrossRunners
class RecordingBoundTests(TestCase):
    timeout = 60

    @inlineCallbacks
    def test_responseGoesOnPastTheBound(self) -> Any:
        """
        A real C{chunkproxy --record --record-max-bytes 1000} forwarding
        5,000 bytes: the client gets all of them, the file holds the first
        1,000 and the C{truncated} marker (it recorded everything: one
        200 MB response made a 210 MB file).
        """
        folder = os.path.abspath(self.mktemp())
        generator: Server = yield startTwistd(self, "chunkgen")
        proxy: Server = yield startTwistd(
            self, "chunkproxy", "--upstream", generator.url + "generate", "--record", folder, "--record-max-bytes", "1000"
        )
        answer = yield fetch(proxy.url + "stream?count=50&size=100&interval=0")
        self.assertEqual((answer.status, len(answer.body)), (200, 5000))
        lines = yield _finishedRecording(folder)
        self.assertEqual(lines[-1]["truncated"], 1000)
        recorded = "".join(line["data"] for line in lines[1:-1])
        self.assertEqual(recorded, answer.body[:1000].decode())


_HEAD = {"method": "POST", "path": "/v1/x", "body": "", "status": 200, "headers": [["Content-Type", "text/plain"]]}

_HOSTILE: list[tuple[str, list[dict[str, Any]], str, str]] = [
    ("status", [{**_HEAD, "status": 99999}], "line 1", "status 99999 is not a number from 100 to 599"),
    ("status-text", [{**_HEAD, "status": "200"}], "line 1", "status '200' is not a number from 100 to 599"),
    ("crlf-name", [{**_HEAD, "headers": [["X-A\r\nX-B", "1"]]}], "line 1", "header 'X-A\\r\\nX-B'"),
    ("crlf-value", [{**_HEAD, "headers": [["X-A", "1\r\nX-B: 2"]]}], "line 1", "header 'X-A'"),
    ("far", [_HEAD, {"t": 1e12, "data": "x"}], "line 2", "t 1000000000000.0 is not a number of seconds from 0"),
    ("negative", [_HEAD, {"t": 1, "data": "x"}, {"t": -5, "data": "y"}], "line 3", "t -5 is not a number of seconds from 1"),
    ("backwards", [_HEAD, {"t": 3, "data": "x"}, {"end": "complete", "t": 2}], "line 3", "t 2 is not a number of seconds from 3 to"),
    ("nan", [_HEAD, {"t": "soon", "data": "x"}], "line 2", "t 'soon' is not a number"),
]
"""Recordings no replay may serve: a name, the lines, and where and why it
is refused."""


@onceAcrossRunners
class HostileRecordingTests(TestCase):
    timeout = 60

    @inlineCallbacks
    def test_refusedAtStart(self) -> Any:
        """
        C{chunkgen --replay} with a recording whose status is no HTTP status,
        whose header would break the response (CR LF), or whose offsets are
        negative, go backwards or lie a day beyond the line before: it does
        not start, and says which file and line, and why, in one line (it
        sent C{99999} on the wire, hung with no headers for C{t: 1e12}, and
        answered a CR LF header with a 500 and a traceback).
        """
        for name, lines, where, why in _HOSTILE:
            folder = os.path.abspath(self.mktemp())
            os.makedirs(folder)
            with open(os.path.join(folder, name + ".jsonl"), "w") as f:
                f.writelines(json.dumps(line) + "\n" for line in lines)
            process = LineProcess.spawn(twistdCommand(), "-n", "--pidfile=", "chunkgen", "--replay", folder)
            # One that starts after all is stopped when the test ends, and
            # fails it within 10 s.
            self.addCleanup(stopped, process)
            yield until(lambda p=process: p.exitCode.called, 10, lambda p=process: p.text)  # type: ignore[misc]
            code = yield process.exitCode
            output = process.text + process.stderr.decode()
            self.assertEqual(code, 1, output)
            self.assertIn(f"--replay: {folder}/{name}.jsonl {where} is not a recording: {why}", output)
            self.assertNotIn("Traceback", output)


@inlineCallbacks
def _finishedRecording(folder: str) -> Any:
    """
    Wait (2 s at most) for the one recording in C{folder} to be finished
    (its file ends with C{end} or C{truncated}: the proxy writes it after
    the stream's last bytes).

    @return: A Deferred firing with its lines, decoded.
    """
    lines: list[dict[str, Any]] = []
    for _ in range(100):
        names = os.listdir(folder)
        if names:
            with open(os.path.join(folder, names[0])) as f:
                lines = [json.loads(line) for line in f]
        if lines and ("end" in lines[-1] or "truncated" in lines[-1]):
            break
        yield deferLater(reactor, 0.02, lambda: None)
    return lines


class _Static(Resource):
    isLeaf = True

    def __init__(self, body: bytes) -> None:
        super().__init__()
        self._body = body

    def render(self, request: Any) -> bytes:
        return self._body


@onceAcrossRunners
class RecordReplayTests(TestCase):
    timeout = 60

    @inlineCallbacks
    def test_recordedThenReplayed(self) -> Any:
        """
        A chat completion streamed from the mock through C{chunkproxy
        --record}, then asked of C{chunkgen --replay} (with a volatile field
        changed): the same events, each within 25 ms of its recorded offset
        (10 ms on an idle machine; a CI run with both runners busy saw 19).
        """
        folder = os.path.abspath(self.mktemp())
        generator: Server = yield startTwistd(self, "chunkgen", "--ttft", "0.2", "--tokens-per-second", "20")
        proxy: Server = yield startTwistd(self, "chunkproxy", "--route", f"/v1/={generator.url}v1/", "--record", folder)
        ask = {"model": "mock-echo", "stream": True, "messages": [{"role": "user", "content": "one two three four five"}]}
        live = yield fetch(proxy.url + "v1/chat/completions", b"POST", [(b"Content-Type", b"application/json")],
                           body=json.dumps({**ask, "stream_options": {"include_usage": True}}).encode())  # fmt: skip
        self.assertEqual(live.status, 200)
        lines = yield _finishedRecording(folder)
        self.assertEqual(lines[-1]["end"], "complete")
        recorded = lines[1:-1]
        replayer: Server = yield startTwistd(self, "chunkgen", "--replay", folder)
        # Its first replay pays the process's cold start (seen: 12 ms on a
        # loaded machine, with a first request to another path before it),
        # which is not the replay's timing: the second replay is timed.
        for _ in range(2):
            again = yield fetch(replayer.url + "v1/chat/completions", b"POST", [(b"Content-Type", b"application/json")],
                                body=json.dumps({**ask, "mock_ttft": 5}).encode())  # fmt: skip
            self.assertEqual(again.body, live.body)
        arrivals = [(when - again.sentAt, line) for when, line in again.lineArrivals() if line.startswith(b"data:")]
        # A piece may hold more than one event: each piece's are timed by
        # the first's arrival.
        for piece in recorded:
            events = piece["data"].count("data:")
            (offset, _), arrivals = arrivals[0], arrivals[events:]
            self.assertLess(abs(offset - piece["t"]), 0.025, (offset, piece))
        self.assertEqual(arrivals, [])
