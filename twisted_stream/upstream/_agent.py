# -*- test-case-name: tests.test_agent -*-
"""
L{UpstreamAgent}: the gateway's L{IAgent}, over L{HTTP11UpstreamProtocol}
connections kept in a pool, to addresses resolved once per TTL.

What it leaves out is as deliberate as what it does. No cookie jar, no
redirects, no content decoding, no retries: a proxy passes cookies,
redirects and encodings on as they are, and whether a failed request may be
sent again is the gateway's rule (L{twisted_stream.upstream._retry}), never the
pool's.

What it does costs a new stream as little as it can: an origin is parsed
once, its host name is resolved once per C{dnsTTL} (and again after a
connection to it fails), not through the thread pool for every connection;
and a request that finds an idle kept-alive connection skips the TCP (and
TLS) handshake.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Optional

from twisted.internet.abstract import isIPAddress, isIPv6Address
from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.defer import Deferred, succeed
from twisted.internet.endpoints import TCP4ClientEndpoint, TCP6ClientEndpoint, wrapClientTLS
from twisted.internet.error import DNSLookupError
from twisted.internet.interfaces import (
    IDelayedCall,
    IHostResolution,
    IResolutionReceiver,
    IStreamClientEndpoint,
)
from twisted.internet.protocol import Factory
from twisted.internet.ssl import Certificate, trustRootFromCertificates
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.client import BrowserLikePolicyForHTTPS
from twisted.web.http_headers import Headers
from twisted.web.iweb import IAgent, IBodyProducer, IPolicyForHTTPS, IResponse
from zope.interface import implementer

from twisted_stream.upstream._wire import DEFAULT_LIMITS, HTTP11UpstreamProtocol, ResponseLimits

__all__ = ["KEEP_FRACTION", "RELEARN_AFTER", "UpstreamAgent", "tlsPolicy"]

KEEP_FRACTION = 0.8
"""An upstream seen closing a connection idle for M{t} seconds has its idle
connections closed here after M{0.8 t}."""

RELEARN_AFTER = 600.0
"""Seconds what was learned of an upstream's idle closes holds."""

_log = Logger()

_PEM = re.compile(rb"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----", re.S)


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



@dataclass(frozen=True)
class _Origin:
    """
    Where requests for one C{scheme://host:port} go.

    @ivar host: The host as a name or address (no brackets).
    @ivar hostHeader: The C{Host} header's value.
    """

    secure: bool
    host: str
    port: int
    hostHeader: bytes


def _parseOrigin(scheme: bytes, netloc: bytes) -> _Origin:
    secure = scheme == b"https:"
    if not secure and scheme != b"http:":
        raise ValueError(f"not an http:// or https:// URL: {scheme!r}")
    host, port = netloc, b""
    if netloc.startswith(b"["):
        end = netloc.index(b"]")
        host, port = netloc[1:end], netloc[end + 2 :]
    elif b":" in netloc:
        host, _, port = netloc.rpartition(b":")
    default = 443 if secure else 80
    number = int(port) if port else default
    hostHeader = netloc if number != default else (b"[%s]" % (host,) if b":" in host else host)
    return _Origin(secure, host.decode("ascii"), number, hostHeader)


@implementer(IResolutionReceiver)
class _Addresses:
    """
    Collects what one host name resolves to.
    """

    def __init__(self) -> None:
        self.addresses: list[Any] = []
        self.done: Deferred[list[Any]] = Deferred()

    def resolutionBegan(self, resolution: IHostResolution) -> None:
        pass

    def addressResolved(self, address: Any) -> None:
        if isinstance(address, (IPv4Address, IPv6Address)):
            self.addresses.append(address)

    def resolutionComplete(self) -> None:
        self.done.callback(self.addresses)


class _Resolved:
    """
    One host name's addresses, good until C{expires}; connections go to
    them in turn, and a failed connection makes them stale.
    """

    def __init__(self, addresses: list[Any], expires: float) -> None:
        self.addresses = addresses
        self.expires = expires
        self.next = 0

    def pick(self) -> Any:
        address = self.addresses[self.next % len(self.addresses)]
        self.next += 1
        return address


@implementer(IAgent)
class UpstreamAgent:
    """
    Makes upstream requests over pooled, strict HTTP/1.1 connections.

    @ivar maxIdlePerOrigin: How many idle connections to keep per origin.
    @ivar idleTimeout: Seconds an idle connection is kept before it is
        closed (short of the keep-alive time upstream servers commonly
        allow, so the pool rarely picks one the upstream is closing).

    An upstream that closes idle connections sooner (uvicorn, and so vLLM
    and most Python inference servers, after 5 s; Node after 5 s) is
    learned from the first one it closes (or from its C{Keep-Alive:
    timeout=N}, where it sends one): from then on its idle connections
    are closed here at L{KEEP_FRACTION} of the time it kept that one, so
    that a request does not pick a connection whose close is on its way
    (the request would fail: it may have reached the upstream, so it is
    never sent again). What is learned is forgotten after
    L{RELEARN_AFTER} seconds, so that an upstream that closed its
    connections once (a restart) does not keep the pool short for ever.
    """

    def __init__(
        self,
        reactor: Any,
        tlsPolicy: Optional[IPolicyForHTTPS] = None,
        limits: ResponseLimits = DEFAULT_LIMITS,
        dnsTTL: float = 60.0,
        maxIdlePerOrigin: int = 1024,
        idleTimeout: float = 50.0,
    ) -> None:
        """
        @param reactor: The reactor: its clock, its name resolver, its
            sockets.
        @param tlsPolicy: How C{https} upstreams are checked (the system's
            trust store by default).
        @param limits: How much of a response's head to hold.
        @param dnsTTL: Seconds a host name's addresses are used before they
            are looked up again.
        """
        self._reactor = reactor
        self._tlsPolicy = tlsPolicy if tlsPolicy is not None else BrowserLikePolicyForHTTPS()
        self._limits = limits
        self.dnsTTL = dnsTTL
        self.maxIdlePerOrigin = maxIdlePerOrigin
        self.idleTimeout = idleTimeout
        self._origins: dict[bytes, _Origin] = {}
        self._resolved: dict[str, _Resolved] = {}
        self._resolving: dict[str, list[Deferred[_Resolved]]] = {}
        self._idle: dict[_Origin, list[HTTP11UpstreamProtocol]] = {}
        # Each idle connection's expiry, and since when it is idle.
        self._expiry: dict[HTTP11UpstreamProtocol, tuple[IDelayedCall, float]] = {}
        # What was learned of origins that close idle connections sooner:
        # how long to keep theirs, and until when that holds.
        self._learned: dict[_Origin, tuple[float, float]] = {}
        self._closing: set[HTTP11UpstreamProtocol] = set()
        self._closed: list[Deferred[None]] = []

    def request(
        self,
        method: bytes,
        uri: bytes,
        headers: Optional[Headers] = None,
        bodyProducer: Optional[IBodyProducer] = None,
    ) -> Deferred[IResponse]:
        """
        Send a request to an upstream and get its response's head.

        @param method: The method.
        @param uri: An absolute C{http://} or C{https://} URL, encoded.
        @param headers: The headers (no C{Host}: it comes from C{uri}).
        @param bodyProducer: The body, if any.
        @return: A Deferred that fires with the response once its head has
            arrived. Cancelling it closes the connection (or stops the
            attempt to make one).
        """
        scheme, _, netloc, path = (uri.split(b"/", 3) + [b""])[:4]
        origin = self._origins.get(scheme + netloc)
        if origin is None:
            origin = self._origins[scheme + netloc] = _parseOrigin(scheme, netloc)
        target = b"/" + path
        if headers is None:
            headers = Headers()
        idle = self._idle.get(origin)
        if idle:
            protocol = idle.pop()
            self._expiry.pop(protocol)[0].cancel()
            return protocol.request(method, target, origin.hostHeader, headers, bodyProducer)
        connected = self._connect(origin)
        return connected.addCallback(lambda p: p.request(method, target, origin.hostHeader, headers, bodyProducer))

    # Connections.

    def _connect(self, origin: _Origin) -> Deferred[HTTP11UpstreamProtocol]:
        def connect(resolved: _Resolved) -> Deferred[HTTP11UpstreamProtocol]:
            address = resolved.pick()
            endpoint: IStreamClientEndpoint
            if isinstance(address, IPv6Address):
                endpoint = TCP6ClientEndpoint(self._reactor, address.host, origin.port)
            else:
                endpoint = TCP4ClientEndpoint(self._reactor, address.host, origin.port)
            if origin.secure:
                creator = self._tlsPolicy.creatorForNetloc(origin.host.encode("idna"), origin.port)
                endpoint = wrapClientTLS(creator, endpoint)
            factory = Factory.forProtocol(lambda: self._newProtocol(origin))
            # Not a line in the log for every upstream connection.
            factory.noisy = False
            connecting: Deferred[HTTP11UpstreamProtocol] = endpoint.connect(factory)  # type: ignore[assignment]
            return connecting.addErrback(stale, resolved)

        def stale(reason: Failure, resolved: _Resolved) -> Failure:
            # Look the name up again next time: the upstream may have moved.
            resolved.expires = 0
            return reason

        return self._addresses(origin.host).addCallback(connect)

    def _newProtocol(self, origin: _Origin) -> HTTP11UpstreamProtocol:
        return HTTP11UpstreamProtocol(self._limits, lambda p: self._release(origin, p), self._forget)

    def _release(self, origin: _Origin, protocol: HTTP11UpstreamProtocol) -> None:
        idle = self._idle.setdefault(origin, [])
        if len(idle) >= self.maxIdlePerOrigin:
            protocol.transport.loseConnection()  # type: ignore[union-attr]
            return
        idle.append(protocol)
        keep = self._keptFor(origin)
        said = protocol.keepAliveTimeout
        if said is not None:
            # What the upstream says of itself (Keep-Alive: timeout=N).
            keep = min(keep, said * KEEP_FRACTION)
        expiry = self._reactor.callLater(keep, self._expire, origin, protocol)
        self._expiry[protocol] = (expiry, self._reactor.seconds())

    def _keptFor(self, origin: _Origin) -> float:
        learned = self._learned.get(origin)
        if learned is None:
            return self.idleTimeout
        if learned[1] <= self._reactor.seconds():
            del self._learned[origin]
            return self.idleTimeout
        return learned[0]

    def _expire(self, origin: _Origin, protocol: HTTP11UpstreamProtocol) -> None:
        del self._expiry[protocol]
        self._idle[origin].remove(protocol)
        protocol.transport.loseConnection()  # type: ignore[union-attr]

    def _forget(self, protocol: HTTP11UpstreamProtocol) -> None:
        entry = self._expiry.pop(protocol, None)
        if entry is not None:
            expiry, idleSince = entry
            expiry.cancel()
            for origin, idle in self._idle.items():
                if protocol in idle:
                    idle.remove(protocol)
                    # Learned only from a close the upstream made: not from
                    # one this side made (its pool's, or the reactor's
                    # disconnectAll at shutdown, which had it learn from a
                    # connection idle for 2 ms).
                    if protocol.upstreamClosed and protocol not in self._closing:
                        self._closedWhileIdle(origin, self._reactor.seconds() - idleSince)
                    break
        self._closing.discard(protocol)
        if not self._closing:
            closed, self._closed = self._closed, []
            for d in closed:
                d.callback(None)

    def _closedWhileIdle(self, origin: _Origin, idleFor: float) -> None:
        """
        The upstream closed one of C{origin}'s connections C{idleFor} seconds
        after it became idle: keep the next ones for less than that.
        """
        keep = idleFor * KEEP_FRACTION
        kept = self._keptFor(origin)
        if keep >= kept:
            return
        self._learned[origin] = (keep, self._reactor.seconds() + RELEARN_AFTER)
        if keep < kept * KEEP_FRACTION:
            # Once per lesson, not for every connection of an upstream that
            # closes each at once.
            _log.info(
                "upstream {origin} closed an idle connection after {idle:.3g} s: idle connections to it"
                " are closed after {keep:.3g} s",
                origin=f"{'https' if origin.secure else 'http'}://{origin.hostHeader.decode('ascii', 'replace')}",
                idle=idleFor,
                keep=keep,
            )

    def closeCachedConnections(self) -> Deferred[None]:
        """
        Close every idle connection (at shutdown, or at a test's end).

        @return: A Deferred that fires once they are closed. Busy ones are
            left to whoever uses them.
        """
        for idle in self._idle.values():
            for protocol in idle:
                self._closing.add(protocol)
                protocol.transport.loseConnection()  # type: ignore[union-attr]
        if not self._closing:
            return succeed(None)
        d: Deferred[None] = Deferred()
        self._closed.append(d)
        return d

    # Names.

    def _addresses(self, host: str) -> Deferred[_Resolved]:
        resolved = self._resolved.get(host)
        now = self._reactor.seconds()
        if resolved is not None and resolved.expires > now:
            return succeed(resolved)
        if isIPAddress(host) or isIPv6Address(host):
            literal = IPv6Address("TCP", host, 0) if ":" in host else IPv4Address("TCP", host, 0)
            resolved = self._resolved[host] = _Resolved([literal], float("inf"))
            return succeed(resolved)
        waiting: Deferred[_Resolved] = Deferred()
        if host in self._resolving:
            self._resolving[host].append(waiting)
            return waiting
        self._resolving[host] = [waiting]
        receiver = _Addresses()
        self._reactor.nameResolver.resolveHostName(receiver, host, 0)
        receiver.done.addCallback(self._gotAddresses, host)
        return waiting

    def _gotAddresses(self, addresses: list[Any], host: str) -> None:
        waiting = self._resolving.pop(host)
        # A waiter cancelled meanwhile (its client left) has been called.
        waiting = [d for d in waiting if not d.called]
        if not addresses:
            for d in waiting:
                d.errback(DNSLookupError(host))
            return
        resolved = self._resolved[host] = _Resolved(addresses, self._reactor.seconds() + self.dnsTTL)
        for d in waiting:
            d.callback(resolved)

