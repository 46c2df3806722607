"""
Tests for L{twisted_stream.resume._sharedstreams} and
L{twisted_stream.resume._redislink}: resumable streams kept in a real
C{redis-server}, resumed on another C{chunkproxy} of the fleet than the
one that reads the upstream; and Redis going away mid-stream.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
from itertools import pairwise
from typing import Any, cast

from twisted.internet.defer import Deferred, gatherResults, inlineCallbacks
from twisted.internet.task import deferLater
from twisted.trial.unittest import SkipTest, SynchronousTestCase, TestCase

from tests.support import (
    Exchange,
    LineProcess,
    RedisServer,
    Server,
    SlowPieces,
    StrictClient,
    Upstream,
    fetch,
    freePort,
    makeCertificates,
    onceAcrossRunners,
    passageChat,
    reactor,
    samples,
    startRedis,
    startTwistd,
    until,
)
from twisted_stream.resume._redislink import parseRedisURL
from twisted_stream.resume._sharedstreams import _TURN

_TOKEN = "client-token-0123456789"


def _chat(proxy: Server, tokens: int, headers: Any = (), cutAfter: int = 0) -> Deferred[Exchange]:
    def cut(client: StrictClient) -> None:
        if sum(len(data) for _, data in client.exchange.pieces) >= cutAfter:
            client.tcp.abortConnection()

    return fetch(
        proxy.url + "v1/chat/completions",
        method=b"POST",
        headers=[(b"Content-Type", b"application/json"), *headers],
        body=passageChat(tokens),
        onPiece=cut if cutAfter else None,
    )


def _storeConnected(proxy: Server) -> Deferred[None]:
    """
    @return: A Deferred that fires once C{proxy} has connected to its Redis
        (until then, a stream it reads is not resumable).
    """
    return until(
        lambda: re.search(r"resume store rediss?://\S+: connected", proxy.output) is not None,
        5,
        lambda: proxy.output,
    )


@onceAcrossRunners
class FleetTests(TestCase):
    """
    Two gateways and one Redis: a stream read by one is resumed on the
    other.
    """

    timeout = 60

    @inlineCallbacks
    def fleet(self, *options: str, upstream: str = "", window: str = "3", tokensPerSecond: str = "20") -> Any:
        """
        Start Redis, the mock LLM (unless C{upstream} is given) and two
        gateways that keep their resumable streams in that Redis.

        @return: The two gateways.
        """
        self.redis: RedisServer = yield startRedis(self)
        if not upstream:
            generator: Server = yield startTwistd(self, "chunkgen", "--tokens-per-second", tokensPerSecond)
            upstream = f"/v1/={generator.url}v1/"
        gateways = []
        for _ in range(2):
            proxy: Server = yield startTwistd(
                self, "chunkproxy", "--route", upstream, "--resumable", window,
                "--resume-store", self.redis.url, *options,
            )  # fmt: skip
            gateways.append(proxy)
        for proxy in gateways:
            # (Until then, a stream it reads is not resumable.)
            yield _storeConnected(proxy)
        return gateways

    @inlineCallbacks
    def test_cutThenResumedElsewhereJoinsExactly(self) -> Any:
        """
        A chat answer read by the first gateway, cut after some tokens,
        resumed on the second from the bytes the client had: joined,
        exactly the whole answer, as the second gateway serves it whole too
        (with the same event ids), and as the first still has it.
        """
        one, two = yield self.fleet()
        cut: Exchange = yield _chat(one, 40, cutAfter=600)
        self.assertFalse(cut.complete)
        [id] = cut.header(b"x-stream-id")
        had = cut.body
        rest: Exchange = yield fetch(two.url + f"_streams/{id.decode()}?from={len(had)}")
        self.assertEqual((rest.status, rest.complete), (200, True))
        self.assertEqual(rest.header(b"content-type"), [b"text/event-stream; charset=utf-8"])
        self.assertEqual(rest.header(b"x-stream-id"), [id])
        whole: Exchange = yield fetch(two.url + f"_streams/{id.decode()}")
        self.assertTrue(whole.complete)
        self.assertEqual(had + rest.body, whole.body)
        self.assertEqual(whole.body.count(b'"chat.completion.chunk"'), 42)
        self.assertTrue(whole.body.endswith(b"data: [DONE]\nid: " + id + b".43\n\n"), whole.body[-80:])
        local: Exchange = yield fetch(one.url + f"_streams/{id.decode()}")
        self.assertEqual(local.body, whole.body)
        # After event 20 (Last-Event-ID at /_streams/ID): the rest.
        after20: Exchange = yield fetch(
            two.url + f"_streams/{id.decode()}", headers=[(b"Last-Event-ID", id + b".20")]
        )
        marker = b"id: " + id + b".20\n\n"
        self.assertEqual(after20.body, whole.body[whole.body.index(marker) + len(marker) :])
        self.assertNotIn(id.decode(), two.output)

    @inlineCallbacks
    def test_eventSourceReconnectsElsewhere(self) -> Any:
        """
        A browser's C{EventSource} reconnecting to the URL it started with,
        with C{Last-Event-ID}, lands on the other gateway: it gets the events
        after that one, joining exactly; with an id no gateway knows, the
        request is forwarded as a new one.
        """
        generator: Server = yield startTwistd(self, "chunkgen")
        one, two = yield self.fleet(upstream=f"/g/={generator.url}")
        target = "g/generate?count=30&interval=0.05&format=sse"
        cut: Exchange = yield fetch(
            one.url + target,
            onPiece=lambda c: c.tcp.abortConnection() if c.exchange.body.count(b"\n\n") >= 8 else None,
        )
        self.assertEqual(cut.status, 200, cut.body)
        [id] = cut.header(b"x-stream-id")
        last = re.findall(rb"id: (\S+)\n\n", cut.body)[-1]
        self.assertTrue(last.startswith(id + b"."), last)
        rest: Exchange = yield fetch(two.url + target, headers=[(b"Last-Event-ID", last)])
        self.assertEqual((rest.status, rest.complete), (200, True), (last, rest.body))
        self.assertEqual(rest.header(b"x-stream-id"), [id])
        whole: Exchange = yield fetch(two.url + f"_streams/{id.decode()}")
        marker = b"id: " + last + b"\n\n"
        self.assertEqual(rest.body, whole.body[whole.body.index(marker) + len(marker) :])
        self.assertEqual(whole.body.count(b"data: "), 30)
        fresh: Exchange = yield fetch(
            two.url + target, headers=[(b"Last-Event-ID", b"AAAAAAAAAAAAAAAAAAAAAA.3")]
        )
        self.assertTrue(fresh.complete)
        self.assertEqual(fresh.body.count(b"data: "), 30)
        self.assertNotEqual(fresh.header(b"x-stream-id"), [id])

    @inlineCallbacks
    def test_followedLiveElsewhere(self) -> Any:
        """
        A second reader on the other gateway follows the stream live: it
        gets each piece as it is made (over more than a second), not at the
        end, and the same bytes as the first.
        """
        one, two = yield self.fleet(tokensPerSecond="10")
        ids: list[bytes] = []

        def noteId(client: StrictClient) -> None:
            ids.extend([] if ids else client.exchange.header(b"x-stream-id"))

        first = fetch(
            one.url + "v1/chat/completions", method=b"POST", body=passageChat(20),
            headers=[(b"Content-Type", b"application/json")], onPiece=noteId,
        )  # fmt: skip
        yield until(lambda: bool(ids), 5)
        second: Exchange = yield fetch(two.url + f"_streams/{ids[0].decode()}")
        firstSaw: Exchange = yield first
        self.assertEqual(firstSaw.body, second.body)
        self.assertTrue(firstSaw.complete and second.complete)
        arrivals = [at for at, _ in second.pieces]
        self.assertGreater(
            arrivals[-1] - arrivals[0], 1.0, "the second reader should get the pieces as they come"
        )

    @inlineCallbacks
    def test_readersElsewhereShareOneConnection(self) -> Any:
        """
        Twenty readers on the second gateway follow twenty streams live:
        Redis sees a handful of connections meanwhile, not one per reader,
        and each reader's bytes, joined to what its first client had, are
        its stream whole.
        """
        one, two = yield self.fleet(tokensPerSecond="10")
        cuts: list[Exchange] = yield gatherResults([_chat(one, 30, cutAfter=600) for _ in range(20)])
        ids = [cut.header(b"x-stream-id")[0].decode() for cut in cuts]
        follows = [fetch(two.url + f"_streams/{id}?from={len(cut.body)}") for id, cut in zip(ids, cuts, strict=True)]
        # (Each answer takes 3 s: they are all being followed now, and the
        # metrics, set once a second, say so.)
        yield deferLater(reactor, 1.0, lambda: None)
        clients: str = yield _redisCli(self.redis, "CLIENT", "LIST")
        scraped: Exchange = yield fetch(two.url + "metrics")
        self.assertEqual(samples(scraped.body.decode()).get(("chunkproxy_resume_live_readers", ())), 20)
        rests: list[Exchange] = yield gatherResults(follows)
        # Each gateway's shared connection, the second's live reads,
        # redis-cli's own: one per reader would be 20 more.
        self.assertLessEqual(len(clients.strip().splitlines()), 6, clients)
        for id, cut, rest in zip(ids, cuts, rests, strict=True):
            self.assertTrue(rest.complete, rest.body[-200:])
            whole: Exchange = yield fetch(two.url + f"_streams/{id}")
            self.assertEqual(cut.body + rest.body, whole.body)
            self.assertEqual(whole.body.count(b'"chat.completion.chunk"'), 32)

    @inlineCallbacks
    def test_readerComingWhileAReadWaitsIsServedAtOnce(self) -> Any:
        """
        A reader that comes while the second gateway's live read waits for
        another, silent, stream gets its own stream's pieces as they land
        (0.1 s apart), not once that read's wait (1 s) is over.
        """
        generator: Server = yield startTwistd(self, "chunkgen")
        one, two = yield self.fleet(upstream=f"/g/={generator.url}")

        def firstPiece(target: str) -> Deferred[Exchange]:
            return fetch(one.url + target, onPiece=lambda c: c.tcp.abortConnection())

        silent: Exchange = yield firstPiece("g/generate?count=2&interval=3")
        lively: Exchange = yield firstPiece("g/generate?count=30&interval=0.1")
        waiting = fetch(two.url + f"_streams/{silent.header(b'x-stream-id')[0].decode()}")
        yield deferLater(reactor, 0.3, lambda: None)
        follower: Exchange = yield fetch(two.url + f"_streams/{lively.header(b'x-stream-id')[0].decode()}")
        self.assertTrue(follower.complete)
        self.assertEqual(follower.body.count(b"\n"), 30, follower.body)
        arrivals = [at for at, _ in follower.pieces]
        gaps = [later - earlier for earlier, later in pairwise(arrivals)]
        self.assertLess(max(gaps), 0.5, gaps)
        yield waiting

    @inlineCallbacks
    def test_upstreamKeptWhileAReaderElsewhereFollows(self) -> Any:
        """
        The client on the first gateway leaves; a reader on the second
        follows: the upstream is not cancelled (the window is 1 s, the
        stream 4 s) and the reader gets all of it. A stream whose reader
        elsewhere leaves too is cancelled about the window after.
        """
        slow = SlowPieces()
        upstream = Upstream(self, slow)
        one, two = yield self.fleet(upstream=f"/s/={upstream.url}", window="1")
        cut: Exchange = yield fetch(one.url + "s/x", onPiece=lambda c: c.tcp.abortConnection())
        [id] = cut.header(b"x-stream-id")
        whole: Exchange = yield fetch(two.url + f"_streams/{id.decode()}")
        self.assertTrue(whole.complete)
        self.assertEqual(whole.body, b"".join(b"piece %d\n" % (n,) for n in range(1, 41)))
        self.assertFalse(slow.gone.called, "the upstream was cancelled while a reader followed elsewhere")

        slow2 = SlowPieces()
        upstream2 = Upstream(self, slow2)
        one, two = yield self.fleet(upstream=f"/s/={upstream2.url}", window="1")
        cut = yield fetch(one.url + "s/x", onPiece=lambda c: c.tcp.abortConnection())
        [id] = cut.header(b"x-stream-id")
        yield fetch(
            two.url + f"_streams/{id.decode()}",
            onPiece=lambda c: c.tcp.abortConnection() if b"piece 10\n" in c.exchange.body else None,
        )
        left = reactor.seconds()
        gone = yield slow2.gone
        self.assertLess(
            gone - left, 3.5, "the upstream should go about the window after the last reader left"
        )


@onceAcrossRunners
class FleetRefusalTests(TestCase):
    timeout = 60

    @inlineCallbacks
    def test_refusalsElsewhere(self) -> Any:
        """
        On the other gateway: an unknown id is a 404, a from beyond an
        ended stream a 416, a resume with another credential or none a
        401, each with its one-line reason; with the right one, the stream.
        """
        redis: RedisServer = yield startRedis(self)
        generator: Server = yield startTwistd(self, "chunkgen")
        gateways = []
        for _ in range(2):
            proxy: Server = yield startTwistd(
                self, "chunkproxy", "--route", f"/v1/={generator.url}v1/", "--resumable", "3",
                "--resume-store", redis.url, "--require-token", "env:TOKEN", env={"TOKEN": _TOKEN},
            )  # fmt: skip
            gateways.append(proxy)
        one, two = gateways
        auth = (b"Authorization", f"Bearer {_TOKEN}".encode())
        started: Exchange = yield _chat(one, 3, headers=[auth])
        [id] = started.header(b"x-stream-id")
        url = two.url + f"_streams/{id.decode()}"
        for path, headers, status, reason in (
            ("_streams/AAAAAAAAAAAAAAAAAAAAAA", [auth], 404,
             b"no stream with that id: it is unknown, has expired, or outgrew what is kept\n"),
            ("_streams/%7Bx%7D:head", [auth], 404,
             b"no stream with that id: it is unknown, has expired, or outgrew what is kept\n"),
            ("_streams/" + "A" * 4000, [auth], 404,
             b"no stream with that id: it is unknown, has expired, or outgrew what is kept\n"),
            (f"_streams/{id.decode()}", [], 401, b"this stream was started with another credential\n"),
            (f"_streams/{id.decode()}", [(b"Authorization", b"Bearer someone-else")], 401,
             b"this stream was started with another credential\n"),
            (f"_streams/{id.decode()}?from=99999", [auth], 416,
             b"from=99999 is beyond the %d bytes the stream has so far\n" % (len(started.body),)),
            (f"_streams/{id.decode()}?from=x", [auth], 400, b"from must be a whole number of bytes, not 'x'\n"),
        ):  # fmt: skip
            refused: Exchange = yield fetch(two.url + path, headers=headers)
            self.assertEqual((refused.status, refused.body), (status, reason), path)
        allowed: Exchange = yield fetch(url, headers=[auth])
        self.assertEqual((allowed.status, allowed.body), (200, started.body))


    @inlineCallbacks
    def test_unreadableStreams(self) -> Any:
        """
        What Redis holds under a stream's keys is not what an instance
        writes (changed by hand, another program's keys): a resume of it is
        a C{502} with its reason, at once, not a hang or a traceback.
        """
        redis: RedisServer = yield startRedis(self)
        proxy: Server = yield startTwistd(
            self, "chunkproxy", "--route", f"/s/={Upstream(self, SlowPieces()).url}", "--resumable", "3",
            "--resume-store", redis.url,
        )  # fmt: skip
        yield _storeConnected(proxy)
        badStatus, badEntry = "A" * 21 + "B", "A" * 21 + "C"
        yield _redisCli(redis, "HSET", f"chunkproxy:stream:{{{badStatus}}}:head", "status", "two hundred")
        yield _redisCli(redis, "HSET", f"chunkproxy:stream:{{{badEntry}}}:head", "status", "200")
        yield _redisCli(redis, "XADD", f"chunkproxy:stream:{{{badEntry}}}", "*", "o", "zero", "d", "x")
        for id in (badStatus, badEntry):
            resume: Exchange = yield fetch(proxy.url + f"_streams/{id}")
            self.assertEqual(
                (resume.status, resume.body),
                (502, b"the resume store holds this stream in a form that cannot be read\n"),
                id,
            )
        self.assertIn(f"stream {badStatus[:6]}... cannot be read", proxy.output)
        self.assertIn("its resumes are answered 502", proxy.output)
        self.assertNotIn("Traceback", proxy.output)
        self.assertNotIn("Unhandled error", proxy.output)


@onceAcrossRunners
class WorkersTests(TestCase):
    """
    C{--workers 2} with Redis: the workers share one listening socket, so a
    resume lands on either, whichever read the upstream.
    """

    timeout = 60

    @inlineCallbacks
    def test_resumedOnEitherWorker(self) -> Any:
        """
        A chat answer cut after some tokens, resumed eight times on new
        connections (each accepted by either worker): every resume joins
        the bytes the client had into exactly the whole answer. (With the
        memory store, each resume that lands on the other worker is a
        404.)
        """
        redis: RedisServer = yield startRedis(self)
        generator: Server = yield startTwistd(self, "chunkgen", "--tokens-per-second", "40")
        proxy: Server = yield startTwistd(
            self, "chunkproxy", "--route", f"/v1/={generator.url}v1/", "--resumable", "3",
            "--resume-store", redis.url, "--workers", "2",
        )  # fmt: skip
        yield until(
            lambda: len(re.findall(r"resume store redis://\S+: connected", proxy.output)) >= 2, 10, lambda: proxy.output
        )
        cut: Exchange = yield _chat(proxy, 40, cutAfter=600)
        self.assertFalse(cut.complete)
        [id] = cut.header(b"x-stream-id")
        resumed = []
        for _ in range(8):
            rest: Exchange = yield fetch(proxy.url + f"_streams/{id.decode()}?from={len(cut.body)}")
            resumed.append((rest.status, rest.complete, cut.body + rest.body))
        self.assertEqual({(status, complete) for status, complete, _ in resumed}, {(200, True)})
        self.assertEqual(len({whole for _, _, whole in resumed}), 1)
        whole = resumed[0][2]
        self.assertEqual(whole.count(b'"chat.completion.chunk"'), 42)
        self.assertTrue(whole.endswith(b"data: [DONE]\nid: " + id + b".43\n\n"), whole[-80:])


def _redisCli(redis: RedisServer, *command: str) -> Deferred[str]:
    """
    Run one command with C{redis-cli}.

    @return: What it printed.
    """
    cli = shutil.which("redis-cli")
    if cli is None:
        raise SkipTest("redis-cli is not installed (Debian's redis-tools, with redis-server)")
    asked = LineProcess.spawn(cli, "-p", str(redis.port), "--no-auth-warning", *command)
    return asked.exitCode.addCallback(lambda _: asked.text)


def _streamEvents(proxy: Server) -> list[dict[str, Any]]:
    """
    @return: The stream events a gateway started with C{--log-format json}
        has logged so far.
    """
    events = []
    for line in proxy.output.splitlines():
        if line.startswith("{"):
            event = json.loads(line)
            if event.get("namespace") == "chunkproxy.stream":
                events.append(event)
    return events


@onceAcrossRunners
class StoreFailureTests(TestCase):
    """
    Redis killed, or stopped, mid-stream: the stream goes on at its pace
    and completes; it is no longer resumable, and the gateway says so.
    """

    timeout = 60

    @inlineCallbacks
    def gatewayAndStream(self, fail: Any) -> Any:
        """
        One gateway with Redis behind it; a 4 s stream (a piece every
        0.1 s); C{fail(redis)} once its client has 5 pieces.

        @return: The gateway, Redis, the stream's exchange.
        """
        redis: RedisServer = yield startRedis(self)
        self.addCleanup(
            lambda: os.kill(redis.process.pid, signal.SIGCONT) if not redis.process.exitCode.called else None
        )
        slow = SlowPieces()
        upstream = Upstream(self, slow)
        proxy: Server = yield startTwistd(
            self, "chunkproxy", "--route", f"/s/={upstream.url}", "--resumable", "3",
            "--resume-store", redis.url, "--log-format", "json",
        )  # fmt: skip
        yield _storeConnected(proxy)
        failed: list[bool] = []

        def failAfterFive(client: StrictClient) -> None:
            if not failed and client.exchange.body.count(b"\n") >= 5:
                failed.append(True)
                fail(redis)

        exchange: Exchange = yield fetch(proxy.url + "s/x", onPiece=failAfterFive)
        return proxy, redis, exchange

    def assertWholeAtPace(self, exchange: Exchange) -> None:
        self.assertTrue(exchange.complete)
        self.assertEqual(exchange.body, b"".join(b"piece %d\n" % (n,) for n in range(1, 41)))
        arrivals = [at for at, _ in exchange.pieces]
        gaps = [later - earlier for earlier, later in zip(arrivals, arrivals[1:], strict=False)]
        self.assertLess(max(gaps), 0.5, "a piece waited for Redis")

    @inlineCallbacks
    def test_killed(self) -> Any:
        """
        Redis killed after 5 pieces: the client gets the whole stream at its
        pace; its event says C{resumable_lost: store unreachable}; the
        gateway says once that Redis is gone; a resume is a C{503} with its
        reason; a stream started while Redis is down is not resumable (no
        C{X-Stream-Id}) and complete.
        """
        proxy, redis, exchange = yield self.gatewayAndStream(lambda redis: redis.kill())
        self.assertWholeAtPace(exchange)
        [id] = exchange.header(b"x-stream-id")
        yield until(lambda: len(_streamEvents(proxy)) == 1, 5, lambda: proxy.output)
        [event] = _streamEvents(proxy)
        self.assertEqual((event["outcome"], event["resumable_lost"]), ("complete", "store unreachable"))
        resume: Exchange = yield fetch(proxy.url + f"_streams/{id.decode()}")
        self.assertEqual((resume.status, resume.body), (503, b"the resume store is unreachable\n"))
        later: Exchange = yield fetch(proxy.url + "s/y")
        self.assertTrue(later.complete)
        self.assertEqual(later.header(b"x-stream-id"), [], proxy.output)
        # The metrics say it too (the store's state is set once a second).
        found: dict[Any, float] = {}
        for _ in range(15):
            scraped: Exchange = yield fetch(proxy.url + "metrics")
            found = samples(scraped.body.decode())
            if found.get(("chunkproxy_resume_store_up", ())) == 0:
                break
            yield deferLater(reactor, 0.2, lambda: None)
        self.assertEqual(found.get(("chunkproxy_resume_store_up", ())), 0)
        lost = ("chunkproxy_resumable_lost_total", (("route", "/s/"), ("why", "store unreachable")))
        unavailable = ("chunkproxy_resumable_lost_total", (("route", "/s/"), ("why", "store unavailable")))
        self.assertEqual((found[lost], found[unavailable]), (1, 1))
        self.assertEqual(proxy.output.count("resumable routes stream without resumability"), 1, proxy.output)
        self.assertNotIn("Traceback", proxy.output)

    @inlineCallbacks
    def test_scriptFlushed(self) -> Any:
        """
        The turn's script is sent once per connection and called by its
        SHA1 (Redis counts C{EVALSHA} calls, no C{EVAL}). Redis told to
        forget it (C{SCRIPT FLUSH}) after 5 pieces: the stream goes on at
        its pace and is no longer resumable, as for any failure; the script
        is sent again, and the next stream is kept in Redis.
        """
        ask = _redisCli
        proxy, redis, exchange = yield self.gatewayAndStream(lambda redis: ask(redis, "SCRIPT", "FLUSH"))
        self.assertWholeAtPace(exchange)
        yield until(lambda: len(_streamEvents(proxy)) == 1, 5, lambda: proxy.output)
        [event] = _streamEvents(proxy)
        self.assertEqual((event["outcome"], event["resumable_lost"]), ("complete", "store unreachable"))
        self.assertIn("NOSCRIPT", proxy.output)
        later: Exchange = yield fetch(proxy.url + "s/y")
        [id] = later.header(b"x-stream-id")
        self.assertTrue(later.complete)
        entries = yield ask(redis, "XLEN", "chunkproxy:stream:{" + id.decode() + "}")
        self.assertGreater(int(entries), 1, "the next stream is in Redis")
        stats = yield ask(redis, "INFO", "commandstats")
        self.assertIn("cmdstat_evalsha:", stats)
        self.assertNotIn("cmdstat_eval:", stats)
        self.assertNotIn("Traceback", proxy.output)

    @inlineCallbacks
    def test_stopped(self) -> Any:
        """
        Redis stopped (SIGSTOP: it takes the connection's bytes and never
        answers) after 5 pieces: no piece waits for it; after its reply
        timeout the stream is no longer resumable, and says so.
        """
        proxy, redis, exchange = yield self.gatewayAndStream(
            lambda redis: os.kill(redis.process.pid, signal.SIGSTOP)
        )
        self.assertWholeAtPace(exchange)
        yield until(lambda: len(_streamEvents(proxy)) == 1, 5, lambda: proxy.output)
        [event] = _streamEvents(proxy)
        self.assertEqual((event["outcome"], event["resumable_lost"]), ("complete", "store unreachable"))
        self.assertEqual(proxy.output.count("resumable routes stream without resumability"), 1, proxy.output)


@onceAcrossRunners
class StoreDownAtStartTests(TestCase):
    timeout = 30

    @inlineCallbacks
    def test_nothingListening(self) -> Any:
        """
        A gateway whose Redis is not there streams as on any route (no
        stream id), says so once, and answers a resume C{503}.
        """
        proxy: Server = yield _withoutItsStore(self, f"redis://127.0.0.1:{freePort()}/0")
        # An id that cannot be one of ours is unknown without asking Redis.
        notAnId: Exchange = yield fetch(proxy.url + "_streams/%7Bx%7D:head")
        self.assertEqual(notAnId.status, 404)
        self.assertEqual(proxy.output.count("resumable routes stream without resumability"), 1, proxy.output)
        self.assertNotIn("Traceback", proxy.output)


@onceAcrossRunners
class BoundsTests(TestCase):
    timeout = 60

    @inlineCallbacks
    def test_tooLargeForgottenInRedisToo(self) -> Any:
        """
        A stream larger than --resume-max-bytes: its client gets it whole;
        the other gateway answers its resume C{404}, and a reader that
        followed it there gets a truncated end.
        """
        redis: RedisServer = yield startRedis(self)
        generator: Server = yield startTwistd(self, "chunkgen", "--tokens-per-second", "40")
        gateways = []
        for _ in range(2):
            proxy: Server = yield startTwistd(
                self, "chunkproxy", "--route", f"/v1/={generator.url}v1/", "--resumable", "3",
                "--resume-store", redis.url, "--resume-max-bytes", "3000",
            )  # fmt: skip
            yield _storeConnected(proxy)
            gateways.append(proxy)
        one, two = gateways
        ids: list[bytes] = []

        def noteId(client: StrictClient) -> None:
            ids.extend([] if ids else client.exchange.header(b"x-stream-id"))

        first = fetch(
            one.url + "v1/chat/completions", method=b"POST", body=passageChat(40),
            headers=[(b"Content-Type", b"application/json")], onPiece=noteId,
        )  # fmt: skip
        yield until(lambda: bool(ids), 5)
        follower: Exchange = yield fetch(two.url + f"_streams/{ids[0].decode()}")
        answer: Exchange = yield first
        self.assertTrue(answer.complete)
        self.assertEqual(answer.body.count(b'"chat.completion.chunk"'), 42)
        self.assertFalse(follower.complete, "a reader of a stream no longer kept ends truncated")
        self.assertTrue(answer.body.startswith(follower.body))
        self.assertLessEqual(len(follower.body), 3000)
        gone: Exchange = yield fetch(two.url + f"_streams/{ids[0].decode()}")
        self.assertEqual(gone.status, 404)


@onceAcrossRunners
class PasswordTests(TestCase):
    """
    A Redis that asks for a password (C{--requirepass}), given in the
    environment (C{--resume-store env:VARNAME}), never on the command line
    or in a log line.
    """

    timeout = 60

    @inlineCallbacks
    def test_resumedElsewhere(self) -> Any:
        """
        Both gateways authenticate (their shared connections and the
        blocking one a reader elsewhere opens): a stream cut on one is
        resumed on the other, exactly; the password is in no output.
        """
        redis: RedisServer = yield startRedis(self, "--requirepass", "pa55-for-redis")
        generator: Server = yield startTwistd(self, "chunkgen", "--tokens-per-second", "40")
        gateways = yield _twoGateways(self, generator, f"redis://:pa55-for-redis@127.0.0.1:{redis.port}/2")
        cut, rest = yield _cutThenResumed(*gateways)
        self.assertEqual((rest.status, rest.complete), (200, True))
        self.assertEqual((cut.body + rest.body).count(b'"chat.completion.chunk"'), 42)
        for proxy in gateways:
            self.assertNotIn("pa55-for-redis", proxy.output)

    @inlineCallbacks
    def test_wrongPassword(self) -> Any:
        """
        A wrong password: the gateway streams as on any route (no stream
        id), answers a resume C{503}, and says why without the password or
        a traceback; it goes on trying, and connects once Redis takes the
        password. (ClientService's prepareConnection left a traceback and
        a service that never tried again.)
        """
        redis: RedisServer = yield startRedis(self, "--requirepass", "the-right-one")
        upstream = Upstream(self, SlowPieces())
        proxy: Server = yield startTwistd(
            self, "chunkproxy", "--route", f"/s/={upstream.url}", "--resumable", "3",
            "--resume-store", "env:STORE", env={"STORE": f"redis://:not-the-pass@127.0.0.1:{redis.port}/0"},
        )  # fmt: skip
        yield until(lambda: "redis:" in proxy.output, 5, lambda: proxy.output)
        exchange: Exchange = yield fetch(proxy.url + "s/x")
        self.assertTrue(exchange.complete)
        self.assertEqual(exchange.header(b"x-stream-id"), [])
        resume: Exchange = yield fetch(proxy.url + "_streams/AAAAAAAAAAAAAAAAAAAAAA")
        self.assertEqual((resume.status, resume.body), (503, b"the resume store is unreachable\n"))
        # Redis told to take that password: the gateway, which went on
        # trying, connects, and its streams are resumable again.
        yield _redisCli(redis, "-a", "the-right-one", "CONFIG", "SET", "requirepass", "not-the-pass")
        yield until(lambda: "resume store redis://" in proxy.output and ": connected" in proxy.output, 10, lambda: proxy.output)
        later: Exchange = yield fetch(proxy.url + "s/x")
        self.assertEqual(len(later.header(b"x-stream-id")), 1)
        self.assertNotIn("not-the-pass", proxy.output)
        self.assertNotIn("Traceback", proxy.output)


@inlineCallbacks
def _withoutItsStore(case: TestCase, store: str) -> Any:
    """
    Start a gateway whose resumable route streams from a slow upstream,
    keeping its streams at C{store}, which it cannot use: check that a
    stream through it goes whole with no stream id, and that a resume is
    answered C{503} with the reason.

    @return: A Deferred that fires with the gateway.
    """
    upstream = Upstream(case, SlowPieces())
    proxy: Server = yield startTwistd(
        case, "chunkproxy", "--route", f"/s/={upstream.url}", "--resumable", "3", "--resume-store", store
    )
    streamed: Exchange = yield fetch(proxy.url + "s/x")
    case.assertTrue(streamed.complete)
    case.assertEqual(streamed.header(b"x-stream-id"), [])
    resume: Exchange = yield fetch(proxy.url + "_streams/AAAAAAAAAAAAAAAAAAAAAA")
    case.assertEqual((resume.status, resume.body), (503, b"the resume store is unreachable\n"))
    return proxy


@inlineCallbacks
def _twoGateways(case: TestCase, generator: Server, store: str) -> Any:
    """
    Start two gateways whose route C{/v1/} is C{generator}'s, resumable,
    keeping their streams at C{store} (given in the environment, as a URL
    with a password is).

    @return: A Deferred that fires with both, once both are connected.
    """
    gateways = []
    for _ in range(2):
        proxy: Server = yield startTwistd(
            case, "chunkproxy", "--route", f"/v1/={generator.url}v1/", "--resumable", "3",
            "--resume-store", "env:STORE", env={"STORE": store},
        )  # fmt: skip
        yield _storeConnected(proxy)
        gateways.append(proxy)
    return gateways


@inlineCallbacks
def _cutThenResumed(one: Server, two: Server) -> Any:
    """
    A chat answer of 40 tokens cut on C{one} after 600 bytes, then resumed
    on C{two} from there.

    @return: A Deferred that fires with both exchanges.
    """
    cut: Exchange = yield _chat(one, 40, cutAfter=600)
    [id] = cut.header(b"x-stream-id")
    rest: Exchange = yield fetch(two.url + f"_streams/{id.decode()}?from={len(cut.body)}")
    return cut, rest


@onceAcrossRunners
class RedisOverTLSTests(TestCase):
    """
    A Redis that speaks TLS only, as managed services do (C{rediss://}),
    with its certificate from a CA of the test's.
    """

    timeout = 60

    @inlineCallbacks
    def test_resumedElsewhereAsAnACLUser(self) -> Any:
        """
        Two gateways reach it over TLS, trusting the CA that C{ssl_ca_certs}
        names, as an ACL user (Redis's C{default} user is off): a stream cut
        on one is resumed on the other, exactly, and followed live there,
        though the user may not run C{CLIENT}; the password is in no output.
        """
        ca, certificate, key = makeCertificates(self.mktemp(), "redis")
        redis: RedisServer = yield startRedis(
            # The least a user needs, as docs/gateway.md lists it, with
            # CLIENT denied (as managed services' ACLs may): the live reads
            # do without.
            self, "--user", "default", "off", "--user", "gateway", "on", ">pa55-acl", "~chunkproxy:stream:*",
            "+select", "+evalsha", "+script|load", "+xadd", "+hset", "+pexpire", "+xrange", "+xread", "+hgetall",
            "+exists", "+set", "+del",
            tls=(certificate, key),
        )  # fmt: skip
        generator: Server = yield startTwistd(self, "chunkgen", "--tokens-per-second", "20")
        gateways = yield _twoGateways(
            self, generator, f"rediss://gateway:pa55-acl@127.0.0.1:{redis.port}/0?ssl_ca_certs={ca}"
        )
        for proxy in gateways:
            self.assertIn(f"resume store rediss://127.0.0.1:{redis.port}/0: connected", proxy.output)
        cut, rest = yield _cutThenResumed(*gateways)
        self.assertEqual((rest.status, rest.complete), (200, True))
        whole: Exchange = yield fetch(gateways[1].url + f"_streams/{cut.header(b'x-stream-id')[0].decode()}")
        self.assertEqual(cut.body + rest.body, whole.body)
        self.assertEqual(whole.body.count(b'"chat.completion.chunk"'), 42)
        for proxy in gateways:
            self.assertNotIn("pa55-acl", proxy.output)
            self.assertNotIn("Traceback", proxy.output)

    @inlineCallbacks
    def test_certificateNotTrusted(self) -> Any:
        """
        A gateway that trusts another CA never talks to that Redis: it
        streams without resumability (no stream id), answers a resume
        C{503} with its reason, says why in one line, and shows no
        traceback.
        """
        _, certificate, key = makeCertificates(self.mktemp(), "redis")
        otherCA, _, _ = makeCertificates(self.mktemp(), "other")
        redis: RedisServer = yield startRedis(self, tls=(certificate, key))
        proxy: Server = yield _withoutItsStore(self, f"rediss://127.0.0.1:{redis.port}/0?ssl_ca_certs={otherCA}")
        yield until(lambda: "certificate verify failed" in proxy.output, 10, lambda: proxy.output)
        self.assertIn("redis: TLS failed: certificate verify failed", proxy.output)
        self.assertNotRegex(proxy.output, r"resume store rediss://\S+: connected")
        # Tried again with a growing delay, said once a minute: not four
        # lines a second for as long as it lasts.
        triedBefore = proxy.output.count("Scheduling retry")
        yield deferLater(reactor, 4.0, lambda: None)
        self.assertEqual(proxy.output.count("certificate verify failed"), 1, proxy.output)
        self.assertLessEqual(proxy.output.count("Scheduling retry") - triedBefore, 3, proxy.output)
        self.assertNotIn("Starting factory <twisted_stream.resume", proxy.output)
        self.assertNotIn("Traceback", proxy.output)


class RedisURLTests(SynchronousTestCase):
    def test_parsed(self) -> None:
        """
        C{redis://HOST:PORT/DB}, with 6379 and 0 when not said, IPv6 in
        brackets, a password before the host.
        """
        for text, (host, port, db, password) in (
            ("redis://127.0.0.1:6380/2", ("127.0.0.1", 6380, 2, None)),
            ("redis://127.0.0.1", ("127.0.0.1", 6379, 0, None)),
            ("redis://[::1]:7000/", ("::1", 7000, 0, None)),
            ("redis://:s%40cret@127.0.0.1/1", ("127.0.0.1", 6379, 1, "s@cret")),
        ):
            address = parseRedisURL(text)
            self.assertEqual(
                (address.host, address.port, address.db, address.password), (host, port, db, password)
            )
        self.assertEqual(str(parseRedisURL("redis://[::1]:7000/3")), "redis://[::1]:7000/3")

    def test_parsedOverTLS(self) -> None:
        """
        C{rediss://} is TLS, trusting the platform's CAs, or the PEM file's
        of C{ssl_ca_certs}; a user before the password is an ACL user.
        """
        plain = parseRedisURL("redis://alice:pw@127.0.0.1/1")
        self.assertEqual((plain.tls, plain.username, plain.password, plain.trust), (False, "alice", "pw", None))
        platform = parseRedisURL("rediss://cache.example:6380/2")
        self.assertEqual((platform.tls, platform.port, platform.trust), (True, 6380, None))
        self.assertEqual(str(platform), "rediss://cache.example:6380/2")
        ca, _, _ = makeCertificates(self.mktemp())
        private = parseRedisURL(f"rediss://bob:p%40ss@127.0.0.1/0?ssl_ca_certs={ca}")
        self.assertEqual((private.tls, private.username, private.password), (True, "bob", "p@ss"))
        self.assertIsNotNone(private.trust)

    def test_refused(self) -> None:
        """
        Anything else is refused with a one-line reason.
        """
        for text, reason in (
            ("http://127.0.0.1/", "'http://127.0.0.1/' is not a redis://HOST:PORT/DB or rediss:// URL"),
            ("redis://127.0.0.1:99999/0", "'redis://127.0.0.1:99999/0' is not a redis:// URL"),
            ("redis://127.0.0.1/x", "'redis://127.0.0.1/x': the database must be a number, not 'x'"),
            ("redis:///0", "'redis:///0' is not a redis://HOST:PORT/DB or rediss:// URL"),
            ("redis://h/0?ssl_ca_certs=/ca.pem", "takes no query or fragment but rediss://...?ssl_ca_certs=PATH"),
            ("rediss://h/0?db=1", "takes no query or fragment but rediss://...?ssl_ca_certs=PATH"),
            ("rediss://h/0#x", "takes no query or fragment but rediss://...?ssl_ca_certs=PATH"),
            ("rediss://:s3cr@h/0?ssl_ca_certs=/no/such.pem", "'rediss://:***@h/0?ssl_ca_certs=/no/such.pem': cannot read"
             " ssl_ca_certs '/no/such.pem': No such file or directory"),
            ("rediss://h/0?ssl_ca_certs=" + __file__, "holds no PEM certificate"),
            # The password is never shown.
            ("redis://:s3cr%40t@127.0.0.1/x", "'redis://:***@127.0.0.1/x': the database must be a number"),
            ("redis://user:s3cr@t@127.0.0.1:99999/0", "'redis://user:***@127.0.0.1:99999/0' is not a redis:// URL"),
        ):
            with self.assertRaises(ValueError) as caught:
                parseRedisURL(text)
            self.assertIn(reason, str(caught.exception))
            self.assertNotIn("s3cr", str(caught.exception))

    def test_option(self) -> None:
        """
        C{--resume-store} takes C{memory} or a Redis URL; anything else is a
        usage error naming the option.
        """
        from twisted.python.usage import UsageError

        from twisted_stream.tap.chunkproxy import Options

        memory = Options()
        memory.parseOptions(["--resume-store", "memory"])
        self.assertIsNone(memory["resume-store"])
        options = Options()
        options.parseOptions(["--resume-store", "redis://127.0.0.1:6390/1"])
        self.assertEqual(str(options["resume-store"]), "redis://127.0.0.1:6390/1")
        with self.assertRaises(UsageError) as caught:
            Options().parseOptions(["--resume-store", "redis.example:6379"])
        self.assertIn("--resume-store", str(caught.exception))
        # From the environment, so that a password is never on the command
        # line (nor in what ps shows).
        self.patch(os, "environ", {**os.environ, "STORE_URL": "redis://:s3cret@127.0.0.1:6390/2"})
        fromEnvironment = Options()
        fromEnvironment.parseOptions(["--resume-store", "env:STORE_URL"])
        address = fromEnvironment["resume-store"]
        self.assertEqual((str(address), address.password), ("redis://127.0.0.1:6390/2", "s3cret"))
        with self.assertRaises(UsageError) as caught:
            Options().parseOptions(["--resume-store", "env:NO_SUCH_VARIABLE_HERE"])
        self.assertIn("names the environment variable NO_SUCH_VARIABLE_HERE, which is not set", str(caught.exception))


class _FakeLink:
    """
    A link to Redis that notes each command and answers when told.
    """

    def __init__(self) -> None:
        self.up = True
        self.address = parseRedisURL("redis://127.0.0.1:1/0")
        self.sent: list[tuple[Any, ...]] = []
        self.answers: list[Deferred[Any]] = []
        self.loaded: list[bytes] = []

    def start(self) -> None:
        pass

    def load(self, script: bytes) -> None:
        self.loaded.append(script)

    def evaluate(self, script: bytes, *args: Any) -> Deferred[Any]:
        return self.command("evaluate", script, *args)

    def command(self, *args: Any) -> Deferred[Any]:
        self.sent.append(args)
        answer: Deferred[Any] = Deferred()
        self.answers.append(answer)
        return answer

    def answerAll(self, value: Any = b"OK") -> None:
        answers, self.answers = self.answers, []
        for answer in answers:
            if not answer.called:
                answer.callback(value)


class MirrorTests(SynchronousTestCase):
    """
    What a stream's copy sends to Redis, on a fake clock and a fake link:
    the pieces of one turn as one entry, never waited for; a failure ends
    its resumability.
    """

    def setUp(self) -> None:
        from twisted.internet.task import Clock

        from twisted_stream.resume._resumable import ResumeStore
        from twisted_stream.resume._sharedstreams import SharedStreams

        self.clock = Clock()
        self.link = _FakeLink()
        self.shared = SharedStreams(cast(Any, self.link), self.clock, maxBacklog=1000, flushEvery=0.005)
        self.store = ResumeStore(self.clock, shared=self.shared)
        self.shared.start()

    def open(self) -> Any:
        stream = self.store.open(5, None, 200, [(b"content-type", b"text/plain")], b"/s/x")
        assert stream is not None
        return stream

    def commands(self) -> list[tuple[Any, ...]]:
        """
        @return: The commands sent since the last call, each answered.
        """
        sent, self.link.sent = self.link.sent, []
        self.link.answerAll()
        return sent

    def batches(self) -> list[list[list[bytes]]]:
        """
        @return: Each command sent since the last call (the script
            L{_TURN}, loaded first), as its streams: each its key, what it
            has, and the fields.
        """
        batches = []
        self.assertEqual(self.link.loaded, [_TURN])
        for command in self.commands():
            self.assertEqual(command[:3], ("evaluate", _TURN, b"0"))
            batch, maxEntries = command[3:]
            self.assertEqual(maxEntries, b"100000")
            fields = []
            while batch:
                size, _, rest = batch.partition(b":")
                fields.append(rest[: int(size)])
                batch = rest[int(size) :]
            streams = []
            while fields:
                key, what = fields.pop(0), fields.pop(0)
                size = {ord("h"): 5, ord("p"): 2, ord("e"): 3, ord("x"): 1, ord("t"): 1}
                count = sum(size[letter] for letter in what)
                streams.append([key, what, *fields[:count]])
                del fields[:count]
            batches.append(streams)
        return batches

    def test_piecesTogetherAsOneEntry(self) -> None:
        """
        The head, then the pieces appended within C{flushEvery} as one
        entry with their offset, sent together in one command after it;
        the next pieces as the next entry; the end with its expiry.
        """
        stream = self.open()
        body = b"chunkproxy:stream:{" + stream.id.encode() + b"}"
        for piece in (b"ab", b"c", b"de"):
            stream.append(piece)
        self.clock.advance(0.004)
        self.assertEqual(self.link.sent, [], "nothing is sent before flushEvery")
        self.clock.advance(0.002)
        head = [b"200", b"content-type: text/plain\r\n", b"/s/x", b"", b"5"]
        self.assertEqual(self.batches(), [[[body, b"hpt", *head, b"0", b"abcde", b"15000"]]])
        stream.append(b"fg")
        self.clock.advance(0.01)
        self.assertEqual(self.batches(), [[[body, b"p", b"5", b"fg"]]])
        stream.finish("complete")
        self.clock.advance(0.01)
        self.assertEqual(self.batches(), [[[body, b"xt", b"complete", b"5000"]]])

    def test_allStreamsInOneCommand(self) -> None:
        """
        Two streams that each got a piece: one command; the refresh of live
        streams' expiries rides on one too.
        """
        one, two = self.open(), self.open()
        self.clock.advance(0.01)
        self.commands()
        one.append(b"1")
        two.append(b"2")
        self.clock.advance(0.01)
        [batch] = self.batches()
        self.assertEqual([stream[1:] for stream in batch], [[b"p", b"0", b"1"], [b"p", b"0", b"2"]])
        self.clock.advance(5)
        self.clock.advance(0.01)
        [batch] = self.batches()
        self.assertEqual([stream[1:] for stream in batch], [[b"t", b"15000"], [b"t", b"15000"]])

    def test_eventEndsBesideTheirPiece(self) -> None:
        """
        Where each numbered event ends goes with the piece it ended in, so
        that another instance finds C{Last-Event-ID}'s offset.
        """
        from twisted_stream.resume._eventids import EventIds

        stream = self.open()
        stream.events = EventIds(stream.id, stream.append)
        stream.events(b"data: one\n\ndata: tw")
        self.clock.advance(0.01)
        [[fields]] = self.batches()
        id = stream.id.encode()
        self.assertEqual(fields[1], b"het")
        self.assertEqual(
            fields[8:10], [b"data: one\nid: " + id + b".1\n\ndata: tw", b"1:%d" % (len(id) + 18,)]
        )
        stream.events(b"o\n\n")
        self.clock.advance(0.01)
        [[fields]] = self.batches()
        self.assertEqual(fields[1:3], [b"e", b"%d" % (stream.end - 3 - len(id) - 7,)])
        self.assertEqual(fields[4], b"2:%d" % (stream.end,))

    def test_aFailureEndsResumability(self) -> None:
        """
        A command that fails (the connection lost): the stream is no longer
        resumable (forgotten here, C{lost} says why), and nothing more is
        sent for it; said once a minute at most.
        """
        stream = self.open()
        lost: list[str] = []
        stream.whenLost = lost.append
        stream.append(b"x")
        self.clock.advance(0.01)
        self.link.answers[0].errback(ConnectionError("Lost connection"))
        self.assertEqual((stream.lost, lost), ("store unreachable", ["store unreachable"]))
        self.assertIsNone(self.store.get(stream.id))
        self.commands()
        stream.append(b"y")
        self.clock.advance(0.01)
        self.assertEqual(self.commands(), [])
        self.flushLoggedErrors()

    def test_notConnectedNotResumable(self) -> None:
        """
        While the link is not up, a new stream is not resumable (the store
        gives none), and nothing waits.
        """
        self.link.up = False
        self.assertIsNone(self.store.open(5, None, 200, []))
        self.assertEqual(self.link.sent, [])

    def test_behindNotResumable(self) -> None:
        """
        More than C{maxBacklog} bytes sent and not answered: Redis is too
        slow; the stream is no longer resumable, and new ones are not
        until it has answered.
        """
        stream = self.open()
        stream.append(b"x" * 1500)
        self.clock.advance(0.01)
        stream.append(b"y")
        self.clock.advance(0.01)
        self.assertEqual(stream.lost, "store unreachable")
        self.assertIsNone(self.store.open(5, None, 200, []))
        self.link.answerAll()
        self.assertIsNotNone(self.store.open(5, None, 200, []))

    def test_keptWhileAReaderElsewhereFollows(self) -> None:
        """
        With no reader here for the window, the stream asks Redis whether
        one elsewhere follows it: while one does, it keeps its upstream;
        once none does, it gives it up.
        """
        stream = self.open()
        given: list[bool] = []
        stream.abandoned = lambda: given.append(True)
        stream.detach(None)
        self.clock.advance(5)
        readers = b"chunkproxy:stream:{" + stream.id.encode() + b"}:readers"

        def answerExists(count: int) -> None:
            asked = [n for n, command in enumerate(self.link.sent) if command == ("EXISTS", readers)]
            self.assertEqual(len(asked), 1)
            self.link.answers[asked[0]].callback(count)
            self.link.sent, self.link.answers = [], []

        answerExists(1)
        self.assertEqual(given, [])
        self.clock.advance(5)
        answerExists(0)
        self.assertEqual(given, [True])
