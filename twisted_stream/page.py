# -*- test-case-name: tests.test_page -*-
"""
The page that shows chunks arriving live in a browser.

It is one self-contained HTML file (no CDN: the machine may be offline) that
fetches C{stream} relative to its own URL with C{fetch()} and a
C{ReadableStream} reader, and adds one row per piece as it arrives, with its
arrival time and the gap since the previous one.
"""

from __future__ import annotations

from importlib.resources import files

from twisted.web.server import Request

from twisted_stream.http._text import PlainResource

__all__ = ["PageResource", "pageHTML"]


def pageHTML() -> bytes:
    """
    The page's HTML.

    @return: The contents of C{page.html}, shipped inside the package.
    """
    return files("twisted_stream").joinpath("page.html").read_bytes()


class PageResource(PlainResource):
    """
    Serves the page.
    """

    isLeaf = True

    def __init__(self) -> None:
        super().__init__()
        self._html = pageHTML()

    def render_GET(self, request: Request) -> bytes:
        """
        Answer with the page.

        @param request: A C{GET} request.
        @return: The HTML.
        """
        request.setHeader(b"Content-Type", b"text/html; charset=utf-8")
        request.setHeader(b"Cache-Control", b"no-cache")
        return self._html
