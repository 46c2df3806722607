# -*- test-case-name: tests.test_admission,tests.test_proxy -*-
"""
The rules a request must pass to be forwarded, from its head alone: the
one home of each, asked once per request (by the gateway's admission, or
by L{StreamProxyResource.render} in any other site).

  - L{requestTargetProblem}: the target's form and bytes, whatever protocol
    brought it;
  - L{targetProblem}: a path that cannot leave the upstream's base;
  - L{ForwardingRules}: a route's own (the method, the path, an ASCII
    query, the token, the body's declared size).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Optional
from urllib.parse import unquote_to_bytes

from twisted.web.http_headers import Headers

from twisted_stream.http._refusal import Refusal, tokenRefusal

__all__ = [
    "ALLOW_FORWARDED",
    "FORWARDED_METHODS",
    "NOT_ORIGIN_FORM",
    "ForwardingRules",
    "requestTargetProblem",
    "targetProblem",
]

FORWARDED_METHODS = (b"DELETE", b"GET", b"HEAD", b"OPTIONS", b"PATCH", b"POST", b"PUT")
"""The methods a proxy forwards; any other (C{CONNECT} among them) gets 405."""

NOT_ORIGIN_FORM = "the request target must be a path (origin-form), not an absolute URL"
"""Why a request target such as C{http://other.host/} is refused."""

ALLOW_FORWARDED = ((b"Allow", b", ".join(FORWARDED_METHODS)),)
"""The C{Allow} header of a C{405}: the methods forwarded."""

_ENCODED_DOT_SLASH = re.compile(rb"%(2e|2f|5c)", re.I)
_CONTROL = re.compile(rb"[\x00\r\n]|%(00|0d|0a)", re.I)


_NOT_IN_A_TARGET = re.compile(rb"[\x00-\x20\x7f#]")


def requestTargetProblem(target: bytes) -> Optional[str]:
    """
    Check a request target's form and bytes, the same whatever protocol
    brought it: HTTP/1.1's request line cannot carry a space or a control
    byte, and HTTP/2's C{:path} must not either (RFC 9113, section 8.3.1),
    though h2 lets them through.

    A fragment is refused rather than dropped: RFC 9112's request-target
    has none, so a client that sends one is broken, and what it meant
    (a path with a literal C{#}, percent-encoded as C{%23}?) is a guess.

    @param target: The request target as the client sent it.
    @return: A one-line reason to refuse it, or L{None}.
    """
    if not target.startswith(b"/"):
        return NOT_ORIGIN_FORM
    found = _NOT_IN_A_TARGET.search(target)
    if found is None:
        return None
    if found.group() == b"#":
        return "the request target must not contain a fragment (#)"
    return "the request target must not contain a space or a control byte"


def targetProblem(target: bytes, rest: bytes, prefixEndsWithSlash: bool) -> Optional[str]:
    """
    Check that a request target cannot leave its upstream's base.

    @param target: The request target as the client sent it.
    @param rest: The part of its path below where the proxy is mounted,
        still percent-encoded.
    @param prefixEndsWithSlash: Whether the mount point ends with C{/} (then a
        rest starting with C{/} would make C{//host} of the upstream path).
    @return: A one-line reason to refuse it, or L{None} if it is safe
        (its form and bytes are L{requestTargetProblem}'s to check, first).
    """
    if _CONTROL.search(target):
        return "the request target must not contain NUL, CR or LF"
    if b"\\" in target or b"%5c" in target.lower():
        return "the request target must not contain a backslash"
    belowMount = rest if prefixEndsWithSlash or not rest.startswith(b"/") else rest[1:]
    if belowMount.startswith(b"/"):
        return "the path must not have an empty segment after the route's prefix"
    decoded = unquote_to_bytes(rest)
    if _ENCODED_DOT_SLASH.search(decoded):
        return "the path must not contain double-encoded dots or slashes"
    if any(segment in (b".", b"..") for segment in decoded.split(b"/")):
        return "the path must not contain . or .. segments"
    return None


@dataclass(frozen=True)
class ForwardingRules:
    """
    A route's own rules.

    @ivar maxBody: The largest request body forwarded (C{413} above).
    @ivar requireToken: The bearer token requests must carry (C{401}
        without it), if any.
    """

    maxBody: int
    requireToken: Optional[bytes] = None
    tooLarge: Refusal = field(init=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "tooLarge", Refusal(413, f"the request body is over {self.maxBody} bytes"))

    def refusal(
        self,
        method: bytes,
        target: bytes,
        rest: bytes,
        prefixEndsWithSlash: bool,
        headers: Headers,
        length: Optional[int],
    ) -> Optional[Refusal]:
        """
        Decide from a request's head alone whether the route refuses it.
        The target's form and the header lines are checked before
        (L{requestTargetProblem}; L{twisted_stream.http._refusal}).

        @param method: The request's method.
        @param target: Its target, as the client sent it.
        @param rest: Its path below the mount point, still percent-encoded.
        @param prefixEndsWithSlash: Whether the mount point ends with C{/}.
        @param headers: Its headers.
        @param length: The length its body declares; L{None} if unknown.
        @return: Why it is refused, or L{None}.
        """
        if method not in FORWARDED_METHODS:
            return Refusal(405, f"method {method.decode('latin-1')} is not forwarded", ALLOW_FORWARDED)
        problem = targetProblem(target, rest, prefixEndsWithSlash)
        if problem is not None:
            return Refusal(400, problem)
        if not target.partition(b"?")[2].isascii():
            return Refusal(400, "the query string must be ASCII; percent-encode other bytes")
        if self.requireToken is not None:
            refusal = tokenRefusal(headers, self.requireToken)
            if refusal is not None:
                return refusal
        if length is not None and length > self.maxBody:
            return self.tooLarge
        return None
