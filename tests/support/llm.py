"""
What the tests of the mock LLM and of LLM clients share: SSE bodies read
back, a chat request, a scrape's samples, a recording upstream, and the
base of the tests that put real clients in front of chunkgen behind
chunkproxy.
"""

from __future__ import annotations

import json
import statistics
import sys
from typing import Any, Optional

from prometheus_client.parser import text_string_to_metric_families
from treq.testing import StubTreq
from twisted.internet.defer import inlineCallbacks
from twisted.internet.task import Clock, LoopingCall
from twisted.trial.unittest import SynchronousTestCase, TestCase
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request

from tests.support.processes import PEERS, LineProcess, Server, startTwistd
from twisted_stream.mock.generator import GeneratorRoot, StreamSpec
from twisted_stream.mock.llm import MockLLM, Pace, tokens

PROMPT = "The quick brown fox jumps over the lazy dog while the proxy streams every word"
"""What the clients in front of the proxy ask C{mock-echo} to say."""

RATE = 25.0
"""The mock's tokens a second in L{ThroughProxy}."""

TOKEN = "gateway-token-for-the-sdk"
"""The gateway's bearer token in L{ThroughProxy}."""


def sseEvents(body: bytes) -> list[Any]:
    """
    @return: The C{data:} events of an SSE body, decoded (C{[DONE]} as text).
    """
    events: list[Any] = []
    for block in body.split(b"\n\n"):
        if block.startswith(b"data: "):
            data = block[len(b"data: ") :]
            events.append(data.decode() if data == b"[DONE]" else json.loads(data))
    return events


def passageChat(tokens: int) -> bytes:
    """
    @return: The body of a streamed chat request to C{mock-passage} for
        C{tokens} tokens.
    """
    return json.dumps(
        {
            "model": "mock-passage",
            "stream": True,
            "max_tokens": tokens,
            "messages": [{"role": "user", "content": "hi"}],
        }
    ).encode()


def chatRequest(content: str = "one two three four", **fields: Any) -> dict[str, Any]:
    """
    @return: A chat completion request for C{mock-echo}, with more fields.
    """
    return {"model": "mock-echo", "messages": [{"role": "user", "content": content}], **fields}


class MockOnClock:
    """
    chunkgen's whole resource tree (the mock LLM under C{/v1} and
    C{/v1beta}, C{/_mock}) over StubTreq on a fake clock: a request's answer
    whole, the clock run on until it is done.
    """

    def __init__(self, case: SynchronousTestCase, aliases: Optional[dict[str, str]] = None) -> None:
        self._case = case
        self.clock = Clock()
        self.mock = MockLLM(self.clock, Pace(ttft=0.5, tokensPerSecond=10), aliases=aliases or {})
        self._client: Any = StubTreq(GeneratorRoot(StreamSpec(), self.clock, self.mock))

    def request(
        self, method: str, path: str, body: Optional[Any] = None, headers: Optional[dict[str, str]] = None
    ) -> tuple[int, bytes]:
        """
        @param body: Sent as JSON, if given.
        @return: The status and the body.
        """
        data = None if body is None else json.dumps(body).encode()
        requested = self._client.request(method, "http://mock.test" + path, data=data, headers=headers or {})
        for _ in range(600):
            self.clock.advance(0.1)
            self._client.flush()
        response = self._case.successResultOf(requested)
        return response.code, self._case.successResultOf(response.content())

    def json(self, method: str, path: str, body: Optional[Any] = None, headers: Optional[dict[str, str]] = None) -> tuple[int, Any]:
        """
        @return: The status and the body, read as JSON.
        """
        code, content = self.request(method, path, body, headers)
        return code, json.loads(content)


def typedEvents(body: bytes) -> list[tuple[str, Any]]:
    """
    @return: The C{(event, data)} pairs of a typed SSE body (Anthropic's).
    """
    events = []
    for block in body.split(b"\n\n"):
        if block:
            kind, data = block.split(b"\n", 1)
            events.append((kind[len(b"event: ") :].decode(), json.loads(data[len(b"data: ") :])))
    return events


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """
    @return: Each sample of a scrape, by name and labels.
    """
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


class ChatUpstream(Resource):
    """
    An upstream that records what it received and answers a POST with five
    SSE events, 100 ms apart.
    """

    isLeaf = True

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[dict[str, Any]] = []

    def render_POST(self, request: Request) -> int:
        assert request.content is not None
        self.seen.append(
            {
                "uri": request.uri,
                "headers": {k.lower(): v for k, v in request.requestHeaders.getAllRawHeaders()},
                "body": request.content.read(),
            }
        )
        request.setHeader(b"Content-Type", b"text/event-stream")
        sent = [0]

        def tick() -> None:
            sent[0] += 1
            request.write(b"data: {\"token\": %d}\n\n" % (sent[0],))
            if sent[0] == 5:
                loop.stop()
                request.write(b"data: [DONE]\n\n")
                request.finish()

        loop = LoopingCall(tick)
        loop.start(0.1)
        request.notifyFinish().addErrback(lambda _: loop.stop() if loop.running else None)
        return NOT_DONE_YET


class ThroughProxy(TestCase):
    """
    chunkgen (25 tokens a second, first after 0.2 s) behind chunkproxy
    (C{--route /v1/=...}, a token required), and real clients in front.
    """

    timeout = 60

    @inlineCallbacks
    def setUp(self) -> Any:  # type: ignore[override]
        generator: Server = yield startTwistd(self, "chunkgen", "--ttft", "0.2", "--tokens-per-second", str(RATE))
        self.proxy: Server = yield startTwistd(
            self,
            "chunkproxy",
            "--route", f"/v1/={generator.url}v1/",
            "--route", f"/v1beta/={generator.url}v1beta/",
            "--require-token", "env:TOKEN",
            env={"TOKEN": TOKEN},
        )

    def assertPaced(self, times: list[float]) -> None:
        """
        The deltas came spread over time at the configured pace, not in a
        burst at the end.
        """
        expected = len(tokens(PROMPT))
        self.assertEqual(len(times), expected)
        self.assertGreater(times[0], 0.15, "the first token comes after the time to first token")
        spread = times[-1] - times[0]
        # A client short of CPU for a moment (both test runners loading the
        # cores) reads a few deltas at once; held back in the proxy, all
        # would come at once.
        self.assertGreater(spread, (expected - 1) / RATE * 0.6, times)
        gaps = [b - a for a, b in zip(times[:-1], times[1:], strict=True)]
        self.assertLess(abs(statistics.median(gaps) - 1 / RATE), 0.5 / RATE, gaps)

    @inlineCallbacks
    def pacedAnswer(self, client: LineProcess) -> Any:
        """
        The client exits 0 having printed every delta (C{SECONDS JSON}
        lines), which join into PROMPT, at the pace.

        @return: Its output's lines.
        """
        code = yield client.exitCode
        self.assertEqual(code, 0, client.stderr.decode())
        deltas = [line.split(b" ", 1) for _, line in client.lines if line[:1].isdigit()]
        self.assertEqual("".join(json.loads(text) for _, text in deltas), PROMPT)
        self.assertPaced([float(when) for when, _ in deltas])
        return [line for _, line in client.lines]

    @inlineCallbacks
    def toolsPeer(self, script: str, url: str, **env: str) -> Any:
        """
        Run a client in tests/peers against the proxy with C{mock-tools}.

        @return: Its output's C{KEY REST} lines, by key, once it exited 0.
        """
        client = LineProcess.spawn(
            sys.executable, str(PEERS / script), url, "mock-tools", env={**env, "PATH": "/usr/bin:/bin"}
        )
        code = yield client.exitCode
        self.assertEqual(code, 0, client.stderr.decode())
        return dict(line.decode().split(" ", 1) for _, line in client.lines)

    def peer(self, script: str, url: str, **env: str) -> LineProcess:
        """
        Start a client in tests/peers against the proxy, asking mock-echo
        for PROMPT.
        """
        return LineProcess.spawn(
            sys.executable, str(PEERS / script), url, "mock-echo", PROMPT, env={**env, "PATH": "/usr/bin:/bin"}
        )

    def sdk(self, key: str) -> LineProcess:
        """
        Start the openai SDK client, with the proxy as its base URL.
        """
        return self.peer("openai_chat.py", self.proxy.url + "v1", OPENAI_API_KEY=key)
