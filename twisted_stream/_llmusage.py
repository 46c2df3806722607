# -*- test-case-name: tests.test_llmusage -*-
"""
What an LLM delivered, read from its event stream as it passes: the model,
the content deltas forwarded, and the token counts when the stream carries
them (OpenAI's chat completion chunks, with C{stream_options.include_usage}
a last chunk with C{usage}; OpenAI's Responses API events, the response in
C{response.created} and, with C{usage}, in C{response.completed} or
C{response.incomplete}; Anthropic's Messages events, C{message_start} and
C{message_delta} with C{usage}; Gemini's C{GenerateContentResponse}
chunks, with C{usageMetadata}).

It reads each piece after the piece has been written to the client, so it
never delays a byte; a stream the client abandons keeps what was counted
up to then. Lines are parsed only when they start with C{data: {}; a line
longer than L{MAX_LINE} is skipped, so a hostile stream cannot make it
hold more than that.
"""

from __future__ import annotations

import json
from typing import Any, Optional

__all__ = ["MAX_LINE", "UsageReader"]

MAX_LINE = 256 * 1024
"""The longest event line read; longer ones are skipped."""


class UsageReader:
    """
    Reads the events of one stream.

    @ivar model: The model that answered, once named.
    @ivar deltas: Content deltas forwarded (text or tool-call pieces).
    @ivar promptTokens: Input tokens, when the stream said.
    @ivar completionTokens: Output tokens, when the stream said.
    """

    def __init__(self) -> None:
        self.model: Optional[str] = None
        self.deltas = 0
        self.promptTokens: Optional[int] = None
        self.completionTokens: Optional[int] = None
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
            self._usage(message.get("usage"), "input_tokens", "output_tokens")
        elif kind == "content_block_delta":
            self.deltas += 1
        elif kind == "message_delta":
            self._usage(event.get("usage"), "input_tokens", "output_tokens")
        elif kind == "response.output_text.delta":
            self.deltas += 1
        elif kind in ("response.created", "response.completed", "response.incomplete"):
            response = event.get("response") or {}
            if isinstance(response, dict):
                self._named(response.get("model"))
                self._usage(response.get("usage"), "input_tokens", "output_tokens")
        elif "candidates" in event:
            self._named(event.get("modelVersion"))
            for candidate in event.get("candidates") or ():
                parts = ((candidate.get("content") or {}).get("parts") or ()) if isinstance(candidate, dict) else ()
                if any(isinstance(part, dict) and (part.get("text") or part.get("functionCall")) for part in parts):
                    self.deltas += 1
            self._usage(event.get("usageMetadata"), "promptTokenCount", "candidatesTokenCount")
        elif event.get("object") == "chat.completion.chunk":
            self._named(event.get("model"))
            for choice in event.get("choices") or ():
                delta = choice.get("delta") or {} if isinstance(choice, dict) else {}
                if delta.get("content") or delta.get("tool_calls"):
                    self.deltas += 1
            self._usage(event.get("usage"), "prompt_tokens", "completion_tokens")

    def _named(self, model: Any) -> None:
        if isinstance(model, str) and self.model is None:
            self.model = model[:200]

    def _usage(self, usage: Any, prompt: str, completion: str) -> None:
        if not isinstance(usage, dict):
            return
        if isinstance(usage.get(prompt), int):
            self.promptTokens = usage[prompt]
        if isinstance(usage.get(completion), int):
            self.completionTokens = usage[completion]

    def fields(self) -> dict[str, Any]:
        """
        @return: What was read, as the stream event's fields (none when the
            stream was not an LLM's).
        """
        if self.model is None and not self.deltas:
            return {}
        return {
            "model": self.model,
            "llm_deltas": self.deltas,
            "prompt_tokens": self.promptTokens,
            "completion_tokens": self.completionTokens,
        }
