# -*- test-case-name: tests.test_sharedstreams -*-
"""
Every live read of streams kept in Redis that this instance makes, on one
blocking connection (L{LiveReads}).

A reader of a stream another instance reads
(L{twisted_stream.resume._remoteresume.RemoteResume}) waits for each new
entry with a blocking read, C{XREAD BLOCK}, which holds its connection
until Redis answers. A connection per reader made a thousand readers a
thousand connections to Redis (whose C{maxclients}, 10,000 by default, is
the whole fleet's) and a thousand reads waiting there. Here one read asks
for every reader's stream, C{XREAD ... STREAMS k1 k2 ... id1 id2 ...}: Redis
answers as soon as any of them has something, with what all of them have,
and the read is asked again. A reader that comes, or resumes after its
client was slow, while that read waits has it given up at once
(C{CLIENT UNBLOCK}, Redis 5 and later, sent on the link's shared
connection), and the read is asked again with its stream.

The connection's phases: C{none} (no connection: made when a reader comes),
C{connecting}, C{idle} (no reader to read for), C{reading} (a read waits in
Redis), C{closed}.
"""

from __future__ import annotations

from typing import Any, Optional, Protocol

from twisted.internet.interfaces import IReactorTime
from twisted.python.failure import Failure

from twisted_stream.resume._redislink import RedisLink

__all__ = ["FOLLOW_BLOCK_MS", "LiveReader", "LiveReads", "ReadOf"]

FOLLOW_BLOCK_MS = 1000
"""How long one blocking read waits for an entry, in milliseconds: a reader
that got nothing for that long looks whether its stream is still there."""

ENTRIES_PER_READ = 100
"""The most entries of each stream one read returns."""


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
    return int(milliseconds), int(sequence or b"0")


class ReadOf:
    """
    One reader's place in L{LiveReads}: the stream, the last entry it had,
    whether it waits for its client.
    """

    def __init__(self, reads: LiveReads, reader: LiveReader, key: bytes, last: bytes, now: float) -> None:
        self._reads = reads
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
            self.heardAt = self._reads.clock.seconds()
            self._reads.wake()

    def stop(self) -> None:
        """
        Read no more for it.
        """
        self._reads.forget(self)


class LiveReads:
    """
    The live reads of this instance's readers, on one connection of their
    own.
    """

    def __init__(self, link: RedisLink, clock: IReactorTime, blockMilliseconds: int = FOLLOW_BLOCK_MS) -> None:
        self._link = link
        self.clock = clock
        self._blockMilliseconds = blockMilliseconds
        self._readers: list[ReadOf] = []
        self.phase = "none"
        self._connection: Any = None
        self._clientId: Optional[bytes] = None
        self._unblocking = False

    @property
    def readers(self) -> int:
        """
        How many readers it reads for.
        """
        return len(self._readers)

    def follow(self, reader: LiveReader, key: bytes, last: bytes) -> ReadOf:
        """
        Read the stream at C{key} for C{reader}, from the entry after
        C{last} on.
        """
        read = ReadOf(self, reader, key, last, self.clock.seconds())
        self._readers.append(read)
        self.wake()
        return read

    def forget(self, read: ReadOf) -> None:
        if read in self._readers:
            self._readers.remove(read)

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
        """
        Close the connection, and read no more.
        """
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
            return connection.execute_command("CLIENT", "ID").addCallback(self._identified)

        made.addCallback(identified).addErrback(self._broken)

    def _identified(self, clientId: object) -> None:
        self._clientId = str(clientId).encode("ascii")
        self.phase = "idle"
        self._read()

    def _read(self) -> None:
        # One read for every reader not waiting for its client: each
        # stream from the oldest entry any of its readers had.
        since: dict[bytes, bytes] = {}
        for read in self._readers:
            if read.paused:
                continue
            had = since.get(read.key)
            if had is None or _entryNumber(read.last) < _entryNumber(had):
                since[read.key] = read.last
            read.reader.liveReading()
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
        byKey = {key: entries for key, entries in reply or ()}
        for read in list(self._readers):
            entries = byKey.get(read.key)
            if entries:
                last = _entryNumber(read.last)
                new = [entry for entry in entries if _entryNumber(entry[0]) > last]
                if new:
                    read.last = new[-1][0]
                    read.heardAt = now
                    read.reader.liveEntries(new)
                    continue
            if not read.paused and now - read.heardAt >= self._blockMilliseconds / 1000:
                read.heardAt = now
                read.reader.liveQuiet()
        if self.phase == "idle":
            self._read()

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
        readers, self._readers = self._readers, []
        for read in readers:
            read.reader.liveBroken(failure)
