"""
The mock LLM through the real proxy, read by real clients nobody here wrote:
the official openai and anthropic packages, and httpx-sse.
"""

from __future__ import annotations

import json
import sys
from typing import Any

from twisted.internet.defer import inlineCallbacks

from tests.support import PEERS, PROMPT, TOKEN, LineProcess, ThroughProxy, onceAcrossRunners
from twisted_stream.mock.apis.embeddings import vector
from twisted_stream.mock.llm import tokens


@onceAcrossRunners
class SDKThroughProxyTests(ThroughProxy):
    """
    The Python clients.
    """

    @inlineCallbacks
    def test_openaiSDK(self) -> Any:
        """
        The openai SDK, with the proxy as its base_url and stream=True,
        receives every delta, joins them into the expected text, at the pace.
        """
        client = self.sdk(TOKEN)
        code = yield client.exitCode
        self.assertEqual(code, 0, client.stderr.decode())
        deltas = [line.split(b" ", 1) for _, line in client.lines if line[:1].isdigit()]
        self.assertEqual("".join(json.loads(text) for _, text in deltas), PROMPT)
        self.assertPaced([float(when) for when, _ in deltas])
        self.assertIn(b"usage %d" % (len(tokens(PROMPT)),), [line for _, line in client.lines])
        self.assertEqual(client.lines[-1][1], b"done")

    @inlineCallbacks
    def test_openaiResponsesAPI(self) -> Any:
        """
        The openai SDK's Responses API (C{client.responses.stream}, then
        C{responses.create} without streaming), through the proxy: every
        text delta at the pace, the final response whole and completed,
        with its usage; the plain answer the same text.
        """
        client = self.peer("openai_responses.py", self.proxy.url + "v1", OPENAI_API_KEY=TOKEN)
        lines = yield self.pacedAnswer(client)
        self.assertIn(b"final " + json.dumps(PROMPT).encode(), lines)
        self.assertIn(b"status completed", lines)
        self.assertIn(b"usage %d" % (len(tokens(PROMPT)),), lines)
        self.assertIn(b"whole " + json.dumps(PROMPT).encode() + b" completed", lines)
        self.assertEqual(lines[-1], b"done")

    @inlineCallbacks
    def test_openaiEmbeddings(self) -> Any:
        """
        The openai SDK's C{embeddings.create} through the proxy, as it asks
        by default (base64, which it decodes) and as floats with 256
        dimensions: unit vectors, the same text's the same under either
        encoding and in any request, different texts' different.
        """
        client = LineProcess.spawn(
            sys.executable, str(PEERS / "openai_embeddings.py"), self.proxy.url + "v1", "mock-embed",
            "a cat sat", "a dog ran", env={"OPENAI_API_KEY": TOKEN, "PATH": "/usr/bin:/bin"},
        )  # fmt: skip
        code = yield client.exitCode
        self.assertEqual(code, 0, client.stderr.decode())
        rows = {(row["as"], row["index"]): row for row in (json.loads(line) for _, line in client.lines)}
        self.assertEqual(sorted(rows), [("default", 0), ("default", 1), ("float256", 0), ("float256", 1)])
        self.assertEqual([rows["default", i]["length"] for i in (0, 1)], [1536, 1536])
        self.assertEqual([rows["float256", i]["length"] for i in (0, 1)], [256, 256])
        expected = vector("a cat sat", 1536)
        for got, want in zip(rows["default", 0]["vector"], expected, strict=True):
            self.assertAlmostEqual(got, want, places=6)
        self.assertEqual(rows["float256", 1]["vector"], vector("a dog ran", 256))
        self.assertNotEqual(rows["float256", 0]["vector"], rows["float256", 1]["vector"])
        self.assertEqual(rows["default", 0]["tokens"], 6)

    @inlineCallbacks
    def test_geminiSDK(self) -> Any:
        """
        Google's google-genai SDK, with the proxy as its base_url, as it
        calls by default (C{/v1/models/MODEL:...}) and with the beta API
        version (C{/v1beta/...}): a whole answer, then a stream, every text
        chunk at the pace, with the finish reason and usage.
        """
        for version in ("", "beta"):
            env = {"GOOGLE_GENAI_API_VERSION": version} if version else {}
            client = self.peer("gemini_chat.py", self.proxy.url, GATEWAY_TOKEN=TOKEN, **env)
            lines = yield self.pacedAnswer(client)
            self.assertIn(b"whole " + json.dumps(PROMPT).encode(), lines)
            self.assertIn(b"usage %d" % (len(tokens(PROMPT)),), lines)
            self.assertIn(b"finish FinishReason.STOP", lines)
            self.assertEqual(lines[-1], b"done")

    @inlineCallbacks
    def test_openaiToolCalls(self) -> Any:
        """
        The openai SDK through the proxy, offering tools to C{mock-tools}:
        the streamed call to the first tool, its arguments in several
        pieces that join into JSON the schema accepts, C{tool_calls} as the
        finish reason; the tool's result sent back is quoted in the answer;
        a forced C{tool_choice} gets a call to the tool it names. The same
        through the Responses API: a streamed C{function_call} item whose
        argument deltas join into its arguments, and the C{function_call_output}
        quoted.
        """
        lines = yield self.toolsPeer("openai_tools.py", self.proxy.url + "v1", OPENAI_API_KEY=TOKEN)
        self.assertGreater(int(lines["pieces"]), 3)
        self.assertEqual(
            lines["call"],
            'get_weather {"city": "example", "days": 1, "tags": ["example"], "unit": "celsius", "where": {"lat": 1.5}}',
        )
        self.assertEqual(lines["finish"], "tool_calls")
        self.assertEqual(lines["answer"], "The tool returned: 18 degrees and sunny")
        self.assertEqual(lines["forced"], "other {}")
        self.assertEqual(
            lines["rcall"],
            'function_call get_weather {"city": "example", "days": 1, "tags": ["example"], "unit": "celsius",'
            ' "where": {"lat": 1.5}} True',
        )
        self.assertEqual(lines["ranswer"], "The tool returned: 18 degrees and sunny")

    @inlineCallbacks
    def test_anthropicToolUse(self) -> Any:
        """
        The anthropic SDK through the proxy, offering tools to
        C{mock-tools}: its final message from the stream holds the
        C{tool_use} block, its input from the schema; the tool's result
        sent back is quoted; a forced C{tool_choice} gets the tool it names.
        """
        lines = yield self.toolsPeer("anthropic_tools.py", self.proxy.url.rstrip("/"), GATEWAY_TOKEN=TOKEN)
        self.assertEqual(lines["block"], 'tool_use get_weather {"city": "example", "days": 2, "unit": "celsius"}')
        self.assertEqual(lines["stop"], "tool_use")
        self.assertEqual(lines["answer"], "The tool returned: 18 degrees and sunny")
        self.assertEqual(lines["forced"], 'other {"n": 1.5}')

    @inlineCallbacks
    def test_geminiFunctionCall(self) -> Any:
        """
        The google-genai SDK through the proxy, offering functions (as its
        own Schema and as JSON Schema) to C{mock-tools}: a streamed chunk
        carries the C{functionCall} with arguments from the schema; the
        function's response sent back is quoted.
        """
        lines = yield self.toolsPeer("gemini_tools.py", self.proxy.url, GATEWAY_TOKEN=TOKEN)
        self.assertEqual(lines["call"], 'get_weather {"city": "example", "days": 1}')
        self.assertEqual(lines["answer"], 'The tool returned: {"result":"sunny"}')

    @inlineCallbacks
    def test_anthropicSDK(self) -> Any:
        """
        The anthropic SDK, with the proxy as its base_url, streams a message
        from the mock's Messages API: every text delta, the expected text,
        at the pace, with the stop reason and usage.
        """
        client = self.peer("anthropic_chat.py", self.proxy.url.rstrip("/"), GATEWAY_TOKEN=TOKEN)
        lines = yield self.pacedAnswer(client)
        self.assertIn(b"stop end_turn", lines)
        self.assertIn(b"usage %d" % (len(tokens(PROMPT)),), lines)

    @inlineCallbacks
    def test_wrongKeyRefused(self) -> Any:
        """
        The SDK with a key that is not the gateway's token gets the 401.
        """
        client = self.sdk("sk-wrong")
        code = yield client.exitCode
        self.assertNotEqual(code, 0)
        self.assertIn(b"401", client.stderr)

    @inlineCallbacks
    def test_httpxSSE(self) -> Any:
        """
        httpx-sse reads the same stream event by event, ending with [DONE].
        """
        client = self.peer("httpx_sse_chat.py", self.proxy.url + "v1/chat/completions", TOKEN=TOKEN)
        code = yield client.exitCode
        self.assertEqual(code, 0, client.stderr.decode())
        events = [line.split(b" ", 1) for _, line in client.lines if line[:1].isdigit()]
        data = [json.loads(text) for _, text in events]
        self.assertEqual(data[-1], "[DONE]")
        chunks = [json.loads(d) for d in data[:-1]]
        contents = [(float(when), c["choices"][0]["delta"].get("content")) for (when, _), c in zip(events, chunks, strict=False)]
        self.assertEqual("".join(text for _, text in contents if text), PROMPT)
        self.assertPaced([when for when, text in contents if text])
