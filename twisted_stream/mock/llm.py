# -*- test-case-name: tests.test_mockllm -*-
"""
C{chunkgen}'s mock LLM: how a chat request of any API is answered.

What to answer is decided here, once, whatever the API: a scripted
reply, else a call to a tool the request lets the model call, else JSON
for a structured output, else the built-in model's answer (C{mock-passage}
a fixed passage, C{mock-echo} the last user message, C{mock-reasoning} the
passage after its reasoning), for the model asked or the one its alias
names. The answer is split into tokens (each word with the white space
before it) and streamed by L{twisted_stream.mock._tokenstream.TokenStream}
(or sent whole when the last token would have been): the first token
after C{ttft} seconds, then C{tokensPerSecond} of them a second. The pace
can be set per request, by the body fields C{mock_ttft} and
C{mock_tokens_per_second} or the headers C{X-Mock-TTFT} and
C{X-Mock-Tokens-Per-Second}.
"""

from __future__ import annotations

import json
import re
from collections import OrderedDict
from dataclasses import replace
from functools import partial
from typing import Any, Callable, Optional, Sequence

from twisted.web.server import NOT_DONE_YET, Request

from twisted_stream.http._text import STREAMING_HEADERS, PlainResource
from twisted_stream.mock._background import BackgroundAnswer, BackgroundAnswers
from twisted_stream.mock._faults import STATUS_FAULTS, Fault, faultOf
from twisted_stream.mock._script import Asked, Reply
from twisted_stream.mock._state import MockLLM, Pace
from twisted_stream.mock._tokenstream import TokenStream
from twisted_stream.mock.apis import (
    Answer,
    ChatAPI,
    ChatRequest,
    Finish,
    RequestError,
    newId,
)
from twisted_stream.mock.apis.openai import encode
from twisted_stream.mock.apis.responses import OpenAIResponses, inputItems, parseResponsesRequest
from twisted_stream.mock.apis.tools import TOOLS_MODEL, argumentsFor, chosenCall
from twisted_stream.mock.apis.tools import pieces as jsonPieces

__all__ = [
    "EMBEDDING_MODEL",
    "MODELS",
    "PASSAGE",
    "REASONING",
    "REASONING_MODEL",
    "ChatResource",
    "MockLLM",
    "Pace",
    "ResponsesResource",
    "answerFor",
    "jsonError",
    "notFound",
    "parseAlias",
    "postOnly",
    "promptTokens",
    "segmentsBelow",
    "tokens",
]

PASSAGE = (
    "A stream is a promise kept one token at a time. The proxy in the middle holds nothing back: "
    "each piece leaves the moment it arrives, so the reader sees the answer grow as the model "
    "writes it, and nobody stares at an empty page while the whole reply is buffered somewhere "
    "along the way."
)
"""What C{mock-passage} answers."""

REASONING = (
    "The user wants an answer about streams. I will say that a stream sends each piece as it is made, "
    "and that a proxy should pass every piece on at once."
)
"""What C{mock-reasoning} reasons before it answers with the passage."""

REASONING_MODEL = "mock-reasoning"

MODELS = ("mock-passage", "mock-echo", TOOLS_MODEL, REASONING_MODEL)
"""The chat models the mock serves."""

EMBEDDING_MODEL = "mock-embed"
"""The embedding model it lists (it embeds with any name)."""



def parseAlias(text: str) -> tuple[str, str]:
    """
    Read C{NAME=MODEL}: serve the model C{NAME} (a real one's name, such as
    C{gpt-4o-mini}, for a client that checks names) as the mock's C{MODEL}.

    @return: C{(NAME, MODEL)}.
    @raise ValueError: For a name that is empty or has white space, or a
        C{MODEL} that is not one of L{MODELS}.
    """
    name, equals, model = text.partition("=")
    if not equals or not name or re.search(r"\s", name):
        raise ValueError(f"{text!r} is not NAME=MODEL (a model name without spaces, =, a model of the mock)")
    if model not in MODELS:
        raise ValueError(f"{text!r}: {model!r} is not a model of the mock ({', '.join(MODELS)})")
    return name, model

def tokens(text: str) -> list[str]:
    """
    Split text into tokens: each word with the white space before it.

    @param text: Any text.
    @return: Tokens that join back into C{text} (the white space at its end
        goes with the last; text of white space only has none).
    """
    return re.findall(r"\s*\S+(?:\s+$)?", text)


def promptTokens(messages: Sequence[tuple[str, str]]) -> int:
    """
    @param messages: A conversation, as C{(role, text)}.
    @return: Its tokens, as the mock counts and paces them: the prompt's
        usage, and what the APIs' token-counting paths answer.
    """
    return sum(len(tokens(text)) for _, text in messages)


def answerFor(request: ChatRequest, served: Optional[str] = None) -> str:
    """
    The mock's answer to a request.

    @param request: A checked request for one of L{MODELS}.
    @param served: The model that answers, if not the one asked for (an
        alias's).
    @return: A sentence quoting the tool's result, for a conversation that
        ends with one; else the fixed passage, or (C{mock-echo}) the last
        user message.
    """
    if request.toolResult is not None:
        return f"The tool returned: {request.toolResult}"
    if (served or request.model) == "mock-echo":
        return next((text for role, text in reversed(request.messages) if role == "user"), "")
    return PASSAGE


def _reasoningOf(reply: Optional[Reply], served: str) -> Sequence[str]:
    """
    @return: The reasoning an answer streams first, as tokens: the script's,
        or C{mock-reasoning}'s.
    """
    if reply is not None and reply.reasoning is not None:
        return tokens(reply.reasoning)
    return tokens(REASONING) if served == REASONING_MODEL else ()


def _planned(chat: ChatRequest, reply: Optional[Reply], served: str) -> tuple[ChatRequest, Sequence[str], Finish]:
    """
    What to answer: the scripted reply, if it says; else a call to a tool
    the request lets the model call; else JSON, for a structured output
    (valid for its schema, by the rules tool arguments follow); else the
    built-in model's answer.

    @param served: The model that answers (an alias's, for an alias).
    @return: The request as answered (with the tool call it gets, if any),
        the pieces the answer streams in, and how it ends.
    """
    if reply is not None and reply.hasContent:
        chat = replace(chat, toolCall=reply.toolCall)
        if reply.jsonText is not None:
            return chat, jsonPieces(reply.jsonText), "complete"
        if reply.text is not None:
            return chat, tokens(reply.text), "complete"
    else:
        answered = chat.toolResult is not None
        chat = replace(chat, toolCall=chosenCall(served, chat.tools, *chat.toolChoice, answered=answered))
    if chat.toolCall is not None:
        # The arguments, streamed in pieces at the pace of tokens.
        return chat, jsonPieces(chat.toolCall.arguments), "tool_call"
    if chat.schema is not None:
        value = argumentsFor(chat.schema) if chat.schema else {"answer": answerFor(chat, served)}
        return chat, jsonPieces(json.dumps(value, separators=(",", ":"), ensure_ascii=False)), "complete"
    return chat, tokens(answerFor(chat, served)), "complete"


def jsonError(request: Request, api: ChatAPI, problem: RequestError) -> bytes:
    """
    Refuse a request, in the API's error shape.

    @return: The body.
    """
    request.setResponseCode(problem.status)
    request.setHeader(b"Content-Type", b"application/json")
    return api.error(problem)


def notFound(request: Request, api: ChatAPI, what: str = "") -> bytes:
    """
    The answer to a path the mock does not serve: C{404}, in the API's
    shape.

    @param what: What was asked for (C{METHOD PATH} unless given).
    """
    where = what or f"{request.method.decode('latin-1')} {request.path.decode('latin-1')}"
    return jsonError(request, api, RequestError(f"Unknown request URL: {where}", status=404, code="unknown_url"))


def segmentsBelow(request: Request) -> list[bytes]:
    """
    @return: The segments of a request's path below the resource that
        answers it, empty ones (a trailing slash) left out.
    """
    return [segment for segment in request.postpath or [] if segment]


def postOnly(request: Request, api: ChatAPI) -> bytes:
    """
    The answer to a method other than C{POST}: C{405}, in the API's shape.
    """
    request.setHeader(b"Allow", b"POST")
    return jsonError(request, api, RequestError(f"use POST for {request.path.decode('latin-1')}", status=405))


class ChatResource(PlainResource):
    """
    One API's chat endpoint: C{POST} a conversation, get the mock's answer,
    streamed or whole.

    @ivar api: Whose wire shapes it speaks.
    """

    isLeaf = True

    def __init__(
        self,
        api: ChatAPI,
        mock: MockLLM,
        background: Optional[BackgroundAnswers] = None,
        kept: Optional[Callable[[Answer, bytes], None]] = None,
    ) -> None:
        """
        @param api: Whose wire shapes to speak.
        @param mock: The mock's settings and state.
        @param background: Where answers asked for in the background are
            kept (the Responses API's), if they may be.
        @param kept: Called with each answer and its whole body once it is
            made (unless the request says C{store: false}), for an API that
            serves answers again.
        """
        super().__init__()
        self.api = api
        self._mock = mock
        self._clock = mock.clock
        self._background = background
        self._kept = kept

    def render(self, request: Request) -> bytes | int:
        """
        Answer POST; a path below this one, or another method, gets the
        API's error.
        """
        where = segmentsBelow(request)
        if where:
            return self.renderBelow(request, where)
        return self.answer(request)

    def answer(self, request: Request) -> bytes | int:
        """
        Answer POST, whatever the path (for a parent that has read it);
        another method gets the API's error.
        """
        if request.method != b"POST":
            return postOnly(request, self.api)
        return self.render_POST(request)

    def renderBelow(self, request: Request, where: list[bytes]) -> bytes | int:
        """
        Answer a path below this one: none is served here, so a C{404} in
        the API's shape (never a chat answer to a path that asks for
        something else).

        @param where: The path's segments below this one.
        """
        return notFound(request, self.api)

    def render_POST(self, request: Request) -> bytes | int:
        """
        Answer a chat request: streamed, or whole after the time the tokens
        would take.
        """
        content = request.content
        mock = self._mock
        try:
            chat = self.api.parse(content.read() if content is not None else b"")
            reply = mock.script.answer(Asked(self.api.name, chat, request.requestHeaders))
            served = mock.aliases.get(chat.model, chat.model)
            if reply is None and served not in MODELS:
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
            return jsonError(request, self.api, problem)
        if fault is not None and fault.kind == "reset":
            transport = request.channel.transport if request.channel is not None else None
            if transport is not None:
                transport.abortConnection()  # type: ignore[attr-defined]
            return NOT_DONE_YET
        if fault is not None and fault.kind in STATUS_FAULTS:
            return self._statusFault(request, fault)
        wait = fault.seconds if fault is not None and fault.kind == "slow_headers" else 0.0
        chat, pieces, finish = _planned(chat, reply, served)
        if chat.maxTokens is not None and len(pieces) > chat.maxTokens and finish != "tool_call":
            pieces, finish = pieces[: chat.maxTokens], "length"
        answer = Answer(
            newId(self.api.idPrefix),
            int(self._clock.seconds()),
            chat,
            promptTokens(chat.messages),
            _reasoningOf(reply, served),
        )
        keep = None
        if self._kept is not None and chat.extra.get("store", True) is not False:
            keep = partial(self._kept, answer)
        if self._background is not None and chat.extra.get("background") is True:
            return self._inBackground(request, chat.stream, answer, pieces, finish, pace, fault, wait)
        if chat.stream:
            request.setHeader(b"Content-Type", b"text/event-stream; charset=utf-8")
            for name, value in STREAMING_HEADERS:
                request.setHeader(name, value)
            stream = TokenStream(request, self.api, answer, pieces, finish, pace, self._clock, fault, keep)
            self._afterWait(request, wait, stream.start)
            return NOT_DONE_YET
        steps = len(answer.reasoning) + len(pieces)
        body = self.api.whole(answer, "".join(pieces), finish, steps)
        delay = pace.ttft + max(0, steps - 1) / pace.tokensPerSecond + wait
        if fault is not None and fault.kind == "stall":
            delay += fault.seconds
        if fault is not None and fault.kind == "error_event":
            return self._statusFault(request, Fault("server_error"))
        self._later(request, delay, body, drop=fault is not None and fault.kind == "disconnect", keep=keep)
        return NOT_DONE_YET

    def _statusFault(self, request: Request, fault: Fault) -> bytes:
        status, message = STATUS_FAULTS[fault.kind]
        if fault.kind == "overloaded":
            status = self.api.overloadedStatus
        if fault.kind == "rate_limit":
            request.setHeader(b"Retry-After", b"%d" % (fault.seconds or 1,))
            for name, value in self.api.rateLimitHeaders:
                request.setHeader(name, value)
        return jsonError(request, self.api, RequestError(message, status=status, code=fault.kind))

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
        assert self._background is not None and isinstance(self.api, OpenAIResponses)
        job = BackgroundAnswer(self.api, answer)
        self._background.add(job)
        tokens = TokenStream(job, self.api, answer, pieces, finish, pace, self._clock, fault)  # type: ignore[arg-type]
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

    def _later(
        self, request: Request, delay: float, body: bytes, drop: bool = False, keep: Optional[Callable[[bytes], None]] = None
    ) -> None:
        def answer() -> None:
            if drop:
                request.loseConnection()
                return
            if keep is not None:
                keep(body)
            request.setHeader(b"Content-Type", b"application/json")
            request.setHeader(b"Content-Length", b"%d" % (len(body),))
            request.write(body)
            request.finish()

        call = self._clock.callLater(delay, answer)
        request.notifyFinish().addErrback(lambda _: call.cancel() if call.active() else None)


class ResponsesResource(PlainResource):
    """
    C{/v1/responses}: C{POST} an answer (in the background too, see
    L{twisted_stream.mock._background}); C{GET /v1/responses/ID} for an
    answer it made (kept unless the request said C{store: false}), and
    C{?stream=true&starting_after=N} and C{POST /v1/responses/ID/cancel} for
    one made in the background; C{GET /v1/responses/ID/input_items} for a
    kept answer's input (C{order}, C{limit}); C{POST
    /v1/responses/input_tokens}, the input's tokens as the mock counts them.
    """

    isLeaf = True

    KEEP = 100
    """How many answers made in the foreground it keeps for C{GET}."""

    KEEP_BYTES = 16 * 1024 * 1024
    """The most bytes of them it keeps (a scripted answer may be 1 MiB)."""

    def __init__(self, mock: MockLLM) -> None:
        super().__init__()
        self._api = OpenAIResponses()
        self.answers = mock.background
        # Each kept answer's body, and its input items as JSON.
        self._stored: OrderedDict[str, tuple[bytes, bytes]] = OrderedDict()
        self._storedBytes = 0
        self._create = ChatResource(self._api, mock, self.answers, self._keep)

    def _keep(self, answer: Answer, response: bytes) -> None:
        kept = self._stored[answer.id] = (response, encode(inputItems(answer.request.extra)))
        self._storedBytes += len(kept[0]) + len(kept[1])
        while len(self._stored) > self.KEEP or self._storedBytes > self.KEEP_BYTES:
            _, (body, items) = self._stored.popitem(last=False)
            self._storedBytes -= len(body) + len(items)

    def render(self, request: Request) -> bytes | int:
        where = segmentsBelow(request)
        if not where:
            return self._create.answer(request)
        if where == [b"input_tokens"]:
            return self._inputTokens(request)
        id = where[0].decode("ascii", "replace")
        job = self.answers.get(id)
        if job is None and id in self._stored and (len(where) == 1 or where[1:] == [b"input_items"]):
            if request.method != b"GET":
                return jsonError(request, self._api, RequestError("use GET to retrieve a response", status=405))
            body, items = self._stored[id]
            if len(where) == 2:
                return self._inputItems(request, json.loads(items))
            request.setHeader(b"Content-Type", b"application/json")
            return body
        if job is None or len(where) > 2 or (len(where) == 2 and where[1] != b"cancel"):
            problem = RequestError(f"No response found with id '{id}'.", status=404)
            return jsonError(request, self._api, problem)
        if len(where) == 2:
            if request.method != b"POST":
                return postOnly(request, self._api)
            job.cancel()
        elif request.method != b"GET":
            return jsonError(request, self._api, RequestError("use GET to retrieve a response", status=405))
        elif _query(request, b"stream") == b"true":
            after = _query(request, b"starting_after") or b"-1"
            if not after.lstrip(b"-").isdigit():
                return jsonError(request, self._api, RequestError("starting_after must be a number", "starting_after"))
            return job.follow(request, int(after))
        request.setHeader(b"Content-Type", b"application/json")
        return job.responseObject()

    def _inputItems(self, request: Request, items: list[dict[str, Any]]) -> bytes:
        # A page of them, as the API lists them: newest first unless
        # order=asc, 20 unless limit says otherwise (1 to 100).
        order = _query(request, b"order") or b"desc"
        limit = _query(request, b"limit") or b"20"
        if order not in (b"asc", b"desc"):
            return jsonError(request, self._api, RequestError("order must be asc or desc", "order"))
        if not limit.isdigit() or not 1 <= int(limit) <= 100:
            return jsonError(request, self._api, RequestError("limit must be an integer from 1 to 100", "limit"))
        ordered = items if order == b"asc" else items[::-1]
        page = ordered[: int(limit)]
        request.setHeader(b"Content-Type", b"application/json")
        return encode({
            "object": "list", "data": page, "first_id": page[0]["id"] if page else None,
            "last_id": page[-1]["id"] if page else None, "has_more": len(ordered) > len(page),
        })  # fmt: skip

    def _inputTokens(self, request: Request) -> bytes:
        if request.method != b"POST":
            return postOnly(request, self._api)
        content = request.content
        try:
            chat = parseResponsesRequest(content.read() if content is not None else b"", counting=True)
        except RequestError as problem:
            return jsonError(request, self._api, problem)
        request.setHeader(b"Content-Type", b"application/json")
        return encode({"object": "response.input_tokens", "input_tokens": promptTokens(chat.messages)})


def _query(request: Request, name: bytes) -> Optional[bytes]:
    args: dict[bytes, list[bytes]] = request.args or {}
    values = args.get(name)
    return values[-1] if values else None
