"""
Tests for L{twisted_stream.http.headers}.
"""

from __future__ import annotations

from typing import cast

from twisted.internet.address import IPv4Address
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.http_headers import Headers
from twisted.web.server import Request

from tests.support import StreamingRequest
from twisted_stream.http.headers import (
    endToEnd,
    forwardedRequestHeaders,
    forwardedResponseHeaders,
    headerProblem,
)


def _request(headers: dict[bytes, list[bytes]], secure: bool = False) -> Request:
    fake = StreamingRequest([])
    fake.client = IPv4Address("TCP", "203.0.113.7", 50000)
    fake.clientproto = b"HTTP/1.1"
    for name, values in headers.items():
        fake.requestHeaders.setRawHeaders(name, values)
    fake.secure = secure
    return cast(Request, fake)


class EndToEndTests(SynchronousTestCase):
    def test_hopByHopDropped(self) -> None:
        """
        Every hop-by-hop header of RFC 9110 7.6.1 is dropped, and so is every
        header that C{Connection} names; the rest pass with repeats kept.
        """
        headers = Headers(
            {
                b"Connection": [b"keep-alive, X-Secret-Hop", b"close"],
                b"Keep-Alive": [b"timeout=5"],
                b"Proxy-Authenticate": [b"Basic"],
                b"Proxy-Authorization": [b"Basic xyz"],
                b"TE": [b"trailers"],
                b"Trailer": [b"Expires"],
                b"Transfer-Encoding": [b"chunked"],
                b"Upgrade": [b"websocket"],
                b"X-Secret-Hop": [b"1"],
                b"Set-Cookie": [b"a=1", b"b=2"],
                b"Content-Type": [b"text/event-stream"],
            }
        )
        kept = endToEnd(headers)
        self.assertEqual(
            sorted((name.lower(), values) for name, values in kept.getAllRawHeaders()),
            [(b"content-type", [b"text/event-stream"]), (b"set-cookie", [b"a=1", b"b=2"])],
        )
        self.assertEqual(headers.getRawHeaders(b"upgrade"), [b"websocket"], "the original is kept as it was")

    def test_drop(self) -> None:
        """
        More names can be dropped, in any case.
        """
        kept = endToEnd(Headers({b"Authorization": [b"Bearer t"], b"Accept": [b"*/*"]}), drop=[b"AUTHORIZATION"])
        self.assertEqual(list(kept.getAllRawHeaders()), [(b"Accept", [b"*/*"])])


class ForwardedRequestTests(SynchronousTestCase):
    def test_forwardedHeaders(self) -> None:
        """
        The upstream gets the client's end-to-end headers, not its Host or
        Content-Length, plus where the request came from.
        """
        request = _request(
            {
                b"Host": [b"gateway.example"],
                b"Content-Length": [b"12"],
                b"Accept": [b"text/event-stream"],
                b"X-Forwarded-For": [b"198.51.100.1"],
                b"X-Forwarded-Proto": [b"https"],
                b"Via": [b"1.0 edge"],
                b"Connection": [b"keep-alive"],
            }
        )
        headers = forwardedRequestHeaders(request)
        self.assertIsNone(headers.getRawHeaders(b"host"))
        self.assertIsNone(headers.getRawHeaders(b"content-length"))
        self.assertIsNone(headers.getRawHeaders(b"connection"))
        self.assertEqual(headers.getRawHeaders(b"accept"), [b"text/event-stream"])
        self.assertEqual(headers.getRawHeaders(b"x-forwarded-for"), [b"198.51.100.1, 203.0.113.7"])
        self.assertEqual(headers.getRawHeaders(b"x-forwarded-proto"), [b"http"])
        self.assertEqual(headers.getRawHeaders(b"x-forwarded-host"), [b"gateway.example"])
        self.assertEqual(headers.getRawHeaders(b"via"), [b"1.0 edge, 1.1 chunkproxy"])

    def test_secure(self) -> None:
        headers = forwardedRequestHeaders(_request({}, secure=True))
        self.assertEqual(headers.getRawHeaders(b"x-forwarded-proto"), [b"https"])
        self.assertEqual(headers.getRawHeaders(b"x-forwarded-for"), [b"203.0.113.7"])

    def test_dropAndAdd(self) -> None:
        """
        Added headers replace whatever the client sent under their names;
        dropped ones are gone.
        """
        request = _request({b"Authorization": [b"Bearer client-token"], b"X-Api-Key": [b"client-key"]})
        headers = forwardedRequestHeaders(
            request, drop=[b"authorization"], add=[(b"X-Api-Key", b"server-key")]
        )
        self.assertIsNone(headers.getRawHeaders(b"authorization"))
        self.assertEqual(headers.getRawHeaders(b"x-api-key"), [b"server-key"])


class ForwardedResponseTests(SynchronousTestCase):
    def test_passedOnWithVia(self) -> None:
        """
        End-to-end header lines pass, grouped by name in their order, with
        Via added; hop-by-hop ones do not.
        """
        fields = [
            (b"Set-Cookie", b"a=1"),
            (b"Content-Length", b"10"),
            (b"Transfer-Encoding", b"chunked"),
            (b"set-cookie", b"b=2"),
            (b"Location", b"http://elsewhere/"),
        ]
        self.assertEqual(
            forwardedResponseHeaders(fields, _request({})),
            {
                b"set-cookie": [b"a=1", b"b=2"],
                b"content-length": [b"10"],
                b"location": [b"http://elsewhere/"],
                b"via": [b"1.1 chunkproxy"],
            },
        )

    def test_viaAppended(self) -> None:
        headers = forwardedResponseHeaders([(b"Via", b"1.1 cdn"), (b"Via", b"1.0 edge")], _request({}))
        self.assertEqual(headers[b"via"], [b"1.1 cdn, 1.0 edge, 1.1 chunkproxy"])

    def test_encodingAndLengthPassedOn(self) -> None:
        """
        The gateway never decodes a body, so the upstream's Content-Encoding
        and Content-Length pass on as they came.
        """
        headers = forwardedResponseHeaders([(b"Content-Length", b"10"), (b"Content-Encoding", b"gzip")], _request({}))
        self.assertEqual(headers[b"content-length"], [b"10"])
        self.assertEqual(headers[b"content-encoding"], [b"gzip"])

    def test_namedInConnectionDropped(self) -> None:
        """
        A header the upstream names in its Connection header is hop-by-hop,
        and is not passed on (nor is Connection), whatever its case.
        """
        fields = [(b"Connection", b"x-hop, keep-alive"), (b"X-Hop", b"1"), (b"X-End", b"2")]
        self.assertEqual(sorted(forwardedResponseHeaders(fields, _request({}))), [b"via", b"x-end"])


class HeaderProblemTests(SynchronousTestCase):
    """
    L{headerProblem}: the one check of header lines, for both directions.
    """

    def test_good(self) -> None:
        for name, value in [(b"X-A", b"v"), (b"a!#$%&'*+-.^_`|~9", b"tab\there"), (b"X", b""), (b"X", b"\x80\xff")]:
            self.assertIsNone(headerProblem(name, value), (name, value))

    def test_bad(self) -> None:
        for name, value, problem in [
            (b"X A", b"v", "has a name that is not a token"),
            (b"X:", b"v", "has a name that is not a token"),
            (b"", b"v", "has a name that is not a token"),
            (b"X", b"a\rb", "holds a control character"),
            (b"X", b"a\nb", "holds a control character"),
            (b"X", b"a\x00b", "holds a control character"),
            (b"X", b"a\x01b", "holds a control character"),
            (b"X", b"a\x7fb", "holds a control character"),
        ]:
            self.assertEqual(headerProblem(name, value), problem, (name, value))
