"""
Tests for L{twisted_stream.gateway._cors}: the policy without sockets, the gateway
with it on loopback (preflights never reach the upstream), and real
Chromium pages on other origins streaming through a real chunkproxy.
"""

from __future__ import annotations

import os
import time
from typing import Any

from twisted.internet.defer import inlineCallbacks
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.threads import deferToThread
from twisted.trial.unittest import SynchronousTestCase, TestCase
from twisted.web.http_headers import Headers
from twisted.web.resource import Resource
from twisted.web.server import Request, Site

from tests.support import (
    RawClient,
    RawConnection,
    RawUpstream,
    Server,
    browser,
    onceAcrossRunners,
    portOf,
    reactor,
    startTwistd,
)
from twisted_stream.gateway import GatewayResource, GatewaySite, Route
from twisted_stream.gateway._cors import CorsPolicy, Preflight
from twisted_stream.mock.llm import PASSAGE
from twisted_stream.proxy import FORWARDED_METHODS, StreamProxyResource
from twisted_stream.upstream._agent import UpstreamAgent

_APP = b"https://app.example"
_POLICY = CorsPolicy(frozenset({_APP}), FORWARDED_METHODS)


def _preflight(origin: bytes, method: bytes = b"POST", headers: bytes = b"") -> Headers:
    asked = Headers({b"Origin": [origin], b"Access-Control-Request-Method": [method]})
    if headers:
        asked.addRawHeader(b"Access-Control-Request-Headers", headers)
    return asked


class PolicyTests(SynchronousTestCase):
    def test_isPreflight(self) -> None:
        """
        Only an C{OPTIONS} with both C{Origin} and
        C{Access-Control-Request-Method} is a preflight; another OPTIONS is
        forwarded as before.
        """
        self.assertTrue(CorsPolicy.isPreflight(b"OPTIONS", _preflight(_APP)))
        self.assertFalse(CorsPolicy.isPreflight(b"OPTIONS", Headers({b"Origin": [_APP]})))
        self.assertFalse(CorsPolicy.isPreflight(b"POST", _preflight(_APP)))

    def test_allowed(self) -> None:
        """
        An allowed origin asking for a POST with the headers the SDKs send
        gets them all back, with the methods and a max age.
        """
        asked = b"authorization, content-type, X-Stainless-Lang, anthropic-version, x-stainless-retry-count"
        self.assertEqual(
            _POLICY.preflight(_preflight(_APP, b"POST", asked)),
            Preflight(
                204,
                (
                    (b"Access-Control-Allow-Origin", _APP),
                    (b"Vary", b"Origin"),
                    (b"Access-Control-Allow-Methods", b"DELETE, GET, HEAD, OPTIONS, PATCH, POST, PUT"),
                    (b"Access-Control-Max-Age", b"600"),
                    (
                        b"Access-Control-Allow-Headers",
                        b"authorization, content-type, x-stainless-lang, anthropic-version, x-stainless-retry-count",
                    ),
                ),
            ),
        )

    def test_refused(self) -> None:
        """
        Another origin, a method not forwarded, or a header nobody needs:
        403 with the reason, and no CORS headers.
        """
        self.assertEqual(
            _POLICY.preflight(_preflight(b"https://evil.example")),
            Preflight(403, (), "origin 'https://evil.example' is not allowed"),
        )
        self.assertEqual(_POLICY.preflight(_preflight(_APP, b"TRACE")), Preflight(403, (), "method 'TRACE' is not allowed"))
        self.assertEqual(
            _POLICY.preflight(_preflight(_APP, b"POST", b"content-type, x-internal-admin")),
            Preflight(403, (), "request header 'x-internal-admin' is not allowed"),
        )

    def test_anyOrigin(self) -> None:
        policy = CorsPolicy(frozenset({b"*"}), FORWARDED_METHODS)
        answer = policy.preflight(_preflight(b"https://any.example"))
        self.assertEqual(answer.headers[0], (b"Access-Control-Allow-Origin", b"*"))
        self.assertNotIn((b"Vary", b"Origin"), answer.headers)

    def test_responseHeaders(self) -> None:
        """
        An answer exposes its own headers that a page could not read
        otherwise: not the safelisted ones, never Set-Cookie.
        """
        self.assertEqual(
            _POLICY.responseHeaders(
                _APP, [b"Content-Type", b"X-Request-Id", b"Set-Cookie", b"Via", b"Access-Control-Allow-Origin"]
            ),
            [
                (b"Access-Control-Allow-Origin", _APP),
                (b"Vary", b"Origin"),
                (b"Access-Control-Expose-Headers", b"via, x-request-id"),
            ],
        )


_UPSTREAM_ANSWER = (
    b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nX-Request-Id: r1\r\nVary: Accept-Encoding\r\n"
    b"Access-Control-Allow-Origin: *\r\nAccess-Control-Allow-Credentials: true\r\nContent-Length: 9\r\n\r\ndata: x\n\n"
)


class GatewayCorsTests(TestCase):
    timeout = 30

    def gateway(self, token: bytes | None = None, cors: CorsPolicy | None = _POLICY) -> None:
        def script(connection: RawConnection, head: bytes) -> None:
            connection.tcp.write(_UPSTREAM_ANSWER)

        self.upstream = RawUpstream(self, script)
        agent = UpstreamAgent(reactor)
        self.addCleanup(agent.closeCachedConnections)
        proxy = StreamProxyResource(self.upstream.url, reactor=reactor, agent=agent, requireToken=token)
        site = GatewaySite(GatewayResource([Route(b"/up/", proxy)], cors=cors), 1000, 5)
        self.port = reactor.listenTCP(0, site, interface="127.0.0.1")
        self.addCleanup(self.port.stopListening)

    @inlineCallbacks
    def send(self, request: bytes) -> Any:
        raw = RawClient(request)
        yield connectProtocol(TCP4ClientEndpoint(reactor, "127.0.0.1", portOf(self.port)), raw)
        answer = yield raw.closed
        return answer

    @inlineCallbacks
    def test_preflightAnsweredHere(self) -> Any:
        """
        A preflight is answered by the gateway, before the token is asked
        for (browsers send none with it), and never reaches the upstream.
        """
        self.gateway(token=b"secret")
        answer = yield self.send(
            b"OPTIONS /up/v1/chat HTTP/1.1\r\nHost: g\r\nOrigin: https://app.example\r\n"
            b"Access-Control-Request-Method: POST\r\nAccess-Control-Request-Headers: authorization\r\n"
            b"Connection: close\r\n\r\n"
        )
        head, _, body = answer.partition(b"\r\n\r\n")
        self.assertTrue(head.startswith(b"HTTP/1.1 204 No Content\r\n"), head)
        self.assertIn(b"\r\nAccess-Control-Allow-Origin: https://app.example\r\n", head)
        self.assertIn(b"\r\nAccess-Control-Allow-Headers: authorization\r\n", head)
        self.assertNotIn(b"Content-Type", head)
        self.assertEqual(body, b"")
        self.assertEqual(self.upstream.requests, [])

    @inlineCallbacks
    def test_answerReadable(self) -> Any:
        """
        The answer to an allowed origin carries the gateway's CORS headers in
        place of the upstream's (its C{Allow-Credentials} too), exposes its
        headers, and keeps its C{Vary}.
        """
        self.gateway()
        answer = yield self.send(
            b"GET /up/x HTTP/1.1\r\nHost: g\r\nOrigin: https://app.example\r\nConnection: close\r\n\r\n"
        )
        head = answer.partition(b"\r\n\r\n")[0].decode()
        lines = head.split("\r\n")
        self.assertIn("Access-Control-Allow-Origin: https://app.example", lines)
        self.assertIn("Vary: Accept-Encoding, Origin", lines)
        self.assertIn("Access-Control-Expose-Headers: date, server, via, x-accel-buffering, x-request-id", lines)
        self.assertEqual([line for line in lines if line.startswith("Access-Control-Allow-")], [
            "Access-Control-Allow-Origin: https://app.example"
        ])

    @inlineCallbacks
    def test_refusalReadable(self) -> Any:
        """
        A refusal made as soon as the head came (401) is readable by an
        allowed origin, so the page can say why.
        """
        self.gateway(token=b"secret")
        answer = yield self.send(b"POST /up/x HTTP/1.1\r\nHost: g\r\nOrigin: https://app.example\r\nContent-Length: 5\r\n\r\n")
        self.assertTrue(answer.startswith(b"HTTP/1.1 401 Unauthorized\r\n"), answer[:60])
        self.assertIn(b"\r\nAccess-Control-Allow-Origin: https://app.example\r\n", answer)
        self.assertIn(b"\r\nAccess-Control-Expose-Headers: www-authenticate\r\n", answer)

    @inlineCallbacks
    def test_withoutPolicyNothingChanges(self) -> Any:
        """
        Without C{--cors-origin}: a preflight is forwarded like any OPTIONS,
        and answers carry only the upstream's own headers.
        """
        self.gateway(cors=None)
        answer = yield self.send(
            b"OPTIONS /up/v1/chat HTTP/1.1\r\nHost: g\r\nOrigin: https://app.example\r\n"
            b"Access-Control-Request-Method: POST\r\nConnection: close\r\n\r\n"
        )
        self.assertEqual(len(self.upstream.requests), 1)
        self.assertTrue(self.upstream.requests[0].startswith(b"OPTIONS /v1/chat HTTP/1.1\r\n"))
        head = answer.partition(b"\r\n\r\n")[0]
        self.assertIn(b"\r\nAccess-Control-Allow-Origin: *\r\n", head)
        self.assertNotIn(b"Vary: Origin", head)
        self.assertNotIn(b"Expose", head)

    @inlineCallbacks
    def test_otherOriginNotReadable(self) -> Any:
        self.gateway()
        answer = yield self.send(
            b"GET /up/x HTTP/1.1\r\nHost: g\r\nOrigin: https://evil.example\r\nConnection: close\r\n\r\n"
        )
        self.assertNotIn(b"https://evil.example", answer)


_PAGE = """<!doctype html><meta charset="utf-8"><title>app</title><script>
window.run = async (proxy, token) => {
  const out = {chunks: [], errors: []};
  try {
    const began = performance.now();
    const stream = await fetch(proxy + "stream?count=5&interval=0.2", {headers: {"Authorization": "Bearer " + token}});
    const reader = stream.body.getReader();
    const text = new TextDecoder();
    for (;;) {
      const {done, value} = await reader.read();
      if (done) break;
      out.chunks.push([performance.now() - began, text.decode(value)]);
    }
  } catch (e) { out.errors.push("stream: " + e); }
  try {
    const chat = await fetch(proxy + "v1/chat/completions", {
      method: "POST",
      headers: {"Authorization": "Bearer " + token, "Content-Type": "application/json", "X-Stainless-Lang": "js"},
      body: JSON.stringify({model: "mock-passage", stream: true, messages: [{role: "user", content: "hi"}]}),
    });
    out.chatStatus = chat.status;
    out.buffering = chat.headers.get("x-accel-buffering");
    out.chat = await chat.text();
  } catch (e) { out.errors.push("chat: " + e); }
  window.result = out;
};
</script>"""


class _App(Resource):
    isLeaf = True

    def render_GET(self, request: Request) -> bytes:
        request.setHeader(b"Content-Type", b"text/html; charset=utf-8")
        return _PAGE.encode()


@onceAcrossRunners
class CorsInChromiumTests(TestCase):
    """
    Pages served from other origins, in real Chromium, calling a real
    chunkproxy with C{--cors-origin} and C{--require-token}.
    """

    timeout = 90

    def drive(self, pageURL: str, proxyURL: str) -> dict[str, Any]:
        profile = self.mktemp()
        os.makedirs(profile)
        driver = browser(profile)
        try:
            driver.get(pageURL)
            driver.execute_script("window.run(arguments[0], arguments[1]);", proxyURL, "secret")
            began = time.monotonic()
            result = None
            while result is None and time.monotonic() - began < 30:
                result = driver.execute_script("return window.result || null;")
            assert result is not None, "the page never finished"
            return dict(result)
        finally:
            driver.quit()

    @inlineCallbacks
    def test_allowedAndBlocked(self) -> Any:
        """
        A page on the allowed origin streams C{/stream} live (five chunks
        0.2 s apart, each read as it came) and a chat completion with a
        bearer token and the SDK's headers (preflighted); a page on an
        origin not allowed is blocked from both.
        """
        pagePort = reactor.listenTCP(0, Site(_App()), interface="127.0.0.1")
        self.addCleanup(pagePort.stopListening)
        allowed = f"http://127.0.0.1:{portOf(pagePort)}"
        generator: Server = yield startTwistd(self, "chunkgen", "--ttft", "0.1", "--tokens-per-second", "200")
        proxy: Server = yield startTwistd(
            self,
            "chunkproxy",
            "--upstream", generator.url + "generate",
            "--cors-origin", allowed,
            "--require-token", "env:CHUNKPROXY_TOKEN",
            env={"CHUNKPROXY_TOKEN": "secret"},
        )
        seen = yield deferToThread(self.drive, allowed + "/", proxy.url)
        self.assertEqual(seen["errors"], [])
        self.assertEqual(len(seen["chunks"]), 5, seen["chunks"])
        times = [t for t, _ in seen["chunks"]]
        self.assertGreater(times[-1] - times[0], 0.6 * 1000)
        self.assertEqual(seen["chatStatus"], 200)
        self.assertEqual(seen["buffering"], "no")
        self.assertIn("data: [DONE]", seen["chat"])
        self.assertIn(PASSAGE.split()[1], seen["chat"])
        blocked = yield deferToThread(self.drive, f"http://localhost:{portOf(pagePort)}/", proxy.url)
        self.assertEqual(len(blocked["errors"]), 2, blocked)
        self.assertTrue(all("Failed to fetch" in error for error in blocked["errors"]), blocked)
