"""
The library piece: L{StreamProxyResource}, to mount in any
L{twisted.web.server.Site} (or Klein app), and L{IStreamHooks}, what a site
around it may provide. Also importable as C{from twisted_stream import
StreamProxyResource}.
"""

from twisted_stream.exchange._hooks import DEFAULT_HOOKS, IStreamHooks, Stream
from twisted_stream.exchange._resource import DEFAULT_MAX_BODY, StreamProxyResource
from twisted_stream.exchange._rules import (
    ALLOW_FORWARDED,
    FORWARDED_METHODS,
    NOT_ORIGIN_FORM,
    ForwardingRules,
    requestTargetProblem,
    targetProblem,
)

__all__ = [
    "ALLOW_FORWARDED",
    "DEFAULT_HOOKS",
    "DEFAULT_MAX_BODY",
    "FORWARDED_METHODS",
    "ForwardingRules",
    "NOT_ORIGIN_FORM",
    "IStreamHooks",
    "Stream",
    "StreamProxyResource",
    "requestTargetProblem",
    "targetProblem",
]
