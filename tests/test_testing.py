"""
Tests for L{twisted_stream.testing}: the mock LLM served in the test's own
reactor on real sockets (scripted, paced, faulted, reset, and stopped with
every connection closed); an agent loop written with the openai SDK driven
to its scripted end, from a C{--script} file of a real C{chunkgen} and from
the in-process mock through a real C{chunkproxy}; and the documented pytest
example, run as a user runs it.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path
from typing import Any

import treq
from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks
from twisted.trial.unittest import TestCase
from twisted.web.client import HTTPConnectionPool, ResponseFailed

from tests.support import PEERS, LineProcess, Server, onceAcrossRunners, sseEvents, startTwistd
from twisted_stream.testing import TEST_PACE, MockLLMServer, Pace, ScriptError, mockLLMFor

_ROOT = Path(__file__).resolve().parent.parent

_QUESTION = "What is the weather in Paris, in Fahrenheit?"

_AGENT_SCRIPT = """\
[[rules]]
match = { user = "Paris", tool = "get_weather" }
tool_call = { name = "get_weather", arguments = { city = "Paris" } }
times = 1

[[rules]]
match = { tool_result = "celsius" }
tool_call = { name = "to_fahrenheit", arguments = { celsius = 18 } }
times = 1

[[rules]]
match = { tool_result = "fahrenheit", system = "weather agent" }
text = "It is 64.4 °F in Paris."
"""

_AGENT_LINES = [
    'call get_weather {"city": "Paris"}',
    'call to_fahrenheit {"celsius": 18}',
    'final "It is 64.4 \\u00b0F in Paris."',
    "turns 3",
]


class MockLLMServerTests(TestCase):
    """
    The server a test gets, on 127.0.0.1, read with a real HTTP client.
    """

    def setUp(self) -> None:
        # One connection per request: none is left for the reactor's check.
        self.pool = HTTPConnectionPool(reactor, persistent=False)

    @inlineCallbacks
    def chat(self, server: MockLLMServer, content: str, model: str = "gpt-4o-mini", **fields: Any) -> Any:
        body = {"model": model, "messages": [{"role": "user", "content": content}], **fields}
        response = yield treq.post(server.openaiBaseURL + "/chat/completions", json=body, pool=self.pool)
        return response.code, (yield treq.content(response))

    @inlineCallbacks
    def test_scripted(self) -> Any:
        """
        A script set by a call answers the next request, streamed token by
        token; the request is listed as the mock saw it, the rule counted.
        """
        server = yield mockLLMFor(self)
        self.assertTrue(server.url.startswith("http://127.0.0.1:"))
        self.assertEqual((server.openaiBaseURL, server.anthropicBaseURL), (server.url + "/v1", server.url))
        server.script([{"match": {"model": "gpt-4o-mini"}, "text": "Scripted, token by token."}])
        code, body = yield self.chat(server, "hi", stream=True)
        deltas = [e["choices"][0]["delta"].get("content") for e in sseEvents(body)[:-1] if e["choices"]]
        self.assertEqual((code, [d for d in deltas if d]), (200, ["Scripted,", " token", " by", " token."]))
        [seen] = server.requests()
        self.assertEqual((seen["method"], seen["path"], json.loads(seen["body"])["stream"]), ("POST", "/v1/chat/completions", True))
        self.assertEqual(server.matched()["rules"][0]["matched"], 1)
        with self.assertRaises(ScriptError):
            server.script([{"txt": "no such key"}])
        self.assertEqual(len(server.matched()["rules"]), 1, "a refused script changes nothing")

    @inlineCallbacks
    def test_paceFaultReset(self) -> Any:
        """
        The pace and a fault per test, applied to the next request; a reset
        goes back to how the server started.
        """
        server = yield mockLLMFor(self)
        self.assertEqual(server.mock.pace, TEST_PACE)
        server.pace(ttft=0.05)
        self.assertEqual(server.mock.pace, Pace(0.05, TEST_PACE.tokensPerSecond))
        server.fault("overloaded")
        code, body = yield self.chat(server, "hi", "mock-passage")
        self.assertEqual((code, json.loads(body)["error"]["code"]), (503, "overloaded"))
        with self.assertRaises(ValueError):
            server.fault("explode")
        server.script({"rules": [{"text": "x"}]})
        server.fault(None)
        server.alias("gpt-4o-mini", "mock-echo")
        code, body = yield self.chat(server, "echoed")
        self.assertEqual((code, json.loads(body)["choices"][0]["message"]["content"]), (200, "x"), "the script first")
        server.script([])
        code, body = yield self.chat(server, "echoed")
        self.assertEqual((code, json.loads(body)["choices"][0]["message"]["content"]), (200, "echoed"), "then the alias")
        with self.assertRaises(ValueError):
            server.alias("gpt-4o", "gpt-5")
        server.reset()
        self.assertEqual((server.mock.pace, server.mock.faults, server.requests()), (TEST_PACE, None, []))
        self.assertEqual(server.matched()["rules"], [])
        code, body = yield self.chat(server, "hi")
        self.assertEqual((code, json.loads(body)["error"]["code"]), (404, "model_not_found"))

    @inlineCallbacks
    def test_stopClosesStreams(self) -> Any:
        """
        Stopping closes a stream still going and the port: the client's
        body breaks off, a new connection is refused, and the reactor is
        left clean (trial checks).
        """
        server = yield mockLLMFor(self)
        server.pace(ttft=0, tokensPerSecond=2)
        server.script([{"text": "one two three four five six seven eight"}])
        body = {"model": "m", "messages": [{"role": "user", "content": "go"}], "stream": True}
        response = yield treq.post(server.openaiBaseURL + "/chat/completions", json=body, pool=self.pool)
        received: list[bytes] = []
        collected = treq.collect(response, received.append)
        yield server.stop()
        failure = yield self.assertFailure(collected, ResponseFailed)
        self.assertIsNotNone(failure)
        self.assertLess(b"".join(received).count(b'"content"'), 8)
        refused = treq.get(server.url + "/v1/models", pool=self.pool)
        yield self.assertFailure(refused, Exception)

    @inlineCallbacks
    def test_stopEndsBackgroundAnswers(self) -> Any:
        """
        An answer asked for in the background is still being made when the
        test ends: stopping the server stops it, so no timer is left in
        the reactor (trial checks), and it reads as cancelled.
        """
        server = yield mockLLMFor(self)
        server.pace(ttft=5)
        body = {"model": "mock-passage", "input": "hi", "background": True}
        response = yield treq.post(server.openaiBaseURL + "/responses", json=body, pool=self.pool)
        queued = yield response.json()
        self.assertEqual(queued["status"], "queued")
        yield server.stop()
        self.assertEqual(server.mock.background.get(queued["id"]).status, "cancelled")


def _agent(url: str) -> LineProcess:
    return LineProcess.spawn(
        sys.executable, str(PEERS / "openai_agent.py"), url, "gpt-4o-mini", _QUESTION, env={"PATH": "/usr/bin:/bin"}
    )


@onceAcrossRunners
class AgentLoopTests(TestCase):
    """
    The openai SDK's agent loop against a scripted conversation: two tool
    calls, each result sent back, then the final answer.
    """

    timeout = 60

    @inlineCallbacks
    def assertAgentDone(self, url: str) -> Any:
        agent = _agent(url)
        code = yield agent.exitCode
        self.assertEqual(code, 0, agent.stderr.decode())
        self.assertEqual([line.decode() for _, line in agent.lines], _AGENT_LINES)

    @inlineCallbacks
    def test_fromChunkgenScriptFile(self) -> Any:
        """
        C{twistd chunkgen --script FILE}, the SDK pointed at it directly.
        """
        script = Path(self.mktemp())
        script.write_text(_AGENT_SCRIPT)
        generator: Server = yield startTwistd(self, "chunkgen", "--script", str(script.resolve()))
        yield self.assertAgentDone(generator.url + "v1")

    @inlineCallbacks
    def test_throughChunkproxy(self) -> Any:
        """
        The in-process mock behind a real C{chunkproxy}: the same
        conversation, and the mock saw each turn as the proxy forwarded it,
        the tools' results in the last.
        """
        server = yield mockLLMFor(self)
        script = Path(self.mktemp())
        script.write_text(_AGENT_SCRIPT)
        server.loadScript(str(script))
        proxy: Server = yield startTwistd(self, "chunkproxy", "--route", f"/v1/={server.url}/v1/")
        yield self.assertAgentDone(proxy.url + "v1")
        bodies = [json.loads(seen["body"]) for seen in server.requests()]
        self.assertEqual(len(bodies), 3)
        self.assertEqual([body["messages"][-1]["role"] for body in bodies], ["user", "tool", "tool"])
        self.assertEqual(json.loads(bodies[2]["messages"][-1]["content"]), {"fahrenheit": 64.4})
        self.assertEqual([rule["matched"] for rule in server.matched()["rules"]], [1, 1, 1])


@onceAcrossRunners
class PytestExampleTests(TestCase):
    """
    docs/testing.md's example, as a user runs it: its two files copied to a
    folder of their own, and pytest run there.
    """

    timeout = 120

    def test_documented(self) -> None:
        """
        The page shows the example's files as they are.
        """
        page = (_ROOT / "docs" / "testing.md").read_text()
        for name in ("conftest.py", "test_agent.py"):
            self.assertIn((_ROOT / "examples" / "pytest" / name).read_text(), page, name)

    @inlineCallbacks
    def runExample(self, change: tuple[str, str] = ("", "")) -> Any:
        folder = Path(self.mktemp())
        shutil.copytree(_ROOT / "examples" / "pytest", folder)
        test = folder / "test_agent.py"
        test.write_text(test.read_text().replace(*change))
        run = LineProcess.spawn(
            sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(folder.resolve()),
            env={"PATH": os.environ.get("PATH", "/usr/bin:/bin")},
        )  # fmt: skip
        code = yield run.exitCode
        return code, run.text

    @inlineCallbacks
    def test_passes(self) -> Any:
        code, output = yield self.runExample()
        self.assertEqual(code, 0, output)
        self.assertIn("1 passed", output)

    @inlineCallbacks
    def test_failsWhenTheAppIsWrong(self) -> Any:
        """
        The example checks something: with the app reading the wrong tool
        result, it fails.
        """
        code, output = yield self.runExample(('"celsius": 18}', '"celsius": 81}'))
        self.assertEqual(code, 1, output)
        self.assertIn("1 failed", output)
