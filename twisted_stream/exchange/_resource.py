# -*- test-case-name: tests.test_proxy -*-
"""
L{StreamProxyResource}: forward HTTP requests to one upstream and stream
each response back the moment each piece arrives.

The upstream is requested through an L{IAgent} (by default the gateway's own
L{UpstreamAgent}), and each piece of its body is pushed to the client's
response (by L{bodyWriter}: C{request.write} without twisted.web's per-write
bookkeeping) as C{treq.collect} would push it to a collector. Unlike C{collect}, the body
is taken with the response's C{deliverBody}, and the transport that hands it
over (a producer over the upstream socket) is registered as the client
request's producer. That one registration gives:

  - backpressure: while the client's socket is full, Twisted pauses the
    producer, so the proxy stops reading the upstream and holds no more than
    the kernel's socket buffers, however slow the client;
  - cancellation: when the client leaves, the producer is stopped, which
    closes the upstream connection, so the source stops generating (and
    billing) at once.

The agent is called directly, not through treq's C{HTTPClient}: that one
always decodes gzip (a gateway forwards bodies as they are), keeps a cookie
jar, and parses every URL with hyperlink, which a stream's start cannot
afford (see C{docs/benchmark.md}).

The resource is also the library piece: put it into any L{Site}, at any
path, and requests below that path go to the upstream URL plus the rest of
their path and their query string::

    root.putChild(b"v1", StreamProxyResource("https://api.openai.com/v1/",
                                             injectHeaders=[(b"Authorization", b"Bearer " + key)]))
"""

from __future__ import annotations

from errno import EMFILE, ENFILE
from typing import Any, Callable, Optional, Sequence, cast

from twisted.internet.defer import Deferred, succeed
from twisted.internet.error import (
    ConnectBindError,
    ConnectingCancelledError,
    ConnectionDone,
    ConnectionRefusedError,
    DNSLookupError,
)
from twisted.internet.interfaces import IConsumer, IPushProducer, IReactorTime
from twisted.internet.protocol import Protocol, connectionDone
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.client import PotentialDataLoss, ResponseDone
from twisted.web.iweb import IAgent, IBodyProducer, IPolicyForHTTPS, IResponse
from twisted.web.server import NOT_DONE_YET, Request
from zope.interface import implementer

from twisted_stream.exchange._bodywatch import BodyWatch, WatchedProducer
from twisted_stream.exchange._exhaustion import OUT_OF_DESCRIPTORS, noteExhausted
from twisted_stream.exchange._hooks import hooksOf
from twisted_stream.exchange._llmusage import UsageReader, WholeAnswerReader
from twisted_stream.exchange._recording import DEFAULT_RECORD_MAX_BYTES, Recorder, RecordingWriter
from twisted_stream.exchange._rules import FORWARDED_METHODS, ForwardingRules, requestTargetProblem
from twisted_stream.exchange._streamlog import StreamRecord, clientOf
from twisted_stream.http._bodywriter import bodyWriter
from twisted_stream.http._refusal import Refusal, headerLinesRefusal, headRefusal
from twisted_stream.http._text import PlainResource, textError
from twisted_stream.http.headers import fieldsOf, forwardedRequestHeaders, forwardedResponseHeaders
from twisted_stream.resume._eventids import EventIds
from twisted_stream.resume._resumable import (
    COMPLETE,
    TRUNCATED,
    ResumableStream,
    ResumableWriter,
    ResumeStore,
    credentialOf,
)
from twisted_stream.upstream._agent import UpstreamAgent
from twisted_stream.upstream._failover import Failover, PoolFull, Served, joinURL
from twisted_stream.upstream._pool import DEFAULT_POLICY, Member, Pool, PoolPolicy, PoolWatch
from twisted_stream.upstream._retry import NoResponseInTime
from twisted_stream.upstream._wire import UpstreamProtocolError, whyBrokenOff

__all__ = ["DEFAULT_MAX_BODY", "StreamProxyResource"]

DEFAULT_MAX_BODY = 1024 * 1024
"""The largest request body forwarded by default, in bytes."""

_NO_BODY_UNLESS_SENT = {b"GET", b"HEAD", b"DELETE", b"OPTIONS"}

def _failureReason(failure: Failure, timeout: float) -> tuple[int, str]:
    """
    Say why an upstream request failed before its response headers came.

    @param failure: What the request's Deferred failed with.
    @param timeout: The deadline for the response's head, in seconds.
    @return: The status code for the client (502 or 504) and a one-line
        reason. The upstream's address is left out: it is the operator's
        business, not the client's.
    """
    if failure.check(UpstreamProtocolError):
        return 502, f"upstream sent a bad response: {failure.value}"
    if failure.check(ConnectingCancelledError):
        return 502, f"upstream unreachable: no connection within {timeout:g} s"
    if failure.check(NoResponseInTime):
        seconds = getattr(failure.value, "seconds", None) or timeout
        return 504, f"upstream sent no response headers within {seconds:g} s"
    if failure.check(PoolFull):
        return 503, "every upstream of this route is at its stream limit"
    if failure.check(ConnectBindError) and getattr(failure.value, "osError", None) in (EMFILE, ENFILE):
        return 503, OUT_OF_DESCRIPTORS
    if failure.check(ConnectionRefusedError):
        return 502, "upstream refused the connection"
    if failure.check(DNSLookupError):
        return 502, "upstream host name could not be resolved"
    reasons = getattr(failure.value, "reasons", None) or []
    for reason in reasons:
        if type(reason.value).__module__.startswith("OpenSSL") or "certificate" in str(reason.value).lower():
            return 502, "upstream TLS certificate did not verify"
    return 502, f"upstream failed before responding ({type(failure.value).__name__})"


@implementer(IBodyProducer)
class _RequestBody:
    """
    A request body already in memory, written in one go when the agent asks
    for it: no cooperator, so it leaves with the headers. (treq would wrap
    bytes in a L{FileBodyProducer}, and sends no body at all for C{b""}.)
    """

    def __init__(self, body: bytes) -> None:
        self._body = body
        self.length = len(body)

    def startProducing(self, consumer: IConsumer) -> Deferred[None]:
        if self._body:
            consumer.write(self._body)
        return succeed(None)

    def pauseProducing(self) -> None:
        pass

    def resumeProducing(self) -> None:
        pass

    def stopProducing(self) -> None:
        pass


class _UpstreamBody(Protocol):
    """
    Receives the upstream response body and writes it to the client.

    After the first piece its C{dataReceived} I{is} the writer of the
    client's response body (L{bodyWriter}), with, for an event stream, the
    heartbeat watch (to know where events end) before it and the usage
    reader after it, and for a JSON answer the usage reader after it.
    """

    def __init__(self, exchange: _Exchange, write: Callable[[bytes], None]) -> None:
        self._exchange = exchange
        self._write = write

    def dataReceived(self, data: bytes) -> None:
        # The first piece only: its time is the stream's first byte; then
        # the writer itself takes over.
        self._exchange.record.firstByteAt = self._exchange.clock.seconds()
        self.dataReceived = self._write  # type: ignore[method-assign,assignment]
        self._write(data)

    def connectionMade(self) -> None:
        # The transport is a producer over the upstream socket.
        self._exchange.bodyStarted(cast(IPushProducer, self.transport))

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self._exchange.bodyEnded(reason)


def _thenNoted(write: Callable[[bytes], None], note: Callable[[bytes], None]) -> Callable[[bytes], None]:
    """
    @return: A writer that writes each piece, then notes it: what reads a
        stream as it passes never delays a byte.
    """

    def writeThenNote(data: bytes) -> None:
        write(data)
        note(data)

    return writeThenNote


_REQUESTING, _STREAMING, _DONE = "REQUESTING", "STREAMING", "DONE"


class _Exchange:
    """
    One client request, followed through its phases:

      - C{REQUESTING}: the upstream request is out (through the route's
        L{DeadlineAgent}, which owns the deadline and the retries), its
        response's head awaited. A failure becomes a 502 or 504 with a
        one-line reason.
      - C{STREAMING}: the head has been passed on; the body flows to the
        client, paced by it (the upstream's producer is registered with the
        request), watched by a L{BodyWatch}.
      - C{DONE}: answered, broken off, or the client has gone. A client that
        goes in any phase cancels the upstream request or stops its body.

    It ends by logging the stream's one event (L{StreamRecord}), with the
    outcome its phase and cause say.

    @ivar request: The client's request.
    @ivar record: What the stream did, for its log event.
    """

    _log = Logger()

    def __init__(
        self,
        proxy: StreamProxyResource,
        request: Request,
        rest: bytes,
        query: bytes,
        body: Optional[bytes],
        route: Optional[bytes],
    ) -> None:
        self.request = request
        self._proxy = proxy
        self._recording: Optional[RecordingWriter] = None
        self.clock = proxy.clock
        self._rest = rest
        self._query = query
        self._body = body
        self._served: Optional[Served] = None
        self.phase = _REQUESTING
        self._hooks = hooks = hooksOf(request)
        self.record = StreamRecord(
            request.method,
            request.uri,
            clientOf(request.getClientAddress()),
            self.clock.seconds(),
            route,
            metrics=hooks.metrics,
        )
        # Logged here, at the stream's end, not by the site; cut off here
        # when a draining gateway's time runs out.
        hooks.streamStarted(request, self)
        self._pending: Optional[Deferred[Served]] = None
        self._producer: Optional[WatchedProducer] = None
        self._watch: Optional[BodyWatch] = None
        self._usage: Optional[UsageReader | WholeAnswerReader] = None
        self._stream: Optional[ResumableStream] = None
        self._outlived: Optional[Callable[[], None]] = None
        """Ends the count of a stream that outlives its client."""

    @property
    def sentLength(self) -> int:
        """
        @return: The body bytes forwarded so far: into the resumable stream,
            or to the client (what the body's watch reads).
        """
        return self._stream.end if self._stream is not None else self.request.sentLength

    @property
    def _where(self) -> str:
        # The upstream URL (no query: it may hold a key) once a member
        # answered; before, the client's path, which names the route.
        if self._served is not None:
            url = joinURL(self._served.member.member.url.split(b"?", 1)[0], self._rest, b"")
        else:
            url = self.request.uri.split(b"?", 1)[0]
        return url.decode("ascii", "replace")

    def start(self) -> None:
        """
        Send the upstream request.
        """
        request = self.request
        proxy = self._proxy
        request.notifyFinish().addErrback(self._clientGone)
        self._pending = pending = proxy.requests.request(
            request.method,
            self._rest,
            self._query,
            forwardedRequestHeaders(request, proxy.dropHeaders, proxy.injectHeaders),
            _RequestBody(self._body) if self._body is not None else None,
        )
        pending.addCallbacks(self._gotResponse, self._failed)
        pending.addErrback(self._bug)

    # REQUESTING

    def _ended(self, outcome: str) -> None:
        self.phase = _DONE
        if self._outlived is not None:
            self._outlived()
            self._outlived = None
        if self._served is not None:
            self._served.done()
        if self._recording is not None:
            self._recording.end(outcome)
            self._recording = None
        if self._usage is not None:
            self.record.fields.update(self._usage.fields())
        request = self.request
        # (Read with defaults: any IRequest may come, test doubles too.)
        answered = getattr(request, "startedWriting", True)
        code = getattr(request, "code", None) or getattr(request, "responseCode", None) or 200
        # A client gone before any answer: nginx's 499, as log readers know it.
        status = code if answered or outcome != "client_gone" else 499
        self.record.emit(self.clock.seconds(), status, outcome, getattr(request, "sentLength", 0))

    def _gotResponse(self, served: Served) -> None:
        # The head is passed on, the stream kept where the route is
        # resumable, and the body's way to the client laid down, in that
        # order: the body's writer is made once the head has gone.
        self._pending = None
        self.phase = _STREAMING
        self._served = served
        response = served.response
        self.record.upstreamStatus = response.code
        self.record.fields.update(
            upstream=served.member.member.label, tries=served.tries, failovers=served.failovers
        )
        forwarded = self._passHeadOn(response)
        self._keepResumable(response, forwarded)
        contentType = forwarded.get(b"content-type")
        if contentType is None:
            # Nothing is invented: Twisted would otherwise add text/html.
            self.request.defaultContentType = None
        mediaType = contentType[0].split(b";")[0].strip().lower() if contentType else b""
        encoding = forwarded.get(b"content-encoding", [b"identity"])[-1].strip().lower()
        # (Nothing is put into a compressed stream: no heartbeat, no id.)
        uncompressed = encoding in (b"identity", b"")
        # The headers go out now, before the first piece of the body, and
        # the body's writer is made only after that: on a HEAD request
        # Twisted replaces write with a no-op once the headers are written.
        self.request.write(b"")
        write = self._bodyPath(response, forwarded, mediaType, uncompressed)
        response.deliverBody(_UpstreamBody(self, write))

    def _passHeadOn(self, response: IResponse) -> dict[bytes, list[bytes]]:
        """
        Set the client's status and headers from the upstream's head.

        @return: The header fields forwarded, by lowercase name.
        """
        request = self.request
        request.setResponseCode(response.code, response.phrase)
        # The header lines as they came where the agent keeps them (ours
        # does): one pass from them to the client's headers.
        fields = getattr(response, "fields", None)
        forwarded = forwardedResponseHeaders(fields if fields is not None else fieldsOf(response.headers), request)
        if b"cache-control" not in forwarded:
            forwarded[b"cache-control"] = [b"no-cache"]
        # nginx buffers proxied responses unless told otherwise per response.
        forwarded[b"x-accel-buffering"] = [b"no"]
        setHeader = request.responseHeaders.setRawHeaders
        for name, values in forwarded.items():
            setHeader(name, values)
        return forwarded

    def _keepResumable(self, response: IResponse, forwarded: dict[bytes, list[bytes]]) -> None:
        """
        On a resumable route, open the stream a streamed answer is kept in,
        as it is forwarded, for whoever resumes it, and name it in the
        client's headers.
        """
        resume = self._proxy.resume
        if resume is None or not 200 <= response.code < 300 or b"content-length" in forwarded:
            return
        request = self.request
        store, window = resume
        # With a token, only its bearer may resume; without, the id is the
        # capability.
        owner = credentialOf(request.getHeader(b"authorization")) if self._proxy.rules.requireToken else None
        stream = self._stream = store.open(
            window,
            owner,
            response.code,
            [(name, value) for name, values in forwarded.items() for value in values],
            request.uri,
        )
        if stream is None:
            # Its shared store cannot take it now (said by the store).
            self.record.fields["resumable_lost"] = "store unavailable"
            return
        setHeader = request.responseHeaders.setRawHeaders
        setHeader(b"x-stream-id", [stream.id.encode("ascii")])
        setHeader(b"x-stream-resume", [b"/_streams/" + stream.id.encode("ascii")])
        stream.abandoned = self._abandoned
        self.record.fields["stream_id"] = stream.short

    def _bodyPath(
        self, response: IResponse, forwarded: dict[bytes, list[bytes]], mediaType: bytes, uncompressed: bool
    ) -> Callable[[bytes], None]:
        """
        What each piece of the upstream's body is handed to, the client's
        writer last in the chain and first to be called: the resumable
        stream and its event ids, the recording, the heartbeats' watch, the
        usage reader, each where it applies.
        """
        request = self.request
        proxy = self._proxy
        events = mediaType == b"text/event-stream" and uncompressed
        write = bodyWriter(request, self.record)
        if self._stream is not None:
            # Every piece goes to the stream, and from it to each reader,
            # the client first.
            write = ResumableWriter(self._stream, request, write, self._hooks.truncate, self._overflowed)
            if events:
                # Each event numbered, for Last-Event-ID.
                write = self._stream.events = EventIds(self._stream.id, write)
        if proxy.recorder is not None:
            # Noted after each piece is written, as forwarded (heartbeats too).
            self._recording = proxy.recorder.start(
                request.method, request.uri, self._body or b"", response.code,
                [(name, value) for name, values in forwarded.items() for value in values], self.record.started,
            )  # fmt: skip
            write = _thenNoted(write, self._recording.piece)
        heartbeat = proxy.heartbeat if events else None
        if proxy.idleTimeout or heartbeat:
            self._watch = BodyWatch(proxy.clock, self, write, proxy.idleTimeout, heartbeat, self._upstreamIdle)
            if heartbeat:
                write = self._watch.trackEvents
        if events or (mediaType == b"application/json" and uncompressed):
            # An LLM's answer, perhaps, streamed or whole: read as it
            # passes, after each piece has been written (never delaying one).
            self._usage = UsageReader() if events else WholeAnswerReader()
            write = _thenNoted(write, self._usage.feed)
        return write

    def _failed(self, failure: Failure) -> None:
        self._pending = None
        if self.phase == _DONE:
            # The client has gone: there is no one left to tell.
            return
        self.phase = _DONE
        code, reason = _failureReason(failure, self._proxy.connectTimeout)
        if code == 503:
            self.request.setHeader(b"Retry-After", b"1")
        if code == 503 and not failure.check(PoolFull):
            # Out of descriptors: logged once a second, not once a request.
            noteExhausted(self._proxy.clock)
        else:
            self._log.warn(
                "{method} {url}: {code} {reason}",
                method=self.request.method.decode("ascii"),
                url=self._where,
                code=code,
                reason=reason,
                failure=failure,
            )
        body = textError(self.request, code, reason)
        self.request.setHeader(b"Content-Length", b"%d" % (len(body),))
        self.request.write(body)
        self.request.finish()
        self._ended("upstream_timeout" if code == 504 else "rejected" if code == 503 else "upstream_error")

    def _bug(self, failure: Failure) -> None:
        self._log.failure("proxying {url} failed", failure, url=self._where)
        if self.phase != _DONE:
            self._ended("upstream_error")
            self.request.loseConnection()

    # STREAMING

    def bodyStarted(self, producer: IPushProducer) -> None:
        """
        The upstream body is about to flow: let the client's connection pace
        it, and start watching it.

        @param producer: A producer over the upstream socket.
        """
        if self.phase == _DONE:
            producer.stopProducing()
            return
        self._producer = WatchedProducer(producer)
        if self._stream is None:
            self.request.registerProducer(self._producer, True)
        if self._watch is not None:
            self._watch.start(self._producer)

    def _upstreamIdle(self) -> None:
        self._log.warn(
            "{method} {url}: no body bytes from the upstream for {timeout:g} s;"
            " the client's connection is closed before the end of the body",
            method=self.request.method.decode("ascii"),
            url=self._where,
            timeout=self._proxy.idleTimeout,
        )
        self._endStreaming()
        self._ended("idle_timeout")

    def _stopWatch(self) -> None:
        # Dropped once stopped: it refers back to this exchange.
        watch, self._watch = self._watch, None
        if watch is not None:
            watch.stop()

    def _endStreaming(self) -> None:
        # Stop the upstream, and end the client's response (every reader's,
        # on a resumable stream) truncated.
        self.phase = _DONE
        self._stopWatch()
        producer, self._producer = self._producer, None
        if producer is not None:
            producer.stopProducing()
        if self._stream is not None:
            self._stream.finish(TRUNCATED)
            return
        if producer is not None:
            self.request.unregisterProducer()
        self._hooks.truncate(self.request)

    # A resumable stream (see twisted_stream.resume._resumable).

    def _overflowed(self, stream: ResumableStream, clientThere: bool) -> None:
        """
        The stream is no longer resumable (it outgrew its bounds, or its
        shared store failed). Its client, still there, gets the rest
        directly, paced as on any route (the upstream's producer registered
        with it); gone, the upstream stops.
        """
        self._stream = None
        self.record.fields["resumable_lost"] = stream.lost
        if stream.lost == "too large":
            # (A store's failure is said by the store, once a minute at
            # most: not once per stream.)
            self._log.warn(
                "{method} {url}: stream {id} outgrew what a resumable stream may keep; it is no longer resumable",
                method=self.request.method.decode("ascii"),
                url=self._where,
                id=stream.short,
            )
        if not clientThere:
            self._clientGone(Failure(ConnectionDone()))
        elif self._producer is not None:
            self.request.registerProducer(self._producer, True)

    def _abandoned(self) -> None:
        # No reader came back within the window: the upstream goes, as on a
        # route that is not resumable.
        if self.phase != _STREAMING:
            return
        self._endStreaming()
        self._ended("abandoned")

    def bodyEnded(self, reason: Failure) -> None:
        """
        The upstream body is over, completely or not.

        @param reason: Why: L{ResponseDone} for a complete body,
            L{PotentialDataLoss} for one delimited by the connection's end
            (which cannot be told from a truncated one), anything else for a
            broken one.
        """
        self._stopWatch()
        if self.phase == _DONE or self._producer is None:
            # Stopped by the idle timeout, or the client has left.
            return
        stream = self._stream
        if stream is not None:
            self.phase = _DONE
            self._producer = None
            clean = bool(reason.check(ResponseDone, PotentialDataLoss))
            stream.finish(COMPLETE if clean else TRUNCATED)
            self._ended("complete" if clean else "truncated")
            return
        if self._producer.stopped:
            # The client's connection stopped it as it closed: the request
            # hears of that next. The client is gone, the upstream is fine.
            self._producer = None
            self._ended("client_gone")
            return
        self.phase = _DONE
        self._producer = None
        self.request.unregisterProducer()
        if reason.check(ResponseDone, PotentialDataLoss):
            self.request.finish()
            status = self.record.upstreamStatus
            self._ended("upstream_error_status" if status is not None and status >= 400 else "complete")
            return
        # Never pass a broken upstream off as a clean end: close without the
        # terminating chunk, so the client sees a truncated response.
        self._log.warn(
            "{method} {url}: the upstream body broke off after {sent} bytes ({why});"
            " the client's connection is closed before the end of the body",
            method=self.request.method.decode("ascii"),
            url=self._where,
            sent=self.request.sentLength,
            why=whyBrokenOff(reason),
        )
        self._hooks.truncate(self.request)
        self._ended("truncated")

    # Any phase

    def cutOff(self, refusal: Refusal) -> None:
        """
        End the stream now, as a draining gateway's time has run out: a
        stream under way ends truncated (never a clean end), a request still
        waiting for its upstream gets C{refusal}; either way the upstream
        request is cancelled, and the outcome is C{drained}.

        @param refusal: The answer to a request still waiting.
        """
        if self.phase == _DONE:
            return
        if self.phase == _STREAMING:
            self._endStreaming()
            self._ended("drained")
            return
        self.phase = _DONE
        pending, self._pending = self._pending, None
        body = refusal.render(self.request)
        self.request.write(body)
        self.request.finish()
        self._ended("drained")
        if pending is not None:
            pending.cancel()

    def _clientGone(self, reason: Failure) -> None:
        # The client has gone: stop the upstream, whatever phase it is in;
        # but a resumable stream goes on for whoever comes back, still
        # counted as its client's (a client may not leave streams running
        # beyond its limits) and for the drain.
        if self.phase == _DONE:
            return
        if self._stream is not None:
            self._outlived = self._hooks.outlives(self.request, self)
            return
        self._ended("client_gone")
        if self._pending is not None:
            self._pending.cancel()
        self._stopWatch()
        if self._producer is not None:
            self._producer.stopProducing()


class StreamProxyResource(PlainResource):
    """
    Forwards requests to one upstream URL and streams each response back as
    it arrives.

    A request for C{PATH?QUERY} below where the resource is mounted goes to
    the upstream URL plus C{PATH} plus C{?QUERY}, with its method (GET, POST,
    PUT, PATCH, DELETE, OPTIONS, HEAD), its body and its end-to-end headers.
    The client gets the upstream's status and end-to-end headers (redirects
    included, never followed), then each piece of the body the moment it
    arrives.

    When the upstream cannot be reached the client gets C{502}, when it sends
    no headers in time C{504}, each with a one-line reason; when the upstream
    breaks off mid-body (or is idle longer than C{idleTimeout}), the client's
    connection is closed without the terminating chunk. Requests that could
    lead the proxy anywhere but below its upstream's URL get C{400}.
    """

    isLeaf = True

    def __init__(
        self,
        upstream: str | bytes | Sequence[Member],
        *,
        reactor: Any = None,
        agent: Optional[IAgent] = None,
        tlsPolicy: Optional[IPolicyForHTTPS] = None,
        connectTimeout: float = 10.0,
        idleTimeout: Optional[float] = None,
        heartbeat: Optional[float] = None,
        retries: int = 1,
        maxBody: int = DEFAULT_MAX_BODY,
        injectHeaders: Sequence[tuple[bytes, bytes]] = (),
        requireToken: Optional[bytes] = None,
        recordTo: Optional[str] = None,
        recordMaxBytes: int = DEFAULT_RECORD_MAX_BYTES,
        policy: PoolPolicy = DEFAULT_POLICY,
        tryTimeout: Optional[float] = None,
        name: str = "",
        replacing: Optional[Pool] = None,
        watch: Optional[PoolWatch] = None,
        resume: Optional[tuple[ResumeStore, float]] = None,
    ) -> None:
        """
        @param upstream: The absolute C{http://} or C{https://} URL to forward
            to (already percent-encoded), or the members of a pool of
            upstreams (see L{twisted_stream.upstream._pool}).
        @param reactor: The reactor (the global one by default).
        @param agent: What makes the upstream requests; by default an
            L{UpstreamAgent} of its own.
        @param tlsPolicy: How the default agent checks C{https} upstreams
            (the system's trust store by default).
        @param connectTimeout: Seconds from the request until the upstream's
            response headers must have arrived (C{502} if it could not be
            reached, C{504} if it sent no headers), failovers included.
        @param idleTimeout: Seconds the upstream may send no body bytes
            mid-stream before the client's connection is closed; L{None}:
            no limit.
        @param heartbeat: Seconds of silence on a C{text/event-stream}
            response after which an SSE comment (C{: keep-alive}) is sent
            between events; L{None}: never.
        @param retries: How many times to try again a request that failed
            before any answer where that is safe (see
            L{twisted_stream.upstream._retry.retriable}) and no untried
            member is left: no connection could be made, or a bodiless
            C{GET}, C{HEAD} or C{OPTIONS} whose kept-alive connection ended
            before any answer.
        @param maxBody: The largest request body to forward (C{413} above).
        @param injectHeaders: Headers to set on every upstream request,
            replacing the client's under those names (credentials that stay
            on the server); a member's own go over them.
        @param requireToken: If given, only requests with C{Authorization:
            Bearer <requireToken>} are forwarded (C{401} otherwise), and their
            C{Authorization} is not passed on.
        @param recordTo: A folder to record every response forwarded to, with
            its timing, one file each (see L{twisted_stream.exchange._recording}).
        @param recordMaxBytes: The most body bytes recorded of one response
            (the rest is forwarded, not recorded).
        @param policy: How a pool fails over and ejects members.
        @param tryTimeout: Seconds each attempt gets for its response's head
            before the request goes to another member, where it cannot have
            been processed (L{None}: the whole C{connectTimeout}).
        @param name: What the log calls the pool (the route's prefix).
        @param replacing: The pool of the resource this one replaces (a
            reload): members kept keep their streams and their health.
        @param watch: What hears of the pool's members (the gateway's
            metrics).
        @param resume: Where streamed answers are kept for resuming, and for
            how many seconds (see L{twisted_stream.resume._resumable}); by
            default none are.
        """
        super().__init__()
        if reactor is None:
            from twisted.internet import reactor
        self.clock: IReactorTime = reactor
        self.agent: IAgent = agent if agent is not None else UpstreamAgent(reactor, tlsPolicy)
        if isinstance(upstream, (str, bytes)):
            members: Sequence[Member] = [Member(upstream.encode("ascii") if isinstance(upstream, str) else upstream)]
        else:
            members = upstream
        self.pool = Pool(
            members, policy, reactor, states=replacing.members if replacing is not None else (), route=name,
            watch=watch,
        )
        self.connectTimeout = connectTimeout
        self.idleTimeout = idleTimeout
        self.heartbeat = heartbeat
        self.retries = retries
        # The route's requests: its pool, the deadline and the retry rule over the agent.
        self.requests = Failover(self.agent, reactor, self.pool, connectTimeout, retries, tryTimeout)
        self.maxBody = maxBody
        self.injectHeaders = list(injectHeaders)
        self.rules = ForwardingRules(maxBody, requireToken)
        self.dropHeaders = [b"authorization"] if requireToken is not None else []
        self.recorder = Recorder(recordTo, reactor, recordMaxBytes) if recordTo is not None else None
        self.resume = resume

    def methodsAllowed(self) -> list[str]:
        """
        @return: Every method this resource forwards.
        """
        return [method.decode("ascii") for method in FORWARDED_METHODS]

    def upstreamURL(self, rest: bytes, query: bytes) -> bytes:
        """
        The URL a request is forwarded to, on the pool's first member.

        @param rest: Its path below where the resource is mounted.
        @param query: Its query string, without the C{?}.
        @return: The upstream URL with C{rest} appended to its path, and
            C{query} to its query.
        """
        return joinURL(self.pool.members[0].member.url, rest, query)

    def render(self, request: Request) -> bytes | int:
        """
        Check and forward a request for the rest of the path below this
        resource, mounted in any L{Site}: its head as the gateway's
        admission would (the target's form, its header lines, the
        route's rules in L{ForwardingRules}), then L{forward}.

        @param request: The client's request.
        @return: L{NOT_DONE_YET}, or an error body.
        """
        rest = b"".join(b"/" + segment for segment in request.postpath or [])
        target = request.uri
        problem = requestTargetProblem(target)
        headers = request.requestHeaders
        refusal = (
            (Refusal(400, problem) if problem is not None else None)
            or headRefusal(request.clientproto, headers)
            or headerLinesRefusal(headers)
            or self.rules.refusal(request.method, target, rest, False, headers, None)
        )
        if refusal is not None:
            return refusal.render(request)
        return self.forward(request, rest)

    def forward(self, request: Request, rest: bytes, route: Optional[bytes] = None) -> bytes | int:
        """
        Forward a request whose head has been admitted.

        @param request: The client's request.
        @param rest: Its path below the mount point, still percent-encoded.
        @param route: The prefix of the gateway's route that took it, for
            its log event and metrics.
        @return: L{NOT_DONE_YET}, or an error body.
        """
        method = request.method
        target = request.uri
        content = request.content
        body = content.read() if content is not None else b""
        if len(body) > self.maxBody:
            return self.rules.tooLarge.render(request)
        if not body and method in _NO_BODY_UNLESS_SENT and not request.requestHeaders.hasHeader(b"content-length"):
            sent: Optional[bytes] = None
        else:
            sent = body
        _Exchange(self, request, rest, target.partition(b"?")[2], sent, route).start()
        return NOT_DONE_YET
