"""
Tests for L{twisted_stream.ops._metrics}: a gateway on loopback after a known
set of streams, its C{/metrics} scraped and parsed with prometheus-client's
own parser; and a real chunkproxy with C{--metrics-listen} and
C{--require-token}.
"""

from __future__ import annotations

from typing import Any

from prometheus_client import generate_latest
from twisted.internet.defer import inlineCallbacks
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.task import deferLater
from twisted.trial.unittest import SynchronousTestCase, TestCase

from tests.support import (
    RawClient,
    RawConnection,
    RawUpstream,
    Server,
    fetch,
    onceAcrossRunners,
    portOf,
    reactor,
    samples,
    startTwistd,
)
from twisted_stream.gateway import GatewayResource, GatewaySite, Route
from twisted_stream.ops._metrics import MAX_MODELS, Metrics
from twisted_stream.proxy import StreamProxyResource
from twisted_stream.upstream._agent import UpstreamAgent


class ScrapeTests(TestCase):
    timeout = 30

    @inlineCallbacks
    def test_knownStreams(self) -> Any:
        """
        After a complete stream, one whose client left mid-body, one whose
        upstream sent a bad head, and a 404, the scrape says exactly so.
        """

        def script(connection: RawConnection, head: bytes) -> None:
            if b"/bad" in head:
                connection.tcp.write(b"HTTP/1.1 200 OK\r\nBad Header\r\n\r\n")
            elif b"/whole" in head:
                connection.tcp.write(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello")
            else:
                connection.tcp.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n")

        upstream = RawUpstream(self, script)
        agent = UpstreamAgent(reactor)
        self.addCleanup(agent.closeCachedConnections)
        proxy = StreamProxyResource(upstream.url, reactor=reactor, agent=agent)
        site = GatewaySite(GatewayResource([Route(b"/up/", proxy)]), 1000, 5)
        port = reactor.listenTCP(0, site, interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        url = f"http://127.0.0.1:{portOf(port)}/"
        yield fetch(url + "up/whole")
        leaving = RawClient(b"GET /up/leave HTTP/1.1\r\nHost: g\r\n\r\n")
        yield connectProtocol(TCP4ClientEndpoint(reactor, "127.0.0.1", portOf(port)), leaving)
        yield deferLater(reactor, 0.2, lambda: None)
        leaving.transport.loseConnection()  # type: ignore[union-attr]
        yield leaving.closed
        bad = yield fetch(url + "up/bad")
        yield fetch(url + "nowhere")
        yield deferLater(reactor, 0.1, lambda: None)
        scrape = yield fetch(url + "metrics")
        self.assertEqual(scrape.status, 200)
        found = samples(scrape.body.decode())
        route = (("route", "/up/"),)
        self.assertEqual(found[("chunkproxy_streams_in_flight", route)], 0)
        for status, outcome, count in (("200", "complete", 1), ("200", "client_gone", 1), ("502", "upstream_error", 1)):
            key = ("chunkproxy_requests_total", (("api", "other"), ("outcome", outcome), ("route", "/up/"), ("status", status)))
            self.assertEqual(found[key], count, key)
        self.assertEqual(
            found[("chunkproxy_requests_total", (("api", "other"), ("outcome", "rejected"), ("route", ""), ("status", "404")))], 1
        )
        # The bodies sent: the whole one, the part before the client left,
        # and the 502's reason.
        self.assertEqual(found[("chunkproxy_bytes_sent_total", route)], 5 + 3 + len(bad.body))
        self.assertEqual(found[("chunkproxy_upstream_errors_total", (("kind", "unreachable_or_bad_response"),))], 1)
        self.assertEqual(found[("chunkproxy_ttfb_seconds_count", route)], 2)
        self.assertEqual(found[("chunkproxy_stream_duration_seconds_count", route)], 3)
        self.assertEqual(found[("chunkproxy_stream_duration_seconds_bucket", (("le", "600.0"), *route))], 3)


@onceAcrossRunners
class ListenerTests(TestCase):
    timeout = 30

    @inlineCallbacks
    def test_tokenAndOwnListener(self) -> Any:
        """
        With C{--require-token}, C{/metrics} on the main listener needs the
        token; with C{--metrics-listen} the metrics are there, and no
        longer on the main listener.
        """
        generator: Server = yield startTwistd(self, "chunkgen")
        proxy: Server = yield startTwistd(
            self, "chunkproxy", "--upstream", generator.url + "generate", "--require-token", "env:T",
            env={"T": "secret"},
        )
        refused = yield fetch(proxy.url + "metrics")
        self.assertEqual(refused.status, 401)
        allowed = yield fetch(proxy.url + "metrics", headers=[(b"Authorization", b"Bearer secret")])
        self.assertEqual(allowed.status, 200)
        self.assertIn("chunkproxy_requests_total", allowed.body.decode())
        separate: Server = yield startTwistd(
            self, "chunkproxy", "--upstream", generator.url + "generate",
            "--metrics-listen", "tcp:0:interface=127.0.0.1",
        )
        for _ in range(50):
            found = [line for line in separate.output.splitlines() if "chunkproxy metrics listening on" in line]
            if found:
                break
            yield deferLater(reactor, 0.1, lambda: None)
        self.assertEqual(len(found), 1, separate.output)
        metricsURL = found[0].split("listening on ")[1].split(" ")[0]
        scrape = yield fetch(metricsURL)
        self.assertEqual(scrape.status, 200)
        samples(scrape.body.decode())
        onMain = yield fetch(separate.url + "metrics")
        self.assertNotEqual(onMain.status, 200)


class ModelLabelTests(SynchronousTestCase):
    def test_modelNamesBounded(self) -> None:
        """
        The first L{MAX_MODELS} model names are counted under their own
        label, later new ones under C{other}, and a name seen early keeps
        its own: a client that names a new model at every request (which
        upstreams often echo) cannot grow the series without bound.
        """
        metrics = Metrics()
        for i in range(MAX_MODELS + 50):
            metrics.llm("/v1/", "chat", f"model-{i}", 2, 10, 20)
        metrics.llm("/v1/", "chat", "model-0", 2, None, None)
        found = samples(generate_latest(metrics.registry).decode())
        deltas = {dict(labels)["model"]: value for (name, labels), value in found.items()
                  if name == "chunkproxy_llm_deltas_total"}  # fmt: skip
        self.assertEqual(len(deltas), MAX_MODELS + 1)
        self.assertEqual((deltas["other"], deltas["model-0"], deltas[f"model-{MAX_MODELS - 1}"]), (100.0, 4.0, 2.0))
        self.assertNotIn(f"model-{MAX_MODELS}", deltas)
        prompt = found[("chunkproxy_llm_tokens_total", (("api", "chat"), ("kind", "prompt"), ("model", "other"), ("route", "/v1/")))]
        self.assertEqual(prompt, 500.0)
