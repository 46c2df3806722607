# -*- test-case-name: tests.test_logformat -*-
"""
How chunkproxy's log is written: C{--log-format text} (twistd's own layout)
or C{json} (exactly one JSON object per line, for log shippers), to where
twistd would write it (standard output with C{-n}, else C{--logfile}, which
C{SIGUSR1} rotates as twistd's own would).

twistd's text observer formats the time of every event from scratch (a
time zone and C{strftime} per line: at thousands of short streams a second
a sixth of the gateway's CPU, with the rest of the line's formatting); this
one formats it once a second, to the same text.
"""

from __future__ import annotations

import json
import os
import signal
import sys
from datetime import datetime, timezone
from functools import partial
from typing import Any, Callable, Optional, TextIO

from twisted.logger import FileLogObserver, ILogObserver, LogEvent, eventAsText, formatEvent, formatTime
from twisted.python.logfile import LogFile

__all__ = ["LOG_FORMATS", "jsonLine", "logsToStandardOutput", "observerFactory", "select", "textLine"]

LOG_FORMATS = ("text", "json")


class _SecondsFormatter:
    """
    Twisted's L{formatTime} (RFC 3339, to the second), computed once per
    second.
    """

    def __init__(self) -> None:
        self._second: Optional[int] = None
        self._text = "-"

    def __call__(self, when: Optional[float]) -> str:
        if when is None:
            return "-"
        second = int(when)
        if second != self._second:
            self._text = formatTime(second)
            self._second = second
        return self._text


_stamp = _SecondsFormatter()


def _message(event: LogEvent) -> str:
    """
    The event's text, as L{formatEvent} makes it.

    Twisted formats with C{string.Formatter}, in Python: several
    microseconds an event, at every stream's end. C{str.format_map} says
    the same in C; Twisted's own formatting does the rest: formats that fail
    there (its extension, C{{f()}}, a field that is called, fails as a
    missing key; Twisted's text says why others fail), formats that are not
    C{str}, flattened events.

    @param event: A log event.
    @return: Its text (empty for an event without a format).
    """
    format = event.get("log_format")
    if type(format) is str and "log_flattened" not in event:
        try:
            return format.format_map(event)
        except Exception:
            pass
    return formatEvent(event)


def _system(event: LogEvent) -> str:
    """
    The system field of twistd's line: the event's C{log_system} as text, or
    C{NAMESPACE#LEVEL}.
    """
    system = event.get("log_system")
    if system is None:
        level = event.get("log_level")
        return f"{event.get('log_namespace', '-')}#{'-' if level is None else level.name}"
    try:
        return str(system)
    except Exception:
        return "UNFORMATTABLE"


def textLine(event: LogEvent, worker: Optional[int] = None) -> Optional[str]:
    """
    An event as twistd writes it (C{TIME [SYSTEM] TEXT}, more lines of it
    indented), with the time formatted once a second.

    @param event: A log event.
    @param worker: The number of the worker (C{--workers}) that writes it,
        added to the system field (C{[NAMESPACE#LEVEL,worker 2]}): workers
        logging to one standard output are told apart.
    @return: The line, or L{None} for an event with nothing to say.
    """
    system = event.get("log_system")
    if "log_failure" in event or (system is not None and type(system) is not str):
        # A traceback, or a system to be made text: twistd's way.
        if worker is not None:
            event = dict(event, log_system=f"{_system(event)},worker {worker}")
        text = eventAsText(event, formatTime=_stamp)
    else:
        text = _message(event)
        if not text:
            return None
        system = _system(event) if worker is None else f"{_system(event)},worker {worker}"
        text = f"{_stamp(event.get('log_time'))} [{system}] {text}"
    if not text:
        return None
    return text.replace("\n", "\n\t") + "\n"


_PLAIN = (str, int, float, bool, type(None))


def jsonLine(event: LogEvent, worker: Optional[int] = None) -> Optional[str]:
    """
    An event as one JSON object on one line: C{time} (ISO 8601, UTC,
    milliseconds), C{level}, C{namespace}, C{pid}, C{worker} (in a worker
    of C{--workers}: its number), C{message} (the text), the event's own
    fields (values that are not JSON numbers, strings, booleans or null as
    their text), and C{traceback} for a failure.

    @param event: A log event.
    @param worker: The number of the worker that writes it, if it is one.
    @return: The line, or L{None} for an event with nothing to say.
    """
    message = _message(event)
    level = event.get("log_level")
    when = event.get("log_time")
    record: dict[str, Any] = {
        "time": (
            datetime.fromtimestamp(when, timezone.utc).isoformat(timespec="milliseconds")
            if when is not None
            else None
        ),
        "level": level.name if level is not None else None,
        "namespace": event.get("log_namespace"),
        "pid": os.getpid(),
    }
    if worker is not None:
        record["worker"] = worker
    record["message"] = message
    for key, value in event.items():
        if key.startswith("log_") or key in record:
            continue
        record[key] = value if isinstance(value, _PLAIN) else str(value)
    failure = event.get("log_failure")
    if failure is not None:
        record["traceback"] = failure.getTraceback()
    if not message and failure is None:
        return None
    return json.dumps(record, separators=(",", ":"), ensure_ascii=False) + "\n"


def observerFactory(
    logFormat: str, logfile: Optional[str], nodaemon: bool, worker: Optional[int] = None
) -> Callable[[], ILogObserver]:
    """
    What twistd's C{--logger} would be, for the given format.

    @param logFormat: C{text} or C{json}.
    @param logfile: twistd's C{--logfile} (C{-} or none with C{-n}:
        standard output).
    @param nodaemon: twistd's C{-n}.
    @param worker: The number of the worker (C{--workers}) whose log it is,
        named on every line, or L{None}.
    @return: A factory of the log observer, as twistd calls it.
    """
    lineOf = jsonLine if logFormat == "json" else textLine
    line = lineOf if worker is None else partial(lineOf, worker=worker)

    def make() -> ILogObserver:
        # twistd's own rule for where the log goes (syslog aside).
        out: TextIO
        if logsToStandardOutput(logfile, nodaemon):
            out = sys.stdout
        else:
            rotating = LogFile.fromFullPath(logfile or "twistd.log")
            _rotatedBySIGUSR1(rotating)
            out = rotating
        return FileLogObserver(out, line)

    return make


def logsToStandardOutput(logfile: Optional[str], nodaemon: bool) -> bool:
    """
    twistd's rule for where its log goes.

    @param logfile: twistd's C{--logfile}.
    @param nodaemon: twistd's C{-n}.
    @return: Whether to standard output (else to the log file, by default
        C{twistd.log}, or the plugin's own default).
    """
    return logfile == "-" or (nodaemon and not logfile)


def _rotatedBySIGUSR1(logFile: LogFile) -> None:
    """
    Rotate C{logFile} on C{SIGUSR1}, unless something else handles that
    signal: what twistd does for the log file it opens itself, which this
    module's observer replaces (and what C{logrotate}'s C{postrotate}
    scripts for twistd send). A signal ignored until now (as a worker
    starts) is handled from now on.
    """
    if signal.getsignal(signal.SIGUSR1) not in (None, signal.SIG_DFL, signal.SIG_IGN):
        return

    def rotate(signum: int, frame: object) -> None:
        from twisted.internet import reactor

        # A signal handler runs between two bytecodes of whatever the
        # reactor was doing: the rotation waits for the reactor's next turn.
        reactor.callFromThread(logFile.rotate)  # type: ignore[attr-defined]

    signal.signal(signal.SIGUSR1, rotate)


selected: Optional[Callable[[], ILogObserver]] = None
"""The observer factory chosen by L{select}: twistd's C{--logger} takes a
dotted name, which names this."""


def select(options: Any, logFormat: str, worker: Optional[int] = None) -> None:
    """
    Make twistd write its log in C{logFormat}, where it would have written
    it, unless its options already chose an observer (C{--logger},
    C{--syslog}).

    @param options: twistd's options (a plugin's C{parent}), not yet
        post-processed: twistd resolves C{--logger} after the plugin's
        options are read.
    @param logFormat: C{text} or C{json}.
    @param worker: The number of the worker (C{--workers}) whose log it is,
        or L{None}.
    """
    global selected
    if options.get("logger") or options.get("syslog"):
        return
    selected = observerFactory(logFormat, options.get("logfile"), bool(options.get("nodaemon")), worker)
    options["logger"] = f"{__name__}.selected"
