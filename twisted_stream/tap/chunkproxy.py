# -*- test-case-name: tests.test_tap -*-
"""
C{twistd chunkproxy}: the streaming gateway and its page as a twistd plugin.
"""

from __future__ import annotations

import re
from typing import Optional

from twisted.application.service import IService, MultiService, Service
from twisted.internet.defer import Deferred
from twisted.internet.ssl import Certificate, trustRootFromCertificates
from twisted.web.client import BrowserLikePolicyForHTTPS
from twisted.web.iweb import IPolicyForHTTPS

from twisted_stream._agent import UpstreamAgent
from twisted_stream._gc import GarbageCollectionService
from twisted_stream._service import listeningService
from twisted_stream._wire import ResponseLimits
from twisted_stream.gateway import GatewayResource, GatewaySite, Route
from twisted_stream.options import ProxyOptions
from twisted_stream.page import PageResource
from twisted_stream.proxy import StreamProxyResource

__all__ = ["Options", "makeService"]

Options = ProxyOptions

_PEM = re.compile(rb"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----", re.S)


class _PoolService(Service):
    """
    Closes the upstream agent's idle connections on shutdown.
    """

    def __init__(self, agent: UpstreamAgent) -> None:
        self._agent = agent

    def stopService(self) -> Deferred[None]:
        super().stopService()
        return self._agent.closeCachedConnections()


def tlsPolicy(caFile: Optional[str]) -> Optional[IPolicyForHTTPS]:
    """
    How to check C{https://} upstreams.

    @param caFile: A PEM file of CA certificates to trust instead of the
        system's, or L{None} for the system's trust store.
    @return: The policy, or L{None} for the agent's default (the system's
        trust store, with host name checks).
    """
    if caFile is None:
        return None
    with open(caFile, "rb") as f:
        certificates = [Certificate.loadPEM(pem) for pem in _PEM.findall(f.read())]
    if not certificates:
        raise ValueError(f"no PEM certificate in {caFile}")
    return BrowserLikePolicyForHTTPS(trustRoot=trustRootFromCertificates(certificates))


def makeService(options: ProxyOptions) -> IService:
    """
    Build the gateway's service.

    @param options: The parsed command line.
    @return: A service that serves the routes and the page on C{--listen}.
    """
    from twisted.internet import reactor

    agent = UpstreamAgent(
        reactor,
        tlsPolicy(options["upstream-ca"]),
        ResponseLimits(options["max-response-header-bytes"], options["max-response-headers"]),
        dnsTTL=options["dns-ttl"],
    )
    routes = [
        Route(
            route.prefix,
            StreamProxyResource(
                route.upstream,
                reactor=reactor,
                agent=agent,
                connectTimeout=options["connect-timeout"],
                idleTimeout=options["idle-timeout"],
                heartbeat=options["heartbeat"],
                retries=options["retries"],
                maxBody=options["max-body"],
                injectHeaders=route.injectHeaders,
                requireToken=options["require-token"],
            ),
        )
        for route in options.allRoutes()
    ]
    site = GatewaySite(GatewayResource(routes, PageResource()), options["max-body"], options["client-timeout"])
    service = MultiService()
    _PoolService(agent).setServiceParent(service)
    GarbageCollectionService().setServiceParent(service)
    listeningService(
        reactor, options["listen"], site, "chunkproxy", [("page", ""), ("stream", "stream")]
    ).setServiceParent(service)
    return service
