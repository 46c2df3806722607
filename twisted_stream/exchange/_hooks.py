# -*- test-case-name: tests.test_library -*-
"""
What L{StreamProxyResource} asks of the site it is mounted in: the one
declared way for a gateway around it to follow its streams, with defaults
that do nothing special, so that the resource works in any L{Site}.

A site that provides L{IStreamHooks} (the gateway's does) gets each stream
as it starts (to log it, to cut it off when draining), counts it in its
metrics, and ends a broken-off response in the protocol its client speaks.
Any other site gets L{DEFAULT_HOOKS}.
"""

from __future__ import annotations

from typing import Callable, Optional, Protocol

from twisted.web.iweb import IRequest
from twisted.web.server import Request
from zope.interface import Attribute, Interface, implementer

from twisted_stream._compat import streamOf
from twisted_stream.exchange._streamlog import StreamCounter
from twisted_stream.http._refusal import Refusal

__all__ = ["DEFAULT_HOOKS", "DefaultStreamHooks", "IStreamHooks", "Stream", "hooksOf"]


class Stream(Protocol):
    """
    A stream as its site sees it.
    """

    def cutOff(self, refusal: Refusal) -> None:
        """
        End the stream now (a draining gateway's time has run out): one
        under way ends truncated, one still waiting for its upstream is
        answered C{refusal}; either way the upstream request is cancelled.
        """


class IStreamHooks(Interface):
    """
    What a site does with the streams of the L{StreamProxyResource}s in it.
    """

    metrics = Attribute("A L{StreamCounter}, or L{None}: where streams are counted.")

    def streamStarted(request: Request, stream: Stream) -> None:
        """
        A request is being forwarded: its stream logs itself when it ends
        (the site need not), and may be cut off.
        """

    def truncate(request: Request) -> None:
        """
        End C{request}'s response so that its client sees it broke off,
        after what was written (never as a clean end).
        """

    def outlives(request: Request, stream: Stream) -> Callable[[], None]:
        """
        C{request}'s client has gone but its stream goes on (a resumable
        stream, kept for whoever comes back): it is still counted as in
        flight (in the client's streams, and for a drain, which may cut it
        off) until the callable returned is called, once, at its end.
        """


@implementer(IStreamHooks)
class DefaultStreamHooks:
    """
    The hooks of a site that has none of its own: no metrics, nothing told,
    and a broken-off response ends as Twisted's protocols allow.
    """

    metrics: Optional[StreamCounter] = None

    def streamStarted(self, request: Request, stream: Stream) -> None:
        pass

    def outlives(self, request: Request, stream: Stream) -> Callable[[], None]:
        return _nothing

    def truncate(self, request: Request) -> None:
        stream = streamOf(request)
        if stream is not None:
            # HTTP/2: the stream is reset, losing what is queued, rather
            # than ended cleanly.
            connection, streamID = stream
            connection.abortRequest(streamID)
            return
        # HTTP/1.x: the connection closes without the terminating chunk.
        request.loseConnection()


def _nothing() -> None:
    pass


DEFAULT_HOOKS = DefaultStreamHooks()


def hooksOf(request: IRequest) -> IStreamHooks:
    """
    @param request: A request that reached a L{StreamProxyResource}.
    @return: Its site's hooks, or L{DEFAULT_HOOKS}.
    """
    site = request.site if isinstance(request, Request) else None
    hooks: IStreamHooks = IStreamHooks(site, DEFAULT_HOOKS)
    return hooks
