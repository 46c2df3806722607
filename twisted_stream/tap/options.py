# -*- test-case-name: tests.test_options -*-
"""
What the command lines of the C{chunkgen} and C{chunkproxy} twistd plugins
(each plugin's C{Options} is in its own tap module) and C{chunkwatch} share:
the parsers of their values, and the plugins' common base.

Every bad value is refused when the options are parsed, with a one-line
reason, before anything listens.
"""

from __future__ import annotations

import os
import re
import sys
from typing import Any, Callable, Optional, Sequence

from hyperlink import URL
from twisted.internet.endpoints import serverFromString
from twisted.python import usage

from twisted_stream._compat import optionParsers
from twisted_stream._numbers import decimalNumber, wholeNumber
from twisted_stream.ops._logformat import LOG_FORMATS, select
from twisted_stream.ops._service import DEFAULT_BACKLOG

__all__ = [
    "PluginOptions",
    "parseHTTPURL",
    "parseHeader",
    "parsePrefix",
    "parseRoute",
    "parseTimeout",
    "wholeNumberOption",
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
    return decimalNumber(text, "a timeout", 0, unit=" of seconds", lowExcluded=True)


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


def parseOrigin(text: str) -> bytes:
    """
    Parse an origin allowed to call the gateway from a browser.

    @param text: C{scheme://host[:port]} as a browser sends it in
        C{Origin}, or C{*}.
    @return: It, as bytes.
    @raise ValueError: With a one-line reason.
    """
    if text == "*":
        return b"*"
    try:
        url = URL.from_text(text)
    except Exception:
        raise ValueError(f"--cors-origin needs scheme://host[:port], not {text!r}") from None
    if url.scheme not in ("http", "https") or not url.host or url.path not in ((), ("",)) or url.query or url.fragment:
        raise ValueError(f"--cors-origin needs scheme://host[:port] (no path), not {text!r}")
    return text.rstrip("/").encode("ascii")


_NOT_A_PORT = re.compile(r"invalid literal for int\(\) with base 10: (.*)")


def checkEndpoint(description: str, option: str = "--listen") -> str:
    """
    Check a listening endpoint's description before twistd starts: one that
    cannot be read, a port outside 0-65535, a UNIX socket in a folder that
    does not exist (each ended in a traceback once twistd ran).

    @return: The description.
    @raise usage.UsageError: Saying, in one line, what is wrong.
    """
    # serverFromString only builds the endpoint: nothing listens yet.
    from twisted.internet import reactor

    try:
        endpoint = serverFromString(reactor, description)
    except Exception as e:
        notAPort = _NOT_A_PORT.fullmatch(str(e))
        reason = f"the port must be a number from 0 to 65535, not {notAPort.group(1)}" if notAPort else str(e)
        raise usage.UsageError(f"{option} {description!r}: {reason}") from None
    port = getattr(endpoint, "_port", None)
    if isinstance(port, int) and not 0 <= port <= 65535:
        raise usage.UsageError(f"{option} {description!r}: the port must be a number from 0 to 65535, not {port}")
    path = getattr(endpoint, "_address", None)
    folder = os.path.dirname(os.path.abspath(path)) if isinstance(path, str) else None
    if folder is not None and not os.path.isdir(folder):
        raise usage.UsageError(f"{option} {description!r}: the folder {folder} does not exist")
    return description


class _NamedCoerce(usage.CoerceParameter):
    """
    Reads an option's value, and says which option a bad value was given
    to (Twisted's says "Parameter type enforcement failed").
    """

    def dispatch(self, parameterName: str, value: Optional[str]) -> None:
        if value is None:
            raise usage.UsageError(f"--{parameterName} needs a value")
        given = getattr(self.options, "given", None)
        if given is not None:
            given.add(parameterName)
        try:
            self.options.opts[parameterName] = self.coerce(value)
        except ValueError as e:
            reason = str(e)
            if reason.startswith(parameterName + " "):
                raise usage.UsageError("--" + reason) from None
            raise usage.UsageError(f"--{parameterName}: {reason}") from None


def parseLogFormat(text: str) -> str:
    """
    @return: C{text} or C{json}.
    @raise ValueError: For anything else.
    """
    if text not in LOG_FORMATS:
        raise ValueError(f"must be text or json, not {text!r}")
    return text


class PluginOptions(usage.Options):
    """
    What the two plugins' options share: a listening address, and defaults
    for twistd's pidfile and log file named after the plugin, so that
    C{twistd -n chunkgen} and C{twistd -n chunkproxy} started from one
    directory do not both claim C{twistd.pid}.

    Their help is written for people: each option's default as they would
    type it (a default given as text is read by the option's own parser,
    as a typed value is), sentences without runs of spaces; and a bad value
    is one line that names the option, said once, without the whole help
    around it.
    """

    tapname = ""
    parent: Optional[Any]

    def worker(self) -> Optional[int]:
        """
        @return: This process's number as a worker of a group (C{--workers}),
            named in its log; L{None} for a plugin without workers.
        """
        return None

    optParameters: list[list[Any]] = [
        [
            "backlog",
            None,
            DEFAULT_BACKLOG,
            "Connections the kernel queues for accepting, where --listen names no backlog"
            " (the kernel's somaxconn by default).",
            lambda text: wholeNumber(text, "backlog"),
        ],
        [
            "log-format",
            None,
            "text",
            "How the log is written: text (twistd's lines) or json (one JSON object per line,"
            " each event with its fields).",
            parseLogFormat,
        ],
    ]

    def __init__(self) -> None:
        super().__init__()
        self.given: set[str] = set()
        """The options the command line gave (a config file's are
        overridden by them)."""
        # An opt_ method's docstring keeps its indentation.
        self.docs = {name: " ".join(doc.split()) for name, doc in self.docs.items()}
        parsers = optionParsers(self)
        for name, dispatcher in parsers.items():
            if type(dispatcher) is usage.CoerceParameter:
                parsers[name] = _NamedCoerce(self, dispatcher.coerce)

    def parseOptions(self, options: Optional[Sequence[str]] = None) -> None:
        """
        Parse the plugin's options; under twistd, a bad one is said once, on
        standard error, and twistd exits 1.

        @raise SystemExit: Under twistd (a parent's options), for a bad
            option: twistd would print its synopsis and the whole help, then
            the reason again after its own full path.
        @raise usage.UsageError: For a bad option, where there is no parent.
        """
        try:
            super().parseOptions(options)
        except usage.UsageError as e:
            if getattr(self, "parent", None) is None:
                raise
            sys.stderr.write(f"{self.tapname}: {e}\n(twistd {self.tapname} --help lists the options.)\n")
            raise SystemExit(1) from None

    def valueParsers(self) -> dict[str, Callable[[str], Any]]:
        """
        @return: Each option that takes a value, by name, with what reads
            its value (for a config file, which says them too).
        """
        return {
            name: dispatcher.coerce
            for name, dispatcher in optionParsers(self).items()
            if isinstance(dispatcher, _NamedCoerce)
        }

    def _defaultsRead(self) -> None:
        # A default written as the user would type it ("60", a URL) is read
        # by the option's parser, as a value given would have been.
        for name, dispatcher in optionParsers(self).items():
            if isinstance(dispatcher, _NamedCoerce) and isinstance(self.opts.get(name), str):
                self.opts[name] = dispatcher.coerce(self.opts[name])

    def postOptions(self) -> None:
        """
        Read the defaults given as text, check the listening address, and
        name twistd's files after the plugin where the user named none.
        """
        self._defaultsRead()
        checkEndpoint(self["listen"])
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
        # twistd starts logging only after the plugin's options are read.
        select(parent, self["log-format"], self.worker())


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


def parsePrefix(text: str) -> bytes:
    """
    Parse a route's path prefix.

    @param text: A path starting with C{/}, without C{?}, C{#}, C{\\},
        spaces or C{//}.
    @return: It, as bytes.
    @raise ValueError: With a one-line reason.
    """
    if not text.startswith("/") or any(c in text for c in "?#\\ ") or "//" in text or not text.isascii():
        raise ValueError(f"a route's prefix must be a path starting with /, not {text!r}")
    return text.encode("ascii")


def parseRoute(text: str) -> tuple[bytes, bytes]:
    """
    Parse a route.

    @param text: C{PREFIX=URL}: a path prefix starting with C{/}, and an
        absolute C{http://} or C{https://} URL.
    @return: The prefix and the URL.
    @raise ValueError: With a one-line reason.
    """
    prefix, equals, url = text.partition("=")
    try:
        if not equals:
            raise ValueError
        parsedPrefix = parsePrefix(prefix)
    except ValueError:
        raise ValueError(f"a route must be PREFIX=URL with PREFIX a path starting with /, not {text!r}") from None
    return parsedPrefix, parseHTTPURL(url)


def wholeNumberOption(name: str) -> Callable[[str], int]:
    """
    @param name: An option's name.
    @return: What reads that option's value: a whole number of at least 0,
        or a one-line reason that names the option.
    """
    return lambda text: wholeNumber(text, name)


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
