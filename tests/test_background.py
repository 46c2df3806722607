"""
Tests for L{twisted_stream.mock._background}: the mock's background
Responses, in memory on a clock, and resumed by the official openai SDK,
directly and through a real chunkproxy.
"""

from __future__ import annotations

import json
import sys
from typing import Any

from twisted.internet.defer import inlineCallbacks
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase, TestCase

from tests.support import PEERS, LineProcess, Server, StreamingRequest, onceAcrossRunners, render, startTwistd
from twisted_stream.mock.llm import PASSAGE, MockLLM, Pace, ResponsesResource, tokens


def _request(method: bytes, path: list[bytes], body: Any = None, args: Any = None) -> StreamingRequest:
    request = StreamingRequest(path, method=method, uri=b"/v1/responses", body=json.dumps(body or {}).encode())
    request.args = args or {}
    return request


def _events(data: bytes) -> list[dict[str, Any]]:
    return [
        json.loads(line[len(b"data: ") :])
        for line in data.split(b"\n")
        if line.startswith(b"data: ")
    ]


class BackgroundTests(SynchronousTestCase):
    """
    The mock's background Responses on a fake clock (10 tokens a second,
    the first after 0.5 s).
    """

    def setUp(self) -> None:
        self.clock = Clock()
        self.resource = ResponsesResource(MockLLM(self.clock, Pace(ttft=0.5, tokensPerSecond=10)))

    def create(self, stream: bool) -> StreamingRequest:
        request = _request(
            b"POST", [], {"model": "mock-passage", "input": "hi", "background": True, "stream": stream,
                          "max_output_tokens": 5},
        )  # fmt: skip
        result = render(self.resource, request)
        if isinstance(result, bytes):
            request.write(result)
            request.finish()
        return request

    def retrieve(self, id: str, **args: bytes) -> StreamingRequest:
        request = _request(b"GET", [id.encode()], args={k.encode(): [v] for k, v in args.items()})
        result = render(self.resource, request)
        if isinstance(result, bytes):
            request.write(result)
            request.finish()
        return request

    def test_runsWithNoClient(self) -> None:
        """
        Not streamed: the response at once, queued; it runs with no client
        connected, and is then retrieved completed, whole.
        """
        created = self.create(stream=False)
        response = json.loads(b"".join(created.written))
        self.assertEqual((response["status"], response["background"]), ("queued", True))
        self.clock.advance(0.6)
        self.assertEqual(json.loads(b"".join(self.retrieve(response["id"]).written))["status"], "in_progress")
        self.clock.advance(1)
        done = json.loads(b"".join(self.retrieve(response["id"]).written))
        self.assertEqual(done["status"], "incomplete")
        self.assertEqual(done["output"][0]["content"][0]["text"], "".join(tokens(PASSAGE)[:5]))

    def test_streamFromAnEvent(self) -> None:
        """
        A client that leaves mid-stream: the answer goes on; a retrieve
        with stream=true and starting_after=N gets every event after N,
        then the later ones live.
        """
        created = self.create(stream=True)
        self.clock.advance(0.6)
        first = _events(b"".join(created.written))
        created.processingFailed(Exception("gone"))  # the client leaves
        id = first[0]["response"]["id"]
        cut = first[-1]["sequence_number"]
        self.clock.advance(0.2)
        resumed = self.retrieve(id, stream=b"true", starting_after=str(cut).encode())
        self.clock.advance(2)
        rest = _events(b"".join(resumed.written))
        numbers = [event["sequence_number"] for event in first + rest]
        self.assertEqual(numbers, list(range(len(numbers))))
        self.assertEqual(rest[-1]["type"], "response.incomplete")
        self.assertTrue(resumed.finished)

    def test_cancel(self) -> None:
        created = self.create(stream=False)
        id = json.loads(b"".join(created.written))["id"]
        self.clock.advance(0.7)
        request = _request(b"POST", [id.encode(), b"cancel"])
        cancelled = json.loads(render(self.resource, request))
        self.assertEqual(cancelled["status"], "cancelled")
        self.clock.advance(5)
        self.assertEqual(json.loads(b"".join(self.retrieve(id).written))["status"], "cancelled")

    def test_keptWithinBounds(self) -> None:
        """
        The answers kept stay within the bytes allowed: past them, the
        oldest is forgotten (a 404), stopped if it was still being made.
        """
        self.resource.answers._keepBytes = 10_000
        ids = []
        for _ in range(4):
            ids.append(json.loads(b"".join(self.create(stream=False).written))["id"])
            self.clock.advance(1)
        # (When the fourth was added, the three before it were done.)
        sizes = [self.resource.answers.get(id).size for id in ids[1:3]]  # type: ignore[union-attr]
        self.assertLessEqual(sum(sizes), 10_000)
        self.assertGreater(sum(sizes) + sizes[0], 10_000, "one more would not fit")
        forgotten = [self.retrieve(id).responseCode == 404 for id in ids]
        self.assertEqual(forgotten, [True, False, False, False], sizes)

    def test_unknown(self) -> None:
        request = self.retrieve("resp_nope")
        self.assertEqual(request.responseCode, 404)
        self.assertIn(b"No response found with id 'resp_nope'.", b"".join(request.written))


@onceAcrossRunners
class SDKTests(TestCase):
    """
    The openai SDK's background resume: create(background=True,
    stream=True), leave after some events, retrieve(id, stream=True,
    starting_after=N): the two parts join to exactly the whole answer.
    """

    timeout = 60

    @inlineCallbacks
    def resumed(self, baseURL: str) -> Any:
        client = LineProcess.spawn(sys.executable, str(PEERS / "openai_background.py"), baseURL, "mock-passage", "hi", "8")
        code = yield client.exitCode
        self.assertEqual(code, 0, client.stderr.decode())
        seen = json.loads(client.lines[-1][1])
        self.assertEqual(seen["status"], "completed")
        self.assertEqual(seen["before"] + seen["after"], seen["text"])
        self.assertEqual(seen["text"], PASSAGE)
        self.assertEqual(seen["numbers"], list(range(len(seen["numbers"]))))
        self.assertTrue(seen["before"] and seen["after"])
        return seen

    @inlineCallbacks
    def test_direct(self) -> Any:
        generator: Server = yield startTwistd(self, "chunkgen", "--ttft", "0.05", "--tokens-per-second", "100")
        yield self.resumed(generator.url + "v1")

    @inlineCallbacks
    def test_throughTheGateway(self) -> Any:
        generator: Server = yield startTwistd(self, "chunkgen", "--ttft", "0.05", "--tokens-per-second", "100")
        proxy: Server = yield startTwistd(self, "chunkproxy", "--route", f"/v1/={generator.url}v1/")
        yield self.resumed(proxy.url + "v1")
