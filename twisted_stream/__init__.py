"""
twisted-stream: forward streaming HTTP responses in real time, on Twisted.

The parts, each a folder:

  - L{twisted_stream.exchange}: L{StreamProxyResource}, the library piece
    that forwards each chunk the moment it arrives, with backpressure and
    cancellation (its public face: L{twisted_stream.proxy});
  - L{twisted_stream.upstream}: the HTTP/1.1 client wire and its pool;
  - L{twisted_stream.gateway}: C{chunkproxy}'s client edge (HTTP/1.1,
    HTTP/2, admission, CORS, limits);
  - L{twisted_stream.ops}: log, metrics, drain, workers, listening;
  - L{twisted_stream.mock}: C{chunkgen}'s generator and mock LLM;
  - L{twisted_stream.chunkwatch}: the terminal watcher;
  - L{twisted_stream.page}: the page that shows chunks arriving live;
  - L{twisted_stream.http}: header rules and refusals they all share;
  - L{twisted_stream.tap}: the twistd plugins' options and services.

The public names below load their part when first used, so that importing
one part (the mock, the wire) does not load the others.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from twisted_stream.gateway import GatewayResource, GatewaySite, Route
    from twisted_stream.proxy import IStreamHooks, StreamProxyResource

__version__ = "0.1.0"

__all__ = ["GatewayResource", "GatewaySite", "IStreamHooks", "Route", "StreamProxyResource", "__version__"]

_HOMES = {
    "StreamProxyResource": "twisted_stream.proxy",
    "IStreamHooks": "twisted_stream.proxy",
    "GatewayResource": "twisted_stream.gateway",
    "GatewaySite": "twisted_stream.gateway",
    "Route": "twisted_stream.gateway",
}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'twisted_stream' has no attribute {name!r}")
    return getattr(import_module(home), name)
