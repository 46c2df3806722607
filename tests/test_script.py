"""
Tests for L{twisted_stream.mock._script}: scripted answers. The rules'
matching and counting without I/O; the script read from files and from
C{POST /_mock/script}, every refusal one line; and each API streaming a
scripted answer in its own shapes, on a fake clock over StubTreq.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional

import treq
from treq.testing import StubTreq
from twisted.internet.task import Clock
from twisted.python import usage
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.http_headers import Headers

from tests.support import sseEvents, typedEvents
from twisted_stream.mock._script import MAX_RULES, Asked, Script, ScriptError, loadScript, parseRules
from twisted_stream.mock.apis import ChatRequest
from twisted_stream.mock.apis.tools import ToolCall
from twisted_stream.mock.generator import GeneratorRoot, StreamSpec
from twisted_stream.mock.llm import PASSAGE, MockLLM, Pace
from twisted_stream.tap.chunkgen import Options

_MOCK = "http://mock.test"


def _asked(
    user: str = "hello",
    api: str = "chat",
    model: str = "m",
    system: Optional[str] = None,
    tools: tuple[str, ...] = (),
    toolResult: Optional[str] = None,
    headers: Optional[dict[bytes, list[bytes]]] = None,
) -> Asked:
    messages = ([("system", system)] if system is not None else []) + [("user", "earlier"), ("assistant", "x"), ("user", user)]
    request = ChatRequest(model, messages, False, False, None, {}, None, toolResult, {name: None for name in tools})
    return Asked(api, request, Headers(headers or {}))


def _script(*rules: dict[str, Any]) -> Script:
    return Script(parseRules({"rules": list(rules)}))


class MatchTests(SynchronousTestCase):
    """
    Which requests a rule answers.
    """

    def answers(self, match: dict[str, Any], asked: Asked) -> bool:
        return _script({"match": match, "text": "yes"}).answer(asked) is not None

    def test_everyCondition(self) -> None:
        """
        Each condition holds for the request it describes and fails for
        one that differs in that one thing.
        """
        cases: list[tuple[dict[str, Any], Asked, Asked]] = [
            ({"model": "gpt-4o-mini"}, _asked(model="gpt-4o-mini"), _asked(model="gpt-4o")),
            ({"api": "messages"}, _asked(api="messages"), _asked(api="chat")),
            ({"user": "weather"}, _asked("what is the weather?"), _asked("will it rain?")),
            ({"user_regex": r"^\d+ \+ \d+$"}, _asked("2 + 2"), _asked("x 2 + 2")),
            ({"system": "pirate"}, _asked(system="talk like a pirate"), _asked(system="be brief")),
            ({"system_regex": "(?i)PIRATE"}, _asked(system="a pirate"), _asked()),
            ({"tool": "get_weather"}, _asked(tools=("a", "get_weather")), _asked(tools=("a",))),
            ({"tool_result": "sunny"}, _asked(toolResult='{"sky":"sunny"}'), _asked(toolResult="rain")),
            ({"tool_result": ""}, _asked(toolResult="anything"), _asked()),
            ({"headers": {"X-Tenant": "blue"}}, _asked(headers={b"x-tenant": [b"dark-blue"]}), _asked(headers={b"x-tenant": [b"red"]})),
        ]  # fmt: skip
        for match, yes, no in cases:
            self.assertTrue(self.answers(match, yes), match)
            self.assertFalse(self.answers(match, no), match)

    def test_allMustHold(self) -> None:
        match = {"model": "m", "user": "hi", "api": "chat"}
        self.assertTrue(self.answers(match, _asked("hi there")))
        self.assertFalse(self.answers(match, _asked("hi there", api="gemini")))
        self.assertTrue(self.answers({}, _asked()), "no conditions: every request")

    def test_lastUserMessageOnly(self) -> None:
        """
        C{user} looks at the last user message, not at earlier ones.
        """
        self.assertFalse(self.answers({"user": "earlier"}, _asked("now")))


class ScriptTests(SynchronousTestCase):
    """
    Rules in order, counted, replaced and reset.
    """

    def test_firstMatchWins(self) -> None:
        script = _script({"match": {"user": "a"}, "text": "first"}, {"text": "fallback"})
        self.assertEqual(script.answer(_asked("a")).text, "first")  # type: ignore[union-attr]
        self.assertEqual(script.answer(_asked("b")).text, "fallback")  # type: ignore[union-attr]

    def test_conversation(self) -> None:
        """
        A rule with C{times} stands aside once used up, so that rules in a
        row script a conversation: the tool call once, then the answer.
        """
        script = _script(
            {"tool_call": {"name": "get_weather", "arguments": {"city": "Paris"}}, "times": 1},
            {"match": {"tool_result": ""}, "text": "It is sunny."},
        )
        first = script.answer(_asked("weather in Paris?", tools=("get_weather",)))
        assert first is not None
        self.assertEqual(first.toolCall, ToolCall("get_weather", '{"city":"Paris"}'))
        second = script.answer(_asked("weather in Paris?", toolResult="sunny"))
        self.assertEqual(second.text if second else None, "It is sunny.")
        self.assertIsNone(script.answer(_asked("again?")), "used up, and the next rule needs a tool result")
        described = script.described()
        self.assertEqual([(r["matched"], r["remaining"]) for r in described["rules"]], [(1, 0), (1, None)])
        self.assertEqual(described["unmatched"], 1)
        self.assertEqual(described["rules"][0]["tool_call"], {"name": "get_weather", "arguments": {"city": "Paris"}})

    def test_replaceAndReset(self) -> None:
        """
        A script posted at run time replaces the one started with; a reset
        goes back to it, every count at zero.
        """
        script = Script(parseRules({"rules": [{"text": "base", "times": 1}]}))
        self.assertEqual(script.answer(_asked()).text, "base")  # type: ignore[union-attr]
        script.replace(parseRules({"rules": [{"text": "new"}]}))
        self.assertEqual(script.answer(_asked()).text, "new")  # type: ignore[union-attr]
        script.reset()
        self.assertEqual(script.described()["rules"][0]["matched"], 0)
        self.assertEqual(script.answer(_asked()).text, "base")  # type: ignore[union-attr]
        self.assertIsNone(script.answer(_asked()))

    def test_emptyScriptAnswersNothing(self) -> None:
        self.assertIsNone(Script().answer(_asked()))
        self.assertEqual(Script().described(), {"rules": [], "unmatched": 0})


class ParseTests(SynchronousTestCase):
    """
    Every script that cannot be loaded is refused in one line that says
    where.
    """

    def refused(self, data: Any) -> str:
        with self.assertRaises(ScriptError) as caught:
            parseRules(data)
        message = str(caught.exception)
        self.assertNotIn("\n", message)
        return message

    def test_refusals(self) -> None:
        cases = [
            ([], "the script: must be a table (an object)"),
            ({"rule": []}, "the script: unknown key 'rule' (known: rules)"),
            ({"rules": {}}, "rules: must be a list of tables"),
            ({"rules": ["text"]}, "rules[0]: must be a table (an object)"),
            ({"rules": [{"match": {}}]}, "rules[0]: says nothing to answer: give text, tool_call, json, reasoning or fault"),
            ({"rules": [{"text": "a", "json": {}}]}, "rules[0]: give one of text, tool_call and json, not text and json"),
            ({"rules": [{"text": "a", "colour": 1}]}, "rules[0]: unknown key 'colour' (known: fault, json, match, pace, reasoning, text, times, tool_call)"),
            ({"rules": [{"text": 3}]}, "rules[0].text: must be a string"),
            ({"rules": [{"text": "a"}, {"text": "b", "match": {"modle": "x"}}]}, "rules[1].match: unknown key 'modle'"),
            ({"rules": [{"text": "a", "match": {"api": "soap"}}]}, "rules[0].match.api: must be one of chat, responses, messages, gemini, completions, not 'soap'"),
            ({"rules": [{"text": "a", "match": {"user_regex": "("}}]}, "rules[0].match.user_regex: not a regular expression"),
            ({"rules": [{"text": "a", "match": {"headers": ["x"]}}]}, "rules[0].match.headers: must be a table"),
            ({"rules": [{"text": "a", "match": {"headers": {"x": 1}}}]}, "rules[0].match.headers.x: must be a string"),
            ({"rules": [{"tool_call": {"arguments": {}}}]}, "rules[0].tool_call.name: must be a string"),
            ({"rules": [{"tool_call": {"name": "f", "arguments": [1]}}]}, "rules[0].tool_call.arguments: must be a table"),
            ({"rules": [{"fault": "explode"}]}, "rules[0].fault: must be rate_limit[:SECONDS]"),
            ({"rules": [{"text": "a", "times": 0}]}, "rules[0].times: must be a whole number of at least 1"),
            ({"rules": [{"text": "a", "times": True}]}, "rules[0].times: must be a whole number of at least 1"),
            ({"rules": [{"text": "a", "pace": {"ttft": -1}}]}, "rules[0].pace.ttft: must be a number from 0 to 60"),
            ({"rules": [{"text": "a", "pace": {"speed": 1}}]}, "rules[0].pace: unknown key 'speed'"),
            ({"rules": [{"text": "a"}] * (MAX_RULES + 1)}, f"rules: more than {MAX_RULES}"),
        ]  # fmt: skip
        for data, reason in cases:
            self.assertIn(reason, self.refused(data))

    def test_files(self) -> None:
        """
        TOML, or JSON for a name ending in C{.json}; a file that cannot be
        read, or is not a script, is named with the reason.
        """
        folder = Path(self.mktemp())
        folder.mkdir()
        toml = folder / "script.toml"
        toml.write_text(
            '[[rules]]\nmatch = { model = "gpt-4o-mini", user = "weather" }\n'
            'tool_call = { name = "get_weather", arguments = { city = "Paris" } }\ntimes = 1\n\n'
            '[[rules]]\ntext = "It is sunny."\npace = { ttft = 0.05, tokens_per_second = 100 }\n'
        )
        [call, text] = loadScript(str(toml))
        self.assertEqual((call.match.model, call.match.user, call.times), ("gpt-4o-mini", "weather", 1))
        self.assertEqual(call.reply.toolCall, ToolCall("get_weather", '{"city":"Paris"}'))
        self.assertEqual((text.reply.text, text.reply.ttft, text.reply.tokensPerSecond), ("It is sunny.", 0.05, 100.0))
        asJSON = folder / "script.json"
        asJSON.write_text(json.dumps({"rules": [{"json": {"label": "spam"}}]}))
        [structured] = loadScript(str(asJSON))
        self.assertEqual(structured.reply.jsonText, '{"label":"spam"}')
        for name, content, reason in [
            ("bad.toml", "[[rules]\n", "bad.toml: "),
            ("bad.json", "{", "bad.json: "),
            ("wrong.toml", '[[rules]]\ntext = 1\n', "wrong.toml: rules[0].text: must be a string"),
        ]:
            (folder / name).write_text(content)
            with self.assertRaises(ScriptError) as caught:
                loadScript(str(folder / name))
            self.assertIn(reason, str(caught.exception))
        with self.assertRaises(ScriptError) as caught:
            loadScript(str(folder / "missing.toml"))
        self.assertIn("missing.toml", str(caught.exception))


class ServedTests(SynchronousTestCase):
    """
    Scripted answers as each API streams them, and C{/_mock/script}.
    """

    def setUp(self) -> None:
        self.clock = Clock()
        self.mock = MockLLM(self.clock, Pace(ttft=0.5, tokensPerSecond=10))
        self.client: Any = StubTreq(GeneratorRoot(StreamSpec(), self.clock, self.mock))

    def load(self, *rules: dict[str, Any]) -> Any:
        response = self.successResultOf(self.client.post(_MOCK + "/_mock/script", data=json.dumps({"rules": list(rules)}).encode()))
        return response.code, json.loads(self.successResultOf(treq.content(response)))

    def post(self, path: str, body: dict[str, Any], headers: Optional[dict[str, str]] = None) -> tuple[int, bytes]:
        requested = self.client.post(_MOCK + path, data=json.dumps(body).encode(), headers=headers or {})
        for _ in range(600):
            self.clock.advance(0.1)
            self.client.flush()
        response = self.successResultOf(requested)
        return response.code, self.successResultOf(treq.content(response))

    def test_eachAPIStreamsScriptedText(self) -> None:
        """
        The same rule, streamed in each API's own events: the text whole,
        token by token, whatever the model is called.
        """
        text = "Bonjour, it is 21 degrees.\n"
        self.load({"match": {"user": "weather"}, "text": text})
        user = [{"role": "user", "content": "weather?"}]
        _, body = self.post("/v1/chat/completions", {"model": "gpt-4o", "messages": user, "stream": True})
        deltas = [e["choices"][0]["delta"].get("content") for e in sseEvents(body)[:-1] if e["choices"]]
        self.assertEqual("".join(d for d in deltas if d), text)
        self.assertEqual(len([d for d in deltas if d]), 5, "a token a word")
        self.assertEqual(sseEvents(body)[0]["model"], "gpt-4o")
        _, body = self.post("/v1/responses", {"model": "gpt-4o", "input": "weather?", "stream": True})
        events = typedEvents(body)
        self.assertEqual("".join(d["delta"] for k, d in events if k == "response.output_text.delta"), text)
        _, body = self.post("/v1/messages", {"model": "claude-x", "max_tokens": 99, "messages": user, "stream": True})
        self.assertEqual("".join(d["delta"].get("text", "") for k, d in typedEvents(body) if k == "content_block_delta"), text)
        gemini = {"contents": [{"role": "user", "parts": [{"text": "weather?"}]}]}
        _, body = self.post("/v1beta/models/gemini-x:streamGenerateContent?alt=sse", gemini)
        chunks = [json.loads(block[len(b"data: ") :]) for block in body.split(b"\r\n\r\n") if block]
        self.assertEqual("".join(p["text"] for c in chunks for p in c["candidates"][0]["content"]["parts"]), text)
        _, body = self.post("/v1/completions", {"model": "gpt-3.5-turbo-instruct", "prompt": "weather?", "stream": True})
        self.assertEqual("".join(e["choices"][0]["text"] for e in sseEvents(body)[:-1]), text)
        _, body = self.post("/v1/chat/completions", {"model": "gpt-4o", "messages": user})
        self.assertEqual(json.loads(body)["choices"][0]["message"]["content"], text)
        self.assertEqual(self.mock.script.described()["rules"][0]["matched"], 6)

    def test_unmatchedFallsThrough(self) -> None:
        """
        A request no rule answers gets the built-in model's answer, and an
        unknown model its 404.
        """
        self.load({"match": {"user": "weather"}, "text": "sunny"})
        code, body = self.post("/v1/chat/completions", {"model": "mock-passage", "messages": [{"role": "user", "content": "hi"}]})
        self.assertEqual((code, json.loads(body)["choices"][0]["message"]["content"]), (200, PASSAGE))
        code, body = self.post("/v1/chat/completions", {"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]})
        self.assertEqual((code, json.loads(body)["error"]["code"]), (404, "model_not_found"))

    def test_scriptedToolCallConversation(self) -> None:
        """
        An agent's turns: the scripted call with its arguments (streamed in
        pieces, C{tool_calls} at the end), then, with the tool's result
        sent back, the scripted answer.
        """
        self.load(
            {"match": {"tool": "get_weather"}, "tool_call": {"name": "get_weather", "arguments": {"city": "Paris"}}, "times": 1},
            {"match": {"tool_result": "21"}, "text": "It is 21 degrees in Paris."},
        )
        tools = [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}]
        asked: list[dict[str, Any]] = [{"role": "user", "content": "weather in Paris?"}]
        _, body = self.post("/v1/chat/completions", {"model": "gpt-4o", "messages": asked, "tools": tools, "stream": True})
        events = sseEvents(body)
        call = events[0]["choices"][0]["delta"]["tool_calls"][0]
        arguments = "".join(e["choices"][0]["delta"]["tool_calls"][0]["function"]["arguments"] for e in events[1:-2])
        self.assertEqual((call["function"]["name"], json.loads(arguments)), ("get_weather", {"city": "Paris"}))
        self.assertEqual(events[-2]["choices"][0]["finish_reason"], "tool_calls")
        asked += [
            {"role": "assistant", "tool_calls": [{"id": call["id"], "type": "function", "function": {"name": "get_weather", "arguments": arguments}}]},
            {"role": "tool", "tool_call_id": call["id"], "content": '{"celsius": 21}'},
        ]  # fmt: skip
        _, body = self.post("/v1/chat/completions", {"model": "gpt-4o", "messages": asked, "tools": tools})
        message = json.loads(body)["choices"][0]
        self.assertEqual((message["message"]["content"], message["finish_reason"]), ("It is 21 degrees in Paris.", "stop"))

    def test_structuredJSON(self) -> None:
        """
        A C{json} answer is its compact JSON text, in pieces at the pace of
        tokens.
        """
        self.load({"json": {"label": "spam", "score": 0.9}})
        _, body = self.post("/v1/chat/completions", {"model": "m", "messages": [{"role": "user", "content": "x"}], "stream": True})
        deltas = [e["choices"][0]["delta"].get("content") for e in sseEvents(body)[1:-2]]
        self.assertEqual(json.loads("".join(deltas)), {"label": "spam", "score": 0.9})
        self.assertGreater(len(deltas), 2)

    def test_backtrackingPatternTimesOut(self) -> None:
        """
        A pattern that backtracks without end (a hostile or careless
        script) cannot hang the mock: the request gets a 500 saying which
        rule, in one line, and the next request is answered.
        """
        self.load({"match": {"user_regex": "(a|aa)+$"}, "text": "never"}, {"text": "fine"})
        code, body = self.post("/v1/chat/completions", {"model": "m", "messages": [{"role": "user", "content": "a" * 60 + "!"}]})
        error = json.loads(body)["error"]
        self.assertEqual((code, error["code"]), (500, "script_error"))
        self.assertTrue(error["message"].startswith("rules[0]: a regular expression searched this request for over 0.1 s"))
        code, body = self.post("/v1/chat/completions", {"model": "m", "messages": [{"role": "user", "content": "aaa"}]})
        self.assertEqual((code, json.loads(body)["choices"][0]["message"]["content"]), (200, "never"))

    def test_faultAndPace(self) -> None:
        """
        A rule's fault, in the API's shape; a rule's pace, unless the request
        asks for its own.
        """
        self.load(
            {"match": {"user": "busy"}, "fault": "rate_limit"},
            {"match": {"user": "slow"}, "text": "one two", "pace": {"ttft": 2, "tokens_per_second": 1}},
        )
        code, body = self.post("/v1/messages", {"model": "m", "max_tokens": 9, "messages": [{"role": "user", "content": "busy"}]})
        self.assertEqual((code, json.loads(body)["error"]["type"]), (429, "rate_limit_error"))
        received: list[tuple[float, bytes]] = []
        started = self.clock.seconds()
        requested = self.client.post(_MOCK + "/v1/chat/completions",
                                     data=json.dumps({"model": "m", "stream": True, "messages": [{"role": "user", "content": "slow"}]}).encode())  # fmt: skip
        self.client.flush()
        response = self.successResultOf(requested)
        treq.collect(response, lambda piece: received.append((self.clock.seconds() - started, piece)))
        for _ in range(60):
            self.clock.advance(0.1)
            self.client.flush()
        times = [round(t, 1) for t, piece in received if b'"content":"' in piece and b'"content":""' not in piece]
        self.assertEqual(times, [2.0, 3.0])
        code, body = self.post("/v1/chat/completions", {"model": "m", "messages": [{"role": "user", "content": "slow"}], "mock_ttft": 0})
        self.assertEqual(code, 200)

    def test_controlEndpoint(self) -> None:
        """
        C{GET} shows the rules as written with their counts; C{DELETE}
        goes back to the script started with (none here); a script that
        cannot be loaded is a 400 with its reason, and changes nothing.
        """
        code, shown = self.load({"match": {"model": "a"}, "text": "x", "times": 2})
        self.assertEqual((code, shown["rules"][0]["match"], shown["rules"][0]["remaining"]), (200, {"model": "a"}, 2))
        response = self.successResultOf(self.client.post(_MOCK + "/_mock/script", data=b'{"rules": [{"txt": 1}]}'))
        reason = json.loads(self.successResultOf(treq.content(response)))["error"]
        self.assertEqual(response.code, 400)
        self.assertTrue(reason.startswith("rules[0]: unknown key 'txt'"), reason)
        response = self.successResultOf(self.client.post(_MOCK + "/_mock/script", data=b"{nope"))
        self.assertEqual(response.code, 400)
        self.assertEqual(len(self.mock.script.described()["rules"]), 1, "a refused script changes nothing")
        response = self.successResultOf(self.client.delete(_MOCK + "/_mock/script"))
        self.assertEqual(response.code, 204)
        response = self.successResultOf(self.client.get(_MOCK + "/_mock/script"))
        self.assertEqual(json.loads(self.successResultOf(treq.content(response))), {"rules": [], "unmatched": 0})
        response = self.successResultOf(self.client.put(_MOCK + "/_mock/script", data=b"{}"))
        self.assertEqual(response.code, 405)


class ScriptOptionTests(SynchronousTestCase):
    """
    C{chunkgen --script FILE}: read at start; a bad one stops start-up with
    one line naming the file.
    """

    def test_loadedAtStart(self) -> None:
        path = Path(self.mktemp())
        path.write_text('[[rules]]\ntext = "hi"\n')
        options = Options()
        options.parseOptions(["--script", str(path)])
        self.assertEqual([rule.reply.text for rule in options.rules], ["hi"])
        path.write_text('[[rules]]\ntext = "hi"\ntimes = -1\n')
        with self.assertRaises(usage.UsageError) as caught:
            Options().parseOptions(["--script", str(path)])
        self.assertEqual(str(caught.exception), f"--script: {path}: rules[0].times: must be a whole number of at least 1")
