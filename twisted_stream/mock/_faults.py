# -*- test-case-name: tests.test_mockfaults -*-
"""
Faults on demand: a request to the mock LLM asks for one with the header
C{X-Mock-Fault} or the body field C{mock_fault} (the body wins), and gets
it the way the real API gives it, in the API's own shapes:

  - C{rate_limit}, C{rate_limit:SECONDS}: C{429} with C{Retry-After: 1}
    (or SECONDS) and the API's rate-limit headers;
  - C{overloaded}: C{503} (OpenAI), C{529} (Anthropic);
  - C{server_error}: C{500};
  - C{disconnect:N}: the connection closes after N tokens, without the
    stream's end (a whole answer: closed before it is sent);
  - C{stall:N:SECONDS}: silence for SECONDS after N tokens, then the rest
    at the pace (a whole answer: sent SECONDS later);
  - C{slow_headers:SECONDS}: nothing at all, not even the response's head,
    for SECONDS, then the answer as usual;
  - C{error_event:N}: after N tokens, the API's mid-stream error event, and
    the stream ends (a whole answer: C{500});
  - C{reset}: the connection is reset (RST) once the request has been
    read, with no answer at all (a replica that crashes on every request).

C{chunkgen --fault KIND[:ARGS] --fault-rate R} gives that fault to a share
R of the requests that ask for none (L{FaultPlan}), so that a test can run a
fleet of mock replicas, some of them bad.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass, field
from typing import Any, Optional

from twisted_stream.mock.apis import RequestError

__all__ = ["MAX_SECONDS", "STATUS_FAULTS", "Fault", "FaultPlan", "faultOf", "parseFault"]

MAX_SECONDS = 600.0
"""The longest stall or wait a fault may ask for."""

STATUS_FAULTS = {
    "rate_limit": (429, "Rate limit reached (mock fault rate_limit): try again in 1 s"),
    "overloaded": (503, "The server is overloaded (mock fault overloaded)"),
    "server_error": (500, "The server had an error while processing the request (mock fault server_error)"),
}
"""The faults answered at once with an error status: (status, message)."""

_FORMS = (
    (re.compile(r"(rate_limit|overloaded|server_error|reset)"), ()),
    (re.compile(r"(rate_limit):(\d+)"), ("seconds",)),
    (re.compile(r"(disconnect|error_event):(\d+)"), ("after",)),
    (re.compile(r"(stall):(\d+):(\d+(?:\.\d+)?)"), ("after", "seconds")),
    (re.compile(r"(slow_headers):(\d+(?:\.\d+)?)"), ("seconds",)),
)


@dataclass(frozen=True)
class Fault:
    """
    A fault asked for.

    @ivar kind: C{rate_limit}, C{overloaded}, C{server_error},
        C{disconnect}, C{stall}, C{slow_headers}, C{error_event} or C{reset}.
    @ivar after: Tokens sent before it strikes (mid-stream faults).
    @ivar seconds: How long it lasts (C{stall}, C{slow_headers}), or the
        C{Retry-After} of a C{rate_limit} (0: 1 s).
    """

    kind: str
    after: int = 0
    seconds: float = 0.0


def parseFault(text: Any) -> Fault:
    """
    @param text: What the request asked for.
    @return: The fault.
    @raise RequestError: For anything that is not one of the forms above.
    """
    if isinstance(text, str):
        for pattern, names in _FORMS:
            found = pattern.fullmatch(text)
            if found:
                values = dict(zip(names, found.groups()[1:], strict=True))
                seconds = float(values.get("seconds", 0))
                if seconds > MAX_SECONDS:
                    break
                return Fault(found.group(1), int(values.get("after", 0)), seconds)
    raise RequestError(
        f"mock_fault must be rate_limit[:SECONDS], overloaded, server_error, reset, disconnect:N, stall:N:SECONDS,"
        f" slow_headers:SECONDS or error_event:N (SECONDS up to {MAX_SECONDS:g}), not {text!r}",
        "mock_fault",
    )


@dataclass(frozen=True)
class FaultPlan:
    """
    A fault the whole process gives a share of its requests (C{chunkgen
    --fault KIND --fault-rate R}).

    @ivar fault: The fault.
    @ivar rate: The share of requests that get it, 0 to 1.
    """

    fault: Fault
    rate: float = 1.0
    chance: random.Random = field(default_factory=random.Random, compare=False)

    def pick(self) -> Optional[Fault]:
        """
        @return: The fault, for this request's share, or L{None}.
        """
        return self.fault if self.chance.random() < self.rate else None


def faultOf(extra: Any, header: Optional[bytes], plan: Optional[FaultPlan] = None) -> Optional[Fault]:
    """
    @param extra: The request body's fields.
    @param header: Its C{X-Mock-Fault} header, if any.
    @param plan: The process's fault, for a request that asks for none.
    @return: The fault it asks for or gets, if any.
    @raise RequestError: For a fault that cannot be read.
    """
    if "mock_fault" in extra:
        return parseFault(extra["mock_fault"])
    if header is not None:
        return parseFault(header.decode("latin-1"))
    return plan.pick() if plan is not None else None
