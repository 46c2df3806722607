"""
C{chunkproxy}'s gateway: the client edge (HTTP/1.1 channel, HTTP/2,
admission, CORS, limits) around the exchange's L{StreamProxyResource}.
"""

from twisted_stream.gateway._admission import Route
from twisted_stream.gateway._channel import GatewayChannel
from twisted_stream.gateway._request import GatewayRequest
from twisted_stream.gateway._site import DEFAULT_MAX_BODY_MEMORY, GatewayResource, GatewaySite
from twisted_stream.http._refusal import RequestLimits

__all__ = [
    "DEFAULT_MAX_BODY_MEMORY",
    "GatewayChannel",
    "GatewayRequest",
    "GatewayResource",
    "GatewaySite",
    "RequestLimits",
    "Route",
]
