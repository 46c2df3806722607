"""
The C{streamepoll} reactor (C{twistd --reactor streamepoll}): Twisted's
epoll reactor without a legacy log context around every event, which
chunkproxy runs on by default. Only named here, for twistd's scan.
"""

from twisted.application.reactors import Reactor

streamepoll = Reactor(
    "streamepoll",
    "twisted_stream.ops._reactor",
    "epoll, handing each event straight to its handler (chunkproxy's default).",
)
