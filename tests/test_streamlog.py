"""
Tests for L{twisted_stream.exchange._streamlog}: one event per stream, with the
outcome its end says, from a real gateway on loopback with hand-made
upstreams.
"""

from __future__ import annotations

import json
from typing import Any, Callable

from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.task import deferLater
from twisted.logger import capturedLogs
from twisted.trial.unittest import TestCase

from tests.support import (
    RawClient,
    RawConnection,
    RawUpstream,
    Server,
    answerWith,
    fetch,
    portOf,
    reactor,
    startTwistd,
)
from twisted_stream.gateway import GatewayResource, GatewaySite, Route
from twisted_stream.ops._logformat import textLine
from twisted_stream.page import PageResource
from twisted_stream.proxy import StreamProxyResource
from twisted_stream.upstream._agent import UpstreamAgent

_CHUNKED = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n"


class StreamEventTests(TestCase):
    timeout = 30

    def gateway(self, script: Callable[[RawConnection, bytes], None], **options: Any) -> str:
        upstream = RawUpstream(self, script)
        agent = UpstreamAgent(reactor)
        self.addCleanup(agent.closeCachedConnections)
        proxy = StreamProxyResource(upstream.url, reactor=reactor, agent=agent, **options)
        site = GatewaySite(GatewayResource([Route(b"/up/", proxy)], PageResource()), 1000, 5)
        port = reactor.listenTCP(0, site, interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        return f"http://127.0.0.1:{portOf(port)}/"

    @inlineCallbacks
    def streamEvents(self, act: Callable[[], Deferred[Any]]) -> Any:
        """
        @return: The stream events logged while C{act} ran, and a moment
            after.
        """
        with capturedLogs() as events:
            yield act()
            yield deferLater(reactor, 0.2, lambda: None)
        return [e for e in events if e.get("log_namespace") == "chunkproxy.stream"]

    @inlineCallbacks
    def test_complete(self) -> Any:
        """
        A whole stream: one event with its fields; no query string (it may
        hold a key) and no credentials anywhere in it.
        """

        def script(connection: RawConnection, head: bytes) -> None:
            connection.tcp.write(_CHUNKED + b"2\r\nab\r\n3\r\ncde\r\n0\r\n\r\n")

        url = self.gateway(script)
        events = yield self.streamEvents(
            lambda: fetch(url + "up/x?key=sk-secret", headers=[(b"Authorization", b"Bearer sk-token")])
        )
        self.assertEqual(len(events), 1)
        event = events[0]
        self.assertEqual(
            {k: event[k] for k in ("method", "path", "route", "client", "status", "upstream_status", "bytes_sent",
                                   "outcome")},
            {"method": "GET", "path": "/up/x", "route": "/up/", "client": "127.0.0.1", "status": 200,
             "upstream_status": 200, "bytes_sent": 5, "outcome": "complete"},
        )
        self.assertIn(event["chunks_sent"], (1, 2))
        self.assertGreaterEqual(event["duration_ms"], event["ttfb_ms"])
        self.assertNotIn("sk-secret", repr(events))
        self.assertNotIn("sk-token", repr(events))

    @inlineCallbacks
    def test_timeToFirstByte(self) -> Any:
        """
        The time to the first byte is the first piece's, not the last's: a
        piece at once and one 0.4 s later give a TTFB well under the
        duration.
        """

        def script(connection: RawConnection, head: bytes) -> None:
            connection.tcp.write(_CHUNKED + b"2\r\nab\r\n")
            reactor.callLater(0.4, connection.tcp.write, b"3\r\ncde\r\n0\r\n\r\n")

        url = self.gateway(script)
        events = yield self.streamEvents(lambda: fetch(url + "up/x"))
        self.assertEqual([(e["chunks_sent"], e["bytes_sent"]) for e in events], [(2, 5)])
        self.assertLess(events[0]["ttfb_ms"], 200)
        self.assertGreaterEqual(events[0]["duration_ms"], 400)

    @inlineCallbacks
    def test_upstreamError(self) -> Any:
        url = self.gateway(answerWith(b"HTTP/1.1 200 OK\r\nBad Header\r\n\r\n"))
        events = yield self.streamEvents(lambda: fetch(url + "up/x"))
        self.assertEqual([(e["status"], e["outcome"]) for e in events], [(502, "upstream_error")])

    @inlineCallbacks
    def test_upstreamTimeout(self) -> Any:
        url = self.gateway(lambda connection, head: None, connectTimeout=0.3)
        events = yield self.streamEvents(lambda: fetch(url + "up/x"))
        self.assertEqual([(e["status"], e["outcome"], e["ttfb_ms"]) for e in events], [(504, "upstream_timeout", None)])

    @inlineCallbacks
    def test_truncated(self) -> Any:
        def script(connection: RawConnection, head: bytes) -> None:
            connection.tcp.write(_CHUNKED + b"4\r\npart\r\n")
            connection.tcp.loseConnection()

        url = self.gateway(script)
        events = yield self.streamEvents(lambda: fetch(url + "up/x"))
        self.assertEqual([(e["status"], e["outcome"], e["bytes_sent"]) for e in events], [(200, "truncated", 4)])

    @inlineCallbacks
    def test_idleTimeout(self) -> Any:
        url = self.gateway(lambda connection, head: connection.tcp.write(_CHUNKED + b"4\r\npart\r\n"), idleTimeout=0.3)
        events = yield self.streamEvents(lambda: fetch(url + "up/x"))
        self.assertEqual([(e["status"], e["outcome"], e["bytes_sent"]) for e in events], [(200, "idle_timeout", 4)])

    @inlineCallbacks
    def test_clientGone(self) -> Any:
        """
        A client that leaves: before the answer (499, as nginx logs it) and
        mid-body (with what was sent).
        """
        url = self.gateway(lambda connection, head: connection.tcp.write(_CHUNKED + b"4\r\npart\r\n")
                           if b"/mid" in head else None)
        port = int(url.rsplit(":", 1)[1].strip("/"))

        @inlineCallbacks
        def leave() -> Any:
            for path, after in ((b"/up/before", 0.2), (b"/up/mid", 0.2)):
                client = RawClient(b"GET " + path + b" HTTP/1.1\r\nHost: g\r\n\r\n")
                yield connectProtocol(TCP4ClientEndpoint(reactor, "127.0.0.1", port), client)
                yield deferLater(reactor, after, lambda: None)
                client.transport.loseConnection()  # type: ignore[union-attr]
                yield client.closed

        events = yield self.streamEvents(leave)
        self.assertEqual(
            [(e["path"], e["status"], e["outcome"], e["bytes_sent"]) for e in events],
            [("/up/before", 499, "client_gone", 0), ("/up/mid", 200, "client_gone", 4)],
        )

    @inlineCallbacks
    def test_rejectedAndPage(self) -> Any:
        """
        Requests answered by the gateway itself are one event each too:
        refused at the head (404, a refusal of the channel), refused when
        rendered, and the page.
        """
        url = self.gateway(answerWith(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"))

        @inlineCallbacks
        def requests() -> Any:
            yield fetch(url + "nowhere?key=sk-secret")
            yield fetch(url + "up/%2e%2e/x")
            yield fetch(url)

        events = yield self.streamEvents(requests)
        self.assertEqual(
            [(e["path"], e["status"], e["outcome"]) for e in events],
            [("/nowhere", 404, "rejected"), ("/up/%2e%2e/x", 400, "rejected"), ("/", 200, "complete")],
        )
        self.assertNotIn("sk-secret", repr(events))

    @inlineCallbacks
    def test_targetsRefusedAndEscaped(self) -> Any:
        """
        A fragment or a control byte in the request target: 400 with the
        reason, nothing forwarded; the log line shows the target with its
        control bytes (C0, DEL and C1) escaped, never a terminal escape.
        """
        upstream: list[bytes] = []
        url = self.gateway(lambda connection, head: upstream.append(head))
        port = int(url.rsplit(":", 1)[1].strip("/"))
        answers = []
        with capturedLogs() as events:
            for target in (b"/up/x#frag", b"/up/\x1b]0;pwned\x07\x1b[2J", b"/nowhere/\x9b2J"):
                client = RawClient(b"GET " + target + b" HTTP/1.1\r\nHost: x\r\n\r\n", closeAfterHead=False)
                yield connectProtocol(TCP4ClientEndpoint(reactor, "127.0.0.1", port), client)
                answers.append((yield client.closed))
        self.assertEqual(upstream, [])
        # (A byte over 0x7f is no control byte of HTTP's: no such route.)
        self.assertEqual([answer[:12] for answer in answers], [b"HTTP/1.1 400", b"HTTP/1.1 400", b"HTTP/1.1 404"])
        self.assertTrue(answers[0].endswith(b"\r\n\r\nthe request target must not contain a fragment (#)\n"))
        # (Over HTTP/1.1, the channel's parser refuses the request line
        # first; HTTP/2's :path gets the reason, see test_h2.)
        self.assertTrue(answers[1].endswith(b"\r\n\r\nthe request is malformed\n"), answers[1])
        lines = [textLine(e) for e in events if e.get("log_namespace") == "chunkproxy.stream"]
        self.assertEqual(len(lines), 3, lines)
        self.assertIn(" GET /up/x#frag 400 rejected", lines[0] or "")
        self.assertIn(" - - 400 rejected", lines[1] or "")
        self.assertIn(" GET /nowhere/\\x9b2J 404 rejected", lines[2] or "")
        for line in lines:
            self.assertFalse(any(ord(c) < 0x20 or 0x7F <= ord(c) <= 0x9F for c in (line or "").rstrip("\n")), line)


class MockFaultOutcomeTests(TestCase):
    """
    The outcomes a real chunkproxy logs for the mock LLM's faults on demand
    (a real chunkgen upstream asked with C{X-Mock-Fault}), with what the
    client received and what the LLM delivered up to then.
    """

    timeout = 30

    @inlineCallbacks
    def test_faultOutcomes(self) -> Any:
        generator: Server = yield startTwistd(self, "chunkgen", "--ttft", "0.05", "--tokens-per-second", "50")
        proxy: Server = yield startTwistd(
            self, "chunkproxy", "--route", f"/v1/={generator.url}v1/", "--idle-timeout", "0.5", "--log-format", "json"
        )
        body = json.dumps({"model": "mock-echo", "stream": True,
                           "messages": [{"role": "user", "content": "one two three four five six"}]}).encode()  # fmt: skip
        seen = {}
        for fault in ("disconnect:3", "error_event:2", "stall:1:3", "rate_limit"):
            exchange = yield fetch(proxy.url + "v1/chat/completions", b"POST",
                                   [(b"Content-Type", b"application/json"), (b"X-Mock-Fault", fault.encode())],
                                   body=body)  # fmt: skip
            seen[fault] = (exchange.status, exchange.complete, exchange.body.count(b'"content":"'))
        yield deferLater(reactor, 0.3, lambda: None)
        events = [json.loads(line) for line in proxy.output.splitlines() if line.startswith("{")]
        streams = [e for e in events if e["namespace"] == "chunkproxy.stream"]
        self.assertEqual(
            [(e["status"], e["outcome"], e.get("llm_deltas")) for e in streams],
            [(200, "truncated", 3), (200, "complete", 2), (200, "idle_timeout", 1), (429, "upstream_error_status", None)],
        )
        # The client: a truncated stream is never a clean end.
        self.assertEqual(seen["disconnect:3"][:2], (200, False))
        self.assertEqual(seen["error_event:2"][:2], (200, True))
        self.assertEqual(seen["stall:1:3"][:2], (200, False))
        self.assertEqual(seen["rate_limit"][0], 429)
