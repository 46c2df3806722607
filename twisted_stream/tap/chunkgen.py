# -*- test-case-name: tests.test_options,tests.test_generator -*-
"""
C{twistd chunkgen}: the chunk generator as a twistd plugin.
"""

from __future__ import annotations

from typing import Optional

from twisted.application.service import IService, MultiService
from twisted.python import usage
from twisted.web.resource import Resource
from twisted.web.server import Site

from twisted_stream._numbers import decimalNumber
from twisted_stream.mock._faults import Fault, FaultPlan, parseFault
from twisted_stream.mock._replay import Library, ReplayResource
from twisted_stream.mock._script import Rule, Script, ScriptError, loadScript
from twisted_stream.mock.apis import RequestError
from twisted_stream.mock.generator import GeneratorRoot, StreamSpec, parseCount, parseInterval
from twisted_stream.mock.llm import MockLLM, Pace, parseAlias
from twisted_stream.ops._drain import CleanExitService
from twisted_stream.ops._service import listeningService
from twisted_stream.tap.options import PluginOptions

__all__ = ["Options", "makeService"]


def _parseFault(text: str) -> Fault:
    try:
        return parseFault(text)
    except RequestError as e:
        raise ValueError(str(e).replace("mock_fault must be", "must be")) from None


class Options(PluginOptions):
    """
    Options of C{twistd chunkgen}.
    """

    tapname = "chunkgen"
    synopsis = "[options]"
    longdesc = (
        "Streams numbered chunks over HTTP at GET /generate, one per tick of a timer; "
        "query parameters count, interval, size and format override the defaults per request. "
        "Under /v1/ (and /v1beta/) a mock LLM answers OpenAI's Chat Completions, Responses, "
        "Completions and Embeddings APIs, Anthropic's Messages and Google's Gemini (models "
        "mock-passage, mock-echo, mock-tools, mock-reasoning, mock-embed, and --alias names), "
        "streamed token by token at the pace of --ttft and --tokens-per-second: tool calls, "
        "structured outputs, reasoning, faults on demand, and answers a --script decides."
    )
    optParameters = [
        ["listen", "l", "tcp:8081", "Endpoint description to listen on."],
        ["count", "c", 100, "Chunks per stream, 0 to 1000000.", parseCount],
        ["interval", "i", 0.1, "Seconds between chunks, 0 to 60.", parseInterval],
        ["ttft", None, 0.3, "Mock LLM: seconds to the first token, 0 to 60.", lambda t: decimalNumber(t, "ttft", 0, 60, " of seconds")],
        [
            "tokens-per-second",
            None,
            "30",
            "Mock LLM: tokens a second after the first, 0.01 to 10000.",
            lambda t: decimalNumber(t, "tokens-per-second", 0.01, 10000),
        ],
        [
            "fault",
            None,
            None,
            "Mock LLM: the fault a share of the chat requests that ask for none get (--fault-rate):"
            " rate_limit[:SECONDS], overloaded, server_error, reset, disconnect:N, stall:N:SECONDS,"
            " slow_headers:SECONDS or error_event:N, as X-Mock-Fault names them.",
            _parseFault,
        ],
        [
            "fault-rate",
            None,
            "1",
            "Mock LLM: the share of chat requests that get --fault, 0 to 1.",
            lambda t: decimalNumber(t, "fault-rate", 0, 1),
        ],
        [
            "replay",
            None,
            None,
            "A folder of streams recorded by chunkproxy --record: a request that matches one (method,"
            " path, body) gets it back at its recorded pace (X-Mock-Speed divides the offsets).",
        ],
        [
            "script",
            None,
            None,
            "Mock LLM: a script of answers (TOML, or JSON if its name ends in .json): rules that match a"
            " request (model, API, user or system message, tool, header) and say what to answer (text, a"
            " tool call, JSON, a fault, the pace); POST /_mock/script replaces it at run time. See"
            " docs/mock-llm.md.",
        ],
    ]

    def __init__(self) -> None:
        super().__init__()
        self.aliases: dict[str, str] = {}

    def opt_alias(self, text: str) -> None:
        """
        NAME=MODEL: Mock LLM: answer requests for the model NAME (such as
        gpt-4o-mini, for clients that check model names) as the mock's MODEL
        (such as mock-passage); the answer names NAME (repeatable).
        """
        try:
            name, model = parseAlias(text)
        except ValueError as e:
            raise usage.UsageError(f"--alias: {e}") from None
        self.aliases[name] = model

    def postOptions(self) -> None:
        """
        Read the recordings of C{--replay}, so that a bad one stops start-up.
        """
        super().postOptions()
        self.library: Optional[Library] = None
        self.rules: list[Rule] = []
        if self["script"] is not None:
            try:
                self.rules = loadScript(self["script"])
            except ScriptError as e:
                raise usage.UsageError(f"--script: {e}") from None
        if self["replay"] is not None:
            try:
                self.library = Library.load(self["replay"])
            except (OSError, ValueError) as e:
                raise usage.UsageError(f"--replay: {e}") from None

    def faults(self) -> Optional[FaultPlan]:
        """
        @return: The fault a share of the chat requests get, if any.
        """
        return FaultPlan(self["fault"], self["fault-rate"]) if self["fault"] is not None else None

    def pace(self) -> Pace:
        """
        @return: The mock LLM's default pace.
        """
        return Pace(self["ttft"], self["tokens-per-second"])

    def spec(self) -> StreamSpec:
        """
        @return: The stream a request with no query parameters gets.
        """
        return StreamSpec(count=self["count"], interval=self["interval"])


def makeService(options: Options) -> IService:
    """
    Build the generator's service.

    @param options: The parsed command line.
    @return: A service that serves the generator on C{--listen}.
    """
    from twisted.internet import reactor

    mock = MockLLM(reactor, options.pace(), options.faults(), Script(options.rules), options.aliases)
    root: Resource = GeneratorRoot(options.spec(), reactor, mock)
    if options.library is not None:
        root = ReplayResource(options.library, root, reactor)
    site = Site(root)
    site.displayTracebacks = False
    service = MultiService()
    CleanExitService().setServiceParent(service)
    listeningService(
        reactor,
        options["listen"],
        site,
        "chunkgen",
        [("stream", "generate"), ("mock LLM", "v1/")],
        options["backlog"],
    ).setServiceParent(service)
    return service
