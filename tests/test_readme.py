"""
Tests that the README's commands are what runs: the demo works as written,
and CI calls the README's test command.
"""

from __future__ import annotations

import os
import re
import socket
import sys
from pathlib import Path
from typing import Any

from twisted.internet.defer import inlineCallbacks
from twisted.trial.unittest import SynchronousTestCase, TestCase

from tests.support import LineProcess, freePort

PROJECT = Path(__file__).resolve().parent.parent


def _readmeCommands() -> list[str]:
    readme = (PROJECT / "README.md").read_text()
    block = readme.split("## Two commands", 1)[1].split("```sh", 1)[1].split("```", 1)[0]
    return [line.split("#", 1)[0].strip() for line in block.strip().splitlines()]


class CommandsTests(SynchronousTestCase):
    def test_twoCommands(self) -> None:
        """
        The README's set-up is two commands, and they exist.
        """
        commands = _readmeCommands()
        self.assertEqual(commands, ["scripts/demo", "scripts/test"])
        for command in commands:
            self.assertTrue(os.access(PROJECT / command, os.X_OK), command)

    def test_ciRunsTheTestCommand(self) -> None:
        """
        CI runs the README's test command, then the tests of the fence
        around Twisted's private names against the newest Twisted, then the
        benchmark's quick mode (which fails on any lost byte), each as a
        command of its own.
        """
        ci = (PROJECT / ".ci" / "run").read_text()
        commands = re.findall(r"^(\S.*)$", ci, re.M)
        self.assertEqual(
            commands[-3:], [_readmeCommands()[1], "scripts/test-newest-twisted", "bench/run --quick"]
        )


class DemoTests(TestCase):
    timeout = 120

    @inlineCallbacks
    def test_demoOnce(self) -> Any:
        """
        C{scripts/demo --once} starts both servers, shows a stream arriving
        live through the proxy, ends cleanly and names the page's URL. (It
        uses the virtualenv running the tests, free ports, and a folder of
        its own for the pidfiles: the other test runner may be running its
        demo at the same time.)
        """
        proxyPort = freePort()
        env = dict(
            os.environ,
            VENV=sys.prefix,
            CHUNKGEN_PORT=str(freePort()),
            CHUNKPROXY_PORT=str(proxyPort),
            DEMO_DIR=os.path.abspath(self.mktemp()),
        )
        demo = LineProcess.spawn(str(PROJECT / "scripts" / "demo"), "--once", env=env)
        code = yield demo.exitCode
        self.assertEqual(code, 0, demo.text + demo.stderr.decode())
        rows = [when for when, line in demo.lines if re.match(rb"\s+\d+\s+\d+\.\d+ s .*Chunk \d+", line)]
        self.assertEqual(len(rows), 20, demo.text)
        self.assertGreater(rows[-1] - rows[0], 1.5, "the rows should appear as the chunks arrive")
        self.assertIn("ended cleanly", demo.text)
        self.assertIn(f"The page: http://localhost:{proxyPort}/", demo.text)

    @inlineCallbacks
    def test_takenPortNamesTheVariables(self) -> Any:
        """
        A port already taken: the demo stops with the server's one line and
        names the variables that move it (a newcomer found them only in the
        script's comment).
        """
        taken = socket.socket()
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        self.addCleanup(taken.close)
        env = dict(
            os.environ,
            VENV=sys.prefix,
            CHUNKGEN_PORT=str(taken.getsockname()[1]),
            CHUNKPROXY_PORT=str(freePort()),
            DEMO_DIR=os.path.abspath(self.mktemp()),
        )
        demo = LineProcess.spawn(str(PROJECT / "scripts" / "demo"), "--once", env=env)
        code = yield demo.exitCode
        stderr = demo.stderr.decode()
        self.assertEqual(code, 1, demo.text + stderr)
        self.assertIn("chunkgen: cannot listen on tcp:", stderr)
        self.assertIn("(another port: CHUNKGEN_PORT=9081 CHUNKPROXY_PORT=9080 scripts/demo)", stderr)

