# -*- test-case-name: tests.test_watch -*-
"""
C{chunkwatch URL}: watch a streaming HTTP response arrive, piece by piece.

C{chunkwatch --data '{"model": "mock-passage", "stream": true, "messages":
[...]}' http://localhost:8080/v1/chat/completions} watches an LLM's answer:
pieces that carry chat completion deltas are shown by their content.

For each piece it prints when it arrived, the gap since the previous one and,
where the piece carries the time it was sent (C{chunkgen}'s formats do), the
end-to-end delay; at the end a summary: chunks, bytes, time to first byte,
gap and delay percentiles, and whether the stream ended cleanly. It exits 0
on a clean end, 1 on a truncated stream or a failed connection, 2 on a bad
command line, and 3 on an HTTP error status.
"""

from __future__ import annotations

import json
import math
import re
import sys
from datetime import datetime, timedelta
from typing import Any, Generator, NoReturn, Optional, Sequence, TextIO

from treq.client import HTTPClient
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.internet.interfaces import IReactorTime
from twisted.internet.protocol import Protocol, connectionDone
from twisted.internet.task import react
from twisted.python import usage
from twisted.python.failure import Failure
from twisted.web.client import PotentialDataLoss, ResponseDone
from twisted.web.http_headers import Headers

from twisted_stream.tap.options import parseHTTPURL, parseTimeout
from twisted_stream.upstream._agent import UpstreamAgent
from twisted_stream.upstream._failover import onOrigin
from twisted_stream.upstream._wire import whyBrokenOff

__all__ = ["WatchOptions", "Watcher", "main", "percentile", "sendTime"]

EXIT_CLEAN = 0
EXIT_TRUNCATED = 1
EXIT_USAGE = 2
EXIT_HTTP_ERROR = 3

_SENT = re.compile(rb'"sent":\s*([0-9]+(?:\.[0-9]+)?)')
_CLOCK = re.compile(rb"\[([0-9]{2}):([0-9]{2}):([0-9]{2})\.([0-9]{3})\]")


def sendTime(piece: bytes, arrivedAt: float) -> Optional[float]:
    """
    Find when the first chunk in a piece was sent, if it says.

    @param piece: Bytes of a response body, as they arrived.
    @param arrivedAt: When they arrived, in seconds since the epoch.
    @return: The send time in seconds since the epoch, from an NDJSON
        C{"sent"} field or a C{[HH:MM:SS.mmm]} local clock time (taken as
        the latest such time not after noon tomorrow, so that a stream
        across midnight works); L{None} if the piece has neither.
    """
    found = _SENT.search(piece)
    if found is not None:
        return float(found.group(1))
    clock = _CLOCK.search(piece)
    if clock is None:
        return None
    hour, minute, second, millisecond = (int(part) for part in clock.groups())
    if hour > 23 or minute > 59 or second > 59:
        return None
    arrived = datetime.fromtimestamp(arrivedAt)
    sent = arrived.replace(hour=hour, minute=minute, second=second, microsecond=millisecond * 1000)
    if sent - arrived > timedelta(hours=12):
        sent -= timedelta(days=1)
    return sent.timestamp()


def percentile(values: Sequence[float], fraction: float) -> float:
    """
    The nearest-rank percentile.

    @param values: At least one value.
    @param fraction: From 0 to 1 (0.5 for the median).
    @return: The smallest value that at least C{fraction} of them do not
        exceed.
    """
    ordered = sorted(values)
    return ordered[max(0, math.ceil(fraction * len(ordered)) - 1)]


def _deltaContents(piece: bytes) -> Optional[list[str]]:
    """
    The contents of the chat completion deltas in a piece of an event
    stream, if it holds any (an OpenAI-style stream, such as the mock
    LLM's).
    """
    contents = []
    for line in piece.splitlines():
        if not line.startswith(b"data: {"):
            continue
        try:
            choices = json.loads(line[len(b"data: ") :]).get("choices") or [{}]
            content = (choices[0].get("delta") or {}).get("content")
        except (ValueError, AttributeError, IndexError, TypeError):
            return None
        if isinstance(content, str) and content:
            contents.append(content)
    return contents or None


def _shown(piece: bytes, width: int = 72) -> str:
    contents = _deltaContents(piece)
    if contents is not None:
        text = "delta " + " ".join(json.dumps(content, ensure_ascii=False) for content in contents)
    else:
        text = " | ".join(line for line in piece.decode("utf-8", "replace").splitlines() if line)
    return text if len(text) <= width else text[: width - 3] + "..."


def _spread(label: str, values: Sequence[float]) -> str:
    if not values:
        return f"{label}: none"
    parts = "  ".join(
        f"{name} {percentile(values, q) * 1000:.1f}" for name, q in (("p50", 0.5), ("p90", 0.9), ("p99", 0.99))
    )
    return f"{label}: {parts}  max {max(values) * 1000:.1f}"


class Watcher(Protocol):
    """
    Receives a response body, printing a line per piece as it arrives, and
    the summary when it ends.

    @ivar done: Fires with the exit code when the body has ended.
    @ivar gaps: The gap before each piece but the first, in seconds.
    @ivar delays: The end-to-end delay of each piece that says when it was
        sent, in seconds.
    """

    def __init__(
        self, started: float, clock: IReactorTime, out: TextIO, quiet: bool = False, status: int = 200
    ) -> None:
        """
        @param status: The response's status code (an error one is said to
            be so in the summary, however whole its body).
        @param started: When the request was sent (reactor seconds).
        @param clock: The reactor's clock.
        @param out: Where the lines go.
        @param quiet: Print the summary only.
        """
        self.started = started
        self.clock = clock
        self.out = out
        self.quiet = quiet
        self.status = status
        self.done: Deferred[int] = Deferred()
        self.gaps: list[float] = []
        self.delays: list[float] = []
        self.count = 0
        self.size = 0
        self.first: Optional[float] = None
        self.last: Optional[float] = None

    def dataReceived(self, data: bytes) -> None:
        now = self.clock.seconds()
        self.count += 1
        self.size += len(data)
        gap = ""
        if self.last is None:
            self.first = now
        else:
            self.gaps.append(now - self.last)
            gap = f"{(now - self.last) * 1000:7.1f} ms"
        self.last = now
        sent = sendTime(data, now)
        delay = ""
        if sent is not None:
            self.delays.append(max(0.0, now - sent))
            delay = f"{(now - sent) * 1000:6.1f} ms"
        if not self.quiet:
            self.write(
                f"{self.count:5d} {now - self.started:8.3f} s {gap:>10} {delay:>9} "
                f"{len(data):6d} B  {_shown(data)}"
            )

    def write(self, line: str) -> None:
        """
        Print one line, at once.
        """
        self.out.write(line + "\n")
        self.out.flush()

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        clean = bool(reason.check(ResponseDone, PotentialDataLoss))
        elapsed = (self.last if self.last is not None else self.clock.seconds()) - self.started
        firstByte = (
            f"first byte after {(self.first - self.started) * 1000:.1f} ms" if self.first is not None else "no body"
        )
        self.write(f"-- {self.count} chunks, {self.size} bytes in {elapsed:.3f} s; {firstByte}")
        self.write("   " + _spread("gap ms  ", self.gaps))
        self.write("   " + _spread("delay ms", self.delays))
        if not clean:
            self.write(f"   TRUNCATED: the stream broke off ({whyBrokenOff(reason)})")
        elif self.status >= 400:
            self.write(f"   HTTP ERROR {self.status}: the answer is an error (its body arrived whole)")
        else:
            self.write("   ended cleanly")
        self.done.callback(EXIT_CLEAN if clean else EXIT_TRUNCATED)


class WatchOptions(usage.Options):
    """
    The command line of C{chunkwatch}.
    """

    synopsis = "Usage: chunkwatch [options] URL"
    longdesc = (
        "Prints each piece of a streaming HTTP response as it arrives (an LLM's chat completion"
        " deltas shown by their content), with its arrival time, "
        "the gap since the previous one and (where the piece carries its send time) the "
        "end-to-end delay; then a summary. Exit status: 0 clean end, 1 truncated stream or "
        "failed connection, 2 bad command line, 3 HTTP error status."
    )
    optFlags = [
        ["quiet", "q", "Print only the summary."],
        [
            "resume",
            "r",
            "When the connection drops mid-stream and the answer said where it resumes"
            " (X-Stream-Resume, from chunkproxy --resumable), pick it up there (up to 5 times),"
            " saying where.",
        ],
    ]
    optParameters = [
        ["timeout", "t", 10.0, "Seconds to wait for the response headers.", parseTimeout],
        ["method", "X", None, "The request method (GET, or POST with --data)."],
        ["data", "d", None, "A request body to send (JSON by default); @FILE reads it from FILE."],
    ]

    def __init__(self) -> None:
        super().__init__()
        self.headers: list[tuple[bytes, bytes]] = []

    def opt_header(self, header: str) -> None:
        """
        'NAME: VALUE': a request header (repeatable).
        """
        name, colon, value = header.partition(":")
        if not colon or not name.strip():
            raise usage.UsageError(f"a header must be 'NAME: VALUE', not {header!r}")
        self.headers.append((name.strip().encode("latin-1"), value.strip().encode("latin-1")))

    opt_H = opt_header

    def postOptions(self) -> None:
        """
        Read C{@FILE} data, and settle the method.
        """
        data = self["data"]
        if data is not None and data.startswith("@"):
            try:
                with open(data[1:], "rb") as f:
                    self["data"] = f.read()
            except OSError as e:
                raise usage.UsageError(f"--data {data}: {e.strerror}") from None
        elif data is not None:
            self["data"] = data.encode("utf-8")
        if self["method"] is None:
            self["method"] = "POST" if self["data"] is not None else "GET"
        self["method"] = self["method"].upper()
        if self["data"] is not None and not any(name.lower() == b"content-type" for name, _ in self.headers):
            self.headers.append((b"Content-Type", b"application/json"))

    # usage.Options learns the positional arguments from this signature.
    def parseArgs(self, url: str) -> None:  # type: ignore[override]
        """
        @param url: The C{http://} or C{https://} URL to watch.
        """
        try:
            self["url"] = parseHTTPURL(url)
        except ValueError as e:
            raise usage.UsageError(str(e)) from None


@inlineCallbacks
def watch(reactor: Any, options: WatchOptions, out: TextIO) -> Generator[Deferred[Any], Any, int]:
    """
    Watch one URL.

    @param reactor: The reactor.
    @param options: The parsed command line.
    @param out: Where to print.
    @return: The exit code.
    """
    client = HTTPClient(UpstreamAgent(reactor))
    url = options["url"]
    method = options["method"]
    out.write(f"chunkwatch: {method} {url.decode('ascii')}\n")
    headers = Headers()
    for name, value in options.headers:
        headers.addRawHeader(name, value)
    started = reactor.seconds()
    try:
        response = yield client.request(
            method, url, headers=headers, data=options["data"], unbuffered=True, timeout=options["timeout"]
        )
    except Exception as e:
        out.write(f"chunkwatch: no response: {e}\n")
        return EXIT_TRUNCATED
    contentType = (response.headers.getRawHeaders(b"content-type") or [b"-"])[0].decode("latin-1")
    out.write(
        f"HTTP {response.code} {response.phrase.decode('latin-1')}, {contentType},"
        f" headers after {(reactor.seconds() - started) * 1000:.1f} ms\n"
    )
    if not options["quiet"]:
        out.write(f"{'#':>5} {'arrived':>10} {'gap':>10} {'delay':>9} {'size':>8}  content\n")
    out.flush()
    watcher = Watcher(started, reactor, out, options["quiet"], response.code)
    resumeAt = (response.headers.getRawHeaders(b"x-stream-resume") or [None])[0] if options["resume"] else None
    for attempt in range(_RESUMES + 1):
        piece = _Connection(watcher)
        response.deliverBody(piece)
        yield piece.ended
        reason = piece.reason
        if reason.check(ResponseDone, PotentialDataLoss) or resumeAt is None or attempt == _RESUMES:
            break
        lost = reactor.seconds()
        watcher.write(f"-- connection lost after {watcher.size} bytes ({whyBrokenOff(reason)}); resuming there")
        target = onOrigin(url, resumeAt + b"?from=%d" % (watcher.size,))
        try:
            response = yield client.request("GET", target, headers=headers, unbuffered=True, timeout=options["timeout"])
        except Exception as e:
            watcher.write(f"-- could not resume: {e}")
            break
        if response.code != 200:
            watcher.write(f"-- could not resume: HTTP {response.code}")
            break
        watcher.write(f"-- resumed after {(reactor.seconds() - lost) * 1000:.1f} ms, from byte {watcher.size}")
    watcher.connectionLost(reason)
    code: int = yield watcher.done
    if code == EXIT_CLEAN and watcher.status >= 400:
        code = EXIT_HTTP_ERROR
    return code


_RESUMES = 5
"""The most times C{--resume} picks a stream up again."""


class _Connection(Protocol):
    """
    One connection's share of a body: its pieces go to the watcher, its
    end to whoever decides whether to resume.
    """

    def __init__(self, watcher: Watcher) -> None:
        self.dataReceived = watcher.dataReceived  # type: ignore[method-assign]
        self.ended: Deferred[None] = Deferred()
        self.reason: Failure = connectionDone

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        # (A Failure given to callback would fail the Deferred.)
        self.reason = reason
        self.ended.callback(None)


def main(argv: Optional[Sequence[str]] = None) -> NoReturn:
    """
    Run C{chunkwatch}.

    @param argv: The arguments (C{sys.argv[1:]} by default).
    """
    options = WatchOptions()
    try:
        options.parseOptions(sys.argv[1:] if argv is None else list(argv))
    except usage.UsageError as e:
        sys.stderr.write(f"chunkwatch: {e}\n(chunkwatch --help lists the options.)\n")
        sys.exit(EXIT_USAGE)

    def run(reactor: Any) -> Deferred[None]:
        def exit(code: int) -> None:
            if code:
                raise SystemExit(code)

        return watch(reactor, options, sys.stdout).addCallback(exit)

    react(run)


if __name__ == "__main__":
    main()
