"""
Tests for L{twisted_stream.mock._faults}: faults read from a request, each
served by the mock on a clock in the API's own shapes, and each reaching
the openai SDK through a real chunkproxy as the exception it raises for
the real thing.
"""

from __future__ import annotations

import json
import sys
from random import Random
from typing import Any

from twisted.internet.defer import inlineCallbacks
from twisted.internet.task import Clock
from twisted.python.usage import UsageError
from twisted.trial.unittest import SynchronousTestCase, TestCase

from tests.support import (
    PEERS,
    LineProcess,
    Server,
    StreamingRequest,
    chatRequest,
    onceAcrossRunners,
    render,
    sseEvents,
    startTwistd,
    typedEvents,
)
from twisted_stream.mock._faults import Fault, FaultPlan, faultOf, parseFault
from twisted_stream.mock.apis import ChatAPI, RequestError
from twisted_stream.mock.apis.anthropic import AnthropicMessages
from twisted_stream.mock.apis.openai import OpenAIChat
from twisted_stream.mock.apis.responses import OpenAIResponses
from twisted_stream.mock.llm import ChatResource, MockLLM, Pace
from twisted_stream.tap.chunkgen import Options as GeneratorOptions


class ParseTests(SynchronousTestCase):
    def test_forms(self) -> None:
        self.assertEqual(parseFault("rate_limit"), Fault("rate_limit"))
        self.assertEqual(parseFault("rate_limit:2"), Fault("rate_limit", 0, 2.0))
        self.assertEqual(parseFault("disconnect:3"), Fault("disconnect", 3))
        self.assertEqual(parseFault("stall:2:1.5"), Fault("stall", 2, 1.5))
        self.assertEqual(parseFault("slow_headers:4"), Fault("slow_headers", 0, 4.0))
        self.assertEqual(parseFault("error_event:0"), Fault("error_event", 0))

    def test_bad(self) -> None:
        for text in ("", "rate_limit:x", "disconnect", "stall:2", "stall:1:9999", "explode", 3, None):
            with self.assertRaises(RequestError) as caught:
                parseFault(text)
            self.assertEqual(caught.exception.param, "mock_fault")


class ServedTests(SynchronousTestCase):
    """
    The mock's chat endpoint (10 tokens a second, the first at 0.5 s) asked
    for faults, in memory.
    """

    def serve(self, api: ChatAPI, body: dict[str, Any], fault: str | None = None) -> StreamingRequest:
        self.clock = Clock()
        resource = ChatResource(api, MockLLM(self.clock, Pace(ttft=0.5, tokensPerSecond=10)))
        request = StreamingRequest([], method=b"POST", uri=b"/v1/x", body=json.dumps(body).encode())
        if fault is not None:
            request.requestHeaders.setRawHeaders(b"x-mock-fault", [fault.encode()])
        result = render(resource, request)
        if isinstance(result, bytes):
            request.write(result)
            request.finish()
        return request

    def head(self, request: StreamingRequest, name: bytes) -> Any:
        return request.responseHeaders.getRawHeaders(name, [None])[0]

    def test_rateLimit(self) -> None:
        """
        C{429} at once, with C{Retry-After} and the API's rate-limit headers,
        in its error shape; the body field works as the header does.
        """
        request = self.serve(OpenAIChat(), chatRequest(stream=True, mock_fault="rate_limit"))
        self.assertEqual((request.responseCode, self.head(request, b"retry-after")), (429, b"1"))
        self.assertEqual(self.head(request, b"x-ratelimit-remaining-requests"), b"0")
        error = json.loads(b"".join(request.written))["error"]
        self.assertEqual((error["type"], error["code"]), ("requests", "rate_limit"))
        request = self.serve(AnthropicMessages(), {**chatRequest(), "max_tokens": 9}, "rate_limit")
        self.assertEqual(self.head(request, b"anthropic-ratelimit-requests-remaining"), b"0")
        self.assertEqual(json.loads(b"".join(request.written))["error"]["type"], "rate_limit_error")

    def test_overloadedAndServerError(self) -> None:
        for api, fault, status, kind in (
            (OpenAIChat(), "overloaded", 503, "server_error"),
            (AnthropicMessages(), "overloaded", 529, "overloaded_error"),
            (OpenAIChat(), "server_error", 500, "server_error"),
            (AnthropicMessages(), "server_error", 500, "api_error"),
        ):
            request = self.serve(api, {**chatRequest(stream=True), "max_tokens": 9}, fault)
            self.assertEqual(request.responseCode, status)
            body = json.loads(b"".join(request.written))
            self.assertEqual(body["error"]["type"], kind, (api, fault))

    def test_disconnect(self) -> None:
        """
        C{disconnect:2}: two tokens, then the connection closes, without the
        stream's end.
        """
        request = self.serve(OpenAIChat(), chatRequest(stream=True), "disconnect:2")
        self.clock.advance(10)
        contents = [e["choices"][0]["delta"].get("content") for e in sseEvents(b"".join(request.written))]
        self.assertEqual(contents, ["", "one", " two"])
        self.assertTrue(request.connectionClosed)
        self.assertEqual(request.finished, 0)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_stall(self) -> None:
        """
        C{stall:1:3}: a token, three seconds of silence, then the rest at the
        pace.
        """
        request = self.serve(OpenAIChat(), chatRequest(stream=True), "stall:1:3")
        self.clock.advance(0.5)
        self.assertEqual(len(sseEvents(b"".join(request.written))), 2)
        # In steps, as a reactor's clock moves: the second token was due at
        # 0.6 s, and is 3 s late.
        self.clock.pump([0.1] * 30)
        self.assertEqual(len(sseEvents(b"".join(request.written))), 2)
        self.clock.advance(0.11)
        self.assertEqual(sseEvents(b"".join(request.written))[-1]["choices"][0]["delta"], {"content": " two"})
        self.clock.pump([0.1] * 10)
        self.assertEqual(sseEvents(b"".join(request.written))[-1], "[DONE]")

    def test_slowHeaders(self) -> None:
        """
        C{slow_headers:2}: not even the head for two seconds, then the
        answer at its pace.
        """
        request = self.serve(OpenAIChat(), chatRequest(stream=True), "slow_headers:2")
        self.clock.advance(1.99)
        self.assertEqual(request.written, [])
        self.clock.advance(0.01)
        self.assertEqual(request.written, [b""])
        self.clock.advance(0.5)
        self.assertEqual(len(sseEvents(b"".join(request.written))), 2)

    def test_errorEvent(self) -> None:
        """
        C{error_event:1}: a token, then the API's error event, and the
        stream ends there.
        """
        request = self.serve(OpenAIChat(), chatRequest(stream=True), "error_event:1")
        self.clock.advance(10)
        events = sseEvents(b"".join(request.written))
        self.assertEqual(events[-1]["error"]["type"], "server_error")
        self.assertEqual(len(events), 3)
        self.assertEqual(request.finished, 1)
        request = self.serve(AnthropicMessages(), {**chatRequest(stream=True), "max_tokens": 9}, "error_event:1")
        self.clock.advance(10)
        kinds = [kind for kind, _ in typedEvents(b"".join(request.written))]
        self.assertEqual(kinds, ["message_start", "content_block_start", "content_block_delta", "error"])
        request = self.serve(OpenAIResponses(), {"model": "mock-echo", "input": "a b", "stream": True}, "error_event:0")
        self.clock.advance(10)
        self.assertEqual(typedEvents(b"".join(request.written))[-1][0], "error")

    def test_badFault(self) -> None:
        request = self.serve(OpenAIChat(), chatRequest(stream=True), "explode")
        self.assertEqual(request.responseCode, 400)
        self.assertEqual(json.loads(b"".join(request.written))["error"]["param"], "mock_fault")


@onceAcrossRunners
class ProcessFaultTests(SynchronousTestCase):
    """
    C{chunkgen --fault KIND --fault-rate R}: the fault for a share of the
    requests that ask for none.
    """

    def test_shareOfRequests(self) -> None:
        plan = FaultPlan(Fault("rate_limit"), 0.3, Random(7))
        got = sum(1 for _ in range(2000) if faultOf({}, None, plan) is not None)
        self.assertTrue(540 <= got <= 660, got)
        self.assertIsNone(faultOf({}, None, FaultPlan(Fault("rate_limit"), 0.0)))
        self.assertEqual(faultOf({}, None, FaultPlan(Fault("reset"), 1.0)), Fault("reset"))

    def test_askedForWins(self) -> None:
        plan = FaultPlan(Fault("rate_limit"), 1.0)
        self.assertEqual(faultOf({}, b"server_error", plan), Fault("server_error"))
        self.assertEqual(faultOf({"mock_fault": "disconnect:2"}, None, plan), Fault("disconnect", 2))

    def test_served(self) -> None:
        """
        Every chat request that asks for no fault gets the process's,
        served as an asked-for one is.
        """
        resource = ChatResource(OpenAIChat(), MockLLM(Clock(), faults=FaultPlan(Fault("overloaded"), 1.0)))
        request = StreamingRequest([], method=b"POST", uri=b"/v1/x", body=json.dumps(chatRequest()).encode())
        request.write(render(resource, request))
        self.assertEqual(request.responseCode, 503)

    def test_option(self) -> None:
        options = GeneratorOptions()
        options.parseOptions(["--fault", "stall:2:1.5", "--fault-rate", "0.25"])
        self.assertEqual(options.faults(), FaultPlan(Fault("stall", 2, 1.5), 0.25))
        for argv, reason in (
            (["--fault", "explode"], "--fault: must be rate_limit[:SECONDS], overloaded, server_error, reset, disconnect:N"),
            (["--fault", "reset", "--fault-rate", "2"], "--fault-rate"),
        ):
            with self.assertRaises(UsageError) as caught:
                GeneratorOptions().parseOptions(argv)
            self.assertIn(reason, str(caught.exception))


class SDKTests(TestCase):
    """
    Each fault through chunkproxy to the openai SDK (no retries), which
    raises what it raises for the real API's.
    """

    timeout = 60

    @inlineCallbacks
    def test_openaiSDKExceptions(self) -> Any:
        generator: Server = yield startTwistd(self, "chunkgen", "--ttft", "0.05", "--tokens-per-second", "50")
        proxy: Server = yield startTwistd(self, "chunkproxy", "--route", f"/v1/={generator.url}v1/")
        client = LineProcess.spawn(
            sys.executable, str(PEERS / "openai_faults.py"), proxy.url + "v1",
            "rate_limit", "overloaded", "server_error", "disconnect:2", "error_event:2", "stall:2:3", "slow_headers:3",
            env={"PATH": "/usr/bin:/bin"},
        )  # fmt: skip
        code = yield client.exitCode
        self.assertEqual(code, 0, client.stderr.decode())
        raised = dict(line.decode().split(" ", 1) for _, line in client.lines)
        self.assertEqual(
            raised,
            {
                "rate_limit": "RateLimitError 429 retry-after=1",
                "overloaded": "InternalServerError 503 retry-after=None",
                "server_error": "InternalServerError 500 retry-after=None",
                "disconnect:2": "APIConnectionError after 2 deltas: Connection error.",
                "error_event:2": "APIError after 2 deltas: mock fault error_event",
                "stall:2:3": "APITimeoutError after 2 deltas: Request timed out.",
                "slow_headers:3": "APITimeoutError after 0 deltas: Request timed out.",
            },
        )
