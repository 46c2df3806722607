"""
The mock LLM through the real proxy, read by Node clients: the openai
package for Node and the Vercel AI SDK's default OpenAI provider (which
calls the Responses API), installed by scripts/test from
tests/peers/node/package.json.
"""

from __future__ import annotations

import json
from typing import Any

from twisted.internet.defer import inlineCallbacks
from twisted.trial.unittest import SkipTest

from tests.support import (
    NODE_PEERS,
    PROMPT,
    TOKEN,
    LineProcess,
    ThroughProxy,
    nodeExecutable,
    onceAcrossRunners,
)
from twisted_stream.mock.llm import tokens


def _node(script: str, *args: str) -> LineProcess:
    node = nodeExecutable()
    if not (NODE_PEERS / "node_modules").is_dir():
        raise SkipTest("tests/peers/node/node_modules missing (scripts/test runs npm where it is installed)")
    return LineProcess.spawn(node, str(NODE_PEERS / script), *args, env={"OPENAI_API_KEY": TOKEN, "PATH": "/usr/bin:/bin"})


@onceAcrossRunners
class NodeThroughProxyTests(ThroughProxy):
    """
    The same chunkgen behind the same chunkproxy as the Python clients'.
    """

    @inlineCallbacks
    def test_openaiNode(self) -> Any:
        """
        The openai package for Node streams a chat completion through the
        proxy: every delta, at the pace, with the usage; the same text
        through the Responses API; and a streamed tool call it can parse,
        through both APIs.
        """
        lines = yield self.pacedAnswer(_node("openai_chat.mjs", self.proxy.url + "v1", "mock-echo", PROMPT))
        self.assertIn(b"usage %d" % (len(tokens(PROMPT)),), lines)
        self.assertIn(b"responses " + json.dumps(PROMPT).encode(), lines)
        self.assertIn(b'tool get_weather {"city":"example"}', lines)
        self.assertIn(b"tool-finish tool_calls", lines)
        self.assertIn(b'rtool get_weather {"city":"example"} true', lines)
        self.assertEqual(lines[-1], b"done")

    @inlineCallbacks
    def test_vercelAISDK(self) -> Any:
        """
        The Vercel AI SDK's default OpenAI provider (the Responses API)
        through the proxy: text deltas at the pace, then a C{tool-call} part
        with the input the tool's schema asks for.
        """
        lines = yield self.pacedAnswer(_node("vercel.mjs", self.proxy.url + "v1", PROMPT))
        self.assertIn(b"finish stop", lines)
        self.assertIn(b'tool-call get_weather {"city":"example","days":2}', lines)
        self.assertIn(b"tools-finish tool-calls", lines)
        self.assertEqual(lines[-1], b"done")
