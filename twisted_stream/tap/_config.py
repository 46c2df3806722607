# -*- test-case-name: tests.test_config -*-
"""
C{chunkproxy --config FILE}: the gateway's configuration in a TOML file,
what a deployment ships.

The file says what the command line can say, under the same names: each
option as a top-level key (C{listen = "tcp:8080"}, C{connect-timeout =
10}, C{cors-origin = [...]}, C{inject-header = [...]} for every route),
read by the option's own parser; and the routes as C{[[route]]} tables,
each with its upstream (C{url}) or its pool's members (C{[[route.member]]}:
C{url}, C{weight}, C{max-streams}, C{inject-header}, C{name}), and its
pool's policy (C{tries}, C{retry-on}, C{try-timeout}, C{eject-after},
C{eject-for}, C{max-eject-for}, C{max-ejected-percent}, C{max-cooldown},
C{health-check = {path, interval, expect, timeout}}), and C{resumable =
SECONDS}. See
C{docs/deployment.md} for an example.

Every problem is found, not only the first: L{ConfigProblems} holds one
line for each, naming the key (C{route[2].member[1].weight}) and the
reason.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

from twisted_stream._numbers import isWholeIn
from twisted_stream.tap.options import (
    parseHeader,
    parseHTTPURL,
    parseOrigin,
    parsePrefix,
    parseTimeout,
)
from twisted_stream.upstream._health import HealthCheck
from twisted_stream.upstream._pool import DEFAULT_POLICY, Member, PoolPolicy

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover (Python 3.10)
    import tomli as tomllib

__all__ = ["ConfigFile", "ConfigProblems", "MemberOptions", "RouteOptions", "readConfig"]


@dataclass
class MemberOptions:
    """
    One member of a route's pool, as the command line or the config file
    gave it (see L{twisted_stream.upstream._pool.Member}).
    """

    url: bytes
    injectHeaders: list[tuple[bytes, bytes]] = field(default_factory=list)
    weight: int = 1
    maxStreams: Optional[int] = None
    name: str = ""

    def member(self) -> Member:
        """
        @return: The member it describes.
        """
        return Member(self.url, self.weight, self.maxStreams, tuple(self.injectHeaders), self.name)


@dataclass
class RouteOptions:
    """
    One route as the command line or the config file gave it.

    @ivar prefix: The path prefix.
    @ivar members: Its upstreams: one, or a pool's.
    @ivar injectHeaders: Headers to set on all its upstream requests (a
        member's own go over them).
    @ivar record: A folder to record its streams to, if any.
    @ivar policy: How its pool fails over and ejects members.
    @ivar tryTimeout: Seconds each attempt gets for its head (L{None}: the
        whole C{--connect-timeout}).
    @ivar healthCheck: Its pool's active health check, if any.
    @ivar resumable: Seconds its streamed answers stay resumable, if they
        are.
    """

    prefix: bytes
    members: list[MemberOptions]
    injectHeaders: list[tuple[bytes, bytes]] = field(default_factory=list)
    record: Optional[str] = None
    policy: PoolPolicy = DEFAULT_POLICY
    tryTimeout: Optional[float] = None
    healthCheck: Optional[HealthCheck] = None
    resumable: Optional[float] = None

    @property
    def upstream(self) -> bytes:
        """
        @return: Its first member's URL (its only one, for most routes).
        """
        return self.members[0].url


class ConfigProblems(Exception):
    """
    A config file that cannot be used.

    @ivar lines: One line per problem: the file, the key, the reason.
    """

    def __init__(self, lines: list[str]) -> None:
        super().__init__("\n".join(lines))
        self.lines = lines


@dataclass
class ConfigFile:
    """
    What a config file says.

    @ivar options: Each option it sets, read by the option's parser.
    @ivar corsOrigins: Its C{cors-origin}s, if it names any.
    @ivar injectHeaders: Headers for every route's requests.
    @ivar record: A folder to record every route's streams to.
    @ivar resumable: Seconds every route's streams stay resumable.
    @ivar routes: Its routes.
    """

    path: str
    options: dict[str, Any] = field(default_factory=dict)
    corsOrigins: Optional[list[bytes]] = None
    injectHeaders: list[tuple[bytes, bytes]] = field(default_factory=list)
    record: Optional[str] = None
    resumable: Optional[float] = None
    routes: list[RouteOptions] = field(default_factory=list)

_POLICY_KEYS = {
    "tries": "tries",
    "eject-after": "ejectAfter",
    "eject-for": "ejectFor",
    "max-eject-for": "maxEjectFor",
    "max-cooldown": "maxCooldown",
}


class _Reader:
    """
    Reads values, noting a problem for each that cannot be read.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self.problems: list[str] = []

    def problem(self, key: str, reason: str) -> None:
        self.problems.append(f"{self.path}: {key}: {reason}")

    def read(self, key: str, value: Any, parse: Callable[[Any], Any]) -> Any:
        try:
            return parse(value)
        except (ValueError, TypeError) as e:
            reason = str(e) or f"cannot be {value!r}"
            # (An option's parser names the option itself.)
            self.problem(key, reason.removeprefix(key.rsplit(".", 1)[-1] + " "))
            return None

    def table(self, key: str, value: Any) -> dict[str, Any]:
        if not isinstance(value, dict):
            self.problem(key, f"must be a table, not {type(value).__name__}")
            return {}
        return value

    def unknown(self, where: str, table: dict[str, Any], known: set[str]) -> None:
        for key in table:
            if key not in known:
                self.problem(f"{where}{key}", "is not a key chunkproxy knows")


def _text(value: Any) -> str:
    # Numbers are given to an option's parser as the command line would.
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise ValueError(f"must be a string or a number, not {value!r}")
    return str(value)


def _asText(parse: Callable[[str], Any]) -> Callable[[Any], Any]:
    return lambda value: parse(_text(value))


def _strings(value: Any) -> list[str]:
    values = value if isinstance(value, list) else [value]
    if not all(isinstance(v, str) for v in values):
        raise ValueError(f"must be a string or a list of strings, not {value!r}")
    return values


def _whole(least: int) -> Callable[[Any], int]:
    def parse(value: Any) -> int:
        if not isWholeIn(value, least):
            raise ValueError(f"must be a whole number of at least {least}, not {value!r}")
        return value

    return parse


def _seconds(value: Any) -> float:
    return parseTimeout(_text(value))


def _statuses(value: Any) -> frozenset[int]:
    if not isinstance(value, list) or not all(
        isinstance(v, int) and not isinstance(v, bool) and 100 <= v <= 599 for v in value
    ):
        raise ValueError(f"must be a list of statuses from 100 to 599, not {value!r}")
    return frozenset(value)


def _percent(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 100:
        raise ValueError(f"must be a number from 0 to 100, not {value!r}")
    return value / 100


def _headers(value: Any) -> list[tuple[bytes, bytes]]:
    return [parseHeader(text) for text in _strings(value)]


def _url(value: Any) -> bytes:
    return parseHTTPURL(_text(value))


def _healthPath(value: Any) -> bytes:
    if not isinstance(value, str) or not value.startswith("/") or not value.isascii() or " " in value:
        raise ValueError(f"must be a path starting with /, not {value!r}")
    return value.encode("ascii")


def readConfig(path: str, parsers: dict[str, Callable[[str], Any]]) -> ConfigFile:
    """
    Read a config file.

    @param path: Its path.
    @param parsers: Each option the file may set (what the command line
        may, but C{--config} and the options a table says), by name, with
        its parser.
    @return: What it says.
    @raise ConfigProblems: For a file that cannot be read, is not TOML, or
        says anything that cannot be used; every problem is said.
    """
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except OSError as e:
        raise ConfigProblems([f"{path}: cannot be read: {e.strerror}"]) from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigProblems([f"{path}: not TOML: {e}"]) from None
    reader = _Reader(path)
    config = ConfigFile(path)
    for key, value in data.items():
        if key == "route":
            continue
        if key == "cors-origin":
            config.corsOrigins = reader.read(key, value, lambda v: [parseOrigin(text) for text in _strings(v)])
        elif key == "inject-header":
            config.injectHeaders = reader.read(key, value, _headers) or []
        elif key == "record":
            config.record = reader.read(key, value, _text)
        elif key == "resumable":
            config.resumable = reader.read(key, value, _seconds)
        elif key in parsers:
            said = len(reader.problems)
            parsed = reader.read(key, value, _asText(parsers[key]))
            if len(reader.problems) == said:
                # (None is a value: 0 seconds of a timeout that may be off.)
                config.options[key] = parsed
        else:
            reader.problem(key, "is not a key chunkproxy knows")
    routes = data.get("route", [])
    if not isinstance(routes, list):
        reader.problem("route", "must be an array of tables ([[route]])")
        routes = []
    seen: set[bytes] = set()
    for number, table in enumerate(routes, 1):
        route = _route(reader, f"route[{number}]", reader.table(f"route[{number}]", table))
        if route is None:
            continue
        if route.prefix in seen:
            reader.problem(f"route[{number}].prefix", f"a second route for {route.prefix.decode()}")
        seen.add(route.prefix)
        config.routes.append(route)
    if reader.problems:
        raise ConfigProblems(reader.problems)
    return config


_ROUTE_KEYS = {
    "prefix", "url", "member", "inject-header", "record", "resumable", "retry-on", "try-timeout", "max-ejected-percent",
    "health-check", *_POLICY_KEYS,
}  # fmt: skip
_MEMBER_KEYS = {"url", "weight", "max-streams", "inject-header", "name"}
_HEALTH_KEYS = {"path", "interval", "expect", "timeout"}


def _route(reader: _Reader, where: str, table: dict[str, Any]) -> Optional[RouteOptions]:
    reader.unknown(where + ".", table, _ROUTE_KEYS)
    prefix = reader.read(f"{where}.prefix", table.get("prefix"), lambda v: parsePrefix(_text(v)))
    members: list[MemberOptions] = []
    if ("url" in table) == ("member" in table):
        reader.problem(where, "needs either url (one upstream) or [[route.member]] tables (a pool), not both")
    elif "url" in table:
        url = reader.read(f"{where}.url", table["url"], _url)
        members.append(MemberOptions(url or b""))
    else:
        tables = table["member"] if isinstance(table["member"], list) else [table["member"]]
        for number, member in enumerate(tables, 1):
            at = f"{where}.member[{number}]"
            read = _member(reader, at, reader.table(at, member))
            label = read.member().label
            if read.url and any(other.member().label == label for other in members):
                # The log and the metrics tell members apart by it.
                reader.problem(at, f"a second member called {label}: give each of them a name of its own")
            members.append(read)
    policy: dict[str, Any] = {}
    for key, name in _POLICY_KEYS.items():
        if key in table:
            parse = _whole(1) if key in ("tries", "eject-after") else _seconds
            policy[name] = reader.read(f"{where}.{key}", table[key], parse)
    if "retry-on" in table:
        policy["retryStatuses"] = reader.read(f"{where}.retry-on", table["retry-on"], _statuses)
    if "max-ejected-percent" in table:
        policy["maxEjectedFraction"] = reader.read(f"{where}.max-ejected-percent", table["max-ejected-percent"], _percent)
    health = None
    if "health-check" in table:
        health = _healthCheck(reader, f"{where}.health-check", reader.table(f"{where}.health-check", table["health-check"]))
    route = RouteOptions(
        prefix or b"/",
        members,
        reader.read(f"{where}.inject-header", table.get("inject-header", []), _headers) or [],
        reader.read(f"{where}.record", table["record"], _text) if "record" in table else None,
        PoolPolicy(**{k: v for k, v in policy.items() if v is not None}) if policy else DEFAULT_POLICY,
        reader.read(f"{where}.try-timeout", table["try-timeout"], _seconds) if "try-timeout" in table else None,
        health,
        reader.read(f"{where}.resumable", table["resumable"], _seconds) if "resumable" in table else None,
    )
    return route if prefix is not None else None


def _member(reader: _Reader, where: str, table: dict[str, Any]) -> MemberOptions:
    reader.unknown(where + ".", table, _MEMBER_KEYS)
    if "url" not in table:
        reader.problem(where, "needs a url")
    url = reader.read(f"{where}.url", table.get("url", ""), _url) if "url" in table else None
    weight = reader.read(f"{where}.weight", table.get("weight", 1), _whole(1))
    cap = reader.read(f"{where}.max-streams", table["max-streams"], _whole(1)) if "max-streams" in table else None
    name = reader.read(f"{where}.name", table.get("name", ""), _text)
    return MemberOptions(
        url or b"",
        reader.read(f"{where}.inject-header", table.get("inject-header", []), _headers) or [],
        weight or 1,
        cap,
        name or "",
    )


def _healthCheck(reader: _Reader, where: str, table: dict[str, Any]) -> HealthCheck:
    reader.unknown(where + ".", table, _HEALTH_KEYS)
    default = HealthCheck()
    return HealthCheck(
        reader.read(f"{where}.path", table.get("path", "/health"), _healthPath) or default.path,
        reader.read(f"{where}.interval", table.get("interval", default.interval), _seconds) or default.interval,
        reader.read(f"{where}.expect", table.get("expect", default.expect), _status) or default.expect,
        reader.read(f"{where}.timeout", table.get("timeout", default.timeout), _seconds) or default.timeout,
    )


def _status(value: Any) -> int:
    if not isWholeIn(value, 100, 599):
        raise ValueError(f"must be a status from 100 to 599, not {value!r}")
    return value

