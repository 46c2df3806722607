"""
The deployment the README describes, for real: nginx (with its default
C{proxy_buffering on}) configured by C{examples/deploy/nginx.conf} in front
of two C{twistd chunkproxy} instances before a C{chunkgen}: streams pass
through live, both instances serve, and a rolling restart of the two
while 40 three-second streams start loses none of them.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

from twisted.internet.defer import gatherResults, inlineCallbacks
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.protocol import Protocol
from twisted.internet.task import deferLater
from twisted.trial.unittest import SkipTest, TestCase

from tests.support import LineProcess, Server, curl, fetch, freePort, onceAcrossRunners, reactor, startTwistd

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "deploy" / "nginx.conf"


def _nginx() -> str:
    found = shutil.which("nginx") or ("/usr/sbin/nginx" if os.path.exists("/usr/sbin/nginx") else None)
    if found is None:
        raise SkipTest("nginx is not installed (.ci/run installs nginx-light)")
    return found


def _curl() -> str:
    found = shutil.which("curl")
    if found is None:
        raise SkipTest("curl is not installed (.ci/run installs it)")
    return found


def nginxConfig(folder: str, listen: int, first: int, second: int) -> str:
    """
    @return: A whole nginx.conf around the example, its addresses replaced
        by these ports, its files kept in C{folder}.
    """
    example = EXAMPLE.read_text()
    for old, new in (("listen 80;", f"listen 127.0.0.1:{listen};"), ("127.0.0.1:8080", f"127.0.0.1:{first}"),
                     ("127.0.0.1:8090", f"127.0.0.1:{second}")):  # fmt: skip
        assert old in example, old
        example = example.replace(old, new)
    return f"""
worker_processes 1;
error_log {folder}/error.log;
pid {folder}/nginx.pid;
events {{ worker_connections 1024; }}
http {{
    access_log {folder}/access.log;
    client_body_temp_path {folder}/body;
    proxy_temp_path {folder}/proxy;
    fastcgi_temp_path {folder}/fastcgi;
    uwsgi_temp_path {folder}/uwsgi;
    scgi_temp_path {folder}/scgi;
    {example}
}}
"""


def _streamEvents(server: Server) -> list[dict[str, Any]]:
    return [
        record
        for record in (json.loads(line) for line in server.output.splitlines() if line.startswith("{"))
        if record["namespace"] == "chunkproxy.stream"
    ]


@onceAcrossRunners
class NginxInFrontTests(TestCase):
    timeout = 90

    @inlineCallbacks
    def startInstance(self, upstream: Server, port: int = 0) -> Any:
        listen = ["--listen", f"tcp:{port}:interface=127.0.0.1"] if port else []
        instance: Server = yield startTwistd(
            self, "chunkproxy", "--upstream", upstream.url + "generate", "--log-format", "json", *listen
        )
        return instance

    @inlineCallbacks
    def startAll(self) -> Any:
        nginx = _nginx()
        generator: Server = yield startTwistd(self, "chunkgen")
        first = yield self.startInstance(generator)
        second = yield self.startInstance(generator)
        folder = os.path.abspath(self.mktemp())
        os.makedirs(folder)
        port = freePort()
        conf = os.path.join(folder, "nginx.conf")
        Path(conf).write_text(nginxConfig(folder, port, first.port, second.port))
        process = LineProcess.spawn(nginx, "-p", folder, "-c", conf, "-g", "daemon off;")

        def stop() -> Any:
            try:
                os.kill(int(Path(folder, "nginx.pid").read_text()), 15)
            except (OSError, ValueError):
                return None
            return process.exitCode

        self.addCleanup(stop)
        for _ in range(100):
            try:
                yield connectProtocol(TCP4ClientEndpoint(reactor, "127.0.0.1", port), Protocol())
                break
            except Exception:
                yield deferLater(reactor, 0.05, lambda: None)
        else:
            self.fail(f"nginx did not start: {process.stderr!r}")
        return generator, first, second, f"http://127.0.0.1:{port}/"

    @inlineCallbacks
    def test_liveThroughNginx(self) -> Any:
        """
        Through nginx with buffering on, chunks arrive as they are sent (a
        chunk every 0.3 s arrives every 0.3 s) to a client that accepts
        compressed answers, as browsers and the LLM SDKs do; both instances
        serve.
        """
        generator, first, second, url = yield self.startAll()
        client = LineProcess.spawn(_curl(), "-sS", "-N", "--compressed", url + "stream?count=5&interval=0.3")
        code = yield client.exitCode
        self.assertEqual(code, 0, client.stderr)
        arrivals = [when for when, line in client.lines if line.startswith(b"Chunk ")]
        self.assertEqual(len(arrivals), 5)
        gaps = [later - earlier for earlier, later in zip(arrivals, arrivals[1:], strict=False)]
        self.assertTrue(all(0.2 < gap < 0.45 for gap in gaps), gaps)
        exchanges = yield gatherResults([fetch(url + "stream?count=2&interval=0.01") for _ in range(10)])
        self.assertEqual([e.body.count(b"Chunk ") for e in exchanges], [2] * 10)
        self.assertTrue(_streamEvents(first) and _streamEvents(second), "one instance served nothing")

    @inlineCallbacks
    def test_rollingRestartLosesNothing(self) -> Any:
        """
        40 streams of 3 s start, one every 0.25 s, while each instance in
        turn is sent SIGTERM, drains, exits 0 and is started again on its
        port (the next only once it is ready): every stream arrives whole
        (curl exits 0 with all 30 chunks).
        """
        generator, first, second, url = yield self.startAll()
        clients = []

        @inlineCallbacks
        def start() -> Any:
            for _ in range(40):
                clients.append(curl(url + "stream?count=30&interval=0.1"))
                yield deferLater(reactor, 0.25, lambda: None)

        starting = start()
        yield deferLater(reactor, 1.0, lambda: None)
        for instance in (first, second):
            _, exitCode = yield instance.stopWith("TERM")
            self.assertEqual(exitCode, 0)
            again = yield self.startInstance(generator, instance.port)
            ready = yield fetch(again.url + "readyz")
            self.assertEqual(ready.status, 200)
        yield starting
        codes = yield gatherResults([client.exitCode for client in clients])
        self.assertEqual(codes, [0] * 40, [client.stderr for client in clients if client.stderr])
        self.assertEqual(
            [len([line for _, line in client.lines if line.startswith(b"Chunk ")]) for client in clients], [30] * 40
        )
