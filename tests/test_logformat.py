"""
Tests for L{twisted_stream.ops._logformat}: lines byte for byte without a
process, and a real chunkproxy writing JSON lines.
"""

from __future__ import annotations

import json
import os
import signal
from typing import Any

from twisted.internet.defer import inlineCallbacks
from twisted.internet.task import deferLater
from twisted.logger import LogLevel, formatEvent, formatEventAsClassicLogText
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase, TestCase

from tests.support import (
    LOOPBACK_LISTEN,
    LineProcess,
    Server,
    fetch,
    onceAcrossRunners,
    reactor,
    readText,
    startTwistd,
    stopped,
    twistdCommand,
    until,
)
from twisted_stream.ops._logformat import jsonLine, textLine


def _event(**fields: Any) -> dict[str, Any]:
    return {
        "log_time": 1764653400.25, "log_level": LogLevel.info, "log_namespace": "chunkproxy.stream",
        "log_format": "{a} {b}", **fields,
    }  # fmt: skip


def _failed() -> Failure:
    try:
        int("not a number")
    except ValueError:
        return Failure()
    raise AssertionError("unreachable")


class TextLineTests(SynchronousTestCase):
    def test_sameAsTwistd(self) -> None:
        """
        The text is twistd's own, line for line, for events plain, with a
        failure, with more lines, and for one with nothing to say.
        """
        for event in (
            _event(a=1, b="x"),
            _event(a="two\nlines", b=""),
            dict(_event(a=1, b=2), log_failure=_failed()),
            dict(_event(a=1, b=2), log_system="custom"),
            {"log_time": 1764653400.0},
        ):
            self.assertEqual(textLine(event), formatEventAsClassicLogText(event), event)

    def test_sameAsTwistdForEveryFormat(self) -> None:
        """
        Formats it makes itself and formats it leaves to Twisted give
        twistd's text: conversions and specs, attributes and keys, doubled
        braces, Twisted's called fields, a field that is missing, a format
        given as bytes or as something else, a system that is not text, no
        level, no namespace, no time.
        """
        class Named:
            name = "n"

            def __str__(self) -> str:
                return "named"

        class Unnamed:
            def __str__(self) -> str:
                raise ValueError("no text")

        for event in (
            _event(a="x", b=2.5, log_format="{a!r:>6} {b:.3f} {{literal}} {c.name} {d[k]}", c=Named(), d={"k": 1}),
            _event(a=lambda: "called", b=1, log_format="{a()} and ({b})"),
            _event(a=1, b=2, log_format="{missing}"),
            _event(a=1, b=2, log_format=b"bytes {a}"),
            _event(a=1, b=2, log_format=42),
            _event(a=1, b=2, log_format=""),
            _event(a=1, b=2, log_format=None),
            dict(_event(a=1, b=2), log_system=Named()),
            dict(_event(a=1, b=2), log_system=Unnamed()),
            {"log_format": "{a}", "a": "no level, namespace or time"},
            dict(_event(a=1, b=2), log_namespace=None, log_level=None),
        ):
            self.assertEqual(textLine(event), formatEventAsClassicLogText(event), event)
            line = jsonLine(event)
            self.assertEqual(json.loads(line)["message"] if line else "", formatEvent(event), event)

    def test_workerNamed(self) -> None:
        """
        In a worker of C{--workers}, the system field names it: on plain
        lines, lines with a traceback, and lines with a system of their own.
        """
        failed = dict(_event(a=1, b=2), log_failure=_failed())
        for event, system in (
            (_event(a=1, b=2), "chunkproxy.stream#info"),
            (failed, "chunkproxy.stream#info"),
            (dict(_event(a=1, b=2), log_system="custom"), "custom"),
        ):
            self.assertEqual(
                textLine(event, worker=2),
                formatEventAsClassicLogText(dict(event, log_system=f"{system},worker 2")),
                event,
            )

    def test_timeOncePerSecond(self) -> None:
        first = textLine(_event(a=1, b=2))
        later = textLine(dict(_event(a=1, b=2), log_time=1764653400.9))
        self.assertEqual(first, later)


class JSONLineTests(SynchronousTestCase):
    def test_fields(self) -> None:
        """
        One JSON object on one line: time in UTC to the millisecond, level,
        namespace, the process id, the message, and the event's own fields; a value JSON
        cannot hold is its text.
        """
        line = jsonLine(_event(a="two\nlines", b=None, status=200, ratio=0.5, obj=object))
        assert line is not None
        self.assertTrue(line.endswith("}\n"))
        self.assertEqual(line.count("\n"), 1)
        record = json.loads(line)
        self.assertEqual(
            record,
            {
                "time": "2025-12-02T05:30:00.250+00:00",
                "level": "info",
                "namespace": "chunkproxy.stream",
                "pid": os.getpid(),
                "message": "two\nlines None",
                "a": "two\nlines",
                "b": None,
                "status": 200,
                "ratio": 0.5,
                "obj": "<class 'object'>",
            },
        )

    def test_failure(self) -> None:
        line = jsonLine(dict(_event(a=1, b=2), log_failure=_failed()))
        assert line is not None
        self.assertIn("ValueError", json.loads(line)["traceback"])

    def test_nothingToSay(self) -> None:
        self.assertIsNone(jsonLine({"log_time": 1764653400.0}))

    def test_workerNamed(self) -> None:
        """
        In a worker of C{--workers}, C{worker} is its number; elsewhere
        there is no C{worker}.
        """
        line = jsonLine(_event(a=1, b=2), worker=2)
        assert line is not None
        self.assertEqual(json.loads(line)["worker"], 2)
        line = jsonLine(_event(a=1, b=2))
        assert line is not None
        self.assertNotIn("worker", json.loads(line))


@onceAcrossRunners
class JSONLogTests(TestCase):
    timeout = 30

    @inlineCallbacks
    def test_everyLineIsJSON(self) -> Any:
        """
        C{--log-format json}: every line the process writes is one JSON
        object, twistd's own among them; each request is one stream event
        with its fields, and no query string anywhere. chunkgen takes the
        option too.
        """
        generator: Server = yield startTwistd(self, "chunkgen", "--log-format", "json")
        proxy: Server = yield startTwistd(
            self, "chunkproxy", "--upstream", generator.url + "generate", "--log-format", "json"
        )
        yield fetch(proxy.url + "stream?count=3&interval=0.0123")
        yield fetch(proxy.url + "nowhere")
        yield deferLater(reactor, 0.3, lambda: None)
        lines = proxy.output.splitlines()
        records = [json.loads(line) for line in lines]
        streams = [r for r in records if r["namespace"] == "chunkproxy.stream"]
        self.assertEqual(
            [(r["path"], r["status"], r["outcome"], r["chunks_sent"]) for r in streams],
            [("/stream", 200, "complete", 3), ("/nowhere", 404, "rejected", 0)],
        )
        self.assertTrue(any("listening on" in r["message"] for r in records))
        self.assertNotIn("0.0123", proxy.output)
        generated = [json.loads(line) for line in generator.output.splitlines()]
        self.assertTrue(any("chunkgen listening on" in r["message"] for r in generated))


@onceAcrossRunners
class LogFileRotationTests(TestCase):
    timeout = 30

    @inlineCallbacks
    def _rotated(self, logFormat: str) -> Any:
        """
        Start chunkproxy writing C{logFormat} to a log file, send it
        C{SIGUSR1}, then C{SIGTERM}.

        @return: A Deferred that fires with the lines of the rotated file
            and of the file written after the rotation.
        """
        here = os.path.abspath(self.mktemp())
        os.makedirs(here)
        path = os.path.join(here, "chunkproxy.log")
        process = LineProcess.spawn(
            twistdCommand(), "-n", "--pidfile=", f"--logfile={path}", "chunkproxy", "--listen", LOOPBACK_LISTEN,
            "--upstream", "http://127.0.0.1:9/", "--log-format", logFormat,
        )  # fmt: skip
        pid = process.pid
        self.addCleanup(stopped, process)
        yield until(lambda: "listening on" in readText(path))
        os.kill(pid, signal.SIGUSR1)
        yield until(lambda: os.path.exists(path + ".1"))
        os.kill(pid, signal.SIGTERM)
        code = yield process.exitCode
        self.assertEqual(code, 0, process.stderr)
        return readText(path + ".1").splitlines(), readText(path).splitlines()

    @inlineCallbacks
    def test_jsonRotatedBySIGUSR1(self) -> Any:
        """
        C{--log-format json} to a log file: C{SIGUSR1} rotates it, as twistd
        rotates its own (C{logrotate}'s C{postrotate} sends it); lines go on
        in the new file, each still one JSON object.
        """
        before, after = yield self._rotated("json")
        self.assertTrue(any("listening on" in json.loads(line)["message"] for line in before))
        self.assertTrue(any("draining" in json.loads(line)["message"] for line in after))

    @inlineCallbacks
    def test_textRotatedBySIGUSR1(self) -> Any:
        """
        The same for C{--log-format text} (the default), which is this
        project's observer too, not twistd's.
        """
        before, after = yield self._rotated("text")
        self.assertTrue(any("listening on" in line for line in before))
        self.assertTrue(any("draining" in line for line in after))
