"""
Tests for L{twisted_stream.mock._seen}: the requests the mock LLM saw, read
back at C{/_mock/requests}, in memory on a fake clock; and through a real
C{chunkproxy}, what the proxy sent as the mock saw it.
"""

from __future__ import annotations

import json
from typing import Any

import treq
from treq.testing import StubTreq
from twisted.internet.defer import inlineCallbacks
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase, TestCase

from tests.support import Exchange, Server, chatRequest, fetch, onceAcrossRunners, startTwistd
from twisted_stream.mock._seen import MAX_BODY, MAX_REQUESTS
from twisted_stream.mock.generator import GeneratorRoot, StreamSpec
from twisted_stream.mock.llm import MockLLM, Pace

_MOCK = "http://mock.test"


class SeenTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(1_764_000_000)
        self.client: Any = StubTreq(GeneratorRoot(StreamSpec(), self.clock, MockLLM(self.clock, Pace(ttft=0.5, tokensPerSecond=10))))

    def send(self, method: str, path: str, body: bytes = b"", headers: Any = None) -> None:
        # Answered or not (a chat is paced on the clock): it was seen.
        self.client.request(method, _MOCK + path, data=body or None, headers=headers or {})
        self.client.flush()

    def seen(self) -> list[dict[str, Any]]:
        response = self.successResultOf(self.client.get(_MOCK + "/_mock/requests"))
        self.assertEqual(response.code, 200)
        self.assertEqual(response.headers.getRawHeaders(b"content-type"), [b"application/json"])
        listed: list[dict[str, Any]] = json.loads(self.successResultOf(treq.content(response)))["requests"]
        return listed

    def test_asSent(self) -> None:
        """
        Method, target, headers and body, as the client sent them, with the
        time; credentials removed from the headers and from the query.
        """
        body = json.dumps(chatRequest(stream=True)).encode()
        self.send(
            "POST", "/v1/chat/completions", body,
            {"Authorization": "Bearer sk-secret", "X-Api-Key": "k-secret", "X-Trace": "t1",
             "Content-Type": "application/json"},
        )  # fmt: skip
        self.send("POST", "/v1beta/models/mock-passage:generateContent?key=g-secret&alt=sse", b"{}")
        [chat, gemini] = self.seen()
        self.assertEqual(
            (chat["time"], chat["method"], chat["path"], chat["body"], chat["body_truncated"]),
            (1_764_000_000, "POST", "/v1/chat/completions", body.decode(), False),
        )
        headers = dict((name.lower(), value) for name, value in chat["headers"])
        self.assertEqual(
            (headers["authorization"], headers["x-api-key"], headers["x-trace"]), ("[removed]", "[removed]", "t1")
        )
        self.assertEqual(gemini["path"], "/v1beta/models/mock-passage:generateContent?key=%5Bremoved%5D&alt=sse")
        self.assertNotIn("secret", json.dumps(self.seen()))

    def test_onlyTheMockLLM(self) -> None:
        """
        The generator's stream and the listing itself are not noted.
        """
        self.send("GET", "/generate?count=1")
        self.seen()
        self.assertEqual(self.seen(), [])

    def test_bounded(self) -> None:
        """
        The last L{MAX_REQUESTS} are kept, oldest first; each body up to
        L{MAX_BODY} bytes, said when cut.
        """
        for n in range(MAX_REQUESTS + 5):
            self.send("POST", f"/v1/embeddings?n={n}", b"{}")
        self.send("POST", "/v1/embeddings", b"x" * (MAX_BODY * 3))
        listed = self.seen()
        self.assertEqual(len(listed), MAX_REQUESTS)
        self.assertEqual(listed[0]["path"], "/v1/embeddings?n=6")
        self.assertEqual((len(listed[-1]["body"]), listed[-1]["body_truncated"]), (MAX_BODY, True))

    def test_cleared(self) -> None:
        """
        C{DELETE /_mock/requests} forgets them: C{204}, then an empty list.
        """
        self.send("GET", "/v1/models")
        response = self.successResultOf(self.client.delete(_MOCK + "/_mock/requests"))
        self.assertEqual((response.code, self.successResultOf(treq.content(response))), (204, b""))
        self.assertEqual(self.seen(), [])
        response = self.successResultOf(self.client.post(_MOCK + "/_mock/requests", data=b"{}"))
        self.assertEqual(response.code, 405)


@onceAcrossRunners
class ThroughProxyTests(TestCase):
    timeout = 30

    @inlineCallbacks
    def test_whatTheProxySent(self) -> Any:
        """
        A client's chat through a real chunkproxy that injects the API key:
        the mock's list shows the request as the proxy sent it (the client's
        body, the route's path), the injected key removed.
        """
        generator: Server = yield startTwistd(self, "chunkgen")
        proxy: Server = yield startTwistd(
            self, "chunkproxy", "--route", f"/v1/={generator.url}v1/",
            "--inject-header", "Authorization: Bearer upstream-secret",
        )  # fmt: skip
        body = json.dumps(chatRequest(stream=True)).encode()
        answer: Exchange = yield fetch(
            proxy.url + "v1/chat/completions", method=b"POST", body=body,
            headers=[(b"Content-Type", b"application/json"), (b"X-Trace", b"t-42")],
        )  # fmt: skip
        self.assertTrue(answer.complete)
        listing: Exchange = yield fetch(generator.url + "_mock/requests")
        [seen] = json.loads(listing.body)["requests"]
        headers = dict((name.lower(), value) for name, value in seen["headers"])
        self.assertEqual((seen["method"], seen["path"], seen["body"]), ("POST", "/v1/chat/completions", body.decode()))
        self.assertEqual((headers["authorization"], headers["x-trace"]), ("[removed]", "t-42"))
        self.assertNotIn("upstream-secret", listing.body.decode())
