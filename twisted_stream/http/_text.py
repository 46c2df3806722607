# -*- test-case-name: tests.test_generator,tests.test_proxy -*-
"""
Plain-text errors and the resource base class that uses them.

Twisted's own error pages are HTML, and its 405 page lists the methods in
prose. Every error this project sends is instead a status code and exactly
one line of plain text, so that C{curl} shows the reason as it is and a
program can log it as it is.
"""

from __future__ import annotations

from typing import Sequence

from twisted.web.resource import IResource, Resource
from twisted.web.server import Request

STREAMING_HEADERS: Sequence[tuple[bytes, bytes]] = (
    (b"Cache-Control", b"no-cache"),
    # nginx buffers proxied responses unless told otherwise per response.
    (b"X-Accel-Buffering", b"no"),
)
"""Headers that keep caches and buffering proxies in front of a stream from
holding it back."""


def oneLine(text: str, limit: int = 200) -> str:
    """
    Make C{text} safe to send as a one-line reason.

    @param text: Any text, perhaps partly from the client.
    @param limit: The most characters to keep.
    @return: C{text} with every control character escaped, cut to C{limit}.
    """
    escaped = "".join(
        c if c.isprintable() else c.encode("unicode_escape").decode("ascii")
        for c in text[:limit]
    )
    return escaped if len(text) <= limit else escaped + "..."


def textError(request: Request, code: int, reason: str) -> bytes:
    """
    Set up C{request} for a plain-text error response.

    @param request: The request being answered.
    @param code: The HTTP status code.
    @param reason: Why, in one line.
    @return: The body to return from a C{render} method.
    """
    request.setResponseCode(code)
    request.setHeader(b"Content-Type", b"text/plain; charset=utf-8")
    request.setHeader(b"Cache-Control", b"no-cache")
    return (oneLine(reason) + "\n").encode("utf-8")


class TextErrorResource(Resource):
    """
    A resource that answers every request with one plain-text error.
    """

    isLeaf = True

    def __init__(self, code: int, reason: str) -> None:
        """
        @param code: The HTTP status code.
        @param reason: Why, in one line.
        """
        super().__init__()
        self._code = code
        self._reason = reason

    def render(self, request: Request) -> bytes:
        """
        Answer with the error.

        @param request: Any request.
        @return: The one-line body.
        """
        return textError(request, self._code, self._reason)


_METHODS: dict[type, list[str]] = {}


def _methodsOf(cls: type) -> list[str]:
    # Per class, once: the answer depends only on the methods it defines.
    known = _METHODS.get(cls)
    if known is None:
        allowed = {name[len("render_") :] for name in dir(cls) if name.startswith("render_")}
        if "GET" not in allowed:
            allowed.discard("HEAD")
        known = _METHODS[cls] = sorted(allowed)
    return known


class PlainResource(Resource):
    """
    A resource whose unknown children and unsupported methods are answered
    with plain-text 404 and 405 errors.

    Subclasses define C{render_GET} and friends as usual; C{HEAD} is allowed
    wherever C{GET} is, as in L{Resource}.
    """

    def getChild(self, path: bytes, request: Request) -> IResource:
        """
        Answer a path below this resource that nothing was put at.

        @param path: The path segment that matched nothing.
        @param request: The request.
        @return: A resource that answers 404.
        """
        return TextErrorResource(404, "no such resource: " + request.path.decode("latin-1"))

    def methodsAllowed(self) -> list[str]:
        """
        The methods this resource answers.

        @return: Every C{METHOD} that has a C{render_METHOD}, sorted; C{HEAD}
            only where C{GET} is (L{Resource} answers C{HEAD} with
            C{render_GET}).
        """
        return _methodsOf(type(self))

    def render(self, request: Request) -> bytes | int:
        """
        Dispatch to C{render_METHOD}, or answer 405.

        @param request: The request.
        @return: What the C{render_METHOD} returns, or the 405 body.
        """
        allowed = self.methodsAllowed()
        method = request.method.decode("latin-1")
        if method not in allowed:
            request.setHeader(b"Allow", ", ".join(allowed).encode("ascii"))
            return textError(request, 405, f"method {method} is not allowed here")
        result: bytes | int = super().render(request)
        return result
