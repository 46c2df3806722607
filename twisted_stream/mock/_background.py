# -*- test-case-name: tests.test_background -*-
"""
OpenAI's background mode for the Responses API, in the mock: C{POST
/v1/responses} with C{background: true} runs the answer whether or not a
client is connected, and the answer can be read again, from any event on,
while it runs and after:

  - C{GET /v1/responses/ID}: the response object, its C{status}
    C{queued}, C{in_progress}, C{completed} (or C{incomplete}), C{failed}
    or C{cancelled};
  - C{GET /v1/responses/ID?stream=true&starting_after=N}: the events after
    the one numbered N (C{sequence_number}), then each later one live (the
    openai SDK's C{responses.retrieve(id, stream=True, starting_after=N)});
  - C{POST /v1/responses/ID/cancel}: stops it; the response object, now
    C{cancelled}.

The answer is made by the same L{twisted_stream.mock._tokenstream.TokenStream} as any streamed answer, at
the same pace, writing into a L{BackgroundAnswer} instead of a request:
each event is kept, and handed to every client following it.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from typing import Any, Optional

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IPushProducer
from twisted.web.server import NOT_DONE_YET, Request

from twisted_stream.mock.apis import Answer, RequestError
from twisted_stream.mock.apis.openai import encode
from twisted_stream.mock.apis.responses import OpenAIResponses

__all__ = ["BackgroundAnswer", "BackgroundAnswers", "STREAM_HEADERS"]

STREAM_HEADERS = ((b"Content-Type", b"text/event-stream; charset=utf-8"), (b"Cache-Control", b"no-cache"))

_DONE_STATUSES = {
    "response.completed": "completed",
    "response.incomplete": "incomplete",
    "error": "failed",
}


class BackgroundAnswer:
    """
    One answer made in the background: what a token stream writes to, as
    it would to a request, kept event by event for whoever follows it.

    @ivar status: C{queued}, C{in_progress}, C{completed}, C{incomplete},
        C{failed} or C{cancelled}.
    @ivar events: Each event written so far; the k-th has the
        C{sequence_number} k.
    """

    def __init__(self, api: OpenAIResponses, answer: Answer) -> None:
        self._api = api
        self.answer = answer
        self.status = "queued"
        self.events: list[bytes] = []
        self.size = 0
        self._partial = b""
        self._readers: list[Request] = []
        self._producer: Optional[IPushProducer] = None
        self._stopped: Deferred[None] = Deferred()
        self._final: Optional[dict[str, Any]] = None

    @property
    def done(self) -> bool:
        return self.status not in ("queued", "in_progress")

    # What the token stream calls, as on a request.

    def notifyFinish(self) -> Deferred[None]:
        return self._stopped

    def registerProducer(self, producer: IPushProducer, streaming: bool) -> None:
        self._producer = producer

    def unregisterProducer(self) -> None:
        self._producer = None

    def write(self, data: bytes) -> None:
        if not data:
            return
        self.status = "in_progress"
        self._partial += data
        *whole, self._partial = self._partial.split(b"\n\n")
        for event in whole:
            event += b"\n\n"
            self.events.append(event)
            self.size += len(event)
            kind, _, rest = event.partition(b"\n")
            status = _DONE_STATUSES.get(kind[len(b"event: ") :].decode("ascii", "replace"))
            if status is not None:
                self._final = json.loads(rest[len(b"data: ") :]).get("response")
                self.status = status
            for reader in self._readers:
                reader.write(event)

    def finish(self) -> None:
        if not self.done:
            self.status = "completed"
        readers, self._readers = self._readers, []
        for reader in readers:
            reader.finish()

    def loseConnection(self) -> None:
        # A fault broke the answer off: its followers see it broken off.
        self.status = "failed"
        readers, self._readers = self._readers, []
        for reader in readers:
            reader.loseConnection()

    # What clients ask.

    def cancel(self) -> None:
        """
        Stop making it (C{POST /v1/responses/ID/cancel}).
        """
        if self.done:
            return
        self.status = "cancelled"
        if not self._stopped.called:
            self._stopped.errback(RequestError("cancelled", status=400))
            self._stopped.addErrback(lambda _: None)
        self.finish()

    def follow(self, request: Request, after: int) -> int:
        """
        Stream its events after the one numbered C{after} to C{request},
        then each later one as it is made.

        @return: L{NOT_DONE_YET}.
        """
        for name, value in STREAM_HEADERS:
            request.setHeader(name, value)
        request.write(b"")
        for event in self.events[after + 1 :]:
            request.write(event)
        if self.done:
            request.finish()
        else:
            self._readers.append(request)
            request.notifyFinish().addBoth(lambda _: self._readers.remove(request) if request in self._readers else None)
        return NOT_DONE_YET

    def responseObject(self) -> bytes:
        """
        @return: The response object as C{GET /v1/responses/ID} answers it.
        """
        if self._final is not None and self.status != "cancelled":
            return encode({**self._final, "background": True})
        response = self._api._response(self.answer, self.status, [])
        return encode({**response, "background": True})


class BackgroundAnswers:
    """
    The background answers a mock keeps: the last C{keep}, by id, and no
    more than C{keepBytes} of their events (as they are when one is
    added): the oldest go first, stopped if still being made.
    """

    def __init__(self, keep: int = 1000, keepBytes: int = 64 * 1024 * 1024) -> None:
        self._keep = keep
        self._keepBytes = keepBytes
        self._answers: OrderedDict[str, BackgroundAnswer] = OrderedDict()

    def add(self, answer: BackgroundAnswer) -> None:
        self._answers[answer.answer.id] = answer
        kept = sum(each.size for each in self._answers.values())
        while len(self._answers) > self._keep or (kept > self._keepBytes and len(self._answers) > 1):
            _, forgotten = self._answers.popitem(last=False)
            kept -= forgotten.size
            forgotten.cancel()

    def get(self, id: str) -> Optional[BackgroundAnswer]:
        return self._answers.get(id)

    def cancelAll(self) -> None:
        """
        Stop making every answer still being made (the mock is stopping:
        none may leave a timer behind).
        """
        for answer in list(self._answers.values()):
            answer.cancel()
