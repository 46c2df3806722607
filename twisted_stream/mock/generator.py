# -*- test-case-name: tests.test_generator -*-
"""
C{chunkgen}: an HTTP resource that streams numbered chunks on a timer.

It stands in for an LLM or any other slow streaming source: C{GET /generate}
answers with one chunk per tick of a L{LoopingCall}, so the timing a client
sees is the timing the generator chose, to the millisecond.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Callable, Mapping, Optional, Sequence

from twisted.internet.interfaces import IPushProducer, IReactorTime
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.resource import IResource
from twisted.web.server import NOT_DONE_YET, Request
from zope.interface import implementer

from twisted_stream._numbers import decimalNumber, shown, wholeNumber
from twisted_stream.http._text import STREAMING_HEADERS, PlainResource, textError
from twisted_stream.mock._paths import GeminiResource, MockLLMResource
from twisted_stream.mock._script import ScriptResource
from twisted_stream.mock._seen import SeenRequestsResource
from twisted_stream.mock._state import MockLLM
from twisted_stream.mock.formats import FORMATS, TEXT, ChunkFormat

__all__ = [
    "GenerateResource",
    "GeneratorRoot",
    "MAX_COUNT",
    "MAX_INTERVAL",
    "MAX_SIZE",
    "StreamSpec",
    "parseCount",
    "parseFormat",
    "parseInterval",
    "parseSize",
    "parseStreamSpec",
]

MAX_COUNT = 1_000_000
"""The most chunks one stream may ask for."""

MAX_INTERVAL = 60.0
"""The longest pause between chunks one stream may ask for, in seconds."""

MAX_SIZE = 1024 * 1024
"""The largest padded chunk one stream may ask for, in bytes."""

def parseCount(text: str) -> int:
    """
    Parse a number of chunks.

    @param text: A whole number from 0 to L{MAX_COUNT}.
    @return: The number.
    @raise ValueError: With a one-line reason, for anything else.
    """
    return wholeNumber(text, "count", MAX_COUNT)


def parseSize(text: str) -> int:
    """
    Parse the size to pad each chunk to.

    @param text: A whole number of bytes from 0 to L{MAX_SIZE}.
    @return: The number.
    @raise ValueError: With a one-line reason, for anything else.
    """
    return wholeNumber(text, "size", MAX_SIZE)


def parseInterval(text: str) -> float:
    """
    Parse the pause between chunks.

    @param text: A decimal number of seconds from 0 to L{MAX_INTERVAL}.
    @return: The number of seconds.
    @raise ValueError: With a one-line reason, for anything else (negative
        numbers, exponents, C{nan} and C{inf} among them).
    """
    return decimalNumber(text, "interval", 0, MAX_INTERVAL, " of seconds")


def parseFormat(text: str) -> ChunkFormat:
    """
    Parse a format name.

    @param text: One of the names in L{FORMATS}.
    @return: The format.
    @raise ValueError: With a one-line reason, for any other name.
    """
    try:
        return FORMATS[text]
    except KeyError:
        raise ValueError(
            f"format must be one of {', '.join(FORMATS)}, not {shown(text)}"
        ) from None


@dataclass(frozen=True)
class StreamSpec:
    """
    What one stream sends.

    @ivar count: How many chunks.
    @ivar interval: Seconds between chunks.
    @ivar size: Pad each chunk to this many bytes (0: no padding).
    @ivar format: The chunks' wire format.
    """

    count: int = 100
    interval: float = 0.1
    size: int = 0
    format: ChunkFormat = TEXT


_QUERY_PARSERS: Mapping[str, Callable[[str], object]] = {
    "count": parseCount,
    "interval": parseInterval,
    "size": parseSize,
    "format": parseFormat,
}
"""Each query parameter, by name (the name of its L{StreamSpec} field too)."""


def parseStreamSpec(args: Mapping[bytes, Sequence[bytes]], defaults: StreamSpec) -> StreamSpec:
    """
    Read a stream's parameters from a query string.

    @param args: The parsed query string, as in L{twisted.web.iweb.IRequest.args}.
    @param defaults: The values of parameters the query does not give.
    @return: The stream's parameters.
    @raise ValueError: With a one-line reason, for an unknown or repeated
        parameter or a bad value.
    """
    changes: dict[str, object] = {}
    for rawName, values in args.items():
        name = rawName.decode("utf-8", "replace")
        if name not in _QUERY_PARSERS:
            raise ValueError(
                f"unknown parameter {shown(name)}; known: {', '.join(_QUERY_PARSERS)}"
            )
        if len(values) != 1:
            raise ValueError(f"{name} given {len(values)} times")
        changes[name] = _QUERY_PARSERS[name](values[0].decode("utf-8", "replace"))
    return replace(defaults, **changes)  # type: ignore[arg-type]


@implementer(IPushProducer)
class _ChunkStream:
    """
    Writes one stream's chunks to its request, one per tick.

    It is the request's push producer: while the client's connection cannot
    take more, the timer stops, so a slow client never makes the generator
    queue chunks in memory. The chunks are delayed, never dropped.
    """

    _log = Logger()

    def __init__(self, request: Request, spec: StreamSpec, clock: IReactorTime) -> None:
        self._request = request
        self._spec = spec
        self._clock = clock
        self._sent = 0
        self._done = False
        self._paused = False
        self._loop = LoopingCall(self._tick)
        self._loop.clock = clock

    def start(self) -> None:
        """
        Send the headers, then start the timer.
        """
        self._request.notifyFinish().addErrback(self._clientGone)
        self._request.registerProducer(self, True)
        self._request.write(b"")
        if self._spec.count == 0:
            self._finish()
        else:
            self._startLoop(now=True)

    def _startLoop(self, now: bool) -> None:
        self._loop.start(self._spec.interval, now=now).addErrback(self._failed)

    def _tick(self) -> None:
        self._sent += 1
        self._request.write(
            self._spec.format.render(self._sent, self._clock.seconds(), self._spec.size)
        )
        if self._sent == self._spec.count:
            self._finish()

    def _stopLoop(self) -> None:
        if self._loop.running:
            self._loop.stop()

    def _finish(self) -> None:
        self._done = True
        self._stopLoop()
        self._request.unregisterProducer()
        self._request.finish()

    def _clientGone(self, reason: Failure) -> None:
        # No write to a dead request, and no timer left behind.
        self._done = True
        self._stopLoop()

    def _failed(self, reason: Failure) -> None:
        self._log.failure("chunk stream failed", reason)
        self._done = True
        self._request.loseConnection()

    def pauseProducing(self) -> None:
        """
        The client's connection is full: stop the timer.
        """
        if not self._done:
            self._paused = True
            self._stopLoop()

    def resumeProducing(self) -> None:
        """
        The client's connection can take more: start the timer again.
        """
        if self._paused and not self._done:
            self._paused = False
            self._startLoop(now=False)

    def stopProducing(self) -> None:
        """
        The connection is going away: stop for good.
        """
        self._done = True
        self._stopLoop()


class GenerateResource(PlainResource):
    """
    C{GET /generate}: a stream of chunks, paced by a L{LoopingCall}.

    Query parameters C{count}, C{interval}, C{size} and C{format} override the
    defaults for one request; a bad one gets C{400} with a one-line reason and
    no stream.
    """

    isLeaf = True

    def __init__(self, defaults: StreamSpec, clock: IReactorTime) -> None:
        """
        @param defaults: What a request that gives no parameters gets.
        @param clock: What paces the chunks.
        """
        super().__init__()
        self._defaults = defaults
        self._clock = clock

    def _prepare(self, request: Request) -> StreamSpec | bytes:
        """
        Check the request, and set the headers of its answer.

        @return: The stream's parameters, or an error body.
        """
        if request.postpath:
            return textError(request, 404, "no such resource: " + request.path.decode("latin-1"))
        try:
            spec = parseStreamSpec(request.args or {}, self._defaults)
        except ValueError as e:
            return textError(request, 400, str(e))
        request.setHeader(b"Content-Type", spec.format.contentType)
        for name, value in STREAMING_HEADERS:
            request.setHeader(name, value)
        return spec

    def render_GET(self, request: Request) -> bytes | int:
        """
        Start the stream.

        @param request: A C{GET} request.
        @return: L{NOT_DONE_YET}, or an error body.
        """
        spec = self._prepare(request)
        if isinstance(spec, bytes):
            return spec
        _ChunkStream(request, spec, self._clock).start()
        return NOT_DONE_YET

    def render_HEAD(self, request: Request) -> bytes:
        """
        Answer with the headers a C{GET} would get, and start no timer.

        @param request: A C{HEAD} request.
        @return: An empty body, or an error body.
        """
        spec = self._prepare(request)
        return spec if isinstance(spec, bytes) else b""


_USAGE = """\
chunkgen: a generator of chunked HTTP streams, and a mock OpenAI-compatible LLM.

GET /generate?count=N&interval=SECONDS&size=BYTES&format=text|sse|ndjson
  count     chunks to send, 0 to {maxCount} (default {count})
  interval  seconds between chunks, 0 to {maxInterval:g} (default {interval:g})
  size      pad each chunk to this many bytes, 0 to {maxSize} (default {size})
  format    text, sse or ndjson (default {format})

POST /v1/chat/completions   OpenAI's API: models mock-passage, mock-echo, mock-tools; "stream": true for SSE
POST /v1/responses          OpenAI's Responses API (GET /v1/responses/ID[/input_items], POST .../input_tokens)
POST /v1/completions        OpenAI's legacy completions
POST /v1/embeddings         deterministic vectors (model mock-embed, or any name)
POST /v1/messages           Anthropic's API: the same models (POST /v1/messages/count_tokens)
POST /v1beta/models/M:A     Gemini: generateContent, streamGenerateContent, countTokens, embedContent,
                            batchEmbedContents; GET /v1beta/models, /v1beta/models/M
GET  /v1/models             the models (and --alias names); GET /v1/models/M
GET  /_mock/requests        the last 100 requests the mock LLM saw (credentials removed); DELETE clears
GET  /_mock/script          the scripted answers and how often each matched; POST a script (JSON)
                            to answer by it, DELETE to go back to --script's
  first token after {ttft:g} s, then {rate:g} tokens/s; per request: body fields
  mock_ttft, mock_tokens_per_second, or headers X-Mock-TTFT, X-Mock-Tokens-Per-Second
"""


class GeneratorRoot(PlainResource):
    """
    The generator's site: a usage text at C{/}, the stream at C{/generate},
    and the mock LLM at C{/v1} (Gemini's at C{/v1beta}).
    """

    def __init__(self, defaults: StreamSpec, clock: IReactorTime, mock: Optional[MockLLM] = None) -> None:
        """
        @param defaults: What a request that gives no parameters gets.
        @param clock: What paces the chunks.
        @param mock: The mock LLM's settings and state (by default: its
            default pace on C{clock}, no faults, no script).
        """
        super().__init__()
        mock = mock if mock is not None else MockLLM(clock)
        self.mock = mock
        """The mock LLM's settings and state."""
        pace = mock.pace
        self._usage = _USAGE.format(
            ttft=pace.ttft,
            rate=pace.tokensPerSecond,
            maxCount=MAX_COUNT,
            maxInterval=MAX_INTERVAL,
            maxSize=MAX_SIZE,
            count=defaults.count,
            interval=defaults.interval,
            size=defaults.size,
            format=defaults.format.name,
        ).encode("utf-8")
        self.putChild(b"generate", GenerateResource(defaults, clock))
        self.putChild(b"v1", MockLLMResource(mock))
        self.putChild(b"v1beta", GeminiResource(mock))
        control = PlainResource()
        control.putChild(b"requests", SeenRequestsResource(mock.seen))
        control.putChild(b"script", ScriptResource(mock.script))
        self.putChild(b"_mock", control)

    def getChildWithDefault(self, path: bytes, request: Request) -> IResource:
        """
        Note each request to the mock LLM (C{/v1}, C{/v1beta}), as it
        came, before it is answered.
        """
        if path in (b"v1", b"v1beta"):
            self.mock.seen.note(request)
        return super().getChildWithDefault(path, request)

    def getChild(self, path: bytes, request: Request) -> IResource:
        """
        C{/} is this resource itself; anything else unknown is a 404.
        """
        if path == b"" and not request.postpath:
            return self
        return super().getChild(path, request)

    def render_GET(self, request: Request) -> bytes:
        """
        Describe the generator.

        @param request: A C{GET} request for C{/}.
        @return: The usage text.
        """
        request.setHeader(b"Content-Type", b"text/plain; charset=utf-8")
        return self._usage
