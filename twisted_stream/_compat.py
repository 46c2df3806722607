# -*- test-case-name: tests.test_compat -*-
"""
Every name of Twisted's that is not public, in one place.

The gateway reaches below Twisted's public API where the public API cannot
do what it must (answer before a body is read, bound HTTP/2's header
blocks, write a chunk without a reactor turn). Each use is named here, with
what it relies on; no other module imports a Twisted name that starts with
an underscore or comes from a private module. Checked against the Twisted
versions in C{setup.py}'s bounds (25.5.0, and the newest on PyPI in CI's
step against it).
"""

from __future__ import annotations

from typing import Any, TypeGuard

from twisted.web._http2 import H2Stream

__all__ = ["H2Stream", "isHTTP2Stream"]


def isHTTP2Stream(channel: Any) -> TypeGuard[H2Stream]:
    """
    @param channel: A request's C{channel}.
    @return: Whether it is one stream of Twisted's HTTP/2 connection (whose
        C{abortConnection} resets the stream, not the connection).
    """
    return isinstance(channel, H2Stream)
