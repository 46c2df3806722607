# -*- test-case-name: tests.test_mockfaults -*-
"""
Faults on demand: a request to the mock LLM asks for one with the header
C{X-Mock-Fault} or the body field C{mock_fault} (the body wins), and gets
it the way the real API gives it, in the API's own shapes:

  - C{rate_limit}: C{429} with C{Retry-After: 1} and the API's rate-limit
    headers;
  - C{overloaded}: C{503} (OpenAI), C{529} (Anthropic);
  - C{server_error}: C{500};
  - C{disconnect:N}: the connection closes after N tokens, without the
    stream's end (a whole answer: closed before it is sent);
  - C{stall:N:SECONDS}: silence for SECONDS after N tokens, then the rest
    at the pace (a whole answer: sent SECONDS later);
  - C{slow_headers:SECONDS}: nothing at all, not even the response's head,
    for SECONDS, then the answer as usual;
  - C{error_event:N}: after N tokens, the API's mid-stream error event, and
    the stream ends (a whole answer: C{500}).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Optional

from twisted_stream.mock.apis import RequestError

__all__ = ["MAX_SECONDS", "STATUS_FAULTS", "Fault", "faultOf", "parseFault"]

MAX_SECONDS = 600.0
"""The longest stall or wait a fault may ask for."""

STATUS_FAULTS = {
    "rate_limit": (429, "Rate limit reached (mock fault rate_limit): try again in 1 s"),
    "overloaded": (503, "The server is overloaded (mock fault overloaded)"),
    "server_error": (500, "The server had an error while processing the request (mock fault server_error)"),
}
"""The faults answered at once with an error status: (status, message)."""

_FORMS = (
    (re.compile(r"(rate_limit|overloaded|server_error)"), ()),
    (re.compile(r"(disconnect|error_event):(\d+)"), ("after",)),
    (re.compile(r"(stall):(\d+):(\d+(?:\.\d+)?)"), ("after", "seconds")),
    (re.compile(r"(slow_headers):(\d+(?:\.\d+)?)"), ("seconds",)),
)


@dataclass(frozen=True)
class Fault:
    """
    A fault asked for.

    @ivar kind: C{rate_limit}, C{overloaded}, C{server_error},
        C{disconnect}, C{stall}, C{slow_headers} or C{error_event}.
    @ivar after: Tokens sent before it strikes (mid-stream faults).
    @ivar seconds: How long it lasts (C{stall}, C{slow_headers}).
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
        f"mock_fault must be rate_limit, overloaded, server_error, disconnect:N, stall:N:SECONDS,"
        f" slow_headers:SECONDS or error_event:N (SECONDS up to {MAX_SECONDS:g}), not {text!r}",
        "mock_fault",
    )


def faultOf(extra: Any, header: Optional[bytes]) -> Optional[Fault]:
    """
    @param extra: The request body's fields.
    @param header: Its C{X-Mock-Fault} header, if any.
    @return: The fault it asks for, if any.
    @raise RequestError: For a fault that cannot be read.
    """
    if "mock_fault" in extra:
        return parseFault(extra["mock_fault"])
    if header is not None:
        return parseFault(header.decode("latin-1"))
    return None
