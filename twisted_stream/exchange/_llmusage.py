# -*- test-case-name: tests.test_llmusage -*-
"""
What an LLM delivered, read from its answer as it passes: the model, the
content deltas forwarded, and the token counts the answer carries.

Two readers, one per shape of answer:

  - L{UsageReader}, for event streams: OpenAI's chat completion chunks
    (with C{stream_options.include_usage} a last chunk with C{usage});
    OpenAI's Responses API events (the response in C{response.created} and,
    with C{usage}, in C{response.completed} or C{response.incomplete});
    Anthropic's Messages events (C{message_start}, C{message_delta} with
    C{usage}); Gemini's C{GenerateContentResponse} chunks (with
    C{usageMetadata}).
  - L{WholeAnswerReader}, for an answer in one JSON document: a
    C{chat.completion}, a Responses C{response}, a Message, a Gemini
    C{generateContent} answer, an embeddings list.

Both read each piece after it has been written to the client, so neither
delays a byte; an answer the client abandons keeps what was counted up to
then. Both hold a bounded number of bytes, whatever the upstream sends.

Most events of a stream are deltas, and decoding each as JSON was a tenth of
the gateway's CPU at 1,000 LLM streams: once the model is known, an event
that carries no usage is only looked at for whether it is a delta with
content, by a pattern over its bytes; only events that can carry the model
or usage are decoded.

L{apiOf} names the API a request path is for, as a bounded label.
"""

from __future__ import annotations

import json
import re
from typing import Any, Optional

__all__ = ["APIS", "MAX_LINE", "UsageReader", "WholeAnswerReader", "apiOf"]

MAX_LINE = 256 * 1024
"""The longest event line read; longer ones are skipped."""

APIS = ("chat", "responses", "messages", "gemini", "embeddings", "other")
"""The values L{apiOf} gives."""

_USAGE_KEYS = (
    ("prompt_tokens", "completion_tokens"),  # OpenAI's Chat Completions, embeddings
    ("input_tokens", "output_tokens"),  # OpenAI's Responses, Anthropic's Messages
    ("promptTokenCount", "candidatesTokenCount"),  # Gemini
)

# Where a usage object begins (in an event: the event may carry usage, and
# is decoded; at a whole answer's end: the object to decode).
_USAGE_AT = re.compile(rb'"usage(?:Metadata)?"\s*:\s*(?=\{)')
# Deltas with content, told by their bytes: Anthropic's and the Responses
# API's by their type; a chat completion chunk's by a delta whose content
# is a non-empty string or that has tool calls; Gemini's by a candidate's
# part with text or a function call.
_TYPED_DELTA = re.compile(rb'"type"\s*:\s*"(?:content_block_delta|response\.output_text\.delta)"')
_CHAT_DELTA = re.compile(rb'"delta"\s*:\s*\{[^{}]*?"(?:content"\s*:\s*"[^"]|tool_calls"\s*:\s*\[)')
_GEMINI_DELTA = re.compile(rb'"candidates"\s*:.*?"(?:text"\s*:\s*"[^"]|functionCall")', re.DOTALL)

_WHOLE_HEAD = 16 * 1024
"""Bytes of a whole answer kept from its start, and from its end: an answer
within both is decoded whole; a longer one (an embeddings list, a long
completion) is read where its model and usage are (near its start and at
its end), so a reader never holds more than three times this and a piece."""

_MODEL = re.compile(rb'"(?:model|modelVersion)"\s*:\s*"([^"\\]{1,200})"')


def apiOf(path: bytes) -> str:
    """
    Name the API a request is for, from its path (the client's: the route's
    prefix is whatever the operator chose, what follows is the API's).

    @param path: The request's path (a query string is ignored).
    @return: One of L{APIS}.
    """
    path = path.split(b"?", 1)[0].rstrip(b"/")
    if path.endswith(b"/chat/completions"):
        return "chat"
    if path.endswith(b"/responses"):
        return "responses"
    if path.endswith(b"/messages"):
        return "messages"
    if path.endswith((b":generateContent", b":streamGenerateContent")):
        return "gemini"
    if path.endswith((b"/embeddings", b":embedContent", b":batchEmbedContents")):
        return "embeddings"
    return "other"


class _Counts:
    """
    What both readers find.

    @ivar model: The model that answered, once named.
    @ivar deltas: Content deltas forwarded (text or tool-call pieces).
    @ivar promptTokens: Input tokens, when the answer said.
    @ivar completionTokens: Output tokens, when the answer said.
    """

    def __init__(self) -> None:
        self.model: Optional[str] = None
        self.deltas = 0
        self.promptTokens: Optional[int] = None
        self.completionTokens: Optional[int] = None

    def _named(self, model: Any) -> None:
        if isinstance(model, str) and self.model is None:
            self.model = model[:200]

    def _usage(self, usage: Any) -> None:
        if not isinstance(usage, dict):
            return
        for prompt, completion in _USAGE_KEYS:
            if isinstance(usage.get(prompt), int):
                self.promptTokens = usage[prompt]
            if isinstance(usage.get(completion), int):
                self.completionTokens = usage[completion]

    def fields(self) -> dict[str, Any]:
        """
        @return: What was read, as the stream event's fields (none when the
            answer was not an LLM's).
        """
        if self.model is None and not self.deltas and self.promptTokens is None:
            return {}
        return {
            "model": self.model,
            "llm_deltas": self.deltas,
            "prompt_tokens": self.promptTokens,
            "completion_tokens": self.completionTokens,
        }


class UsageReader(_Counts):
    """
    Reads the events of one stream. Lines are read only when they start
    with C{data: {}; a line longer than L{MAX_LINE} is skipped, so a hostile
    stream cannot make it hold more than that.
    """

    def __init__(self) -> None:
        super().__init__()
        self._partial = b""
        self._skipping = False

    def feed(self, data: bytes) -> None:
        """
        Read a piece of the stream, as it was forwarded.

        @param data: The piece.
        """
        if self._skipping:
            end = data.find(b"\n")
            if end < 0:
                return
            self._skipping = False
            data = data[end + 1 :]
        lines = (self._partial + data).split(b"\n")
        self._partial = lines.pop()
        for line in lines:
            if line.startswith(b"data: {"):
                self._event(line[6:])
        if len(self._partial) > MAX_LINE:
            self._partial = b""
            self._skipping = True

    def _event(self, payload: bytes) -> None:
        if self.model is not None and _USAGE_AT.search(payload) is None:
            # The common case: a delta, or nothing worth counting.
            if (
                _TYPED_DELTA.search(payload) is not None
                or _CHAT_DELTA.search(payload) is not None
                or _GEMINI_DELTA.search(payload) is not None
            ):
                self.deltas += 1
            return
        try:
            event: Any = json.loads(payload)
        except ValueError:
            return
        if not isinstance(event, dict):
            return
        kind = event.get("type")
        if kind == "message_start":
            message = event.get("message") or {}
            self._named(message.get("model"))
            self._usage(message.get("usage"))
        elif kind == "content_block_delta":
            self.deltas += 1
        elif kind == "message_delta":
            self._usage(event.get("usage"))
        elif kind == "response.output_text.delta":
            self.deltas += 1
        elif kind in ("response.created", "response.completed", "response.incomplete"):
            response = event.get("response") or {}
            if isinstance(response, dict):
                self._named(response.get("model"))
                self._usage(response.get("usage"))
        elif "candidates" in event:
            self._named(event.get("modelVersion"))
            for candidate in event.get("candidates") or ():
                parts = ((candidate.get("content") or {}).get("parts") or ()) if isinstance(candidate, dict) else ()
                if any(isinstance(part, dict) and (part.get("text") or part.get("functionCall")) for part in parts):
                    self.deltas += 1
            self._usage(event.get("usageMetadata"))
        elif event.get("object") == "chat.completion.chunk":
            self._named(event.get("model"))
            for choice in event.get("choices") or ():
                delta = choice.get("delta") or {} if isinstance(choice, dict) else {}
                if delta.get("content") or delta.get("tool_calls"):
                    self.deltas += 1
            self._usage(event.get("usage"))


class WholeAnswerReader(_Counts):
    """
    Reads an answer sent as one JSON document, when it has ended: its start
    and its end are kept (L{_WHOLE_HEAD} bytes each), never more.
    """

    def __init__(self) -> None:
        super().__init__()
        self._head = b""
        # The end, as pieces: joined and cut only when they pass twice the
        # bound, so a long answer in small pieces is not copied per piece.
        self._pieces: list[bytes] = []
        self._piecesLength = 0
        self._length = 0

    def held(self) -> int:
        """
        @return: How many bytes of the answer are held (at most three times
            L{_WHOLE_HEAD}, and a piece).
        """
        return len(self._head) + self._piecesLength

    def feed(self, data: bytes) -> None:
        """
        Keep what is needed of a piece of the answer.

        @param data: The piece, as it was forwarded.
        """
        self._length += len(data)
        if len(self._head) < _WHOLE_HEAD:
            room = _WHOLE_HEAD - len(self._head)
            self._head += data[:room]
            data = data[room:]
        if data:
            self._pieces.append(data)
            self._piecesLength += len(data)
            if self._piecesLength > 2 * _WHOLE_HEAD:
                self._pieces = [self._tail()]
                self._piecesLength = len(self._pieces[0])

    def _tail(self) -> bytes:
        return b"".join(self._pieces)[-_WHOLE_HEAD:]

    def fields(self) -> dict[str, Any]:
        """
        Read the answer (once it has ended, or as far as it came).

        @return: What was read, as the stream event's fields.
        """
        if self.model is None and self.promptTokens is None:
            self._read()
        return super().fields()

    def _read(self) -> None:
        tail = self._tail()
        if self._length == len(self._head) + len(tail):
            # All of it is here: decoded whole.
            try:
                answer: Any = json.loads(self._head + tail)
            except ValueError:
                return
            for document in answer if isinstance(answer, list) else [answer]:
                if isinstance(document, dict):
                    self._named(document.get("model") or document.get("modelVersion"))
                    self._usage(document.get("usage") or document.get("usageMetadata"))
            return
        found = _MODEL.search(self._head) or _MODEL.search(tail)
        if found is not None:
            self._named(found.group(1).decode("utf-8", "replace"))
        # The last "usage" of the end: the top level's comes after any in
        # the content.
        last = None
        for last in _USAGE_AT.finditer(tail):  # noqa: B007
            pass
        if last is not None:
            try:
                value, _ = json.JSONDecoder().raw_decode(tail[last.end() :].decode("utf-8", "replace"))
            except ValueError:
                return
            self._usage(value)
