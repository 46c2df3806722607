# -*- test-case-name: tests.test_mockllm -*-
"""
Anthropic's Messages API: C{POST /v1/messages}, as the official clients
expect it.

A streamed answer is Server-Sent Events, each with an C{event:} type:
C{message_start}, C{content_block_start}, one C{content_block_delta} per
piece of text, C{content_block_stop}, C{message_delta} (the stop reason and
the output token count) and C{message_stop}.
"""

from __future__ import annotations

import base64
import hashlib
import json
from typing import Any, Mapping, Optional, Sequence

from twisted_stream._numbers import isWholeIn
from twisted_stream.mock.apis import Answer, ChatRequest, Finish, RequestError, contentText, jsonObject
from twisted_stream.mock.apis.tools import ToolChoice, checkedChoice

__all__ = ["AnthropicMessages", "countedInput", "parseMessagesRequest"]

_STOP_REASONS: Mapping[Finish, str] = {"complete": "end_turn", "length": "max_tokens", "tool_call": "tool_use"}
_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    404: "not_found_error",
    429: "rate_limit_error",
    500: "api_error",
    529: "overloaded_error",
}


def _text(content: Any, where: str) -> str:
    return contentText(content, where, lambda path, i: f"{path}.{i}")


def parseMessagesRequest(body: bytes, counting: bool = False) -> ChatRequest:
    """
    Read and check a Messages request.

    @param counting: Whether it is one to count (C{count_tokens}), which
        needs no C{max_tokens}.
    @raise RequestError: For invalid JSON, a missing C{model},
        C{max_tokens} or C{messages}, or a field of the wrong type.
    """
    request = jsonObject(body)
    model = request.get("model")
    if not isinstance(model, str) or not model:
        raise RequestError("model: Field required", "model")
    maxTokens = request.get("max_tokens")
    if not (counting and maxTokens is None) and not isWholeIn(maxTokens, 1):
        raise RequestError("max_tokens: Field required, a positive integer", "max_tokens")
    messages = request.get("messages")
    if not isinstance(messages, list) or not messages:
        raise RequestError("messages: Field required, a non-empty list", "messages")
    conversation = []
    system = request.get("system")
    if system is not None:
        conversation.append(("system", _text(system, "system")))
    for i, message in enumerate(messages):
        where = f"messages.{i}"
        if not isinstance(message, dict):
            raise RequestError(f"{where}: must be an object", where)
        role = message.get("role")
        if role not in ("user", "assistant"):
            raise RequestError(f"{where}.role: must be 'user' or 'assistant'", f"{where}.role")
        conversation.append((role, _text(message.get("content"), f"{where}.content")))
    stream = request.get("stream", False)
    if not isinstance(stream, bool):
        raise RequestError("stream: must be a boolean", "stream")
    toolResult = _toolResult(messages[-1])
    # A streamed answer always ends with its usage in this API.
    offered = _offered(request)
    return ChatRequest(model, conversation, stream, True, maxTokens, request, None, toolResult, offered,
                       _toolChoice(request, offered), _outputSchema(request))  # fmt: skip


def _outputSchema(request: Mapping[str, Any]) -> Optional[Mapping[str, Any]]:
    """
    The structured output a request asks for: C{output_format}
    C{{"type": "json_schema", "schema": ...}} (Anthropic's structured
    outputs). A forced tool, the older way to get JSON, is a tool call.
    """
    given = request.get("output_format")
    if given is None:
        return None
    if not isinstance(given, dict) or given.get("type") != "json_schema" or not isinstance(given.get("schema"), dict):
        raise RequestError("output_format: must be {type: json_schema, schema: {...}}", "output_format")
    schema: Mapping[str, Any] = given["schema"]
    return schema


def countedInput(body: bytes) -> Sequence[tuple[str, str]]:
    """
    Read and check a C{POST /v1/messages/count_tokens} request.

    @return: The messages to count, as C{(role, text)}.
    @raise RequestError: As L{parseMessagesRequest}.
    """
    return parseMessagesRequest(body, counting=True).messages


def _toolResult(message: Any) -> Optional[str]:
    """
    @return: The text of the C{tool_result} block a user message carries.
    """
    content = message.get("content") if isinstance(message, dict) else None
    for block in content if isinstance(content, list) else ():
        if isinstance(block, dict) and block.get("type") == "tool_result":
            result = block.get("content", "")
            return result if isinstance(result, str) else _text(result, "tool_result.content")
    return None


def _offered(request: Mapping[str, Any]) -> dict[str, Any]:
    """
    The tools a request offers: their names and C{input_schema}s.
    """
    tools = request.get("tools")
    offered: dict[str, Any] = {}
    for i, tool in enumerate(tools if isinstance(tools, list) else ()):
        if not isinstance(tool, dict) or not isinstance(tool.get("name"), str):
            raise RequestError(f"tools.{i}.name: Field required", f"tools.{i}.name")
        offered.setdefault(tool["name"], tool.get("input_schema"))
    return offered


def _toolChoice(request: Mapping[str, Any], offered: Mapping[str, Any]) -> ToolChoice:
    """
    Which tool a request lets the model call: its C{tool_choice} (C{auto},
    C{any}, C{tool} with a C{name}, C{none}).
    """
    if not offered:
        return ("auto", None)
    given = request.get("tool_choice") or {"type": "auto"}
    kind = given.get("type") if isinstance(given, dict) else None
    choice = {"auto": "auto", "any": "required", "tool": "named", "none": "none"}.get(kind or "")
    if choice is None:
        raise RequestError("tool_choice.type: must be auto, any, tool or none", "tool_choice")
    try:
        return checkedChoice(offered, choice, given.get("name"))
    except ValueError as e:
        raise RequestError(f"tool_choice.name {e}", "tool_choice") from None


def _useId(answer: Answer) -> str:
    return "toolu_" + answer.id[-24:]


def _signature(answer: Answer) -> str:
    # Opaque to clients, which send it back with the block: a digest of
    # the reasoning stands in for Anthropic's.
    return base64.b64encode(hashlib.sha256(answer.reasoningText.encode("utf-8")).digest()).decode("ascii")


def _event(kind: str, data: Mapping[str, Any]) -> bytes:
    return b"event: " + kind.encode("ascii") + b"\ndata: " + json.dumps(data, separators=(",", ":")).encode() + b"\n\n"


class AnthropicMessages:
    """
    C{POST /v1/messages}, as L{twisted_stream.mock.apis.ChatAPI}.
    """

    name = "messages"
    idPrefix = "msg_"
    rateLimitHeaders = (
        (b"anthropic-ratelimit-requests-limit", b"60"),
        (b"anthropic-ratelimit-requests-remaining", b"0"),
    )
    overloadedStatus = 529

    def parse(self, body: bytes) -> ChatRequest:
        return parseMessagesRequest(body)

    def _message(self, answer: Answer, content: list[dict[str, Any]], stop: str | None, output: int) -> dict[str, Any]:
        return {
            "id": answer.id,
            "type": "message",
            "role": "assistant",
            "content": content,
            "model": answer.request.model,
            "stop_reason": stop,
            "stop_sequence": None,
            "usage": {"input_tokens": answer.promptTokens, "output_tokens": output},
        }

    def _block(self, answer: Answer) -> dict[str, Any]:
        call = answer.request.toolCall
        if call is None:
            return {"type": "text", "text": ""}
        return {"type": "tool_use", "id": _useId(answer), "name": call.name, "input": {}}

    def _index(self, answer: Answer) -> int:
        # The thinking block, if any, is block 0; the answer's is next.
        return 1 if answer.reasoning else 0

    def opening(self, answer: Answer) -> bytes:
        block = {"type": "thinking", "thinking": "", "signature": ""} if answer.reasoning else self._block(answer)
        return _event("message_start", {"type": "message_start", "message": self._message(answer, [], None, 1)}) + _event(
            "content_block_start", {"type": "content_block_start", "index": 0, "content_block": block}
        )

    def thinking(self, answer: Answer, text: str) -> bytes:
        delta = {"type": "thinking_delta", "thinking": text}
        return _event("content_block_delta", {"type": "content_block_delta", "index": 0, "delta": delta})

    def afterThinking(self, answer: Answer) -> bytes:
        signed = {"type": "signature_delta", "signature": _signature(answer)}
        return (
            _event("content_block_delta", {"type": "content_block_delta", "index": 0, "delta": signed})
            + _event("content_block_stop", {"type": "content_block_stop", "index": 0})
            + _event("content_block_start", {"type": "content_block_start", "index": 1, "content_block": self._block(answer)})
        )

    def token(self, answer: Answer, text: str) -> bytes:
        delta = (
            {"type": "text_delta", "text": text}
            if answer.request.toolCall is None
            else {"type": "input_json_delta", "partial_json": text}
        )
        return _event("content_block_delta", {"type": "content_block_delta", "index": self._index(answer), "delta": delta})

    def closing(self, answer: Answer, finish: Finish, completionTokens: int) -> bytes:
        return (
            _event("content_block_stop", {"type": "content_block_stop", "index": self._index(answer)})
            + _event(
                "message_delta",
                {
                    "type": "message_delta",
                    "delta": {"stop_reason": _STOP_REASONS[finish], "stop_sequence": None},
                    "usage": {"output_tokens": completionTokens},
                },
            )
            + _event("message_stop", {"type": "message_stop"})
        )

    def whole(self, answer: Answer, text: str, finish: Finish, completionTokens: int) -> bytes:
        call = answer.request.toolCall
        content: list[dict[str, Any]] = (
            [{"type": "text", "text": text}]
            if call is None
            else [{"type": "tool_use", "id": _useId(answer), "name": call.name, "input": json.loads(call.arguments)}]
        )
        if answer.reasoning:
            content.insert(0, {"type": "thinking", "thinking": answer.reasoningText, "signature": _signature(answer)})
        return json.dumps(self._message(answer, content, _STOP_REASONS[finish], completionTokens)).encode()

    def error(self, problem: RequestError) -> bytes:
        return json.dumps(self._error(problem)).encode()

    def _error(self, problem: RequestError) -> dict[str, Any]:
        return {"type": "error", "error": {"type": _ERROR_TYPES.get(problem.status, "api_error"), "message": problem.message}}

    def errorEvent(self, answer: Answer, problem: RequestError) -> bytes:
        return _event("error", self._error(problem))
