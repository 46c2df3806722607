"""
What the mock LLM serves beyond chat, as the official SDKs see it, each
pointed at a real C{twistd chunkgen} directly and through a real
C{chunkproxy}: structured outputs parsed into the SDK's model instances,
C{count_tokens}, C{models.retrieve}, Gemini's C{models.list},
C{count_tokens} and C{embed_content}, google-genai's automatic function
calling, the legacy completions streamed, an aliased C{gpt-4o-mini}, and
reasoning in each SDK's reasoning fields (the Vercel AI SDK's too);
C{/_mock/requests} shows what the SDK sent.
"""

from __future__ import annotations

import json
import sys
from typing import Any

import treq
from twisted.internet.defer import inlineCallbacks
from twisted.trial.unittest import SkipTest, TestCase

from tests.support import (
    NODE_PEERS,
    PEERS,
    TOKEN,
    LineProcess,
    Server,
    nodeExecutable,
    onceAcrossRunners,
    startTwistd,
)
from twisted_stream.mock.apis.embeddings import vector
from twisted_stream.mock.llm import PASSAGE, REASONING, tokens

_PERSON = {"address": {"city": "example", "zip": "example"}, "age": 1, "name": "example", "tags": ["example"]}


@onceAcrossRunners
class MockThroughSDKsTests(TestCase):
    """
    chunkgen (C{--alias gpt-4o-mini=mock-passage}, fast) and chunkproxy in
    front of it (a token required); each SDK's peer run against both, and
    its lines the same both ways.
    """

    timeout = 120

    @inlineCallbacks
    def setUp(self) -> Any:  # type: ignore[override]
        self.generator: Server = yield startTwistd(
            self, "chunkgen", "--ttft", "0", "--tokens-per-second", "2000", "--alias", "gpt-4o-mini=mock-passage"
        )
        self.proxy: Server = yield startTwistd(
            self,
            "chunkproxy",
            "--route", f"/v1/={self.generator.url}v1/",
            "--route", f"/v1beta/={self.generator.url}v1beta/",
            "--require-token", "env:TOKEN",
            env={"TOKEN": TOKEN},
        )  # fmt: skip

    @inlineCallbacks
    def bothWays(self, script: str, path: str, node: bool = False) -> Any:
        """
        Run a peer against chunkgen, then through chunkproxy.

        @param path: What its base URL ends with (after the server's).
        @return: Its C{KEY VALUE} lines, by key, read as JSON; the same
            both ways.
        """
        seen = []
        for url, token in ((self.generator.url, ""), (self.proxy.url, TOKEN)):
            env = {"PATH": "/usr/bin:/bin", "OPENAI_API_KEY": token or "sk-unused"}
            if token:
                env["GATEWAY_TOKEN"] = token
            if node:
                if not (NODE_PEERS / "node_modules").is_dir():
                    raise SkipTest("tests/peers/node/node_modules missing (scripts/test runs npm where it is installed)")
                peer = LineProcess.spawn(nodeExecutable(), str(NODE_PEERS / script), url + path, env=env)
            else:
                peer = LineProcess.spawn(sys.executable, str(PEERS / script), url + path, env=env)
            code = yield peer.exitCode
            self.assertEqual(code, 0, peer.stderr.decode())
            lines = [line.decode() for _, line in peer.lines]
            self.assertEqual(lines[-1], "done")
            seen.append({key: json.loads(value) for key, value in (line.split(" ", 1) for line in lines[:-1])})
        self.assertEqual(seen[0], seen[1], "the same through chunkproxy as directly")
        return seen[0]

    @inlineCallbacks
    def test_openai(self) -> Any:
        """
        The openai SDK: C{parse} gives a model instance in both APIs (a
        nested pydantic model), and so does C{chat.completions.stream}
        with a C{response_format}, in several deltas; C{models.retrieve};
        C{completions} streamed token by token; C{gpt-4o-mini} answers
        under its own name; C{reasoning_content} deltas and the Responses
        API's reasoning summary, with C{reasoning_tokens}. The mock saw
        the SDK's own requests.
        """
        got = yield self.bothWays("openai_mocked.py", "v1")
        thought, words = tokens(REASONING), tokens(PASSAGE)
        self.assertEqual(got["parse-chat"], _PERSON)
        self.assertEqual(got["parse-responses"], _PERSON)
        self.assertEqual(got["input-items"], [["user", "Who is it?"]])
        self.assertEqual(got["stream-parse"][1], _PERSON)
        self.assertGreater(got["stream-parse"][0], 5, "the JSON streamed in pieces")
        self.assertEqual(got["retrieve"], "mock-passage")
        self.assertEqual(got["completions"], [51, "".join(words[:50])])
        self.assertEqual(got["alias"], ["gpt-4o-mini", PASSAGE])
        self.assertEqual(got["reasoning-chat"], [len(thought), REASONING, PASSAGE])
        self.assertEqual(got["reasoning-responses"], [len(thought), "reasoning", REASONING, PASSAGE, len(thought)])
        response = yield treq.get(self.generator.url + "_mock/requests", persistent=False)
        seen = (yield response.json())["requests"]
        aliased = [r for r in seen if r["path"] == "/v1/chat/completions" and json.loads(r["body"])["model"] == "gpt-4o-mini"]
        self.assertEqual(len(aliased), 2, "once directly, once through the proxy")
        agents = [value for r in aliased for name, value in r["headers"] if name.lower() == "user-agent"]
        self.assertEqual([agent.split("/")[0] for agent in agents], ["OpenAI", "OpenAI"], aliased)
        self.assertEqual(json.loads(aliased[1]["body"])["messages"], [{"role": "user", "content": "Who is it?"}])

    @inlineCallbacks
    def test_anthropic(self) -> Any:
        """
        The anthropic SDK: C{count_tokens} counts; C{models.retrieve};
        C{thinking} events, then a thinking block with a signature before
        the text.
        """
        got = yield self.bothWays("anthropic_mocked.py", "")
        self.assertEqual(got["count"], 5)
        self.assertEqual(got["retrieve"], "mock-passage")
        self.assertEqual(got["thinking"], [len(tokens(REASONING)), ["thinking", "text"], REASONING, True, PASSAGE])

    @inlineCallbacks
    def test_gemini(self) -> Any:
        """
        The google-genai SDK: C{models.list} (the alias too), C{models.get},
        C{count_tokens}, C{embed_content} (the vector OpenAI's embeddings
        give the same text); automatic function calling runs the Python
        function with the arguments its signature asks for; thought parts,
        counted apart; two candidates for C{candidate_count=2}.
        """
        got = yield self.bothWays("gemini_mocked.py", "")
        names = ["gpt-4o-mini", "mock-echo", "mock-embed", "mock-passage", "mock-reasoning", "mock-tools"]
        self.assertEqual(got["list"], [f"models/{name}" for name in names])
        self.assertEqual(got["get"], "models/mock-passage")
        self.assertEqual(got["count"], 3)
        self.assertEqual(got["embed"], [768, vector("hi", 768)[:2]])
        calls, answer = got["afc"]
        self.assertEqual(calls, [{"city": "example", "days": 1}])
        self.assertIn("sunny", answer)
        self.assertEqual(got["thoughts"], [len(tokens(REASONING)), REASONING, PASSAGE, len(tokens(REASONING))])
        self.assertEqual(got["candidates"], [["a b", "a b"], 4])

    @inlineCallbacks
    def test_vercelAISDK(self) -> Any:
        """
        The Vercel AI SDK: C{streamObject} gives partial objects as the
        JSON streams, then the whole object, valid for the schema, and
        C{generateObject} the same object;
        C{streamText} from C{mock-reasoning} gives C{reasoning-delta}
        parts, the reasoning text and its tokens in the usage.
        """
        got = yield self.bothWays("vercel_mocked.mjs", "v1", node=True)
        self.assertGreater(got["partials"], 2)
        self.assertEqual(got["object"], {"name": "example", "age": 18, "tags": ["example"]})
        self.assertEqual(got["generated"], got["object"], "generateObject, not streamed")
        thought = len(tokens(REASONING))
        self.assertEqual(got["reasoning"], [thought, REASONING, thought])
