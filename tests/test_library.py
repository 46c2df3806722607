"""
The library piece as users mount it: the README's example, run as it is.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from twisted.internet.defer import inlineCallbacks
from twisted.trial.unittest import SynchronousTestCase, TestCase

from tests.support import ChatUpstream, Exchange, Server, Upstream, fetch, onceAcrossRunners, startServer

PROJECT = Path(__file__).resolve().parent.parent
EXAMPLE = PROJECT / "examples" / "mount.py"


class ReadmeExampleTests(SynchronousTestCase):
    def test_readmeShowsTheExample(self) -> None:
        """
        The README's example is C{examples/mount.py}, line for line.
        """
        readme = (PROJECT / "README.md").read_text()
        self.assertIn("```python\n" + EXAMPLE.read_text() + "```", readme)


_STANDALONE = """
import json, sys
from twisted.internet import defer, task
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Site
import treq
from twisted_stream.proxy import StreamProxyResource

class Upstream(Resource):
    isLeaf = True
    def render_POST(self, request):
        request.setHeader(b"content-type", b"text/event-stream")
        request.write(b"data: " + request.getHeader(b"authorization") + b"\\n\\n")
        request.write(b"data: [DONE]\\n\\n")
        request.finish()
        return NOT_DONE_YET

async def main(reactor):
    upstream = reactor.listenTCP(0, Site(Upstream()), interface="127.0.0.1")
    root = Resource()
    root.putChild(b"llm", StreamProxyResource(
        "http://127.0.0.1:%d/v1/" % (upstream.getHost().port,), injectHeaders=[(b"Authorization", b"Bearer k")]))
    port = reactor.listenTCP(0, Site(root), interface="127.0.0.1")
    response = await treq.post("http://127.0.0.1:%d/llm/chat/completions" % (port.getHost().port,), b"{}")
    body = await response.content()
    loaded = sorted(m for m in sys.modules if m.startswith(("twisted_stream", "prometheus")))
    print(json.dumps({"status": response.code, "body": body.decode(), "loaded": loaded}))

task.react(lambda reactor: defer.ensureDeferred(main(reactor)))
"""


class StandaloneTests(SynchronousTestCase):
    def test_plainSiteWithoutTheGateway(self) -> None:
        """
        In a plain L{Site}, in a fresh interpreter, the resource forwards
        with its key, and loads nothing of the gateway's edge, operations
        or the mock: no admission, channel, HTTP/2, drain, descriptors,
        metrics (nor prometheus-client), chunkgen.
        """
        ran = subprocess.run([sys.executable, "-c", _STANDALONE], capture_output=True, text=True, timeout=60)
        self.assertEqual(ran.returncode, 0, ran.stderr)
        result = json.loads(ran.stdout)
        self.assertEqual((result["status"], result["body"]), (200, "data: Bearer k\n\ndata: [DONE]\n\n"))
        gateway = {
            "twisted_stream.gateway._site",
            "twisted_stream.gateway._admission",
            "twisted_stream.gateway._channel",
            "twisted_stream.gateway._request",
            "twisted_stream.gateway._h2",
            "twisted_stream.ops._drain",
            "twisted_stream.gateway._descriptors",
            "twisted_stream.ops._metrics",
            "twisted_stream.gateway._cors",
            "twisted_stream.mock.llm",
            "twisted_stream.mock.generator",
        }
        self.assertEqual(gateway & set(result["loaded"]), set())
        self.assertFalse([name for name in result["loaded"] if name.startswith("prometheus")])


@onceAcrossRunners
class MountedTests(TestCase):
    timeout = 60

    @inlineCallbacks
    def test_exampleForwards(self) -> Any:
        """
        Run as it is, the example serves the upstream below C{/llm/}, key
        added, each event as it comes.
        """
        chat = ChatUpstream()
        upstream = Upstream(self, chat)
        server: Server = yield startServer(
            self,
            [sys.executable, str(EXAMPLE)],
            env={"UPSTREAM": upstream.url + "v1/", "OPENAI_API_KEY": "sk-example", "LISTEN": "tcp:0:interface=127.0.0.1"},
        )
        exchange: Exchange = yield fetch(server.url + "llm/chat/completions", method=b"POST", body=b"{}")
        self.assertEqual(exchange.status, 200)
        self.assertTrue(exchange.complete, exchange.error)
        self.assertIn(b"data: [DONE]", exchange.body)
        self.assertGreater(exchange.pieces[-1][0] - exchange.pieces[0][0], 0.3)
        self.assertEqual(chat.seen[-1]["uri"], b"/v1/chat/completions")
        self.assertEqual(chat.seen[-1]["headers"][b"authorization"], [b"Bearer sk-example"])
