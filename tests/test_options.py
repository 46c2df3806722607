"""
Tests for L{twisted_stream.options}, parsed as twistd parses them.
"""

from __future__ import annotations

import os

from twisted.python.usage import UsageError
from twisted.scripts.twistd import ServerOptions
from twisted.trial.unittest import SynchronousTestCase

from twisted_stream.formats import TEXT
from twisted_stream.generator import StreamSpec
from twisted_stream.options import GeneratorOptions, ProxyOptions


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
            (["--listen", "tcp:notaport"], "--listen 'tcp:notaport'"),
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
