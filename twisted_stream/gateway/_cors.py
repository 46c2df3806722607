# -*- test-case-name: tests.test_cors -*-
"""
Cross-origin resource sharing for browser apps on other origins: the rules
as a value, over header names and values only, tested without sockets.

A browser app on another origin that calls an LLM API through the gateway
sends a preflight C{OPTIONS} before each POST with C{Authorization} or a
JSON body. The gateway answers it itself (the upstream would answer 405, or
nothing useful), and marks its other answers as readable by that origin,
exposing the response headers a streaming client reads (request ids, rate
limits, the mock's own).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Optional

from twisted.web.http_headers import Headers

__all__ = ["CorsPolicy", "Preflight"]

_SAFE_REQUEST_HEADERS = frozenset(
    {
        b"accept",
        b"accept-language",
        b"authorization",
        b"cache-control",
        b"content-language",
        b"content-type",
        b"last-event-id",
        b"openai-beta",
        b"openai-organization",
        b"openai-project",
        b"x-api-key",
        b"x-requested-with",
    }
)
"""Request headers browsers send to LLM APIs, allowed by name."""

_REQUEST_HEADER_PREFIXES = (b"x-stainless-", b"anthropic-", b"x-goog-", b"x-mock-")
"""... and by prefix: the openai and anthropic SDKs' own, Gemini's, the
mock LLM's."""

_NOT_EXPOSED = frozenset(
    {
        # Readable without being exposed (CORS-safelisted response headers).
        b"cache-control",
        b"content-language",
        b"content-length",
        b"content-type",
        b"expires",
        b"last-modified",
        b"pragma",
        # Never to a page.
        b"set-cookie",
        b"set-cookie2",
        # About the connection or the cache, not the answer.
        b"connection",
        b"keep-alive",
        b"transfer-encoding",
        b"vary",
    }
)


@dataclass(frozen=True)
class Preflight:
    """
    The answer to a preflight request.

    @ivar code: C{204} when allowed, C{403} when not.
    @ivar headers: The C{Access-Control-*} headers (none when refused).
    @ivar reason: Why it was refused, in one line; empty when allowed.
    """

    code: int
    headers: tuple[tuple[bytes, bytes], ...]
    reason: str = ""


@dataclass(frozen=True)
class CorsPolicy:
    """
    Which origins may read the gateway's answers, and what they may send.

    @ivar origins: The allowed origins as browsers send them
        (C{https://app.example}), or C{*} alone for any.
    @ivar methods: The methods a preflight may ask for.
    @ivar maxAge: Seconds a browser may keep a preflight's answer.
    """

    origins: frozenset[bytes]
    methods: tuple[bytes, ...]
    maxAge: int = 600

    @property
    def anyOrigin(self) -> bool:
        """
        @return: Whether every origin is allowed (C{*}).
        """
        return b"*" in self.origins

    def allows(self, origin: Optional[bytes]) -> bool:
        """
        @param origin: A request's C{Origin}, if any.
        @return: Whether that origin may read the answer.
        """
        return origin is not None and (self.anyOrigin or origin in self.origins)

    @staticmethod
    def isPreflight(method: bytes, headers: Headers) -> bool:
        """
        @return: Whether a request is a CORS preflight (to be answered here,
            never forwarded).
        """
        return (
            method == b"OPTIONS"
            and headers.hasHeader(b"origin")
            and headers.hasHeader(b"access-control-request-method")
        )

    def preflight(self, headers: Headers) -> Preflight:
        """
        Answer a preflight request.

        @param headers: Its headers.
        @return: The answer: what it may send, or why not.
        """
        origin = _one(headers, b"origin")
        if not self.allows(origin):
            return Preflight(403, (), f"origin {_shown(origin)} is not allowed")
        method = _one(headers, b"access-control-request-method") or b""
        if method not in self.methods:
            return Preflight(403, (), f"method {_shown(method)} is not allowed")
        asked = [
            name.strip().lower()
            for value in headers.getRawHeaders(b"access-control-request-headers", [])
            for name in value.split(b",")
            if name.strip()
        ]
        for name in asked:
            if not _allowedRequestHeader(name):
                return Preflight(403, (), f"request header {_shown(name)} is not allowed")
        assert origin is not None
        answer = [
            *self._origin(origin),
            (b"Access-Control-Allow-Methods", b", ".join(self.methods)),
            (b"Access-Control-Max-Age", b"%d" % (self.maxAge,)),
        ]
        if asked:
            answer.append((b"Access-Control-Allow-Headers", b", ".join(asked)))
        return Preflight(204, tuple(answer))

    def responseHeaders(self, origin: bytes, names: Iterable[bytes]) -> list[tuple[bytes, bytes]]:
        """
        The headers that let an allowed origin read an answer.

        @param origin: The request's C{Origin} (allowed).
        @param names: The names of the answer's headers.
        @return: C{Access-Control-Allow-Origin}, C{Vary} where the answer
            depends on the origin, and C{Access-Control-Expose-Headers}
            naming the answer's own headers that a page could not read
            otherwise.
        """
        exposed = sorted(
            {
                name.lower()
                for name in names
                if name.lower() not in _NOT_EXPOSED and not name.lower().startswith(b"access-control-")
            }
        )
        headers = self._origin(origin)
        if exposed:
            headers.append((b"Access-Control-Expose-Headers", b", ".join(exposed)))
        return headers

    def _origin(self, origin: bytes) -> list[tuple[bytes, bytes]]:
        if self.anyOrigin:
            return [(b"Access-Control-Allow-Origin", b"*")]
        return [(b"Access-Control-Allow-Origin", origin), (b"Vary", b"Origin")]


def _allowedRequestHeader(name: bytes) -> bool:
    return name in _SAFE_REQUEST_HEADERS or name.startswith(_REQUEST_HEADER_PREFIXES)


def _one(headers: Headers, name: bytes) -> Optional[bytes]:
    values = headers.getRawHeaders(name)
    return values[0] if values and len(values) == 1 else None


def _shown(value: Optional[bytes]) -> str:
    return repr(value.decode("latin-1")[:80]) if value is not None else "(none)"
