"""
Tests for L{twisted_stream.mock.llm} and L{twisted_stream.mock.apis.openai}: the
mock LLM's answers, shapes and exact timing, on a fake clock over StubTreq.
"""

from __future__ import annotations

import base64
import json
import struct
from typing import Any

import treq
from treq.testing import StubTreq
from twisted.internet.error import ConnectionDone
from twisted.internet.task import Clock
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from tests.support import StreamingRequest, chatRequest, render, sseEvents, typedEvents
from tests.support.llm import MockOnClock
from twisted_stream.mock._script import parseRules
from twisted_stream.mock.apis.openai import OpenAIChat
from twisted_stream.mock.generator import GeneratorRoot, StreamSpec
from twisted_stream.mock.llm import PASSAGE, REASONING, ChatResource, MockLLM, Pace, tokens

URL = "http://gen/v1/chat/completions"






class TokensTests(SynchronousTestCase):
    def test_wordsWithTheirSpace(self) -> None:
        self.assertEqual(tokens("Hi there,  you!"), ["Hi", " there,", "  you!"])
        self.assertEqual("".join(tokens(PASSAGE)), PASSAGE)
        self.assertEqual(tokens(""), [])


class ContentTextTests(SynchronousTestCase):
    def test_blocksJoinedOthersSkipped(self) -> None:
        from twisted_stream.mock.apis import RequestError, contentText

        blocks = [{"type": "text", "text": "a"}, {"type": "image", "source": {}}, {"type": "text", "text": "b"}]
        self.assertEqual(contentText(blocks, "m", lambda p, i: f"{p}[{i}]"), "ab")
        self.assertEqual(contentText("plain", "m", lambda p, i: f"{p}[{i}]"), "plain")
        for style, param in ((lambda p, i: f"{p}[{i}]", "m[1].text"), (lambda p, i: f"{p}.{i}", "m.1.text")):
            with self.assertRaises(RequestError) as caught:
                contentText([{"type": "text", "text": "a"}, {"type": "text"}], "m", style)
            self.assertEqual(caught.exception.param, param)
        with self.assertRaises(RequestError):
            contentText(5, "m", lambda p, i: p)


class ChatTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(1_764_000_000)
        self.client: Any = StubTreq(GeneratorRoot(StreamSpec(), self.clock, MockLLM(self.clock, Pace(ttft=0.5, tokensPerSecond=10))))
        self.pieces: list[bytes] = []

    def post(self, body: Any, headers: dict[str, str] | None = None, url: str = URL) -> Any:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        response = self.successResultOf(self.client.post(url, data=data, headers=headers or {}))
        self.done = treq.collect(response, self.pieces.append)
        self.client.flush()
        return response

    def advance(self, seconds: float) -> list[Any]:
        self.clock.advance(seconds)
        self.client.flush()
        return sseEvents(b"".join(self.pieces))

    def test_streamExactTiming(self) -> None:
        """
        Nothing before the time to first token; then the role and the first
        token together; then one token every 1/rate seconds; then the end.
        """
        response = self.post(chatRequest(stream=True))
        self.assertEqual(response.code, 200)
        self.assertEqual(response.headers.getRawHeaders(b"content-type"), [b"text/event-stream; charset=utf-8"])
        self.assertEqual(self.advance(0.499), [])
        events = self.advance(0.001)
        self.assertEqual([e["choices"][0]["delta"] for e in events], [{"role": "assistant", "content": ""}, {"content": "one"}])
        for i, word in enumerate([" two", " three"], start=3):
            self.assertEqual(len(self.advance(0.099)), i - 1, "a token came early")
            self.assertEqual(self.advance(0.001)[-1]["choices"][0]["delta"], {"content": word})
        events = self.advance(0.1)
        self.assertEqual(events[-3]["choices"][0]["delta"], {"content": " four"})
        self.assertEqual(events[-2]["choices"][0], {"index": 0, "delta": {}, "logprobs": None, "finish_reason": "stop"})
        self.assertEqual(events[-1], "[DONE]")
        self.successResultOf(self.done)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_chunkShape(self) -> None:
        """
        Every chunk is a chat.completion.chunk of one id and model; without
        include_usage none carries usage.
        """
        self.post(chatRequest(stream=True))
        events = self.advance(2)[:-1]
        self.assertEqual({e["id"] for e in events}, {events[0]["id"]})
        self.assertTrue(events[0]["id"].startswith("chatcmpl-"))
        for event in events:
            self.assertEqual(event["object"], "chat.completion.chunk")
            self.assertEqual(event["model"], "mock-echo")
            self.assertEqual(event["created"], 1_764_000_000)
            self.assertNotIn("usage", event)
        self.assertEqual("".join(e["choices"][0]["delta"].get("content", "") for e in events), "one two three four")

    def test_includeUsage(self) -> None:
        self.post(chatRequest(stream=True, stream_options={"include_usage": True}))
        events = self.advance(2)
        self.assertTrue(all(e["usage"] is None for e in events[:-2]))
        self.assertEqual(events[-2]["choices"], [])
        self.assertEqual(events[-2]["usage"], {"prompt_tokens": 4, "completion_tokens": 4, "total_tokens": 8})

    def test_maxTokens(self) -> None:
        self.post(chatRequest(stream=True, max_tokens=2))
        events = self.advance(2)
        self.assertEqual([e["choices"][0]["delta"].get("content") for e in events[1:-2]], ["one", " two"])
        self.assertEqual(events[-2]["choices"][0]["finish_reason"], "length")

    def test_passage(self) -> None:
        self.post({"model": "mock-passage", "stream": True, "messages": [{"role": "user", "content": "?"}]})
        events = self.advance(60)
        self.assertEqual("".join(e["choices"][0]["delta"].get("content", "") for e in events[:-1]), PASSAGE)

    def test_lateReactorCatchesUp(self) -> None:
        """
        A clock that jumps gets every token that fell due, at once: the count
        sent by any moment is exact.
        """
        self.post(chatRequest("a b c d e f g h", stream=True))
        self.advance(0.5)
        events = self.advance(0.35)
        self.assertEqual(len(events), 1 + 4)

    def test_wholeAnswerAfterItsTime(self) -> None:
        """
        Without stream, one chat.completion comes when the last token would
        have: after ttft + (n - 1) / rate.
        """
        requested = self.client.post(URL, data=json.dumps(chatRequest()).encode())
        self.advance(0.79)
        self.assertNoResult(requested)
        self.advance(0.02)
        response = self.successResultOf(requested)
        self.pieces.append(self.successResultOf(treq.content(response)))
        self.assertEqual(response.headers.getRawHeaders(b"content-type"), [b"application/json"])
        answer = json.loads(b"".join(self.pieces))
        self.assertEqual(answer["object"], "chat.completion")
        self.assertEqual(answer["choices"][0]["message"], {"role": "assistant", "content": "one two three four", "refusal": None})
        self.assertEqual(answer["usage"]["completion_tokens"], 4)

    def test_paceFromBodyOrHeaders(self) -> None:
        self.post(chatRequest(stream=True, mock_ttft=0, mock_tokens_per_second=1000))
        self.assertEqual(len(self.advance(0.004)), 7)
        self.pieces.clear()
        self.post(chatRequest(stream=True), headers={"X-Mock-TTFT": "2", "X-Mock-Tokens-Per-Second": "1"})
        self.assertEqual(self.advance(1.9), [])
        self.assertEqual(len(self.advance(0.1)), 2)

    def test_badRequests(self) -> None:
        """
        Bad input gets OpenAI's error JSON, with the field at fault.
        """
        cases: list[tuple[Any, int, str | None, str]] = [
            (b"{not json", 400, None, "not valid JSON"),
            (b"[1, 2]", 400, None, "JSON object"),
            ({"model": "mock-echo"}, 400, "messages", "messages is required"),
            ({"model": "mock-echo", "messages": "hi"}, 400, "messages", "non-empty array"),
            ({"model": "mock-echo", "messages": [{"role": "wizard", "content": "x"}]}, 400, "messages[0].role", "role"),
            ({"model": "mock-echo", "messages": [{"role": "user", "content": 5}]}, 400, "messages[0].content", "string"),
            ({"messages": [{"role": "user", "content": "x"}]}, 400, "model", "model is required"),
            (chatRequest(stream="yes"), 400, "stream", "boolean"),
            (chatRequest(max_tokens=0), 400, "max_tokens", "positive integer"),
            (chatRequest(stream=True, mock_ttft=600), 400, "mock_ttft", "from 0 to 60"),
            (chatRequest(mock_tokens_per_second="fast"), 400, "mock_tokens_per_second", "number"),
            ({"model": "gpt-9", "messages": [{"role": "user", "content": "x"}]}, 404, "model", "does not exist"),
        ]
        for body, status, param, text in cases:
            self.pieces.clear()
            response = self.post(body)
            self.successResultOf(self.done)
            self.assertEqual(response.code, status, body)
            error = json.loads(b"".join(self.pieces))["error"]
            self.assertEqual(error["param"], param, body)
            self.assertIn(text, error["message"])
            self.assertEqual(error["type"], "invalid_request_error")
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_modelsAndUnknownURLs(self) -> None:
        response = self.successResultOf(self.client.get("http://gen/v1/models"))
        models = json.loads(self.successResultOf(treq.content(response)))
        self.assertEqual([m["id"] for m in models["data"]], ["mock-passage", "mock-echo", "mock-tools", "mock-reasoning", "mock-embed"])
        for method, url, status in (("GET", "http://gen/v1/nope", 404), ("GET", URL, 405), ("POST", "http://gen/v1/chat/x", 404)):
            response = self.successResultOf(self.client.request(method, url))
            self.assertEqual(response.code, status, url)
            self.assertIn("error", json.loads(self.successResultOf(treq.content(response))))


class ProducerTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.resource = ChatResource(OpenAIChat(), MockLLM(self.clock, Pace(ttft=0.5, tokensPerSecond=10)))
        body = json.dumps(chatRequest("a b c d e f", stream=True)).encode()
        self.request = StreamingRequest([], method=b"POST", uri=b"/v1/chat/completions", body=body)
        render(self.resource, self.request)

    def contents(self) -> list[str]:
        return [e["choices"][0]["delta"].get("content", "") for e in sseEvents(b"".join(self.request.written))[1:]]

    def test_clientGone(self) -> None:
        """
        A client that leaves stops the answer: no timer left, nothing more
        written.
        """
        self.clock.pump([0.5, 0.1])
        self.request.processingFailed(Failure(ConnectionDone()))
        self.assertEqual(self.clock.getDelayedCalls(), [])
        written = list(self.request.written)
        self.clock.advance(5)
        self.assertEqual(self.request.written, written)

    def test_pausedThenAtPace(self) -> None:
        """
        Paused, nothing comes; resumed, the next token comes at once and the
        rest at the pace, with no burst.
        """
        self.clock.pump([0.5, 0.1])
        self.assertEqual(self.contents(), ["a", " b"])
        producer = self.request.producer
        assert producer is not None
        producer.pauseProducing()
        self.clock.pump([0.1] * 20)
        self.assertEqual(self.contents(), ["a", " b"])
        producer.resumeProducing()
        self.assertEqual(self.contents(), ["a", " b", " c"])
        self.clock.advance(0.1)
        self.assertEqual(self.contents(), ["a", " b", " c", " d"])




class AnthropicTests(SynchronousTestCase):
    """
    The same mock, in Anthropic's Messages shape at C{/v1/messages}.
    """

    def setUp(self) -> None:
        self.clock = Clock()
        self.client: Any = StubTreq(GeneratorRoot(StreamSpec(), self.clock, MockLLM(self.clock, Pace(ttft=0.5, tokensPerSecond=10))))
        self.pieces: list[bytes] = []

    def post(self, body: Any, headers: dict[str, str] | None = None) -> Any:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        requested = self.client.post("http://gen/v1/messages", data=data, headers=headers or {})
        self.clock.advance(60)
        self.client.flush()
        response = self.successResultOf(requested)
        self.pieces.append(self.successResultOf(treq.content(response)))
        return response

    def test_streamedEvents(self) -> None:
        """
        A stream is message_start and content_block_start, a text delta per
        token, then content_block_stop, message_delta (stop reason, output
        tokens) and message_stop.
        """
        response = self.post(
            {"model": "mock-echo", "max_tokens": 3, "stream": True, "system": "be brief",
             "messages": [{"role": "user", "content": [{"type": "text", "text": "one two three four"}]}]}
        )
        self.assertEqual(response.code, 200)
        events = typedEvents(b"".join(self.pieces))
        self.assertEqual(
            [kind for kind, _ in events],
            ["message_start", "content_block_start"] + ["content_block_delta"] * 3
            + ["content_block_stop", "message_delta", "message_stop"],
        )
        for kind, data in events:
            self.assertEqual(data["type"], kind)
        message = events[0][1]["message"]
        self.assertTrue(message["id"].startswith("msg_"))
        self.assertEqual((message["role"], message["model"], message["usage"]["input_tokens"]), ("assistant", "mock-echo", 6))
        self.assertEqual("".join(d["delta"]["text"] for k, d in events if k == "content_block_delta"), "one two three")
        self.assertEqual(events[-2][1]["delta"]["stop_reason"], "max_tokens")
        self.assertEqual(events[-2][1]["usage"], {"output_tokens": 3})

    def test_wholeMessage(self) -> None:
        self.post({"model": "mock-echo", "max_tokens": 100, "messages": [{"role": "user", "content": "hi there"}]})
        message = json.loads(b"".join(self.pieces))
        self.assertEqual(message["type"], "message")
        self.assertEqual(message["content"], [{"type": "text", "text": "hi there"}])
        self.assertEqual(message["stop_reason"], "end_turn")

    def test_errorsInAnthropicsShape(self) -> None:
        for body, status, kind in (
            (b"{", 400, "invalid_request_error"),
            ({"model": "mock-echo", "messages": [{"role": "user", "content": "x"}]}, 400, "invalid_request_error"),
            ({"model": "mock-echo", "max_tokens": 5, "messages": [{"role": "system", "content": "x"}]}, 400, "invalid_request_error"),
            ({"model": "claude-9", "max_tokens": 5, "messages": [{"role": "user", "content": "x"}]}, 404, "not_found_error"),
        ):
            self.pieces.clear()
            response = self.post(body)
            self.assertEqual(response.code, status, body)
            error = json.loads(b"".join(self.pieces))
            self.assertEqual((error["type"], error["error"]["type"]), ("error", kind), body)

    def test_modelsForAnthropicClients(self) -> None:
        response = self.successResultOf(self.client.get("http://gen/v1/models", headers={"anthropic-version": "2023-06-01"}))
        models = json.loads(self.successResultOf(treq.content(response)))
        self.assertEqual([m["id"] for m in models["data"]], ["mock-passage", "mock-echo", "mock-tools", "mock-reasoning", "mock-embed"])
        self.assertEqual(models["data"][0]["type"], "model")
        response = self.successResultOf(self.client.get("http://gen/v1/nope", headers={"anthropic-version": "2023-06-01"}))
        self.assertEqual(json.loads(self.successResultOf(treq.content(response)))["error"]["type"], "not_found_error")


class ResponsesTests(SynchronousTestCase):
    """
    The same mock, in OpenAI's Responses API shape at C{/v1/responses}.
    """

    def setUp(self) -> None:
        self.clock = Clock()
        self.client: Any = StubTreq(GeneratorRoot(StreamSpec(), self.clock, MockLLM(self.clock, Pace(ttft=0.5, tokensPerSecond=10))))

    def post(self, body: Any) -> tuple[int, bytes]:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        requested = self.client.post("http://gen/v1/responses", data=data)
        self.clock.advance(60)
        self.client.flush()
        response = self.successResultOf(requested)
        return response.code, self.successResultOf(treq.content(response))

    def test_streamedEvents(self) -> None:
        """
        A stream is created, in_progress, output_item.added,
        content_part.added, a text delta per token, then output_text.done,
        content_part.done, output_item.done (each with the whole text) and
        completed with the usage; every event named by its type, numbered
        from 0 in order.
        """
        code, body = self.post(
            {"model": "mock-echo", "stream": True, "instructions": "be brief",
             "input": [{"role": "user", "content": [{"type": "input_text", "text": "one two three"}]}]}
        )  # fmt: skip
        self.assertEqual(code, 200)
        events = typedEvents(body)
        self.assertEqual(
            [kind for kind, _ in events],
            ["response.created", "response.in_progress", "response.output_item.added", "response.content_part.added"]
            + ["response.output_text.delta"] * 3
            + ["response.output_text.done", "response.content_part.done", "response.output_item.done",
               "response.completed"],
        )  # fmt: skip
        self.assertEqual([data["sequence_number"] for _, data in events], list(range(len(events))))
        for kind, data in events:
            self.assertEqual(data["type"], kind)
        created = events[0][1]["response"]
        self.assertTrue(created["id"].startswith("resp_"))
        self.assertEqual((created["status"], created["model"], created["instructions"]), ("in_progress", "mock-echo", "be brief"))
        item = events[2][1]["item"]["id"]
        self.assertEqual({data["item_id"] for kind, data in events[3:-2]}, {item})
        self.assertEqual("".join(d["delta"] for k, d in events if k == "response.output_text.delta"), "one two three")
        self.assertEqual(events[7][1]["text"], "one two three")
        completed = events[-1][1]["response"]
        self.assertEqual(completed["status"], "completed")
        self.assertEqual(completed["output"][0]["content"][0]["text"], "one two three")
        self.assertEqual(completed["usage"]["output_tokens"], 3)
        self.assertEqual(completed["usage"]["input_tokens"], 5)

    def test_cutShort(self) -> None:
        """
        C{max_output_tokens} cuts the answer short: the stream ends with
        C{response.incomplete} and the reason.
        """
        code, body = self.post({"model": "mock-echo", "stream": True, "input": "one two three four",
                                "max_output_tokens": 2})  # fmt: skip
        events = typedEvents(body)
        self.assertEqual(events[-1][0], "response.incomplete")
        self.assertEqual(events[-1][1]["response"]["incomplete_details"], {"reason": "max_output_tokens"})
        self.assertEqual(events[-1][1]["response"]["output"][0]["content"][0]["text"], "one two")

    def test_wholeResponse(self) -> None:
        code, body = self.post({"model": "mock-echo", "input": "hi there"})
        response = json.loads(body)
        self.assertEqual((code, response["object"], response["status"]), (200, "response", "completed"))
        self.assertEqual(response["output"][0]["content"][0]["text"], "hi there")
        self.assertEqual(response["usage"]["total_tokens"], 4)

    def test_errorsInOpenAIsShape(self) -> None:
        for body, status, param in (
            (b"{", 400, None),
            ({"model": "mock-echo"}, 400, "input"),
            ({"model": "mock-echo", "input": []}, 400, "input"),
            ({"model": "mock-echo", "input": [{"role": "robot", "content": "x"}]}, 400, "input[0].role"),
            ({"model": "mock-echo", "input": "x", "max_output_tokens": 0}, 400, "max_output_tokens"),
            ({"model": "gpt-9", "input": "x"}, 404, "model"),
        ):
            code, answer = self.post(body)
            self.assertEqual(code, status, body)
            self.assertEqual(json.loads(answer)["error"]["param"], param, body)


class EmbeddingsTests(SynchronousTestCase):
    """
    Deterministic embeddings at C{/v1/embeddings}.
    """

    def setUp(self) -> None:
        self.client: Any = StubTreq(GeneratorRoot(StreamSpec(), Clock()))

    def post(self, body: Any) -> tuple[int, Any]:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        response = self.successResultOf(self.client.post("http://gen/v1/embeddings", data=data))
        return response.code, json.loads(self.successResultOf(treq.content(response)))

    def test_sameTextSameVector(self) -> None:
        """
        A text's vector depends on the text alone, the same on any machine
        (these numbers are SHAKE-256's of C{hello}): unit length, as many
        numbers as C{dimensions} asks, in the request's order.
        """
        code, answer = self.post({"model": "anything", "input": ["hello", "world", "hello"], "dimensions": 4})
        self.assertEqual(code, 200)
        vectors = [item["embedding"] for item in answer["data"]]
        self.assertEqual([item["index"] for item in answer["data"]], [0, 1, 2])
        self.assertEqual(vectors[0], vectors[2])
        self.assertNotEqual(vectors[0], vectors[1])
        self.assertEqual(
            vectors[0], [-0.9523353557338174, -0.30334760309837444, 0.0044878493204636724, 0.03189766640824217]
        )
        self.assertAlmostEqual(sum(v * v for v in vectors[1]), 1.0)
        self.assertEqual((answer["object"], answer["model"], answer["usage"]["prompt_tokens"]), ("list", "anything", 3))
        code, answer = self.post({"model": "mock-embed", "input": "hello"})
        self.assertEqual(len(answer["data"][0]["embedding"]), 1536)

    def test_base64(self) -> None:
        """
        C{encoding_format: base64}: the same vector, as little-endian
        float32, base64-encoded.
        """
        _, floats = self.post({"model": "m", "input": "hello", "dimensions": 8})
        _, packed = self.post({"model": "m", "input": "hello", "dimensions": 8, "encoding_format": "base64"})
        decoded = struct.unpack("<8f", base64.b64decode(packed["data"][0]["embedding"]))
        for a, b in zip(decoded, floats["data"][0]["embedding"], strict=True):
            self.assertAlmostEqual(a, b, places=6)

    def test_errorsInOpenAIsShape(self) -> None:
        for body, param in (
            (b"[]", None),
            ({"input": "x"}, "model"),
            ({"model": "m"}, "input"),
            ({"model": "m", "input": ""}, "input"),
            ({"model": "m", "input": ["ok", 3]}, "input"),
            ({"model": "m", "input": "x", "dimensions": 0}, "dimensions"),
            ({"model": "m", "input": "x", "dimensions": 5000}, "dimensions"),
            ({"model": "m", "input": "x", "encoding_format": "int8"}, "encoding_format"),
        ):
            code, answer = self.post(body)
            self.assertEqual((code, answer["error"]["param"]), (400, param), body)
        response = self.successResultOf(self.client.get("http://gen/v1/embeddings"))
        self.assertEqual(response.code, 405)


class GeminiTests(SynchronousTestCase):
    """
    Gemini's C{generateContent} and C{streamGenerateContent}, at C{/v1beta}
    and at C{/v1/models} (the google-genai SDK's default version).
    """

    def setUp(self) -> None:
        self.clock = Clock()
        self.client: Any = StubTreq(GeneratorRoot(StreamSpec(), self.clock, MockLLM(self.clock, Pace(ttft=0.5, tokensPerSecond=10))))

    def post(self, path: str, body: Any) -> tuple[int, bytes]:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        requested = self.client.post("http://gen" + path, data=data)
        self.clock.advance(60)
        self.client.flush()
        response = self.successResultOf(requested)
        return response.code, self.successResultOf(treq.content(response))

    def test_stream(self) -> None:
        """
        One C{GenerateContentResponse} per token, then one with the finish
        reason and the usage.
        """
        code, body = self.post(
            "/v1beta/models/mock-echo:streamGenerateContent?alt=sse",
            {"contents": [{"role": "user", "parts": [{"text": "one two three"}]}],
             "systemInstruction": {"parts": [{"text": "be brief"}]}},
        )  # fmt: skip
        self.assertEqual(code, 200)
        chunks = [json.loads(block[len(b"data: ") :]) for block in body.split(b"\r\n\r\n") if block]
        texts = [c["candidates"][0]["content"]["parts"][0]["text"] for c in chunks]
        self.assertEqual(texts, ["one", " two", " three", ""])
        self.assertEqual(chunks[-1]["candidates"][0]["finishReason"], "STOP")
        self.assertEqual(
            chunks[-1]["usageMetadata"], {"promptTokenCount": 5, "candidatesTokenCount": 3, "totalTokenCount": 8}
        )
        self.assertEqual({c["modelVersion"] for c in chunks}, {"mock-echo"})

    def test_whole(self) -> None:
        for path in ("/v1beta/models/mock-echo:generateContent", "/v1/models/mock-echo:generateContent"):
            code, body = self.post(path, {"contents": [{"parts": [{"text": "hi you"}]}],
                                          "generationConfig": {"maxOutputTokens": 1}})  # fmt: skip
            candidate = json.loads(body)["candidates"][0]
            self.assertEqual((code, candidate["content"]["parts"][0]["text"], candidate["finishReason"]),
                             (200, "hi", "MAX_TOKENS"))  # fmt: skip

    def test_errorsInGooglesShape(self) -> None:
        for path, body, status in (
            ("/v1beta/models/mock-echo:generateContent", b"{", 400),
            ("/v1beta/models/mock-echo:generateContent", {"contents": []}, 400),
            ("/v1beta/models/mock-echo:generateContent", {"contents": [{"role": "robot", "parts": []}]}, 400),
            ("/v1beta/models/gemini-9:generateContent", {"contents": [{"parts": [{"text": "x"}]}]}, 404),
            ("/v1beta/models/mock-echo:explode", {}, 404),
            ("/v1beta/files", {}, 404),
        ):
            code, answer = self.post(path, body)
            error = json.loads(answer)["error"]
            self.assertEqual((code, error["code"]), (status, status), path)
            self.assertEqual(error["status"], "INVALID_ARGUMENT" if status == 400 else "NOT_FOUND")



class ReasoningTests(SynchronousTestCase):
    """
    C{mock-reasoning}, and a script's C{reasoning}: reasoning first, token
    by token, in each API's own events, then the answer; its tokens in
    the usage.
    """

    def setUp(self) -> None:
        self.mock = MockOnClock(self)
        self.thought = tokens(REASONING)

    def test_chatCompletions(self) -> None:
        """
        C{reasoning_content} deltas (as vLLM and DeepSeek send them), then
        the content; C{reasoning_tokens} in C{completion_tokens_details};
        whole, the message's C{reasoning_content}.
        """
        request = chatRequest(model="mock-reasoning", stream=True, stream_options={"include_usage": True})
        _, body = self.mock.request("POST", "/v1/chat/completions", request)
        deltas = [e["choices"][0]["delta"] for e in sseEvents(body)[:-2]]
        thinking = [d["reasoning_content"] for d in deltas if "reasoning_content" in d]
        self.assertEqual(thinking, self.thought)
        self.assertEqual("".join(d.get("content") or "" for d in deltas), PASSAGE)
        self.assertLess(max(i for i, d in enumerate(deltas) if "reasoning_content" in d),
                        min(i for i, d in enumerate(deltas) if d.get("content")))  # fmt: skip
        used = sseEvents(body)[-2]["usage"]
        self.assertEqual(used["completion_tokens_details"], {"reasoning_tokens": len(self.thought)})
        self.assertEqual(used["completion_tokens"], len(self.thought) + len(tokens(PASSAGE)))
        _, whole = self.mock.json("POST", "/v1/chat/completions", chatRequest(model="mock-reasoning"))
        self.assertEqual(whole["choices"][0]["message"]["reasoning_content"], REASONING)

    def test_responses(self) -> None:
        """
        A reasoning item (output 0) with its summary streamed in
        C{response.reasoning_summary_text.delta}, then the message
        (output 1); C{reasoning_tokens} in the usage.
        """
        _, body = self.mock.request("POST", "/v1/responses", {"model": "mock-reasoning", "input": "hi", "stream": True})
        events = typedEvents(body)
        kinds = [kind for kind, _ in events]
        self.assertEqual([d["delta"] for k, d in events if k == "response.reasoning_summary_text.delta"], self.thought)
        self.assertLess(kinds.index("response.output_item.done"), kinds.index("response.output_text.delta"))
        self.assertEqual([d["output_index"] for k, d in events if k == "response.output_item.added"], [0, 1])
        self.assertEqual([d["sequence_number"] for _, d in events], list(range(len(events))))
        done = events[-1][1]["response"]
        self.assertEqual([item["type"] for item in done["output"]], ["reasoning", "message"])
        self.assertEqual(done["output"][0]["summary"], [{"type": "summary_text", "text": REASONING}])
        self.assertEqual(done["usage"]["output_tokens_details"]["reasoning_tokens"], len(self.thought))

    def test_anthropic(self) -> None:
        """
        A C{thinking} block (index 0) with C{thinking_delta}s and a
        C{signature_delta}, then the text block (index 1).
        """
        request = {"model": "mock-reasoning", "max_tokens": 999, "messages": [{"role": "user", "content": "hi"}]}
        _, body = self.mock.request("POST", "/v1/messages", {**request, "stream": True})
        events = typedEvents(body)
        starts = [d["content_block"]["type"] for k, d in events if k == "content_block_start"]
        self.assertEqual(starts, ["thinking", "text"])
        deltas = [d["delta"] for k, d in events if k == "content_block_delta"]
        self.assertEqual([d["thinking"] for d in deltas if d["type"] == "thinking_delta"], self.thought)
        self.assertEqual([d["type"] for d in deltas if d["type"] == "signature_delta"], ["signature_delta"])
        self.assertEqual("".join(d["text"] for d in deltas if d["type"] == "text_delta"), PASSAGE)
        self.assertEqual({d["index"] for k, d in events if k == "content_block_delta" and d["delta"]["type"] == "text_delta"}, {1})
        _, whole = self.mock.json("POST", "/v1/messages", request)
        self.assertEqual([b["type"] for b in whole["content"]], ["thinking", "text"])
        self.assertEqual(whole["content"][0]["thinking"], REASONING)

    def test_gemini(self) -> None:
        """
        Parts with C{thought: true} first; C{thoughtsTokenCount} apart from
        the candidates' tokens.
        """
        contents = {"contents": [{"role": "user", "parts": [{"text": "hi"}]}]}
        _, body = self.mock.request("POST", "/v1beta/models/mock-reasoning:streamGenerateContent?alt=sse", contents)
        chunks = [json.loads(block[len(b"data: ") :]) for block in body.split(b"\r\n\r\n") if block]
        parts = [p for c in chunks for p in c["candidates"][0]["content"]["parts"]]
        self.assertEqual([p["text"] for p in parts if p.get("thought")], self.thought)
        self.assertEqual("".join(p["text"] for p in parts if not p.get("thought")), PASSAGE)
        used = chunks[-1]["usageMetadata"]
        self.assertEqual((used["thoughtsTokenCount"], used["candidatesTokenCount"]), (len(self.thought), len(tokens(PASSAGE))))

    def test_scripted(self) -> None:
        """
        A rule's C{reasoning} comes before its text, in any model's name.
        """
        self.mock.mock.script.replace(parseRules({"rules": [{"reasoning": "Think first.", "text": "Then speak."}]}))
        _, whole = self.mock.json("POST", "/v1/chat/completions", chatRequest(model="gpt-x"))
        message = whole["choices"][0]["message"]
        self.assertEqual((message["reasoning_content"], message["content"]), ("Think first.", "Then speak."))

    def test_reasoningThenNothing(self) -> None:
        """
        Reasoning and an empty answer: the thinking block is still closed,
        and the (empty) text block opened and closed after it.
        """
        self.mock.mock.script.replace(parseRules({"rules": [{"reasoning": "Hmm.", "text": ""}]}))
        request = {"model": "m", "max_tokens": 99, "messages": [{"role": "user", "content": "hi"}], "stream": True}
        _, body = self.mock.request("POST", "/v1/messages", request)
        blocks = [(k, d.get("index")) for k, d in typedEvents(body) if k.startswith("content_block_st")]
        self.assertEqual(blocks, [("content_block_start", 0), ("content_block_stop", 0),
                                  ("content_block_start", 1), ("content_block_stop", 1)])  # fmt: skip
