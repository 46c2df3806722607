"""
Tests for L{twisted_stream.resume._livereads}: the live reads of a process's
readers of streams kept in Redis, shared by few connections. Logic only,
on a L{Clock} and a fake link whose connections note each command (the
reads against a real Redis are C{tests.test_sharedstreams}'s).
"""

from __future__ import annotations

from typing import Any, Optional, cast

from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.task import Clock
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from twisted_stream.resume._livereads import LiveReads, ReadOf
from twisted_stream.resume._redislink import RedisLink


class _Transport:
    def __init__(self, connection: _Connection) -> None:
        self._connection = connection
        self.closed = False

    def loseConnection(self) -> None:
        if not self.closed:
            self.closed = True
            for waiting in self._connection.disconnected:
                waiting.callback(None)


class _Connection:
    """
    A blocking connection: each command noted, each reply given by the
    test (C{CLIENT ID} at once).
    """

    def __init__(self, number: int) -> None:
        self.number = number
        self.transport = _Transport(self)
        self.disconnected: list[Deferred[None]] = []
        self.reads: list[tuple[tuple[Any, ...], Deferred[Any]]] = []

    def whenDisconnected(self) -> Deferred[None]:
        waiting: Deferred[None] = Deferred()
        self.disconnected.append(waiting)
        return waiting

    clientDenied = False

    def execute_command(self, *args: Any, apply_timeout: bool = True) -> Deferred[Any]:
        if args[:2] == ("CLIENT", "ID"):
            if self.clientDenied:
                return fail(ValueError("NOPERM this user has no permissions to run the 'client|id' command"))
            return succeed(100 + self.number)
        reply: Deferred[Any] = Deferred()
        self.reads.append((args, reply))
        return reply

    def waitingRead(self) -> tuple[dict[bytes, bytes], Deferred[Any]]:
        """
        @return: The read waiting in Redis: its streams (and the entry
            each is read after), and where its reply goes.
        """
        args, reply = self.reads[-1]
        assert not reply.called, "no read waits"
        streams = list(args[args.index("STREAMS") + 1 :])
        half = len(streams) // 2
        return dict(zip(streams[:half], streams[half:], strict=True)), reply


class _Link:
    """
    The shared connection (commands noted) and the blocking ones made.
    """

    def __init__(self) -> None:
        self.connections: list[_Connection] = []
        self.commands: list[tuple[Any, ...]] = []

    clientDenied = False

    def blockingConnection(self) -> Deferred[_Connection]:
        connection = _Connection(len(self.connections))
        connection.clientDenied = self.clientDenied
        self.connections.append(connection)
        return succeed(connection)

    def command(self, *args: Any) -> Deferred[Any]:
        self.commands.append(args)
        return succeed(None)


class _Reader:
    def __init__(self) -> None:
        self.entries: list[Any] = []
        self.readings = 0
        self.quiet = 0
        self.broken: Optional[Failure] = None

    def liveEntries(self, entries: list[Any]) -> None:
        self.entries += entries

    def liveReading(self) -> None:
        self.readings += 1

    def liveQuiet(self) -> None:
        self.quiet += 1

    def liveBroken(self, failure: Failure) -> None:
        self.broken = failure


def _entry(entryId: bytes, data: bytes) -> list[Any]:
    return [entryId, [b"d", data]]


class LiveReadsTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.link = _Link()
        self.reads = LiveReads(cast(RedisLink, self.link), self.clock, perConnection=4)

    def follow(self, key: bytes, last: bytes = b"0-0") -> tuple[_Reader, ReadOf]:
        reader = _Reader()
        read = self.reads.follow(reader, key, last)
        assert read is not None
        return reader, read

    def test_fewConnections(self) -> None:
        """
        Ten readers, four to a connection: three connections, each read
        naming its readers' streams only.
        """
        for number in range(10):
            self.follow(b"s%d" % (number,))
        self.assertEqual(len(self.link.connections), 3)
        # (The first read of each named its first reader's stream; the
        # others came while it waited.)
        self.assertEqual([list(each.waitingRead()[0]) for each in self.link.connections], [[b"s0"], [b"s4"], [b"s8"]])
        for connection in self.link.connections:
            connection.waitingRead()[1].callback(None)
        named = [sorted(each.waitingRead()[0]) for each in self.link.connections]
        self.assertEqual(named, [[b"s0", b"s1", b"s2", b"s3"], [b"s4", b"s5", b"s6", b"s7"], [b"s8", b"s9"]])
        self.assertEqual(self.reads.readers, 10)

    def test_unblockedOnceForNewReaders(self) -> None:
        """
        Readers that come while a read waits have it cut short, once
        (C{CLIENT UNBLOCK} with the connection's id); the next read names
        their streams too, each after the entry its readers had.
        """
        self.follow(b"a", b"5-0")
        self.follow(b"b", b"7-1")
        self.follow(b"c")
        self.assertEqual(self.link.commands, [("CLIENT", "UNBLOCK", b"100")])
        streams, reply = self.link.connections[0].waitingRead()
        self.assertEqual(streams, {b"a": b"5-0"})
        reply.callback(None)
        streams, _ = self.link.connections[0].waitingRead()
        self.assertEqual(streams, {b"a": b"5-0", b"b": b"7-1", b"c": b"0-0"})

    def test_entriesToTheirReaders(self) -> None:
        """
        A reply's entries go to the readers of their stream, each only
        those after the last it had; two readers of one stream are read
        from the older one's place.
        """
        behind, _ = self.follow(b"a", b"1-0")
        ahead, _ = self.follow(b"a", b"2-0")
        other, _ = self.follow(b"b")
        self.link.connections[0].waitingRead()[1].callback(None)
        streams, reply = self.link.connections[0].waitingRead()
        self.assertEqual(streams, {b"a": b"1-0", b"b": b"0-0"})
        reply.callback([[b"a", [_entry(b"2-0", b"x"), _entry(b"3-0", b"y")]]])
        self.assertEqual(behind.entries, [_entry(b"2-0", b"x"), _entry(b"3-0", b"y")])
        self.assertEqual(ahead.entries, [_entry(b"3-0", b"y")])
        self.assertEqual(other.entries, [])
        streams, _ = self.link.connections[0].waitingRead()
        self.assertEqual(streams, {b"a": b"3-0", b"b": b"0-0"})

    def test_pausedLeftOut(self) -> None:
        """
        A reader whose client is slow is left out of the reads until it
        resumes, which cuts the waiting read short to name it again.
        """
        slow, read = self.follow(b"a")
        self.follow(b"b")
        self.link.connections[0].waitingRead()[1].callback(None)
        read.pause()
        self.link.connections[0].waitingRead()[1].callback(None)
        streams, _ = self.link.connections[0].waitingRead()
        self.assertEqual(streams, {b"b": b"0-0"})
        unblocks = len(self.link.commands)
        read.resume()
        self.assertEqual(len(self.link.commands), unblocks + 1)
        self.link.connections[0].waitingRead()[1].callback(None)
        self.assertEqual(self.link.connections[0].waitingRead()[0], {b"a": b"0-0", b"b": b"0-0"})

    def test_quiet(self) -> None:
        """
        A reader that heard nothing for a whole wait is asked to look
        whether its stream is still there, once per wait; one that heard
        something is not.
        """
        silent, _ = self.follow(b"a")
        lively, _ = self.follow(b"b")
        self.clock.advance(1.0)
        self.link.connections[0].waitingRead()[1].callback([[b"b", [_entry(b"1-0", b"x")]]])
        self.assertEqual((silent.quiet, lively.quiet), (1, 0))
        self.link.connections[0].waitingRead()[1].callback(None)
        self.assertEqual((silent.quiet, lively.quiet), (1, 0))

    def test_lostConnection(self) -> None:
        """
        A connection lost: its readers are told, the others read on, and
        the next reader gets a new connection.
        """
        readers = [self.follow(b"s%d" % (number,))[0] for number in range(5)]
        self.link.connections[0].transport.loseConnection()
        self.assertEqual([reader.broken is not None for reader in readers], [True] * 4 + [False])
        self.follow(b"t")
        self.assertEqual(len(self.link.connections), 3)

    def test_stopped(self) -> None:
        """
        A reader stopped is left out of the next read, and its place goes
        to the next reader; closed, the reads tell new readers at once.
        """
        _, read = self.follow(b"a")
        for number in range(3):
            self.follow(b"s%d" % (number,))
        read.stop()
        self.follow(b"t")
        self.assertEqual(len(self.link.connections), 1)
        self.link.connections[0].waitingRead()[1].callback(None)
        self.assertNotIn(b"a", self.link.connections[0].waitingRead()[0])
        self.reads.close()
        self.assertTrue(self.link.connections[0].transport.closed)
        late = _Reader()
        self.assertIsNone(self.reads.follow(late, b"z", b"0-0"))
        self.assertIsNotNone(late.broken)

    def test_hostileReplies(self) -> None:
        """
        A reply that is not what C{XREAD} gives ends the reads of that
        connection's readers, each told why in one line; the next reader
        gets a new connection, and reads.
        """
        for reply in (5, [b"a"], [[b"a", b"x"]], [[b"a", [[b"no-id", []]]]], [[b"a", [[b"1-0"]]]]):
            reader, _ = self.follow(b"a")
            connection = self.link.connections[-1]
            connection.waitingRead()[1].callback(reply)
            self.assertIsNotNone(reader.broken, reply)
            assert reader.broken is not None
            self.assertIn("Redis answered a live read with", reader.broken.getErrorMessage())
            self.assertTrue(connection.transport.closed)
        self.assertEqual(len(self.link.connections), 5)

    def test_readerThatCannotTake(self) -> None:
        """
        A reader that fails on its entries ends alone: the others of its
        connection are given theirs, and read on.
        """

        class _Failing(_Reader):
            def liveEntries(self, entries: list[Any]) -> None:
                raise ValueError("not a stream's entry")

        failing = _Failing()
        self.reads.follow(failing, b"a", b"0-0")
        other, _ = self.follow(b"b")
        self.link.connections[0].waitingRead()[1].callback(None)
        self.link.connections[0].waitingRead()[1].callback(
            [[b"a", [_entry(b"1-0", b"x")]], [b"b", [_entry(b"1-0", b"y")]]]
        )
        self.assertIsNotNone(failing.broken)
        self.assertEqual(other.entries, [_entry(b"1-0", b"y")])
        self.assertEqual(self.link.connections[0].waitingRead()[0], {b"b": b"1-0"})

    def test_clientDenied(self) -> None:
        """
        A user whose ACL denies C{CLIENT}: the reads go on without cutting
        a waiting read short; a reader that comes is named in the next.
        """
        self.link.clientDenied = True
        first, _ = self.follow(b"a")
        self.follow(b"b")
        self.assertEqual(self.link.commands, [])
        self.assertIsNone(first.broken)
        self.link.connections[0].waitingRead()[1].callback(None)
        self.assertEqual(self.link.connections[0].waitingRead()[0], {b"a": b"0-0", b"b": b"0-0"})
