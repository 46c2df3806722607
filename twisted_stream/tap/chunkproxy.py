# -*- test-case-name: tests.test_tap -*-
"""
C{twistd chunkproxy}: the streaming proxy and its page as a twistd plugin.
"""

from __future__ import annotations

from twisted.application.service import IService, MultiService, Service
from twisted.internet.defer import Deferred
from twisted.web.client import Agent, HTTPConnectionPool
from twisted.web.server import Site

from twisted_stream._http import PlainResource
from twisted_stream._service import listeningService
from twisted_stream.options import ProxyOptions
from twisted_stream.page import PageResource
from twisted_stream.proxy import StreamProxyResource

__all__ = ["Options", "makeService"]

Options = ProxyOptions


class _PoolService(Service):
    """
    Closes the upstream connection pool's idle connections on shutdown.
    """

    def __init__(self, pool: HTTPConnectionPool) -> None:
        self._pool = pool

    def stopService(self) -> Deferred[None]:
        super().stopService()
        return self._pool.closeCachedConnections()


def makeService(options: ProxyOptions) -> IService:
    """
    Build the proxy's service.

    @param options: The parsed command line.
    @return: A service that serves the page at C{/} and the proxied stream at
        C{/stream} on C{--listen}.
    """
    from twisted.internet import reactor

    pool = HTTPConnectionPool(reactor, persistent=True)
    root = PlainResource()
    root.putChild(b"", PageResource())
    root.putChild(
        b"stream",
        StreamProxyResource(
            options["upstream"],
            Agent(reactor, pool=pool),
            reactor,
            connectTimeout=options["connect-timeout"],
        ),
    )
    site = Site(root)
    site.displayTracebacks = False
    service = MultiService()
    _PoolService(pool).setServiceParent(service)
    listeningService(
        reactor, options["listen"], site, "chunkproxy", [("page", ""), ("stream", "stream")]
    ).setServiceParent(service)
    return service
