# -*- test-case-name: tests.test_service -*-
"""
A listening service that says, in the log, the URLs it can be reached at.
"""

from __future__ import annotations

from typing import Sequence
from urllib.parse import quote

from twisted.application.internet import StreamServerEndpointService
from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import serverFromString
from twisted.internet.interfaces import (
    IListeningPort,
    IProtocolFactory,
    IReactorCore,
    IStreamServerEndpoint,
)
from twisted.logger import Logger
from zope.interface import implementer


def baseURL(port: IListeningPort, secure: bool) -> str:
    """
    The URL of the root of a listening HTTP port.

    @param port: The port.
    @param secure: Whether it speaks TLS.
    @return: C{http://host:port/}; a wildcard address is shown as
        C{localhost}, where it can be reached from this machine; a UNIX
        socket as C{http+unix://%2Fpath%2Fto%2Fsocket/}.
    """
    address = port.getHost()
    scheme = "https" if secure else "http"
    if isinstance(address, (IPv4Address, IPv6Address)):
        host = address.host
        if host in ("0.0.0.0", "::"):
            host = "localhost"
        elif ":" in host:
            host = f"[{host}]"
        return f"{scheme}://{host}:{address.port}/"
    # The http+unix convention: the socket's path, percent-encoded, as host.
    name = getattr(address, "name", b"")
    path = name.decode("utf-8", "replace") if isinstance(name, bytes) else str(name)
    return f"{scheme}+unix://{quote(path, safe='')}/"


@implementer(IStreamServerEndpoint)
class _AnnouncingEndpoint:
    """
    Logs the URLs of what it listens on, once it does.
    """

    _log = Logger()

    def __init__(
        self, endpoint: IStreamServerEndpoint, name: str, paths: Sequence[tuple[str, str]], secure: bool
    ) -> None:
        self._endpoint = endpoint
        self._name = name
        self._paths = paths
        self._secure = secure

    def listen(self, factory: IProtocolFactory) -> Deferred[IListeningPort]:
        return self._endpoint.listen(factory).addCallback(self._announce)

    def _announce(self, port: IListeningPort) -> IListeningPort:
        url = baseURL(port, self._secure)
        where = ", ".join(f"{what}: {url}{path}" for what, path in self._paths)
        self._log.info("{name} listening on {url} ({where})", name=self._name, url=url, where=where)
        return port


def listeningService(
    reactor: IReactorCore,
    description: str,
    factory: IProtocolFactory,
    name: str,
    paths: Sequence[tuple[str, str]],
) -> StreamServerEndpointService:
    """
    A service that listens on an endpoint and logs its URLs when it does.

    @param reactor: The reactor.
    @param description: An endpoint description, such as C{tcp:8080}.
    @param factory: What serves the connections.
    @param name: What to call the server in the log.
    @param paths: What to announce, as C{(what, path)} pairs.
    @return: The service.
    """
    endpoint = serverFromString(reactor, description)
    secure = description.split(":", 1)[0] in ("ssl", "tls")
    service = StreamServerEndpointService(
        _AnnouncingEndpoint(endpoint, name, paths, secure), factory
    )
    # As twisted.application.strports.service does: a port that cannot be
    # bound stops twistd at start-up with the error, instead of being logged
    # while the process runs on serving nothing.
    service._raiseSynchronously = True
    return service
