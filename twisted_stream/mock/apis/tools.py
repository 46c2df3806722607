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
C{oneOf}; a C{$ref} to the schema's own C{$defs} (or C{definitions}), as
pydantic writes nested models, is followed. A string is cut or padded to
its C{minLength} and C{maxLength}; an array has C{minItems} items (at least
one unless C{maxItems} is 0). Type names may be in capitals (Gemini's
C{Schema}). The same reader answers structured outputs (C{response_format}
and its kin), so a schema that works for a tool works there too.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Mapping, Optional

__all__ = ["PIECE", "TOOLS_MODEL", "ToolCall", "ToolChoice", "argumentsFor", "callTo", "checkedChoice", "chosenCall", "pieces"]

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


ToolChoice = tuple[str, Optional[str]]
"""Which tool a request lets the model call: C{auto}, C{none}, C{required}
(any tool, the API's C{any}) or C{named}, and the tool's name for
C{named}."""


def _resolved(schema: Mapping[str, Any], root: Mapping[str, Any]) -> Any:
    """
    @return: What a C{$ref} to C{#/$defs/NAME} (or any local JSON pointer)
        points at in C{root}; the empty schema for any other reference.
    """
    ref = schema.get("$ref")
    if not isinstance(ref, str) or not ref.startswith("#"):
        return {}
    target: Any = root
    for step in ref[1:].split("/")[1:]:
        step = step.replace("~1", "/").replace("~0", "~")
        target = target.get(step) if isinstance(target, Mapping) else None
    return target


def argumentsFor(schema: Any, depth: int = 0, root: Any = None) -> Any:
    """
    @param schema: A JSON Schema (anything else is taken as the empty one).
    @param root: The schema that C{$ref}s point into (C{schema} itself at
        the top).
    @return: A value it accepts, by the rules above.
    """
    if not isinstance(schema, Mapping) or depth > 16:
        return {}
    if root is None:
        root = schema
    if "$ref" in schema:
        return argumentsFor(_resolved(schema, root), depth + 1, root)
    for key in ("const", "default"):
        if key in schema:
            return schema[key]
    if isinstance(schema.get("enum"), list) and schema["enum"]:
        return schema["enum"][0]
    for key in ("anyOf", "oneOf", "allOf"):
        if isinstance(schema.get(key), list) and schema[key]:
            return argumentsFor(schema[key][0], depth + 1, root)
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
        return {name: argumentsFor(properties.get(name), depth + 1, root) for name in required if isinstance(name, str)}
    if kind == "array":
        count = _whole(schema.get("minItems"), 1 if _whole(schema.get("maxItems"), 1) else 0)
        return [argumentsFor(schema.get("items"), depth + 1, root) for _ in range(min(count, 64))]
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
    text = _STRING_FORMATS.get(schema.get("format", ""), "example")
    shortest, longest = _whole(schema.get("minLength"), 0), _whole(schema.get("maxLength"), 4096)
    return (text + "x" * max(0, min(shortest, 4096) - len(text)))[:longest]


def _whole(value: Any, otherwise: int) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else otherwise


def callTo(name: str, schema: Any) -> ToolCall:
    """
    @return: The call to tool C{name} whose parameters C{schema} describes.
    """
    return ToolCall(name, json.dumps(argumentsFor(schema), separators=(",", ":"), ensure_ascii=False))


def checkedChoice(offered: Mapping[str, Any], choice: str, forced: Any = None) -> ToolChoice:
    """
    Check a request's tool choice, when its API has read it.

    @param offered: The tools offered.
    @param choice: C{auto}, C{none}, C{required} or C{named}.
    @param forced: The tool's name, for C{named}.
    @return: The choice.
    @raise ValueError: When C{named} names no tool offered.
    """
    if offered and choice == "named" and (not isinstance(forced, str) or forced not in offered):
        raise ValueError(f"names no tool offered: {forced!r}")
    return (choice, forced if isinstance(forced, str) else None)


def chosenCall(
    model: str, offered: Mapping[str, Any], choice: str, forced: Optional[str] = None, answered: bool = False
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
    """
    if not offered or choice == "none":
        return None
    if choice == "named" and forced is not None and forced in offered:
        return callTo(forced, offered[forced])
    first = next(iter(offered))
    if choice == "required" or (model == TOOLS_MODEL and not answered):
        return callTo(first, offered[first])
    return None


def pieces(text: str) -> list[str]:
    """
    @param text: JSON text: a call's arguments, or a structured output.
    @return: The text in the pieces it is streamed in.
    """
    return [text[i : i + PIECE] for i in range(0, len(text), PIECE)] or [""]
