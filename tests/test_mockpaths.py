"""
Tests for L{twisted_stream.mock._paths} and
L{twisted_stream.mock.apis.completions}: every sub-path the SDKs call gets
its own kind of answer, and anything not served a C{404} in the API's own
shape; model aliases; the legacy completions API; C{n} choices. Over
StubTreq on a fake clock.
"""

from __future__ import annotations

import json
from typing import Any

from twisted.python import usage
from twisted.trial.unittest import SynchronousTestCase

from tests.support import sseEvents
from tests.support.llm import MockOnClock
from twisted_stream.mock._script import parseRules
from twisted_stream.mock.apis.embeddings import vector
from twisted_stream.mock.llm import PASSAGE, parseAlias, tokens
from twisted_stream.tap.chunkgen import Options

_ANTHROPIC = {"anthropic-version": "2023-06-01"}
_GOOGLE = {"x-goog-api-key": "k"}
_USER = [{"role": "user", "content": "one two three"}]


class SubPathTests(SynchronousTestCase):
    """
    What each API serves below its endpoints, and its 404 for the rest.
    """

    def setUp(self) -> None:
        self.mock = MockOnClock(self)

    def test_anthropicCountTokens(self) -> None:
        """
        C{count_tokens} counts the input (system prompt included) as the
        mock paces it, with no C{max_tokens} needed; a Message is never the
        answer.
        """
        code, body = self.mock.json("POST", "/v1/messages/count_tokens",
                                    {"model": "claude-x", "system": "be brief", "messages": _USER}, _ANTHROPIC)  # fmt: skip
        self.assertEqual((code, body), (200, {"input_tokens": 5}))
        code, body = self.mock.json("POST", "/v1/messages/count_tokens", {"model": "claude-x"}, _ANTHROPIC)
        self.assertEqual((code, body["type"], body["error"]["type"]), (400, "error", "invalid_request_error"))

    def test_unservedBelowAnEndpoint(self) -> None:
        """
        A path below an endpoint that it does not serve is a 404 in that
        API's shape, whatever the method.
        """
        cases = [
            ("POST", "/v1/messages/batches", {"model": "m", "max_tokens": 5, "messages": _USER}, _ANTHROPIC, "anthropic"),
            ("GET", "/v1/messages/batches/x", None, _ANTHROPIC, "anthropic"),
            ("POST", "/v1/chat/completions/abc", {"model": "mock-passage", "messages": _USER}, {}, "openai"),
            ("GET", "/v1/chat/completions/abc/messages", None, {}, "openai"),
            ("POST", "/v1/embeddings/x", {"model": "m", "input": "x"}, {}, "openai"),
            ("POST", "/v1/completions/x", {"model": "mock-passage", "prompt": "x"}, {}, "openai"),
            ("POST", "/v1/audio/speech", {}, {}, "openai"),
            ("POST", "/v1/files", {}, _ANTHROPIC, "anthropic"),
            ("POST", "/v1beta/models/mock-passage:embedText", {}, {}, "google"),
            ("POST", "/v1beta/cachedContents", {}, {}, "google"),
        ]
        for method, path, body, headers, shape in cases:
            code, answer = self.mock.json(method, path, body, headers)
            self.assertEqual(code, 404, path)
            if shape == "anthropic":
                self.assertEqual((answer["type"], answer["error"]["type"]), ("error", "not_found_error"), path)
            elif shape == "openai":
                self.assertEqual(answer["error"]["type"], "invalid_request_error", path)
            else:
                self.assertEqual(answer["error"]["status"], "NOT_FOUND", path)

    def test_modelsInEachShape(self) -> None:
        """
        C{GET /v1/models/ID} answers one model, in OpenAI's shape or (for
        Anthropic's clients) Anthropic's; an unknown one is a 404 in that
        shape.
        """
        code, body = self.mock.json("GET", "/v1/models/mock-passage")
        self.assertEqual((code, body["id"], body["object"]), (200, "mock-passage", "model"))
        code, body = self.mock.json("GET", "/v1/models/mock-tools", headers=_ANTHROPIC)
        self.assertEqual((code, body["id"], body["type"]), (200, "mock-tools", "model"))
        code, body = self.mock.json("GET", "/v1/models/gpt-4o")
        self.assertEqual((code, body["error"]["code"]), (404, "model_not_found"))
        code, body = self.mock.json("GET", "/v1/models/gpt-4o", headers=_ANTHROPIC)
        self.assertEqual((code, body["error"]["type"]), (404, "not_found_error"))
        code, body = self.mock.json("DELETE", "/v1/models/mock-passage")
        self.assertEqual(code, 405)

    def test_responsesSubPaths(self) -> None:
        """
        C{input_tokens} counts; an answer made in the foreground is kept
        for C{GET /v1/responses/ID} (not with C{store: false}); an unknown
        id is a 404.
        """
        code, body = self.mock.json("POST", "/v1/responses/input_tokens", {"input": "one two three", "instructions": "be brief"})
        self.assertEqual((code, body), (200, {"object": "response.input_tokens", "input_tokens": 5}))
        code, made = self.mock.json("POST", "/v1/responses", {"model": "mock-passage", "input": "hi"})
        code, kept = self.mock.json("GET", f"/v1/responses/{made['id']}")
        self.assertEqual((code, kept), (200, made))
        _, streamed = self.mock.request("POST", "/v1/responses", {"model": "mock-passage", "input": "hi", "stream": True})
        done = json.loads(streamed.split(b"event: response.completed\ndata: ")[1])["response"]
        code, kept = self.mock.json("GET", f"/v1/responses/{done['id']}")
        self.assertEqual((code, kept["output"][0]["content"][0]["text"]), (200, PASSAGE))
        # Bounded: the last 100, and 16 MiB at most (a scripted answer may
        # be 1 MiB).
        self.mock.mock.script.replace(parseRules({"rules": [{"text": "x " * 500_000}]}))
        made = [self.mock.json("POST", "/v1/responses", {"model": "m", "input": "hi", "mock_tokens_per_second": 10000})[1]["id"]
                for _ in range(20)]  # fmt: skip
        kept = [self.mock.request("GET", f"/v1/responses/{id}")[0] for id in made]
        self.assertEqual(kept, [404] * 4 + [200] * 16, "16 answers of 1 MB in 16 MiB")
        self.mock.mock.script.reset()
        _, unkept = self.mock.json("POST", "/v1/responses", {"model": "mock-passage", "input": "hi", "store": False})
        code, body = self.mock.json("GET", f"/v1/responses/{unkept['id']}")
        self.assertEqual((code, body["error"]["message"]), (404, f"No response found with id '{unkept['id']}'."))

    def test_responsesInputItems(self) -> None:
        """
        C{GET /v1/responses/ID/input_items} lists a kept answer's input,
        each item with an id, newest first unless C{order=asc}, C{limit} at
        a time; a string input is one user message; bad parameters are a
        400, another method a 405, an answer not kept a 404.
        """
        given = [
            {"role": "user", "content": "first"},
            {"role": "assistant", "content": "an answer"},
            {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "second"}]},
        ]
        _, made = self.mock.json("POST", "/v1/responses", {"model": "mock-echo", "input": given})
        path = f"/v1/responses/{made['id']}/input_items"
        code, listed = self.mock.json("GET", path + "?order=asc")
        self.assertEqual(code, 200, listed)
        self.assertEqual([(item["role"], item["content"]) for item in listed["data"]], [
            ("user", [{"type": "input_text", "text": "first"}]),
            ("assistant", [{"type": "output_text", "text": "an answer"}]),
            ("user", [{"type": "input_text", "text": "second"}]),
        ])  # fmt: skip
        self.assertTrue(all(item["id"].startswith("msg_") and item["type"] == "message" for item in listed["data"]))
        self.assertEqual((listed["object"], listed["has_more"]), ("list", False))
        self.assertEqual((listed["first_id"], listed["last_id"]), (listed["data"][0]["id"], listed["data"][-1]["id"]))
        _, newest = self.mock.json("GET", path + "?limit=2")
        self.assertEqual([item["content"][0]["text"] for item in newest["data"]], ["second", "an answer"])
        self.assertTrue(newest["has_more"])
        _, one = self.mock.json("POST", "/v1/responses", {"model": "mock-echo", "input": "just this"})
        _, listed = self.mock.json("GET", f"/v1/responses/{one['id']}/input_items")
        self.assertEqual([(i["role"], i["content"]) for i in listed["data"]], [("user", [{"type": "input_text", "text": "just this"}])])
        for query in ("?order=up", "?limit=0", "?limit=101", "?limit=x"):
            code, body = self.mock.json("GET", path + query)
            self.assertEqual((code, body["error"]["type"]), (400, "invalid_request_error"), query)
        self.assertEqual(self.mock.json("POST", path)[0], 405)
        _, unkept = self.mock.json("POST", "/v1/responses", {"model": "mock-echo", "input": "hi", "store": False})
        self.assertEqual(self.mock.json("GET", f"/v1/responses/{unkept['id']}/input_items")[0], 404)

    def test_geminiModels(self) -> None:
        """
        Gemini's C{models} list and C{models/ID}, in Google's shape, under
        C{/v1beta} and (for Google's clients) C{/v1}.
        """
        code, body = self.mock.json("GET", "/v1beta/models")
        self.assertEqual(code, 200)
        names = {m["name"]: m["supportedGenerationMethods"] for m in body["models"]}
        self.assertIn("generateContent", names["models/mock-passage"])
        self.assertEqual(names["models/mock-embed"], ["embedContent", "batchEmbedContents"])
        code, body = self.mock.json("GET", "/v1/models", headers=_GOOGLE)
        self.assertEqual((code, len(body["models"])), (200, len(names)))
        code, body = self.mock.json("GET", "/v1beta/models/mock-echo")
        self.assertEqual((code, body["name"], body["displayName"]), (200, "models/mock-echo", "mock-echo"))
        code, body = self.mock.json("GET", "/v1beta/models/gemini-9")
        self.assertEqual((code, body["error"]["status"]), (404, "NOT_FOUND"))

    def test_geminiCountAndEmbed(self) -> None:
        """
        C{countTokens} counts (C{contents}, or a whole
        C{generateContentRequest}); C{embedContent} and
        C{batchEmbedContents} give the vectors OpenAI's embeddings give the
        same text, 768 numbers unless C{outputDimensionality} says.
        """
        contents = [{"role": "user", "parts": [{"text": "one two three"}]}]
        code, body = self.mock.json("POST", "/v1beta/models/mock-passage:countTokens", {"contents": contents})
        self.assertEqual((code, body), (200, {"totalTokens": 3}))
        wrapped = {"generateContentRequest": {"model": "models/x", "contents": contents,
                                              "system_instruction": {"parts": [{"text": "be brief"}]}}}  # fmt: skip
        code, body = self.mock.json("POST", "/v1beta/models/mock-passage:countTokens", wrapped)
        self.assertEqual((code, body), (200, {"totalTokens": 5}))
        code, body = self.mock.json("POST", "/v1beta/models/mock-embed:embedContent", {"content": {"parts": [{"text": "hi"}]}})
        self.assertEqual((code, body["embedding"]["values"]), (200, vector("hi", 768)))
        batch = {"requests": [{"model": "models/mock-embed", "content": {"parts": [{"text": t}]}, "outputDimensionality": 8}
                              for t in ("a", "b")]}  # fmt: skip
        code, body = self.mock.json("POST", "/v1beta/models/mock-embed:batchEmbedContents", batch)
        self.assertEqual((code, [e["values"] for e in body["embeddings"]]), (200, [vector("a", 8), vector("b", 8)]))
        hostiles: list[dict[str, Any]] = [{"requests": []}, {"requests": [batch["requests"][0]] * 2049},
                                          {"requests": [{**batch["requests"][0], "outputDimensionality": 10**9}]}]  # fmt: skip
        for hostile in hostiles:
            code, body = self.mock.json("POST", "/v1beta/models/mock-embed:batchEmbedContents", hostile)
            self.assertEqual((code, body["error"]["status"]), (400, "INVALID_ARGUMENT"))

    def test_geminiSnakeCase(self) -> None:
        """
        Fields the google-genai SDK sends in snake_case are read like their
        camelCase names: a Python function's C{parameters_json_schema}
        gives the call its arguments, C{max_output_tokens} cuts the answer.
        """
        schema = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
        body = {
            "contents": [{"role": "user", "parts": [{"text": "weather?"}]}],
            "tools": [{"function_declarations": [{"name": "get_weather", "parameters_json_schema": schema}]}],
            "tool_config": {"function_calling_config": {"mode": "ANY", "allowed_function_names": ["get_weather"]}},
        }
        code, answer = self.mock.json("POST", "/v1beta/models/mock-passage:generateContent", body)
        part = answer["candidates"][0]["content"]["parts"][0]
        self.assertEqual((code, part["functionCall"]), (200, {"name": "get_weather", "args": {"city": "example"}}))
        cut = {"contents": body["contents"], "generation_config": {"max_output_tokens": 3}}
        code, answer = self.mock.json("POST", "/v1beta/models/mock-passage:generateContent", cut)
        self.assertEqual((answer["candidates"][0]["finishReason"], answer["usageMetadata"]["candidatesTokenCount"]), ("MAX_TOKENS", 3))


class AliasTests(SynchronousTestCase):
    """
    C{--alias NAME=MODEL}: a real model's name served by the mock's.
    """

    def test_aliasAnswers(self) -> None:
        """
        An alias answers as its model does (C{mock-tools} calls a tool), in
        every API, under the name asked; the models list it.
        """
        mock = MockOnClock(self, {"gpt-4o-mini": "mock-passage", "claude-haiku": "mock-tools"})
        code, body = mock.json("POST", "/v1/chat/completions", {"model": "gpt-4o-mini", "messages": _USER})
        self.assertEqual((code, body["model"], body["choices"][0]["message"]["content"]), (200, "gpt-4o-mini", PASSAGE))
        tools = [{"name": "f", "input_schema": {"type": "object", "properties": {"x": {"type": "integer"}}}}]
        code, body = mock.json("POST", "/v1/messages", {"model": "claude-haiku", "max_tokens": 9, "messages": _USER, "tools": tools})
        self.assertEqual((code, body["model"], body["content"][0]["input"]), (200, "claude-haiku", {"x": 1}))
        contents = [{"role": "user", "parts": [{"text": "hi"}]}]
        code, body = mock.json("POST", "/v1beta/models/gpt-4o-mini:generateContent", {"contents": contents})
        self.assertEqual(body["candidates"][0]["content"]["parts"][0]["text"], PASSAGE)
        _, listed = mock.json("GET", "/v1/models")
        self.assertIn("gpt-4o-mini", [m["id"] for m in listed["data"]])
        code, body = mock.json("GET", "/v1/models/claude-haiku")
        self.assertEqual((code, body["id"]), (200, "claude-haiku"))
        code, body = mock.json("POST", "/v1/chat/completions", {"model": "gpt-4o", "messages": _USER})
        self.assertEqual(code, 404, "only the alias is served")

    def test_option(self) -> None:
        """
        C{--alias} is repeatable; a malformed one, or one to a model the
        mock does not have, stops start-up with one line.
        """
        options = Options()
        options.parseOptions(["--alias", "gpt-4o-mini=mock-passage", "--alias", "o3=mock-tools"])
        self.assertEqual(options.aliases, {"gpt-4o-mini": "mock-passage", "o3": "mock-tools"})
        for bad, reason in [("gpt-4o", "is not NAME=MODEL"), ("=mock-echo", "is not NAME=MODEL"),
                            ("a b=mock-echo", "is not NAME=MODEL"), ("x=gpt-5", "'gpt-5' is not a model of the mock")]:  # fmt: skip
            with self.assertRaises(usage.UsageError) as raised:
                Options().parseOptions(["--alias", bad])
            self.assertIn(reason, str(raised.exception))
            self.assertNotIn("\n", str(raised.exception))
        self.assertEqual(parseAlias("a=mock-echo"), ("a", "mock-echo"))


class CompletionsTests(SynchronousTestCase):
    """
    C{POST /v1/completions}, the legacy API, and C{n} choices.
    """

    def setUp(self) -> None:
        self.mock = MockOnClock(self)

    def test_streamed(self) -> None:
        """
        Streamed: a C{text_completion} event per token, a last one with the
        finish reason, the usage when asked, then C{[DONE]}; 16 tokens
        unless C{max_tokens} says.
        """
        code, body = self.mock.request("POST", "/v1/completions", {"model": "mock-passage", "prompt": "Say it", "stream": True,
                                                                  "stream_options": {"include_usage": True}})  # fmt: skip
        events = sseEvents(body)
        self.assertEqual((code, events[-1]), (200, "[DONE]"))
        texts = [e["choices"][0]["text"] for e in events[:-3]]
        self.assertEqual(texts, tokens(PASSAGE)[:16])
        self.assertEqual({e["object"] for e in events[:-1]}, {"text_completion"})
        self.assertEqual(events[-3]["choices"][0]["finish_reason"], "length")
        self.assertEqual(events[-2]["usage"], {"prompt_tokens": 2, "completion_tokens": 16, "total_tokens": 18})

    def test_whole(self) -> None:
        code, body = self.mock.json("POST", "/v1/completions", {"model": "mock-echo", "prompt": ["one two"], "max_tokens": 99})
        self.assertEqual((code, body["choices"][0]["text"], body["choices"][0]["finish_reason"]), (200, "one two", "stop"))
        code, body = self.mock.json("POST", "/v1/completions", {"model": "mock-echo"})
        self.assertEqual((code, body["error"]["param"]), (400, "prompt"))

    def test_nChoices(self) -> None:
        """
        C{n}: as many choices, each the answer, streamed under each index
        and whole; usage counts them all; C{n} out of range is a 400.
        """
        request = {"model": "mock-echo", "messages": [{"role": "user", "content": "a b"}], "n": 3}
        code, body = self.mock.json("POST", "/v1/chat/completions", request)
        self.assertEqual([c["message"]["content"] for c in body["choices"]], ["a b"] * 3)
        self.assertEqual(([c["index"] for c in body["choices"]], body["usage"]["completion_tokens"]), ([0, 1, 2], 6))
        _, streamed = self.mock.request("POST", "/v1/chat/completions", {**request, "stream": True})
        text: dict[int, str] = {}
        for event in sseEvents(streamed)[:-1]:
            for choice in event["choices"]:
                text[choice["index"]] = text.get(choice["index"], "") + (choice["delta"].get("content") or "")
        self.assertEqual(text, {0: "a b", 1: "a b", 2: "a b"})
        _, whole = self.mock.json("POST", "/v1/completions", {"model": "mock-echo", "prompt": "x", "n": 2})
        self.assertEqual([c["index"] for c in whole["choices"]], [0, 1])
        code, body = self.mock.json("POST", "/v1/chat/completions", {**request, "n": 0})
        self.assertEqual((code, body["error"]["param"]), (400, "n"))

    def test_geminiCandidates(self) -> None:
        """
        Gemini's C{generationConfig.candidateCount} (or C{candidate_count}):
        as many candidates, each the answer, whole and in every streamed
        chunk; usage counts them all; out of range is a 400 in Google's
        shape.
        """
        path = "/v1beta/models/mock-echo:generateContent"
        request = {"contents": [{"role": "user", "parts": [{"text": "a b"}]}], "generationConfig": {"candidateCount": 3}}
        code, body = self.mock.json("POST", path, request)
        self.assertEqual(code, 200, body)
        self.assertEqual([c["content"]["parts"][0]["text"] for c in body["candidates"]], ["a b"] * 3)
        self.assertEqual([c["index"] for c in body["candidates"]], [0, 1, 2])
        self.assertEqual(body["usageMetadata"]["candidatesTokenCount"], 6)
        _, streamed = self.mock.request(
            "POST", "/v1beta/models/mock-echo:streamGenerateContent?alt=sse",
            {**request, "generationConfig": {"candidate_count": 2}},
        )  # fmt: skip
        text: dict[int, str] = {}
        # (Gemini ends each event with CR LF CR LF.)
        for event in sseEvents(streamed.replace(b"\r\n", b"\n")):
            for candidate in event["candidates"]:
                for part in candidate["content"]["parts"]:
                    text[candidate["index"]] = text.get(candidate["index"], "") + part.get("text", "")
        self.assertEqual(text, {0: "a b", 1: "a b"})
        for wrong in (0, 9, "2", True):
            code, body = self.mock.json("POST", path, {**request, "generationConfig": {"candidateCount": wrong}})
            self.assertEqual((code, body["error"]["status"]), (400, "INVALID_ARGUMENT"), wrong)
            self.assertIn("candidate_count", body["error"]["message"])

    def test_routes(self) -> Any:
        """
        Anything but POST is refused in OpenAI's shape.
        """
        code, body = self.mock.json("GET", "/v1/completions")
        self.assertEqual((code, body["error"]["type"]), (405, "invalid_request_error"))
