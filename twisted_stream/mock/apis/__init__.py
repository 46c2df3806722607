# -*- test-case-name: tests.test_mockllm -*-
"""
Wire shapes of the LLM APIs that C{chunkgen} imitates, one module per API:
how a request is read and checked, and how the answer, its streamed events
and its errors look. The pacing and serving are L{twisted_stream.mock.llm}'s:
a new API is one module here that provides L{ChatAPI}, and one line there.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from typing import Any, Callable, Literal, Mapping, Optional, Protocol, Sequence

from twisted_stream._numbers import inRange, isWholeIn, rangeProblem
from twisted_stream.mock.apis.tools import ToolCall, ToolChoice

__all__ = [
    "Answer",
    "ChatAPI",
    "ChatRequest",
    "Finish",
    "RequestError",
    "checkedNumber",
    "choiceCount",
    "contentText",
    "jsonObject",
    "newId",
]

Finish = Literal["complete", "length", "tool_call"]
"""Why an answer ended: it was whole, it reached the token limit, or it is
a call to a tool."""


class RequestError(Exception):
    """
    A request the API refuses.

    @ivar status: The HTTP status.
    @ivar message: What is wrong, in one line.
    @ivar param: The request field at fault, if one is.
    @ivar code: The API's error code, if it has one for this.
    """

    def __init__(self, message: str, param: Optional[str] = None, status: int = 400, code: Optional[str] = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.param = param
        self.code = code


@dataclass(frozen=True)
class ChatRequest:
    """
    The parts of a chat request that shape the answer.

    @ivar model: The model asked for.
    @ivar messages: The conversation, as C{(role, text)}.
    @ivar stream: Whether to stream the answer.
    @ivar includeUsage: Whether a streamed answer reports its usage.
    @ivar maxTokens: The most tokens to answer with, if limited.
    @ivar extra: The request's other fields (where a mock finds its own).
    @ivar toolCall: The call to answer with, when the request gets one
        (decided when it is answered, from C{tools} and C{toolChoice}).
    @ivar toolResult: The result of a tool the conversation ends with.
    @ivar tools: The tools offered, by name, with their parameters'
        schemas, in the order offered.
    @ivar toolChoice: Which of them it lets the model call.
    @ivar schema: The JSON Schema a structured output must match
        (C{response_format} and its kin); an empty one for any JSON object;
        C{None} for text.
    @ivar choices: How many answers to give (OpenAI's C{n}): the same one,
        under each index.
    """

    model: str
    messages: Sequence[tuple[str, str]]
    stream: bool
    includeUsage: bool
    maxTokens: Optional[int]
    extra: Mapping[str, Any]
    toolCall: Optional[ToolCall] = None
    toolResult: Optional[str] = None
    tools: Mapping[str, Any] = field(default_factory=dict)
    toolChoice: ToolChoice = ("auto", None)
    schema: Optional[Mapping[str, Any]] = None
    choices: int = 1


def choiceCount(request: Mapping[str, Any]) -> int:
    """
    Read OpenAI's C{n}: how many choices to answer with, 1 to 128.

    @raise RequestError: For anything else.
    """
    n = request.get("n", 1)
    if n is None:
        return 1
    if not isWholeIn(n, 1, 128):
        raise RequestError("n must be an integer from 1 to 128", "n")
    return n


@dataclass(frozen=True)
class Answer:
    """
    One answer being given.

    @ivar id: Its identifier, in the API's style.
    @ivar created: When it was made, in whole seconds since the epoch.
    @ivar request: What it answers.
    @ivar promptTokens: How many tokens the request's messages count.
    @ivar reasoning: What the model reasons before it answers, in the
        pieces (tokens) it is streamed in: none for most answers.
    @ivar state: What an API keeps while it streams this answer (the
        Responses API: its events' sequence numbers, the text so far).
    """

    id: str
    created: int
    request: ChatRequest
    promptTokens: int
    reasoning: Sequence[str] = ()
    state: dict[str, Any] = field(default_factory=dict, compare=False)

    @property
    def reasoningText(self) -> str:
        """
        The reasoning, whole.
        """
        return "".join(self.reasoning)


class ChatAPI(Protocol):
    """
    One LLM API's chat endpoint, as a mock serves it.
    """

    name: str
    """Which API it is, as scripts name it (C{chat}, C{responses},
    C{messages}, C{gemini}: the gateway's C{api} label)."""

    idPrefix: str
    """What its answer identifiers start with."""

    @property
    def rateLimitHeaders(self) -> Sequence[tuple[bytes, bytes]]:
        """The headers it sends with a C{429}, besides C{Retry-After}."""

    @property
    def overloadedStatus(self) -> int:
        """Its status for "overloaded, try later" (OpenAI C{503}, Anthropic C{529})."""

    def parse(self, body: bytes) -> ChatRequest:
        """
        Read and check a request.

        @raise RequestError: If the API would refuse it.
        """

    def opening(self, answer: Answer) -> bytes:
        """
        @return: The events that open a streamed answer, sent with its first
            token (its first piece of reasoning, if it reasons).
        """

    def thinking(self, answer: Answer, text: str) -> bytes:
        """
        @return: The event that carries one token of reasoning.
        """

    def afterThinking(self, answer: Answer) -> bytes:
        """
        @return: The events between the reasoning and the answer's first
            token (which close the one and open the other).
        """

    def token(self, answer: Answer, text: str) -> bytes:
        """
        @return: The event that carries one token.
        """

    def closing(self, answer: Answer, finish: Finish, completionTokens: int) -> bytes:
        """
        @param completionTokens: The tokens of the answer, its reasoning's
            included.
        @return: The events that end a streamed answer.
        """

    def whole(self, answer: Answer, text: str, finish: Finish, completionTokens: int) -> bytes:
        """
        @return: The body of an answer that is not streamed.
        """

    def error(self, problem: RequestError) -> bytes:
        """
        @return: The body of a refused request.
        """

    def errorEvent(self, answer: Answer, problem: RequestError) -> bytes:
        """
        @return: The event that reports an error in the middle of a stream.
        """


def jsonObject(body: bytes) -> dict[str, Any]:
    """
    Read a request body that must be one JSON object.

    @raise RequestError: If it is not valid JSON, or not an object.
    """
    try:
        value = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise RequestError("the request body is not valid JSON") from None
    if not isinstance(value, dict):
        raise RequestError("the request body must be a JSON object")
    return value


def contentText(content: Any, where: str, item: Callable[[str, int], str]) -> str:
    """
    The text of a message's content: a string, or a list of typed blocks
    whose C{text} blocks are joined (others, such as images, are skipped).

    @param content: The C{content} field of a message.
    @param where: Its path in the request, for reasons.
    @param item: How the API writes the path of a list item
        (C{messages[0].content[1]} or C{messages.0.content.1}).
    @raise RequestError: For anything else.
    """
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        raise RequestError(f"{where} must be a string or a list of content blocks", where)
    parts = []
    for i, block in enumerate(content):
        path = item(where, i)
        if not isinstance(block, dict) or not isinstance(block.get("type"), str):
            raise RequestError(f"{path} must be an object with a type", path)
        if block["type"] == "text":
            if not isinstance(block.get("text"), str):
                raise RequestError(f"{path}.text must be a string", f"{path}.text")
            parts.append(block["text"])
    return "".join(parts)


def checkedNumber(value: Any, name: str, low: float, high: float) -> float:
    """
    Check a number (seconds, a rate) given in a request.

    @raise RequestError: If it is not a number from C{low} to C{high}.
    """
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not inRange(value, low, high):
        raise RequestError(rangeProblem(name, low, high), name)
    return float(value)


def newId(prefix: str) -> str:
    """
    @return: A fresh identifier in the APIs' style: a prefix and 24 hex digits.
    """
    return prefix + uuid.uuid4().hex[:24]
