# -*- test-case-name: tests.test_options -*-
"""
Command-line options of the C{chunkgen} and C{chunkproxy} twistd plugins.

Every bad value is refused when the options are parsed, with a one-line
reason, before anything listens.
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass, field
from typing import Any, Optional

from hyperlink import URL
from twisted.internet.endpoints import serverFromString
from twisted.python import usage

from twisted_stream.generator import StreamSpec, parseCount, parseInterval
from twisted_stream.mockllm import Pace

__all__ = [
    "GeneratorOptions",
    "ProxyOptions",
    "RouteOptions",
    "parseHTTPURL",
    "parseHeader",
    "parseRoute",
    "parseTimeout",
    "resolveSecret",
]

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


def _bounded(text: str, name: str, low: float, high: float) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and low <= value <= high):
        raise ValueError(f"{name} must be a number from {low:g} to {high:g}, not {text!r}")
    return value


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
        ["ttft", None, 0.3, "Mock LLM: seconds to the first token, 0 to 60.", lambda t: _bounded(t, "ttft", 0, 60)],
        [
            "tokens-per-second",
            None,
            30.0,
            "Mock LLM: tokens a second after the first, 0.01 to 10000.",
            lambda t: _bounded(t, "tokens-per-second", 0.01, 10000),
        ],
    ]

    def pace(self) -> Pace:
        """
        @return: The mock LLM's default pace.
        """
        return Pace(self["ttft"], self["tokens-per-second"])

    def spec(self) -> StreamSpec:
        """
        @return: The stream a request with no query parameters gets.
        """
        return StreamSpec(count=self["count"], interval=self["interval"])


def parseHeader(text: str) -> tuple[bytes, bytes]:
    """
    Parse a header to inject.

    @param text: C{NAME: VALUE}, where VALUE may be C{env:VARNAME} to take it
        from the environment (so that a key is never on the command line).
    @return: The name and the value.
    @raise ValueError: With a one-line reason that never shows the value.
    """
    name, colon, value = text.partition(":")
    name, value = name.strip(), value.strip()
    if not colon or not _TOKEN.fullmatch(name):
        raise ValueError(f"an injected header must be 'NAME: VALUE', not {name!r}...")
    resolved = resolveSecret(value, f"the value of {name}")
    if "\r" in resolved or "\n" in resolved or "\0" in resolved:
        raise ValueError(f"the value of {name} must not contain CR, LF or NUL")
    if not resolved.isascii():
        raise ValueError(f"the value of {name} must be ASCII")
    return name.encode("ascii"), resolved.encode("ascii")


def resolveSecret(value: str, what: str) -> str:
    """
    Take a value as it is, or from the environment.

    @param value: A value, or C{env:VARNAME}.
    @param what: What the value is, for a reason.
    @return: The value.
    @raise ValueError: If the variable is not set or empty.
    """
    if not value.startswith("env:"):
        if not value:
            raise ValueError(f"{what} is empty")
        return value
    variable = value[len("env:") :]
    found = os.environ.get(variable, "")
    if not found:
        raise ValueError(f"{what} names the environment variable {variable}, which is not set or empty")
    return found


def parseRoute(text: str) -> tuple[bytes, bytes]:
    """
    Parse a route.

    @param text: C{PREFIX=URL}: a path prefix starting with C{/}, and an
        absolute C{http://} or C{https://} URL.
    @return: The prefix and the URL.
    @raise ValueError: With a one-line reason.
    """
    prefix, equals, url = text.partition("=")
    if not equals or not prefix.startswith("/") or any(c in prefix for c in "?#\\ ") or "//" in prefix:
        raise ValueError(f"a route must be PREFIX=URL with PREFIX a path starting with /, not {text!r}")
    return prefix.encode("ascii"), parseHTTPURL(url)


def parseWholeNumber(text: str) -> int:
    """
    Parse a whole number of at least 0.

    @raise ValueError: With a one-line reason.
    """
    if not text.isdigit():
        raise ValueError(f"need a whole number, not {text!r}")
    return int(text)


def parseOptionalSeconds(text: str) -> Optional[float]:
    """
    Parse a number of seconds, 0 meaning never.

    @return: The seconds, or L{None} for 0.
    @raise ValueError: With a one-line reason.
    """
    if text.strip() in ("0", "0.0"):
        return None
    return parseTimeout(text)


_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")


@dataclass
class RouteOptions:
    """
    One route as the command line gave it.

    @ivar prefix: The path prefix.
    @ivar upstream: The upstream URL.
    @ivar injectHeaders: Headers to set on its upstream requests.
    """

    prefix: bytes
    upstream: bytes
    injectHeaders: list[tuple[bytes, bytes]] = field(default_factory=list)


class ProxyOptions(_PluginOptions):
    """
    Options of C{twistd chunkproxy}.
    """

    tapname = "chunkproxy"
    synopsis = "[options]"
    longdesc = (
        "Forwards requests to upstream URLs by path prefix (--route), any method with its body, "
        "streaming each response back the moment each piece arrives; serves a live page at /. "
        "--upstream is the route for /stream. --inject-header applies to the --route given before "
        "it, or to every route when given before any --route."
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
        [
            "idle-timeout",
            None,
            300.0,
            "Seconds the upstream may send no body bytes mid-stream before the client's"
            " connection is closed as truncated; 0: never.",
            parseOptionalSeconds,
        ],
        [
            "heartbeat",
            None,
            15.0,
            "Seconds of silence on a text/event-stream response (also before its first event)"
            " after which ': keep-alive' is sent between events; 0: never.",
            parseOptionalSeconds,
        ],
        [
            "client-timeout",
            None,
            60.0,
            "Seconds a client connection may send nothing (while no response streams to it)"
            " before it is closed.",
            parseTimeout,
        ],
        [
            "retries",
            None,
            1,
            "Times to try again a request whose connection failed before it was sent"
            " (never one that reached the upstream).",
            parseWholeNumber,
        ],
        ["max-body", None, 1024 * 1024, "Largest request body forwarded, in bytes (413 above).", parseWholeNumber],
        [
            "max-response-header-bytes",
            None,
            64 * 1024,
            "Largest upstream response head (status line and headers), in bytes; 502 above.",
            parseWholeNumber,
        ],
        [
            "max-response-headers",
            None,
            100,
            "Most header lines in an upstream response; 502 above.",
            parseWholeNumber,
        ],
        [
            "dns-ttl",
            None,
            60.0,
            "Seconds an upstream host name's addresses are used before they are looked up again"
            " (sooner after a connection to them fails).",
            parseTimeout,
        ],
        [
            "upstream-ca",
            None,
            None,
            "PEM file of the CA certificates to trust for https:// upstreams, instead of the system's.",
        ],
        [
            "require-token",
            None,
            None,
            "env:VARNAME: answer 401 to requests without 'Authorization: Bearer <its value>'"
            " (which is then not passed on).",
        ],
    ]

    def __init__(self) -> None:
        super().__init__()
        self.routes: list[RouteOptions] = []
        self.injectHeaders: list[tuple[bytes, bytes]] = []

    def opt_route(self, text: str) -> None:
        """
        PREFIX=URL: forward paths that start with PREFIX to URL plus the rest
        of the path plus the query string (repeatable; the longest prefix wins).
        """
        try:
            prefix, url = parseRoute(text)
        except ValueError as e:
            raise usage.UsageError(str(e)) from None
        if any(route.prefix == prefix for route in self.routes):
            raise usage.UsageError(f"two routes for {prefix.decode()}")
        self.routes.append(RouteOptions(prefix, url))

    def opt_inject_header(self, text: str) -> None:
        """
        'NAME: VALUE' (VALUE may be env:VARNAME): set this header on every
        upstream request of the --route before it (of every route, given
        before any), replacing the client's (repeatable).
        """
        try:
            header = parseHeader(text)
        except ValueError as e:
            raise usage.UsageError(str(e)) from None
        (self.routes[-1].injectHeaders if self.routes else self.injectHeaders).append(header)

    def postOptions(self) -> None:
        """
        Check the options, and resolve C{--require-token}.
        """
        super().postOptions()
        if self["require-token"] is not None:
            try:
                self["require-token"] = resolveSecret(self["require-token"], "--require-token").encode("utf-8")
            except ValueError as e:
                raise usage.UsageError(str(e)) from None
        if self["upstream-ca"] is not None and not os.path.isfile(self["upstream-ca"]):
            raise usage.UsageError(f"--upstream-ca {self['upstream-ca']!r} is not a file")

    def allRoutes(self) -> list[RouteOptions]:
        """
        @return: Every route: C{--upstream} as C{/stream} (unless a C{--route}
            claims C{/stream}), then each C{--route} (or, when none is given,
            C{/v1/} to the C{--upstream}'s origin, the generator's mock LLM),
            each with the headers to inject into its requests.
        """
        routes = list(self.routes)
        if not routes:
            # No routes given: /v1/ goes to the generator's mock LLM, beside
            # the generator's stream, so the page's chat mode works too.
            origin = URL.from_text(self["upstream"].decode("ascii")).replace(path=("v1", ""), query=(), fragment="")
            routes.append(RouteOptions(b"/v1/", origin.to_text().encode("ascii")))
        if not any(route.prefix == b"/stream" for route in routes):
            routes.insert(0, RouteOptions(b"/stream", self["upstream"]))
        return [
            RouteOptions(route.prefix, route.upstream, [*self.injectHeaders, *route.injectHeaders])
            for route in routes
        ]
