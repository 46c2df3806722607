"""
Tests that the README and docs/ say what runs: the demo works as written, CI
calls the README's test command, the gateway's command line serves as
written, every option named exists, every link leads somewhere, and the
options reference is each command's --help.
"""

from __future__ import annotations

import os
import re
import shlex
import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

from twisted.internet.defer import inlineCallbacks
from twisted.trial.unittest import SynchronousTestCase, TestCase

from tests.support import (
    ChatUpstream,
    Exchange,
    LineProcess,
    Server,
    Upstream,
    fetch,
    freePort,
    onceAcrossRunners,
    startServer,
    stopped,
    twistdCommand,
    until,
)

PROJECT = Path(__file__).resolve().parent.parent


def _readmeCommands() -> list[str]:
    readme = (PROJECT / "README.md").read_text()
    block = readme.split("## Two commands", 1)[1].split("```sh", 1)[1].split("```", 1)[0]
    return [line.split("#", 1)[0].strip() for line in block.strip().splitlines()]


DOCS = sorted((PROJECT / "docs").glob("*.md"))
PAGES = [PROJECT / "README.md", *DOCS]


def _codeBlocks(text: str) -> list[str]:
    return re.findall(r"^```(?:sh|console)?\n(.*?)^```", text, re.M | re.S)


def _commandLines(text: str) -> list[list[str]]:
    """
    The C{twistd} and C{chunkwatch} command lines in a page's code blocks,
    continuation lines joined, as argument lists.
    """
    found = []
    for block in _codeBlocks(text):
        for line in block.replace("\\\n", " ").splitlines():
            line = line.split("  #", 1)[0].strip().removeprefix("$ ")
            if re.match(r"(twistd|chunkwatch)\b", line):
                try:
                    found.append(shlex.split(line))
                except ValueError:
                    continue
    return found


def _helpOf(*argv: str) -> str:
    bin = os.path.dirname(sys.executable)
    env = dict(os.environ, COLUMNS="80", PATH=bin + os.pathsep + os.environ.get("PATH", ""))
    return subprocess.run(argv, capture_output=True, text=True, check=True, env=env).stdout


class PagesTests(SynchronousTestCase):
    def test_readmeIsAFrontDoor(self) -> None:
        """
        The README stays short: the rest is in docs/.
        """
        self.assertLess(len((PROJECT / "README.md").read_text().splitlines()), 300)

    def test_linksLeadSomewhere(self) -> None:
        """
        Every relative link of the README and docs/ names a file that exists,
        and a heading there where it names one.
        """
        broken = []
        for page in PAGES:
            for target in re.findall(r"\]\(([^)#\s]*)(#[^)\s]*)?\)", page.read_text()):
                path, anchor = target
                if re.match(r"[a-z]+:", path):
                    continue
                linked = (page.parent / path).resolve() if path else page
                if not linked.exists():
                    broken.append(f"{page.name}: {path}")
                elif anchor and linked.suffix == ".md":
                    slugs = {
                        re.sub(r"[^a-z0-9 -]", "", heading.lower()).replace(" ", "-")
                        for heading in re.findall(r"^#+ (.*)$", linked.read_text(), re.M)
                    }
                    if anchor[1:] not in slugs:
                        broken.append(f"{page.name}: {path}{anchor}")
        self.assertEqual(broken, [])

    def test_pathsNamedExist(self) -> None:
        """
        Every file or folder of the project the README and docs/ name (in
        code spans, code blocks or links) exists: a module moved or renamed
        shows here.
        """
        missing = sorted(
            f"{page.name}: {path}"
            for page in PAGES
            for path in re.findall(r"\b((?:twisted_stream|examples|scripts|bench|tests|docs)/[\w./@-]*\w/?)", page.read_text())
            if not (PROJECT / path).exists()
        )
        self.assertEqual(missing, [])

    def test_optionsReferenceIsTheHelp(self) -> None:
        """
        docs/options.md is what scripts/options-reference makes of each
        command's --help, now.
        """
        made = subprocess.run(
            [sys.executable, str(PROJECT / "scripts" / "options-reference")], capture_output=True, text=True, check=True
        ).stdout
        self.assertEqual((PROJECT / "docs" / "options.md").read_text(), made)

    def test_everyOptionNamedExists(self) -> None:
        """
        Every option a C{twistd ... chunkgen|chunkproxy} or C{chunkwatch}
        command line in the README or docs/ gives is one that command takes.
        """
        helps = {
            name: _helpOf(*argv)
            for name, argv in [
                ("chunkgen", ["twistd", "chunkgen", "--help"]),
                ("chunkproxy", ["twistd", "chunkproxy", "--help"]),
                ("chunkwatch", ["chunkwatch", "--help"]),
                ("twistd", ["twistd", "--help"]),
            ]
        }
        unknown = []
        seen = 0
        for page in PAGES:
            for argv in _commandLines(page.read_text()):
                if argv[0] == "chunkwatch":
                    command, options = "chunkwatch", argv[1:]
                else:
                    plugins = [i for i, word in enumerate(argv) if word in ("chunkgen", "chunkproxy")]
                    if not plugins:
                        continue
                    command, options = argv[plugins[0]], argv[plugins[0] + 1 :]
                    unknown += [
                        f"{page.name}: twistd {word}"
                        for word in argv[1 : plugins[0]]
                        if word.startswith("--") and word.split("=", 1)[0] + "=" not in helps["twistd"]
                        and word.split("=", 1)[0] not in helps["twistd"]
                    ]
                for word in options:
                    if word.startswith("-") and word != "-":
                        seen += 1
                        name = word.split("=", 1)[0]
                        if not re.search(rf"(^|[ ,]){re.escape(name)}[=\s,]", helps[command], re.M):
                            unknown.append(f"{page.name}: {command} {name}")
        self.assertGreater(seen, 10)
        self.assertEqual(unknown, [])


@onceAcrossRunners
class GatewayCommandTests(TestCase):
    timeout = 60

    @inlineCallbacks
    def test_readmeGatewayServes(self) -> Any:
        """
        The README's gateway command line, as written, with only its
        addresses changed (a free port; the API replaced by a local
        upstream that records what it gets): a client with the gateway's
        token gets the stream, the upstream gets the server's key and never
        the client's token, and a client without the token gets 401.
        """
        readme = (PROJECT / "README.md").read_text()
        section = readme.split("## In front of an LLM API", 1)[1].split("\n## ", 1)[0]
        [argv] = [line for line in _commandLines(section) if "chunkproxy" in line]
        exports = dict(re.findall(r'^export (\w+)="([^"]*)"', section, re.M))
        self.assertIn("OPENAI_AUTHORIZATION", exports)
        chat = ChatUpstream()
        upstream = Upstream(self, chat)
        self.assertEqual(argv[:3], ["twistd", "-n", "chunkproxy"])
        argv = [
            twistdCommand(), "-n", "--pidfile=",
            *(
                "tcp:0:interface=127.0.0.1" if word.startswith("tcp:8080")
                else word.replace("https://api.openai.com/v1/", upstream.url + "v1/")
                for word in argv[2:]
            ),
        ]
        server: Server = yield startServer(
            self, argv, env={**exports, "OPENAI_AUTHORIZATION": "Bearer sk-server", "GATEWAY_TOKEN": "gw-token"}
        )
        url = server.url + "v1/chat/completions"
        exchange: Exchange = yield fetch(url, b"POST", [(b"Authorization", b"Bearer gw-token")], body=b"{}")
        self.assertEqual(exchange.status, 200, exchange.body)
        self.assertIn(b"data: [DONE]", exchange.body)
        self.assertEqual(chat.seen[-1]["headers"][b"authorization"], [b"Bearer sk-server"])
        refused: Exchange = yield fetch(url, b"POST", body=b"{}")
        self.assertEqual(refused.status, 401)
        self.assertEqual(len(chat.seen), 1)


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


@onceAcrossRunners
class DemoTests(TestCase):
    timeout = 120

    def demoEnvironment(self, chunkgenPort: str, chunkproxyPort: int) -> dict[str, str]:
        """
        @return: The demo's environment: the virtualenv running the tests,
            the two ports, and a folder of its own for the pidfiles (the
            other test runner may be running its demo at the same time).
        """
        return dict(
            os.environ,
            VENV=sys.prefix,
            CHUNKGEN_PORT=chunkgenPort,
            CHUNKPROXY_PORT=str(chunkproxyPort),
            DEMO_DIR=os.path.abspath(self.mktemp()),
        )

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
        env = self.demoEnvironment(str(freePort()), proxyPort)
        demo = LineProcess.spawn(str(PROJECT / "scripts" / "demo"), "--once", env=env)
        code = yield demo.exitCode
        self.assertEqual(code, 0, demo.text + demo.stderr.decode())
        rows = [when for when, line in demo.lines if re.match(rb"\s+\d+\s+\d+\.\d+ s .*Chunk \d+", line)]
        self.assertEqual(len(rows), 20, demo.text)
        self.assertGreater(rows[-1] - rows[0], 1.5, "the rows should appear as the chunks arrive")
        self.assertIn("ended cleanly", demo.text)
        self.assertIn(f"The page: http://localhost:{proxyPort}/", demo.text)

    @inlineCallbacks
    def test_ctrlCEndsItCleanly(self) -> Any:
        """
        Once both servers run, Ctrl-C (SIGINT) ends the demo with status 0,
        both servers stopped, as each server's own Ctrl-C does.
        """
        proxyPort = freePort()
        env = self.demoEnvironment(str(freePort()), proxyPort)
        demo = LineProcess.spawn(str(PROJECT / "scripts" / "demo"), env=env)
        self.addCleanup(stopped, demo)
        yield until(lambda: "Both keep running until Ctrl-C" in demo.text, 60, lambda: demo.text)
        os.kill(demo.pid, signal.SIGINT)
        code = yield demo.exitCode
        self.assertEqual(code, 0, demo.text + demo.stderr.decode())
        with self.assertRaises(OSError):
            socket.create_connection(("127.0.0.1", proxyPort), timeout=1).close()

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
        env = self.demoEnvironment(str(taken.getsockname()[1]), freePort())
        demo = LineProcess.spawn(str(PROJECT / "scripts" / "demo"), "--once", env=env)
        code = yield demo.exitCode
        stderr = demo.stderr.decode()
        self.assertEqual(code, 1, demo.text + stderr)
        self.assertIn("chunkgen: cannot listen on tcp:", stderr)
        self.assertIn("(another port: CHUNKGEN_PORT=9081 CHUNKPROXY_PORT=9080 scripts/demo)", stderr)

