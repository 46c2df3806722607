# -*- test-case-name: tests.test_mockllm,tests.test_script -*-
"""
What every endpoint of the mock LLM shares: its clock, its default pace,
the process's fault plan, the script, the model aliases, and the requests
it saw. One object, so that a new setting is one field here rather than one
more argument through every resource.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping, Optional

from twisted.internet.interfaces import IReactorTime
from twisted.web.server import Request

from twisted_stream.mock._background import BackgroundAnswers
from twisted_stream.mock._faults import FaultPlan
from twisted_stream.mock._script import Script
from twisted_stream.mock._seen import SeenRequests
from twisted_stream.mock.apis import ChatRequest, checkedNumber

__all__ = ["MAX_TOKENS_PER_SECOND", "MAX_TTFT", "MockLLM", "Pace"]

MAX_TTFT = 60.0
MAX_TOKENS_PER_SECOND = 10_000.0


@dataclass(frozen=True)
class Pace:
    """
    How fast the mock answers.

    @ivar ttft: Seconds from the request to the first token.
    @ivar tokensPerSecond: Tokens a second after the first.
    """

    ttft: float = 0.3
    tokensPerSecond: float = 30.0

    def forRequest(self, request: Request, chat: ChatRequest) -> Pace:
        """
        The pace one request asks for (its body fields C{mock_ttft} and
        C{mock_tokens_per_second}, or the headers C{X-Mock-TTFT} and
        C{X-Mock-Tokens-Per-Second}), this one where it asks for none.

        @raise RequestError: For a pace out of bounds.
        """

        def given(name: str, header: bytes) -> Any:
            if name in chat.extra:
                return chat.extra[name]
            value = request.getHeader(header)
            if value is None:
                return None
            try:
                return float(value)
            except ValueError:
                return value

        ttft = given("mock_ttft", b"x-mock-ttft")
        rate = given("mock_tokens_per_second", b"x-mock-tokens-per-second")
        return Pace(
            self.ttft if ttft is None else checkedNumber(ttft, "mock_ttft", 0, MAX_TTFT),
            self.tokensPerSecond
            if rate is None
            else checkedNumber(rate, "mock_tokens_per_second", 0.01, MAX_TOKENS_PER_SECOND),
        )

    def overridden(self, ttft: Optional[float], tokensPerSecond: Optional[float]) -> Pace:
        """
        @return: This pace, but for what is given.
        """
        return Pace(
            self.ttft if ttft is None else ttft,
            self.tokensPerSecond if tokensPerSecond is None else tokensPerSecond,
        )


@dataclass
class MockLLM:
    """
    The mock LLM's settings and state.

    @ivar clock: What paces the tokens.
    @ivar pace: The default pace.
    @ivar faults: The fault a share of the requests that ask for none get
        (C{chunkgen --fault}).
    @ivar script: The scripted answers (C{--script}, C{/_mock/script}).
    @ivar aliases: Model names served as another model (C{--alias}).
    @ivar seen: The last requests it saw (C{/_mock/requests}).
    @ivar background: The Responses API's answers made in the background.
    """

    clock: IReactorTime
    pace: Pace = field(default_factory=Pace)
    faults: Optional[FaultPlan] = None
    script: Script = field(default_factory=Script)
    aliases: Mapping[str, str] = field(default_factory=dict)
    seen: SeenRequests = field(init=False)
    background: BackgroundAnswers = field(init=False, default_factory=BackgroundAnswers)

    def __post_init__(self) -> None:
        self.seen = SeenRequests(self.clock)
