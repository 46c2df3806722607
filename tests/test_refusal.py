"""
Refusals and the request-head rules, byte for byte, without sockets.
"""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase
from twisted.web.http_headers import Headers
from twisted.web.test.requesthelper import DummyRequest

from twisted_stream.http._refusal import Refusal, RequestLimits, headerLineRefusal, headRefusal


class RefusalTests(SynchronousTestCase):
    def test_response(self) -> None:
        """
        A refusal written by a channel is a whole response that closes the
        connection: RFC 9110's phrase, plain text, its extra headers, and
        the reason as one line.
        """
        refusal = Refusal(431, "too\nmany", ((b"Retry-After", b"1"),))
        self.assertEqual(
            refusal.response(),
            b"HTTP/1.1 431 Request Header Fields Too Large\r\n"
            b"Content-Type: text/plain; charset=utf-8\r\n"
            b"Cache-Control: no-cache\r\n"
            b"Retry-After: 1\r\n"
            b"Content-Length: 10\r\n"
            b"Connection: close\r\n\r\n"
            b"too\\nmany\n",
        )

    def test_render(self) -> None:
        """
        The same refusal rendered into a request: its code, headers and
        one-line body.
        """
        request = DummyRequest([b""])
        body = Refusal(405, "no", ((b"Allow", b"GET"),)).render(request)  # type: ignore[arg-type]
        self.assertEqual((request.responseCode, body), (405, b"no\n"))
        self.assertEqual(request.responseHeaders.getRawHeaders(b"allow"), [b"GET"])
        self.assertEqual(request.responseHeaders.getRawHeaders(b"content-type"), [b"text/plain; charset=utf-8"])


class LimitsTests(SynchronousTestCase):
    def test_statuses(self) -> None:
        """
        An over-long request line is 414; a long header line, a head too
        large, too many headers are 431; each says its limit.
        """
        limits = RequestLimits(maxLineBytes=10, maxHeaderBytes=20, maxHeaders=3)
        self.assertEqual(limits.lineTooLong(True), Refusal(414, "the request line is over 10 bytes"))
        self.assertEqual(limits.lineTooLong(False), Refusal(431, "a request header line is over 10 bytes"))
        self.assertEqual(limits.headTooLarge(), Refusal(431, "the request's headers are over 20 bytes in all"))
        self.assertEqual(limits.tooManyHeaders(), Refusal(431, "the request has more than 3 headers"))

    def test_defaults(self) -> None:
        """
        nginx's sizes and Envoy's count.
        """
        self.assertEqual(RequestLimits(), RequestLimits(8192, 32768, 100))


class HeaderLineTests(SynchronousTestCase):
    def test_fine(self) -> None:
        for name, value in [
            (b"Accept", b"*/*"),
            (b"X-Tab", b"a\tb"),
            (b"Transfer-Encoding", b"chunked"),
            (b"Transfer-Encoding", b"Chunked"),
            (b"Content-Length", b"12"),
        ]:
            self.assertIsNone(headerLineRefusal(name, value), name)

    def test_controlCharacters(self) -> None:
        """
        Any control byte but tab in a value, and a name that is not a token,
        are 400 with the header named.
        """
        for value in [b"a\x01b", b"a\x7fb", b"a\x1bb", b"a\rb", b"a\x00b"]:
            self.assertEqual(
                headerLineRefusal(b"X-Evil", value), Refusal(400, "request header X-Evil holds a control character")
            )
        self.assertEqual(
            headerLineRefusal(b"Host ", b"x"), Refusal(400, "request header Host  has a name that is not a token")
        )

    def test_transferEncoding(self) -> None:
        """
        Anything but exactly C{chunked} is 501, as nginx answers.
        """
        for value in [b"gzip", b"identity", b"chunked, chunked", b"gzip, chunked", b"chunked;x=1", b""]:
            self.assertEqual(
                headerLineRefusal(b"Transfer-Encoding", value), Refusal(501, "Transfer-Encoding must be exactly chunked")
            )

    def test_contentLength(self) -> None:
        for value in [b"-1", b"1,1", b"0x10", b"1 2", b""]:
            self.assertEqual(
                headerLineRefusal(b"content-length", value), Refusal(400, "Content-Length must be a decimal number")
            )


class HeadTests(SynchronousTestCase):
    def test_host(self) -> None:
        """
        HTTP/1.1 needs exactly one C{Host}; HTTP/1.0 at most one.
        """
        self.assertIsNone(headRefusal(b"HTTP/1.1", Headers({b"Host": [b"a"]})))
        self.assertIsNone(headRefusal(b"HTTP/1.0", Headers()))
        self.assertEqual(
            headRefusal(b"HTTP/1.1", Headers()), Refusal(400, "an HTTP/1.1 request must have a Host header")
        )
        for version in [b"HTTP/1.0", b"HTTP/1.1"]:
            self.assertEqual(
                headRefusal(version, Headers({b"Host": [b"a", b"b"]})),
                Refusal(400, "the request has more than one Host header"),
            )

    def test_authorization(self) -> None:
        """
        Two C{Authorization} headers are 400: never "the last one wins".
        """
        headers = Headers({b"Host": [b"a"], b"Authorization": [b"Bearer a", b"Bearer b"]})
        self.assertEqual(
            headRefusal(b"HTTP/1.1", headers), Refusal(400, "the request has more than one Authorization header")
        )
