# -*- test-case-name: tests.test_mockllm -*-
"""
OpenAI's Chat Completions API: C{POST /v1/chat/completions} and
C{GET /v1/models}, as the official clients expect them.

A streamed answer is Server-Sent Events, one C{data: {json}} event per
C{chat.completion.chunk}: the first delta carries the role, each next one a
piece of content, the last one the C{finish_reason}; with
C{stream_options.include_usage} a final chunk with no choices carries
C{usage}; then C{data: [DONE]}.
"""

from __future__ import annotations

import json
from typing import Any, Mapping, Optional, Sequence

from twisted_stream._numbers import isWholeIn
from twisted_stream.mock.apis import (
    Answer,
    ChatRequest,
    Finish,
    RequestError,
    choiceCount,
    contentText,
    jsonObject,
)
from twisted_stream.mock.apis.tools import ToolChoice, checkedChoice

__all__ = [
    "OpenAIChat",
    "OpenAIRefusals",
    "answerUsage",
    "chunk",
    "completion",
    "done",
    "encode",
    "error",
    "event",
    "modelList",
    "modelObject",
    "parseChatRequest",
]

ROLES = frozenset({"system", "developer", "user", "assistant", "tool", "function"})


def _text(content: Any, where: str) -> str:
    # OpenAI allows no content at all (an assistant message with tool calls).
    return "" if content is None else contentText(content, where, lambda path, i: f"{path}[{i}]")


def parseChatRequest(body: bytes) -> ChatRequest:
    """
    Read and check a chat completion request.

    @param body: The request body.
    @return: The request.
    @raise RequestError: For invalid JSON, a missing or malformed
        C{messages}, or a field of the wrong type.
    """
    request = jsonObject(body)
    model = modelOf(request)
    messages = request.get("messages")
    if messages is None:
        raise RequestError("messages is required", "messages")
    if not isinstance(messages, list) or not messages:
        raise RequestError("messages must be a non-empty array", "messages")
    conversation = []
    for i, message in enumerate(messages):
        where = f"messages[{i}]"
        if not isinstance(message, dict):
            raise RequestError(f"{where} must be an object", where)
        role = message.get("role")
        if role not in ROLES:
            raise RequestError(f"{where}.role must be one of {', '.join(sorted(ROLES))}", f"{where}.role")
        conversation.append((role, _text(message.get("content"), f"{where}.content")))
    stream, includeUsage = streamingOf(request)
    maxTokens = maxTokensOf(request.get("max_completion_tokens", request.get("max_tokens")))
    last = messages[-1]
    toolResult = _text(last.get("content"), "content") if last.get("role") == "tool" else None
    offered = _offered(request)
    schema = responseSchema(request.get("response_format"), "response_format")
    return ChatRequest(model, conversation, stream, includeUsage, maxTokens, request, None, toolResult,
                       offered, _toolChoice(request, offered), schema, choiceCount(request))  # fmt: skip


def modelOf(request: Mapping[str, Any]) -> str:
    """
    @return: The C{model} a request names.
    @raise RequestError: For none.
    """
    model = request.get("model")
    if not isinstance(model, str) or not model:
        raise RequestError("model is required and must be a string", "model")
    return model


def streamingOf(request: Mapping[str, Any]) -> tuple[bool, bool]:
    """
    @return: Whether a request asks for a stream, and whether for its
        usage at the end (C{stream_options.include_usage}).
    @raise RequestError: For C{stream} not a boolean, or C{stream_options}
        not an object, or given without C{stream}.
    """
    stream = request.get("stream", False)
    if stream is not None and not isinstance(stream, bool):
        raise RequestError("stream must be a boolean", "stream")
    options = request.get("stream_options")
    if options is not None and not isinstance(options, dict):
        raise RequestError("stream_options must be an object", "stream_options")
    if options and not stream:
        raise RequestError("stream_options is only allowed when stream is true", "stream_options")
    return bool(stream), bool((options or {}).get("include_usage", False))


def maxTokensOf(given: Any) -> Optional[int]:
    """
    @param given: The request's limit (C{max_tokens} or its newer name).
    @return: It, checked.
    @raise RequestError: For a limit that is not a positive integer.
    """
    if given is not None and not isWholeIn(given, 1):
        raise RequestError("max_tokens must be a positive integer", "max_tokens")
    return given


def responseSchema(given: Any, where: str) -> Optional[Mapping[str, Any]]:
    """
    The structured output a request asks for, in OpenAI's terms (Chat
    Completions' C{response_format}, the Responses API's C{text.format}):
    C{{"type": "json_schema", "json_schema": {"name", "schema", "strict"}}}
    (the Responses API puts C{name} and C{schema} beside C{type}),
    C{{"type": "json_object"}}, or C{{"type": "text"}}.

    @param given: The field's value.
    @param where: Its name, for reasons.
    @return: The schema; an empty one for any JSON object; C{None} for text.
    @raise RequestError: For anything else.
    """
    if given is None:
        return None
    kind = given.get("type") if isinstance(given, dict) else None
    if kind == "text":
        return None
    if kind == "json_object":
        return {}
    if kind == "json_schema":
        described = given.get("json_schema", given)
        schema = described.get("schema", {}) if isinstance(described, dict) else None
        if not isinstance(described, dict) or not isinstance(described.get("name"), str) or not isinstance(schema, dict):
            raise RequestError(f"Invalid '{where}': json_schema needs a name and a schema object.", where)
        return schema
    raise RequestError(f"Invalid value for '{where}.type': expected 'text', 'json_object' or 'json_schema'.", f"{where}.type")


def _offered(request: Mapping[str, Any]) -> dict[str, Any]:
    """
    The tools a request offers: their C{function}s' names and parameters.
    """
    tools = request.get("tools")
    offered: dict[str, Any] = {}
    for i, tool in enumerate(tools if isinstance(tools, list) else ()):
        function = tool.get("function") if isinstance(tool, dict) else None
        if not isinstance(function, dict) or not isinstance(function.get("name"), str):
            raise RequestError(f"tools[{i}].function.name is required", f"tools[{i}].function.name")
        offered.setdefault(function["name"], function.get("parameters"))
    return offered


def _toolChoice(request: Mapping[str, Any], offered: Mapping[str, Any]) -> ToolChoice:
    """
    Which tool a request lets the model call: its C{tool_choice}.
    """
    given = request.get("tool_choice", "auto")
    choice, forced = ("named", (given.get("function") or {}).get("name")) if isinstance(given, dict) else (given, None)
    try:
        return checkedChoice(offered, choice, forced)
    except ValueError as e:
        raise RequestError(f"tool_choice {e}", "tool_choice") from None


def encode(value: Any) -> bytes:
    """
    @return: C{value} as compact UTF-8 JSON, as the API sends it.
    """
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def event(data: Mapping[str, Any]) -> bytes:
    """
    @return: One server-sent event carrying C{data} as JSON.
    """
    return b"data: " + encode(data) + b"\n\n"


def done() -> bytes:
    """
    @return: The event that ends a stream.
    """
    return b"data: [DONE]\n\n"


def chunk(
    completionId: str,
    created: int,
    model: str,
    delta: Mapping[str, Any],
    finishReason: Optional[str] = None,
    withUsageField: bool = False,
    index: int = 0,
) -> dict[str, Any]:
    """
    One C{chat.completion.chunk}.

    @param delta: C{{"role": "assistant"}}, C{{"content": "..."}} or C{{}}.
    @param finishReason: C{"stop"} or C{"length"} on the last chunk.
    @param withUsageField: Whether to carry C{"usage": null} (as every chunk
        does when the request asked for usage).
    @param index: The choice it belongs to.
    """
    value: dict[str, Any] = {
        "id": completionId,
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
        "system_fingerprint": None,
        "choices": [{"index": index, "delta": dict(delta), "logprobs": None, "finish_reason": finishReason}],
    }
    if withUsageField:
        value["usage"] = None
    return value


def usage(promptTokens: int, completionTokens: int, reasoningTokens: int = 0) -> dict[str, Any]:
    """
    @param completionTokens: The answer's tokens, its reasoning's included.
    @param reasoningTokens: Its reasoning's, said in
        C{completion_tokens_details} when there are any.
    @return: A C{usage} object.
    """
    used: dict[str, Any] = {
        "prompt_tokens": promptTokens,
        "completion_tokens": completionTokens,
        "total_tokens": promptTokens + completionTokens,
    }
    if reasoningTokens:
        used["completion_tokens_details"] = {"reasoning_tokens": reasoningTokens}
    return used


def answerUsage(answer: Answer, completionTokens: int, reasoningTokens: int = 0) -> dict[str, Any]:
    """
    @return: The C{usage} of an answer given under each of its request's
        choices (C{n}): every choice's tokens counted.
    """
    choices = answer.request.choices
    return usage(answer.promptTokens, completionTokens * choices, reasoningTokens * choices)


def usageChunk(completionId: str, created: int, model: str, used: Mapping[str, Any]) -> dict[str, Any]:
    """
    @return: The final chunk of a stream that asked for usage: no choices.
    """
    return {
        "id": completionId,
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
        "system_fingerprint": None,
        "choices": [],
        "usage": dict(used),
    }


def completion(
    completionId: str, created: int, model: str, text: str, finishReason: str, used: Mapping[str, Any]
) -> dict[str, Any]:
    """
    @return: A whole C{chat.completion}, for a request that does not stream.
    """
    return {
        "id": completionId,
        "object": "chat.completion",
        "created": created,
        "model": model,
        "system_fingerprint": None,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": text, "refusal": None},
                "logprobs": None,
                "finish_reason": finishReason,
            }
        ],
        "usage": dict(used),
    }


def error(problem: RequestError) -> bytes:
    """
    @return: OpenAI's error body for a refused request.
    """
    return encode({"error": errorFields(problem)})


def errorFields(problem: RequestError) -> dict[str, Any]:
    kind = "requests" if problem.status == 429 else "invalid_request_error" if problem.status < 500 else "server_error"
    return {"message": problem.message, "type": kind, "param": problem.param, "code": problem.code}


RATE_LIMIT_HEADERS = (
    (b"x-ratelimit-limit-requests", b"60"),
    (b"x-ratelimit-remaining-requests", b"0"),
    (b"x-ratelimit-reset-requests", b"1s"),
)
"""OpenAI's rate-limit headers, as on a 429."""


def modelObject(model: str, created: int) -> dict[str, Any]:
    """
    @return: One model, as C{GET /v1/models/ID} gives it.
    """
    return {"id": model, "object": "model", "created": created, "owned_by": "twisted-stream"}


def modelList(models: Sequence[str], created: int) -> bytes:
    """
    @return: The body of C{GET /v1/models}.
    """
    return encode({"object": "list", "data": [modelObject(m, created) for m in models]})


_FINISH_REASONS: Mapping[Finish, str] = {"complete": "stop", "length": "length", "tool_call": "tool_calls"}


def _callId(answer: Answer) -> str:
    return "call_" + answer.id[-24:]


class OpenAIRefusals:
    """
    How each of OpenAI's APIs refuses, as part of
    L{twisted_stream.mock.apis.ChatAPI}: its error body, its rate-limit
    headers, C{503} for overloaded, and, mid-stream, a data line with an
    C{error} member (the Responses API sends a typed event instead).
    """

    rateLimitHeaders = RATE_LIMIT_HEADERS
    overloadedStatus = 503

    def error(self, problem: RequestError) -> bytes:
        return error(problem)

    def errorEvent(self, answer: Answer, problem: RequestError) -> bytes:
        # A data line with an "error" member, which the SDKs raise as an error.
        return event({"error": errorFields(problem)})


class OpenAIChat(OpenAIRefusals):
    """
    C{POST /v1/chat/completions}, as L{twisted_stream.mock.apis.ChatAPI}.
    """

    name = "chat"
    idPrefix = "chatcmpl-"

    def parse(self, body: bytes) -> ChatRequest:
        return parseChatRequest(body)

    def _chunk(self, answer: Answer, delta: Mapping[str, Any], finishReason: Optional[str] = None) -> bytes:
        # One chunk per choice: with n, each gets the same delta.
        request = answer.request
        return b"".join(
            event(chunk(answer.id, answer.created, request.model, delta, finishReason, request.includeUsage, index))
            for index in range(request.choices)
        )

    def _callOpening(self, answer: Answer) -> dict[str, Any]:
        call = answer.request.toolCall
        assert call is not None
        first = {"index": 0, "id": _callId(answer), "type": "function", "function": {"name": call.name, "arguments": ""}}
        return {"tool_calls": [first]}

    def opening(self, answer: Answer) -> bytes:
        if answer.request.toolCall is not None and not answer.reasoning:
            return self._chunk(answer, {"role": "assistant", "content": None, **self._callOpening(answer)})
        return self._chunk(answer, {"role": "assistant", "content": ""})

    def thinking(self, answer: Answer, text: str) -> bytes:
        # As vLLM and DeepSeek send reasoning (OpenAI's own API sends none).
        return self._chunk(answer, {"reasoning_content": text})

    def afterThinking(self, answer: Answer) -> bytes:
        return self._chunk(answer, self._callOpening(answer)) if answer.request.toolCall is not None else b""

    def token(self, answer: Answer, text: str) -> bytes:
        if answer.request.toolCall is not None:
            return self._chunk(answer, {"tool_calls": [{"index": 0, "function": {"arguments": text}}]})
        return self._chunk(answer, {"content": text})

    def closing(self, answer: Answer, finish: Finish, completionTokens: int) -> bytes:
        events = self._chunk(answer, {}, _FINISH_REASONS[finish])
        if answer.request.includeUsage:
            used = answerUsage(answer, completionTokens, len(answer.reasoning))
            events += event(usageChunk(answer.id, answer.created, answer.request.model, used))
        return events + done()

    def whole(self, answer: Answer, text: str, finish: Finish, completionTokens: int) -> bytes:
        choices = answer.request.choices
        used = answerUsage(answer, completionTokens, len(answer.reasoning))
        whole = completion(answer.id, answer.created, answer.request.model, text, _FINISH_REASONS[finish], used)
        if answer.reasoning:
            whole["choices"][0]["message"]["reasoning_content"] = answer.reasoningText
        call = answer.request.toolCall
        if call is not None:
            whole["choices"][0]["message"].update(
                content=None,
                tool_calls=[{"id": _callId(answer), "type": "function",
                             "function": {"name": call.name, "arguments": call.arguments}}],
            )  # fmt: skip
        whole["choices"] = [{**whole["choices"][0], "index": index} for index in range(choices)]
        return encode(whole)


