# -*- test-case-name: tests.test_mockpaths -*-
"""
OpenAI's legacy Completions API: C{POST /v1/completions}, which vLLM and
other inference servers still serve and langchain's non-chat C{OpenAI}
class calls.

The prompt is one user message (a list of prompts: the first). As the API
does, C{max_tokens} is 16 unless the request says otherwise. A streamed
answer is one C{text_completion} event per token (per choice, with C{n}),
a last one with the C{finish_reason}, with
C{stream_options.include_usage} a chunk with no choices and the usage,
then C{data: [DONE]}.
"""

from __future__ import annotations

from typing import Any, Mapping, Optional

from twisted_stream.mock.apis import Answer, ChatRequest, Finish, RequestError, choiceCount, jsonObject
from twisted_stream.mock.apis.openai import (
    OpenAIRefusals,
    answerUsage,
    done,
    encode,
    event,
    maxTokensOf,
    modelOf,
    streamingOf,
)

__all__ = ["DEFAULT_MAX_TOKENS", "OpenAICompletions", "parseCompletionRequest"]

DEFAULT_MAX_TOKENS = 16
"""The API's own default for C{max_tokens}."""

_FINISH: Mapping[Finish, str] = {"complete": "stop", "length": "length", "tool_call": "stop"}


def parseCompletionRequest(body: bytes) -> ChatRequest:
    """
    Read and check a completion request: C{model}, C{prompt} (a string or a
    list of strings), C{max_tokens}, C{n}, C{stream}, C{stream_options}.

    @raise RequestError: For invalid JSON, a missing C{model} or
        C{prompt}, or a field of the wrong type.
    """
    request = jsonObject(body)
    model = modelOf(request)
    prompt = request.get("prompt")
    if isinstance(prompt, list) and prompt and all(isinstance(p, str) for p in prompt):
        prompt = prompt[0]
    if not isinstance(prompt, str):
        raise RequestError("prompt is required: a string or a list of strings", "prompt")
    stream, includeUsage = streamingOf(request)
    given = request.get("max_tokens")
    maxTokens = maxTokensOf(DEFAULT_MAX_TOKENS if given is None else given)
    return ChatRequest(model, [("user", prompt)], stream, includeUsage, maxTokens, request,
                       choices=choiceCount(request))  # fmt: skip


def _completion(answer: Answer, text: str, finish: Optional[str], index: int) -> dict[str, Any]:
    return {"text": text, "index": index, "logprobs": None, "finish_reason": finish}


class OpenAICompletions(OpenAIRefusals):
    """
    C{POST /v1/completions}, as L{twisted_stream.mock.apis.ChatAPI}.
    """

    name = "completions"
    idPrefix = "cmpl-"
    def parse(self, body: bytes) -> ChatRequest:
        return parseCompletionRequest(body)

    def _object(self, answer: Answer, choices: list[dict[str, Any]]) -> dict[str, Any]:
        return {"id": answer.id, "object": "text_completion", "created": answer.created,
                "model": answer.request.model, "system_fingerprint": None, "choices": choices}  # fmt: skip

    def _events(self, answer: Answer, text: str, finish: Optional[str]) -> bytes:
        return b"".join(
            event(self._object(answer, [_completion(answer, text, finish, index)]))
            for index in range(answer.request.choices)
        )

    def opening(self, answer: Answer) -> bytes:
        return b""

    def thinking(self, answer: Answer, text: str) -> bytes:
        # The API has no place for reasoning.
        return b""

    def afterThinking(self, answer: Answer) -> bytes:
        return b""

    def token(self, answer: Answer, text: str) -> bytes:
        return self._events(answer, text, None)

    def closing(self, answer: Answer, finish: Finish, completionTokens: int) -> bytes:
        events = self._events(answer, "", _FINISH[finish])
        if answer.request.includeUsage:
            used = answerUsage(answer, completionTokens)
            events += event({**self._object(answer, []), "usage": used})
        return events + done()

    def whole(self, answer: Answer, text: str, finish: Finish, completionTokens: int) -> bytes:
        choices = [_completion(answer, text, _FINISH[finish], index) for index in range(answer.request.choices)]
        used = answerUsage(answer, completionTokens)
        return encode({**self._object(answer, choices), "usage": used})
