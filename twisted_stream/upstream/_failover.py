# -*- test-case-name: tests.test_failover,tests.test_proxy -*-
"""
L{Failover}: a route's upstream requests, over its L{Pool}: each attempt to
the member the pool chooses, the request's deadline, and the next attempt
when one fails before the first byte of an answer.

The rules, in their one home:

  - An attempt that could not be sent, or whose member answered a status in
    the pool's retry set (C{429}, C{503}, ...), goes on to a member not yet
    tried, at once, the request's body replayed from memory: the request
    was not processed there. An attempt that may have been processed is
    never sent again (L{retriable} says which: a POST whose connection was
    lost after it went out is not).
  - Where no untried member is left, a request that was not sent is tried
    again on a member after 0.1 s, 0.2 s, ... up to C{retries} times, as a
    route with one upstream always did.
  - At most L{Pool.tries} attempts (and C{1 + retries}), within one deadline
    for the response's head, and failover attempts within the pool's retry
    budget, so that a failing fleet is not met with a retry storm.
  - When every try failed, the caller gets the last answer as it came (an
    SDK sees a real C{429} with its C{Retry-After}), or the last failure.

Each attempt tells the pool what it found (a failure, a success, a
cooldown), which is how members are ejected and come back.
"""

from __future__ import annotations

from typing import Any, Optional

from twisted.internet.defer import Deferred
from twisted.internet.error import ConnectBindError, ConnectingCancelledError
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.internet.protocol import Protocol
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.http import stringToDatetime
from twisted.web.http_headers import Headers
from twisted.web.iweb import IAgent, IBodyProducer, IResponse

from twisted_stream.upstream._pool import MemberState, Pool
from twisted_stream.upstream._retry import NoResponseInTime, retriable

__all__ = ["Failover", "PoolFull", "Served", "discard", "joinURL", "onOrigin", "retryAfter"]

_COOLING_STATUSES = (429, 503)

_log = Logger()


class PoolFull(Exception):
    """
    Every member of the pool is at its stream cap.
    """


def joinURL(base: bytes, rest: bytes, query: bytes) -> bytes:
    """
    @param base: An upstream's URL, which may have a query string.
    @param rest: A request's path below its route.
    @param query: Its query string, without the C{?}.
    @return: C{base} with C{rest} appended to its path (exactly one slash
        between them) and C{query} to its query.
    """
    path, _, baseQuery = base.partition(b"?")
    if rest and path.endswith(b"/") and rest.startswith(b"/"):
        rest = rest[1:]
    elif rest and not path.endswith(b"/") and not rest.startswith(b"/"):
        rest = b"/" + rest
    url = path + rest
    queries = [q for q in (baseQuery, query) if q]
    return url + b"?" + b"&".join(queries) if queries else url


def onOrigin(url: bytes, path: bytes) -> bytes:
    """
    @param url: An absolute URL.
    @param path: A path (and query) starting with C{/}.
    @return: C{path} on the origin of C{url}.
    """
    scheme, _, netloc = url.split(b"/", 3)[:3]
    return scheme + b"//" + netloc + path


def retryAfter(response: IResponse, now: float) -> Optional[float]:
    """
    @return: The seconds a response's C{Retry-After} asks for (a number, or
        an HTTP date), or L{None} where it has none that can be read.
    """
    values = response.headers.getRawHeaders(b"retry-after")
    if not values:
        return None
    value = values[-1].strip()
    if value.isdigit():
        return float(value)
    try:
        return stringToDatetime(value) - now
    except (ValueError, IndexError, KeyError):
        return None


class _Discard(Protocol):
    def connectionMade(self) -> None:
        self.transport.stopProducing()  # type: ignore[union-attr]


def discard(response: IResponse) -> None:
    """
    Take a response's body that nobody will read: a body still coming is
    stopped, its connection closed (cheaper than reading a body of any size
    to keep it); one that had already arrived whole leaves its connection
    kept alive, for the next request.
    """
    response.deliverBody(_Discard())


class Served:
    """
    The answer to a request: the response of the member that gave it.

    @ivar response: The response, its head arrived.
    @ivar member: The member that answered.
    @ivar tries: The attempts it took.
    @ivar failovers: How many of them went on to another member.
    """

    def __init__(self, pool: Pool, response: IResponse, member: MemberState, tries: int, failovers: int) -> None:
        self._pool: Optional[Pool] = pool
        self.response = response
        self.member = member
        self.tries = tries
        self.failovers = failovers

    def done(self) -> None:
        """
        The stream has ended: the member's slot is free (once).
        """
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.release(self.member)
            pool.active -= 1


class Failover:
    """
    A route's requests: see the module's docstring.

    @ivar deadline: Seconds from the request until a response's head.
    @ivar retries: Times a request that was not sent is tried again where
        no untried member is left.
    @ivar tryTimeout: Seconds each attempt gets for its head (L{None}: the
        whole deadline); one that runs out goes to another member where the
        request cannot have been processed.
    """

    def __init__(
        self,
        agent: IAgent,
        clock: IReactorTime,
        pool: Pool,
        deadline: float,
        retries: int,
        tryTimeout: Optional[float] = None,
    ) -> None:
        self.agent = agent
        self.clock = clock
        self.pool = pool
        self.deadline = deadline
        self.retries = retries
        self.tryTimeout = tryTimeout

    def request(
        self, method: bytes, rest: bytes, query: bytes, headers: Headers, body: Optional[IBodyProducer]
    ) -> Deferred[Served]:
        """
        @param method: The method.
        @param rest: The path below the route.
        @param query: The query string.
        @param headers: The headers for every member (the route's
            injected); each member's own are set on a copy.
        @param body: The body, in memory (it may be sent more than once).
        @return: A Deferred that fires with the L{Served} answer, or fails
            with the last attempt's failure, L{NoResponseInTime}, or
            L{PoolFull}. Cancelling it cancels the attempt in flight.
        """
        return _Attempts(self, method, rest, query, headers, body).result


class _Attempts:
    """
    The attempts at one request, until one gets a head that is its answer,
    or the tries, the time or the budget run out, or the caller cancels.
    """

    def __init__(
        self,
        failover: Failover,
        method: bytes,
        rest: bytes,
        query: bytes,
        headers: Headers,
        body: Optional[IBodyProducer],
    ) -> None:
        self._failover = failover
        self._pool = pool = failover.pool
        self._method = method
        self._rest = rest
        self._query = query
        self._headers = headers
        self._body = body
        self._tried: list[MemberState] = []
        self._member: Optional[MemberState] = None
        self._pending: Optional[Deferred[IResponse]] = None
        self._retry: Optional[IDelayedCall] = None
        self._tryTimer: Optional[IDelayedCall] = None
        self._lastFailure: Optional[Failure] = None
        self._outOfTime = False
        self._tryTimedOut = False
        self._cancelled = False
        self._failovers = 0
        self._limit = max(pool.tries, 1 + failover.retries)
        self.result: Deferred[Served] = Deferred(self._cancel)
        pool.active += 1
        self._deadline: Optional[IDelayedCall] = failover.clock.callLater(failover.deadline, self._timeIsUp)
        self._attempt()

    @property
    def _where(self) -> str:
        return self._rest.decode("ascii", "replace")

    def _attempt(self) -> None:
        self._retry = None
        pool = self._pool
        member = pool.choose(self._tried)
        if member is None:
            self._fail(Failure(PoolFull()))
            return
        self._member = member
        if self._tried:
            pool.retrying += 1
        self._tried.append(member)
        headers = self._headers
        if member.member.injectHeaders:
            headers = headers.copy()
            for name, value in member.member.injectHeaders:
                headers.setRawHeaders(name, [value])
        url = joinURL(member.member.url, self._rest, self._query)
        self._tryTimedOut = False
        tryTimeout = self._failover.tryTimeout
        if tryTimeout is not None and tryTimeout < self._failover.deadline:
            self._tryTimer = self._failover.clock.callLater(tryTimeout, self._tryTimeIsUp)
        self._pending = pending = self._failover.agent.request(self._method, url, headers, self._body)
        pending.addCallbacks(self._answered, self._failed)

    def _attemptEnded(self) -> MemberState:
        # The attempt in flight is over: its member's slot, its budget.
        self._pending = None
        if self._tryTimer is not None and self._tryTimer.active():
            self._tryTimer.cancel()
        self._tryTimer = None
        member = self._member
        assert member is not None
        self._member = None
        if len(self._tried) > 1:
            self._pool.retrying -= 1
        return member

    def _untriedLeft(self) -> bool:
        return len(self._tried) < self._limit and any(
            state not in self._tried and not state.full() for state in self._pool.members
        )

    def _answered(self, response: IResponse) -> None:
        member = self._attemptEnded()
        pool = self._pool
        if self._cancelled:
            discard(response)
            pool.release(member)
            return
        status = response.code
        if status in _COOLING_STATUSES:
            seconds = retryAfter(response, self._failover.clock.seconds())
            if seconds is not None:
                pool.coolDown(member, seconds, status)
        if status >= 500:
            pool.failed(member, f"answered {status}")
        elif status != 429:
            pool.succeeded(member)
        if status in pool.policy.retryStatuses and self._untriedLeft() and pool.retryAllowed():
            discard(response)
            pool.release(member)
            pool.failedOver(member, f"answered {status}")
            self._failovers += 1
            self._attempt()
            return
        self._stopDeadline()
        self.result.callback(Served(pool, response, member, len(self._tried), self._failovers))

    def _failed(self, failure: Failure) -> None:
        member = self._attemptEnded()
        pool = self._pool
        pool.release(member)
        if self._cancelled:
            return
        timedOut = self._tryTimedOut
        if timedOut and failure.check(ConnectingCancelledError):
            # Our own timer stopped the connection: nothing was sent.
            sendable = True
        else:
            sendable = retriable(failure, self._method, self._body is None)
        if not failure.check(ConnectBindError):
            # (A socket this process could not make is its own lack, not
            # the member's failure. A kept-alive connection lost as a
            # request went out counts: it may be the pool's race with an
            # idle close, rare, or a member that resets every request,
            # which must not escape ejection by being asked on reused
            # connections, its health check's among them.)
            why = "no answer in time" if timedOut or self._outOfTime else type(failure.value).__name__
            pool.failed(member, why)
        if timedOut and not failure.check(ConnectingCancelledError):
            failure = Failure(NoResponseInTime(self._failover.tryTimeout))
        if sendable and self._deadline is not None:
            if self._untriedLeft() and pool.retryAllowed():
                self._lastFailure = failure
                pool.failedOver(member, f"failed before any answer: {failure.getErrorMessage() or type(failure.value).__name__}")
                self._failovers += 1
                self._attempt()
                return
            again = len(self._tried)
            if again <= self._failover.retries:
                _log.info(
                    "{method} {url}: attempt {attempt} failed ({failure.value!r}) before any answer; trying again",
                    method=self._method.decode("ascii"),
                    url=self._where,
                    attempt=again,
                    failure=failure,
                )
                self._lastFailure = failure
                self._retry = self._failover.clock.callLater(0.1 * again, self._attempt)
                return
        if self._outOfTime and not failure.check(ConnectingCancelledError):
            failure = Failure(NoResponseInTime(self._failover.deadline))
        self._fail(failure)

    def _fail(self, failure: Failure) -> None:
        self._stopDeadline()
        self._pool.active -= 1
        self.result.errback(failure)

    def _tryTimeIsUp(self) -> None:
        self._tryTimer = None
        self._tryTimedOut = True
        if self._pending is not None:
            self._pending.cancel()

    def _timeIsUp(self) -> None:
        self._deadline = None
        self._outOfTime = True
        if self._pending is not None:
            self._pending.cancel()
        elif self._retry is not None and self._lastFailure is not None:
            # Out of time between attempts: the caller hears why the last
            # attempt failed (it never connected, so no NoResponseInTime).
            self._retry.cancel()
            self._retry = None
            self._fail(self._lastFailure)

    def _stopDeadline(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _cancel(self, result: Deferred[Any]) -> None:
        # Deferred.cancel fails the result with CancelledError once this
        # returns.
        self._cancelled = True
        self._stopDeadline()
        self._pool.active -= 1
        if self._retry is not None:
            self._retry.cancel()
            self._retry = None
        if self._pending is not None:
            self._pending.cancel()

