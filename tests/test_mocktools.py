"""
Tests for L{twisted_stream.mock.apis.tools}: arguments from JSON Schemas, and
the chat completions mock answering with a call, byte for byte, on a clock;
structured outputs, which the same schema reader answers, in every API.
"""

from __future__ import annotations

import json
from typing import Any

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from tests.support import StreamingRequest, render, sseEvents, typedEvents
from tests.support.llm import MockOnClock
from twisted_stream.mock.apis.anthropic import AnthropicMessages
from twisted_stream.mock.apis.openai import OpenAIChat
from twisted_stream.mock.apis.responses import OpenAIResponses
from twisted_stream.mock.apis.tools import argumentsFor, callTo, pieces
from twisted_stream.mock.llm import PASSAGE, ChatResource, MockLLM, Pace

_WEATHER = {
    "type": "object",
    "properties": {
        "city": {"type": "string"},
        "when": {"type": "string", "format": "date"},
        "unit": {"enum": ["celsius", "fahrenheit"]},
        "days": {"type": "integer", "minimum": 3},
        "ratio": {"type": "number"},
        "fine": {"type": "boolean"},
        "where": {"type": "object", "properties": {"lat": {"type": "number", "minimum": -90}}},
        "tags": {"type": "array", "items": {"type": ["string", "null"]}},
        "either": {"anyOf": [{"type": "integer"}, {"type": "string"}]},
        "fixed": {"const": "x"},
        "optional": {"type": "string"},
    },
    "required": ["city", "when", "unit", "days", "ratio", "fine", "where", "tags", "either", "fixed"],
}


class ArgumentsTests(SynchronousTestCase):
    def test_fromSchema(self) -> None:
        """
        The required properties (all, where none are named required), each
        by its type, enum, const, format or minimum; nested objects and
        arrays likewise.
        """
        self.assertEqual(
            argumentsFor(_WEATHER),
            {"city": "example", "when": "2026-01-01", "unit": "celsius", "days": 3, "ratio": 1.5, "fine": True,
             "where": {"lat": -90}, "tags": ["example"], "either": 1, "fixed": "x"},
        )  # fmt: skip

    def test_geminiCapitals(self) -> None:
        self.assertEqual(
            argumentsFor({"type": "OBJECT", "properties": {"n": {"type": "INTEGER"}, "s": {"type": "STRING"}}}),
            {"n": 1, "s": "example"},
        )

    def test_hostileSchemas(self) -> None:
        self.assertEqual(argumentsFor(None), {})
        self.assertEqual(argumentsFor({"type": "object", "properties": "nope", "required": [3]}), {})
        deep: dict[str, Any] = {"type": "object", "properties": {}, "required": ["a"]}
        deep["properties"]["a"] = deep
        self.assertIsInstance(json.dumps(argumentsFor(deep)), str)

    def test_refsAndBounds(self) -> None:
        """
        A C{$ref} into the schema's C{$defs} (as pydantic writes a nested
        model) is followed; strings keep to C{minLength} and C{maxLength},
        arrays to C{minItems} and C{maxItems}; a reference to nowhere, or a
        cycle, still gives an answer.
        """
        schema = {
            "$defs": {"City": {"type": "object", "properties": {"name": {"type": "string", "maxLength": 3}},
                               "required": ["name"], "additionalProperties": False}},
            "type": "object",
            "properties": {"city": {"$ref": "#/$defs/City"}, "code": {"type": "string", "minLength": 10},
                           "none": {"type": "array", "maxItems": 0}, "two": {"type": "array", "minItems": 2,
                                                                             "items": {"$ref": "#/$defs/City"}}},
            "required": ["city", "code", "none", "two"],
        }  # fmt: skip
        self.assertEqual(argumentsFor(schema), {"city": {"name": "exa"}, "code": "examplexxx", "none": [],
                                                "two": [{"name": "exa"}, {"name": "exa"}]})  # fmt: skip
        self.assertEqual(argumentsFor({"$ref": "#/$defs/Nowhere"}), {})
        looped = {"$defs": {"A": {"type": "object", "properties": {"a": {"$ref": "#/$defs/A"}}}}, "$ref": "#/$defs/A"}
        self.assertIsInstance(json.dumps(argumentsFor(looped)), str)
        # A hostile schema cannot make the answer large.
        huge = {"type": "array", "minItems": 10**9, "items": {"type": "string", "minLength": 10**9}}
        self.assertEqual(argumentsFor(huge), ["example" + "x" * (4096 - 7)] * 64)

    def test_pieces(self) -> None:
        call = callTo("f", _WEATHER)
        self.assertEqual("".join(pieces(call.arguments)), call.arguments)
        self.assertTrue(all(len(piece) <= 8 for piece in pieces(call.arguments)))
        self.assertEqual(pieces(""), [""])


class ChatToolCallTests(SynchronousTestCase):
    def answer(self, asked: dict[str, Any]) -> tuple[StreamingRequest, list[Any]]:
        clock = Clock()
        resource = ChatResource(OpenAIChat(), MockLLM(clock, Pace(ttft=0.1, tokensPerSecond=100)))
        request = StreamingRequest([], method=b"POST", uri=b"/v1/chat/completions", body=json.dumps(asked).encode())
        result = render(resource, request)
        if isinstance(result, bytes):
            request.write(result)
        clock.advance(60)
        clock.pump([0.01] * 100)
        body = b"".join(request.written)
        # A stream's events, or the one JSON of an answer that was not streamed.
        return request, sseEvents(body) if body.startswith(b"data: ") else [json.loads(body)]

    def test_streamedCall(self) -> None:
        """
        The first chunk names the call (id, type, function name, empty
        arguments); the next carry the arguments in pieces; the last says
        C{tool_calls}.
        """
        tools = [{"type": "function", "function": {"name": "get_weather", "parameters": _WEATHER}}]
        _, events = self.answer({"model": "mock-tools", "stream": True, "tools": tools,
                                 "messages": [{"role": "user", "content": "weather?"}]})  # fmt: skip
        first = events[0]["choices"][0]["delta"]["tool_calls"][0]
        self.assertEqual((first["index"], first["type"], first["function"]), (0, "function", {"name": "get_weather", "arguments": ""}))
        self.assertTrue(first["id"].startswith("call_"))
        arguments = "".join(e["choices"][0]["delta"]["tool_calls"][0]["function"]["arguments"] for e in events[1:-2])
        self.assertEqual(json.loads(arguments), argumentsFor(_WEATHER))
        self.assertEqual(events[-2]["choices"][0]["finish_reason"], "tool_calls")
        self.assertEqual(events[-1], "[DONE]")

    def test_choices(self) -> None:
        """
        C{tool_choice} C{none} answers in text even for C{mock-tools};
        C{required} calls the first tool for any model; a name no tool has
        is a 400.
        """
        tools = [{"type": "function", "function": {"name": "a"}}, {"type": "function", "function": {"name": "b"}}]
        base = {"messages": [{"role": "user", "content": "hi"}], "tools": tools}
        _, events = self.answer({**base, "model": "mock-tools", "tool_choice": "none"})
        self.assertEqual(events[0]["choices"][0]["finish_reason"], "stop")
        _, events = self.answer({**base, "model": "mock-echo", "tool_choice": "required"})
        self.assertEqual(events[0]["choices"][0]["message"]["tool_calls"][0]["function"], {"name": "a", "arguments": "{}"})
        request, events = self.answer({**base, "model": "mock-echo", "tool_choice": {"type": "function", "function": {"name": "z"}}})
        self.assertEqual((request.responseCode, events[0]["error"]["param"]), (400, "tool_choice"))


class AnthropicToolUseTests(SynchronousTestCase):
    def test_streamedToolUse(self) -> None:
        """
        A C{tool_use} block opened with its id and name, its input as
        C{input_json_delta} pieces that join into the schema's arguments,
        and C{stop_reason: tool_use}; a C{tool_result} block is quoted.
        """
        clock = Clock()
        resource = ChatResource(AnthropicMessages(), MockLLM(clock, Pace(ttft=0.1, tokensPerSecond=100)))
        tools = [{"name": "get_weather", "input_schema": _WEATHER}]
        body = {"model": "mock-tools", "max_tokens": 50, "stream": True, "tools": tools,
                "messages": [{"role": "user", "content": "weather?"}]}  # fmt: skip
        request = StreamingRequest([], method=b"POST", uri=b"/v1/messages", body=json.dumps(body).encode())
        render(resource, request)
        clock.pump([0.01] * 200)
        events = typedEvents(b"".join(request.written))
        block = events[1][1]["content_block"]
        self.assertEqual((block["type"], block["name"], block["input"]), ("tool_use", "get_weather", {}))
        self.assertTrue(block["id"].startswith("toolu_"))
        partial = "".join(d["delta"]["partial_json"] for k, d in events if k == "content_block_delta")
        self.assertEqual(json.loads(partial), argumentsFor(_WEATHER))
        self.assertEqual(events[-2][1]["delta"]["stop_reason"], "tool_use")
        follow = {"model": "mock-tools", "max_tokens": 50, "tools": tools, "messages": [
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": block["id"],
                                          "content": [{"type": "text", "text": "sunny"}]}]}]}  # fmt: skip
        request = StreamingRequest([], method=b"POST", uri=b"/v1/messages", body=json.dumps(follow).encode())
        render(resource, request)
        clock.pump([0.1] * 20)
        self.assertEqual(json.loads(b"".join(request.written))["content"][0]["text"], "The tool returned: sunny")


class ResponsesFunctionCallTests(SynchronousTestCase):
    def test_streamedFunctionCall(self) -> None:
        """
        A C{function_call} item added, C{function_call_arguments.delta}
        pieces, C{.done} with the whole arguments, the item done, and the
        response completed with it as its output; numbered in order.
        """
        clock = Clock()
        resource = ChatResource(OpenAIResponses(), MockLLM(clock, Pace(ttft=0.1, tokensPerSecond=100)))
        body = {"model": "mock-tools", "stream": True, "input": "weather?",
                "tools": [{"type": "function", "name": "get_weather", "parameters": _WEATHER}]}  # fmt: skip
        request = StreamingRequest([], method=b"POST", uri=b"/v1/responses", body=json.dumps(body).encode())
        render(resource, request)
        clock.pump([0.01] * 200)
        events = typedEvents(b"".join(request.written))
        kinds = [kind for kind, _ in events]
        self.assertEqual(kinds[:3], ["response.created", "response.in_progress", "response.output_item.added"])
        self.assertEqual(kinds[-3:], ["response.function_call_arguments.done", "response.output_item.done",
                                      "response.completed"])  # fmt: skip
        self.assertEqual(set(kinds[3:-3]), {"response.function_call_arguments.delta"})
        self.assertEqual([data["sequence_number"] for _, data in events], list(range(len(events))))
        arguments = "".join(data["delta"] for kind, data in events if kind.endswith(".delta"))
        self.assertEqual(json.loads(arguments), argumentsFor(_WEATHER))
        item = events[-1][1]["response"]["output"][0]
        self.assertEqual((item["type"], item["name"], item["arguments"], item["status"]),
                         ("function_call", "get_weather", arguments, "completed"))  # fmt: skip
        self.assertTrue(item["id"].startswith("fc_") and item["call_id"].startswith("call_"))



_PERSON = {
    "type": "object",
    "properties": {"name": {"type": "string"}, "age": {"type": "integer", "minimum": 18}},
    "required": ["name", "age"],
    "additionalProperties": False,
}


class StructuredOutputTests(SynchronousTestCase):
    """
    A structured output (C{response_format} and its kin in each API): JSON
    valid for the schema, streamed in pieces as the text.
    """

    def setUp(self) -> None:
        self.mock = MockOnClock(self)

    def test_chatCompletions(self) -> None:
        """
        C{json_schema}: the schema's JSON, in pieces of at most 8
        characters, streamed as content; whole, the message's content;
        C{json_object}: an object with the model's answer; a
        C{response_format} of another type: a 400.
        """
        request = {"model": "mock-passage", "messages": [{"role": "user", "content": "who?"}],
                   "response_format": {"type": "json_schema", "json_schema": {"name": "person", "schema": _PERSON, "strict": True}}}  # fmt: skip
        _, body = self.mock.request("POST", "/v1/chat/completions", {**request, "stream": True})
        deltas = [e["choices"][0]["delta"].get("content") or "" for e in sseEvents(body)[:-1]]
        self.assertEqual(json.loads("".join(deltas)), {"name": "example", "age": 18})
        self.assertTrue(all(len(d) <= 8 for d in deltas) and len([d for d in deltas if d]) > 2)
        _, whole = self.mock.json("POST", "/v1/chat/completions", request)
        self.assertEqual(json.loads(whole["choices"][0]["message"]["content"]), {"name": "example", "age": 18})
        echo = {"model": "mock-echo", "messages": [{"role": "user", "content": "hi there"}], "response_format": {"type": "json_object"}}
        _, whole = self.mock.json("POST", "/v1/chat/completions", echo)
        self.assertEqual(json.loads(whole["choices"][0]["message"]["content"]), {"answer": "hi there"})
        code, refused = self.mock.json("POST", "/v1/chat/completions", {**echo, "response_format": {"type": "xml"}})
        self.assertEqual((code, refused["error"]["param"]), (400, "response_format.type"))
        code, refused = self.mock.json("POST", "/v1/chat/completions", {**echo, "response_format": {"type": "json_schema"}})
        self.assertEqual(code, 400)

    def test_otherAPIs(self) -> None:
        """
        The Responses API's C{text.format}, Anthropic's C{output_format},
        Gemini's C{responseJsonSchema}, C{responseSchema} (capitals) and
        C{responseMimeType} alone.
        """
        text = {"format": {"type": "json_schema", "name": "person", "schema": _PERSON, "strict": True}}
        _, body = self.mock.request("POST", "/v1/responses", {"model": "mock-passage", "input": "who?", "text": text, "stream": True})
        deltas = [d["delta"] for kind, d in typedEvents(body) if kind == "response.output_text.delta"]
        self.assertEqual(json.loads("".join(deltas)), {"name": "example", "age": 18})
        asked = {"model": "mock-passage", "max_tokens": 99, "messages": [{"role": "user", "content": "who?"}],
                 "output_format": {"type": "json_schema", "schema": _PERSON}}  # fmt: skip
        _, whole = self.mock.json("POST", "/v1/messages", asked)
        self.assertEqual(json.loads(whole["content"][0]["text"]), {"name": "example", "age": 18})
        contents = [{"role": "user", "parts": [{"text": "who?"}]}]
        path = "/v1beta/models/mock-passage:generateContent"
        for config, expected in [
            ({"responseMimeType": "application/json", "responseJsonSchema": _PERSON}, {"name": "example", "age": 18}),
            ({"response_schema": {"type": "OBJECT", "properties": {"n": {"type": "INTEGER"}}}}, {"n": 1}),
            ({"responseMimeType": "application/json"}, {"answer": PASSAGE}),
        ]:
            _, whole = self.mock.json("POST", path, {"contents": contents, "generationConfig": config})
            self.assertEqual(json.loads(whole["candidates"][0]["content"]["parts"][0]["text"]), expected, config)

    def test_toolCallFirst(self) -> None:
        """
        With tools and a structured output, C{mock-tools} calls the tool
        first, and answers the JSON once the tool's result is back.
        """
        tools = [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]
        fmt = {"type": "json_schema", "json_schema": {"name": "person", "schema": _PERSON}}
        asked: list[dict[str, Any]] = [{"role": "user", "content": "who?"}]
        _, whole = self.mock.json("POST", "/v1/chat/completions", {"model": "mock-tools", "messages": asked, "tools": tools,
                                                                   "response_format": fmt})  # fmt: skip
        self.assertEqual(whole["choices"][0]["finish_reason"], "tool_calls")
        asked += [whole["choices"][0]["message"], {"role": "tool", "tool_call_id": "c", "content": "{}"}]
        _, whole = self.mock.json("POST", "/v1/chat/completions", {"model": "mock-tools", "messages": asked, "tools": tools,
                                                                   "response_format": fmt})  # fmt: skip
        self.assertEqual(json.loads(whole["choices"][0]["message"]["content"]), {"name": "example", "age": 18})
