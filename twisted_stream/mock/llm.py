# -*- test-case-name: tests.test_mockllm -*-
"""
C{chunkgen}'s mock LLM: OpenAI's and Anthropic's chat endpoints under
C{/v1}, with exact timing.

The answer is deterministic: C{mock-passage} answers with a fixed passage,
C{mock-echo} with the last user message. It is split into tokens (each
word with the white space before it) and paced by a L{LoopingCall}: the
first token after C{ttft} seconds, then C{tokensPerSecond} of them a second.
The pace can be set per request, by the body fields C{mock_ttft} and
C{mock_tokens_per_second} or the headers C{X-Mock-TTFT} and
C{X-Mock-Tokens-Per-Second}.
"""

from __future__ import annotations

import re
from dataclasses import replace
from typing import Callable, Optional, Sequence

from twisted.internet.interfaces import IDelayedCall, IPushProducer, IReactorTime
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.resource import IResource
from twisted.web.server import NOT_DONE_YET, Request
from zope.interface import implementer

from twisted_stream.http._text import STREAMING_HEADERS, PlainResource
from twisted_stream.mock._background import BackgroundAnswer, BackgroundAnswers
from twisted_stream.mock._faults import STATUS_FAULTS, Fault, faultOf
from twisted_stream.mock._script import Asked, Reply
from twisted_stream.mock._state import MockLLM, Pace
from twisted_stream.mock.apis import (
    Answer,
    ChatAPI,
    ChatRequest,
    Finish,
    RequestError,
    embeddings,
    gemini,
    newId,
    openai,
)
from twisted_stream.mock.apis.anthropic import AnthropicMessages
from twisted_stream.mock.apis.responses import OpenAIResponses
from twisted_stream.mock.apis.tools import TOOLS_MODEL, ToolCall
from twisted_stream.mock.apis.tools import pieces as toolPieces

__all__ = ["EMBEDDING_MODEL", "MODELS", "PASSAGE", "ChatResource", "MockLLM", "MockLLMResource", "Pace", "answerFor", "tokens"]

PASSAGE = (
    "A stream is a promise kept one token at a time. The proxy in the middle holds nothing back: "
    "each piece leaves the moment it arrives, so the reader sees the answer grow as the model "
    "writes it, and nobody stares at an empty page while the whole reply is buffered somewhere "
    "along the way."
)
"""What C{mock-passage} answers."""

MODELS = ("mock-passage", "mock-echo", TOOLS_MODEL)
"""The chat models the mock serves."""

EMBEDDING_MODEL = "mock-embed"
"""The embedding model it lists (it embeds with any name)."""

_LISTED = (*MODELS, EMBEDDING_MODEL)

_MID_STREAM = ("disconnect", "stall", "error_event")

def tokens(text: str) -> list[str]:
    """
    Split text into tokens: each word with the white space before it.

    @param text: Any text.
    @return: Tokens that join back into C{text} (the white space at its end
        goes with the last; text of white space only has none).
    """
    return re.findall(r"\s*\S+(?:\s+$)?", text)


def answerFor(request: ChatRequest) -> str:
    """
    The mock's answer to a request.

    @param request: A checked request for one of L{MODELS}.
    @return: A sentence quoting the tool's result, for a conversation that
        ends with one; else the fixed passage, or (C{mock-echo}) the last
        user message.
    """
    if request.toolResult is not None:
        return f"The tool returned: {request.toolResult}"
    if request.model == "mock-echo":
        return next((text for role, text in reversed(request.messages) if role == "user"), "")
    return PASSAGE


def _planned(chat: ChatRequest, reply: Optional[Reply]) -> tuple[ChatRequest, Sequence[str], Finish]:
    """
    What to answer: the scripted reply, if it says, else the built-in
    model's answer.

    @return: The request as answered (a scripted reply decides whether it
        gets a tool call), the pieces the answer streams in, and how it ends.
    """
    if reply is not None and reply.hasContent:
        chat = replace(chat, toolCall=reply.toolCall)
        if reply.jsonText is not None:
            return chat, toolPieces(ToolCall("", reply.jsonText)), "complete"
        if reply.text is not None:
            return chat, tokens(reply.text), "complete"
    if chat.toolCall is not None:
        # The arguments, streamed in pieces at the pace of tokens.
        return chat, toolPieces(chat.toolCall), "tool_call"
    return chat, tokens(answerFor(chat)), "complete"


def _jsonError(request: Request, api: ChatAPI, problem: RequestError) -> bytes:
    request.setResponseCode(problem.status)
    request.setHeader(b"Content-Type", b"application/json")
    return api.error(problem)


def _postOnly(request: Request, api: ChatAPI) -> bytes:
    """
    The answer to a method other than C{POST}: C{405}, in the API's shape.
    """
    request.setHeader(b"Allow", b"POST")
    return _jsonError(request, api, RequestError(f"use POST for {request.path.decode('latin-1')}", status=405))


@implementer(IPushProducer)
class _TokenStream:
    """
    Writes one streamed answer's events, paced; the request's push
    producer, so a client that does not read pauses it.
    """

    _log = Logger()

    def __init__(
        self,
        request: Request,
        api: ChatAPI,
        answer: Answer,
        pieces: Sequence[str],
        finish: Finish,
        pace: Pace,
        clock: IReactorTime,
        fault: Optional[Fault] = None,
    ) -> None:
        self._request = request
        self._api = api
        self._answer = answer
        self._fault = fault if fault is not None and fault.kind in _MID_STREAM else None
        self._pieces = pieces
        self._finish = finish
        self._pace = pace
        self._clock = clock
        self._sent = 0
        self._first: Optional[IDelayedCall] = None
        self._loop: Optional[LoopingCall] = None
        self._begun = False
        self._origin = 0.0
        self._paused = False
        self._done = False

    def start(self) -> None:
        self._request.notifyFinish().addErrback(self._gone)
        self._request.registerProducer(self, True)
        self._request.write(b"")
        # Token k (from 0) is due at origin + k / tokensPerSecond, the origin
        # being when the first token is due, however late the reactor is.
        self._origin = self._clock.seconds() + self._pace.ttft
        self._first = self._clock.callLater(self._pace.ttft, self._begin)

    def _begin(self) -> None:
        self._first = None
        self._begun = True
        self._request.write(self._api.opening(self._answer))
        if not self._paused:
            self._startLoop()

    def _startLoop(self) -> None:
        self._loop = LoopingCall(self._tick)
        self._loop.clock = self._clock
        self._loop.start(1 / self._pace.tokensPerSecond, now=True).addErrback(self._failed)

    def _tick(self) -> None:
        # The tokens due by now, from the clock rather than by counting
        # ticks: a late reactor gets the missed tokens at once, and float
        # rounding never shifts the schedule (LoopingCall.withCount's first
        # count can come out as 0).
        elapsed = self._clock.seconds() - self._origin
        # (A token may go up to a thousandth of its interval early: clock
        # times this far from the epoch round by tenths of a microsecond.)
        due = min(len(self._pieces), int(elapsed * self._pace.tokensPerSecond + 1e-3) + 1)
        while self._sent < due and not (self._paused or self._done):
            if self._fault is not None and self._fault.after == self._sent:
                self._strike(self._fault)
                return
            self._request.write(self._api.token(self._answer, self._pieces[self._sent]))
            self._sent += 1
        if self._sent == len(self._pieces) and not self._done:
            self._end()

    def _strike(self, fault: Fault) -> None:
        # Once: a stall goes on afterwards.
        self._fault = None
        if fault.kind == "disconnect":
            self._stop()
            self._request.loseConnection()
        elif fault.kind == "error_event":
            self._stop()
            self._request.write(self._api.errorEvent(self._answer, RequestError("mock fault error_event", status=500)))
            self._request.unregisterProducer()
            self._request.finish()
        else:
            # A stall: the loop stops, and the pace resumes from its end.
            if self._loop is not None and self._loop.running:
                self._loop.stop()
            self._origin += fault.seconds
            self._first = self._clock.callLater(fault.seconds, self._afterStall)

    def _afterStall(self) -> None:
        self._first = None
        if not (self._paused or self._done):
            self._startLoop()

    def _stop(self) -> None:
        self._done = True
        if self._first is not None:
            self._first.cancel()
            self._first = None
        if self._loop is not None and self._loop.running:
            self._loop.stop()

    def _end(self) -> None:
        self._stop()
        request = self._request
        request.write(self._api.closing(self._answer, self._finish, self._sent))
        request.unregisterProducer()
        request.finish()

    def _gone(self, reason: Failure) -> None:
        self._stop()

    def _failed(self, reason: Failure) -> None:
        self._log.failure("token stream failed", reason)
        self._stop()
        self._request.loseConnection()

    def pauseProducing(self) -> None:
        if not self._done:
            self._paused = True
            if self._loop is not None and self._loop.running:
                self._loop.stop()

    def resumeProducing(self) -> None:
        if self._paused and not self._done:
            self._paused = False
            if self._begun:
                # Go on at the pace from here: the next token is due now.
                self._origin = self._clock.seconds() - self._sent / self._pace.tokensPerSecond
                self._startLoop()

    def stopProducing(self) -> None:
        self._stop()


class ChatResource(PlainResource):
    """
    One API's chat endpoint: C{POST} a conversation, get the mock's answer,
    streamed or whole.
    """

    isLeaf = True

    def __init__(self, api: ChatAPI, mock: MockLLM, background: Optional[BackgroundAnswers] = None) -> None:
        """
        @param api: Whose wire shapes to speak.
        @param mock: The mock's settings and state.
        @param background: Where answers asked for in the background are
            kept (the Responses API's), if they may be.
        """
        super().__init__()
        self._api = api
        self._mock = mock
        self._clock = mock.clock
        self._background = background

    def render(self, request: Request) -> bytes | int:
        """
        Answer POST; anything else gets the API's error.
        """
        if request.method != b"POST":
            return _postOnly(request, self._api)
        return self.render_POST(request)

    def render_POST(self, request: Request) -> bytes | int:
        """
        Answer a chat request: streamed, or whole after the time the tokens
        would take.
        """
        content = request.content
        mock = self._mock
        try:
            chat = self._api.parse(content.read() if content is not None else b"")
            reply = mock.script.answer(Asked(self._api.name, chat, request.requestHeaders))
            if reply is None and chat.model not in MODELS:
                raise RequestError(
                    f"The model {chat.model!r} does not exist; this mock serves {', '.join(MODELS)}",
                    "model",
                    404,
                    "model_not_found",
                )
            pace = mock.pace if reply is None else mock.pace.overridden(reply.ttft, reply.tokensPerSecond)
            pace = pace.forRequest(request, chat)
            # The request's own fault first, then the rule's, then the plan's.
            fault = faultOf(chat.extra, request.getHeader(b"x-mock-fault"))
            if fault is None and reply is not None:
                fault = reply.fault
            if fault is None and mock.faults is not None:
                fault = mock.faults.pick()
        except RequestError as problem:
            return _jsonError(request, self._api, problem)
        if fault is not None and fault.kind == "reset":
            transport = request.channel.transport if request.channel is not None else None
            if transport is not None:
                transport.abortConnection()  # type: ignore[attr-defined]
            return NOT_DONE_YET
        if fault is not None and fault.kind in STATUS_FAULTS:
            return self._statusFault(request, fault)
        wait = fault.seconds if fault is not None and fault.kind == "slow_headers" else 0.0
        chat, pieces, finish = _planned(chat, reply)
        if chat.maxTokens is not None and len(pieces) > chat.maxTokens and finish != "tool_call":
            pieces, finish = pieces[: chat.maxTokens], "length"
        answer = Answer(
            newId(self._api.idPrefix),
            int(self._clock.seconds()),
            chat,
            sum(len(tokens(text)) for _, text in chat.messages),
        )
        if self._background is not None and chat.extra.get("background") is True:
            return self._inBackground(request, chat.stream, answer, pieces, finish, pace, fault, wait)
        if chat.stream:
            request.setHeader(b"Content-Type", b"text/event-stream; charset=utf-8")
            for name, value in STREAMING_HEADERS:
                request.setHeader(name, value)
            stream = _TokenStream(request, self._api, answer, pieces, finish, pace, self._clock, fault)
            self._afterWait(request, wait, stream.start)
            return NOT_DONE_YET
        body = self._api.whole(answer, "".join(pieces), finish, len(pieces))
        delay = pace.ttft + max(0, len(pieces) - 1) / pace.tokensPerSecond + wait
        if fault is not None and fault.kind == "stall":
            delay += fault.seconds
        if fault is not None and fault.kind == "error_event":
            return self._statusFault(request, Fault("server_error"))
        self._later(request, delay, body, drop=fault is not None and fault.kind == "disconnect")
        return NOT_DONE_YET

    def _statusFault(self, request: Request, fault: Fault) -> bytes:
        status, message = STATUS_FAULTS[fault.kind]
        if fault.kind == "overloaded":
            status = self._api.overloadedStatus
        if fault.kind == "rate_limit":
            request.setHeader(b"Retry-After", b"%d" % (fault.seconds or 1,))
            for name, value in self._api.rateLimitHeaders:
                request.setHeader(name, value)
        return _jsonError(request, self._api, RequestError(message, status=status, code=fault.kind))

    def _inBackground(
        self,
        request: Request,
        stream: bool,
        answer: Answer,
        pieces: Sequence[str],
        finish: Finish,
        pace: Pace,
        fault: Optional[Fault],
        wait: float,
    ) -> bytes | int:
        """
        Make the answer in the background (OpenAI's C{background: true}):
        it runs whether the client stays or not; streamed, the client
        follows it as it is made; else it gets the response, C{queued}.
        """
        assert self._background is not None and isinstance(self._api, OpenAIResponses)
        job = BackgroundAnswer(self._api, answer)
        self._background.add(job)
        tokens = _TokenStream(job, self._api, answer, pieces, finish, pace, self._clock, fault)  # type: ignore[arg-type]
        self._afterWait(job, wait, tokens.start)  # type: ignore[arg-type]
        if stream:
            return job.follow(request, -1)
        request.setHeader(b"Content-Type", b"application/json")
        return job.responseObject()

    def _afterWait(self, request: Request, wait: float, then: Callable[[], None]) -> None:
        if not wait:
            then()
            return
        call = self._clock.callLater(wait, then)
        request.notifyFinish().addErrback(lambda _: call.cancel() if call.active() else None)

    def _later(self, request: Request, delay: float, body: bytes, drop: bool = False) -> None:
        def answer() -> None:
            if drop:
                request.loseConnection()
                return
            request.setHeader(b"Content-Type", b"application/json")
            request.setHeader(b"Content-Length", b"%d" % (len(body),))
            request.write(body)
            request.finish()

        call = self._clock.callLater(delay, answer)
        request.notifyFinish().addErrback(lambda _: call.cancel() if call.active() else None)


class ResponsesResource(PlainResource):
    """
    C{/v1/responses}: C{POST} an answer (in the background too, see
    L{twisted_stream.mock._background}); C{GET /v1/responses/ID} (and
    C{?stream=true&starting_after=N}) and C{POST /v1/responses/ID/cancel}
    for one made in the background.
    """

    isLeaf = True

    def __init__(self, mock: MockLLM) -> None:
        super().__init__()
        self._api = OpenAIResponses()
        self.answers = BackgroundAnswers()
        self._create = ChatResource(self._api, mock, self.answers)

    def render(self, request: Request) -> bytes | int:
        where = [segment for segment in request.postpath or [] if segment]
        if not where:
            return self._create.render(request)
        job = self.answers.get(where[0].decode("ascii", "replace"))
        if job is None or len(where) > 2 or (len(where) == 2 and where[1] != b"cancel"):
            problem = RequestError(f"No response found with id '{where[0].decode('ascii', 'replace')}'.", status=404)
            return _jsonError(request, self._api, problem)
        if len(where) == 2:
            if request.method != b"POST":
                return _postOnly(request, self._api)
            job.cancel()
        elif request.method != b"GET":
            return _jsonError(request, self._api, RequestError("use GET to retrieve a response", status=405))
        elif _query(request, b"stream") == b"true":
            after = _query(request, b"starting_after") or b"-1"
            if not after.lstrip(b"-").isdigit():
                return _jsonError(request, self._api, RequestError("starting_after must be a number", "starting_after"))
            return job.follow(request, int(after))
        request.setHeader(b"Content-Type", b"application/json")
        return job.responseObject()


def _query(request: Request, name: bytes) -> Optional[bytes]:
    args: dict[bytes, list[bytes]] = request.args or {}
    values = args.get(name)
    return values[-1] if values else None


class EmbeddingsResource(PlainResource):
    """
    C{POST /v1/embeddings}: deterministic vectors, answered at once.
    """

    isLeaf = True

    def render(self, request: Request) -> bytes:
        api = openai.OpenAIChat()
        if request.method != b"POST":
            return _postOnly(request, api)
        content = request.content
        try:
            asked = embeddings.parseEmbeddingsRequest(content.read() if content is not None else b"")
        except RequestError as problem:
            return _jsonError(request, api, problem)
        request.setHeader(b"Content-Type", b"application/json")
        return embeddings.answer(asked)


class ModelsResource(PlainResource):
    """
    C{GET /v1/models}; and Gemini's C{POST /v1/models/MODEL:ACTION}, the
    API version the google-genai SDK calls by default.
    """

    isLeaf = True

    def __init__(self, clock: IReactorTime, gemini: GeminiResource) -> None:
        super().__init__()
        self._clock = clock
        self._gemini = gemini

    def render_POST(self, request: Request) -> bytes | int:
        return self._gemini.serve(request, b"/".join(request.postpath or []).decode("utf-8", "replace"))

    def render_GET(self, request: Request) -> bytes:
        request.setHeader(b"Content-Type", b"application/json")
        if request.getHeader(b"anthropic-version") is not None:
            # Anthropic's clients send this header with every request.
            data = [
                {"type": "model", "id": m, "display_name": m, "created_at": "2026-01-01T00:00:00Z"} for m in _LISTED
            ]
            return openai.encode({"data": data, "has_more": False, "first_id": _LISTED[0], "last_id": _LISTED[-1]})
        return openai.modelList(_LISTED, int(self._clock.seconds()))


class MockLLMResource(PlainResource):
    """
    C{/v1}: OpenAI's C{chat/completions}, C{responses} and C{embeddings},
    Anthropic's C{messages}, the models (and Gemini's C{models/M:ACTION}),
    and each API's JSON error for anything else.
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
        self.putChild(b"messages", ChatResource(AnthropicMessages(), mock))
        self.putChild(b"responses", ResponsesResource(mock))
        self.putChild(b"embeddings", EmbeddingsResource())
        self.putChild(b"models", ModelsResource(mock.clock, GeminiResource(mock)))

    def getChild(self, path: bytes, request: Request) -> IResource:
        """
        An unknown URL below C{/v1}: a 404, in Anthropic's shape for clients
        that say they are Anthropic's, OpenAI's otherwise.
        """
        return _UnknownURL()

    def render(self, request: Request) -> bytes:
        return _UnknownURL().render(request)


class GeminiResource(PlainResource):
    """
    C{/v1beta}: Gemini's C{models/MODEL:generateContent} and
    C{models/MODEL:streamGenerateContent}; Google's JSON error for anything
    else.
    """

    isLeaf = True

    def __init__(self, mock: MockLLM) -> None:
        super().__init__()
        self._mock = mock

    def render(self, request: Request) -> bytes | int:
        where = b"/".join(request.postpath or []).decode("utf-8", "replace")
        if not where.startswith("models/"):
            problem = RequestError(f"Unknown request URL: {request.path.decode('latin-1')}", status=404)
            return _jsonError(request, gemini.GeminiGenerate("", False), problem)
        return self.serve(request, where[len("models/") :])

    def serve(self, request: Request, rest: str) -> bytes | int:
        """
        Answer C{models/REST} (C{MODEL:ACTION}).
        """
        try:
            api = gemini.forURL(rest)
        except RequestError as problem:
            return _jsonError(request, gemini.GeminiGenerate("", False), problem)
        return ChatResource(api, self._mock).render(request)


class _UnknownURL(PlainResource):
    isLeaf = True

    def render(self, request: Request) -> bytes:
        where = f"{request.method.decode('latin-1')} {request.path.decode('latin-1')}"
        api: ChatAPI = AnthropicMessages() if request.getHeader(b"anthropic-version") else openai.OpenAIChat()
        return _jsonError(request, api, RequestError(f"Unknown request URL: {where}", status=404, code="unknown_url"))
