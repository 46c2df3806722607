# -*- test-case-name: tests.test_livereads,tests.test_sharedstreams -*-
"""
Every live read of streams kept in Redis that this instance makes, on a few
blocking connections (L{LiveReads}).

A reader of a stream another instance reads
(L{twisted_stream.resume._remoteresume.RemoteResume}) waits for each new
entry with a blocking read, C{XREAD BLOCK}, which holds its connection
until Redis answers. A connection per reader made a thousand readers a
thousand connections to Redis (whose C{maxclients}, 10,000 by default, is
the whole fleet's) and a thousand reads waiting there. Here one read asks
for many readers' streams, C{XREAD ... STREAMS k1 k2 ... id1 id2 ...}:
Redis answers as soon as any of them has something, with what all of them
have, and the read is asked again. A reader that comes, or resumes after
its client was slow, while that read waits has it given up at once
(C{CLIENT UNBLOCK}, Redis 5 and later, sent on the link's shared
connection), and the read is asked again with its stream. (Where the
user's ACL denies C{CLIENT}, it waits for that read's end instead: a
second at most.)

A read names every stream of its readers, and its reply is gone through for
them, so its cost grows with their number: each connection serves
L{READERS_PER_CONNECTION} readers at most, and the next readers get another
(a thousand readers: 16 connections, not a thousand).

A connection's phases (L{_SharedRead}): C{none} (not made: made when a
reader comes), C{connecting}, C{idle} (no reader to read for), C{reading}
(a read waits in Redis), C{closed}.
"""

from __future__ import annotations

from typing import Any, Optional, Protocol

from twisted.internet.interfaces import IReactorTime
from twisted.python.failure import Failure

from twisted_stream.resume._redislink import RedisDown, RedisLink

__all__ = ["ENTRIES_PER_READ", "FOLLOW_BLOCK_MS", "READERS_PER_CONNECTION", "LiveReader", "LiveReads", "ReadOf"]

FOLLOW_BLOCK_MS = 1000
"""How long one blocking read waits for an entry, in milliseconds: a reader
that got nothing for that long looks whether its stream is still there."""

ENTRIES_PER_READ = 100
"""The most entries of each stream one read returns."""

READERS_PER_CONNECTION = 64
"""The most readers one connection's reads serve."""


class LiveReader(Protocol):
    """
    What follows a stream live (a resume of it).
    """

    def liveEntries(self, entries: list[Any]) -> None:
        """
        Entries of the stream, in order, each after the last one given.
        """

    def liveReading(self) -> None:
        """
        A read that waits for the stream's next entries is being asked.
        """

    def liveQuiet(self) -> None:
        """
        Nothing came for L{FOLLOW_BLOCK_MS}: is the stream still there?
        """

    def liveBroken(self, failure: Failure) -> None:
        """
        The reads stopped (Redis went, or refused them): no more entries
        will come.
        """


def _entryNumber(entryId: bytes) -> tuple[int, int]:
    milliseconds, _, sequence = entryId.partition(b"-")
    if not (milliseconds.isdigit() and (sequence.isdigit() or not sequence)):
        raise ValueError(f"an entry id that is not one: {entryId[:40]!r}")
    return int(milliseconds), int(sequence or b"0")


def _replyEntries(reply: object) -> dict[bytes, list[tuple[tuple[int, int], Any]]]:
    """
    An C{XREAD} reply (L{None} when the wait ran out) by stream, each entry
    with its number.

    @raise ValueError: Naming what it is instead, for anything else.
    """
    byKey: dict[bytes, list[tuple[tuple[int, int], Any]]] = {}
    if reply is None:
        return byKey
    if not isinstance(reply, list):
        raise ValueError(f"a {type(reply).__name__}, not a list of streams")
    for stream in reply:
        if not (isinstance(stream, list) and len(stream) == 2 and isinstance(stream[0], bytes) and isinstance(stream[1], list)):
            raise ValueError("a stream that is not a key and its entries")
        numbered = []
        for entry in stream[1]:
            if not (isinstance(entry, list) and len(entry) == 2 and isinstance(entry[0], bytes) and isinstance(entry[1], list)):
                raise ValueError("an entry that is not an id and its fields")
            numbered.append((_entryNumber(entry[0]), entry))
        byKey[stream[0]] = numbered
    return byKey


class ReadOf:
    """
    One reader's place in the live reads: the stream, the last entry it
    had, whether it waits for its client.
    """

    def __init__(self, shared: _SharedRead, reader: LiveReader, key: bytes, last: bytes, now: float) -> None:
        self._shared = shared
        self.reader = reader
        self.key = key
        self.last = last
        self.paused = False
        self.heardAt = now

    def pause(self) -> None:
        """
        Its client is slow: it is left out of the reads until L{resume}.
        """
        self.paused = True

    def resume(self) -> None:
        """
        Read its stream again.
        """
        if self.paused:
            self.paused = False
            self.heardAt = self._shared.clock.seconds()
            self._shared.wake()

    def stop(self) -> None:
        """
        Read no more for it.
        """
        self._shared.forget(self)


class LiveReads:
    """
    The live reads of this instance's readers, on connections of their
    own, L{READERS_PER_CONNECTION} readers to a connection at most.
    """

    def __init__(
        self,
        link: RedisLink,
        clock: IReactorTime,
        blockMilliseconds: int = FOLLOW_BLOCK_MS,
        perConnection: int = READERS_PER_CONNECTION,
    ) -> None:
        self._link = link
        self._clock = clock
        self._blockMilliseconds = blockMilliseconds
        self._perConnection = perConnection
        self._shared: list[_SharedRead] = []
        self._closed = False

    @property
    def readers(self) -> int:
        """
        How many readers it reads for.
        """
        return sum(shared.readers for shared in self._shared)

    def follow(self, reader: LiveReader, key: bytes, last: bytes) -> Optional[ReadOf]:
        """
        Read the stream at C{key} for C{reader}, from the entry after
        C{last} on.

        @return: Its place, or L{None} where the reads are closed (the
            reader has been told, L{LiveReader.liveBroken}).
        """
        if self._closed:
            reader.liveBroken(Failure(RedisDown()))
            return None
        shared = next((each for each in self._shared if each.readers < self._perConnection), None)
        if shared is None:
            shared = _SharedRead(self._link, self._clock, self._blockMilliseconds)
            self._shared.append(shared)
        return shared.follow(reader, key, last)

    def close(self) -> None:
        """
        Close the connections, and read no more.
        """
        self._closed = True
        for shared in self._shared:
            shared.close()


class _SharedRead:
    """
    The reads of some readers on one connection.
    """

    def __init__(self, link: RedisLink, clock: IReactorTime, blockMilliseconds: int) -> None:
        self._link = link
        self.clock = clock
        self._blockMilliseconds = blockMilliseconds
        self._byKey: dict[bytes, list[ReadOf]] = {}
        self.phase = "none"
        self._connection: Any = None
        self._clientId: Optional[bytes] = None
        self._unblocking = False
        self._lookedAt = clock.seconds()

    @property
    def readers(self) -> int:
        """
        How many readers it reads for.
        """
        return sum(len(reads) for reads in self._byKey.values())

    def follow(self, reader: LiveReader, key: bytes, last: bytes) -> ReadOf:
        read = ReadOf(self, reader, key, last, self.clock.seconds())
        self._byKey.setdefault(key, []).append(read)
        self.wake()
        return read

    def forget(self, read: ReadOf) -> None:
        reads = self._byKey.get(read.key)
        if reads is not None and read in reads:
            reads.remove(read)
            if not reads:
                del self._byKey[read.key]

    def wake(self) -> None:
        """
        The readers to read for changed: read for them now.
        """
        if self.phase == "none":
            self._connect()
        elif self.phase == "idle":
            self._read()
        elif self.phase == "reading" and not self._unblocking and self._clientId is not None:
            # (Redis answers the waiting read as if its time had run out.)
            self._unblocking = True
            self._link.command("CLIENT", "UNBLOCK", self._clientId).addErrback(lambda _: None)

    def close(self) -> None:
        self.phase = "closed"
        connection, self._connection = self._connection, None
        if connection is not None and connection.transport is not None:
            connection.transport.loseConnection()

    def _connect(self) -> None:
        self.phase = "connecting"
        made = self._link.blockingConnection()

        def identified(connection: Any) -> Any:
            if self.phase == "closed":
                connection.transport.loseConnection()
                return None
            self._connection = connection
            connection.whenDisconnected().addCallback(lambda _: self._lost(connection))
            # (A user whose ACL denies CLIENT, as managed services' may,
            # reads without: a reader that comes waits for the read's end.)
            return connection.execute_command("CLIENT", "ID").addCallbacks(
                self._identified, lambda _: self._identified(None)
            )

        made.addCallback(identified).addErrback(self._broken)

    def _identified(self, clientId: object) -> None:
        if self.phase != "connecting":
            return
        self._clientId = str(clientId).encode("ascii") if isinstance(clientId, int) else None
        self.phase = "idle"
        self._read()

    def _read(self) -> None:
        # One read for every stream a reader not waiting for its client
        # follows, from the oldest entry any of its readers had.
        since: dict[bytes, bytes] = {}
        for key, reads in self._byKey.items():
            oldest: Optional[bytes] = None
            for read in reads:
                if read.paused:
                    continue
                if oldest is None or _entryNumber(read.last) < _entryNumber(oldest):
                    oldest = read.last
                read.reader.liveReading()
            if oldest is not None:
                since[key] = oldest
        if not since:
            self.phase = "idle"
            return
        self.phase = "reading"
        self._unblocking = False
        self._connection.execute_command(
            "XREAD", "COUNT", ENTRIES_PER_READ, "BLOCK", self._blockMilliseconds,
            "STREAMS", *since, *since.values(), apply_timeout=False,
        ).addCallbacks(self._got, self._broken)  # fmt: skip

    def _got(self, reply: Optional[list[Any]]) -> None:
        if self.phase != "reading":
            return
        self.phase = "idle"
        now = self.clock.seconds()
        try:
            byKey = _replyEntries(reply)
        except ValueError as e:
            self._broken(Failure(ValueError(f"Redis answered a live read with {e}")))
            return
        for key, numbered in byKey.items():
            for read in list(self._byKey.get(key, ())):
                last = _entryNumber(read.last)
                new = [entry for number, entry in numbered if number > last]
                if new:
                    read.last = new[-1][0]
                    read.heardAt = now
                    self._give(read, new)
        quietAfter = self._blockMilliseconds / 1000
        if now - self._lookedAt >= quietAfter:
            # (Looked for once a wait at most, not at every reply.)
            self._lookedAt = now
            for reads in list(self._byKey.values()):
                for read in list(reads):
                    if not read.paused and now - read.heardAt >= quietAfter:
                        read.heardAt = now
                        read.reader.liveQuiet()
        if self.phase == "idle":
            self._read()

    def _give(self, read: ReadOf, entries: list[Any]) -> None:
        try:
            read.reader.liveEntries(entries)
        except Exception:
            # Entries its reader cannot take (not what an instance writes):
            # that reader ends, the others read on.
            self.forget(read)
            read.reader.liveBroken(Failure())

    def _lost(self, connection: Any) -> None:
        if connection is self._connection and self.phase != "closed":
            self._broken(Failure(ConnectionError("the connection to Redis for live reads was lost")))

    def _broken(self, failure: Failure) -> None:
        if self.phase == "closed":
            return
        connection, self._connection = self._connection, None
        self._clientId = None
        self.phase = "none"
        if connection is not None and connection.transport is not None:
            connection.transport.loseConnection()
        byKey, self._byKey = self._byKey, {}
        for reads in byKey.values():
            for read in reads:
                read.reader.liveBroken(failure)
