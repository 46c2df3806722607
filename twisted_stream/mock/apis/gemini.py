# -*- test-case-name: tests.test_mockllm -*-
"""
Google's Gemini API: C{POST /v1beta/models/MODEL:generateContent} and
C{POST /v1beta/models/MODEL:streamGenerateContent?alt=sse}, as the
C{google-genai} SDK calls them.

The model and whether to stream come from the URL, not the body, so an
instance serves one request's URL (L{forURL}). A streamed answer is
Server-Sent Events, one C{GenerateContentResponse} per token (its
candidate's part carries the token's text); the last carries the
C{finishReason} and the C{usageMetadata}. Errors are Google's
C{{"error": {"code", "message", "status"}}}.
"""

from __future__ import annotations

import json
from typing import Any, Mapping, Optional

from twisted_stream.mock.apis import Answer, ChatRequest, Finish, RequestError, jsonObject
from twisted_stream.mock.apis.openai import encode
from twisted_stream.mock.apis.tools import ToolCall, chosenCall

__all__ = ["GeminiGenerate", "forURL"]

_FINISH: Mapping[Finish, str] = {"complete": "STOP", "length": "MAX_TOKENS", "tool_call": "STOP"}
_STATUS = {400: "INVALID_ARGUMENT", 404: "NOT_FOUND", 405: "INVALID_ARGUMENT", 429: "RESOURCE_EXHAUSTED",
           500: "INTERNAL", 503: "UNAVAILABLE"}  # fmt: skip


def forURL(rest: str) -> GeminiGenerate:
    """
    @param rest: The path after C{/v1beta/models/}: C{MODEL:ACTION}.
    @return: The API for that model and action.
    @raise RequestError: For a path that names neither action.
    """
    model, _, action = rest.rpartition(":")
    if not model or action not in ("generateContent", "streamGenerateContent"):
        raise RequestError(f"Unknown method: models/{rest} (use MODEL:generateContent or MODEL:streamGenerateContent)",
                           status=404)  # fmt: skip
    return GeminiGenerate(model, action == "streamGenerateContent")


def _text(parts: Any, where: str) -> str:
    if not isinstance(parts, list):
        raise RequestError(f"Invalid value at '{where}': expected a list of parts")
    texts = []
    for i, part in enumerate(parts):
        if not isinstance(part, dict):
            raise RequestError(f"Invalid value at '{where}[{i}]': expected an object")
        if isinstance(part.get("text"), str):
            texts.append(part["text"])
    return "".join(texts)


def _functionResponse(parts: Any) -> Optional[str]:
    for part in parts if isinstance(parts, list) else ():
        response = part.get("functionResponse") if isinstance(part, dict) else None
        if isinstance(response, dict):
            return encode(response.get("response", {})).decode("utf-8")
    return None


def _offered(request: Mapping[str, Any]) -> dict[str, Any]:
    """
    The tools a request offers: its C{tools}' C{functionDeclarations},
    by name, with their parameters.
    """
    offered: dict[str, Any] = {}
    tools = request.get("tools")
    for tool in tools if isinstance(tools, list) else ():
        declarations = tool.get("functionDeclarations") or tool.get("function_declarations") if isinstance(tool, dict) else None
        for declaration in declarations if isinstance(declarations, list) else ():
            if isinstance(declaration, dict) and isinstance(declaration.get("name"), str):
                schema = declaration.get("parameters") or declaration.get("parametersJsonSchema")
                offered.setdefault(declaration["name"], schema)
    return offered


def _toolCall(model: str, request: Mapping[str, Any], offered: Mapping[str, Any], answered: bool) -> Optional[ToolCall]:
    """
    The call a request gets (see L{chosenCall}), from the tools it offers
    and its C{toolConfig.functionCallingConfig} (C{mode} C{AUTO}, C{ANY},
    C{NONE}; C{ANY} with one C{allowedFunctionNames} names that one).
    """
    config = ((request.get("toolConfig") or request.get("tool_config") or {}).get("functionCallingConfig")) or {}
    mode = str(config.get("mode", "AUTO")).upper()
    allowed = config.get("allowedFunctionNames") or []
    choice, forced = {"AUTO": ("auto", None), "NONE": ("none", None), "ANY": ("required", None)}.get(mode, ("auto", None))
    if mode == "ANY" and len(allowed) == 1:
        choice, forced = "named", allowed[0]
    try:
        return chosenCall(model, offered, choice, forced, answered)
    except ValueError as e:
        raise RequestError(f"allowedFunctionNames {e}") from None


class GeminiGenerate:
    """
    One model's C{generateContent} or C{streamGenerateContent}, as
    L{twisted_stream.mock.apis.ChatAPI}.
    """

    name = "gemini"
    idPrefix = ""
    rateLimitHeaders = ()
    overloadedStatus = 503

    def __init__(self, model: str, stream: bool) -> None:
        self._model = model
        self._stream = stream

    def parse(self, body: bytes) -> ChatRequest:
        """
        Read and check a request: C{contents} (each with a C{role}, C{user}
        or C{model}, and C{parts}), C{systemInstruction},
        C{generationConfig.maxOutputTokens}.
        """
        request = jsonObject(body)
        conversation: list[tuple[str, str]] = []
        system = request.get("systemInstruction") or request.get("system_instruction")
        if isinstance(system, dict):
            conversation.append(("system", _text(system.get("parts"), "system_instruction.parts")))
        contents = request.get("contents")
        if not isinstance(contents, list) or not contents:
            raise RequestError("* GenerateContentRequest.contents: contents is not specified")
        for i, content in enumerate(contents):
            if not isinstance(content, dict):
                raise RequestError(f"Invalid value at 'contents[{i}]': expected an object")
            role = content.get("role", "user")
            if role not in ("user", "model"):
                raise RequestError(f"Please use a valid role: user, model (contents[{i}].role)")
            conversation.append(("user" if role == "user" else "assistant", _text(content.get("parts"), f"contents[{i}].parts")))
        last = contents[-1]
        toolResult = _functionResponse(last.get("parts") if isinstance(last, dict) else None)
        config = request.get("generationConfig") or request.get("generation_config") or {}
        maxTokens: Optional[int] = config.get("maxOutputTokens") if isinstance(config, dict) else None
        if maxTokens is not None and (isinstance(maxTokens, bool) or not isinstance(maxTokens, int) or maxTokens < 1):
            raise RequestError("Invalid value at 'generation_config.max_output_tokens': expected a positive integer")
        offered = _offered(request)
        return ChatRequest(self._model, conversation, self._stream, True, maxTokens, request,
                           _toolCall(self._model, request, offered, toolResult is not None), toolResult, offered)  # fmt: skip

    def _response(self, answer: Answer, text: str, finish: Optional[Finish], completion: Optional[int]) -> bytes:
        call = answer.request.toolCall
        part: dict[str, Any] = (
            {"text": text} if call is None or finish is None
            else {"functionCall": {"name": call.name, "args": json.loads(call.arguments)}}
        )  # fmt: skip
        candidate: dict[str, Any] = {"content": {"parts": [part], "role": "model"}, "index": 0}
        if finish is not None:
            candidate["finishReason"] = _FINISH[finish]
        response: dict[str, Any] = {"candidates": [candidate], "modelVersion": self._model, "responseId": answer.id}
        if completion is not None:
            response["usageMetadata"] = {
                "promptTokenCount": answer.promptTokens,
                "candidatesTokenCount": completion,
                "totalTokenCount": answer.promptTokens + completion,
            }
        return encode(response)

    def opening(self, answer: Answer) -> bytes:
        return b""

    def token(self, answer: Answer, text: str) -> bytes:
        if answer.request.toolCall is not None:
            # Gemini sends a call whole, in the last chunk.
            return b""
        return b"data: " + self._response(answer, text, None, None) + b"\r\n\r\n"

    def closing(self, answer: Answer, finish: Finish, completionTokens: int) -> bytes:
        return b"data: " + self._response(answer, "", finish, completionTokens) + b"\r\n\r\n"

    def whole(self, answer: Answer, text: str, finish: Finish, completionTokens: int) -> bytes:
        return self._response(answer, text, finish, completionTokens)

    def error(self, problem: RequestError) -> bytes:
        return json.dumps(
            {"error": {"code": problem.status, "message": problem.message, "status": _STATUS.get(problem.status, "UNKNOWN")}}
        ).encode()

    def errorEvent(self, answer: Answer, problem: RequestError) -> bytes:
        return b"data: " + self.error(problem) + b"\r\n\r\n"
