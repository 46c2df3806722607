# -*- test-case-name: tests.test_mockpaths -*-
"""
The mock LLM's URL tree: which resource answers which path under C{/v1}
(OpenAI's and Anthropic's APIs) and C{/v1beta} (Gemini's).

The rule for every path: a path an API serves gets that API's answer; a
path it does not serve gets a C{404} in that API's error shape, never an
answer of another kind (a client that calls C{/v1/messages/batches} must
not get a Message back). Whose shape a shared path (C{/v1/models}) speaks
is told by the headers each official client sends: C{anthropic-version}
for Anthropic's, C{x-goog-api-key} or C{x-goog-api-client} for Google's.
"""

from __future__ import annotations

from typing import Literal

from twisted.web.resource import IResource
from twisted.web.server import Request

from twisted_stream.http._text import PlainResource
from twisted_stream.mock._state import MockLLM
from twisted_stream.mock.apis import ChatAPI, RequestError, embeddings, gemini, openai
from twisted_stream.mock.apis.anthropic import AnthropicMessages, countedInput
from twisted_stream.mock.apis.completions import OpenAICompletions
from twisted_stream.mock.llm import (
    EMBEDDING_MODEL,
    MODELS,
    ChatResource,
    ResponsesResource,
    jsonError,
    notFound,
    postOnly,
    promptTokens,
    segmentsBelow,
)

__all__ = ["GeminiResource", "MockLLMResource", "listedModels"]

Client = Literal["openai", "anthropic", "gemini"]


def _clientOf(request: Request) -> Client:
    if request.getHeader(b"anthropic-version") is not None:
        return "anthropic"
    if request.getHeader(b"x-goog-api-key") is not None or request.getHeader(b"x-goog-api-client") is not None:
        return "gemini"
    return "openai"


def _apiOf(client: Client) -> ChatAPI:
    if client == "anthropic":
        return AnthropicMessages()
    if client == "gemini":
        return gemini.GeminiGenerate("", False)
    return openai.OpenAIChat()


def listedModels(mock: MockLLM) -> list[str]:
    """
    @return: The models the mock lists: its own, then the aliases.
    """
    return [*MODELS, EMBEDDING_MODEL, *(name for name in mock.aliases if name not in MODELS)]


class _MessagesResource(ChatResource):
    """
    C{/v1/messages}, and C{POST /v1/messages/count_tokens}: the input's
    tokens, counted as the mock paces them.
    """

    def renderBelow(self, request: Request, where: list[bytes]) -> bytes | int:
        if where != [b"count_tokens"]:
            return super().renderBelow(request, where)
        if request.method != b"POST":
            return postOnly(request, self.api)
        content = request.content
        try:
            messages = countedInput(content.read() if content is not None else b"")
        except RequestError as problem:
            return jsonError(request, self.api, problem)
        request.setHeader(b"Content-Type", b"application/json")
        return openai.encode({"input_tokens": promptTokens(messages)})


class _EmbeddingsResource(PlainResource):
    """
    C{POST /v1/embeddings}: deterministic vectors, answered at once.
    """

    isLeaf = True

    def render(self, request: Request) -> bytes:
        api = openai.OpenAIChat()
        if request.method != b"POST":
            return postOnly(request, api)
        if segmentsBelow(request):
            return notFound(request, api)
        content = request.content
        try:
            asked = embeddings.parseEmbeddingsRequest(content.read() if content is not None else b"")
        except RequestError as problem:
            return jsonError(request, api, problem)
        request.setHeader(b"Content-Type", b"application/json")
        return embeddings.answer(asked)


class _ModelsResource(PlainResource):
    """
    C{GET /v1/models} and C{GET /v1/models/ID}, in the shape of the client
    that asks; and Gemini's C{POST /v1/models/MODEL:ACTION}, the API version
    the google-genai SDK calls when told C{v1}.
    """

    isLeaf = True

    def __init__(self, mock: MockLLM, gemini: GeminiResource) -> None:
        super().__init__()
        self._mock = mock
        self._gemini = gemini

    def render(self, request: Request) -> bytes | int:
        where = b"/".join(request.postpath or []).decode("utf-8", "replace").strip("/")
        client = _clientOf(request)
        if client == "gemini" or (request.method == b"POST" and ":" in where):
            return self._gemini.serveModels(request, where)
        api = _apiOf(client)
        if request.method != b"GET":
            request.setHeader(b"Allow", b"GET")
            return jsonError(request, api, RequestError("use GET for the models", status=405))
        listed = listedModels(self._mock)
        if where and where not in listed:
            return jsonError(request, api, RequestError(f"The model '{where}' does not exist", "model", 404, "model_not_found"))
        request.setHeader(b"Content-Type", b"application/json")
        created = int(self._mock.clock.seconds())
        if client == "anthropic":
            models = [{"type": "model", "id": m, "display_name": m, "created_at": "2026-01-01T00:00:00Z"} for m in listed]
            if where:
                return openai.encode(models[listed.index(where)])
            return openai.encode({"data": models, "has_more": False, "first_id": listed[0], "last_id": listed[-1]})
        if where:
            return openai.encode(openai.modelObject(where, created))
        return openai.modelList(listed, created)


class GeminiResource(PlainResource):
    """
    C{/v1beta}: Gemini's C{models} (list), C{models/MODEL} (get), and
    C{POST models/MODEL:ACTION} for C{generateContent},
    C{streamGenerateContent}, C{countTokens}, C{embedContent} and
    C{batchEmbedContents}; Google's JSON error for anything else.
    """

    isLeaf = True

    def __init__(self, mock: MockLLM) -> None:
        super().__init__()
        self._mock = mock
        self._api = gemini.GeminiGenerate("", False)

    def render(self, request: Request) -> bytes | int:
        where = b"/".join(request.postpath or []).decode("utf-8", "replace").strip("/")
        if where != "models" and not where.startswith("models/"):
            return notFound(request, self._api)
        return self.serveModels(request, where[len("models/") :])

    def serveModels(self, request: Request, rest: str) -> bytes | int:
        """
        Answer C{models/REST}: the list (C{REST} empty), one model, or
        C{MODEL:ACTION}.
        """
        listed = listedModels(self._mock)
        if ":" not in rest:
            if request.method != b"GET":
                return postOnly(request, self._api) if rest else notFound(request, self._api)
            if rest and rest not in listed:
                return jsonError(request, self._api, RequestError(f"models/{rest} is not found", status=404))
            request.setHeader(b"Content-Type", b"application/json")
            if rest:
                return openai.encode(gemini.modelObject(rest, rest == EMBEDDING_MODEL))
            return gemini.modelList(listed, EMBEDDING_MODEL)
        model, _, action = rest.rpartition(":")
        if action in gemini.GENERATE_ACTIONS or request.method != b"POST":
            try:
                api = gemini.forURL(rest)
            except RequestError as problem:
                return jsonError(request, self._api, problem)
            return ChatResource(api, self._mock).answer(request)
        content = request.content
        body = content.read() if content is not None else b""
        try:
            if action == "countTokens":
                messages = gemini.GeminiGenerate(model, False).counted(body)
                answer = openai.encode({"totalTokens": promptTokens(messages)})
            elif action in ("embedContent", "batchEmbedContents"):
                answer = gemini.embedded(body, action == "batchEmbedContents")
            else:
                return notFound(request, self._api, f"models/{rest}")
        except RequestError as problem:
            return jsonError(request, self._api, problem)
        request.setHeader(b"Content-Type", b"application/json")
        return answer


class MockLLMResource(PlainResource):
    """
    C{/v1}: OpenAI's C{chat/completions}, C{completions}, C{responses} and
    C{embeddings}, Anthropic's C{messages}, the models (and Gemini's
    C{models/M:ACTION}), and each API's JSON error for anything else.
    """

    def __init__(self, mock: MockLLM) -> None:
        """
        @param mock: The mock's settings and state.
        """
        super().__init__()
        chat = PlainResource()
        chat.putChild(b"completions", ChatResource(openai.OpenAIChat(), mock))
        chat.getChild = self.getChild  # type: ignore[method-assign]
        self.putChild(b"chat", chat)
        self.putChild(b"completions", ChatResource(OpenAICompletions(), mock))
        self.putChild(b"messages", _MessagesResource(AnthropicMessages(), mock))
        self.putChild(b"responses", ResponsesResource(mock))
        self.putChild(b"embeddings", _EmbeddingsResource())
        self.putChild(b"models", _ModelsResource(mock, GeminiResource(mock)))

    def getChild(self, path: bytes, request: Request) -> IResource:
        """
        An unknown URL below C{/v1}: a 404, in the shape of the client that
        asks.
        """
        return _UnknownURL()

    def render(self, request: Request) -> bytes:
        return _UnknownURL().render(request)


class _UnknownURL(PlainResource):
    isLeaf = True

    def render(self, request: Request) -> bytes:
        return notFound(request, _apiOf(_clientOf(request)))
