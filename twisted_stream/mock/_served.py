# -*- test-case-name: tests.test_testing -*-
"""
The mock LLM served in a test's own reactor, on a free port of 127.0.0.1:
what L{twisted_stream.testing} gives tests.

No subprocess: the test and the mock share one reactor, so that a test sets
the script, the pace and the faults by calling methods, reads the requests
the mock saw the same way, and a stop closes every connection, leaving the
reactor clean for trial.
"""

from __future__ import annotations

from typing import Any, Mapping, Optional, Sequence

from twisted.internet.defer import Deferred, gatherResults, maybeDeferred, succeed
from twisted.internet.endpoints import serverFromString
from twisted.internet.interfaces import IListeningPort, IReactorTime
from twisted.protocols.policies import WrappingFactory
from twisted.web.server import Site

from twisted_stream.mock._faults import FaultPlan, parseFault
from twisted_stream.mock._script import Script, loadScript, parseRules
from twisted_stream.mock._state import MockLLM, Pace
from twisted_stream.mock.apis import RequestError
from twisted_stream.mock.generator import GeneratorRoot, StreamSpec
from twisted_stream.mock.llm import parseAlias

__all__ = ["TEST_PACE", "MockLLMServer", "startMockLLM"]

TEST_PACE = Pace(ttft=0.0, tokensPerSecond=1000.0)
"""The pace a test's mock starts with: fast, but still a token at a time."""


class _Connections(WrappingFactory):
    """
    The site's factory, keeping its connections, so that a stop can close
    them and say when they are gone.
    """

    def __init__(self, site: Site) -> None:
        super().__init__(site)
        self._waiting: list[Deferred[None]] = []

    def unregisterProtocol(self, p: Any) -> None:
        super().unregisterProtocol(p)
        if not self.protocols:
            waiting, self._waiting = self._waiting, []
            for waiter in waiting:
                waiter.callback(None)

    def closeAll(self) -> Deferred[None]:
        """
        Close every connection at once (a test is over: nothing in flight
        is owed an end).

        @return: Fires when they are all gone.
        """
        if not self.protocols:
            return succeed(None)
        waiter: Deferred[None] = Deferred()
        self._waiting.append(waiter)
        for wrapper in list(self.protocols):
            wrapper.transport.abortConnection()
        return waiter


class MockLLMServer:
    """
    A mock LLM listening on 127.0.0.1, for one test.

    @ivar mock: Its settings and state (the same object its endpoints read
        on every request: what is changed here applies to the next request).
    @ivar url: Its root, C{http://127.0.0.1:PORT}.
    """

    def __init__(self, mock: MockLLM, port: IListeningPort, connections: _Connections) -> None:
        self.mock = mock
        self._port = port
        self._connections = connections
        self._startPace = mock.pace
        self._aliases: dict[str, str] = {}
        mock.aliases = self._aliases
        address: Any = port.getHost()
        self.url = f"http://127.0.0.1:{address.port}"

    @property
    def openaiBaseURL(self) -> str:
        """
        The C{base_url} of the openai SDK (and of any OpenAI-compatible
        client): the root with C{/v1}.
        """
        return self.url + "/v1"

    @property
    def anthropicBaseURL(self) -> str:
        """
        The C{base_url} of the anthropic SDK, which adds C{/v1} itself.
        """
        return self.url

    @property
    def geminiBaseURL(self) -> str:
        """
        The C{http_options} C{base_url} of the google-genai SDK, which adds
        its API version itself.
        """
        return self.url

    def script(self, rules: Mapping[str, Any] | Sequence[Mapping[str, Any]]) -> None:
        """
        Answer by these rules from now on (see
        L{twisted_stream.mock._script}), as C{POST /_mock/script} would.

        @param rules: C{{"rules": [...]}}, or the list of rules itself.
        @raise ScriptError: For rules that cannot be loaded.
        """
        self.mock.script.replace(parseRules({"rules": list(rules)} if isinstance(rules, Sequence) else rules))

    def loadScript(self, path: str) -> None:
        """
        Answer by the script in a file (TOML, or JSON for C{.json}).

        @raise ScriptError: For a file that cannot be read or loaded.
        """
        self.mock.script.replace(loadScript(path))

    def matched(self) -> dict[str, Any]:
        """
        @return: The rules loaded and how often each matched, as
            C{GET /_mock/script} shows them.
        """
        return self.mock.script.described()

    def requests(self) -> list[dict[str, Any]]:
        """
        @return: The last requests the mock saw, oldest first, as
            C{GET /_mock/requests} lists them (credentials removed).
        """
        return self.mock.seen.listed()

    def pace(self, ttft: Optional[float] = None, tokensPerSecond: Optional[float] = None) -> None:
        """
        Answer at this pace from now on (each request may still ask for its
        own).
        """
        self.mock.pace = self.mock.pace.overridden(ttft, tokensPerSecond)

    def fault(self, fault: Optional[str], rate: float = 1.0) -> None:
        """
        Give this fault (as C{X-Mock-Fault} names it) to a share of the
        requests that ask for none; L{None} for none.

        @raise ValueError: For a fault that is not one of the mock's.
        """
        try:
            self.mock.faults = None if fault is None else FaultPlan(parseFault(fault), rate)
        except RequestError as e:
            raise ValueError(e.message) from None

    def alias(self, name: str, model: str) -> None:
        """
        Answer requests for the model C{name} (a real one's, such as
        C{gpt-4o-mini}) as the mock's C{model}, as C{chunkgen --alias} does.

        @raise ValueError: For a C{model} that is not one of the mock's.
        """
        self._aliases.update([parseAlias(f"{name}={model}")])

    def reset(self) -> None:
        """
        Back to how it started: no script, no fault, no alias, the starting
        pace, no requests seen.
        """
        self._aliases.clear()
        self.mock.script.reset()
        self.mock.seen.clear()
        self.mock.faults = None
        self.mock.pace = self._startPace

    def stop(self) -> Deferred[None]:
        """
        Stop listening, close every connection, and stop making answers
        asked for in the background.

        @return: Fires when the port is closed and the connections gone.
        """
        self.mock.background.cancelAll()
        stopped: Deferred[object] = maybeDeferred(self._port.stopListening)
        closed: Deferred[object] = self._connections.closeAll()  # type: ignore[assignment]
        return gatherResults([stopped, closed]).addCallback(lambda _: None)


def startMockLLM(
    reactor: Any = None, pace: Pace = TEST_PACE, script: Optional[Script] = None
) -> Deferred[MockLLMServer]:
    """
    Serve a mock LLM on a free port of 127.0.0.1.

    @param reactor: The reactor to listen with and pace by (the global one
        by default: the test's).
    @param pace: How fast it answers (L{TEST_PACE} by default).
    @param script: What it starts answering by, if anything.
    @return: Fires with the server, listening.
    """
    if reactor is None:
        from twisted.internet import reactor as globalReactor

        reactor = globalReactor
    clock: IReactorTime = reactor
    mock = MockLLM(clock, pace, script=script if script is not None else Script())
    site = Site(GeneratorRoot(StreamSpec(), clock, mock))
    site.displayTracebacks = False
    connections = _Connections(site)
    listening: Deferred[IListeningPort] = serverFromString(reactor, "tcp:0:interface=127.0.0.1").listen(connections)
    return listening.addCallback(lambda port: MockLLMServer(mock, port, connections))
