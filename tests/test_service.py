"""
Tests for L{twisted_stream._service} and the twistd plugins' services.
"""

from __future__ import annotations

import socket
from typing import Any

from twisted.internet.address import IPv4Address, IPv6Address, UNIXAddress
from twisted.internet.defer import inlineCallbacks
from twisted.internet.interfaces import IListeningPort
from twisted.trial.unittest import SynchronousTestCase, TestCase
from zope.interface import implementer

from tests.support import startTwistd
from twisted_stream._service import baseURL


@implementer(IListeningPort)
class _Port:
    def __init__(self, address: Any) -> None:
        self._address = address

    def getHost(self) -> Any:
        return self._address

    def startListening(self) -> None:
        pass

    def stopListening(self) -> None:
        pass


class BaseURLTests(SynchronousTestCase):
    def test_addresses(self) -> None:
        """
        The announced URL is one a person on this machine can open.
        """
        cases = [
            (IPv4Address("TCP", "0.0.0.0", 8080), False, "http://localhost:8080/"),
            (IPv4Address("TCP", "127.0.0.1", 41000), False, "http://127.0.0.1:41000/"),
            (IPv6Address("TCP", "::", 8080), False, "http://localhost:8080/"),
            (IPv6Address("TCP", "::1", 8443), True, "https://[::1]:8443/"),
            (UNIXAddress(b"/run/proxy.sock"), False, "http+unix://%2Frun%2Fproxy.sock/"),
        ]
        for address, secure, url in cases:
            self.assertEqual(baseURL(_Port(address), secure), url)


class ListenFailureTests(TestCase):
    @inlineCallbacks
    def test_portInUse(self) -> Any:
        """
        A port that cannot be bound stops twistd at start-up with the reason,
        instead of leaving it running and serving nothing.
        """
        holder = socket.socket()
        holder.bind(("127.0.0.1", 0))
        holder.listen(1)
        self.addCleanup(holder.close)
        port = holder.getsockname()[1]
        started = startTwistd(self, "chunkgen", "--listen", f"tcp:{port}:interface=127.0.0.1")
        failure = yield self.assertFailure(started, RuntimeError)
        self.assertIn("twistd ended before listening", str(failure))
        self.assertIn("Address already in use", str(failure))
