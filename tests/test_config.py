"""
Tests for L{twisted_stream.tap._config}: C{chunkproxy --config FILE}, read
into the same options the command line gives, each problem a line that
names its key. (A reload on a real process is in C{tests.test_pools_e2e}.)
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from twisted.python.usage import UsageError
from twisted.trial.unittest import SynchronousTestCase

from tests.support import twistdCommand
from twisted_stream.tap.chunkproxy import Options
from twisted_stream.upstream._health import HealthCheck
from twisted_stream.upstream._pool import DEFAULT_RETRY_STATUSES, PoolPolicy

_POOL = """
listen = "tcp:0:interface=127.0.0.1"
connect-timeout = 4
idle-timeout = 0
max-streams = 500
cors-origin = ["https://app.example"]
inject-header = ["X-Org: org-1"]

[[route]]
prefix = "/v1/"
tries = 2
retry-on = [429, 503]
try-timeout = 1.5
eject-after = 3
eject-for = 10
max-ejected-percent = 34
health-check = { path = "/health", interval = 2, expect = 204 }
inject-header = ["X-Route: r"]

  [[route.member]]
  url = "http://127.0.0.1:8001/v1/"
  weight = 3
  max-streams = 16
  name = "gpu1"
  inject-header = ["Authorization: env:KEY1"]

  [[route.member]]
  url = "http://127.0.0.1:8002/v1/"

[[route]]
prefix = "/h"
url = "http://127.0.0.1:9000/"
"""


class ConfigFileTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.patch(os, "environ", dict(os.environ, KEY1="Bearer one"))

    def write(self, text: str) -> str:
        path = self.mktemp()
        with open(path, "w") as f:
            f.write(text)
        return path

    def parse(self, text: str, *argv: str) -> Options:
        options = Options()
        options.parseOptions(["--config", self.write(text), *argv])
        return options

    def problems(self, text: str) -> list[str]:
        with self.assertRaises(UsageError) as caught:
            self.parse(text)
        return str(caught.exception).splitlines()

    def test_everythingTheCommandLineSays(self) -> None:
        """
        Options under their own names, read by their own parsers; routes as
        tables, a pool's members with their weights, caps, names and
        headers; the pool's policy and health check.
        """
        options = self.parse(_POOL)
        self.assertEqual(
            (options["listen"], options["connect-timeout"], options["idle-timeout"], options["max-streams"]),
            ("tcp:0:interface=127.0.0.1", 4.0, None, 500),
        )
        self.assertEqual(options.corsOrigins, [b"https://app.example"])
        routes = {route.prefix: route for route in options.allRoutes()}
        self.assertEqual(sorted(routes), [b"/h", b"/stream", b"/v1/"])
        pool = routes[b"/v1/"]
        self.assertEqual(pool.injectHeaders, [(b"X-Org", b"org-1"), (b"X-Route", b"r")])
        self.assertEqual(
            [(m.url, m.weight, m.maxStreams, m.name, m.injectHeaders) for m in pool.members],
            [
                (b"http://127.0.0.1:8001/v1/", 3, 16, "gpu1", [(b"Authorization", b"Bearer one")]),
                (b"http://127.0.0.1:8002/v1/", 1, None, "", []),
            ],
        )
        self.assertEqual(
            pool.policy,
            PoolPolicy(
                retryStatuses=frozenset({429, 503}), tries=2, ejectAfter=3, ejectFor=10.0, maxEjectedFraction=0.34
            ),
        )
        self.assertEqual(pool.tryTimeout, 1.5)
        self.assertEqual(pool.healthCheck, HealthCheck(b"/health", 2.0, 204, 2.0))
        self.assertEqual(routes[b"/h"].policy.retryStatuses, DEFAULT_RETRY_STATUSES)

    def test_commandLineOverrides(self) -> None:
        """
        An option given on the command line wins over the file's; a
        --route for a prefix the file has replaces the file's route.
        """
        options = self.parse(
            _POOL, "--connect-timeout", "9", "--route", "/h=http://127.0.0.1:9999/", "--route", "/x/=http://y/"
        )
        self.assertEqual(options["connect-timeout"], 9.0)
        self.assertEqual(options["max-streams"], 500)
        routes = {route.prefix: route for route in options.allRoutes()}
        self.assertEqual(routes[b"/h"].upstream, b"http://127.0.0.1:9999/")
        self.assertEqual(len(routes[b"/v1/"].members), 2)
        self.assertIn(b"/x/", routes)

    def test_everyProblemALine(self) -> None:
        """
        Each problem is one line that names the file, the key and the
        reason; all of them are said, and nothing starts.
        """
        path = self.write(
            """
connect-timeout = -1
max-streams = "many"
no-such-option = 1
[[route]]
prefix = "v1"
url = "ftp://x/"
[[route]]
prefix = "/p/"
  [[route.member]]
  url = "http://a/"
  weight = 0
  colour = "red"
  [[route.member]]
  weight = 2
"""
        )
        with self.assertRaises(UsageError) as caught:
            Options().parseOptions(["--config", path])
        self.assertEqual(
            str(caught.exception).splitlines(),
            [
                f"{path}: connect-timeout: a timeout must be a number of seconds above 0, not '-1'",
                f"{path}: max-streams: must be a whole number of at least 0, not 'many'",
                f"{path}: no-such-option: is not a key chunkproxy knows",
                f"{path}: route[1].prefix: a route's prefix must be a path starting with /, not 'v1'",
                f"{path}: route[1].url: need an absolute http:// or https:// URL, not 'ftp://x/'",
                f"{path}: route[2].member[1].colour: is not a key chunkproxy knows",
                f"{path}: route[2].member[1].weight: must be a whole number of at least 1, not 0",
                f"{path}: route[2].member[2]: needs a url",
            ],
        )

    def test_notTOML(self) -> None:
        [line] = self.problems("listen = \n")
        self.assertRegex(line, r": not TOML: ")

    def test_missingFile(self) -> None:
        with self.assertRaises(UsageError) as caught:
            Options().parseOptions(["--config", "/no/such/file.toml"])
        self.assertEqual(str(caught.exception), "/no/such/file.toml: cannot be read: No such file or directory")

    def test_routeShapes(self) -> None:
        """
        A route needs url or members, not both; a prefix once; a member's
        URL once per pool.
        """
        both = self.problems('[[route]]\nprefix = "/a/"\nurl = "http://x/"\n[[route.member]]\nurl = "http://y/"\n')
        self.assertEqual([line.split(": ", 1)[1] for line in both], [
            "route[1]: needs either url (one upstream) or [[route.member]] tables (a pool), not both"
        ])  # fmt: skip
        twice = self.problems('[[route]]\nprefix = "/a/"\nurl = "http://x/"\n[[route]]\nprefix = "/a/"\nurl = "http://y/"\n')
        self.assertEqual([line.split(": ", 1)[1] for line in twice], ["route[2].prefix: a second route for /a/"])
        same = self.problems(
            '[[route]]\nprefix = "/a/"\n[[route.member]]\nurl = "http://x/"\n[[route.member]]\nurl = "http://x/"\n'
        )
        self.assertEqual(
            [line.split(": ", 1)[1] for line in same],
            ["route[1].member[2]: a second member called http://x/: give each of them a name of its own"],
        )
        named = '[[route]]\nprefix = "/a/"\n[[route.member]]\nurl = "http://x/"\nname = "a"\n[[route.member]]\nurl = "http://x/"\nname = "b"\n'
        self.assertEqual([m.name for m in {r.prefix: r for r in self.parse(named).allRoutes()}[b"/a/"].members], ["a", "b"])

    def test_exampleFile(self) -> None:
        """
        The example a deployment starts from (examples/deploy/chunkproxy.toml)
        reads without a problem: two pools, one of two keys to one API.
        """
        self.patch(os, "environ", dict(os.environ, GATEWAY_TOKEN="t", OPENAI_KEY_A="Bearer a", OPENAI_KEY_B="Bearer b"))
        options = Options()
        options.parseOptions(["--config", str(Path(__file__).parent.parent / "examples" / "deploy" / "chunkproxy.toml")])
        routes = {route.prefix: route for route in options.allRoutes()}
        self.assertEqual([m.name for m in routes[b"/v1/"].members], ["gpu1", "gpu2", "gpu3"])
        self.assertEqual(
            [m.injectHeaders for m in routes[b"/openai/"].members],
            [[(b"Authorization", b"Bearer a")], [(b"Authorization", b"Bearer b")]],
        )
        self.assertEqual(routes[b"/v1/"].healthCheck, HealthCheck(b"/health", 5.0, 200, 2.0))

    def test_badFileThroughTwistd(self) -> None:
        """
        A real twistd with a bad file: nothing starts, each problem a line
        on standard error (no traceback), exit 1.
        """
        path = self.write('max-streams = -1\n[[route]]\nprefix = "/v1/"\n')
        ran = subprocess.run(
            [twistdCommand(), "-n", "--pidfile=", "chunkproxy", "--config", path],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        self.assertEqual(
            (ran.returncode, ran.stdout, ran.stderr.splitlines()),
            (
                1,
                "",
                [
                    f"chunkproxy: {path}: max-streams: must be a whole number of at least 0, not '-1'",
                    f"{path}: route[1]: needs either url (one upstream) or [[route.member]] tables (a pool), not both",
                    "(twistd chunkproxy --help lists the options.)",
                ],
            ),
        )

    def test_secretsNeverSaid(self) -> None:
        """
        A header whose value is bad is named, its value never shown.
        """
        self.patch(os, "environ", dict(os.environ, KEY="sk-secret\r\nX: 1"))
        lines = self.problems('inject-header = ["Authorization: env:KEY"]\n')
        self.assertNotIn("sk-secret", "\n".join(lines))
