"""
Pools on real processes: C{chunkgen} replicas (some of them bad, with
C{--fault}) behind one route of a real C{chunkproxy} started with a config
file, and what clients, the metrics and C{/readyz} see.
"""

from __future__ import annotations

import json
import os
import signal
import sys
from typing import Any, Sequence

from prometheus_client.parser import text_string_to_metric_families
from twisted.internet.defer import Deferred, DeferredList, gatherResults, inlineCallbacks
from twisted.internet.task import deferLater
from twisted.trial.unittest import TestCase

from tests.support import (
    PEERS,
    Exchange,
    LineProcess,
    RawUpstream,
    Server,
    answerWith,
    fetch,
    freePort,
    onceAcrossRunners,
    reactor,
    startTwistd,
    until,
)

_CHAT = json.dumps(
    {"model": "mock-passage", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 3}
).encode()


def _toml(members: Sequence[tuple[str, int]], **route: Any) -> str:
    """
    @return: A config file with one pool at C{/v1/}: each member its name
        and weight, the route's other keys as given.
    """
    lines = ['[[route]]', 'prefix = "/v1/"']
    for key, value in route.items():
        lines.append(f"{key.replace('_', '-')} = {json.dumps(value) if not isinstance(value, str) else value}")
    for url, weight in members:
        lines += ["[[route.member]]", f'url = "{url}v1/"', f"weight = {weight}", f'name = "{url.split(":")[-1].strip("/")}"']
    return "\n".join(lines) + "\n"


@onceAcrossRunners
class PoolTests(TestCase):
    timeout = 120

    @inlineCallbacks
    def replicas(self, *options: Sequence[str]) -> Any:
        """
        Start one C{chunkgen} per tuple of options.
        """
        started = yield gatherResults(
            [startTwistd(self, "chunkgen", "--ttft", "0", "--tokens-per-second", "1000", *more) for more in options]
        )
        return started

    def gateway(self, config: str, *options: str) -> Deferred[Server]:
        self.config = os.path.abspath(self.mktemp())
        with open(self.config, "w") as f:
            f.write(config)
        return startTwistd(self, "chunkproxy", "--config", self.config, *options)

    def chat(self, proxy: Server, stream: bool = False) -> Deferred[Exchange]:
        body = json.loads(_CHAT)
        body["stream"] = stream
        return fetch(
            proxy.url + "v1/chat/completions",
            method=b"POST",
            headers=[(b"Content-Type", b"application/json")],
            body=json.dumps(body).encode(),
        )

    def streams(self, proxy: Server, count: int, tokens: int) -> list[Deferred[Exchange]]:
        """
        Start C{count} streamed chat answers of C{tokens} tokens each.
        """
        body = json.dumps(dict(json.loads(_CHAT), stream=True, max_tokens=tokens)).encode()
        return [
            fetch(proxy.url + "v1/chat/completions", method=b"POST", body=body,
                  headers=[(b"Content-Type", b"application/json")])
            for _ in range(count)
        ]  # fmt: skip

    @inlineCallbacks
    def metrics(self, proxy: Server, name: str) -> Any:
        """
        @return: The samples of one metric, by their labels but route.
        """
        exchange: Exchange = yield fetch(proxy.url + "metrics")
        found: dict[tuple[tuple[str, str], ...], float] = {}
        for family in text_string_to_metric_families(exchange.body.decode()):
            for sample in family.samples:
                if sample.name == name:
                    labels = tuple(sorted((k, v) for k, v in sample.labels.items() if k != "route"))
                    found[labels] = sample.value
        return found

    def served(self, samples: dict[Any, float], outcome: str = "complete") -> dict[str, float]:
        return {dict(labels)["upstream"]: value for labels, value in samples.items() if dict(labels)["outcome"] == outcome}

    @inlineCallbacks
    def test_shortRequestsByWeight(self) -> Any:
        """
        300 short requests, one after another, are spread within 10 % of
        the weights 1, 2, 3; each answered whole.
        """
        replicas = yield self.replicas((), (), ())
        proxy = yield self.gateway(_toml([(r.url, w) for r, w in zip(replicas, (1, 2, 3), strict=True)]))
        for _ in range(300):
            exchange = yield self.chat(proxy)
            self.assertEqual((exchange.status, exchange.complete), (200, True))
        served = self.served((yield self.metrics(proxy, "chunkproxy_upstream_requests_total")))
        counts = [served.get(str(r.port), 0) for r in replicas]
        for count, expected in zip(counts, (50, 100, 150), strict=True):
            self.assertLessEqual(abs(count - expected), expected * 0.1, counts)

    @inlineCallbacks
    def test_reloadUnderLiveStreamsGoesToTheNewMembers(self) -> Any:
        """
        50 long streams on the one member of a pool; the config file gains
        two members and SIGHUP reloads it: none of the 50 is cut, and the
        next 10 streams go to the new members (the one holding 50 gets
        none); a file with a problem is then refused, the routes kept.
        """
        # 55 tokens at 8 a second: 7 s, long enough for a loaded machine.
        first, second, third = yield self.replicas(("--tokens-per-second", "8"), (), ())
        proxy = yield self.gateway(_toml([(first.url, 1)]))
        long = self.streams(proxy, 50, 55)
        finished: list[Exchange] = []

        def ended(exchange: Exchange) -> Exchange:
            finished.append(exchange)
            return exchange

        for d in long:
            d.addCallback(ended)
        opened: dict[Any, float] = {}
        while opened.get((("upstream", str(first.port)),)) != 50:
            opened = yield self.metrics(proxy, "chunkproxy_upstream_streams_open")
        with open(self.config, "w") as f:
            f.write(_toml([(first.url, 1), (second.url, 1), (third.url, 1)]))
        os.kill(proxy.pid, signal.SIGHUP)
        yield until(lambda: "reloaded" in proxy.output, 10, lambda: proxy.output)
        more = yield gatherResults([self.chat(proxy) for _ in range(10)])
        self.assertEqual([e.status for e in more], [200] * 10)
        served = self.served((yield self.metrics(proxy, "chunkproxy_upstream_requests_total")))
        self.assertEqual(served.get(str(first.port), 0), 0, served)
        self.assertEqual(served.get(str(second.port), 0) + served.get(str(third.port), 0), 10, served)
        self.assertEqual(finished, [], "the 50 streams should still be under way")
        streams = yield gatherResults(long)
        self.assertEqual([(e.status, e.complete) for e in streams], [(200, True)] * 50)
        self.assertNotIn("truncated", proxy.output)
        # A file that does not parse: refused, its problem in the log.
        with open(self.config, "w") as f:
            f.write('[[route]]\nprefix = "/v1/"\nurl = "ftp://x/"\n')
        os.kill(proxy.pid, signal.SIGHUP)
        yield until(lambda: "reload of" in proxy.output, 10, lambda: proxy.output)
        self.assertIn("route[1].url: need an absolute http:// or https:// URL", proxy.output)
        exchange = yield self.chat(proxy)
        self.assertEqual(exchange.status, 200)

    @inlineCallbacks
    def test_memberKilledMidRun(self) -> Any:
        """
        A member killed mid-run: only the streams on it end truncated,
        honestly; every new request succeeds on the others.
        """
        replicas = yield self.replicas(*[("--tokens-per-second", "10")] * 3)
        proxy = yield self.gateway(_toml([(r.url, 1) for r in replicas]))
        streams = self.streams(proxy, 9, 30)
        yield deferLater(reactor, 1.0, lambda: None)
        victim = replicas[0]
        os.kill(victim.pid, signal.SIGKILL)
        ended = yield gatherResults(streams)
        truncated = [e for e in ended if not e.complete]
        self.assertEqual(len(truncated), 3, [(e.status, e.complete) for e in ended])
        for exchange in truncated:
            self.assertEqual(exchange.status, 200)
            self.assertNotIn(b"[DONE]", exchange.body)
        new = yield gatherResults([self.chat(proxy) for _ in range(20)])
        self.assertEqual([(e.status, e.complete) for e in new], [(200, True)] * 20)
        served = self.served((yield self.metrics(proxy, "chunkproxy_upstream_requests_total")), "truncated")
        self.assertEqual(served, {str(victim.port): 3.0})

    @inlineCallbacks
    def test_retryAfterCoolsAMemberDown(self) -> Any:
        """
        A member answering 429 with Retry-After: 2 gets nothing for 2 s, and
        no client sees its 429 while the other member is free.
        """
        limited, fine = yield self.replicas(("--fault", "rate_limit:2"), ())
        proxy = yield self.gateway(_toml([(limited.url, 1), (fine.url, 1)]))
        began = reactor.seconds()
        statuses: list[int] = []
        while reactor.seconds() - began < 1.8:
            exchange = yield self.chat(proxy)
            statuses.append(exchange.status)
        self.assertEqual(set(statuses), {200})
        self.assertGreater(len(statuses), 10)
        self.assertEqual(limited.output.count('"POST /v1/chat/completions HTTP/1.1" 429'), 1, limited.output)
        events = yield self.metrics(proxy, "chunkproxy_upstream_events_total")
        self.assertEqual(events[(("event", "cooldown"), ("upstream", str(limited.port)))], 1)
        yield deferLater(reactor, 2.2 - (reactor.seconds() - began), lambda: None)
        for _ in range(4):
            exchange = yield self.chat(proxy)
            self.assertEqual(exchange.status, 200)
        self.assertEqual(limited.output.count('"POST /v1/chat/completions HTTP/1.1" 429'), 2, limited.output)

    @inlineCallbacks
    def test_resettingMemberEjectedThenBackAfterItsProbe(self) -> Any:
        """
        A member that resets every chat connection is ejected after three
        failures in a row (its clients saw 502s until then, never a clean
        answer), /readyz names it, and its health check brings it back.
        """
        bad, good = yield self.replicas(("--fault", "reset"), ())
        proxy = yield self.gateway(
            _toml(
                [(bad.url, 1), (good.url, 1)],
                eject_after=3,
                eject_for=60,
                health_check='{ path = "/v1/models", interval = 3 }',
            )
        )
        statuses: list[int] = []
        while "ejected" not in proxy.output and len(statuses) < 40:
            exchange = yield self.chat(proxy)
            statuses.append(exchange.status)
        self.assertIn(f"{bad.port} ejected for 60 s after 3 failures in a row", proxy.output)
        self.assertEqual(statuses.count(502), 3, statuses)
        self.assertEqual(set(statuses), {200, 502})
        ready: Exchange = yield fetch(proxy.url + "readyz")
        self.assertEqual(ready.status, 200)
        self.assertEqual(ready.body.decode(), f"ok\nout: /v1/ {bad.port} (ejected)\n")
        for _ in range(10):
            exchange = yield self.chat(proxy)
            self.assertEqual(exchange.status, 200)
        yield until(lambda: "is back: its health check passed" in proxy.output, 5, lambda: proxy.output)
        ready = yield fetch(proxy.url + "readyz")
        self.assertEqual(ready.body, b"ok\n")

    @inlineCallbacks
    def test_postLostAfterItWentOutIsNotRetried(self) -> Any:
        """
        A POST whose connection dies after its body went out reaches that
        upstream once, and no other: the client gets a 502.
        """
        dies = RawUpstream(self, lambda connection, head: connection.tcp.loseConnection())
        other = RawUpstream(
            self, answerWith(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}")
        )
        proxy = yield self.gateway(_toml([(dies.url, 1), (other.url, 1)], tries=2))
        # The round robin starts at a random place: send until one lands on
        # the upstream that dies (the other answers 200 at once).
        before = len(other.requests)
        exchange = yield self.chat(proxy)
        while not dies.requests:
            self.assertEqual(exchange.status, 200)
            before = len(other.requests)
            exchange = yield self.chat(proxy)
        self.assertEqual(exchange.status, 502)
        self.assertEqual(len(dies.requests), 1)
        self.assertEqual(len(other.requests), before, "the POST that died went to the other upstream too")
        self.assertTrue(dies.requests[0].startswith(b"POST /v1/chat/completions HTTP/1.1"))

    @inlineCallbacks
    def test_openaiSDKWithAReplicaDown(self) -> Any:
        """
        The openai SDK, streaming through the gateway (its retries off),
        sees no error while one of three replicas is down.
        """
        up = yield self.replicas((), ())
        down = f"http://127.0.0.1:{freePort()}/"
        proxy = yield self.gateway(_toml([(down, 1), *[(r.url, 1) for r in up]]), "--log-format", "json")
        clients = [
            LineProcess.spawn(sys.executable, str(PEERS / "openai_chat.py"), proxy.url + "v1", "mock-passage", "hi")
            for _ in range(6)
        ]
        codes = yield DeferredList([client.exitCode for client in clients])
        for (_, code), client in zip(codes, clients, strict=True):
            self.assertEqual(code, 0, client.stderr.decode())
            self.assertEqual(client.lines[-1][1], b"done")
        events = yield self.metrics(proxy, "chunkproxy_upstream_events_total")
        downName = down.split(":")[-1].strip("/")
        self.assertGreater(events.get((("event", "failover"), ("upstream", downName)), 0), 0)
        # Each stream's event names the member that served it and the tries.
        streams = [
            json.loads(line) for line in proxy.output.splitlines()
            if line.startswith("{") and '"chunkproxy.stream"' in line
        ]  # fmt: skip
        self.assertEqual(len(streams), 6)
        self.assertEqual({event["upstream"] for event in streams} & {downName}, set())
        self.assertTrue(all(event["tries"] == event["failovers"] + 1 for event in streams), streams)
        self.assertIn(1, [event["failovers"] for event in streams])

    @inlineCallbacks
    def test_allAtTheirCaps(self) -> Any:
        """
        Every member at its max-streams: the next request gets 503 with
        Retry-After at once, said in the log; the streams under way go on.
        """
        replicas = yield self.replicas(*[("--tokens-per-second", "10")] * 2)
        config = "".join(
            _toml([(r.url, 1) for r in replicas]).replace("weight = 1", "weight = 1\nmax-streams = 2")
        )
        proxy = yield self.gateway(config)
        long = self.streams(proxy, 4, 20)
        opened: dict[Any, float] = {}
        while sum(opened.values()) != 4:
            opened = yield self.metrics(proxy, "chunkproxy_upstream_streams_open")
        refused = yield self.chat(proxy)
        self.assertEqual(refused.status, 503)
        self.assertEqual(refused.header(b"retry-after"), [b"1"])
        self.assertEqual(refused.body, b"every upstream of this route is at its stream limit\n")
        self.assertIn("503 every upstream of this route is at its stream limit", proxy.output)
        done = yield gatherResults(long)
        self.assertEqual([(e.status, e.complete) for e in done], [(200, True)] * 4)

    @inlineCallbacks
    def test_groupChecksTheFileBeforeReplacingWorkers(self) -> Any:
        """
        Under --workers, SIGHUP with a file that has a problem replaces no
        worker (its lines in the log); with a good file, the new workers
        serve its new route.
        """
        (replica,) = yield self.replicas(())
        proxy = yield self.gateway(_toml([(replica.url, 1)]), "--workers", "1")
        yield until(lambda: "chunkproxy worker 1 listening on" in proxy.output, what=lambda: proxy.output[-3000:])
        with open(self.config, "w") as f:
            f.write("no-such-key = 1\n" + _toml([(replica.url, 1)]))
        os.kill(proxy.pid, signal.SIGHUP)
        yield until(lambda: "reload refused: the workers serve on" in proxy.output, what=lambda: proxy.output[-3000:])
        self.assertIn(f"reload refused: {self.config}: no-such-key: is not a key chunkproxy knows", proxy.output)
        self.assertNotIn("starting 1 new workers", proxy.output)
        with open(self.config, "w") as f:
            f.write(_toml([(replica.url, 1)]) + f'[[route]]\nprefix = "/m/"\nurl = "{replica.url}v1/"\n')
        os.kill(proxy.pid, signal.SIGHUP)
        yield until(lambda: "reload: every worker replaced" in proxy.output, what=lambda: proxy.output[-3000:])
        # (An old worker may take a connection or two before its drain
        # stops it accepting: the new route is there within a second.)
        models: Exchange = yield fetch(proxy.url + "m/models")
        began = reactor.seconds()
        while models.status != 200 and reactor.seconds() - began < 3:
            yield deferLater(reactor, 0.1, lambda: None)
            models = yield fetch(proxy.url + "m/models")
        self.assertEqual(models.status, 200)
        self.assertIn(b"mock-passage", models.body)
