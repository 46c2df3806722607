"""
Tests for L{twisted_stream.tap.options}, parsed as twistd parses them.
"""

from __future__ import annotations

import contextlib
import io
import os
import subprocess

from twisted.python.usage import UsageError
from twisted.scripts.twistd import ServerOptions
from twisted.trial.unittest import SynchronousTestCase

from tests.support import twistdCommand
from twisted_stream.mock.formats import TEXT
from twisted_stream.mock.generator import StreamSpec
from twisted_stream.tap.chunkgen import Options as GeneratorOptions
from twisted_stream.tap.chunkproxy import Options as ProxyOptions


def twistd(*argv: str) -> ServerOptions:
    """
    Parse a twistd command line, plugin options included.
    """
    options = ServerOptions()
    options.parseOptions(list(argv))
    return options


class GeneratorOptionsTests(SynchronousTestCase):
    def test_defaults(self) -> None:
        """
        C{chunkgen} listens on port 8081 and streams 100 chunks, 10 a second.
        """
        options = GeneratorOptions()
        options.parseOptions([])
        self.assertEqual(options["listen"], "tcp:8081")
        self.assertEqual(options.spec(), StreamSpec(count=100, interval=0.1, size=0, format=TEXT))

    def test_values(self) -> None:
        """
        C{--count}, C{--interval} and C{--listen} set the defaults.
        """
        options = GeneratorOptions()
        options.parseOptions(["--count", "7", "--interval", "0.5", "--listen", "tcp:9000:interface=127.0.0.1"])
        self.assertEqual(options.spec(), StreamSpec(count=7, interval=0.5))
        self.assertEqual(options["listen"], "tcp:9000:interface=127.0.0.1")

    def test_badValues(self) -> None:
        """
        A bad value is refused with the reason, before anything starts.
        """
        for argv, reason in (
            (["--count", "-3"], "count must be a whole number from 0 to 1000000"),
            (["--interval", "61"], "interval must be a number of seconds from 0 to 60"),
            (["--listen", "tcp:notaport"], "--listen 'tcp:notaport': the port must be a number from 0 to 65535, not 'notaport'"),
            (["--listen", "tcp:99999"], "--listen 'tcp:99999': the port must be a number from 0 to 65535, not 99999"),
            (["--listen", "tcp:-5"], "--listen 'tcp:-5': the port must be a number from 0 to 65535, not -5"),
            (["--listen", "tcp6:70000"], "--listen 'tcp6:70000': the port must be a number from 0 to 65535, not 70000"),
            (["--listen", "unix:/missing/dir/sock"], "--listen 'unix:/missing/dir/sock': the folder /missing/dir does not exist"),
            (["--listen", "carrier-pigeon:1"], "--listen 'carrier-pigeon:1'"),
        ):
            with self.assertRaises(UsageError, msg=argv) as caught:
                GeneratorOptions().parseOptions(argv)
            self.assertIn(reason, str(caught.exception))


class ProxyOptionsTests(SynchronousTestCase):
    def test_defaults(self) -> None:
        """
        C{chunkproxy} listens on port 8080 and forwards to the generator's
        default address, waiting 10 s for headers.
        """
        options = ProxyOptions()
        options.parseOptions([])
        self.assertEqual(options["listen"], "tcp:8080")
        self.assertEqual(options["upstream"], b"http://localhost:8081/generate")
        self.assertEqual(options["connect-timeout"], 10.0)

    def test_upstream(self) -> None:
        """
        The upstream is an absolute http or https URL, encoded as a URI.
        """
        options = ProxyOptions()
        options.parseOptions(["--upstream", "https://example.com:8443/v1/ünï?a=b", "--connect-timeout", "2.5"])
        self.assertEqual(options["upstream"], b"https://example.com:8443/v1/%C3%BCn%C3%AF?a=b")
        self.assertEqual(options["connect-timeout"], 2.5)

    def test_badValues(self) -> None:
        """
        Anything else is refused with the reason.
        """
        for argv, reason in (
            (["--upstream", "ftp://example.com/"], "absolute http:// or https:// URL"),
            (["--upstream", "/generate"], "absolute http:// or https:// URL"),
            (["--upstream", "http://example.com/#top"], "must not have a #fragment"),
            (["--connect-timeout", "0"], "above 0"),
            (["--connect-timeout", "-1"], "above 0"),
            (["--connect-timeout", "nan"], "above 0"),
            (["--connect-timeout", "soon"], "above 0"),
        ):
            with self.assertRaises(UsageError, msg=argv) as caught:
                ProxyOptions().parseOptions(argv)
            self.assertIn(reason, str(caught.exception))


class TwistdFilesTests(SynchronousTestCase):
    """
    twistd's pidfile and log file default to the plugin's name, so that both
    plugins can run from one directory.
    """

    def test_pidfileNamedAfterPlugin(self) -> None:
        for plugin in ("chunkgen", "chunkproxy"):
            options = twistd("-n", plugin)
            self.assertEqual(options["pidfile"], os.path.abspath(plugin + ".pid"))
            self.assertIsNone(options["logfile"])

    def test_explicitPidfileKept(self) -> None:
        self.assertEqual(twistd("--pidfile=mine.pid", "chunkgen")["pidfile"], os.path.abspath("mine.pid"))
        self.assertEqual(twistd("--pidfile=", "chunkproxy")["pidfile"], "")

    def test_daemonLogfileNamedAfterPlugin(self) -> None:
        """
        Run as a daemon, each plugin logs to its own file unless told
        otherwise.
        """
        self.assertEqual(twistd("chunkproxy")["logfile"], "chunkproxy.log")
        self.assertEqual(twistd("--logfile=x.log", "chunkproxy")["logfile"], "x.log")


class GatewayOptionsTests(SynchronousTestCase):
    """
    C{chunkproxy}'s gateway options.
    """

    def parse(self, *argv: str) -> ProxyOptions:
        options = ProxyOptions()
        options.parseOptions(list(argv))
        return options

    def test_defaults(self) -> None:
        """
        Each default, as C{--help} and the README state it.
        """
        options = self.parse()
        self.assertEqual(
            {k: options[k] for k in ("idle-timeout", "heartbeat", "client-timeout", "retries", "max-body")},
            {"idle-timeout": 300.0, "heartbeat": 15.0, "client-timeout": 60.0, "retries": 1, "max-body": 1048576},
        )
        self.assertIsNone(options["require-token"])
        self.assertIsNone(options["upstream-ca"])
        # No workers (one process) unless asked for, even one.
        self.assertIsNone(options["workers"])
        self.assertEqual(self.parse("--workers", "1")["workers"], 1)
        routes = options.allRoutes()
        self.assertEqual(
            [(r.prefix, r.upstream, r.injectHeaders) for r in routes if len(r.members) == 1],
            [(b"/stream", b"http://localhost:8081/generate", []), (b"/v1/", b"http://localhost:8081/v1/", [])],
        )

    def test_mockLLMRouteFollowsUpstream(self) -> None:
        """
        With no --route, /v1/ goes to the --upstream's origin.
        """
        routes = self.parse("--upstream", "http://gen.example:9000/generate?x=1").allRoutes()
        self.assertEqual([(r.prefix, r.upstream) for r in routes][1], (b"/v1/", b"http://gen.example:9000/v1/"))

    def test_zeroMeansNever(self) -> None:
        options = self.parse("--idle-timeout", "0", "--heartbeat", "0")
        self.assertIsNone(options["idle-timeout"])
        self.assertIsNone(options["heartbeat"])

    def test_routesAndInjectedHeaders(self) -> None:
        """
        An injected header belongs to the route before it, or to every route
        when it comes before any; values may come from the environment.
        """
        self.patch(os, "environ", dict(os.environ, OPENAI_KEY="Bearer sk-test", ORG="org-1"))
        options = self.parse(
            "--inject-header", "X-Org: env:ORG",
            "--route", "/v1/=https://api.openai.com/v1/",
            "--inject-header", "Authorization: env:OPENAI_KEY",
            "--route", "/local/=http://127.0.0.1:9000/",
        )
        routes = {r.prefix: r.injectHeaders + r.members[0].injectHeaders for r in options.allRoutes()}
        self.assertEqual(
            routes,
            {
                b"/stream": [(b"X-Org", b"org-1")],
                b"/v1/": [(b"X-Org", b"org-1"), (b"Authorization", b"Bearer sk-test")],
                b"/local/": [(b"X-Org", b"org-1")],
            },
        )

    def test_routeForStreamReplacesUpstream(self) -> None:
        options = self.parse("--route", "/stream=http://127.0.0.1:1/x")
        self.assertEqual([(r.prefix, r.upstream) for r in options.allRoutes()], [(b"/stream", b"http://127.0.0.1:1/x")])

    def test_requireToken(self) -> None:
        self.patch(os, "environ", dict(os.environ, TOKEN="t0ken"))
        self.assertEqual(self.parse("--require-token", "env:TOKEN")["require-token"], b"t0ken")

    def test_badValues(self) -> None:
        """
        Bad gateway options are refused with a reason that never shows a
        secret.
        """
        self.patch(os, "environ", {k: v for k, v in os.environ.items() if k != "MISSING"})
        for argv, reason in (
            (["--route", "v1=http://x/"], "PREFIX a path starting with /"),
            (["--route", "/v1/"], "PREFIX=URL"),
            (["--route", "/v1/=ftp://x/"], "absolute http:// or https:// URL"),
            (["--route", "/a/=http://x/", "--route", "/a/=http://x/"], "the pool of /a/ has http://x/ twice"),
            (["--inject-header", "NoColon"], "'NAME: VALUE'"),
            (["--inject-header", "Bad Name: x"], "'NAME: VALUE'"),
            (["--inject-header", "X-Key: env:MISSING"], "MISSING, which is not set or empty"),
            (["--require-token", "env:MISSING"], "MISSING, which is not set or empty"),
            (["--upstream-ca", "/no/such/ca.pem"], "is not a file"),
            (["--max-body", "-1"], "whole number"),
            (["--retries", "x"], "whole number"),
            (["--heartbeat", "-5"], "above 0"),
            (["--log-format", "xml"], "--log-format: must be text or json, not 'xml'"),
        ):
            with self.assertRaises(UsageError, msg=argv) as caught:
                ProxyOptions().parseOptions(argv)
            self.assertIn(reason, str(caught.exception))

    def test_headerValueNeverInErrors(self) -> None:
        for value, reason in (("sk-secret\r\nX-Evil: 1", "must not contain CR, LF or NUL"), ("sk-secret-€", "must be ASCII")):
            self.patch(os, "environ", dict(os.environ, KEY=value))
            with self.assertRaises(UsageError) as caught:
                ProxyOptions().parseOptions(["--inject-header", "Authorization: env:KEY"])
            self.assertNotIn("sk-secret", str(caught.exception))
            self.assertIn(reason, str(caught.exception))


class HelpTests(SynchronousTestCase):
    """
    What a person reads: the help, and the answer to a mistyped option.
    """

    def test_defaultsAsTyped(self) -> None:
        """
        Defaults are shown as a person would type them, and read by the
        option's own parser, as a typed value would be.
        """
        text = ProxyOptions().getUsage()
        self.assertIn("[default: http://localhost:8081/generate]", " ".join(text.split()))
        self.assertIn("[default: 60]", " ".join(text.split()))
        self.assertNotIn("b'", text)
        self.assertNotIn(".0]", text)
        options = ProxyOptions()
        options.parseOptions([])
        self.assertEqual(
            (options["upstream"], options["connect-timeout"], options["client-timeout"], options["heartbeat"]),
            (b"http://localhost:8081/generate", 10.0, 60.0, 15.0),
        )

    def test_noRunsOfSpaces(self) -> None:
        """
        Sentences in the help have single spaces (the option docstrings'
        indentation does not show).
        """
        for options in (ProxyOptions(), GeneratorOptions()):
            for name, doc in options.docs.items():
                self.assertNotIn("  ", doc, name)
            # In the help as printed: after the option's column, no gaps.
            for line in options.getUsage().splitlines():
                self.assertNotIn("  ", line.strip().split("  ", 1)[-1].strip(), line)

    def test_generatorNamesMockLLM(self) -> None:
        self.assertIn("mock LLM", " ".join(GeneratorOptions().getUsage().split()))

    def test_badOptionSaidOnce(self) -> None:
        """
        twistd with a bad option: the reason, naming the option, and a
        pointer to --help, on standard error, once, and exit 1 (not the whole
        help, nor the reason again after twistd's full path).
        """
        stderr = io.StringIO()
        with self.assertRaises(SystemExit) as caught, contextlib.redirect_stderr(stderr):
            ServerOptions().parseOptions(["-n", "chunkproxy", "--connect-timeout", "0"])
        self.assertEqual(caught.exception.code, 1)
        reason = "--connect-timeout: a timeout must be a number of seconds above 0, not '0'"
        self.assertEqual(stderr.getvalue().splitlines(), [f"chunkproxy: {reason}", "(twistd chunkproxy --help lists the options.)"])

    def test_badOptionThroughTwistd(self) -> None:
        """
        The same through a real twistd: standard output empty, the two lines
        on standard error, exit 1; a port out of range, a UNIX socket's
        missing folder, likewise (each was a traceback).
        """
        for argv, reason in (
            (["chunkproxy", "--listen", "tcp:99999"], "--listen 'tcp:99999': the port must be a number from 0 to 65535, not 99999"),
            (["chunkgen", "--listen", "unix:/missing/dir/sock"], "--listen 'unix:/missing/dir/sock': the folder /missing/dir does not exist"),
        ):
            ran = subprocess.run([twistdCommand(), "-n", "--pidfile=", *argv], capture_output=True, text=True, timeout=60)
            self.assertEqual(
                (ran.returncode, ran.stdout, ran.stderr.splitlines()),
                (1, "", [f"{argv[0]}: {reason}", f"(twistd {argv[0]} --help lists the options.)"]),
            )
