# -*- test-case-name: tests.test_streamlog -*-
"""
One log event per stream: what each request to the gateway did, in the
C{chunkproxy.stream} namespace, written once, when it has ended.

The event's fields are the record's (L{StreamRecord}): what a log shipper
indexes, what the metrics count. Credentials never appear, nor query
strings (they may hold keys): the path is cut at C{?}.

Outcomes:

  - C{complete}: answered whole, with a status below 400;
  - C{upstream_error_status}: the upstream's answer, with a status of 400
    or more, forwarded whole (a C{429} of a rate limit, a C{500});
  - C{client_gone}: the client left before the end;
  - C{upstream_error}: the upstream could not be reached, or answered
    with something that is not HTTP (C{502});
  - C{upstream_timeout}: no response head in time (C{504});
  - C{idle_timeout}: the upstream went silent mid-body;
  - C{truncated}: the upstream broke off mid-body;
  - C{rejected}: refused by the gateway itself (4xx, 503);
  - C{drained}: cut off when a draining gateway's time ran out;
  - C{abandoned}: a resumable stream whose client left and no reader came
    back within its window: its upstream was cancelled.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Optional, Protocol

from twisted.logger import Logger

from twisted_stream.exchange._llmusage import apiOf
from twisted_stream.resume._eventids import RESUME_PREFIX

__all__ = ["OUTCOMES", "StreamCounter", "StreamRecord", "clientOf", "logAnswered", "printable"]


class StreamCounter(Protocol):
    """
    Where streams are counted: the gateway's metrics
    (L{twisted_stream.ops._metrics.Metrics}); the log need not know them.
    """

    def started(self, route: str) -> None:
        """
        A stream has begun on C{route} (empty for none).
        """

    def llm(
        self, route: str, api: str, model: str, deltas: int, prompt: Optional[int], completion: Optional[int]
    ) -> None:
        """
        An LLM's answer went by.
        """

    def ended(
        self, route: str, api: str, status: int, outcome: str, sent: int, ttfb: Optional[float],
        duration: Optional[float], streamed: bool, upstream: Optional[str] = None,
        resumableLost: Optional[str] = None,
    ) -> None:
        """
        A request has been answered (by C{upstream} of its route's pool,
        where one answered; C{resumableLost} says why a stream of a
        resumable route was not, or stopped being, resumable).
        """

OUTCOMES = (
    "complete",
    "abandoned",
    "upstream_error_status",
    "client_gone",
    "upstream_error",
    "upstream_timeout",
    "idle_timeout",
    "truncated",
    "rejected",
    "drained",
)

_UNPRINTABLE = re.compile(r"[\x00-\x1f\x7f-\x9f\\]")


def printable(raw: bytes) -> str:
    """
    A method or path as a log shows it: Latin-1, with control bytes (C0,
    DEL, C1) and the backslash written C{\\xNN}, so that no request can
    put a terminal escape in a log a person reads, or split its line.

    @param raw: The bytes as the client sent them.
    @return: The text.
    """
    text = raw.decode("latin-1")
    if _UNPRINTABLE.search(text) is None:
        return text
    return _UNPRINTABLE.sub(lambda found: "\\x%02x" % (ord(found.group()),), text)




def _withoutIds(path: bytes) -> bytes:
    # A resumable stream's id is the capability to read it: never whole in
    # a log (its first 6 characters tell streams apart).
    if path.startswith(RESUME_PREFIX):
        return path[: len(RESUME_PREFIX) + 6] + b"..."
    return path


_log = Logger(namespace="chunkproxy.stream")
# (A module's logger: as a class attribute, a Logger would take the class's
# name as its namespace.)

@dataclass(slots=True)
class StreamRecord:
    """
    What one request did, filled in as it goes.

    @ivar started: When it began (reactor seconds).
    @ivar route: The prefix of the route that took it, if any.
    @ivar upstreamStatus: The upstream's status, once its head came.
    @ivar firstByteAt: When the first byte of body went to the client.
    @ivar chunks: Pieces of body sent to the client.
    """

    method: bytes
    path: bytes
    client: str
    started: float
    route: Optional[bytes] = None
    upstreamStatus: Optional[int] = None
    firstByteAt: Optional[float] = None
    chunks: int = 0
    fields: dict[str, Any] = field(default_factory=dict)
    done: bool = False
    metrics: Optional[StreamCounter] = None

    def __post_init__(self) -> None:
        if self.metrics is not None:
            self.metrics.started(self._route)

    @property
    def _route(self) -> str:
        return self.route.decode("latin-1") if self.route is not None else ""

    def emit(self, now: float, status: int, outcome: str, sent: int) -> None:
        """
        Log the stream's one event (later calls do nothing).

        @param now: When it ended (reactor seconds).
        @param status: The status the client got.
        @param outcome: One of L{OUTCOMES}.
        @param sent: Bytes of body sent to the client.
        """
        if self.done:
            return
        self.done = True
        ttfb = round((self.firstByteAt - self.started) * 1000, 1) if self.firstByteAt is not None else None
        duration = round((now - self.started) * 1000, 1)
        method = printable(self.method)
        path = printable(_withoutIds(self.path.split(b"?", 1)[0]))
        api = apiOf(self.path)
        # The text made here, in one f-string, rather than by the logger's
        # str.format over a dozen fields at every stream's end; braces a
        # path may hold are doubled, as the logger formats it once more.
        text = (
            f"{self.client} {method} {path} {status} {outcome}: {sent} bytes in {self.chunks} chunks"
            f" in {duration} ms" + (f", the first after {ttfb} ms" if ttfb is not None else "")
        ).replace("{", "{{").replace("}", "}}")
        _log.info(
            text,
            method=method,
            path=path,
            route=self.route.decode("latin-1") if self.route is not None else None,
            api=api,
            client=self.client,
            status=status,
            upstream_status=self.upstreamStatus,
            ttfb_ms=ttfb,
            duration_ms=duration,
            bytes_sent=sent,
            chunks_sent=self.chunks,
            outcome=outcome,
            **self.fields,
        )
        if self.metrics is not None and "model" in self.fields:
            fields = self.fields
            self.metrics.llm(
                self._route,
                api,
                fields["model"] or "-",
                fields["llm_deltas"],
                fields["prompt_tokens"],
                fields["completion_tokens"],
            )
        if self.metrics is not None:
            self.metrics.ended(
                self._route,
                api,
                status,
                outcome,
                sent,
                ttfb / 1000 if ttfb is not None else None,
                now - self.started,
                streamed=True,
                upstream=self.fields.get("upstream"),
                resumableLost=self.fields.get("resumable_lost"),
            )


def clientOf(address: Any) -> str:
    """
    @param address: A connection's peer (an L{IAddress}).
    @return: Its host, or C{-}.
    """
    host = getattr(address, "host", None)
    return host if isinstance(host, str) else "-"


def logAnswered(
    address: Any, method: bytes, path: bytes, status: int, sent: int, now: float, metrics: Optional[StreamCounter] = None
) -> None:
    """
    Log a request that was answered without a stream of its own (the page,
    a preflight, a refusal): C{complete}, or C{rejected} for an error
    status.

    @param address: The client's address.
    @param method: Its method.
    @param path: Its target (the query string is dropped).
    @param status: The status it got.
    @param sent: Bytes of body sent.
    @param now: When (reactor seconds); it took no time worth timing.
    @param metrics: Where to count it too, if anywhere.
    """
    outcome = "rejected" if status >= 400 else "complete"
    StreamRecord(method, path, clientOf(address), now).emit(now, status, outcome, sent)
    if metrics is not None:
        metrics.ended("", apiOf(path), status, outcome, sent, None, None, streamed=False)
