"""
Tests for L{twisted_stream.exchange._resource}: its logic, on L{task.Clock} and in-memory
HTTP (a generator behind the proxy, both in C{treq.testing}).
"""

from __future__ import annotations

from typing import Any

import treq
from treq.testing import RequestTraversalAgent, StubTreq
from twisted.internet.defer import Deferred, fail
from twisted.internet.error import (
    ConnectingCancelledError,
    ConnectionDone,
    ConnectionLost,
    ConnectionRefusedError,
    DNSLookupError,
)
from twisted.internet.task import Clock
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase
from twisted.web._newclient import ResponseNeverReceived
from twisted.web.iweb import IAgent, IRequest, IResponse
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request

from tests.support import FakeAgent, StreamingRequest, render
from twisted_stream.http._text import PlainResource
from twisted_stream.mock.formats import TEXT
from twisted_stream.mock.generator import GeneratorRoot, StreamSpec
from twisted_stream.proxy import StreamProxyResource

UPSTREAM = b"http://upstream.example/generate"


class _URIEcho(Resource):
    """
    An upstream that answers with the request target it got.
    """

    isLeaf = True

    def render_GET(self, request: IRequest) -> bytes:
        return bytes(request.uri)


class _BreaksOff(Resource):
    """
    An upstream that sends part of a chunked body, then drops the connection.
    """

    isLeaf = True

    def render_GET(self, request: Request) -> int:
        request.write(b"partial ")
        request.write(b"body")
        request.loseConnection()
        return NOT_DONE_YET


def _mounted(proxy: StreamProxyResource) -> PlainResource:
    """
    Put the proxy at C{/stream}, as C{chunkproxy} does.
    """
    root = PlainResource()
    root.putChild(b"stream", proxy)
    return root


class ForwardingTests(SynchronousTestCase):
    """
    A generator behind the proxy, a client in front, one fake clock.
    """

    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(1_764_000_000)
        self.upstream = RequestTraversalAgent(
            GeneratorRoot(StreamSpec(count=3, interval=1.0), self.clock)
        )
        self.proxy = StreamProxyResource(UPSTREAM, agent=self.upstream, reactor=self.clock)
        self.client: Any = StubTreq(_mounted(self.proxy))
        self.pieces: list[bytes] = []

    def flush(self) -> None:
        for _ in range(3):
            self.upstream.flush()
            self.client.flush()

    def get(self, query: str = "", method: str = "GET") -> Any:
        requested = self.client.request(method, "http://proxy/stream" + query)
        self.flush()
        response = self.successResultOf(requested)
        self.done = treq.collect(response, self.pieces.append)
        self.flush()
        return response

    def test_eachChunkTheMomentItArrives(self) -> None:
        """
        Each chunk reaches the client as soon as the upstream sends it, not
        when the upstream body is complete; then the stream ends cleanly.
        """
        start = self.clock.seconds()
        response = self.get()
        self.assertEqual(response.code, 200)
        self.assertEqual(self.pieces, [TEXT.render(1, start, 0)])
        self.clock.advance(1)
        self.flush()
        self.assertEqual(self.pieces, [TEXT.render(1, start, 0), TEXT.render(2, start + 1, 0)])
        self.assertNoResult(self.done)
        self.clock.advance(1)
        self.flush()
        self.assertEqual(self.pieces[-1], TEXT.render(3, start + 2, 0))
        self.assertIsNone(self.successResultOf(self.done))

    def test_headers(self) -> None:
        """
        The client gets the upstream's status and Content-Type, and headers
        that stop anything in front of the proxy from buffering.
        """
        response = self.get("?format=ndjson&count=1")
        self.assertEqual(response.code, 200)
        headers = response.headers
        self.assertEqual(headers.getRawHeaders(b"content-type"), [b"application/x-ndjson"])
        self.assertEqual(headers.getRawHeaders(b"cache-control"), [b"no-cache"])
        self.assertEqual(headers.getRawHeaders(b"x-accel-buffering"), [b"no"])

    def test_upstreamStatusPassedOn(self) -> None:
        """
        An upstream error status and its body are passed on as they are.
        """
        response = self.get("?count=-5")
        self.assertEqual(response.code, 400)
        self.successResultOf(self.done)
        self.assertIn(b"count must be a whole number", b"".join(self.pieces))

    def test_head(self) -> None:
        """
        HEAD is forwarded as HEAD: headers, no body.
        """
        response = self.get(method="HEAD")
        self.assertEqual(response.code, 200)
        self.assertEqual(response.headers.getRawHeaders(b"content-type"), [b"text/plain; charset=utf-8"])
        self.successResultOf(self.done)
        self.assertEqual(self.pieces, [])
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_clientGoneStopsUpstream(self) -> None:
        """
        When the client goes away mid-stream, the upstream connection is
        closed, so the generator behind it stops: no timer is left.
        """
        request = StreamingRequest([], uri=b"/stream")
        render(self.proxy, request)
        self.flush()
        self.assertEqual(request.responseCode, 200)
        self.assertIsNotNone(request.producer)
        self.assertTrue(self.clock.getDelayedCalls(), "the generator should be running")
        request.processingFailed(Failure(ConnectionDone()))
        self.flush()
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_brokenUpstreamIsNotACleanEnd(self) -> None:
        """
        An upstream that breaks off mid-body makes the proxy close the
        client's connection without finishing the response, after passing on
        what did arrive.
        """
        proxy = StreamProxyResource(UPSTREAM, agent=RequestTraversalAgent(_BreaksOff()), reactor=self.clock)
        request = StreamingRequest([], uri=b"/stream")
        render(proxy, request)
        for _ in range(3):
            proxy.agent.flush()  # type: ignore[attr-defined]
        self.assertEqual(b"".join(request.written), b"partial body")
        self.assertTrue(request.connectionClosed)
        self.assertEqual(request.finished, 0)
        self.assertIsNone(request.producer)
        self.flushLoggedErrors()


class URLTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.agent = RequestTraversalAgent(_URIEcho())

    def echoed(self, upstream: bytes, target: str) -> bytes:
        client: Any = StubTreq(_mounted(StreamProxyResource(upstream, agent=self.agent, reactor=self.clock)))
        requested = client.get("http://proxy" + target)
        for _ in range(3):
            self.agent.flush()
            client.flush()
        response = self.successResultOf(requested)
        body = treq.content(response)
        for _ in range(3):
            self.agent.flush()
            client.flush()
        return self.successResultOf(body)

    def test_queryPassedOn(self) -> None:
        """
        The query string goes upstream as it came.
        """
        self.assertEqual(
            self.echoed(UPSTREAM, "/stream?count=5&format=sse&x=%20+a%26"),
            b"/generate?count=5&format=sse&x=%20+a%26",
        )
        self.assertEqual(self.echoed(UPSTREAM, "/stream"), b"/generate")

    def test_queryAppendedToUpstreamQuery(self) -> None:
        """
        An upstream URL with a query of its own keeps it, and the client's
        follows.
        """
        self.assertEqual(
            self.echoed(UPSTREAM + b"?format=sse", "/stream?count=2"),
            b"/generate?format=sse&count=2",
        )

    def test_nonASCIIQuery(self) -> None:
        """
        A query string with raw non-ASCII bytes gets 400.
        """
        request = StreamingRequest([], uri=b"/stream?q=\xe9")
        body = render(StreamProxyResource(UPSTREAM, agent=FakeAgent(Deferred()), reactor=self.clock), request)
        self.assertEqual(request.responseCode, 400)
        self.assertEqual(body, b"the query string must be ASCII; percent-encode other bytes\n")


class FailureTests(SynchronousTestCase):
    """
    Upstream failures before the response headers.
    """

    def setUp(self) -> None:
        self.clock = Clock()

    def render(self, agent: IAgent, timeout: float = 10.0, retries: int = 0) -> tuple[StreamingRequest, Any]:
        request = StreamingRequest([], uri=b"/stream")
        proxy = StreamProxyResource(UPSTREAM, agent=agent, reactor=self.clock, connectTimeout=timeout, retries=retries)
        result = render(proxy, request)
        self.assertEqual(result, NOT_DONE_YET)
        return request, result

    def assertAnswer(self, request: StreamingRequest, code: int, reason: bytes) -> None:
        self.assertEqual(request.responseCode, code)
        self.assertEqual(b"".join(request.written), reason + b"\n")
        self.assertEqual(request.responseHeaders.getRawHeaders(b"content-type"), [b"text/plain; charset=utf-8"])
        self.assertEqual(request.finished, 1)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_refused(self) -> None:
        """
        A refused connection gets 502 with a one-line reason.
        """
        request, _ = self.render(FakeAgent(fail(ConnectionRefusedError())))
        self.assertAnswer(request, 502, b"upstream refused the connection")

    def test_unresolvable(self) -> None:
        """
        A host name that does not resolve gets 502.
        """
        request, _ = self.render(FakeAgent(fail(DNSLookupError("nope"))))
        self.assertAnswer(request, 502, b"upstream host name could not be resolved")

    def test_noHeadersInTime(self) -> None:
        """
        A connected upstream that sends no headers within the timeout: the
        request is cancelled and the client gets 504.
        """
        cancelled: list[bool] = []
        pending: Deferred[IResponse] = Deferred(lambda d: cancelled.append(True))
        request, _ = self.render(FakeAgent(pending), timeout=2.5)
        self.clock.advance(2.4)
        self.assertEqual(request.written, [])
        self.clock.advance(0.1)
        self.assertEqual(cancelled, [True])
        self.assertAnswer(request, 504, b"upstream sent no response headers within 2.5 s")

    def test_unreachable(self) -> None:
        """
        An upstream that cannot even be connected to within the timeout gets
        502.
        """

        def cancel(d: Deferred[IResponse]) -> None:
            d.errback(ConnectingCancelledError(None))

        request, _ = self.render(FakeAgent(Deferred(cancel)), timeout=1)
        self.clock.advance(1)
        self.assertAnswer(request, 502, b"upstream unreachable: no connection within 1 s")

    def test_clientGoneBeforeHeaders(self) -> None:
        """
        A client that leaves before the upstream answers cancels the upstream
        request at once, and nothing is written to it.
        """
        cancelled: list[bool] = []
        pending: Deferred[IResponse] = Deferred(lambda d: cancelled.append(True))
        request, _ = self.render(FakeAgent(pending))
        request.processingFailed(Failure(ConnectionDone()))
        self.assertEqual(cancelled, [True])
        self.assertEqual(request.written, [])
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_methodsNotForwarded(self) -> None:
        """
        CONNECT and methods a proxy does not forward get 405, and nothing
        goes upstream.
        """
        agent = FakeAgent(Deferred())
        proxy = StreamProxyResource(UPSTREAM, agent=agent, reactor=self.clock)
        for method in (b"CONNECT", b"TRACE", b"BREW"):
            request = StreamingRequest([], method=method, uri=b"/stream")
            self.assertEqual(render(proxy, request), b"method %s is not forwarded\n" % (method,))
            self.assertEqual(request.responseCode, 405)
            self.assertEqual(
                request.responseHeaders.getRawHeaders(b"allow"), [b"DELETE, GET, HEAD, OPTIONS, PATCH, POST, PUT"]
            )
        self.assertEqual(agent.requests, [])

    def test_retriesOnlyConnectionFailures(self) -> None:
        """
        A connection that could not be made is tried again, up to
        C{retries} times, a little later each time.
        """
        agent = FakeAgent(fail(ConnectionRefusedError()), fail(ConnectionRefusedError()), Deferred())
        request, _ = self.render(agent, retries=2)
        self.assertEqual(len(agent.requests), 1)
        self.clock.advance(0.1)
        self.assertEqual(len(agent.requests), 2)
        self.clock.advance(0.2)
        self.assertEqual(len(agent.requests), 3)
        self.assertEqual(request.written, [])

    def test_retriesRunOut(self) -> None:
        agent = FakeAgent(fail(ConnectionRefusedError()), fail(ConnectionRefusedError()))
        request, _ = self.render(agent, retries=1)
        self.clock.advance(0.1)
        self.assertEqual(len(agent.requests), 2)
        self.assertAnswer(request, 502, b"upstream refused the connection")

    def test_outOfTimeBetweenAttempts(self) -> None:
        """
        When the deadline passes while a retry waits, the client hears why
        the last attempt failed: it never connected, so not a 504.
        """
        agent = FakeAgent(*[fail(ConnectionRefusedError()) for _ in range(3)])
        # The third failure is never asked for: handle it, or trial reports
        # an unhandled error in a Deferred.
        self.addCleanup(lambda: agent.results[-1].addErrback(lambda _: None))
        request, _ = self.render(agent, timeout=0.25, retries=9)
        self.clock.pump([0.05] * 10)
        # At 0 s and 0.1 s; the third would be at 0.3 s, past the deadline.
        self.assertEqual(len(agent.requests), 2)
        self.assertAnswer(request, 502, b"upstream refused the connection")

    def test_noRetryOnceSent(self) -> None:
        """
        A request that may have reached the upstream (it failed after it was
        sent) is never sent again.
        """
        agent = FakeAgent(fail(ResponseNeverReceived([Failure(ConnectionLost())])))
        request, _ = self.render(agent, retries=3)
        self.clock.advance(1)
        self.assertEqual(len(agent.requests), 1)
        self.assertAnswer(request, 502, b"upstream failed before responding (ResponseNeverReceived)")


class UpstreamURLTests(SynchronousTestCase):
    def test_oneSlashBetween(self) -> None:
        """
        The upstream's path and the rest are joined with exactly one slash,
        and the queries of both are kept.
        """
        clock = Clock()
        cases = [
            (b"http://u/v1/", b"chat", b"", b"http://u/v1/chat"),
            (b"http://u/v1/", b"/chat", b"", b"http://u/v1/chat"),
            (b"http://u/v1", b"chat", b"", b"http://u/v1/chat"),
            (b"http://u/v1", b"/chat", b"a=1", b"http://u/v1/chat?a=1"),
            (b"http://u/gen", b"", b"a=1", b"http://u/gen?a=1"),
            (b"http://u/gen?f=sse", b"/x", b"a=1", b"http://u/gen/x?f=sse&a=1"),
        ]
        for upstream, rest, query, expected in cases:
            proxy = StreamProxyResource(upstream, agent=FakeAgent(Deferred()), reactor=clock)
            self.assertEqual(proxy.upstreamURL(rest, query), expected, (upstream, rest))
