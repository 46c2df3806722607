# -*- test-case-name: tests.test_sharedstreams -*-
"""
The gateway's connection to Redis, for resumable streams kept there (see
L{twisted_stream.resume._sharedstreams}).

One connection carries every command that answers at once (the writes of
every stream, the reads that start a resume); it is kept open, and opened
again with a growing delay when it is lost, by a L{ClientService}. A
blocking read (C{XREAD BLOCK}) holds its connection until Redis answers, so
the live reads have a connection of their own
(L{RedisLink.blockingConnection}), each shared by many of an instance's
readers (L{twisted_stream.resume._livereads.LiveReads}).

The wire is txredisapi's protocol, with what a stream's bytes need: no
decoding of replies (C{charset=None}) and no turning of replies that look
like numbers into numbers (C{convertNumbers=False}): a body's piece that
reads C{"42"} stays C{b"42"}. (txredisapi is imported only when a
connection is made: importing it installs the default reactor.)

Over TLS (C{rediss://}) Redis's certificate is verified, for the URL's
host, against the platform's CAs or those of the PEM file the URL names
(C{?ssl_ca_certs=PATH}, redis-py's name for it); an ACL user (Redis 6) is
the URL's user (C{rediss://USER:PASSWORD@HOST}). Managed Redis services
ask for both.

Nothing here waits for Redis on a request's behalf: L{RedisLink.up} says
whether commands may be sent now; a command sent while the connection is
not there fails at once (L{RedisDown}).
"""

from __future__ import annotations

import hashlib
import re
from typing import TYPE_CHECKING, Any, Callable, Optional
from urllib.parse import parse_qsl, unquote, urlsplit

from twisted.application.internet import ClientService, backoffPolicy
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.endpoints import HostnameEndpoint, wrapClientTLS
from twisted.internet.interfaces import IReactorTime, IStreamClientEndpoint
from twisted.internet.protocol import Factory
from twisted.logger import Logger
from twisted.python.failure import Failure

from twisted_stream._compat import TrustRoot

if TYPE_CHECKING:
    import txredisapi

__all__ = ["LIVE_TTL", "RedisAddress", "RedisDown", "RedisLink", "keysOf", "milliseconds", "parseRedisURL"]

_log = Logger()


class RedisDown(Exception):
    """
    Redis is not connected now: the command was not sent.
    """


_PASSWORD = re.compile(r"(//[^/@]*?:)[^/]*@")
"""The password of a URL's user information (what errors never show)."""


class RedisAddress:
    """
    Where Redis is: C{redis://[[USER]:PASSWORD@]HOST[:PORT][/DB]}, or
    C{rediss://} the same over TLS.

    @ivar host: Its host (an IPv6 address without brackets).
    @ivar port: Its port.
    @ivar db: The database number.
    @ivar password: The password C{AUTH} gives, if any.
    @ivar username: The ACL user C{AUTH} names, if any (Redis 6 and later;
        without one, Redis's C{default} user).
    @ivar tls: Whether to speak TLS to it.
    @ivar trust: The CAs its certificate must chain to (L{None}: the
        platform's), over TLS.
    """

    def __init__(
        self,
        host: str,
        port: int,
        db: int,
        password: Optional[str] = None,
        username: Optional[str] = None,
        tls: bool = False,
        trust: Optional[TrustRoot] = None,
    ) -> None:
        self.host, self.port, self.db, self.password = host, port, db, password
        self.username, self.tls, self.trust = username, tls, trust

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{'rediss' if self.tls else 'redis'}://{host}:{self.port}/{self.db}"

    def endpoint(self, reactor: Any) -> IStreamClientEndpoint:
        """
        @return: How to connect to it: TCP, or TLS verifying its
            certificate for its host.
        """
        tcp = HostnameEndpoint(reactor, self.host, self.port, timeout=5)
        if not self.tls:
            return tcp
        from twisted.internet.ssl import optionsForClientTLS

        return wrapClientTLS(optionsForClientTLS(self.host, trustRoot=self.trust), tcp)


_MAX_PEM = 4 * 1024 * 1024
"""The largest CA file read (a platform's whole bundle is some 200 KB)."""


def _trustIn(path: str, shown: str) -> TrustRoot:
    # The CA certificates of a PEM file (one or more), read once, at start.
    from twisted.internet.ssl import Certificate, trustRootFromCertificates

    try:
        with open(path, "rb") as file:
            pem = file.read(_MAX_PEM + 1)
    except OSError as error:
        raise ValueError(f"{shown}: cannot read ssl_ca_certs {path!r}: {error.strerror}") from None
    if len(pem) > _MAX_PEM:
        raise ValueError(f"{shown}: ssl_ca_certs {path!r} is larger than {_MAX_PEM // 1024 // 1024} MiB")
    marker = b"-----END CERTIFICATE-----"
    certificates = []
    for block in pem.split(marker)[:-1]:
        try:
            certificates.append(Certificate.loadPEM(block + marker))
        except Exception:
            raise ValueError(f"{shown}: ssl_ca_certs {path!r} holds a certificate that is not valid PEM") from None
    if not certificates:
        raise ValueError(f"{shown}: ssl_ca_certs {path!r} holds no PEM certificate")
    return trustRootFromCertificates(certificates)


def parseRedisURL(text: str) -> RedisAddress:
    """
    @param text: C{redis://HOST:PORT/DB} (the port 6379 and the database 0
        when not said; a password as C{redis://:PASSWORD@HOST}, an ACL user
        and its password as C{redis://USER:PASSWORD@HOST}), or C{rediss://}
        the same over TLS, with C{?ssl_ca_certs=PATH} for CAs other than
        the platform's.
    @return: The address it names.
    @raise ValueError: With a one-line reason, for anything else, that
        never shows the password.
    """
    shown = repr(_PASSWORD.sub(r"\1***@", text))
    try:
        parts = urlsplit(text)
        port = parts.port or 6379
    except ValueError as error:
        raise ValueError(f"{shown} is not a redis:// URL: {error}") from None
    if parts.scheme not in ("redis", "rediss") or not parts.hostname:
        raise ValueError(f"{shown} is not a redis://HOST:PORT/DB or rediss:// URL")
    db = parts.path.strip("/") or "0"
    if not db.isdigit():
        raise ValueError(f"{shown}: the database must be a number, not {db!r}")
    tls = parts.scheme == "rediss"
    query = parse_qsl(parts.query, keep_blank_values=True)
    if parts.fragment or any(name != "ssl_ca_certs" for name, _ in query) or (query and not tls):
        raise ValueError(f"{shown}: a Redis URL here takes no query or fragment but rediss://...?ssl_ca_certs=PATH")
    trust = _trustIn(query[-1][1], shown) if query else None
    password = unquote(parts.password) if parts.password else None
    username = unquote(parts.username) if parts.username else None
    return RedisAddress(parts.hostname, port, int(db), password, username, tls, trust)


class _RedisFactory(Factory):
    """
    Builds txredisapi's protocol for bytes, and gives it what it calls on
    its factory when C{AUTH} or C{SELECT} fails (the connection is closed;
    the link says it when its commands fail).
    """

    isLazy = False
    # (Not a pair of "Starting factory" lines for every connection made.)
    noisy = False

    def __init__(
        self,
        address: RedisAddress,
        clock: IReactorTime,
        replyTimeout: Optional[float],
        built: Optional[Callable[[txredisapi.RedisProtocol], object]] = None,
    ) -> None:
        """
        @param clock: What tells the time (the reactor).
        @param built: Called with each protocol it builds.
        """
        self._clock = clock
        self._said: tuple[str, float] = ("", -1e18)
        self._address = address
        self._replyTimeout = replyTimeout
        self._built = built

    def buildProtocol(self, addr: Any) -> txredisapi.RedisProtocol:
        # Imported here, not above: txredisapi imports the global reactor,
        # which would install the default one before twistd or chunkproxy
        # has chosen it.
        protocol = _protocolClass()(
            charset=None,
            convertNumbers=False,
            replyTimeout=self._replyTimeout,
            password=self._address.password,
            username=self._address.username,
            dbid=self._address.db,
        )
        protocol.factory = self
        if self._built is not None:
            self._built(protocol)
        return protocol

    def stopTrying(self) -> None:
        pass

    lostBecause: Optional[Failure] = None
    """Why its last connection was lost."""

    def connectionError(self, why: str) -> None:
        # (txredisapi says only "Lost connection" where TLS failed.)
        tls = _tlsFailure(self.lostBecause)
        if tls is not None:
            why = f"TLS failed: {tls}"
        # Said once a minute at most while it stays the same: a wrong
        # password fails every attempt, for as long as it is not mended.
        now = self._clock.seconds()
        said, saidAt = self._said
        if why != said or now - saidAt >= 60:
            self._said = (why, now)
            _log.warn("redis: {why} (tried again with a growing delay; said again once a minute)", why=why)


def _tlsFailure(reason: Optional[Failure]) -> Optional[str]:
    # What OpenSSL said, as a line: "certificate verify failed".
    if reason is None:
        return None
    from OpenSSL.SSL import Error

    if not isinstance(reason.value, Error):
        return None
    said = [part[-1] for part in reason.value.args[0] if isinstance(part, tuple) and part] if reason.value.args else []
    return "; ".join(str(each) for each in said) or str(reason.value)


_PROTOCOL: Optional[type] = None


def _protocolClass() -> Any:
    # txredisapi's protocol, noting on its factory why its connection was
    # lost. (Made at the first connection: importing txredisapi installs
    # the default reactor.)
    global _PROTOCOL
    if _PROTOCOL is None:
        import txredisapi

        class _RedisProtocol(txredisapi.RedisProtocol):
            def connectionLost(self, why: Failure) -> None:
                self.factory.lostBecause = why
                super().connectionLost(why)

        _PROTOCOL = _RedisProtocol
    return _PROTOCOL


class RedisLink:
    """
    A connection to Redis kept open, and connections of their own for
    blocking reads.
    """

    def __init__(self, reactor: Any, address: RedisAddress, replyTimeout: float = 2.0) -> None:
        """
        @param reactor: The reactor.
        @param address: Where Redis is.
        @param replyTimeout: Seconds Redis has to answer a command on the
            shared connection before it is taken as gone (the connection is
            closed, and opened again): a Redis that is slow is treated as a
            Redis that is not there.
        """
        self.address = address
        self._reactor: IReactorTime = reactor
        self._endpoint = address.endpoint(reactor)
        self._blockingFactory = _RedisFactory(address, reactor, None)
        self._protocol: Optional[txredisapi.RedisProtocol] = None
        # Lua scripts by body: their SHA1, by which they are called.
        self._scripts: dict[bytes, str] = {}
        self._waiting: list[Deferred[None]] = []
        # Not ClientService's prepareConnection: a connection lost while it
        # runs (a wrong password, Redis restarting during AUTH) has no
        # transition in ClientService's state machine (Twisted 26.10:
        # NoTransition, logged as a traceback, and the service never tries
        # again). Each connection is readied here instead, as it is built;
        # the link is up once it is.
        # Connections made but never readied (refused by AUTH, TLS or
        # SELECT) in a row: ClientService counts them as successes, and
        # would try again within a second, for ever.
        self._notReady = 0
        growing = backoffPolicy(initialDelay=0.2, maxDelay=5.0)
        self._service = ClientService(
            self._endpoint,
            _RedisFactory(address, reactor, replyTimeout, self._connected),
            retryPolicy=lambda attempt: growing(max(attempt, self._notReady)),
            clock=reactor,
        )

    def start(self) -> None:
        """
        Connect, and keep connecting.
        """
        self._service.startService()

    def stop(self) -> Deferred[None]:
        """
        Close the connection, and connect no more.
        """
        self._protocol = None
        return self._service.stopService()

    def load(self, script: bytes) -> None:
        """
        Have Redis keep a Lua script, loaded on every connection before any
        command is sent on it, so that L{evaluate} sends its SHA1, not its
        body, each time.
        """
        self._scripts[script] = hashlib.sha1(script).hexdigest()

    def evaluate(self, script: bytes, *args: bytes | str | int) -> Deferred[Any]:
        """
        Run a script L{load}ed before (C{EVALSHA}) on the shared
        connection, now.

        @param args: The number of keys, the keys, the arguments.
        @return: Its reply, or a failure. A Redis that has forgotten the
            script (C{SCRIPT FLUSH}) fails this call, and is sent it again,
            for the next.
        """

        def forgotten(failure: Any) -> Any:
            protocol = self._protocol
            if "NOSCRIPT" in (failure.getErrorMessage() or "") and protocol is not None:
                protocol.execute_command("SCRIPT", "LOAD", script).addErrback(lambda _: None)
            return failure

        return self.command("EVALSHA", self._scripts[script], *args).addErrback(forgotten)

    def _connected(self, protocol: txredisapi.RedisProtocol) -> None:
        # Ready once AUTH and SELECT are done (the protocol says so), and
        # the scripts loaded; a connection lost before is never ready.
        def loaded(_: object) -> Deferred[object]:
            done: Deferred[object] = succeed(None)
            for script in self._scripts:
                done.addCallback(lambda _, body: protocol.execute_command("SCRIPT", "LOAD", body), script)
            return done

        def ready(_: object) -> None:
            if not protocol.connected:
                return
            self._notReady = 0
            self._protocol = protocol
            protocol.whenDisconnected().addCallback(lambda _: self._lost(protocol))
            _log.info("resume store {address}: connected", address=str(self.address))
            waiting, self._waiting = self._waiting, []
            for waiter in waiting:
                if not waiter.called:
                    waiter.callback(None)

        def failed(failure: Failure) -> None:
            # (A command of the readying failed: the connection is closed,
            # and made again.)
            if protocol.transport is not None:
                protocol.transport.loseConnection()

        def lost(_: object) -> None:
            if self._protocol is not protocol:
                self._notReady += 1

        protocol.whenDisconnected().addCallback(lost)
        protocol.whenConnected().addCallback(loaded).addCallbacks(ready, failed)

    def _lost(self, protocol: txredisapi.RedisProtocol) -> None:
        if self._protocol is protocol:
            self._protocol = None

    @property
    def up(self) -> bool:
        """
        Whether the shared connection is there now.
        """
        return self._protocol is not None

    def command(self, *args: bytes | str | int) -> Deferred[Any]:
        """
        Send one command on the shared connection, now.

        @return: Its reply, or a failure (L{RedisDown} at once when the
            connection is not there).
        """
        protocol = self._protocol
        if protocol is None or not protocol.connected:
            return fail(RedisDown())
        result: Deferred[Any] = protocol.execute_command(*args)
        return result

    def whenUp(self, seconds: float) -> Deferred[None]:
        """
        @return: A Deferred that fires once the shared connection is there
            (at once if it is), or fails after C{seconds} (or at the first
            failed attempt to connect).
        """
        if self._protocol is not None:
            return succeed(None)
        waiter: Deferred[None] = Deferred()
        # (Those that timed out are dropped: Redis may stay away long.)
        self._waiting = [each for each in self._waiting if not each.called] + [waiter]

        def attemptFailed(failure: Failure) -> None:
            if not waiter.called:
                waiter.errback(failure)

        # (It fires when a connection is made, before it is ready: only its
        # failure matters here.)
        self._service.whenConnected(failAfterFailures=1).addErrback(attemptFailed)
        return waiter.addTimeout(seconds, self._reactor)

    def blockingConnection(self) -> Deferred[txredisapi.RedisProtocol]:
        """
        @return: A new connection of its own, ready for commands (its
            caller closes it).
        """

        def ready(protocol: Any) -> Deferred[txredisapi.RedisProtocol]:
            # (After AUTH and SELECT.)
            readied: Deferred[txredisapi.RedisProtocol] = protocol.whenConnected()
            return readied

        return self._endpoint.connect(self._blockingFactory).addCallback(ready)


# Where a stream is kept in Redis: what the instance that reads it writes
# (twisted_stream.resume._sharedstreams) and any instance reads back
# (twisted_stream.resume._remoteresume).

LIVE_TTL = 15.0
"""The least a live stream's keys live past their last refresh, in seconds."""


def keysOf(id: str) -> tuple[bytes, bytes, bytes]:
    """
    @return: The keys of a stream in Redis: its body, its head, its readers.
    """
    body = b"chunkproxy:stream:{" + id.encode("ascii") + b"}"
    return body, body + b":head", body + b":readers"


def milliseconds(seconds: float) -> int:
    """
    @return: C{seconds} as Redis's expiries take them (at least 1).
    """
    return max(1, int(seconds * 1000))
