"""
The benchmark: what forwarding one chunk costs chunkproxy, against peers
measured in the same run.

One chunkgen streams NDJSON chunks, a fixed interval apart so that each
reaches the proxy on its own, through each target in turn:

  - C{chunkproxy}: this project;
  - C{reverseproxy}: Twisted's own C{twisted.web.proxy.ReverseProxyResource},
    the baseline the ratios are taken against;
  - C{nginx}, with C{proxy_buffering off}, where nginx is installed;
  - C{direct}: no proxy at all, for the latency floor.

For each target it measures the CPU time the proxy process spent (all its
threads, from C{/proc/PID/task/*/schedstat}, in nanoseconds) per forwarded
chunk, and each chunk's end-to-end delay (the client's receive time minus the
send time in the chunk). The targets run in a new random order every round;
the report gives medians with the spread (min to max) over rounds, and each
target's CPU as a ratio to C{reverseproxy} of the same round.

Everything listens on 127.0.0.1, and every stream is bounded in count.

    bench/run [--rounds 5] [--chunks 3000] [--interval 0.001] [--size 100] [--format ndjson|sse]
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import random
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Optional

from twisted_stream.watch import sendTime

HERE = Path(__file__).resolve().parent
BIN = Path(sys.executable).parent
_LISTENING = re.compile(rb"listening on http://127\.0\.0\.1:(\d+)/")
_CHUNK = re.compile(rb'\{"seq":(\d+),"sent":([0-9.]+)')
_STAMP = re.compile(rb"data: Chunk \d+ \[[0-9:.]{12}\]")


@dataclass
class Sample:
    target: str
    round: int
    chunks: int
    cpuMicrosPerChunk: Optional[float]
    delayP50Ms: float
    delayP99Ms: float


class Server:
    """
    A server process of the benchmark, and the processes whose CPU it costs.
    """

    def __init__(self, name: str, argv: list[str], port: Optional[int] = None) -> None:
        self.name = name
        self.process = subprocess.Popen(
            argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=dict(os.environ, PYTHONUNBUFFERED="1")
        )
        self.port = port if port is not None else self._announcedPort()

    def _announcedPort(self) -> int:
        assert self.process.stdout is not None
        seen = b""
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            line = self.process.stdout.readline()
            if not line:
                break
            seen += line
            found = _LISTENING.search(line)
            if found:
                return int(found.group(1))
        raise RuntimeError(f"{self.name} did not start:\n{seen.decode(errors='replace')}")

    def pids(self) -> list[int]:
        """
        @return: The process and its children (nginx's workers).
        """
        children = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children")
        found = [self.process.pid]
        if children.exists():
            found += [int(pid) for pid in children.read_text().split()]
        return found

    def cpuNanoseconds(self) -> int:
        """
        @return: The CPU time all its processes' threads have had.
        """
        total = 0
        for pid in self.pids():
            for stat in glob.glob(f"/proc/{pid}/task/*/schedstat"):
                try:
                    total += int(Path(stat).read_text().split()[0])
                except (OSError, IndexError, ValueError):
                    pass
        return total

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()


def twistd(name: str, *options: str) -> Server:
    return Server(
        name, [str(BIN / "twistd"), "-n", "--pidfile=", name, "--listen", "tcp:0:interface=127.0.0.1", *options]
    )


def freePort() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def nginx(upstreamPort: int, workdir: Path) -> Optional[Server]:
    command = shutil.which("nginx") or ("/usr/sbin/nginx" if os.path.exists("/usr/sbin/nginx") else None)
    if command is None:
        return None
    port = freePort()
    (workdir / "logs").mkdir(parents=True, exist_ok=True)
    conf = workdir / "nginx.conf"
    conf.write_text(
        f"""
worker_processes 1;
error_log {workdir}/logs/error.log;
pid {workdir}/nginx.pid;
events {{ worker_connections 64; }}
http {{
    access_log off;
    client_body_temp_path {workdir}/body;
    proxy_temp_path {workdir}/proxy;
    fastcgi_temp_path {workdir}/fastcgi;
    uwsgi_temp_path {workdir}/uwsgi;
    scgi_temp_path {workdir}/scgi;
    server {{
        listen 127.0.0.1:{port};
        location /stream {{
            proxy_pass http://127.0.0.1:{upstreamPort}/generate;
            proxy_http_version 1.1;
            proxy_buffering off;
        }}
    }}
}}
"""
    )
    server = Server("nginx", [command, "-p", str(workdir), "-c", str(conf), "-g", "daemon off;"], port=port)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return server
        except OSError:
            time.sleep(0.05)
    server.stop()
    raise RuntimeError("nginx did not start")


def reverseProxy(upstreamPort: int) -> Server:
    return Server("reverseproxy", [sys.executable, str(HERE / "reverseproxy.py"), str(upstreamPort)])


def stream(port: int, path: str, expected: int) -> list[float]:
    """
    Read one stream with a plain blocking socket, and time each chunk.

    @return: Each chunk's end-to-end delay in seconds: from the NDJSON
        C{"sent"} field, or for SSE from the C{[HH:MM:SS.mmm]} stamp (to the
        millisecond) as chunkwatch reads it.
    """
    delays: list[float] = []
    pending = b""
    sse = "format=sse" in path
    end = b"\n\n" if sse else b"}\n"
    with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n".encode())
        while True:
            data = s.recv(65536)
            now = time.time()
            if not data:
                break
            pending += data
            if sse:
                for found in _STAMP.finditer(pending):
                    sent = sendTime(found.group(0), now)
                    assert sent is not None
                    delays.append(now - sent)
            else:
                for found in _CHUNK.finditer(pending):
                    delays.append(now - float(found.group(2)))
            last = pending.rfind(end)
            if last >= 0:
                pending = pending[last + len(end) :]
            if len(delays) >= expected and pending.endswith(b"0\r\n\r\n"):
                break
    if len(delays) != expected:
        raise RuntimeError(f"got {len(delays)} chunks of {expected}")
    return delays


def quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, min(len(ordered) - 1, round(q * (len(ordered) - 1))))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--chunks", type=int, default=3000)
    parser.add_argument("--interval", type=float, default=0.001)
    parser.add_argument("--size", type=int, default=100)
    parser.add_argument(
        "--format",
        choices=("ndjson", "sse"),
        default="ndjson",
        help="ndjson (the plain path), or sse (an event stream: chunkproxy tracks event ends for heartbeats)",
    )
    parser.add_argument("--json", type=Path, default=HERE / "results" / "latest.json")
    args = parser.parse_args()
    if not (1 <= args.rounds <= 50 and 1 <= args.chunks <= 100_000):
        parser.error("keep it bounded: 1-50 rounds of 1-100000 chunks")

    workdir = Path(tempfile.mkdtemp(prefix="twisted-stream-bench-"))
    generator = twistd("chunkgen")
    servers: dict[str, Optional[Server]] = {}
    try:
        servers["chunkproxy"] = twistd(
            "chunkproxy", "--upstream", f"http://127.0.0.1:{generator.port}/generate"
        )
        servers["reverseproxy"] = reverseProxy(generator.port)
        servers["nginx"] = nginx(generator.port, workdir)
        if servers["nginx"] is None:
            print("nginx is not installed: measuring without it (apt-get install nginx-light)")
            del servers["nginx"]
        query = f"count={args.chunks}&interval={args.interval}&size={args.size}&format={args.format}"
        path = f"/stream?{query}"
        direct = f"/generate?{query}"
        targets = [*servers, "direct"]
        # One stream each first, not counted: imports, connection pools, caches.
        for name in servers:
            stream(servers[name].port, "/stream?count=50&interval=0&format=ndjson", 50)  # type: ignore[union-attr]
        samples: list[Sample] = []
        for round in range(1, args.rounds + 1):
            random.shuffle(targets)
            for name in targets:
                server = servers.get(name)
                before = server.cpuNanoseconds() if server else 0
                if server is None:
                    delays = stream(generator.port, direct, args.chunks)
                else:
                    delays = stream(server.port, path, args.chunks)
                cpu = (server.cpuNanoseconds() - before) / args.chunks / 1000 if server else None
                samples.append(
                    Sample(name, round, args.chunks, cpu, quantile(delays, 0.5) * 1000, quantile(delays, 0.99) * 1000)
                )
                print(
                    f"round {round} {name:>12}: "
                    + (f"{cpu:6.1f} µs CPU/chunk, " if cpu is not None else " " * 21)
                    + f"delay p50 {samples[-1].delayP50Ms:5.2f} ms, p99 {samples[-1].delayP99Ms:5.2f} ms",
                    flush=True,
                )
        report(samples, args)
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()},
                                         "samples": [asdict(s) for s in samples]}, indent=1))
    finally:
        for server in servers.values():
            if server is not None:
                server.stop()
        generator.stop()
        shutil.rmtree(workdir, ignore_errors=True)


def report(samples: list[Sample], args: argparse.Namespace) -> None:
    def spread(values: list[float], fmt: str) -> str:
        return f"{statistics.median(values):{fmt}} [{min(values):{fmt}}-{max(values):{fmt}}]"

    baseline = {
        s.round: s.cpuMicrosPerChunk
        for s in samples
        if s.target == "reverseproxy" and s.cpuMicrosPerChunk is not None
    }
    print()
    print(
        f"{args.rounds} rounds of {args.chunks} {args.format} chunks of {args.size} B, {args.interval * 1000:g} ms apart;"
        " median [min-max] over rounds"
    )
    print(f"{'target':>12}  {'CPU µs/chunk':>22}  {'÷ reverseproxy':>20}  {'delay p50 ms':>20}  {'delay p99 ms':>20}")
    for name in ("chunkproxy", "reverseproxy", "nginx", "direct"):
        mine = [s for s in samples if s.target == name]
        if not mine:
            continue
        cpu = [s.cpuMicrosPerChunk for s in mine if s.cpuMicrosPerChunk is not None]
        ratios = [s.cpuMicrosPerChunk / baseline[s.round] for s in mine if s.cpuMicrosPerChunk and baseline.get(s.round)]
        print(
            f"{name:>12}  {spread(cpu, '6.1f') if cpu else '-':>22}  {spread(ratios, '5.2f') if ratios else '-':>20}"
            f"  {spread([s.delayP50Ms for s in mine], '5.2f'):>20}  {spread([s.delayP99Ms for s in mine], '5.2f'):>20}"
        )


if __name__ == "__main__":
    main()
