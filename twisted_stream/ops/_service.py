# -*- test-case-name: tests.test_service -*-
"""
A listening service that says, in the log, the URLs it can be reached at,
listens with a production backlog, and says in one line why it cannot
listen.
"""

from __future__ import annotations

import sys
from typing import Callable, Optional, Sequence
from urllib.parse import quote

from twisted.application.internet import StreamServerEndpointService
from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import serverFromString
from twisted.internet.error import CannotListenError
from twisted.internet.interfaces import (
    IListeningPort,
    IProtocolFactory,
    IReactorCore,
    IStreamServerEndpoint,
)
from twisted.logger import Logger
from zope.interface import implementer

from twisted_stream._compat import raiseAtStart


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
        self,
        endpoint: IStreamServerEndpoint,
        name: str,
        paths: Sequence[tuple[str, str]],
        secure: bool,
        then: Optional[Callable[[IListeningPort], object]],
    ) -> None:
        self._endpoint = endpoint
        self._name = name
        self._paths = paths
        self._secure = secure
        self._then = then

    def listen(self, factory: IProtocolFactory) -> Deferred[IListeningPort]:
        return self._endpoint.listen(factory).addCallback(self._announce)

    def _announce(self, port: IListeningPort) -> IListeningPort:
        url = baseURL(port, self._secure)
        where = ", ".join(f"{what}: {url}{path}" for what, path in self._paths)
        self._log.info("{name} listening on {url} ({where})", name=self._name, url=url, where=where)
        if self._then is not None:
            self._then(port)
        return port


def _somaxconn() -> int:
    try:
        with open("/proc/sys/net/core/somaxconn") as f:
            return int(f.read())
    except (OSError, ValueError):
        return 4096


DEFAULT_BACKLOG = _somaxconn()
"""The listen backlog by default: the kernel's own ceiling (C{somaxconn}),
not Twisted's 50, which a crowd of clients connecting at once overflows
(the kernel then drops their handshakes and they retry a second later)."""

_BACKLOG_TYPES = ("tcp", "tcp6", "ssl", "unix")


def withBacklog(description: str, backlog: int) -> str:
    """
    @param description: An endpoint description.
    @param backlog: The listen backlog to give it.
    @return: The description with C{backlog=} added where its type takes
        one and it names none (one it names wins).
    """
    kind = description.split(":", 1)[0]
    if kind not in _BACKLOG_TYPES or "backlog=" in description:
        return description
    return f"{description}:backlog={backlog}"


class _ListeningService(StreamServerEndpointService):
    """
    Listens at start-up, and stops twistd with one line when it cannot.
    """

    _log = Logger()

    def __init__(self, endpoint: _AnnouncingEndpoint, factory: IProtocolFactory, description: str) -> None:
        super().__init__(endpoint, factory)
        self._description = description
        self._name = endpoint._name
        # As twisted.application.strports.service does: a port that cannot
        # be bound stops twistd at start-up, instead of being logged while
        # the process runs on serving nothing.
        raiseAtStart(self)

    def privilegedStartService(self) -> None:
        try:
            super().privilegedStartService()
        except (CannotListenError, OSError, OverflowError) as e:
            # One line on the terminal that started twistd (its stderr is the
            # log by now), and exit 1; twistd would print a traceback. (Not
            # only CannotListenError: a UNIX socket's lock file fails with
            # the OSError itself.)
            line = f"{self._name}: cannot listen on {self._description}: {_why(e)}"
            self._log.error("{line}", line=line)
            if sys.__stderr__ is not None:
                sys.__stderr__.write(line + "\n")
            raise SystemExit(1) from None


def _why(error: Exception) -> str:
    cause = error.socketError if isinstance(error, CannotListenError) else error
    text = getattr(cause, "strerror", None) or str(cause)
    return text[:1].lower() + text[1:]


def listeningService(
    reactor: IReactorCore,
    description: str,
    factory: IProtocolFactory,
    name: str,
    paths: Sequence[tuple[str, str]],
    backlog: int = DEFAULT_BACKLOG,
    then: Optional[Callable[[IListeningPort], object]] = None,
    reactorForEndpoint: Optional[object] = None,
) -> StreamServerEndpointService:
    """
    A service that listens on an endpoint and logs its URLs when it does.

    @param reactor: The reactor.
    @param description: An endpoint description, such as C{tcp:8080}.
    @param factory: What serves the connections.
    @param name: What to call the server in the log.
    @param paths: What to announce, as C{(what, path)} pairs.
    @param backlog: The listen backlog, where the description names none.
    @param then: Called with the listening port, once it listens.
    @param reactorForEndpoint: What the endpoint listens with, when not the
        reactor itself (see L{twisted_stream.ops._workers.inheritedListener}).
    @return: The service.
    """
    endpoint = serverFromString(reactorForEndpoint or reactor, withBacklog(description, backlog))
    secure = description.split(":", 1)[0] in ("ssl", "tls")
    return _ListeningService(_AnnouncingEndpoint(endpoint, name, paths, secure, then), factory, description)
