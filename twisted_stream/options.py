# -*- test-case-name: tests.test_options -*-
"""
Command-line options of the C{chunkgen} and C{chunkproxy} twistd plugins.

Every bad value is refused when the options are parsed, with a one-line
reason, before anything listens.
"""

from __future__ import annotations

import math
from typing import Any, Optional

from hyperlink import URL
from twisted.internet.endpoints import serverFromString
from twisted.python import usage

from twisted_stream.generator import StreamSpec, parseCount, parseInterval

__all__ = ["GeneratorOptions", "ProxyOptions", "parseTimeout", "parseHTTPURL"]

_TWISTD_PIDFILE = "twistd.pid"
"""twistd's own default pidfile, shared by every plugin unless one says
otherwise."""


def parseTimeout(text: str) -> float:
    """
    Parse a timeout.

    @param text: A number of seconds, more than 0.
    @return: The number.
    @raise ValueError: With a one-line reason, for anything else.
    """
    try:
        seconds = float(text)
    except ValueError:
        seconds = math.nan
    if not (math.isfinite(seconds) and seconds > 0):
        raise ValueError(f"a timeout must be a number of seconds above 0, not {text!r}")
    return seconds


def parseHTTPURL(text: str) -> bytes:
    """
    Parse an HTTP URL, such as an upstream's.

    @param text: An absolute C{http://} or C{https://} URL.
    @return: The URL, encoded as a URI.
    @raise ValueError: With a one-line reason, for anything else.
    """
    try:
        url = URL.from_text(text)
    except Exception:
        raise ValueError(f"not a URL: {text!r}") from None
    if url.scheme not in ("http", "https") or not url.host:
        raise ValueError(f"need an absolute http:// or https:// URL, not {text!r}")
    if url.fragment:
        raise ValueError(f"the URL must not have a #fragment: {text!r}")
    return url.to_uri().to_text().encode("ascii")


def _checkListen(description: str) -> str:
    # serverFromString only builds the endpoint: nothing listens yet, but a
    # description it cannot read is refused here, before twistd starts.
    from twisted.internet import reactor

    try:
        serverFromString(reactor, description)
    except Exception as e:
        raise usage.UsageError(f"--listen {description!r}: {e}") from None
    return description


class _PluginOptions(usage.Options):
    """
    What the two plugins' options share: a listening address, and defaults
    for twistd's pidfile and log file named after the plugin, so that
    C{twistd -n chunkgen} and C{twistd -n chunkproxy} started from one
    directory do not both claim C{twistd.pid}.
    """

    tapname = ""
    parent: Optional[Any]

    def postOptions(self) -> None:
        """
        Check the listening address, and name twistd's files after the
        plugin where the user named none.
        """
        _checkListen(self["listen"])
        parent = getattr(self, "parent", None)
        if parent is None:
            return
        # twistd parses its own options first and ours last, so its values
        # are still the raw ones here. An explicit --pidfile=twistd.pid is
        # indistinguishable from the default and gets the plugin's name too.
        if parent.get("pidfile") == _TWISTD_PIDFILE:
            parent["pidfile"] = f"{self.tapname}.pid"
        if not parent.get("nodaemon") and parent.get("logfile") is None:
            parent["logfile"] = f"{self.tapname}.log"


class GeneratorOptions(_PluginOptions):
    """
    Options of C{twistd chunkgen}.
    """

    tapname = "chunkgen"
    synopsis = "[options]"
    longdesc = (
        "Streams numbered chunks over HTTP at GET /generate, one per tick of a timer. "
        "Query parameters count, interval, size and format override the defaults per request."
    )
    optParameters = [
        ["listen", "l", "tcp:8081", "Endpoint description to listen on."],
        ["count", "c", 100, "Chunks per stream, 0 to 1000000.", parseCount],
        ["interval", "i", 0.1, "Seconds between chunks, 0 to 60.", parseInterval],
    ]

    def spec(self) -> StreamSpec:
        """
        @return: The stream a request with no query parameters gets.
        """
        return StreamSpec(count=self["count"], interval=self["interval"])


class ProxyOptions(_PluginOptions):
    """
    Options of C{twistd chunkproxy}.
    """

    tapname = "chunkproxy"
    synopsis = "[options]"
    longdesc = (
        "Serves a live page at / and forwards GET /stream to the upstream URL "
        "(with the query string), passing each chunk on the moment it arrives."
    )
    optParameters = [
        ["listen", "l", "tcp:8080", "Endpoint description to listen on."],
        [
            "upstream",
            "u",
            b"http://localhost:8081/generate",
            "The URL that /stream forwards to.",
            parseHTTPURL,
        ],
        [
            "connect-timeout",
            None,
            10.0,
            "Seconds until the upstream's response headers must have arrived"
            " (502 if it could not be reached by then, 504 if it sent no headers).",
            parseTimeout,
        ],
    ]
