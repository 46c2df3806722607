"""
The library piece as users mount it: the README's example, run as it is.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from twisted.internet.defer import inlineCallbacks
from twisted.trial.unittest import SynchronousTestCase, TestCase

from tests.support import ChatUpstream, Exchange, Server, Upstream, fetch, startServer

PROJECT = Path(__file__).resolve().parent.parent
EXAMPLE = PROJECT / "examples" / "mount.py"


class ReadmeExampleTests(SynchronousTestCase):
    def test_readmeShowsTheExample(self) -> None:
        """
        The README's example is C{examples/mount.py}, line for line.
        """
        readme = (PROJECT / "README.md").read_text()
        self.assertIn("```python\n" + EXAMPLE.read_text() + "```", readme)


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
