# -*- test-case-name: tests.test_script -*-
"""
Scripted answers: what the mock LLM says when a test decides it.

A script is an ordered list of rules. Each rule has a C{match} (every
condition it names must hold; none: it matches every request) and says what
to answer:

    [[rules]]
    match = { model = "gpt-4o-mini", user = "weather" }
    tool_call = { name = "get_weather", arguments = { city = "Paris" } }
    times = 1

    [[rules]]
    match = { tool_result = "sunny" }
    text = "It is sunny in Paris."

The first rule that matches and has answers left answers; a request no rule
matches falls through to the built-in models. C{times} makes a rule answer
that many times and then stand aside, so that rules in a row script a
conversation (a tool call, then the final answer).

Conditions (C{match}): C{model} (the name asked for, exactly), C{api}
(C{chat}, C{responses}, C{messages}, C{gemini}, C{completions}), C{user} /
C{user_regex} (a substring of, or a regular expression found in, the last
user message), C{system} / C{system_regex} (the same for the system
prompt), C{tool} (a tool offered, by name), C{tool_result} (a substring of
the tool result the conversation ends with: C{""} for any), C{headers} (a
table of header names and substrings of their values).

Answers: exactly one of C{text}, C{tool_call} (C{name}, C{arguments} an
object), C{json} (a structured answer: the value's JSON text); or only a
C{fault} (as C{X-Mock-Fault} names it), which may also come with one of
them. C{pace} (C{ttft}, C{tokens_per_second}) sets how fast this answer
comes; a request's own C{mock_*} fields and headers still win.

A test changes the script at run time at C{/_mock/script} (L{ScriptResource}):
C{POST} a script as JSON to answer by it instead, C{GET} to see what is
loaded and how often each rule matched, C{DELETE} to go back to the script
the mock started with. L{Script} itself is sans-IO: it matches L{Asked}
values and counts.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Optional, Sequence

import regex
from twisted.web.http_headers import Headers
from twisted.web.server import Request

from twisted_stream._numbers import isWholeIn
from twisted_stream.http._text import PlainResource
from twisted_stream.mock._faults import Fault, parseFault
from twisted_stream.mock.apis import ChatRequest, RequestError
from twisted_stream.mock.apis.tools import ToolCall

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover (Python 3.10)
    import tomli as tomllib

__all__ = [
    "APIS",
    "MAX_RULES",
    "MAX_SCRIPT_BYTES",
    "Asked",
    "Match",
    "Reply",
    "Rule",
    "Script",
    "ScriptError",
    "ScriptResource",
    "loadScript",
    "parseRules",
]

APIS = ("chat", "responses", "messages", "gemini", "completions")
"""The APIs a rule may name, as the gateway's C{api} label names them."""

MAX_RULES = 1000
"""The most rules a script holds: a script is written by hand or by a test."""

MAX_TEXT = 1024 * 1024
"""The longest text (or JSON text) one answer may have."""

MAX_SCRIPT_BYTES = 4 * 1024 * 1024
"""The largest script C{POST /_mock/script} takes."""


class ScriptError(ValueError):
    """
    A script that cannot be loaded; its message says where, in one line.
    """


@dataclass(frozen=True)
class Asked:
    """
    A request, as a rule sees it.

    @ivar api: Which API it came to (one of L{APIS}).
    @ivar request: What the API read from it.
    @ivar headers: Its headers.
    """

    api: str
    request: ChatRequest
    headers: Headers = field(default_factory=Headers)

    def lastUser(self) -> Optional[str]:
        """
        @return: The last user message's text, if there is one.
        """
        return next((text for role, text in reversed(self.request.messages) if role == "user"), None)

    def system(self) -> Optional[str]:
        """
        @return: The system prompt (system and developer messages, joined
            by new lines), if there is one.
        """
        texts = [text for role, text in self.request.messages if role in ("system", "developer")]
        return "\n".join(texts) if texts else None


def _contains(text: Optional[str], part: Optional[str]) -> bool:
    return part is None or (text is not None and part in text)


MATCH_SECONDS = 0.1
"""The longest a rule's regular expression may search one request's text."""


def _found(text: Optional[str], pattern: Optional[regex.Pattern[str]]) -> bool:
    # Raises TimeoutError past MATCH_SECONDS (a pattern that backtracks).
    return pattern is None or (text is not None and pattern.search(text, timeout=MATCH_SECONDS) is not None)


@dataclass(frozen=True)
class Match:
    """
    What a rule asks of a request: every condition given must hold.
    """

    model: Optional[str] = None
    api: Optional[str] = None
    user: Optional[str] = None
    userRegex: Optional[regex.Pattern[str]] = None
    system: Optional[str] = None
    systemRegex: Optional[regex.Pattern[str]] = None
    tool: Optional[str] = None
    toolResult: Optional[str] = None
    headers: tuple[tuple[bytes, str], ...] = ()

    def matches(self, asked: Asked) -> bool:
        """
        @return: Whether C{asked} meets every condition.
        """
        request = asked.request
        if self.model is not None and request.model != self.model:
            return False
        if self.api is not None and asked.api != self.api:
            return False
        if self.tool is not None and self.tool not in request.tools:
            return False
        if not _contains(request.toolResult, self.toolResult):
            return False
        if self.user is not None or self.userRegex is not None:
            user = asked.lastUser()
            if not (_contains(user, self.user) and _found(user, self.userRegex)):
                return False
        if self.system is not None or self.systemRegex is not None:
            system = asked.system()
            if not (_contains(system, self.system) and _found(system, self.systemRegex)):
                return False
        for name, part in self.headers:
            values = asked.headers.getRawHeaders(name) or []
            if not any(part in value.decode("latin-1") for value in values):
                return False
        return True


@dataclass(frozen=True)
class Reply:
    """
    What a rule answers.

    @ivar text: The answer's text, if it is text.
    @ivar toolCall: The call it makes, if it calls a tool.
    @ivar jsonText: A structured answer's JSON text, if it is one.
    @ivar reasoning: What it reasons before it answers, if anything.
    @ivar fault: The fault it gives, if any.
    @ivar ttft: Seconds to its first token, if the rule sets them.
    @ivar tokensPerSecond: Its pace after the first, if the rule sets it.
    """

    text: Optional[str] = None
    toolCall: Optional[ToolCall] = None
    jsonText: Optional[str] = None
    reasoning: Optional[str] = None
    fault: Optional[Fault] = None
    ttft: Optional[float] = None
    tokensPerSecond: Optional[float] = None

    @property
    def hasContent(self) -> bool:
        """
        Whether it says what to answer (a rule with only a fault, a pace or
        reasoning leaves that to the built-in models).
        """
        return self.text is not None or self.toolCall is not None or self.jsonText is not None


@dataclass(frozen=True)
class Rule:
    """
    One rule of a script.

    @ivar match: When it answers.
    @ivar reply: What it answers.
    @ivar times: How many times it answers, or L{None} for every time.
    @ivar given: The rule as written, to show back.
    """

    match: Match
    reply: Reply
    times: Optional[int] = None
    given: Mapping[str, Any] = field(default_factory=dict, compare=False)


class Script:
    """
    The rules a mock answers by, and how often each has answered.

    The rules it starts with (C{--script FILE}) are its base: a test may
    L{replace} them at run time, and L{reset} goes back to the base.
    """

    def __init__(self, base: Sequence[Rule] = ()) -> None:
        self._base = tuple(base)
        self._rules = self._base
        self._hits = [0] * len(self._rules)
        self._unmatched = 0

    def replace(self, rules: Sequence[Rule]) -> None:
        """
        Answer by C{rules} from now on, each with its count at zero.
        """
        self._rules = tuple(rules)
        self._hits = [0] * len(self._rules)
        self._unmatched = 0

    def reset(self) -> None:
        """
        Go back to the rules the script started with, counts at zero.
        """
        self.replace(self._base)

    def answer(self, asked: Asked) -> Optional[Reply]:
        """
        The reply of the first rule that matches and has answers left,
        counted; or L{None}, for the built-in models to answer.
        """
        for i, rule in enumerate(self._rules):
            if rule.times is not None and self._hits[i] >= rule.times:
                continue
            try:
                matched = rule.match.matches(asked)
            except TimeoutError:
                raise RequestError(
                    f"rules[{i}]: a regular expression searched this request for over {MATCH_SECONDS} s"
                    " (one that backtracks?): fix the script",
                    status=500,
                    code="script_error",
                ) from None
            if matched:
                self._hits[i] += 1
                return rule.reply
        if self._rules:
            self._unmatched += 1
        return None

    def described(self) -> dict[str, Any]:
        """
        @return: What is loaded and how often each rule matched, as
            C{GET /_mock/script} shows it.
        """
        return {
            "rules": [
                {**rule.given, "matched": hits, "remaining": None if rule.times is None else rule.times - hits}
                for rule, hits in zip(self._rules, self._hits, strict=True)
            ],
            "unmatched": self._unmatched,
        }


_MATCH_KEYS = {"model", "api", "user", "user_regex", "system", "system_regex", "tool", "tool_result", "headers"}
_RULE_KEYS = {"match", "text", "tool_call", "json", "reasoning", "fault", "pace", "times"}


def _string(value: Any, where: str, longest: int = 64 * 1024) -> str:
    if not isinstance(value, str):
        raise ScriptError(f"{where}: must be a string")
    if len(value) > longest:
        raise ScriptError(f"{where}: longer than {longest} characters")
    return value


def _regex(value: Any, where: str) -> regex.Pattern[str]:
    try:
        # VERSION0: the standard re's syntax and behaviour.
        return regex.compile(_string(value, where), regex.VERSION0)
    except regex.error as e:
        raise ScriptError(f"{where}: not a regular expression: {e}") from None


def _table(value: Any, where: str, known: set[str]) -> Mapping[str, Any]:
    if not isinstance(value, dict):
        raise ScriptError(f"{where}: must be a table (an object)")
    unknown = sorted(set(value) - known)
    if unknown:
        raise ScriptError(f"{where}: unknown key {unknown[0]!r} (known: {', '.join(sorted(known))})")
    return value


def _match(value: Any, where: str) -> Match:
    given = _table(value, where, _MATCH_KEYS)
    optional: Callable[[str], Optional[str]] = lambda key: (
        None if key not in given else _string(given[key], f"{where}.{key}")
    )
    api = optional("api")
    if api is not None and api not in APIS:
        raise ScriptError(f"{where}.api: must be one of {', '.join(APIS)}, not {api!r}")
    headers = []
    table = given.get("headers", {})
    if not isinstance(table, dict):
        raise ScriptError(f"{where}.headers: must be a table (an object) of names and values")
    for name, part in table.items():
        headers.append((name.lower().encode("latin-1", "replace"), _string(part, f"{where}.headers.{name}")))
    return Match(
        model=optional("model"),
        api=api,
        user=optional("user"),
        userRegex=_regex(given["user_regex"], f"{where}.user_regex") if "user_regex" in given else None,
        system=optional("system"),
        systemRegex=_regex(given["system_regex"], f"{where}.system_regex") if "system_regex" in given else None,
        tool=optional("tool"),
        toolResult=optional("tool_result"),
        headers=tuple(headers),
    )


def _number(value: Any, where: str, low: float, high: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
        raise ScriptError(f"{where}: must be a number from {low:g} to {high:g}")
    return float(value)


def _compact(value: Any, where: str) -> str:
    text = json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    if len(text) > MAX_TEXT:
        raise ScriptError(f"{where}: longer than {MAX_TEXT} characters of JSON")
    return text


def _rule(value: Any, where: str) -> Rule:
    given = _table(value, where, _RULE_KEYS)
    answers = [key for key in ("text", "tool_call", "json") if key in given]
    if len(answers) > 1:
        raise ScriptError(f"{where}: give one of text, tool_call and json, not {' and '.join(answers)}")
    if not answers and "fault" not in given and "reasoning" not in given:
        raise ScriptError(f"{where}: says nothing to answer: give text, tool_call, json, reasoning or fault")
    text = _string(given["text"], f"{where}.text", MAX_TEXT) if "text" in given else None
    reasoning = _string(given["reasoning"], f"{where}.reasoning", MAX_TEXT) if "reasoning" in given else None
    call = None
    if "tool_call" in given:
        asked = _table(given["tool_call"], f"{where}.tool_call", {"name", "arguments"})
        name = _string(asked.get("name"), f"{where}.tool_call.name")
        arguments = asked.get("arguments", {})
        if not isinstance(arguments, dict):
            raise ScriptError(f"{where}.tool_call.arguments: must be a table (an object)")
        call = ToolCall(name, _compact(arguments, f"{where}.tool_call.arguments"))
    jsonText = _compact(given["json"], f"{where}.json") if "json" in given else None
    fault = None
    if "fault" in given:
        try:
            fault = parseFault(given["fault"])
        except RequestError as e:
            raise ScriptError(f"{where}.fault: {e.message.removeprefix('mock_fault ')}") from None
    pace = _table(given.get("pace", {}), f"{where}.pace", {"ttft", "tokens_per_second"})
    times = given.get("times")
    if times is not None and not isWholeIn(times, 1):
        raise ScriptError(f"{where}.times: must be a whole number of at least 1")
    reply = Reply(
        text=text,
        toolCall=call,
        jsonText=jsonText,
        reasoning=reasoning,
        fault=fault,
        ttft=_number(pace["ttft"], f"{where}.pace.ttft", 0, 60) if "ttft" in pace else None,
        tokensPerSecond=_number(pace["tokens_per_second"], f"{where}.pace.tokens_per_second", 0.01, 10_000)
        if "tokens_per_second" in pace
        else None,
    )
    return Rule(_match(given.get("match", {}), f"{where}.match"), reply, times, given)


def parseRules(data: Any) -> list[Rule]:
    """
    Read a script: C{{"rules": [...]}}, as a JSON body or a TOML file's
    top level.

    @raise ScriptError: For anything that is not a script, naming the rule
        and the key at fault.
    """
    top = _table(data, "the script", {"rules"})
    rules = top.get("rules", [])
    if not isinstance(rules, list):
        raise ScriptError("rules: must be a list of tables")
    if len(rules) > MAX_RULES:
        raise ScriptError(f"rules: more than {MAX_RULES}")
    return [_rule(rule, f"rules[{i}]") for i, rule in enumerate(rules)]


def loadScript(path: str) -> list[Rule]:
    """
    Read a script file: TOML, or JSON if its name ends in C{.json}.

    @raise ScriptError: Naming the file, for one that cannot be read or is
        not a script.
    """
    try:
        text = Path(path).read_text("utf-8")
        data = json.loads(text) if path.endswith(".json") else tomllib.loads(text)
        return parseRules(data)
    except (OSError, UnicodeDecodeError, ValueError) as e:
        # ScriptError, json's and tomllib's errors are all ValueErrors.
        raise ScriptError(f"{path}: {e}") from None


class ScriptResource(PlainResource):
    """
    C{/_mock/script}: C{GET} shows the script (L{Script.described}),
    C{POST} replaces it with the JSON script in the body, C{DELETE} goes
    back to the one the mock started with (C{204}). A script that cannot be
    loaded gets C{400} and one line saying where, and changes nothing.
    """

    isLeaf = True

    def __init__(self, script: Script) -> None:
        super().__init__()
        self._script = script

    def _json(self, request: Request, value: Any, status: int = 200) -> bytes:
        request.setResponseCode(status)
        request.setHeader(b"Content-Type", b"application/json")
        return json.dumps(value).encode("utf-8")

    def render_GET(self, request: Request) -> bytes:
        return self._json(request, self._script.described())

    def render_POST(self, request: Request) -> bytes:
        content = request.content
        body = content.read(MAX_SCRIPT_BYTES + 1) if content is not None else b""
        if len(body) > MAX_SCRIPT_BYTES:
            return self._json(request, {"error": f"the script is larger than {MAX_SCRIPT_BYTES} bytes"}, 413)
        try:
            rules = parseRules(json.loads(body))
        except (ValueError, UnicodeDecodeError) as e:
            # ScriptError and json's errors are ValueErrors.
            return self._json(request, {"error": str(e) if isinstance(e, ScriptError) else f"not JSON: {e}"}, 400)
        self._script.replace(rules)
        return self._json(request, self._script.described())

    def render_DELETE(self, request: Request) -> bytes:
        self._script.reset()
        request.setResponseCode(204)
        request.defaultContentType = None
        return b""
