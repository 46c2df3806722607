# -*- test-case-name: tests.test_refusal -*-
"""
Refusals: what the gateway answers instead of forwarding, and the rules for
a request's head that trusted proxies apply (RFC 9112 and RFC 9110), as pure
functions over the parsed pieces, tested without sockets.

A L{Refusal} is a status, one line of plain text and perhaps a header or
two (C{Allow}, C{WWW-Authenticate}). It is the same value whether it is
rendered into a Twisted L{Request} (in a resource) or written as raw bytes
by the gateway's channel, which refuses as soon as a request's head has
arrived, before any byte of its body is read.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from typing import Optional

from twisted.web.http import RESPONSES
from twisted.web.http_headers import Headers
from twisted.web.server import Request

from twisted_stream.http._text import oneLine, textError
from twisted_stream.http.headers import headerProblem

__all__ = ["Refusal", "RequestLimits", "headRefusal", "headerLineRefusal", "headerLinesRefusal", "tokenRefusal"]


_PHRASES = {
    408: b"Request Timeout",
    413: b"Content Too Large",
    414: b"URI Too Long",
    431: b"Request Header Fields Too Large",
}
"""RFC 9110's reason phrases where Twisted's are older or missing."""


@dataclass(frozen=True)
class Refusal:
    """
    An answer that ends a request: a status and a one-line reason.

    @ivar code: The HTTP status code.
    @ivar reason: Why, in one line (sent as the body, as plain text).
    @ivar headers: More headers for the response, such as C{Allow}.
    """

    code: int
    reason: str
    headers: tuple[tuple[bytes, bytes], ...] = ()

    def render(self, request: Request) -> bytes:
        """
        Set up C{request} to carry this refusal.

        @param request: The request being answered.
        @return: The body to return from a C{render} method.
        """
        for name, value in self.headers:
            request.setHeader(name, value)
        return textError(request, self.code, self.reason)

    @property
    def body(self) -> bytes:
        """
        @return: The one-line reason, as the response body.
        """
        return (oneLine(self.reason) + "\n").encode("utf-8")

    def fields(self) -> list[tuple[bytes, bytes]]:
        """
        @return: The response's header fields (lower-case names, as HTTP/2
            has them; nothing about the connection).
        """
        return [
            (b"content-type", b"text/plain; charset=utf-8"),
            (b"cache-control", b"no-cache"),
            *((name.lower(), value) for name, value in self.headers),
            (b"content-length", b"%d" % (len(self.body),)),
        ]

    def response(self) -> bytes:
        """
        This refusal as a whole HTTP/1.1 response that closes the
        connection, for a channel to write before the request is complete.

        @return: The status line, headers and body.
        """
        phrase = _PHRASES.get(self.code) or RESPONSES.get(self.code, b"Error")
        extra = b"".join(name + b": " + value + b"\r\n" for name, value in self.headers)
        body = self.body
        return (
            b"HTTP/1.1 %d %s\r\nContent-Type: text/plain; charset=utf-8\r\nCache-Control: no-cache\r\n"
            b"%sContent-Length: %d\r\nConnection: close\r\n\r\n%s"
            % (self.code, phrase, extra, len(body), body)
        )


@dataclass(frozen=True)
class RequestLimits:
    """
    How much of a request's head the gateway reads before refusing it.

    The defaults are nginx's (C{large_client_header_buffers 4 8k}: a request
    line or header line of 8 KiB, 32 KiB in all) and Envoy's (100 headers).

    @ivar maxLineBytes: The longest request line, and the longest header
        line (C{414} and C{431} above).
    @ivar maxHeaderBytes: The most bytes of request line and header lines
        together (C{431} above).
    @ivar maxHeaders: The most header lines (C{431} above).
    """

    maxLineBytes: int = 8 * 1024
    maxHeaderBytes: int = 32 * 1024
    maxHeaders: int = 100

    def lineTooLong(self, firstLine: bool) -> Refusal:
        """
        @param firstLine: Whether the line is the request line.
        @return: The refusal of a line over C{maxLineBytes}.
        """
        if firstLine:
            return Refusal(414, f"the request line is over {self.maxLineBytes} bytes")
        return Refusal(431, f"a request header line is over {self.maxLineBytes} bytes")

    def headTooLarge(self) -> Refusal:
        """
        @return: The refusal of a head over C{maxHeaderBytes}.
        """
        return Refusal(431, f"the request's headers are over {self.maxHeaderBytes} bytes in all")

    def tooManyHeaders(self) -> Refusal:
        """
        @return: The refusal of a head with more than C{maxHeaders} lines.
        """
        return Refusal(431, f"the request has more than {self.maxHeaders} headers")


def headerLineRefusal(name: bytes, value: bytes) -> Optional[Refusal]:
    """
    Check one header line of a request as it arrives.

    @param name: The header's name, as it came.
    @param value: Its value, without the white space around it.
    @return: Why the request is refused, or L{None}.
    """
    problem = headerProblem(name, value)
    if problem is not None:
        return Refusal(400, f"request header {oneLine(repr(name)[2:-1], 40)} {problem}")
    lowered = name.lower()
    if lowered == b"transfer-encoding" and value.lower() != b"chunked":
        # As nginx: a coding the gateway cannot undo is not implemented;
        # "identity" or a list would let two parsers disagree on the length.
        return Refusal(501, "Transfer-Encoding must be exactly chunked")
    if lowered == b"content-length" and not value.isdigit():
        return Refusal(400, "Content-Length must be a decimal number")
    return None


def headerLinesRefusal(headers: Headers) -> Optional[Refusal]:
    """
    Check a request's header lines together, where nothing checked them
    as they arrived (HTTP/2, or a channel other than the gateway's).

    @param headers: The request's headers.
    @return: Why one of them is refused (see L{headerLineRefusal}), or
        L{None}.
    """
    for name, values in headers.getAllRawHeaders():
        for value in values:
            refusal = headerLineRefusal(name, value)
            if refusal is not None:
                return refusal
    return None


def headRefusal(version: bytes, headers: Headers) -> Optional[Refusal]:
    """
    Check a request's head once all its header lines have arrived.

    @param version: The request's protocol, such as C{HTTP/1.1}.
    @param headers: Its headers.
    @return: Why the request is refused, or L{None}.
    """
    hosts = headers.getRawHeaders(b"host") or []
    if len(hosts) > 1:
        return Refusal(400, "the request has more than one Host header")
    if not hosts and version == b"HTTP/1.1":
        return Refusal(400, "an HTTP/1.1 request must have a Host header")
    if len(headers.getRawHeaders(b"authorization") or []) > 1:
        # Never "the last one wins": two parties would read two tokens.
        return Refusal(400, "the request has more than one Authorization header")
    return None


_UNAUTHORIZED = Refusal(
    401, "a valid Authorization: Bearer token is required", ((b"WWW-Authenticate", b'Bearer realm="chunkproxy"'),)
)


def tokenRefusal(headers: Headers, token: bytes) -> Optional[Refusal]:
    """
    Check a request's bearer token: the one home of the rule, for the
    routes and for C{/metrics}.

    @param headers: The request's headers.
    @param token: The token it must carry.
    @return: C{401} if its C{Authorization} is not C{Bearer <token>}, else
        L{None}.
    """
    given = headers.getRawHeaders(b"authorization", [b""])[-1]
    scheme, _, presented = given.partition(b" ")
    # Compared in constant time, so the timing tells nothing of the token.
    if hmac.compare_digest(presented.strip(), token) and scheme.lower() == b"bearer":
        return None
    return _UNAUTHORIZED
