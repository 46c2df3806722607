# -*- test-case-name: tests.test_metrics -*-
"""
Prometheus metrics, with prometheus-client, fed by the stream records as
each stream ends (never from the per-chunk path), and served at
C{/metrics} (see L{MetricsResource}).

Under C{--workers}, each worker keeps its metrics in files of its own in a
folder the group shares (prometheus-client's multiprocess mode, chosen by
C{PROMETHEUS_MULTIPROC_DIR} in the worker's environment), and whichever
process answers C{/metrics} reads them all (L{groupRegistry}): the
numbers are the whole group's, not one random worker's.
"""

from __future__ import annotations

from typing import Any, Optional

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.multiprocess import MultiProcessCollector
from twisted.web.resource import Resource
from twisted.web.server import Request

__all__ = ["BUCKETS", "MAX_MODELS", "OTHER_MODEL", "Metrics", "MetricsResource", "groupRegistry"]

BUCKETS = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
    1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0,
)  # fmt: skip
"""Histogram buckets from 1 ms (a chunk's delay) to 10 min (a long answer)."""

MAX_MODELS = 100
"""How many model names get a label of their own (in each process)."""

OTHER_MODEL = "other"
"""The label of every model name past L{MAX_MODELS}."""

_UPSTREAM_ERRORS = {
    "upstream_error": "unreachable_or_bad_response",
    "upstream_timeout": "no_response_in_time",
    "idle_timeout": "idle_mid_body",
    "truncated": "broke_off_mid_body",
}


def groupRegistry(path: str) -> CollectorRegistry:
    """
    @param path: The folder a group of workers keeps its metrics in.
    @return: A registry that reads every worker's metrics from it, each
        time it is collected: counters and histograms summed, the streams
        in flight summed over the workers alive.
    """
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=path)
    return registry


class Metrics:
    """
    The gateway's metrics, in a registry of their own (one per gateway, so
    that tests and libraries do not share the process's global one).

    @ivar exposed: The registry that C{/metrics} shows: L{registry}, or a
        group's (see L{groupRegistry}).
    """

    def __init__(
        self, registry: Optional[CollectorRegistry] = None, exposed: Optional[CollectorRegistry] = None
    ) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        self.exposed = exposed if exposed is not None else self.registry
        r = self.registry
        # Each labelled child, looked up once: prometheus-client's labels()
        # takes a lock and builds a key at every call, at every stream's
        # start and end.
        self._children: dict[tuple[object, ...], Any] = {}
        self._models: set[str] = set()
        self.inFlight = Gauge(
            "chunkproxy_streams_in_flight", "Streams being answered now.", ["route"], registry=r,
            multiprocess_mode="livesum",
        )  # fmt: skip
        self.requests = Counter(
            "chunkproxy_requests", "Requests answered, by API, status and outcome.",
            ["route", "api", "status", "outcome"], registry=r,
        )  # fmt: skip
        self.ttfb = Histogram(
            "chunkproxy_ttfb_seconds", "From the request to the first byte of body sent.", ["route"],
            buckets=BUCKETS, registry=r,
        )  # fmt: skip
        self.duration = Histogram(
            "chunkproxy_stream_duration_seconds", "From the request to the stream's end.", ["route"],
            buckets=BUCKETS, registry=r,
        )  # fmt: skip
        self.bytesSent = Counter("chunkproxy_bytes_sent", "Bytes of body sent to clients.", ["route"], registry=r)
        self.upstreamErrors = Counter(
            "chunkproxy_upstream_errors", "Streams the upstream failed, by kind.", ["kind"], registry=r
        )
        self.llmDeltas = Counter(
            "chunkproxy_llm_deltas", "Content deltas of LLM answers forwarded.", ["route", "api", "model"], registry=r
        )
        self.upstreamOpen = Gauge(
            "chunkproxy_upstream_streams_open", "Attempts and streams in flight on each upstream of a route's pool.",
            ["route", "upstream"], registry=r, multiprocess_mode="livesum",
        )  # fmt: skip
        self.upstreamRequests = Counter(
            "chunkproxy_upstream_requests", "Requests each upstream of a route's pool answered, by outcome.",
            ["route", "upstream", "outcome"], registry=r,
        )  # fmt: skip
        self.upstreamTTFB = Histogram(
            "chunkproxy_upstream_ttfb_seconds", "From the request to the first byte of body, by the upstream that sent it.",
            ["route", "upstream"], buckets=BUCKETS, registry=r,
        )  # fmt: skip
        self.upstreamEvents = Counter(
            "chunkproxy_upstream_events",
            "What happened to each upstream of a route's pool: failover (a request left it for another),"
            " ejection, cooldown.",
            ["route", "upstream", "event"], registry=r,
        )  # fmt: skip
        self.llmTokens = Counter(
            "chunkproxy_llm_tokens", "Tokens LLM answers (streamed or whole) reported, by kind (prompt, completion).",
            ["route", "api", "model", "kind"], registry=r,
        )  # fmt: skip

        self.resumableStreams = Gauge(
            "chunkproxy_resumable_streams", "Resumable streams kept now (read on, or readable after their end).",
            registry=r, multiprocess_mode="livesum",
        )  # fmt: skip
        self.resumableBytes = Gauge(
            "chunkproxy_resumable_bytes", "Bytes all resumable streams keep now (bounded by --resume-memory).",
            registry=r, multiprocess_mode="livesum",
        )  # fmt: skip
        self.resumableLost = Counter(
            "chunkproxy_resumable_lost", "Streams of resumable routes that were not, or stopped being, resumable,"
            " by why (too large, store unreachable, store unavailable).", ["route", "why"], registry=r,
        )  # fmt: skip
        self.resumeLiveReaders = Gauge(
            "chunkproxy_resume_live_readers", "Resumes following, live from Redis, a stream another instance reads"
            " (--resume-store redis://).", registry=r, multiprocess_mode="livesum",
        )  # fmt: skip
        self.resumeStoreUp = Gauge(
            "chunkproxy_resume_store_up", "Whether the connection to the resume store in Redis is there"
            " (--resume-store redis://; the least over the workers).", registry=r, multiprocess_mode="livemin",
        )  # fmt: skip

    def resumeStore(self, streams: int, kept: int, up: Optional[bool], liveReaders: int = 0) -> None:
        """
        What the resumable streams hold now (set once a second, not per
        chunk).

        @param up: Whether Redis is connected, where streams are kept there.
        @param liveReaders: Resumes following a stream from Redis now.
        """
        self.resumableStreams.set(streams)
        self.resumableBytes.set(kept)
        if up is not None:
            self.resumeStoreUp.set(1 if up else 0)
            self.resumeLiveReaders.set(liveReaders)

    def llm(
        self, route: str, api: str, model: str, deltas: int, prompt: Optional[int], completion: Optional[int]
    ) -> None:
        """
        Count what an LLM answer delivered.

        @param route: Its route's prefix.
        @param api: The API it was for (one of L{twisted_stream.exchange._llmusage.APIS}).
        @param model: The model that answered, as its stream named it.
            Upstreams often echo the model the client asked for, so the
            first L{MAX_MODELS} names are counted under their own label and
            any other under C{other}: every label value is a series kept
            for the process's life, and clients must not be able to make
            them without bound.
        @param deltas: Content deltas forwarded.
        @param prompt: Prompt tokens it reported, if it did.
        @param completion: Completion tokens it reported, if it did.
        """
        models = self._models
        if model not in models:
            if len(models) >= MAX_MODELS:
                model = OTHER_MODEL
            else:
                models.add(model)
        self._child(self.llmDeltas, route, api, model).inc(deltas)
        if prompt is not None:
            self._child(self.llmTokens, route, api, model, "prompt").inc(prompt)
        if completion is not None:
            self._child(self.llmTokens, route, api, model, "completion").inc(completion)

    def _child(self, metric: Any, *labels: str) -> Any:
        key = (metric, *labels)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*labels)
        return child

    def started(self, route: str) -> None:
        """
        A stream has begun.

        @param route: Its route's prefix (empty for none).
        """
        self._child(self.inFlight, route).inc()

    def memberOpen(self, route: str, member: str, change: int) -> None:
        """
        An upstream of a route's pool took or ended an attempt or a stream
        (see L{twisted_stream.upstream._pool.PoolWatch}).
        """
        self._child(self.upstreamOpen, route, member).inc(change)

    def memberEvent(self, route: str, member: str, event: str) -> None:
        """
        An upstream of a route's pool was failed over from, ejected, or
        cooled down.
        """
        self._child(self.upstreamEvents, route, member, event).inc()

    def ended(
        self, route: str, api: str, status: int, outcome: str, sent: int, ttfb: Optional[float],
        duration: Optional[float], streamed: bool, upstream: Optional[str] = None,
        resumableLost: Optional[str] = None,
    ) -> None:
        """
        A request has been answered.

        @param route: Its route's prefix (empty for none).
        @param api: The API it was for (one of L{twisted_stream.exchange._llmusage.APIS}).
        @param status: The status the client got.
        @param outcome: How it ended.
        @param sent: Bytes of body sent.
        @param ttfb: Seconds to its first byte of body, if any went.
        @param duration: Seconds it took, for a stream.
        @param streamed: Whether it was counted by L{started}.
        @param upstream: The upstream of the route's pool that answered,
            if one did.
        @param resumableLost: Why it was not, or stopped being, resumable,
            on a resumable route.
        """
        child = self._child
        if streamed:
            child(self.inFlight, route).dec()
        child(self.requests, route, api, str(status), outcome).inc()
        if sent:
            child(self.bytesSent, route).inc(sent)
        if ttfb is not None:
            child(self.ttfb, route).observe(ttfb)
        if duration is not None:
            child(self.duration, route).observe(duration)
        kind = _UPSTREAM_ERRORS.get(outcome)
        if kind is not None:
            child(self.upstreamErrors, kind).inc()
        if resumableLost is not None:
            child(self.resumableLost, route, resumableLost).inc()
        if upstream is not None:
            child(self.upstreamRequests, route, upstream, outcome).inc()
            if ttfb is not None:
                child(self.upstreamTTFB, route, upstream).observe(ttfb)


class MetricsResource(Resource):
    """
    The metrics in Prometheus's text format.
    """

    isLeaf = True

    def __init__(self, registry: CollectorRegistry) -> None:
        """
        @param registry: What to show (a L{Metrics}'s C{exposed}).
        """
        super().__init__()
        self._registry = registry

    def render_GET(self, request: Request) -> bytes:
        request.setHeader(b"Content-Type", CONTENT_TYPE_LATEST.encode("ascii"))
        request.setHeader(b"Cache-Control", b"no-cache")
        body: bytes = generate_latest(self._registry)
        return body
