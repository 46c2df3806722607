"""
Tests for L{twisted_stream.exchange._llmusage}: events read byte for byte without
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

from tests.support import RawClient, Server, fetch, onceAcrossRunners, reactor, samples, startTwistd
from twisted_stream.exchange._llmusage import MAX_LINE, UsageReader, WholeAnswerReader, apiOf
from twisted_stream.mock.apis import Answer, ChatRequest
from twisted_stream.mock.apis.gemini import GeminiGenerate
from twisted_stream.mock.apis.responses import OpenAIResponses
from twisted_stream.mock.llm import PASSAGE, tokens

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

    def test_spacedAndToolCalls(self) -> None:
        """
        Events written with spaces (Python's C{json.dumps}), tool-call
        deltas, and what is no delta (an empty or null content, a
        C{reasoning_content}, a Responses C{output_text.done} with the whole
        text, Anthropic's C{content_block_start}): counted as when each event
        is decoded.
        """
        events = [
            {"object": "chat.completion.chunk", "model": "m", "choices": [{"delta": {"role": "assistant", "content": ""}}]},
            {"object": "chat.completion.chunk", "model": "m", "choices": [{"delta": {"content": "\"quoted\" {x}"}}]},
            {"object": "chat.completion.chunk", "model": "m", "choices": [{"delta": {"content": None}}]},
            {"object": "chat.completion.chunk", "model": "m", "choices": [{"delta": {"reasoning_content": "hm"}}]},
            {"object": "chat.completion.chunk", "model": "m",
             "choices": [{"delta": {"tool_calls": [{"index": 0, "function": {"arguments": "{"}}]}}]},
            {"type": "response.output_text.done", "text": "the whole text"},
            {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
            {"type": "content_block_delta", "index": 0, "delta": {"type": "input_json_delta", "partial_json": "{"}},
            {"candidates": [{"content": {"parts": [{"text": "g"}]}}]},
            {"candidates": [{"content": {"parts": [{"text": ""}]}}]},
            {"object": "chat.completion.chunk", "model": "m", "choices": [], "usage": None},
            {"object": "chat.completion.chunk", "model": "m", "choices": [],
             "usage": {"prompt_tokens": 3, "completion_tokens": 4}},
        ]  # fmt: skip
        for separators in ((", ", ": "), (",", ":")):
            stream = b"".join(b"data: " + json.dumps(e, separators=separators).encode() + b"\n\n" for e in events)
            self.assertEqual(
                _read(stream, 11).fields(),
                {"model": "m", "llm_deltas": 4, "prompt_tokens": 3, "completion_tokens": 4},
                separators,
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


def _whole(document: Any, piece: int = 1000) -> dict[str, Any]:
    data = json.dumps(document).encode()
    reader = WholeAnswerReader()
    for start in range(0, len(data), piece):
        reader.feed(data[start : start + piece])
    return reader.fields()


class WholeAnswerTests(SynchronousTestCase):
    """
    Answers in one JSON document, small (decoded whole) and large (read
    where their model and usage are), in the shapes of each API.
    """

    def test_eachAPI(self) -> None:
        long = "word " * 20000
        answers = [
            ({"object": "chat.completion", "model": "gpt-x", "choices": [{"message": {"content": text}}],
              "usage": {"prompt_tokens": 5, "completion_tokens": 6, "total_tokens": 11}}, 5, 6)
            for text in ("short", long)
        ] + [
            ({"object": "response", "model": "gpt-r", "output": [{"content": [{"text": text}]}],
              "usage": {"input_tokens": 7, "output_tokens": 8, "output_tokens_details": {"reasoning_tokens": 0}}}, 7, 8)
            for text in ("short", long)
        ] + [
            ({"type": "message", "model": "claude-x", "content": [{"type": "text", "text": text}],
              "usage": {"input_tokens": 9, "output_tokens": 10}}, 9, 10)
            for text in ("short", long)
        ]  # fmt: skip
        for document, prompt, completion in answers:
            model = document["model"]
            self.assertEqual(
                _whole(document),
                {"model": model, "llm_deltas": 0, "prompt_tokens": prompt, "completion_tokens": completion},
            )

    def test_gemini(self) -> None:
        for text in ("short", "word " * 20000):
            document = {
                "candidates": [{"content": {"parts": [{"text": text}]}}],
                "usageMetadata": {"promptTokenCount": 3, "candidatesTokenCount": 4,
                                  "promptTokensDetails": [{"modality": "TEXT", "tokenCount": 3}]},
                "modelVersion": "gemini-x",
            }  # fmt: skip
            self.assertEqual(
                _whole(document), {"model": "gemini-x", "llm_deltas": 0, "prompt_tokens": 3, "completion_tokens": 4}
            )

    def test_embeddings(self) -> None:
        """
        A list of 20 vectors of 1,536 floats (over 300 KB): its model and
        usage, with no completion tokens; the reader holds 48 KiB and a piece
        at most.
        """
        document = {
            "object": "list",
            "data": [{"object": "embedding", "index": i, "embedding": [0.0123456] * 1536} for i in range(20)],
            "model": "text-embedding-3-small",
            "usage": {"prompt_tokens": 40, "total_tokens": 40},
        }
        data = json.dumps(document).encode()
        self.assertGreater(len(data), 300_000)
        reader = WholeAnswerReader()
        for start in range(0, len(data), 4096):
            reader.feed(data[start : start + 4096])
            self.assertLessEqual(reader.held(), 48 * 1024 + 4096)
        self.assertEqual(
            reader.fields(),
            {"model": "text-embedding-3-small", "llm_deltas": 0, "prompt_tokens": 40, "completion_tokens": None},
        )

    def test_notAnLLM(self) -> None:
        self.assertEqual(_whole({"error": {"message": "bad"}}), {})
        self.assertEqual(_whole([1, 2, 3]), {})
        reader = WholeAnswerReader()
        reader.feed(b"not json")
        self.assertEqual(reader.fields(), {})


class APITests(SynchronousTestCase):
    def test_apiOf(self) -> None:
        for path, api in (
            (b"/v1/chat/completions", "chat"),
            (b"/openai/chat/completions?x=1", "chat"),
            (b"/v1/responses", "responses"),
            (b"/v1/messages", "messages"),
            (b"/v1beta/models/gemini-2.0-flash:streamGenerateContent?alt=sse", "gemini"),
            (b"/v1beta/models/gemini-2.0-flash:generateContent", "gemini"),
            (b"/v1/embeddings", "embeddings"),
            (b"/v1beta/models/text-embedding-004:batchEmbedContents", "embeddings"),
            (b"/v1/models", "other"),
            (b"/stream", "other"),
        ):
            self.assertEqual(apiOf(path), api, path)


@onceAcrossRunners
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
            found[("chunkproxy_llm_deltas_total", (("api", "chat"), ("model", "mock-passage"), ("route", "/v1/")))],
            count + gone["llm_deltas"],
        )
        self.assertEqual(
            found[("chunkproxy_llm_tokens_total", (("api", "chat"), ("kind", "completion"), ("model", "mock-passage"), ("route", "/v1/")))],
            count,
        )

    @inlineCallbacks
    def test_wholeAnswersAndAPIs(self) -> Any:
        """
        Whole (not streamed) answers of each API from the mock, through a
        real chunkproxy: each event carries the API, the model and the
        token counts (they were left out), the metrics count tokens by API;
        an answer the upstream gave with 400 is C{upstream_error_status},
        not C{complete}.
        """
        generator: Server = yield startTwistd(self, "chunkgen", "--ttft", "0", "--tokens-per-second", "1000")
        proxy: Server = yield startTwistd(
            self, "chunkproxy", "--route", f"/v1/={generator.url}v1/", "--route", f"/v1beta/={generator.url}v1beta/",
            "--log-format", "json",
        )  # fmt: skip
        messages = [{"role": "user", "content": "one two three"}]
        asks = [
            ("v1/chat/completions", {"model": "mock-echo", "messages": messages}),
            ("v1/responses", {"model": "mock-echo", "input": "one two three"}),
            ("v1/messages", {"model": "mock-echo", "max_tokens": 50, "messages": messages}),
            ("v1beta/models/mock-echo:generateContent", {"contents": [{"role": "user", "parts": [{"text": "one two three"}]}]}),
            ("v1/embeddings", {"model": "mock-embed", "input": ["one", "two"]}),
        ]
        for path, ask in asks:
            answer = yield fetch(
                proxy.url + path, b"POST", [(b"Content-Type", b"application/json")], body=json.dumps(ask).encode()
            )
            self.assertEqual(answer.status, 200, answer.body)
        bad = yield fetch(proxy.url + "v1/chat/completions", b"POST", [(b"Content-Type", b"application/json")], body=b"{nope")
        self.assertEqual(bad.status, 400)
        yield deferLater(reactor, 0.2, lambda: None)
        streams = [
            record
            for record in (json.loads(line) for line in proxy.output.splitlines())
            if record["namespace"] == "chunkproxy.stream"
        ]
        seen = [(s["api"], s.get("model"), s.get("prompt_tokens"), s.get("completion_tokens"), s["outcome"]) for s in streams]
        self.assertEqual([row[0] for row in seen], ["chat", "responses", "messages", "gemini", "embeddings", "chat"])
        for api, model, prompt, completion, outcome in seen[:4]:
            self.assertEqual((model, outcome), ("mock-echo", "complete"), api)
            self.assertGreater(prompt, 0, api)
            self.assertEqual(completion, 3, api)
        self.assertEqual(seen[4][1], "mock-embed")
        self.assertGreater(seen[4][2], 0)
        self.assertEqual(seen[5][4], "upstream_error_status")
        scrape = yield fetch(proxy.url + "metrics")
        found = samples(scrape.body.decode())
        for api, route in (("chat", "/v1/"), ("responses", "/v1/"), ("messages", "/v1/"), ("gemini", "/v1beta/")):
            key = ("chunkproxy_llm_tokens_total", (("api", api), ("kind", "completion"), ("model", "mock-echo"), ("route", route)))
            self.assertEqual(found[key], 3, key)
        key = ("chunkproxy_requests_total", (("api", "chat"), ("outcome", "upstream_error_status"), ("route", "/v1/"), ("status", "400")))
        self.assertEqual(found[key], 1)
