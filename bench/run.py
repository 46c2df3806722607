"""
The benchmark: chunkproxy against the proxies people would pick instead,
each alone on one core, with the load on the other, in one run.

Targets (each started here, on 127.0.0.1):

  - C{direct}: no proxy, the floor, and the proof that the load side is not
    the limit at the top of the ladder;
  - C{chunkproxy}: this project, C{twistd -n chunkproxy} with its defaults;
  - C{reverseproxy}: Twisted's own C{ReverseProxyResource};
  - C{nginx} (C{proxy_buffering off}), where nginx is installed;
  - C{goproxy}: Go's C{httputil.ReverseProxy}, C{GOMAXPROCS=1};
  - C{floor-http} and C{floor-tcp} (asked for by name): the least an HTTP
    proxy, and a byte relay, on Twisted cost (C{bench/floor.py}), to tell
    what chunkproxy's CPU owes to Python and the reactor.

The load side is C{bench/load} (Go, built here): the upstream that streams
chunks stamped with their send time, and the clients, pinned together to
the other core. Scenarios, each run for every target in a new random order:

  - S1, one stream at 100 chunks/s: delay p50/p99, and what the proxy adds
    over going direct;
  - S2, the concurrency ladder (100 / 500 / 1,000 / 2,000 / 4,000 streams
    of 10 chunks/s, each level started within C/1000 s, at least 1 s):
    delay p50/p99, TTFB p99, chunks delivered against sent, proxy CPU % and
    RSS, CPU per forwarded chunk; the capacity is the most streams with p99
    under 50 ms and nothing lost;
  - S4, one client reading 1 MiB/s from an upstream as fast as it can
    send: the proxy's RSS growth;
  - S5, clients that leave after 5 chunks: time until the upstream sees its
    connection close;
  - S6, 2,000 short streams (one chunk each, 50 at a time, kept-alive
    client connections): proxy CPU per stream, TTFB p99;
  - L1 and L2, the LLM scenario, shaped like the real traffic: OpenAI chat
    completion streams (a POST with a JSON body on kept-alive connections,
    C{chat.completion.chunk} events, a usage chunk, C{[DONE]}) from the load
    side's fast upstream. L1: one client, 50 answers of 20 tokens in turn:
    time to first token (on reused connections) and per-token delay, each
    against going direct. L2: 100 / 500 / 1,000 clients, each two answers
    of 20 tokens at 20 tokens/s in turn: proxy CPU, per-token delay p99,
    time to first token p99, tokens lost.

Proxy CPU is read from C{/proc/PID/task/*/schedstat} (all threads, and
nginx's worker), RSS from C{/proc/PID/status}.

    bench/run [--quick] [--rounds N] [--targets a,b] [--out DIR]

C{--quick} runs every scenario small (a few seconds each) and exits 1 if any
stream through any target lost or mangled a byte: C{.ci/run} runs it.
"""

from __future__ import annotations

import argparse
import datetime
import glob
import json
import os
import platform
import random
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Any, Callable, Optional

HERE = Path(__file__).resolve().parent
BIN = Path(sys.executable).parent
PROXY_CORE, LOAD_CORE = "0", "1"
P99_LIMIT_MS = 50.0
"""A ladder level counts towards the capacity while its p99 delay is under
this and nothing is lost."""


def pinned(core: str, argv: list[str]) -> list[str]:
    """
    @return: C{argv}, run on one core where C{taskset} exists and the
        machine has more than one.
    """
    if shutil.which("taskset") and (os.cpu_count() or 1) > 1:
        return ["taskset", "-c", core, *argv]
    return argv


class Process:
    """
    A server process of the benchmark, and the processes whose CPU it costs.
    """

    def __init__(self, name: str, argv: list[str], env: Optional[dict[str, str]] = None,
                 port: Optional[int] = None) -> None:
        self.name = name
        self.process = subprocess.Popen(
            argv,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=dict(os.environ, PYTHONUNBUFFERED="1", **(env or {})),
        )
        self.port = port if port is not None else self._announcedPort()
        # Keep reading its output, so that a chatty log never blocks it.
        threading.Thread(target=self._drain, daemon=True).start()

    def _announcedPort(self) -> int:
        assert self.process.stdout is not None
        seen = b""
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            line = self.process.stdout.readline()
            if not line:
                break
            seen += line
            if b"listening on http://127.0.0.1:" in line:
                return int(line.split(b"http://127.0.0.1:")[1].split(b"/")[0])
        raise RuntimeError(f"{self.name} did not start:\n{seen.decode(errors='replace')}")

    def _drain(self) -> None:
        assert self.process.stdout is not None
        for _ in self.process.stdout:
            pass

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    def pids(self) -> list[int]:
        """
        @return: The process and its children (nginx's worker).
        """
        found = [self.process.pid]
        children = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children")
        if children.exists():
            found += [int(pid) for pid in children.read_text().split()]
        return found

    def cpuNanoseconds(self) -> int:
        total = 0
        for pid in self.pids():
            for stat in glob.glob(f"/proc/{pid}/task/*/schedstat"):
                try:
                    total += int(Path(stat).read_text().split()[0])
                except (OSError, IndexError, ValueError):
                    pass
        return total

    def rssKiB(self) -> int:
        total = 0
        for pid in self.pids():
            try:
                for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
            except OSError:
                pass
        return total

    companion: Optional[Process] = None
    """A process it needs that runs beside it (its Redis), whose CPU is
    reported beside its own, not in it."""

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
        if self.companion is not None:
            self.companion.stop()


def freePort() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def waitForPort(port: int) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {port}")


# The targets.

LISTEN = "tcp:0:interface=127.0.0.1:backlog=4096"
"""Every Python target's listener: the kernel's queue, not Twisted's 50."""


def chunkproxy(upstream: str, workdir: Path) -> Process:
    return Process(
        "chunkproxy",
        pinned(PROXY_CORE, [str(BIN / "twistd"), "-n", "--pidfile=", "chunkproxy", "--listen", LISTEN,
                            "--upstream", upstream + "stream", "--route", f"/v1/={upstream}v1/"]),
    )


def chunkproxyWorkers(upstream: str, workdir: Path) -> Process:
    """
    chunkproxy with C{--workers 2}, on both cores: this machine has two, so
    the load shares one of them with it (say so beside its figures).
    """
    return Process(
        "chunkproxy-w2",
        pinned(f"{PROXY_CORE},{LOAD_CORE}", [str(BIN / "twistd"), "-n", "--pidfile=", "chunkproxy", "--listen", LISTEN,
                                             "--upstream", upstream + "stream", "--route", f"/v1/={upstream}v1/",
                                             "--workers", "2"]),
    )


def _portOf(upstream: str) -> int:
    return int(upstream.rsplit(":", 1)[1].strip("/"))


def reverseProxy(upstream: str, workdir: Path) -> Process:
    return Process(
        "reverseproxy", pinned(PROXY_CORE, [sys.executable, str(HERE / "reverseproxy.py"), str(_portOf(upstream))])
    )


def floor(kind: str, upstream: str, workdir: Path) -> Process:
    """
    A floor of C{bench/floor.py}: C{http}, the least an HTTP proxy on
    Twisted costs (what is left of chunkproxy's CPU above it is the
    gateway's own work), or C{tcp}, the reactor's own (bytes relayed, no
    HTTP).
    """
    return Process(
        f"floor-{kind}", pinned(PROXY_CORE, [sys.executable, str(HERE / "floor.py"), kind, str(_portOf(upstream))])
    )


def goproxy(upstream: str, workdir: Path) -> Process:
    return Process("goproxy", pinned(PROXY_CORE, [str(LOAD), "goproxy", "-upstream", upstream]),
                   env={"GOMAXPROCS": "1"})


def nginx(upstream: str, workdir: Path) -> Optional[Process]:
    command = shutil.which("nginx") or ("/usr/sbin/nginx" if os.path.exists("/usr/sbin/nginx") else None)
    if command is None:
        return None
    port = freePort()
    (workdir / "logs").mkdir(parents=True, exist_ok=True)
    conf = workdir / "nginx.conf"
    conf.write_text(
        f"""
worker_processes 1;
worker_rlimit_nofile 20000;
error_log {workdir}/logs/error.log;
pid {workdir}/nginx.pid;
events {{ worker_connections 16000; }}
http {{
    # As nginx is deployed: an access log, written to a file.
    access_log {workdir}/logs/access.log;
    client_body_temp_path {workdir}/body;
    proxy_temp_path {workdir}/proxy;
    fastcgi_temp_path {workdir}/fastcgi;
    uwsgi_temp_path {workdir}/uwsgi;
    scgi_temp_path {workdir}/scgi;
    upstream load {{ server {upstream[len("http://"):].rstrip("/")}; keepalive 1024; }}
    server {{
        listen 127.0.0.1:{port} backlog=4096;
        location /stream {{
            proxy_pass http://load;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_buffering off;
        }}
        location /v1/ {{
            proxy_pass http://load;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_buffering off;
        }}
    }}
}}
"""
    )
    server = Process("nginx", pinned(PROXY_CORE, [command, "-p", str(workdir), "-c", str(conf), "-g", "daemon off;"]),
                     port=port)
    waitForPort(port)
    return server


def _pooled(name: str, members: list[tuple[str, int]], workdir: Path, policy: str = "") -> Process:
    """
    chunkproxy with its two routes (C{/stream}, C{/v1/}) each a pool, from
    a config file: C{members} are C{(root URL, weight)}.
    """
    config = workdir / f"{name}.toml"
    routes = []
    for prefix, path in (("/stream", "stream"), ("/v1/", "v1/")):
        routes += ["[[route]]", f'prefix = "{prefix}"', policy]
        for number, (root, weight) in enumerate(members):
            routes += ["[[route.member]]", f'url = "{root}{path}"', f"weight = {weight}", f'name = "m{number}"']
    config.write_text("\n".join(routes) + "\n")
    return Process(
        name,
        pinned(PROXY_CORE, [str(BIN / "twistd"), "-n", "--pidfile=", "chunkproxy", "--listen", LISTEN,
                            "--config", str(config)]),
    )


def chunkproxyPool3(upstream: str, workdir: Path) -> Process:
    """
    chunkproxy whose routes are pools of three members (the one upstream
    three times, by three names): what choosing a member costs a stream.
    """
    return _pooled("chunkproxy-pool3", [(upstream, 1)] * 3, workdir)


def chunkproxyFailover(upstream: str, workdir: Path) -> Process:
    """
    chunkproxy whose routes are pools whose first choice (weight 1000 to 1)
    refuses connections, never ejected: every request fails over once,
    what failover costs a stream's first byte.
    """
    dead = f"http://127.0.0.1:{freePort()}/"
    return _pooled("chunkproxy-failover", [(dead, 1000), (upstream, 1)], workdir, "eject-after = 1000000000")


def chunkproxyResumable(upstream: str, workdir: Path) -> Process:
    """
    chunkproxy with both routes resumable (C{--resumable 5}, the memory
    store): what keeping every stream for resuming costs.
    """
    return Process(
        "chunkproxy-resumable",
        pinned(PROXY_CORE, [str(BIN / "twistd"), "-n", "--pidfile=", "chunkproxy", "--listen", LISTEN,
                            "--resumable", "5", "--upstream", upstream + "stream", "--route", f"/v1/={upstream}v1/"]),
    )


def chunkproxyResumableRedis(upstream: str, workdir: Path) -> Optional[Process]:
    """
    chunkproxy with both routes resumable in Redis (C{--resumable 5
    --resume-store redis://...}): every stream copied to a C{redis-server}
    started for it on the load's core; Redis's own CPU is reported beside
    chunkproxy's.
    """
    command = shutil.which("redis-server")
    if command is None:
        return None
    port = freePort()
    redis = Process(
        "redis",
        pinned(LOAD_CORE, [command, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                           "--dir", str(workdir)]),
        port=port,
    )  # fmt: skip
    try:
        waitForPort(port)
    except RuntimeError:
        redis.stop()
        raise
    proxy = Process(
        "chunkproxy-resumable-redis",
        pinned(
            PROXY_CORE,
            [
                str(BIN / "twistd"), "-n", "--pidfile=", "chunkproxy", "--listen", LISTEN,
                "--resumable", "5", "--resume-store", f"redis://127.0.0.1:{port}/0",
                "--upstream", upstream + "stream", "--route", f"/v1/={upstream}v1/",
            ],
        ),
    )  # fmt: skip
    proxy.companion = redis
    return proxy


def chunkproxyAt(revision: str, upstream: str, workdir: Path) -> Process:
    """
    chunkproxy as it was at a git revision of this project, from an export
    of it put first on C{PYTHONPATH} (its dependencies are this
    virtualenv's), to measure a change in the same run as what it changed.
    """
    source = workdir / f"at-{revision}"
    source.mkdir()
    archive = subprocess.run(["git", "-C", str(HERE.parent), "archive", revision], capture_output=True, check=True)
    subprocess.run(["tar", "-x", "-C", str(source)], input=archive.stdout, check=True)
    return Process(
        f"chunkproxy@{revision}",
        pinned(PROXY_CORE, [str(BIN / "twistd"), "-n", "--pidfile=", "chunkproxy", "--listen", LISTEN,
                            "--upstream", upstream + "stream", "--route", f"/v1/={upstream}v1/"]),
        env={"PYTHONPATH": str(source)},
    )


STARTERS: dict[str, Callable[[str, Path], Optional[Process]]] = {
    "chunkproxy": chunkproxy,
    "chunkproxy-w2": chunkproxyWorkers,
    "chunkproxy-pool3": chunkproxyPool3,
    "chunkproxy-failover": chunkproxyFailover,
    "chunkproxy-resumable": chunkproxyResumable,
    "chunkproxy-resumable-redis": chunkproxyResumableRedis,
    "reverseproxy": reverseProxy,
    "nginx": nginx,
    "goproxy": goproxy,
    "floor-http": partial(floor, "http"),
    "floor-tcp": partial(floor, "tcp"),
}
ORDER = ["direct", "chunkproxy", "chunkproxy-pool3", "chunkproxy-failover", "chunkproxy-resumable",
         "chunkproxy-resumable-redis", "chunkproxy-w2", "reverseproxy", "nginx", "goproxy", "floor-http", "floor-tcp"]
DEFAULT_TARGETS = ["chunkproxy", "reverseproxy", "nginx", "goproxy"]
"""What runs unless --targets says otherwise (chunkproxy-w2 is asked for by
name: it needs the load's core too; so are the pools')."""

# The load.

LOAD = HERE / ".build" / "load"
LOAD_ENV = {"GOGC": "400"}
"""The load side's Go runtime: collecting garbage less often costs it less
CPU, and it has memory to spare."""


def buildLoad() -> None:
    go = shutil.which("go")
    if go is None:
        sys.exit("bench: Go is needed for the load side (apt-get install golang-go)")
    LOAD.parent.mkdir(exist_ok=True)
    subprocess.run([go, "build", "-o", str(LOAD), "."], cwd=HERE / "load", check=True,
                   env=dict(os.environ, GOFLAGS="-mod=mod", GO111MODULE="on"))


@dataclass
class Sample:
    """
    One scenario (and ladder level) through one target in one round.
    """

    target: str
    scenario: str
    round: int
    level: int = 0
    load: dict[str, Any] = field(default_factory=dict)
    cpuSeconds: Optional[float] = None
    wallSeconds: float = 0.0
    rssKiB: Optional[int] = None
    rssBeforeKiB: Optional[int] = None
    companionCpuSeconds: Optional[float] = None
    """The CPU of the process beside the target (its Redis), if it has one."""

    @property
    def lost(self) -> bool:
        load = self.load
        if self.scenario in ("L1", "L2"):
            return bool(load.get("failed") or load.get("corrupt")) or (
                load.get("tokensReceived") != load.get("tokensExpected") or load.get("complete") != load.get("requests")
            )
        return bool(load.get("failed") or load.get("corrupt")) or (
            self.scenario in ("S1", "S2", "S6") and load.get("chunksReceived") != load.get("chunksExpected")
        )


def runLoad(target: Optional[Process], upstream: Process, command: str, url: str, *args: str,
            scenario: str, round: int, level: int = 0) -> Sample:
    """
    Run one client command of the load tool against C{url}, measuring the
    target's CPU and its largest RSS meanwhile.
    """
    sample = Sample(target.name if target else "direct", scenario, round, level)
    rss: list[int] = []
    done = threading.Event()

    def watch() -> None:
        while not done.wait(0.1):
            rss.append(target.rssKiB())  # type: ignore[union-attr]

    if target is not None:
        sample.rssBeforeKiB = target.rssKiB()
        cpuBefore = target.cpuNanoseconds()
        companionBefore = target.companion.cpuNanoseconds() if target.companion is not None else 0
        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
    began = time.monotonic()
    # The LLM clients are given the root: they ask for v1/chat/completions.
    finished = subprocess.run(
        pinned(LOAD_CORE, [str(LOAD), command, "-url", url + ("" if command == "llm" else "stream"), *args]),
        capture_output=True,
        env=dict(os.environ, LOAD_UPSTREAM=upstream.url, **LOAD_ENV),
        timeout=300,
    )
    sample.wallSeconds = time.monotonic() - began
    done.set()
    if target is not None:
        sample.cpuSeconds = (target.cpuNanoseconds() - cpuBefore) / 1e9
        if target.companion is not None:
            sample.companionCpuSeconds = (target.companion.cpuNanoseconds() - companionBefore) / 1e9
        rss.append(target.rssKiB())
        sample.rssKiB = max(rss)
    if finished.returncode != 0:
        raise RuntimeError(f"load {command} failed: {finished.stderr.decode(errors='replace')}")
    sample.load = json.loads(finished.stdout)
    return sample


@dataclass
class Plan:
    """
    How big each scenario is.
    """

    s1Chunks: int
    levels: list[int]
    s2Chunks: int
    s4Seconds: float
    s5Streams: int
    s6Streams: int
    l1Answers: int
    llmLevels: list[int]
    scenarios: list[str] = field(default_factory=lambda: ["S1", "S2", "S4", "S5", "S6", "L1", "L2"])


FULL = Plan(s1Chunks=1000, levels=[100, 500, 1000, 2000, 4000], s2Chunks=50, s4Seconds=5, s5Streams=200,
            s6Streams=2000, l1Answers=50, llmLevels=[100, 500, 1000])
QUICK = Plan(s1Chunks=100, levels=[100], s2Chunks=10, s4Seconds=1, s5Streams=20, s6Streams=200, l1Answers=10,
             llmLevels=[100])
LLM_TOKENS = 20
"""Tokens in each answer of the LLM scenario."""


def scenarios(plan: Plan, target: Optional[Process], upstream: Process, round: int) -> list[Sample]:
    """
    Every scenario through one target.
    """
    url = target.url if target else upstream.url
    samples = []
    if "S1" in plan.scenarios:
        samples.append(runLoad(target, upstream, "streams", url, "-c", "1", "-count", str(plan.s1Chunks),
                               "-interval", "10", scenario="S1", round=round))
    for level in plan.levels if "S2" in plan.scenarios else []:
        spread = max(1.0, level / 1000)
        samples.append(runLoad(target, upstream, "streams", url, "-c", str(level), "-spread", str(spread),
                               "-count", str(plan.s2Chunks), "-interval", "100", scenario="S2", round=round,
                               level=level))
        time.sleep(1)
    if "S4" in plan.scenarios:
        samples.append(runLoad(target, upstream, "slow", url, "-seconds", str(plan.s4Seconds), scenario="S4",
                               round=round))
    if "S5" in plan.scenarios:
        samples.append(runLoad(target, upstream, "leave", url, "-c", str(plan.s5Streams), "-spread", "1",
                               scenario="S5", round=round))
    if "S6" in plan.scenarios:
        samples.append(runLoad(target, upstream, "short", url, "-n", str(plan.s6Streams), "-k", "50",
                               scenario="S6", round=round))
    if "L1" in plan.scenarios:
        # Fast tokens (5 ms apart): what the proxy adds is what is seen.
        samples.append(runLoad(target, upstream, "llm", url, "-c", "1", "-r", str(plan.l1Answers),
                               "-tokens", str(LLM_TOKENS), "-interval", "5", scenario="L1", round=round))
    for level in plan.llmLevels if "L2" in plan.scenarios else []:
        samples.append(runLoad(target, upstream, "llm", url, "-c", str(level), "-r", "2",
                               "-spread", str(max(1.0, level / 1000)), "-tokens", str(LLM_TOKENS), "-interval", "50",
                               scenario="L2", round=round, level=level))
        time.sleep(1)
    return samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="every scenario small; exit 1 if a byte is lost")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--targets", default=",".join(DEFAULT_TARGETS),
                        help="comma-separated, besides direct; known: " + ", ".join(ORDER[1:]))
    parser.add_argument("--out", type=Path, default=HERE / "results")
    parser.add_argument("--levels", help="the ladder's levels, comma-separated (to explore; default 100-4000)")
    parser.add_argument("--scenarios", default="S1,S2,S4,S5,S6,L1,L2", help="which scenarios (to explore)")
    parser.add_argument("--also-at", metavar="REVISION",
                        help="also measure chunkproxy as it was at this git revision, in the same run")
    args = parser.parse_args()
    if not 1 <= args.rounds <= 5:
        parser.error("keep it bounded: 1 to 5 rounds")
    plan = QUICK if args.quick else FULL
    if args.levels:
        plan = replace(plan, levels=[int(level) for level in args.levels.split(",")])
    plan = replace(plan, scenarios=args.scenarios.split(","))
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    buildLoad()
    workdir = Path(tempfile.mkdtemp(prefix="twisted-stream-bench-"))
    upstream = Process("upstream", pinned(LOAD_CORE, [str(LOAD), "upstream"]), env=LOAD_ENV)
    targets: dict[str, Optional[Process]] = {"direct": None}
    try:
        for name in filter(None, args.targets.split(",")):
            started = STARTERS[name](upstream.url, workdir)
            if started is None:
                print(f"{name} is not installed: measuring without it", flush=True)
            else:
                targets[name] = started
        if args.also_at:
            before = chunkproxyAt(args.also_at, upstream.url, workdir)
            targets[before.name] = before
        # One small run each first, not counted: imports, pools, caches.
        for target in targets.values():
            runLoad(target, upstream, "streams", (target or upstream).url, "-c", "20", "-count", "5",
                    "-interval", "10", scenario="warm-up", round=0)
        samples: list[Sample] = []
        for round in range(1, args.rounds + 1):
            names = list(targets)
            random.shuffle(names)
            for name in names:
                print(f"round {round}: {name}", flush=True)
                for sample in scenarios(plan, targets[name], upstream, round):
                    samples.append(sample)
                    print("  " + describe(sample), flush=True)
    finally:
        for target in targets.values():
            if target is not None:
                target.stop()
        upstream.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    table = report(samples)
    print()
    print(table)
    if not args.quick:
        args.out.mkdir(parents=True, exist_ok=True)
        stamp = f"{datetime.date.today()}, {machine()}, {revision()}"
        (args.out / "latest.md").write_text(f"Measured {stamp}.\n\n{table}\n")
        (args.out / "latest.json").write_text(json.dumps([asdict(s) for s in samples], indent=1))
        plot(samples, args.out / "latest.png", stamp)
    lost = [s for s in samples if s.lost and (args.quick or s.scenario not in ("S2", "L2"))]
    if lost:
        for s in lost:
            print(f"LOST: {s.target} {s.scenario} {s.level or ''}: {s.load}", file=sys.stderr)
        sys.exit(1)


def revision() -> str:
    """
    @return: The project's git revision measured, marked when the tree had
        changes.
    """
    try:
        head = subprocess.run(["git", "-C", str(HERE.parent), "rev-parse", "--short", "HEAD"],
                              capture_output=True, text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(HERE.parent), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "no git revision"
    return f"chunkproxy at {head}" + (" with uncommitted changes" if dirty else "")


def machine() -> str:
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{model or platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"


def closed(s: Sample) -> str:
    """
    @return: How soon the upstream saw left streams close (S5), or that it
        did not see some of them at all within 2 s.
    """
    load = s.load
    if load.get("closes", 0) < load["streams"]:
        return f"{load['streams'] - load.get('closes', 0)} of {load['streams']} not within 2 s"
    return f"p99 {load['closeP99Ms']:.2f} ms"


def describe(s: Sample) -> str:
    load = s.load
    cpu = f", CPU {s.cpuSeconds / s.wallSeconds * 100:4.0f} %" if s.cpuSeconds is not None else ""
    level = f" {s.level:>5}" if s.level else ""
    if s.scenario in ("L1", "L2"):
        return (
            f"{s.scenario}{level}: {load['tokensReceived']}/{load['tokensExpected']} tokens, {load['complete']}/"
            f"{load['requests']} answers whole, token delay p50 {load['delayP50Ms']:.2f} ms p99"
            f" {load['delayP99Ms']:.2f} ms, TTFT p50 {load['ttftP50Ms']:.2f} ms p99 {load['ttftP99Ms']:.2f} ms"
            f" (reused connections: p50 {load['ttftReusedP50Ms']:.2f} ms){cpu}"
            + (f", RSS {s.rssKiB / 1024:.0f} MiB" if s.rssKiB else "")
            + (f", failed {load['failed']} ({load.get('firstError')})" if load.get("failed") else "")
        )
    return (
        f"{s.scenario}{level}: {load['chunksReceived']}/{load['chunksExpected']} chunks, p50 {load['delayP50Ms']:.2f}"
        f" ms, p99 {load['delayP99Ms']:.2f} ms, TTFB p99 {load['ttfbP99Ms']:.1f} ms{cpu}"
        + (f", upstream closed: {closed(s)}" if s.scenario == "S5" else "")
        + (f", RSS {s.rssKiB / 1024:.0f} MiB" if s.rssKiB else "")
        + (f", failed {load['failed']} ({load.get('firstError')})" if load.get("failed") else "")
    )


# The report.


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def spread(values: list[float], fmt: str) -> str:
    """
    @return: The median, with min-max when there is more than one value.
    """
    if not values:
        return "–"
    if len(values) == 1:
        return f"{values[0]:{fmt}}"
    return f"{median(values):{fmt}} [{min(values):{fmt}}–{max(values):{fmt}}]"


def capacity(samples: list[Sample]) -> int:
    """
    @return: The most concurrent streams of the ladder (S2) held with p99
        delay under L{P99_LIMIT_MS} and nothing lost, levels below it
        included; 0 if not even the first.
    """
    held = 0
    for level in sorted({s.level for s in samples if s.scenario == "S2"}):
        runs = [s for s in samples if s.scenario == "S2" and s.level == level]
        if all(not s.lost and s.load["delayP99Ms"] < P99_LIMIT_MS for s in runs):
            held = level
        else:
            break
    return held


def ordered(targets: set[str]) -> list[str]:
    """
    @return: The targets in the report's order: the known ones first.
    """
    return [t for t in ORDER if t in targets] + sorted(targets - set(ORDER))


def report(samples: list[Sample]) -> str:
    """
    @return: The markdown tables: the summary per target, then the ladder.
    """
    targets = ordered({s.target for s in samples})
    levels = sorted({s.level for s in samples if s.scenario == "S2"})

    def of(target: str, scenario: str, level: int = 0) -> list[Sample]:
        return [s for s in samples if s.target == target and s.scenario == scenario and s.level == level]

    if not any(s.scenario.startswith("S") for s in samples):
        # Only the LLM scenario ran.
        return "\n".join([*llmReport(samples), *variantReport(samples)])
    direct = {s.round: s for s in samples if s.target == "direct" and s.scenario == "S1"}
    mid = 1000 if 1000 in levels or not levels else levels[-1]
    lines = [
        f"| target | capacity (streams) | p99 at {mid:,} | CPU at {mid:,} | CPU µs per chunk at {mid:,}"
        " | CPU µs per new short stream (S6) | S6 short streams/s | S6 TTFB p99 | S1 added delay p50 / p99"
        " | S4 RSS growth | S5 upstream closed after (p99) |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for t in targets:
        ladder = [s for s in samples if s.target == t and s.scenario == "S2"]
        atMid = of(t, "S2", mid)
        s1 = of(t, "S1")
        s4 = of(t, "S4")
        s5 = of(t, "S5")
        s6 = of(t, "S6")
        cpu = [s.cpuSeconds / s.wallSeconds * 100 for s in atMid if s.cpuSeconds is not None]
        perChunk = [s.cpuSeconds * 1e6 / max(1, s.load["chunksReceived"]) for s in atMid if s.cpuSeconds is not None]
        perStream = [s.cpuSeconds * 1e6 / max(1, s.load["streams"]) for s in s6 if s.cpuSeconds is not None]
        rate = [s.load["streams"] / s.wallSeconds for s in s6]
        added = [
            (s.load["delayP50Ms"] - direct[s.round].load["delayP50Ms"], s.load["delayP99Ms"] - direct[s.round].load[
                "delayP99Ms"]) for s in s1 if s.round in direct
        ]
        growth = [(s.rssKiB - s.rssBeforeKiB) / 1024 for s in s4 if s.rssKiB is not None and s.rssBeforeKiB]
        lines.append(
            f"| **{t}** | {capacity(ladder):,} | {spread([s.load['delayP99Ms'] for s in atMid], '.1f')} ms"
            f" | {spread(cpu, '.0f')} % | {spread(perChunk, '.0f')} | {spread(perStream, '.0f')}"
            f" | {spread(rate, '.0f')} | {spread([s.load['ttfbP99Ms'] for s in s6], '.1f')} ms"
            f" | {spread([a * 1000 for a, _ in added], '.0f')} / {spread([b * 1000 for _, b in added], '.0f')} µs"
            f" | {spread(growth, '.1f')} MiB | {', '.join(closed(s) for s in s5)} |"
            if t != "direct" else
            f"| direct (the load side alone) | {capacity(ladder):,} | {spread([s.load['delayP99Ms'] for s in atMid], '.1f')}"
            f" ms | – | – | – | {spread(rate, '.0f')} | {spread([s.load['ttfbP99Ms'] for s in s6], '.1f')} ms | – | – |"
            f" {', '.join(closed(s) for s in s5)} |"
        )
    lines += ["", *llmReport(samples), *variantReport(samples)]
    lines += ["", "The ladder (S2): delay p50 / p99, TTFB p99, chunks delivered of sent, proxy CPU, RSS.", "",
              "| target | streams | delay p50 | delay p99 | TTFB p99 | delivered | CPU | RSS |",
              "|---|---|---|---|---|---|---|---|"]
    for t in targets:
        for level in levels:
            runs = of(t, "S2", level)
            if not runs:
                continue
            cpu = [s.cpuSeconds / s.wallSeconds * 100 for s in runs if s.cpuSeconds is not None]
            rss = [s.rssKiB / 1024 for s in runs if s.rssKiB is not None]
            lines.append(
                f"| {t} | {level:,} | {spread([s.load['delayP50Ms'] for s in runs], '.2f')} ms"
                f" | {spread([s.load['delayP99Ms'] for s in runs], '.1f')} ms"
                f" | {spread([s.load['ttfbP99Ms'] for s in runs], '.1f')} ms"
                f" | {sum(s.load['chunksReceived'] for s in runs):,} / {sum(s.load['chunksExpected'] for s in runs):,}"
                + (f" ({sum(s.load['failed'] for s in runs)} streams failed)" if any(s.load["failed"] for s in runs)
                   else "")
                + f" | {spread(cpu, '.0f') + ' %' if cpu else '–'} | {spread(rss, '.0f') + ' MiB' if rss else '–'} |"
            )
    return "\n".join(lines)


VARIANTS = {
    "chunkproxy-pool3": "A pool of three against one upstream",
    "chunkproxy-resumable": "Resumable routes (--resumable, the memory store) against plain ones",
    "chunkproxy-resumable-redis": "Resumable routes in Redis (--resume-store redis://) against plain ones",
}
"""The variants of chunkproxy measured against it, round by round."""


def variantReport(samples: list[Sample]) -> list[str]:
    """
    @return: What each variant of chunkproxy (L{VARIANTS}) costs, where it
        ran: CPU per forwarded chunk (S2), per new short stream (S6) and per
        LLM answer (L2), as a multiple of plain chunkproxy's in the same
        round; and the first token (L1) added by failing over once from a
        member that refuses.
    """
    def by(target: str, scenario: str) -> dict[tuple[int, int], Sample]:
        return {(s.round, s.level): s for s in samples if s.target == target and s.scenario == scenario}

    scenarios = (("S2", "chunksReceived", "chunk"), ("S6", "streams", "new stream"), ("L2", "requests", "answer"))
    single = {scenario: by("chunkproxy", scenario) for scenario, _, _ in scenarios}
    lines: list[str] = []
    for target, title in VARIANTS.items():
        variant = {scenario: by(target, scenario) for scenario, _, _ in scenarios}
        if not any(variant.values()):
            continue
        lines += ["", f"{title}, in the same rounds (CPU, and as a multiple of plain chunkproxy's):", "",
                  "| CPU per | plain | variant | variant / plain |", "|---|---|---|---|"]
        for scenario, unit, what in scenarios:
            for level in sorted({level for _, level in variant[scenario]}):
                per = [
                    (cpu * 1e6 / max(1, a.load[unit]), other * 1e6 / max(1, b.load[unit]))
                    for key, b in variant[scenario].items()
                    if key[1] == level and key in single[scenario]
                    for a in [single[scenario][key]]
                    if (cpu := a.cpuSeconds) is not None and (other := b.cpuSeconds) is not None
                ]
                if not per:
                    continue
                lines.append(
                    f"| {what} ({scenario}{f' {level:,}' if level else ''}) | {spread([a for a, _ in per], '.0f')} µs"
                    f" | {spread([b for _, b in per], '.0f')} µs | {spread([b / a for a, b in per], '.2f')}× |"
                )
                besides = [
                    b.companionCpuSeconds * 1e6 / max(1, b.load[unit])
                    for key, b in variant[scenario].items()
                    if key[1] == level and b.companionCpuSeconds is not None
                ]
                if besides:
                    lines.append(
                        f"| {what} ({scenario}{f' {level:,}' if level else ''}), Redis's own | |"
                        f" {spread(besides, '.0f')} µs | |"
                    )
    failover = by("chunkproxy-failover", "L1")
    single["L1"] = by("chunkproxy", "L1")
    if failover:
        firsts = [(single["L1"][key].load, s.load) for key, s in failover.items() if key in single["L1"]]
        lines += ["", "Failover: every request's first member refuses the connection (L1, reused client connections):",
                  "", "| | first token p50 | first token p99 |", "|---|---|---|",
                  f"| one upstream | {spread([a['ttftReusedP50Ms'] for a, _ in firsts], '.2f')} ms"
                  f" | {spread([a['ttftReusedP99Ms'] for a, _ in firsts], '.2f')} ms |",
                  f"| failing over once | {spread([b['ttftReusedP50Ms'] for _, b in firsts], '.2f')} ms"
                  f" | {spread([b['ttftReusedP99Ms'] for _, b in firsts], '.2f')} ms |",
                  f"| added | {spread([b['ttftReusedP50Ms'] - a['ttftReusedP50Ms'] for a, b in firsts], '.2f')} ms"
                  f" | {spread([b['ttftReusedP99Ms'] - a['ttftReusedP99Ms'] for a, b in firsts], '.2f')} ms |"]
    return lines


def llmReport(samples: list[Sample]) -> list[str]:
    """
    @return: The LLM scenario's tables (none when it did not run): what
        each proxy adds to the time to first token and to each token (L1,
        against direct in the same round), and the ladder of clients (L2),
        with each target's CPU as a multiple of nginx's.
    """
    targets = ordered({s.target for s in samples if s.scenario in ("L1", "L2")})
    if not targets:
        return []
    direct = {s.round: s.load for s in samples if s.target == "direct" and s.scenario == "L1"}
    lines = [
        "The LLM scenario: OpenAI chat completion streams, a POST with a JSON body on kept-alive connections.",
        "",
        "| target | L1 first token, reused connection: p50 / p99 | added over direct: p50 / p99"
        " | L1 token delay added: p50 / p99 |",
        "|---|---|---|---|",
    ]
    for t in targets:
        firsts = [s for s in samples if s.target == t and s.scenario == "L1"]
        if not firsts:
            continue
        paired = [(s.load, direct[s.round]) for s in firsts if s.round in direct]
        lines.append(
            f"| {t} | {spread([s.load['ttftReusedP50Ms'] for s in firsts], '.2f')}"
            f" / {spread([s.load['ttftReusedP99Ms'] for s in firsts], '.2f')} ms"
            + (" | – | – |" if t == "direct" else
               f" | {spread([a['ttftReusedP50Ms'] - d['ttftReusedP50Ms'] for a, d in paired], '.2f')}"
               f" / {spread([a['ttftReusedP99Ms'] - d['ttftReusedP99Ms'] for a, d in paired], '.2f')} ms"
               f" | {spread([a['delayP50Ms'] - d['delayP50Ms'] for a, d in paired], '.2f')}"
               f" / {spread([a['delayP99Ms'] - d['delayP99Ms'] for a, d in paired], '.2f')} ms |")
        )
    nginxCPU = {
        (s.round, s.level): s.cpuSeconds / s.wallSeconds for s in samples
        if s.target == "nginx" and s.scenario == "L2" and s.cpuSeconds is not None
    }
    lines += [
        "",
        "| target | clients | CPU | CPU / nginx's | token delay p99 | first token p99 | tokens delivered | answers whole |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for t in targets:
        for level in sorted({s.level for s in samples if s.scenario == "L2"}):
            runs = [s for s in samples if s.target == t and s.scenario == "L2" and s.level == level]
            if not runs:
                continue
            cpu = [s.cpuSeconds / s.wallSeconds * 100 for s in runs if s.cpuSeconds is not None]
            ratio = [s.cpuSeconds / s.wallSeconds / nginxCPU[(s.round, level)] for s in runs
                     if s.cpuSeconds is not None and nginxCPU.get((s.round, level))]
            lines.append(
                f"| {t} | {level:,} | {spread(cpu, '.0f') + ' %' if cpu else '–'}"
                f" | {spread(ratio, '.2f') + '×' if ratio else '–'}"
                f" | {spread([s.load['delayP99Ms'] for s in runs], '.1f')} ms"
                f" | {spread([s.load['ttftP99Ms'] for s in runs], '.1f')} ms"
                f" | {sum(s.load['tokensReceived'] for s in runs):,} / {sum(s.load['tokensExpected'] for s in runs):,}"
                f" | {sum(s.load['complete'] for s in runs):,} / {sum(s.load['requests'] for s in runs):,} |"
            )
    return lines


def plot(samples: list[Sample], path: Path, stamp: str) -> None:
    """
    Draw p99 delay against concurrent streams, one line per target.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(7, 4.2), dpi=110)
    for t in ordered({s.target for s in samples}):
        ladder = [s for s in samples if s.target == t and s.scenario == "S2"]
        if not ladder:
            continue
        levels = sorted({s.level for s in ladder})
        p99 = [median([s.load["delayP99Ms"] for s in ladder if s.level == level]) for level in levels]
        axes.plot(levels, p99, marker="o", label=t, linewidth=2.5 if t == "chunkproxy" else 1.5)
    axes.axhline(P99_LIMIT_MS, color="grey", linestyle="--", linewidth=1)
    axes.text(110, P99_LIMIT_MS * 1.1, f"{P99_LIMIT_MS:g} ms: the capacity's limit", color="grey", fontsize=8)
    axes.set_xscale("log")
    axes.set_yscale("log")
    axes.set_xlabel("concurrent streams (10 chunks/s each), proxy on one core")
    axes.set_ylabel("p99 chunk delay (ms)")
    axes.set_title(f"Streaming proxies under load ({stamp.split(',')[0]})", fontsize=10)
    axes.grid(True, which="both", alpha=0.3)
    axes.legend()
    figure.tight_layout()
    figure.savefig(path)


if __name__ == "__main__":
    main()
