# -*- test-case-name: tests.test_mocktools -*-
"""
Tool calls for the mock LLM: which tool a request gets a call to, and the
call's arguments, generated deterministically from the tool's JSON Schema,
so that agent and function-calling pipelines can be tested without a key.

The arguments hold every required property (every property, where the
schema names none required), each the first of its C{enum}, its C{const}
or C{default}, or else a value of its type: C{"example"} for a string
(C{"2026-01-01"} for C{format: date}), its C{minimum} or 1 for an integer,
its C{minimum} or 1.5 for a number, C{true}, one item for an array, the
same rules again for a nested object, the first choice of C{anyOf} or
C{oneOf}. Type names may be in capitals (Gemini's C{Schema}).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Mapping

__all__ = ["PIECE", "TOOLS_MODEL", "ToolCall", "argumentsFor", "callTo", "chosenCall", "pieces"]

TOOLS_MODEL = "mock-tools"
"""The model that calls the first tool offered."""

PIECE = 8
"""Characters of the arguments' JSON text per streamed piece."""

_STRING_FORMATS = {"date": "2026-01-01", "date-time": "2026-01-01T00:00:00Z", "email": "user@example.com",
                   "uri": "https://example.com/", "uuid": "00000000-0000-4000-8000-000000000000"}  # fmt: skip


@dataclass(frozen=True)
class ToolCall:
    """
    A call the mock makes.

    @ivar name: The tool's name.
    @ivar arguments: Its arguments, as compact JSON text.
    """

    name: str
    arguments: str


def argumentsFor(schema: Any, depth: int = 0) -> Any:
    """
    @param schema: A JSON Schema (anything else is taken as the empty one).
    @return: A value it accepts, by the rules above.
    """
    if not isinstance(schema, Mapping) or depth > 16:
        return {}
    for key in ("const", "default"):
        if key in schema:
            return schema[key]
    if isinstance(schema.get("enum"), list) and schema["enum"]:
        return schema["enum"][0]
    for key in ("anyOf", "oneOf", "allOf"):
        if isinstance(schema.get(key), list) and schema[key]:
            return argumentsFor(schema[key][0], depth + 1)
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind is None:
        kind = "object" if "properties" in schema else "string"
    # Gemini's own Schema names its types in capitals.
    kind = kind.lower() if isinstance(kind, str) else "string"
    if kind == "object":
        given = schema.get("properties")
        properties: Mapping[str, Any] = given if isinstance(given, Mapping) else {}
        named = schema.get("required")
        required: list[Any] = named if isinstance(named, list) else list(properties)
        return {name: argumentsFor(properties.get(name), depth + 1) for name in required if isinstance(name, str)}
    if kind == "array":
        return [argumentsFor(schema.get("items"), depth + 1)]
    if kind == "integer":
        minimum = schema.get("minimum")
        return minimum if isinstance(minimum, int) and not isinstance(minimum, bool) else 1
    if kind == "number":
        minimum = schema.get("minimum")
        return minimum if isinstance(minimum, (int, float)) and not isinstance(minimum, bool) else 1.5
    if kind == "boolean":
        return True
    if kind == "null":
        return None
    return _STRING_FORMATS.get(schema.get("format", ""), "example")


def callTo(name: str, schema: Any) -> ToolCall:
    """
    @return: The call to tool C{name} whose parameters C{schema} describes.
    """
    return ToolCall(name, json.dumps(argumentsFor(schema), separators=(",", ":"), ensure_ascii=False))


def chosenCall(
    model: str, offered: Mapping[str, Any], choice: str, forced: Any = None, answered: bool = False
) -> ToolCall | None:
    """
    The one rule, in every API's terms, of which call a request gets.

    @param model: The model asked for.
    @param offered: The tools offered, by name, with their parameters'
        schemas, in the order offered.
    @param choice: C{auto}, C{none}, C{required} (any tool, the API's
        C{any}) or C{named}.
    @param forced: The tool's name, for C{named}.
    @param answered: Whether the conversation ends with a tool's result.
    @return: The call to the named tool; to the first offered for
        C{required}, or for C{auto} with L{TOOLS_MODEL} until a result
        has come; else none.
    @raise ValueError: When C{forced} names no tool offered.
    """
    if not offered or choice == "none":
        return None
    if choice == "named":
        if not isinstance(forced, str) or forced not in offered:
            raise ValueError(f"names no tool offered: {forced!r}")
        return callTo(forced, offered[forced])
    first = next(iter(offered))
    if choice == "required" or (model == TOOLS_MODEL and not answered):
        return callTo(first, offered[first])
    return None


def pieces(call: ToolCall) -> list[str]:
    """
    @return: The call's arguments text in the pieces it is streamed in.
    """
    text = call.arguments
    return [text[i : i + PIECE] for i in range(0, len(text), PIECE)] or [""]
