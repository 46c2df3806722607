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
import re
from typing import Any, Mapping, Optional, Sequence

from twisted_stream._numbers import isWholeIn
from twisted_stream.mock.apis import Answer, ChatRequest, Finish, RequestError, jsonObject
from twisted_stream.mock.apis.embeddings import MAX_DIMENSIONS, MAX_INPUTS, vector
from twisted_stream.mock.apis.openai import encode
from twisted_stream.mock.apis.tools import ToolChoice, checkedChoice

__all__ = [
    "EMBED_DIMENSIONS", "GENERATE_ACTIONS", "MAX_CANDIDATES", "GeminiGenerate", "embedded", "forURL", "modelList",
    "modelObject",
]  # fmt: skip

GENERATE_ACTIONS = ("generateContent", "streamGenerateContent")

EMBED_DIMENSIONS = 768
"""A vector's length unless C{outputDimensionality} asks for another (as
C{text-embedding-004}'s)."""

MAX_CANDIDATES = 8
"""The most candidates C{generationConfig.candidateCount} may ask for (as
Gemini's models allow)."""

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
    if not model or action not in GENERATE_ACTIONS:
        raise RequestError(f"Unknown method: models/{rest} (use MODEL:generateContent or MODEL:streamGenerateContent)",
                           status=404)  # fmt: skip
    return GeminiGenerate(model, action == "streamGenerateContent")


def modelObject(name: str, embeds: bool) -> dict[str, Any]:
    """
    @return: One C{Model}, as C{models.get} and C{models.list} give it.
    """
    methods = ["embedContent", "batchEmbedContents"] if embeds else [*GENERATE_ACTIONS, "countTokens"]
    return {"name": f"models/{name}", "version": "001", "displayName": name,
            "description": "A model of twisted-stream's mock LLM.", "inputTokenLimit": 1048576,
            "outputTokenLimit": 1 if embeds else 65536, "supportedGenerationMethods": methods}  # fmt: skip


def modelList(names: list[str], embedding: str) -> bytes:
    """
    @return: The body of C{GET /v1beta/models}: one page, all of them.
    """
    return encode({"models": [modelObject(name, name == embedding) for name in names]})


def embedded(body: bytes, batch: bool) -> bytes:
    """
    Answer C{MODEL:embedContent} (C{{"content": {"parts"}}}) or
    C{MODEL:batchEmbedContents} (C{{"requests": [...]}}, which the
    google-genai SDK's C{embed_content} calls), each with an optional
    C{outputDimensionality}: the same vectors as OpenAI's embeddings give
    the same text.

    @raise RequestError: For a request without content.
    """
    request = jsonObject(body)
    items = request.get("requests") if batch else [request]
    if not isinstance(items, list) or not items:
        raise RequestError("* BatchEmbedContentsRequest.requests: requests is not specified")
    if len(items) > MAX_INPUTS:
        raise RequestError(f"* BatchEmbedContentsRequest.requests: at most {MAX_INPUTS} requests")
    values = []
    for i, item in enumerate(items):
        where = f"requests[{i}]" if batch else "request"
        text = _text(_field(_field(item, "content"), "parts"), f"{where}.content.parts")
        dimensions = _field(item, "outputDimensionality") or EMBED_DIMENSIONS
        if not isWholeIn(dimensions, 1, MAX_DIMENSIONS):
            raise RequestError(f"Invalid value at '{where}.output_dimensionality': 1 to {MAX_DIMENSIONS}")
        values.append({"values": vector(text, dimensions)})
    return encode({"embeddings": values} if batch else {"embedding": values[0]})


def _field(given: Any, name: str) -> Any:
    """
    A request field by its camelCase name, or by its snake_case one: the
    API reads both, and the google-genai SDK sends some of each (for
    instance C{parameters_json_schema} for a Python function's tool).
    """
    if not isinstance(given, dict):
        return None
    if name in given:
        return given[name]
    return given.get(re.sub(r"[A-Z]", lambda m: "_" + m.group(0).lower(), name))


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
        response = _field(part, "functionResponse")
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
        declarations = _field(tool, "functionDeclarations")
        for declaration in declarations if isinstance(declarations, list) else ():
            if isinstance(declaration, dict) and isinstance(declaration.get("name"), str):
                schema = declaration.get("parameters") or _field(declaration, "parametersJsonSchema")
                offered.setdefault(declaration["name"], schema)
    return offered


def _toolChoice(request: Mapping[str, Any], offered: Mapping[str, Any]) -> ToolChoice:
    """
    Which tool a request lets the model call: its
    C{toolConfig.functionCallingConfig} (C{mode} C{AUTO}, C{ANY}, C{NONE};
    C{ANY} with one C{allowedFunctionNames} names that one).
    """
    config = _field(_field(request, "toolConfig"), "functionCallingConfig") or {}
    mode = str(_field(config, "mode") or "AUTO").upper()
    allowed = _field(config, "allowedFunctionNames") or []
    choice, forced = {"AUTO": ("auto", None), "NONE": ("none", None), "ANY": ("required", None)}.get(mode, ("auto", None))
    if mode == "ANY" and isinstance(allowed, list) and len(allowed) == 1:
        choice, forced = "named", allowed[0]
    try:
        return checkedChoice(offered, choice, forced)
    except ValueError as e:
        raise RequestError(f"allowedFunctionNames {e}") from None


def _outputSchema(config: Any) -> Optional[Mapping[str, Any]]:
    """
    The structured output a request's C{generationConfig} asks for: its
    C{responseJsonSchema} (JSON Schema) or C{responseSchema} (Gemini's
    C{Schema}, types in capitals), or any JSON object for
    C{responseMimeType} C{application/json} alone.
    """
    for name in ("responseJsonSchema", "responseSchema"):
        schema = _field(config, name)
        if schema is not None:
            if not isinstance(schema, dict):
                raise RequestError(f"Invalid value at 'generation_config.{name}': expected an object")
            return schema
    return {} if _field(config, "responseMimeType") == "application/json" else None


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
        system = _field(request, "systemInstruction")
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
        config = _field(request, "generationConfig") or {}
        maxTokens: Optional[int] = _field(config, "maxOutputTokens")
        if maxTokens is not None and not isWholeIn(maxTokens, 1):
            raise RequestError("Invalid value at 'generation_config.max_output_tokens': expected a positive integer")
        candidates = _field(config, "candidateCount")
        if candidates is None:
            candidates = 1
        if not isWholeIn(candidates, 1, MAX_CANDIDATES):
            raise RequestError(f"Invalid value at 'generation_config.candidate_count': 1 to {MAX_CANDIDATES}")
        offered = _offered(request)
        return ChatRequest(self._model, conversation, self._stream, True, maxTokens, request, None, toolResult,
                           offered, _toolChoice(request, offered), _outputSchema(config), candidates)  # fmt: skip

    def counted(self, body: bytes) -> Sequence[tuple[str, str]]:
        """
        Read a C{countTokens} request: C{contents}, or a whole
        C{generateContentRequest}.

        @return: The messages to count, as C{(role, text)}.
        @raise RequestError: As L{parse}.
        """
        request = jsonObject(body)
        inner = _field(request, "generateContentRequest")
        return self.parse(encode(inner) if isinstance(inner, dict) else body).messages

    def _response(
        self, answer: Answer, text: str, finish: Optional[Finish], completion: Optional[int], thought: str = ""
    ) -> bytes:
        call = answer.request.toolCall
        part: dict[str, Any] = (
            {"text": text} if call is None or finish is None
            else {"functionCall": {"name": call.name, "args": json.loads(call.arguments)}}
        )  # fmt: skip
        parts = [part] if part != {"text": ""} or not thought else []
        if thought:
            parts.insert(0, {"text": thought, "thought": True})
        candidate: dict[str, Any] = {"content": {"parts": parts, "role": "model"}}
        if finish is not None:
            candidate["finishReason"] = _FINISH[finish]
        # (Under candidateCount, the same answer under each index.)
        count = answer.request.choices
        response: dict[str, Any] = {
            "candidates": [{**candidate, "index": index} for index in range(count)],
            "modelVersion": self._model,
            "responseId": answer.id,
        }
        if completion is not None:
            # The thoughts' tokens are counted apart from the candidates';
            # every candidate's are counted.
            thoughts = len(answer.reasoning) * count
            completion *= count
            response["usageMetadata"] = {
                "promptTokenCount": answer.promptTokens,
                "candidatesTokenCount": completion - thoughts,
                "totalTokenCount": answer.promptTokens + completion,
            }
            if thoughts:
                response["usageMetadata"]["thoughtsTokenCount"] = thoughts
        return encode(response)

    def opening(self, answer: Answer) -> bytes:
        return b""

    def thinking(self, answer: Answer, text: str) -> bytes:
        return b"data: " + self._response(answer, "", None, None, text) + b"\r\n\r\n"

    def afterThinking(self, answer: Answer) -> bytes:
        return b""

    def token(self, answer: Answer, text: str) -> bytes:
        if answer.request.toolCall is not None:
            # Gemini sends a call whole, in the last chunk.
            return b""
        return b"data: " + self._response(answer, text, None, None) + b"\r\n\r\n"

    def closing(self, answer: Answer, finish: Finish, completionTokens: int) -> bytes:
        return b"data: " + self._response(answer, "", finish, completionTokens) + b"\r\n\r\n"

    def whole(self, answer: Answer, text: str, finish: Finish, completionTokens: int) -> bytes:
        return self._response(answer, text, finish, completionTokens, answer.reasoningText)

    def error(self, problem: RequestError) -> bytes:
        return json.dumps(
            {"error": {"code": problem.status, "message": problem.message, "status": _STATUS.get(problem.status, "UNKNOWN")}}
        ).encode()

    def errorEvent(self, answer: Answer, problem: RequestError) -> bytes:
        return b"data: " + self.error(problem) + b"\r\n\r\n"
