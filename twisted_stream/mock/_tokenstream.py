# -*- test-case-name: tests.test_mockllm,tests.test_mockfaults -*-
"""
One streamed answer of the mock LLM, paced: its reasoning's tokens, then
its answer's, each as its API's events, on the clock, from the time to the
first token at the tokens-per-second pace.

The schedule is computed from the clock, not by counting ticks: a late
reactor gets the tokens it missed at once, and the count by any moment is
exact. It is the request's push producer (a client that does not read
pauses it) and strikes a mid-stream fault (C{disconnect}, C{stall},
C{error_event}) where the fault says.
"""

from __future__ import annotations

from typing import Callable, Optional, Sequence

from twisted.internet.interfaces import IDelayedCall, IPushProducer, IReactorTime
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.server import Request
from zope.interface import implementer

from twisted_stream.mock._faults import Fault
from twisted_stream.mock._state import Pace
from twisted_stream.mock.apis import Answer, ChatAPI, Finish, RequestError

__all__ = ["TokenStream"]

_MID_STREAM = ("disconnect", "stall", "error_event")


@implementer(IPushProducer)
class TokenStream:
    """
    Writes one streamed answer's events, paced; the request's push
    producer, so a client that does not read pauses it.
    """

    _log = Logger()

    def __init__(
        self,
        request: Request,
        api: ChatAPI,
        answer: Answer,
        pieces: Sequence[str],
        finish: Finish,
        pace: Pace,
        clock: IReactorTime,
        fault: Optional[Fault] = None,
        keep: Optional[Callable[[bytes], None]] = None,
    ) -> None:
        self._request = request
        self._keep = keep
        self._api = api
        self._answer = answer
        self._fault = fault if fault is not None and fault.kind in _MID_STREAM else None
        self._pieces = pieces
        # The reasoning streams first, at the same pace: steps count both.
        self._thoughts = len(answer.reasoning)
        self._steps = self._thoughts + len(pieces)
        self._finish = finish
        self._pace = pace
        self._clock = clock
        self._sent = 0
        self._first: Optional[IDelayedCall] = None
        self._loop: Optional[LoopingCall] = None
        self._begun = False
        self._origin = 0.0
        self._paused = False
        self._done = False

    def start(self) -> None:
        self._request.notifyFinish().addErrback(self._gone)
        self._request.registerProducer(self, True)
        self._request.write(b"")
        # Token k (from 0) is due at origin + k / tokensPerSecond, the origin
        # being when the first token is due, however late the reactor is.
        self._origin = self._clock.seconds() + self._pace.ttft
        self._first = self._clock.callLater(self._pace.ttft, self._begin)

    def _begin(self) -> None:
        self._first = None
        self._begun = True
        self._request.write(self._api.opening(self._answer))
        if not self._paused:
            self._startLoop()

    def _startLoop(self) -> None:
        self._loop = LoopingCall(self._tick)
        self._loop.clock = self._clock
        self._loop.start(1 / self._pace.tokensPerSecond, now=True).addErrback(self._failed)

    def _tick(self) -> None:
        # The tokens due by now, from the clock rather than by counting
        # ticks: a late reactor gets the missed tokens at once, and float
        # rounding never shifts the schedule (LoopingCall.withCount's first
        # count can come out as 0).
        elapsed = self._clock.seconds() - self._origin
        # (A token may go up to a thousandth of its interval early: clock
        # times this far from the epoch round by tenths of a microsecond.)
        due = min(self._steps, int(elapsed * self._pace.tokensPerSecond + 1e-3) + 1)
        while self._sent < due and not (self._paused or self._done):
            if self._fault is not None and self._fault.after == self._sent:
                self._strike(self._fault)
                return
            self._request.write(self._step(self._sent))
            self._sent += 1
        if self._sent == self._steps and not self._done:
            self._end()

    def _step(self, index: int) -> bytes:
        """
        @return: The events of step C{index}: a token of reasoning, or of
            the answer (the first after reasoning with what comes between).
        """
        if index < self._thoughts:
            return self._api.thinking(self._answer, self._answer.reasoning[index])
        # (In this order: the Responses API numbers its events as made.)
        between = self._api.afterThinking(self._answer) if index == self._thoughts and self._thoughts else b""
        return between + self._api.token(self._answer, self._pieces[index - self._thoughts])

    def _strike(self, fault: Fault) -> None:
        # Once: a stall goes on afterwards.
        self._fault = None
        if fault.kind == "disconnect":
            self._stop()
            self._request.loseConnection()
        elif fault.kind == "error_event":
            self._stop()
            self._request.write(self._api.errorEvent(self._answer, RequestError("mock fault error_event", status=500)))
            self._request.unregisterProducer()
            self._request.finish()
        else:
            # A stall: the loop stops, and the pace resumes from its end.
            if self._loop is not None and self._loop.running:
                self._loop.stop()
            self._origin += fault.seconds
            self._first = self._clock.callLater(fault.seconds, self._afterStall)

    def _afterStall(self) -> None:
        self._first = None
        if not (self._paused or self._done):
            self._startLoop()

    def _stop(self) -> None:
        self._done = True
        if self._first is not None:
            self._first.cancel()
            self._first = None
        if self._loop is not None and self._loop.running:
            self._loop.stop()

    def _end(self) -> None:
        self._stop()
        if self._keep is not None:
            self._keep(self._api.whole(self._answer, "".join(self._pieces), self._finish, self._sent))
        request = self._request
        if self._thoughts and self._sent == self._thoughts:
            # Reasoning and an empty answer: the reasoning's end still comes.
            request.write(self._api.afterThinking(self._answer))
        request.write(self._api.closing(self._answer, self._finish, self._sent))
        request.unregisterProducer()
        request.finish()

    def _gone(self, reason: Failure) -> None:
        self._stop()

    def _failed(self, reason: Failure) -> None:
        self._log.failure("token stream failed", reason)
        self._stop()
        self._request.loseConnection()

    def pauseProducing(self) -> None:
        if not self._done:
            self._paused = True
            if self._loop is not None and self._loop.running:
                self._loop.stop()

    def resumeProducing(self) -> None:
        if self._paused and not self._done:
            self._paused = False
            if self._begun:
                # Go on at the pace from here: the next token is due now.
                self._origin = self._clock.seconds() - self._sent / self._pace.tokensPerSecond
                self._startLoop()

    def stopProducing(self) -> None:
        self._stop()
