"""
Tests for L{twisted_stream.resume._resumable}: resumable streams kept in
the gateway's memory, on real processes (C{chunkgen}'s mock LLM, or an
upstream in the test, behind a real C{chunkproxy --resumable}), and the
store's bounds on a fake clock.
"""

from __future__ import annotations

import os
import re
import sys
from typing import Any, Optional, cast

from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.internet.interfaces import ITCPTransport
from twisted.internet.task import Clock
from twisted.protocols import portforward
from twisted.trial.unittest import SynchronousTestCase, TestCase
from twisted.web.resource import Resource

from tests.support import (
    PEERS,
    Exchange,
    LineProcess,
    Server,
    SlowPieces,
    StrictClient,
    Upstream,
    fetch,
    onceAcrossRunners,
    passageChat,
    portOf,
    reactor,
    samples,
    startTwistd,
    until,
)
from twisted_stream.resume._resumable import ResumableStream, ResumeStore, credentialOf

_TOKEN = "client-token-0123456789"


@onceAcrossRunners
class ResumeTests(TestCase):
    timeout = 60

    @inlineCallbacks
    def gateway(self, *options: str, tokensPerSecond: str = "20", env: Any = None) -> Any:
        self.generator: Server = yield startTwistd(self, "chunkgen", "--tokens-per-second", tokensPerSecond)
        proxy: Server = yield startTwistd(
            self, "chunkproxy", "--route", f"/v1/={self.generator.url}v1/", "--resumable", "3", *options, env=env
        )
        return proxy

    def chat(self, proxy: Server, tokens: int, headers: Any = (), cutAfter: int = 0) -> Deferred[Exchange]:
        """
        A streamed chat answer; with C{cutAfter}, the client closes its
        connection once it has that many body bytes.
        """

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

    @inlineCallbacks
    def test_cutThenResumedJoinsExactly(self) -> Any:
        """
        A chat answer cut after some tokens, resumed from the bytes the
        client had, joins to exactly the whole answer; the upstream was
        not cancelled when the client left (the stream ended complete).
        """
        proxy = yield self.gateway()
        cut: Exchange = yield self.chat(proxy, 40, cutAfter=600)
        self.assertFalse(cut.complete)
        [id] = cut.header(b"x-stream-id")
        self.assertEqual(cut.header(b"x-stream-resume"), [b"/_streams/" + id])
        self.assertEqual(len(id), 22)
        had = cut.body
        rest: Exchange = yield fetch(proxy.url + f"_streams/{id.decode()}?from={len(had)}")
        self.assertEqual((rest.status, rest.complete), (200, True))
        self.assertEqual(rest.header(b"content-type"), [b"text/event-stream; charset=utf-8"])
        whole: Exchange = yield fetch(proxy.url + f"_streams/{id.decode()}")
        self.assertTrue(whole.complete)
        self.assertEqual(had + rest.body, whole.body)
        self.assertEqual(whole.body.count(b'"chat.completion.chunk"'), 42)
        # Each event numbered, [DONE] the 43rd.
        self.assertTrue(whole.body.endswith(b"data: [DONE]\nid: " + id + b".43\n\n"), whole.body[-80:])
        yield until(lambda: "POST /v1/chat/completions 200 complete" in proxy.output, 5, lambda: proxy.output)
        # The id is never whole in the log.
        self.assertNotIn(id.decode(), proxy.output)

    @inlineCallbacks
    def test_upstreamCancelledAfterTheWindow(self) -> Any:
        """
        A client that leaves and no reader comes back: the upstream is
        cancelled the window (1 s) after, not at once; a stream ended
        truncated is resumed with its truncated end.
        """
        slow = SlowPieces()
        upstream = Upstream(self, slow)
        proxy: Server = yield startTwistd(self, "chunkproxy", "--route", f"/s/={upstream.url}", "--resumable", "1")
        cut: Exchange = yield fetch(proxy.url + "s/x", onPiece=lambda c: c.tcp.abortConnection())
        left = reactor.seconds()
        [id] = cut.header(b"x-stream-id")
        gone = yield slow.gone
        self.assertGreater(gone - left, 0.8)
        self.assertLess(gone - left, 2.5)
        late: Exchange = yield fetch(proxy.url + f"_streams/{id.decode()}")
        self.assertEqual(late.status, 200)
        self.assertFalse(late.complete, "a stream given up is resumed with a truncated end")
        self.assertIn(b"piece 5\n", late.body)
        yield until(lambda: "abandoned" in proxy.output, 5, lambda: proxy.output)

    @inlineCallbacks
    def test_aStreamLeftRunningStaysCounted(self) -> Any:
        """
        A client that leaves a resumable stream (its upstream read on for
        whoever comes back) still has it counted as one of its streams:
        with --max-streams-per-client 1 its next stream is refused until
        that one was given up, then taken.
        """
        slow, later = SlowPieces(), SlowPieces()
        root = Resource()
        root.putChild(b"x", slow)
        root.putChild(b"z", later)
        upstream = Upstream(self, root)
        proxy: Server = yield startTwistd(
            self, "chunkproxy", "--route", f"/s/={upstream.url}", "--resumable", "1",
            "--max-streams-per-client", "1",
        )  # fmt: skip
        yield fetch(proxy.url + "s/x", onPiece=lambda c: c.tcp.abortConnection())
        refused: Exchange = yield fetch(proxy.url + "s/y")
        self.assertEqual(
            (refused.status, refused.body),
            (503, b"this client has 1 streams open already; try again shortly\n"),
        )
        yield slow.gone
        yield until(lambda: "abandoned" in proxy.output, 5, lambda: proxy.output)
        taken: Exchange = yield fetch(proxy.url + "s/z", onPiece=lambda c: c.tcp.abortConnection())
        self.assertEqual((taken.status, taken.body), (200, b"piece 1\n"))

    @inlineCallbacks
    def test_readersCountAsStreams(self) -> Any:
        """
        A reader of a resumable stream is a stream in flight of its client
        too: with --max-streams-per-client 2, a client that reads a stream
        and follows it once is refused a third (a 503 and its reason, at
        once), however many it asks for; once they have ended, it is
        served again. (Uncounted, a client could hold any number of
        readers, each a connection, and with Redis a connection to it.)
        """
        slow = SlowPieces()
        upstream = Upstream(self, slow)
        proxy: Server = yield startTwistd(
            self, "chunkproxy", "--route", f"/s/={upstream.url}", "--resumable", "3",
            "--max-streams-per-client", "2",
        )  # fmt: skip
        ids: list[bytes] = []

        def noteId(client: StrictClient) -> None:
            ids.extend([] if ids else client.exchange.header(b"x-stream-id"))

        first = fetch(proxy.url + "s/x", onPiece=noteId)
        yield until(lambda: bool(ids), 5)
        following: list[bool] = []
        second = fetch(proxy.url + f"_streams/{ids[0].decode()}", onPiece=lambda c: following.append(True))
        yield until(lambda: bool(following), 5)
        for _ in range(3):
            refused: Exchange = yield fetch(proxy.url + f"_streams/{ids[0].decode()}")
            self.assertEqual(
                (refused.status, refused.body), (503, b"this client has 2 streams open already; try again shortly\n")
            )
        one: Exchange = yield first
        two: Exchange = yield second
        self.assertTrue(one.complete and two.complete)
        self.assertEqual(one.body, two.body)
        again: Exchange = yield fetch(proxy.url + f"_streams/{ids[0].decode()}")
        self.assertEqual((again.status, again.body), (200, one.body))

    @inlineCallbacks
    def test_twoReadersLive(self) -> Any:
        """
        A second reader follows the stream live beside the first: each
        gets the whole answer as it is made, not at its end.
        """
        proxy = yield self.gateway(tokensPerSecond="10")
        ids: list[bytes] = []

        def noteId(client: StrictClient) -> None:
            ids.extend([] if ids else client.exchange.header(b"x-stream-id"))

        first = fetch(
            proxy.url + "v1/chat/completions", method=b"POST", body=passageChat(20),
            headers=[(b"Content-Type", b"application/json")], onPiece=noteId,
        )  # fmt: skip
        yield until(lambda: bool(ids), 5)
        second: Exchange = yield fetch(proxy.url + f"_streams/{ids[0].decode()}")
        one: Exchange = yield first
        self.assertEqual(one.body, second.body)
        self.assertTrue(one.complete and second.complete)
        arrivals = [at for at, _ in second.pieces]
        self.assertGreater(arrivals[-1] - arrivals[0], 1.0, "the second reader should get the pieces as they come")

    @inlineCallbacks
    def test_onlyTheCredentialThatStartedIt(self) -> Any:
        """
        With --require-token, a resume with another credential, or none,
        gets 401; with the one that started it, the stream.
        """
        proxy = yield self.gateway("--require-token", "env:TOKEN", env={"TOKEN": _TOKEN})
        auth = (b"Authorization", f"Bearer {_TOKEN}".encode())
        started: Exchange = yield self.chat(proxy, 5, headers=[auth])
        [id] = started.header(b"x-stream-id")
        url = proxy.url + f"_streams/{id.decode()}"
        for headers in ([], [(b"Authorization", b"Bearer someone-else")]):
            refused: Exchange = yield fetch(url, headers=headers)
            self.assertEqual((refused.status, refused.body), (401, b"this stream was started with another credential\n"))
        allowed: Exchange = yield fetch(url, headers=[auth])
        self.assertEqual(allowed.body, started.body)

    @inlineCallbacks
    def test_refusals(self) -> Any:
        """
        Unknown id: 404; from beyond the end, or not a number: 416, 400;
        a POST: 405; each with its one-line reason.
        """
        proxy = yield self.gateway()
        started: Exchange = yield self.chat(proxy, 3)
        [id] = started.header(b"x-stream-id")
        for path, method, status, reason in (
            ("_streams/nope", b"GET", 404, b"no stream with that id: it is unknown, has expired, or outgrew what is kept\n"),
            (f"_streams/{id.decode()}?from=99999", b"GET", 416,
             b"from=99999 is beyond the %d bytes the stream has so far\n" % (len(started.body),)),
            (f"_streams/{id.decode()}?from=-1", b"GET", 400, b"from must be a whole number of bytes, not '-1'\n"),
            (f"_streams/{id.decode()}", b"POST", 405, b"a stream is resumed with GET\n"),
        ):  # fmt: skip
            refused: Exchange = yield fetch(proxy.url + path, method=method)
            self.assertEqual((refused.status, refused.body), (status, reason), path)

    @inlineCallbacks
    def test_tooLargeFallsBack(self) -> Any:
        """
        A stream larger than --resume-max-bytes: its client gets it whole
        as on any route, it is no longer resumable (404), and its log
        event says so; the gateway keeps nothing of it.
        """
        proxy = yield self.gateway("--resume-max-bytes", "2000", tokensPerSecond="200")
        answer: Exchange = yield self.chat(proxy, 40)
        self.assertTrue(answer.complete)
        self.assertEqual(answer.body.count(b'"chat.completion.chunk"'), 42)
        [id] = answer.header(b"x-stream-id")
        gone: Exchange = yield fetch(proxy.url + f"_streams/{id.decode()}")
        self.assertEqual(gone.status, 404)
        self.assertIn("outgrew what a resumable stream may keep; it is no longer resumable", proxy.output)
        scraped: Exchange = yield fetch(proxy.url + "metrics")
        found = samples(scraped.body.decode())
        self.assertEqual(found[("chunkproxy_resumable_lost_total", (("route", "/v1/"), ("why", "too large")))], 1)

    @inlineCallbacks
    def test_eventIdsAndLastEventId(self) -> Any:
        """
        On a resumable route each event gets an id line naming its stream;
        a reconnect to the same URL with Last-Event-ID (what a browser's
        EventSource sends) gets the events after that one, as does
        /_streams/ID with it; joined, exactly the whole stream.
        """
        generator: Server = yield startTwistd(self, "chunkgen")
        proxy: Server = yield startTwistd(
            self, "chunkproxy", "--upstream", generator.url + "generate", "--resumable", "5"
        )
        url = proxy.url + "stream?count=12&interval=0.05&format=sse"

        def afterFour(client: StrictClient) -> None:
            if client.exchange.body.count(b"\n\n") >= 4:
                client.tcp.abortConnection()

        cut: Exchange = yield fetch(url, onPiece=afterFour)
        [id] = cut.header(b"x-stream-id")
        events = cut.body.split(b"\n\n")
        self.assertIn(b"\nid: " + id + b".1", events[0])
        self.assertIn(b"\nid: " + id + b".4", events[3])
        had = b"".join(event + b"\n\n" for event in events[:4])
        again: Exchange = yield fetch(url, headers=[(b"Last-Event-ID", id + b".4")])
        self.assertEqual(again.header(b"x-stream-id"), [id])
        whole: Exchange = yield fetch(proxy.url + f"_streams/{id.decode()}")
        self.assertTrue(whole.complete and again.complete)
        self.assertEqual(had + again.body, whole.body)
        self.assertEqual(whole.body.count(b"\nid: " + id + b"."), 12)
        viaStreams: Exchange = yield fetch(proxy.url + f"_streams/{id.decode()}", headers=[(b"Last-Event-ID", b"4")])
        self.assertEqual(viaStreams.body, again.body)
        # An id this gateway does not keep: a new stream, not a resume.
        fresh: Exchange = yield fetch(url, headers=[(b"Last-Event-ID", b"unknown.4")])
        self.assertNotEqual(fresh.header(b"x-stream-id"), [id])
        self.assertIn(b"id: " + fresh.header(b"x-stream-id")[0] + b".1\n", fresh.body)

    @inlineCallbacks
    def test_sdkIgnoresTheIds(self) -> Any:
        """
        The openai SDK streams through a resumable route (event ids in
        every event) as through any: every delta, the usage, no error.
        """
        proxy = yield self.gateway(tokensPerSecond="200")
        client = LineProcess.spawn(sys.executable, str(PEERS / "openai_chat.py"), proxy.url + "v1", "mock-passage", "hi")
        code = yield client.exitCode
        self.assertEqual(code, 0, client.stderr.decode())
        lines = [line for _, line in client.lines]
        self.assertEqual(lines[-2:], [b"usage 55", b"done"])
        self.assertEqual(len(lines), 57)

    @inlineCallbacks
    def test_chunkwatchResumes(self) -> Any:
        """
        chunkwatch --resume, its connection cut mid-stream (by a relay in
        between that cuts its first connection after 800 bytes), picks
        the stream up where it was, says so, and ends cleanly with the
        whole stream: the same bytes as a reader of the whole.
        """
        generator: Server = yield startTwistd(self, "chunkgen")
        proxy: Server = yield startTwistd(
            self, "chunkproxy", "--upstream", generator.url + "generate", "--resumable", "5"
        )
        relay = reactor.listenTCP(0, _cuttingRelay(proxy.port, 800), interface="127.0.0.1")
        self.addCleanup(relay.stopListening)
        watched = LineProcess.spawn(
            os.path.join(os.path.dirname(sys.executable), "chunkwatch"), "--resume",
            f"http://127.0.0.1:{portOf(relay)}/stream?count=60&interval=0.02",
        )  # fmt: skip
        code = yield watched.exitCode
        text = watched.text
        self.assertEqual(code, 0, text)
        self.assertRegex(text, r"-- connection lost after (\d+) bytes \(.*\); resuming there")
        self.assertRegex(text, r"-- resumed after [0-9.]+ ms, from byte \d+")
        self.assertIn("ended cleanly", text)
        total = int(re.search(r"-- \d+ chunks, (\d+) bytes", text).group(1))  # type: ignore[union-attr]
        lost = int(re.search(r"connection lost after (\d+) bytes", text).group(1))  # type: ignore[union-attr]
        self.assertGreaterEqual(lost, 1)
        # Every chunk once, in order, and as many bytes as they make.
        numbers = [int(n) for n in re.findall(r"Chunk (\d+) \[", text)]
        self.assertEqual(numbers, list(range(1, 61)))
        self.assertEqual(total, sum(len(f"Chunk {n} [00:00:00.000]\n") for n in numbers))
        self.assertGreater(total, lost)

    @inlineCallbacks
    def test_recordingsHaveNoStreamId(self) -> Any:
        """
        A resumable route that records: the recording is of the upstream's
        answer as it came, with neither the stream's id (in a header or an
        event's id line) nor any id line.
        """
        folder = os.path.abspath(self.mktemp())
        proxy = yield self.gateway("--record", folder)
        answer: Exchange = yield self.chat(proxy, 5)
        [id] = answer.header(b"x-stream-id")
        self.assertIn(b"id: " + id + b".1\n", answer.body)
        yield until(lambda: os.path.isdir(folder) and bool(os.listdir(folder)), 5)
        [name] = os.listdir(folder)
        path = os.path.join(folder, name)
        yield until(
            lambda: b'"complete"' in open(path, "rb").read(),
            5,
            lambda: open(path, "rb").read()[-300:].decode(),
        )
        with open(path, "rb") as recording:
            recorded = recording.read()
        self.assertIn(b"chat.completion.chunk", recorded)
        self.assertNotIn(id, recorded)
        self.assertNotIn(id[:6], recorded)
        self.assertNotIn(b"id: ", recorded)

    @inlineCallbacks
    def test_routesNotResumableAsBefore(self) -> Any:
        """
        Without --resumable: no stream id, and /_streams/ is no path of the
        gateway's (a 404 for no route, as any unknown path).
        """
        generator: Server = yield startTwistd(self, "chunkgen")
        proxy: Server = yield startTwistd(self, "chunkproxy", "--route", f"/v1/={generator.url}v1/")
        answer: Exchange = yield self.chat(proxy, 3)
        self.assertEqual(answer.header(b"x-stream-id"), [])
        unknown: Exchange = yield fetch(proxy.url + "_streams/abc")
        self.assertEqual((unknown.status, unknown.body), (404, b"no route for /_streams/abc\n"))


class StoreTests(SynchronousTestCase):
    """
    The store's bounds and lifetimes, on a fake clock.
    """

    def setUp(self) -> None:
        self.clock = Clock()
        self.store = ResumeStore(self.clock, maxBytes=10, maxMemory=15)

    def open(
        self, window: float, owner: Optional[bytes], status: int, headers: list[tuple[bytes, bytes]]
    ) -> ResumableStream:
        stream = self.store.open(window, owner, status, headers)
        assert stream is not None, "a store of its own memory takes every stream"
        return stream

    def test_boundsPerStreamAndInAll(self) -> None:
        one = self.open(5, None, 200, [])
        self.assertTrue(one.append(b"x" * 10))
        self.assertFalse(one.append(b"x"))
        self.assertTrue(one.overflowed)
        self.assertIsNone(self.store.get(one.id))
        self.assertEqual(self.store.kept, 0)
        two, three = self.open(5, None, 200, []), self.open(5, None, 200, [])
        self.assertTrue(two.append(b"x" * 8))
        self.assertFalse(three.append(b"x" * 8))
        self.assertEqual(self.store.kept, 8)

    def test_forgottenAfterTheWindow(self) -> None:
        stream = self.open(5, None, 200, [])
        stream.append(b"abc")
        stream.finish("complete")
        self.clock.advance(4.9)
        self.assertIs(self.store.get(stream.id), stream)
        self.clock.advance(0.1)
        self.assertIsNone(self.store.get(stream.id))
        self.assertEqual((len(self.store), self.store.kept), (0, 0))

    def test_abandonedWithNoReader(self) -> None:
        stream = self.open(2, None, 200, [])
        given: list[bool] = []
        stream.abandoned = lambda: given.append(True)
        # No reader ever attached and none left: nothing is timed yet.
        self.clock.advance(5)
        self.assertEqual(given, [])

    def test_lostStreamLetsGoOfItsBytes(self) -> None:
        """
        A stream that outgrows its bounds keeps nothing: the store's count
        and the stream's own pieces go back to nothing at once, after its
        client was given what it had not had.
        """
        stream = self.open(5, None, 200, [])
        given: list[str] = []
        stream.whenLost = given.append
        self.assertTrue(stream.append(b"x" * 8))
        self.assertFalse(stream.append(b"y" * 8))
        self.assertEqual((given, stream.lost, self.store.kept), (["too large"], "too large", 0))
        self.assertEqual((stream.start, stream.end, stream.bytesFrom(stream.end)), (8, 8, b""))

    def test_credential(self) -> None:
        stream = self.open(5, credentialOf(b"Bearer a"), 200, [])
        self.assertTrue(stream.may(b"Bearer a"))
        self.assertFalse(stream.may(b"Bearer b"))
        self.assertFalse(stream.may(None))
        self.assertTrue(self.open(5, None, 200, []).may(None))

    def test_bytesFrom(self) -> None:
        self.store = ResumeStore(self.clock)
        stream = self.open(5, None, 200, [])
        for piece in (b"abc", b"de", b"fghi"):
            stream.append(piece)
        self.assertEqual([stream.bytesFrom(n) for n in (0, 2, 3, 4, 9)], [b"abcdefghi", b"cdefghi", b"defghi", b"efghi", b""])



def _cuttingRelay(port: int, after: int) -> portforward.ProxyFactory:
    """
    A TCP relay to 127.0.0.1:PORT that cuts its first connection (both
    sides, at once) once AFTER bytes of answer have passed.
    """
    cut = [False]
    passed = [0]

    class Cutting(portforward.ProxyClient):
        def dataReceived(self, data: bytes) -> None:
            super().dataReceived(data)
            passed[0] += len(data)
            if not cut[0] and passed[0] >= after:
                cut[0] = True
                assert self.peer is not None
                cast(ITCPTransport, self.peer.transport).abortConnection()
                cast(ITCPTransport, self.transport).abortConnection()

    class CuttingFactory(portforward.ProxyClientFactory):
        protocol = Cutting

    class Server(portforward.ProxyServer):
        clientProtocolFactory = CuttingFactory

    factory = portforward.ProxyFactory("127.0.0.1", port)
    factory.protocol = Server
    return factory
