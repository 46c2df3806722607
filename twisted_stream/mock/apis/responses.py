# -*- test-case-name: tests.test_mockllm -*-
"""
OpenAI's Responses API: C{POST /v1/responses}, as the openai SDK's
C{client.responses.create} and the clients built on it (the Vercel AI
SDK's default OpenAI provider, langchain's C{use_responses_api}) expect it.

A streamed answer is Server-Sent Events, each with an C{event:} type and a
C{sequence_number} counting from 0: C{response.created},
C{response.in_progress}, C{response.output_item.added},
C{response.content_part.added}, one C{response.output_text.delta} per
token, then C{response.output_text.done}, C{response.content_part.done},
C{response.output_item.done} (each with the whole text) and
C{response.completed} with the usage (C{response.incomplete}, with
C{incomplete_details}, when C{max_output_tokens} cut the answer short).
Not streamed, the answer is the one C{response} object.
"""

from __future__ import annotations

from typing import Any, Mapping, Optional

from twisted_stream._numbers import isWholeIn
from twisted_stream.mock.apis import Answer, ChatRequest, Finish, RequestError, contentText, jsonObject, newId
from twisted_stream.mock.apis.openai import OpenAIRefusals, encode, responseSchema
from twisted_stream.mock.apis.tools import ToolCall, ToolChoice, checkedChoice

__all__ = ["OpenAIResponses", "inputItems", "parseResponsesRequest"]

_ROLES = ("user", "assistant", "system", "developer")


def _text(content: Any, where: str) -> str:
    if isinstance(content, list):
        # Input parts are typed input_text (output_text in an assistant's
        # earlier turn); contentText reads the ones typed text.
        content = [
            {**part, "type": "text"} if isinstance(part, dict) and part.get("type") in ("input_text", "output_text")
            else part
            for part in content
        ]  # fmt: skip
    return contentText(content, where, lambda path, i: f"{path}[{i}]")


def parseResponsesRequest(body: bytes, counting: bool = False) -> ChatRequest:
    """
    Read and check a Responses request: C{model}; C{input} as a string (one
    user message) or a list of message items (C{role} and C{content}, a
    string or typed parts); C{instructions} (a system message first);
    C{max_output_tokens}; C{stream}.

    @param counting: Whether it is one to count
        (C{/v1/responses/input_tokens}), which needs no C{model}.
    @raise RequestError: For invalid JSON, a missing C{model} or C{input},
        or a field of the wrong type.
    """
    request = jsonObject(body)
    model = request.get("model", "" if counting else None)
    if not isinstance(model, str) or not (model or counting):
        raise RequestError("Missing required parameter: 'model'.", "model")
    conversation: list[tuple[str, str]] = []
    instructions = request.get("instructions")
    if instructions is not None:
        if not isinstance(instructions, str):
            raise RequestError("Invalid type for 'instructions': expected a string.", "instructions")
        conversation.append(("system", instructions))
    given = request.get("input")
    toolResult: Optional[str] = None
    if isinstance(given, str):
        conversation.append(("user", given))
    elif isinstance(given, list) and given:
        for i, item in enumerate(given):
            where = f"input[{i}]"
            if not isinstance(item, dict):
                raise RequestError(f"Invalid type for '{where}': expected an object.", where)
            kind = item.get("type", "message")
            if kind == "function_call_output" and i == len(given) - 1:
                output = item.get("output", "")
                toolResult = output if isinstance(output, str) else encode(output).decode("utf-8")
            if kind != "message":
                # Other items (a call, a tool's output, reasoning) carry no
                # text the mock answers to.
                continue
            role = item.get("role")
            if role not in _ROLES:
                raise RequestError(f"Invalid value for '{where}.role': expected one of {', '.join(_ROLES)}.",
                                   f"{where}.role")  # fmt: skip
            conversation.append(("system" if role == "developer" else role, _text(item.get("content"), f"{where}.content")))
    else:
        raise RequestError("Missing required parameter: 'input' (a string or a non-empty list of items).", "input")
    maxTokens = request.get("max_output_tokens")
    if maxTokens is not None and not isWholeIn(maxTokens, 1):
        raise RequestError("Invalid 'max_output_tokens': expected a positive integer.", "max_output_tokens")
    stream = request.get("stream", False)
    if not isinstance(stream, bool):
        raise RequestError("Invalid type for 'stream': expected a boolean.", "stream")
    # A streamed answer always ends with its usage in this API.
    offered = _offered(request)
    text = request.get("text")
    schema = responseSchema(text.get("format") if isinstance(text, dict) else None, "text.format")
    return ChatRequest(model, conversation, stream, True, maxTokens, request, None, toolResult, offered,
                       _toolChoice(request, offered), schema)  # fmt: skip


def inputItems(request: Mapping[str, Any]) -> list[dict[str, Any]]:
    """
    A request's input as C{GET /v1/responses/ID/input_items} lists it, in
    the order given: each item with an id, a string input as one user
    message, a message's string content as one text part (C{input_text},
    or C{output_text} for the assistant's).

    @param request: A request L{parseResponsesRequest} took.
    """
    given = request.get("input")
    listed = [{"type": "message", "role": "user", "content": given}] if isinstance(given, str) else given
    items = []
    for item in listed if isinstance(listed, list) else ():
        if not isinstance(item, dict):
            continue
        item = {"type": "message", **item}
        if item["type"] == "message":
            content = item.get("content")
            if isinstance(content, str):
                kind = "output_text" if item.get("role") == "assistant" else "input_text"
                item["content"] = [{"type": kind, "text": content}]
            item.setdefault("status", "completed")
        item.setdefault("id", newId("msg_" if item["type"] == "message" else "item_"))
        items.append(item)
    return items


def _offered(request: Mapping[str, Any]) -> dict[str, Any]:
    """
    The tools a request offers: those of type C{function} (others are not
    the mock's to call), by name, with their parameters.
    """
    tools = request.get("tools")
    offered: dict[str, Any] = {}
    for i, tool in enumerate(tools if isinstance(tools, list) else ()):
        if isinstance(tool, dict) and tool.get("type") == "function":
            if not isinstance(tool.get("name"), str):
                raise RequestError(f"Missing required parameter: 'tools[{i}].name'.", f"tools[{i}].name")
            offered.setdefault(tool["name"], tool.get("parameters"))
    return offered


def _toolChoice(request: Mapping[str, Any], offered: Mapping[str, Any]) -> ToolChoice:
    """
    Which tool a request lets the model call: its C{tool_choice}.
    """
    given = request.get("tool_choice", "auto")
    choice, forced = ("named", given.get("name")) if isinstance(given, dict) else (given, None)
    try:
        return checkedChoice(offered, choice, forced)
    except ValueError as e:
        raise RequestError(f"Invalid 'tool_choice': {e}.", "tool_choice") from None


def _event(answer: Answer, kind: str, fields: Mapping[str, Any]) -> bytes:
    # Each event's number, in the order sent: kept with the answer.
    number = answer.state.get("sequence", 0)
    answer.state["sequence"] = number + 1
    data = {"type": kind, "sequence_number": number, **fields}
    return b"event: " + kind.encode("ascii") + b"\ndata: " + encode(data) + b"\n\n"


class OpenAIResponses(OpenAIRefusals):
    """
    C{POST /v1/responses}, as L{twisted_stream.mock.apis.ChatAPI}.
    """

    name = "responses"
    idPrefix = "resp_"
    def parse(self, body: bytes) -> ChatRequest:
        return parseResponsesRequest(body)

    def _itemId(self, answer: Answer) -> str:
        item: Optional[str] = answer.state.get("item")
        if item is None:
            item = answer.state["item"] = newId("msg_" if answer.request.toolCall is None else "fc_")
        return item

    def _message(self, answer: Answer, text: Optional[str], status: str) -> dict[str, Any]:
        content = [] if text is None else [{"type": "output_text", "text": text, "annotations": [], "logprobs": []}]
        return {"id": self._itemId(answer), "type": "message", "status": status, "role": "assistant", "content": content}

    def _response(
        self, answer: Answer, status: str, output: list[dict[str, Any]], completionTokens: Optional[int] = None
    ) -> dict[str, Any]:
        request = answer.request
        extra = request.extra
        response: dict[str, Any] = {
            "id": answer.id,
            "object": "response",
            "created_at": answer.created,
            "status": status,
            "error": None,
            "incomplete_details": {"reason": "max_output_tokens"} if status == "incomplete" else None,
            "instructions": extra.get("instructions"),
            "max_output_tokens": request.maxTokens,
            "model": request.model,
            "output": output,
            "parallel_tool_calls": True,
            "previous_response_id": extra.get("previous_response_id"),
            "reasoning": {"effort": None, "summary": None},
            "store": extra.get("store", True),
            "temperature": extra.get("temperature", 1.0),
            "text": {"format": {"type": "text"}},
            "tool_choice": "auto",
            "tools": [],
            "top_p": extra.get("top_p", 1.0),
            "truncation": "disabled",
            "usage": None,
            "user": None,
            "metadata": extra.get("metadata") or {},
        }
        if completionTokens is not None:
            response["usage"] = {
                "input_tokens": answer.promptTokens,
                "input_tokens_details": {"cached_tokens": 0},
                "output_tokens": completionTokens,
                "output_tokens_details": {"reasoning_tokens": len(answer.reasoning)},
                "total_tokens": answer.promptTokens + completionTokens,
            }
        return response

    def _callItem(self, answer: Answer, call: ToolCall, arguments: str, status: str) -> dict[str, Any]:
        return {"type": "function_call", "id": self._itemId(answer), "call_id": "call_" + answer.id[-24:],
                "name": call.name, "arguments": arguments, "status": status}  # fmt: skip

    def _index(self, answer: Answer) -> int:
        # The reasoning item, if any, is output 0; the answer's is next.
        return 1 if answer.reasoning else 0

    def _reasoningItem(self, answer: Answer, text: Optional[str]) -> dict[str, Any]:
        id = answer.state.setdefault("reasoningItem", newId("rs_"))
        summary = [] if text is None else [{"type": "summary_text", "text": text}]
        return {"id": id, "type": "reasoning", "summary": summary}

    def _output(self, answer: Answer, item: dict[str, Any]) -> list[dict[str, Any]]:
        if not answer.reasoning:
            return [item]
        return [self._reasoningItem(answer, answer.reasoningText), item]

    def opening(self, answer: Answer) -> bytes:
        head = (
            _event(answer, "response.created", {"response": self._response(answer, "in_progress", [])})
            + _event(answer, "response.in_progress", {"response": self._response(answer, "in_progress", [])})
        )
        if not answer.reasoning:
            return head + self._itemOpening(answer)
        item = self._reasoningItem(answer, None)
        where = {"item_id": item["id"], "output_index": 0, "summary_index": 0}
        return (
            head
            + _event(answer, "response.output_item.added", {"output_index": 0, "item": item})
            + _event(answer, "response.reasoning_summary_part.added", {**where, "part": {"type": "summary_text", "text": ""}})
        )

    def thinking(self, answer: Answer, text: str) -> bytes:
        where = {"item_id": self._reasoningItem(answer, None)["id"], "output_index": 0, "summary_index": 0}
        return _event(answer, "response.reasoning_summary_text.delta", {**where, "delta": text})

    def afterThinking(self, answer: Answer) -> bytes:
        text = answer.reasoningText
        item = self._reasoningItem(answer, text)
        where = {"item_id": item["id"], "output_index": 0, "summary_index": 0}
        return (
            _event(answer, "response.reasoning_summary_text.done", {**where, "text": text})
            + _event(answer, "response.reasoning_summary_part.done", {**where, "part": item["summary"][0]})
            + _event(answer, "response.output_item.done", {"output_index": 0, "item": item})
            + self._itemOpening(answer)
        )

    def _itemOpening(self, answer: Answer) -> bytes:
        index = self._index(answer)
        call = answer.request.toolCall
        if call is not None:
            return _event(answer, "response.output_item.added",
                          {"output_index": index, "item": self._callItem(answer, call, "", "in_progress")})  # fmt: skip
        where = {"item_id": self._itemId(answer), "output_index": index, "content_index": 0}
        return (
            _event(answer, "response.output_item.added",
                   {"output_index": index, "item": self._message(answer, None, "in_progress")})
            + _event(answer, "response.content_part.added",
                     {**where, "part": {"type": "output_text", "text": "", "annotations": [], "logprobs": []}})
        )  # fmt: skip

    def token(self, answer: Answer, text: str) -> bytes:
        answer.state.setdefault("text", []).append(text)
        index = self._index(answer)
        if answer.request.toolCall is not None:
            return _event(
                answer,
                "response.function_call_arguments.delta",
                {"item_id": self._itemId(answer), "output_index": index, "delta": text},
            )
        return _event(
            answer,
            "response.output_text.delta",
            {"item_id": self._itemId(answer), "output_index": index, "content_index": 0, "delta": text, "logprobs": []},
        )

    def closing(self, answer: Answer, finish: Finish, completionTokens: int) -> bytes:
        text = "".join(answer.state.get("text", []))
        index = self._index(answer)
        call = answer.request.toolCall
        if call is not None:
            item = self._callItem(answer, call, call.arguments, "completed")
            return (
                _event(answer, "response.function_call_arguments.done",
                       {"item_id": item["id"], "output_index": index, "name": call.name, "arguments": call.arguments})
                + _event(answer, "response.output_item.done", {"output_index": index, "item": item})
                + _event(answer, "response.completed",
                         {"response": self._response(answer, "completed", self._output(answer, item), completionTokens)})
            )  # fmt: skip
        status = "incomplete" if finish == "length" else "completed"
        where = {"item_id": self._itemId(answer), "output_index": index, "content_index": 0}
        message = self._message(answer, text, status)
        return (
            _event(answer, "response.output_text.done", {**where, "text": text, "logprobs": []})
            + _event(answer, "response.content_part.done", {**where, "part": message["content"][0]})
            + _event(answer, "response.output_item.done", {"output_index": index, "item": message})
            + _event(answer, f"response.{status}",
                     {"response": self._response(answer, status, self._output(answer, message), completionTokens)})
        )  # fmt: skip

    def whole(self, answer: Answer, text: str, finish: Finish, completionTokens: int) -> bytes:
        status = "incomplete" if finish == "length" else "completed"
        call = answer.request.toolCall
        output = (
            self._message(answer, text, status)
            if call is None
            else self._callItem(answer, call, call.arguments, "completed")
        )
        return encode(self._response(answer, status, self._output(answer, output), completionTokens))

    def errorEvent(self, answer: Answer, problem: RequestError) -> bytes:
        return _event(answer, "error", {"code": "server_error", "message": problem.message, "param": None})
