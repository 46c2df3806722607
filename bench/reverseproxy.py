"""
The benchmark's baseline peer: Twisted's own ReverseProxyResource at
/stream and /v1, forwarding to the load side's on the given port of
127.0.0.1.
"""

import sys

from twisted.internet import reactor
from twisted.internet.endpoints import serverFromString
from twisted.internet.interfaces import IListeningPort
from twisted.web.proxy import ReverseProxyResource
from twisted.web.resource import Resource
from twisted.web.server import Site


def announce(port: IListeningPort) -> None:
    print(f"reverseproxy listening on http://127.0.0.1:{port.getHost().port}/", flush=True)  # type: ignore[attr-defined]


root = Resource()
root.putChild(b"stream", ReverseProxyResource("127.0.0.1", int(sys.argv[1]), b"/stream"))
root.putChild(b"v1", ReverseProxyResource("127.0.0.1", int(sys.argv[1]), b"/v1"))
serverFromString(reactor, "tcp:0:interface=127.0.0.1:backlog=4096").listen(Site(root)).addCallback(announce)
reactor.run()
