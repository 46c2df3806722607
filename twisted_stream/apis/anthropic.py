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

import json
from typing import Any, Mapping

from twisted_stream.apis import Answer, ChatRequest, Finish, RequestError, contentText, jsonObject

__all__ = ["AnthropicMessages", "parseMessagesRequest"]

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


def parseMessagesRequest(body: bytes) -> ChatRequest:
    """
    Read and check a Messages request.

    @raise RequestError: For invalid JSON, a missing C{model},
        C{max_tokens} or C{messages}, or a field of the wrong type.
    """
    request = jsonObject(body)
    model = request.get("model")
    if not isinstance(model, str) or not model:
        raise RequestError("model: Field required", "model")
    maxTokens = request.get("max_tokens")
    if isinstance(maxTokens, bool) or not isinstance(maxTokens, int) or maxTokens < 1:
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
    # A streamed answer always ends with its usage in this API.
    return ChatRequest(model, conversation, stream, True, maxTokens, request)


def _event(kind: str, data: Mapping[str, Any]) -> bytes:
    return b"event: " + kind.encode("ascii") + b"\ndata: " + json.dumps(data, separators=(",", ":")).encode() + b"\n\n"


class AnthropicMessages:
    """
    C{POST /v1/messages}, as L{twisted_stream.apis.ChatAPI}.
    """

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

    def opening(self, answer: Answer) -> bytes:
        return _event("message_start", {"type": "message_start", "message": self._message(answer, [], None, 1)}) + _event(
            "content_block_start", {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}
        )

    def token(self, answer: Answer, text: str) -> bytes:
        return _event(
            "content_block_delta",
            {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": text}},
        )

    def closing(self, answer: Answer, finish: Finish, completionTokens: int) -> bytes:
        return (
            _event("content_block_stop", {"type": "content_block_stop", "index": 0})
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
        content = [{"type": "text", "text": text}]
        return json.dumps(self._message(answer, content, _STOP_REASONS[finish], completionTokens)).encode()

    def error(self, problem: RequestError) -> bytes:
        return json.dumps(self._error(problem)).encode()

    def _error(self, problem: RequestError) -> dict[str, Any]:
        return {"type": "error", "error": {"type": _ERROR_TYPES.get(problem.status, "api_error"), "message": problem.message}}

    def errorEvent(self, answer: Answer, problem: RequestError) -> bytes:
        return _event("error", self._error(problem))
