# -*- test-case-name: tests.test_headers -*-
"""
Which headers a proxy passes on, both ways (RFC 9110, section 7.6).

End-to-end headers pass through as they came, repeated ones kept as they
are (several C{Set-Cookie}s stay several). Hop-by-hop headers are dropped:
C{Connection} and every header it names, C{Keep-Alive},
C{Proxy-Authenticate}, C{Proxy-Authorization}, C{TE}, C{Trailer},
C{Transfer-Encoding} and C{Upgrade}. The upstream gets its own C{Host} (the
agent sets it from the upstream URL), and the C{X-Forwarded-*} and C{Via}
headers that say where the request came from.
"""

from __future__ import annotations

import re
from typing import Iterable, Optional, Sequence

from twisted.web.http_headers import Headers
from twisted.web.server import Request

__all__ = [
    "HOP_BY_HOP",
    "VIA_NAME",
    "endToEnd",
    "endToEndFields",
    "fieldsOf",
    "forwardedRequestHeaders",
    "forwardedResponseHeaders",
    "headerProblem",
    "valueProblem",
]

HOP_BY_HOP = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-authenticate",
        b"proxy-authorization",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
        # Not in RFC 9110, but sent by old clients in its place.
        b"proxy-connection",
    }
)
"""Headers that concern one connection, never passed on (lower case)."""

VIA_NAME = b"chunkproxy"
"""How this proxy names itself in C{Via}."""


_TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+\Z")
_CONTROL = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]")


def valueProblem(value: bytes) -> Optional[str]:
    """
    Check a header value, or a status line's reason phrase, as RFC 9110
    (section 5.5) has it: visible bytes, spaces and tabs, nothing that could
    end a line or confuse the parser of whoever reads it next.

    @param value: The value as it came.
    @return: What is wrong with it, as the end of a sentence, or L{None}.
    """
    if _CONTROL.search(value):
        return "holds a control character"
    return None


def headerProblem(name: bytes, value: bytes) -> Optional[str]:
    """
    Check a header line, the same way in both directions.

    @param name: The header's name: must be an RFC 9110 token.
    @param value: Its value (see L{valueProblem}).
    @return: What is wrong with it, as the end of a sentence, or L{None}.
    """
    if not _TOKEN.match(name):
        return "has a name that is not a token"
    return valueProblem(value)


def endToEndFields(fields: Iterable[tuple[bytes, bytes]], drop: Iterable[bytes] = ()) -> dict[bytes, list[bytes]]:
    """
    The end-to-end fields of a message: the one home of the rule.

    @param fields: A message's header lines, C{(name, value)}, in order,
        C{Connection} among them.
    @param drop: More header names to leave out (any case).
    @return: Each lower-cased name kept with its values in order: not the
        hop-by-hop ones, not those that C{Connection} names, not C{drop}.
    """
    fields = list(fields)
    dropped = set(HOP_BY_HOP)
    dropped.update(name.lower() for name in drop)
    for name, value in fields:
        if name.lower() == b"connection":
            dropped.update(token.strip().lower() for token in value.split(b",") if token.strip())
    kept: dict[bytes, list[bytes]] = {}
    for name, value in fields:
        lowered = name.lower()
        if lowered not in dropped:
            values = kept.get(lowered)
            if values is None:
                kept[lowered] = [value]
            else:
                values.append(value)
    return kept


def fieldsOf(headers: Headers) -> list[tuple[bytes, bytes]]:
    """
    @return: The header lines of a L{Headers}, C{(name, value)}.
    """
    return [(name, value) for name, values in headers.getAllRawHeaders() for value in values]


def endToEnd(headers: Headers, drop: Iterable[bytes] = ()) -> Headers:
    """
    The end-to-end headers of a message (see L{endToEndFields}).

    @param headers: A message's headers.
    @param drop: More header names to leave out (any case).
    @return: A new L{Headers}; the original is left as it was.
    """
    return Headers(endToEndFields(fieldsOf(headers), drop))


def _appended(headers: Headers, name: bytes, value: bytes) -> None:
    existing = headers.getRawHeaders(name)
    headers.setRawHeaders(name, [b", ".join([*existing, value]) if existing else value])


def _viaEntry(request: Request) -> bytes:
    # "HTTP/1.1" is sent as "1.1" (RFC 9110, section 7.6.3).
    protocol = request.clientproto.split(b"/", 1)[-1] or b"1.1"
    return protocol + b" " + VIA_NAME


def forwardedRequestHeaders(
    request: Request, drop: Sequence[bytes] = (), add: Sequence[tuple[bytes, bytes]] = ()
) -> Headers:
    """
    The headers to send upstream for a client's request.

    @param request: The client's request.
    @param drop: More of the client's headers to leave out, such as a token
        the proxy itself checked.
    @param add: Headers to set, replacing whatever the client sent under
        those names (injected credentials).
    @return: The client's end-to-end headers, without C{Host} and
        C{Content-Length} (the agent sets both), plus C{X-Forwarded-For}
        (the client's address appended), C{X-Forwarded-Proto},
        C{X-Forwarded-Host} (what the client asked for) and C{Via}.
    """
    names = [name for name, _ in add]
    headers = endToEnd(
        request.requestHeaders,
        drop=[b"host", b"content-length", b"expect", b"x-forwarded-proto", b"x-forwarded-host", *drop, *names],
    )
    client = request.getClientAddress()
    clientHost = getattr(client, "host", None)
    if clientHost:
        _appended(headers, b"X-Forwarded-For", clientHost.encode("ascii"))
    headers.setRawHeaders(b"X-Forwarded-Proto", [b"https" if request.isSecure() else b"http"])
    host = request.requestHeaders.getRawHeaders(b"host")
    if host:
        headers.setRawHeaders(b"X-Forwarded-Host", [host[0]])
    _appended(headers, b"Via", _viaEntry(request))
    for name, value in add:
        headers.addRawHeader(name, value)
    return headers


def forwardedResponseHeaders(fields: Iterable[tuple[bytes, bytes]], request: Request) -> dict[bytes, list[bytes]]:
    """
    The headers to send the client for an upstream's response.

    @param fields: The upstream response's header lines as they came,
        C{Connection} included (so that what it names is dropped).
    @param request: The client's request.
    @return: The upstream's end-to-end headers, plus C{Via}: each
        lower-cased name with its values.
    """
    kept = endToEndFields(fields)
    via = kept.get(b"via")
    entry = _viaEntry(request)
    kept[b"via"] = [b", ".join([*via, entry])] if via else [entry]
    return kept
