# -*- test-case-name: tests.test_gateway -*-
"""
The gateway's access log: one structured event per answered request, in
the C{chunkproxy.access} namespace, for requests that were forwarded and for
those refused before their body was read alike.
"""

from __future__ import annotations

from typing import Any

from twisted.logger import Logger

__all__ = ["logAccess"]

_accessLog = Logger(namespace="chunkproxy.access")
# (A module's logger: as a class attribute, a Logger would take the class's
# name as its namespace.)


def logAccess(address: Any, method: bytes, path: bytes, code: int, sent: int) -> None:
    """
    Log one answered request.

    @param address: The client's address (an L{IAddress}; C{-} without a
        host).
    @param method: The request's method.
    @param path: Its path, without the query string (which may hold keys).
    @param code: The status it was answered with.
    @param sent: Bytes of response body sent.
    """
    _accessLog.info(
        "{client} {method} {path} {code} {sent}",
        client=getattr(address, "host", "-"),
        method=method.decode("latin-1"),
        path=path.decode("latin-1"),
        code=code,
        sent=sent,
    )
