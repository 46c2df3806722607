"""
Tests for L{twisted_stream._llmusage}: events read byte for byte without
sockets, and a real chunkproxy in front of chunkgen's mock LLM, whose
stream events and metrics say what each answer delivered, an abandoned one
too.
"""

from __future__ import annotations

import json
from typing import Any

from twisted.internet.defer import inlineCallbacks
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.task import deferLater
from twisted.trial.unittest import SynchronousTestCase, TestCase

from tests.support import RawClient, Server, fetch, reactor, startTwistd
from tests.test_metrics import samples
from twisted_stream._llmusage import MAX_LINE, UsageReader
from twisted_stream.apis import Answer, ChatRequest
from twisted_stream.apis.gemini import GeminiGenerate
from twisted_stream.apis.responses import OpenAIResponses
from twisted_stream.mockllm import PASSAGE, tokens

_OPENAI = (
    b'data: {"id":"c","object":"chat.completion.chunk","model":"gpt-x","choices":[{"index":0,'
    b'"delta":{"role":"assistant","content":""}}]}\n\n'
    b'data: {"id":"c","object":"chat.completion.chunk","model":"gpt-x","choices":[{"index":0,'
    b'"delta":{"content":"Hello"}}]}\n\n'
    b'data: {"id":"c","object":"chat.completion.chunk","model":"gpt-x","choices":[{"index":0,'
    b'"delta":{"content":" world"}}]}\n\n'
    b'data: {"id":"c","object":"chat.completion.chunk","model":"gpt-x","choices":[],'
    b'"usage":{"prompt_tokens":7,"completion_tokens":2,"total_tokens":9}}\n\n'
    b"data: [DONE]\n\n"
)

_ANTHROPIC = (
    b'event: message_start\r\ndata: {"type":"message_start","message":{"model":"claude-x",'
    b'"usage":{"input_tokens":11,"output_tokens":1}}}\r\n\r\n'
    b'event: content_block_delta\r\ndata: {"type":"content_block_delta","index":0,'
    b'"delta":{"type":"text_delta","text":"Hi"}}\r\n\r\n'
    b'event: message_delta\r\ndata: {"type":"message_delta","delta":{"stop_reason":"end_turn"},'
    b'"usage":{"output_tokens":3}}\r\n\r\n'
)


def _read(stream: bytes, piece: int) -> UsageReader:
    reader = UsageReader()
    for start in range(0, len(stream), piece):
        reader.feed(stream[start : start + piece])
    return reader


class ReaderTests(SynchronousTestCase):
    def test_openAI(self) -> None:
        """
        The model, the deltas with content, and the final usage chunk, the
        same however the stream was cut into pieces.
        """
        for piece in (1, 7, len(_OPENAI)):
            self.assertEqual(
                _read(_OPENAI, piece).fields(),
                {"model": "gpt-x", "llm_deltas": 2, "prompt_tokens": 7, "completion_tokens": 2},
            )

    def test_anthropic(self) -> None:
        for piece in (1, 13, len(_ANTHROPIC)):
            self.assertEqual(
                _read(_ANTHROPIC, piece).fields(),
                {"model": "claude-x", "llm_deltas": 1, "prompt_tokens": 11, "completion_tokens": 3},
            )

    def test_responsesAPI(self) -> None:
        """
        OpenAI's Responses API events, as the mock streams them: the model
        from C{response.created}, a delta per text delta, the usage from
        C{response.completed}.
        """
        api = OpenAIResponses()
        chat = ChatRequest("gpt-r", [("user", "a b c")], True, True, None, {})
        answer = Answer("resp_1", 0, chat, 9)
        stream = api.opening(answer) + api.token(answer, "a") + api.token(answer, " b") + api.closing(answer, "complete", 2)
        for piece in (1, 17, len(stream)):
            self.assertEqual(
                _read(stream, piece).fields(),
                {"model": "gpt-r", "llm_deltas": 2, "prompt_tokens": 9, "completion_tokens": 2},
            )

    def test_gemini(self) -> None:
        api = GeminiGenerate("gemini-x", True)
        chat = ChatRequest("gemini-x", [("user", "a b")], True, True, None, {})
        answer = Answer("r1", 0, chat, 4)
        stream = api.token(answer, "a") + api.token(answer, " b") + api.closing(answer, "complete", 2)
        for piece in (1, 9, len(stream)):
            self.assertEqual(
                _read(stream, piece).fields(),
                {"model": "gemini-x", "llm_deltas": 2, "prompt_tokens": 4, "completion_tokens": 2},
            )

    def test_notAnLLM(self) -> None:
        self.assertEqual(_read(b"data: Chunk 1\n\ndata: {not json}\n\n: keep-alive\n\n", 5).fields(), {})

    def test_longLineSkipped(self) -> None:
        """
        A line longer than the limit is skipped, not held; what follows it is
        read.
        """
        reader = UsageReader()
        reader.feed(b'data: {"x": "' + b"a" * (MAX_LINE + 10))
        reader.feed(b"a" * 100 + b'"}\n\n')
        self.assertEqual(reader._partial, b"")
        reader.feed(_OPENAI)
        self.assertEqual(reader.fields()["llm_deltas"], 2)


class ThroughTheGatewayTests(TestCase):
    timeout = 60

    @inlineCallbacks
    def test_completeAndAbandoned(self) -> Any:
        """
        A chat completion with usage asked for: its event carries the model,
        one delta per token and the mock's token counts; one the client
        abandons after a few tokens carries what was forwarded until then,
        as client_gone; the metrics count both.
        """
        generator: Server = yield startTwistd(self, "chunkgen", "--ttft", "0.05", "--tokens-per-second", "50")
        proxy: Server = yield startTwistd(
            self, "chunkproxy", "--upstream", generator.url + "generate", "--log-format", "json"
        )
        body = json.dumps(
            {"model": "mock-passage", "stream": True, "stream_options": {"include_usage": True},
             "messages": [{"role": "user", "content": "hi"}]}
        ).encode()
        yield fetch(proxy.url + "v1/chat/completions", method=b"POST", body=body,
                    headers=[(b"Content-Type", b"application/json")])
        leaving = RawClient(
            b"POST /v1/chat/completions HTTP/1.1\r\nHost: g\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
        )
        yield connectProtocol(TCP4ClientEndpoint(reactor, "127.0.0.1", proxy.port), leaving)
        yield deferLater(reactor, 0.3, lambda: None)
        leaving.transport.loseConnection()  # type: ignore[union-attr]
        yield leaving.closed
        yield deferLater(reactor, 0.3, lambda: None)
        streams = [
            record
            for record in (json.loads(line) for line in proxy.output.splitlines())
            if record["namespace"] == "chunkproxy.stream"
        ]
        self.assertEqual([s["outcome"] for s in streams], ["complete", "client_gone"])
        complete, gone = streams
        count = len(tokens(PASSAGE))
        self.assertEqual(
            {k: complete[k] for k in ("model", "llm_deltas", "completion_tokens")},
            {"model": "mock-passage", "llm_deltas": count, "completion_tokens": count},
        )
        self.assertGreater(complete["prompt_tokens"], 0)
        self.assertEqual(gone["model"], "mock-passage")
        self.assertTrue(0 < gone["llm_deltas"] < count, gone)
        scrape = yield fetch(proxy.url + "metrics")
        found = samples(scrape.body.decode())
        self.assertEqual(
            found[("chunkproxy_llm_deltas_total", (("model", "mock-passage"), ("route", "/v1/")))],
            count + gone["llm_deltas"],
        )
        self.assertEqual(
            found[("chunkproxy_llm_tokens_total", (("kind", "completion"), ("model", "mock-passage"), ("route", "/v1/")))],
            count,
        )
