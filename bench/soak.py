"""Benchmark: a soak run of `upwatch serve`: memory, counters and false failures over an hour of reloads.

Starts local targets on 127.0.0.1 in two processes of their own (honest and hostile, so that a
hostile target's work never delays an honest answer), then a real `upwatch serve` from this tree
(`--web.enable-lifecycle`, `--data-dir` in the work folder, `workers: auto`) with --endpoints
endpoints on them:

- healthy: `200 ok` at once (every 15 s; 5 s timeout);
- slow: `200 ok` after --slow-fraction of their 3 s timeout (every 15 s);
- flapping: `503` for 30 s then `200` for 30 s on a known wall-clock schedule, half of them in
  the opposite phase (every 5 s; 2 s timeout; down after 3 failures, up after 1 success);
- hostile, 8 kinds in turn (every 15 s; 5 s timeout): a gzip bomb (1 GiB of zeros in 1 MB), a
  gzip of that gzip (`Content-Encoding: gzip, gzip`, a few KB), an endless body, a server that
  accepts and never answers, garbage bytes, an HTTP/0.9 reply, 100 KiB of headers, a redirect
  to itself.

Every --reload-every seconds it rewrites the config, alternating two variants (a few healthy
endpoints removed and others added; some endpoints' interval changed), and POSTs /-/reload. Every
--scrape-every seconds it scrapes /metrics and samples the RSS of the agent (main process and
its probe worker processes; the short-lived config-loading child is left out). It checks:

- every counter and histogram series (`upwatch_probes_total`, `upwatch_probe_failures_total`,
  `upwatch_endpoint_incidents_total`, `upwatch_endpoint_downtime_seconds_total`,
  `upwatch_probe_ticks_skipped_total`, `upwatch_probe_duration_seconds` buckets, count and sum,
  ...) never decreases between two scrapes in which it is present;
- false failures: no probe of a healthy or slow endpoint fails (their
  `upwatch_probe_failures_total` never rises);
- the flapping endpoints' `upwatch_endpoint_state` matches their schedule where it is settled
  (down from 20 s into a down phase, up from 10 s into an up phase), in at least --min-flap-match
  percent of the checks;
- RSS growth: the median RSS of the last minute against that of the minute after --warmup (the
  first 10 minutes, by default: caches, the status page's history and the allocator settle
  there); not checked in a run too short to have both minutes after the warm-up;
- every reload answers 200, and the agent stays alive and stops with exit code 0.

It prints a line a minute, then the figures and a verdict, and exits 1 if a check failed.

    .venv/bin/python bench/soak.py                                   # one hour, 500 endpoints
    .venv/bin/python bench/soak.py --duration 120 --endpoints 100 --reload-every 20 --warmup 30 --max-rss-growth 25
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import multiprocessing
import os
import random
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import zlib
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path

import psutil

REPO = Path(__file__).resolve().parent.parent
HOSTILE_KINDS = (
    "gzip-bomb",
    "gzip-of-gzip",
    "endless-body",
    "silent",
    "garbage",
    "http09",
    "huge-headers",
    "redirect-loop",
)
FLAP_HALF_PERIOD = 30.0
FLAP_SETTLE = 20.0  # seconds after the start before flapping states are checked
SLOW_TIMEOUT = 3.0
SCRAPE_TIMEOUT = 30.0

_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{.*\})? (\S+)$")
_ENDPOINT = re.compile(r'endpoint="([^"]*)"')
_REASON = re.compile(r'reason="([^"]*)"')
_STATE = re.compile(r'state="([^"]*)"')


def arguments(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=3600.0, help="seconds to run (default 3600)")
    parser.add_argument("--endpoints", type=int, default=500)
    parser.add_argument("--reload-every", type=float, default=60.0, help="seconds between two reloads")
    parser.add_argument("--scrape-every", type=float, default=5.0, help="seconds between two scrapes")
    parser.add_argument("--warmup", type=float, default=600.0, help="seconds before the RSS baseline")
    parser.add_argument("--max-rss-growth", type=float, default=10.0, help="percent allowed after the warm-up")
    parser.add_argument("--min-flap-match", type=float, default=90.0, help="percent of settled flap checks")
    parser.add_argument(
        "--slow-fraction", type=float, default=0.8, help="slow targets answer after this fraction of their timeout"
    )
    parser.add_argument("--workers", default="auto", help="the config's `workers` (default auto)")
    parser.add_argument("--workdir", type=Path, help="keep the config, data dir and agent log here (default: temp)")
    return parser.parse_args(argv)


# ---------------------------------------------------------------------------
# Targets


def gzip_bytes(chunks: int, chunk: bytes) -> bytes:
    """`chunk` repeated `chunks` times, gzipped without ever holding it whole."""
    packer = zlib.compressobj(9, zlib.DEFLATED, 31)
    out = [packer.compress(chunk) for _ in range(chunks)]
    out.append(packer.flush())
    return b"".join(out)


def flap_is_down(shift: int, now: float) -> bool:
    """Whether a flapping target of phase `shift` (0 or 1) answers 503 at wall-clock time `now`."""
    return int(now // FLAP_HALF_PERIOD + shift) % 2 == 0


def flap_position(shift: int, now: float) -> tuple[bool, float]:
    """(down?, seconds since the current phase began) of a flapping target."""
    return flap_is_down(shift, now), now % FLAP_HALF_PERIOD


def _response(status: str, body: bytes, *headers: str) -> bytes:
    head = [f"HTTP/1.1 {status}", f"Content-Length: {len(body)}", "Connection: close", *headers]
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


async def _read_head(reader: asyncio.StreamReader) -> str:
    """The request line of a request (its headers read and dropped)."""
    head = await reader.readuntil(b"\r\n\r\n")
    return head.split(b"\r\n", 1)[0].decode("latin-1")


async def _honest(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """/h/N: 200 at once; /s/MS/N: 200 after MS ms; /f/SHIFT/N: 503 or 200 by the flap schedule."""
    with contextlib.suppress(OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
        parts = (await _read_head(reader)).split(" ")[1].split("/")
        if parts[1] == "s":
            await asyncio.sleep(int(parts[2]) / 1000)
        if parts[1] == "f" and flap_is_down(int(parts[2]), time.time()):
            writer.write(_response("503 Service Unavailable", b"down\n"))
        else:
            writer.write(_response("200 OK", b"ok\n", "Content-Type: text/plain"))
        await writer.drain()
    writer.close()


class _Hostile:
    """The hostile targets' answers, built once."""

    def __init__(self) -> None:
        self.bomb = gzip_bytes(1024, bytes(1 << 20))  # 1 GiB of zeros, about 1 MB
        self.bomb_of_bomb = gzip_bytes(1, self.bomb)
        pad = "".join(f"X-Pad-{i}: {'a' * 40}\r\n" for i in range(2000))
        self.huge_headers = f"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n{pad}Connection: close\r\n\r\nok\n".encode()
        self.garbage = random.Random(12).randbytes(512)

    async def serve(self, kind: str, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Answer one connection the way `kind` does."""
        with contextlib.suppress(OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            if kind == "silent":
                while await reader.read(65536):
                    pass
                writer.close()
                return
            path = (await _read_head(reader)).split(" ")[1]
            if kind == "gzip-bomb":
                writer.write(_response("200 OK", self.bomb, "Content-Encoding: gzip"))
            elif kind == "gzip-of-gzip":
                writer.write(_response("200 OK", self.bomb_of_bomb, "Content-Encoding: gzip, gzip"))
            elif kind == "endless-body":
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nConnection: close\r\n\r\n")
                chunk = b"x" * 65536
                while not writer.is_closing():
                    writer.write(chunk)
                    await writer.drain()
            elif kind == "garbage":
                writer.write(self.garbage)
            elif kind == "http09":
                writer.write(b"<html><body>hello from 1991</body></html>\n")
            elif kind == "huge-headers":
                writer.write(self.huge_headers)
            elif kind == "redirect-loop":
                writer.write(_response("302 Found", b"", f"Location: {path}"))
            await writer.drain()
        writer.close()


async def _serve_targets(hostile: bool, conn: Connection) -> None:
    ports: dict[str, int] = {}
    servers = []
    if hostile:
        answers = _Hostile()
        for kind in HOSTILE_KINDS:

            async def handle(r: asyncio.StreamReader, w: asyncio.StreamWriter, kind: str = kind) -> None:
                await answers.serve(kind, r, w)

            servers.append(await asyncio.start_server(handle, "127.0.0.1", 0, backlog=1024))
            ports[kind] = servers[-1].sockets[0].getsockname()[1]
    else:
        servers.append(await asyncio.start_server(_honest, "127.0.0.1", 0, backlog=1024))
        ports["honest"] = servers[-1].sockets[0].getsockname()[1]
    conn.send(ports)
    await asyncio.Event().wait()


def serve_targets(hostile: bool, conn: Connection) -> None:
    """A target process's entry point: serve until killed, after sending {kind: port} down `conn`."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        import uvloop

        uvloop.run(_serve_targets(hostile, conn))
    except ImportError:
        asyncio.run(_serve_targets(hostile, conn))


def start_targets(hostile: bool) -> tuple[multiprocessing.process.BaseProcess, dict[str, int]]:
    """A target process and its ports."""
    context = multiprocessing.get_context("spawn")
    ours, theirs = context.Pipe()
    proc = context.Process(target=serve_targets, args=(hostile, theirs), daemon=True)
    proc.start()
    if not ours.poll(120):
        raise SystemExit("the target process did not start")
    return proc, ours.recv()


# ---------------------------------------------------------------------------
# The config


@dataclass(frozen=True)
class Plan:
    """Which endpoints the run has, by kind."""

    healthy: int
    slow: int
    flapping: int
    hostile: int
    extra: int  # healthy endpoints only in one variant or the other

    @staticmethod
    def of(total: int) -> Plan:
        """A plan for `total` endpoints (about 70 % healthy, 10 % slow, flapping and hostile each)."""
        hostile = max(len(HOSTILE_KINDS), total // 10)
        flapping = max(2, total // 10)
        slow = max(1, total // 10)
        extra = max(1, total // 20)
        healthy = total - hostile - flapping - slow - extra
        if healthy < 10:
            raise SystemExit(f"--endpoints {total} is too few: at least {total - healthy + 10}")
        return Plan(healthy, slow, flapping, hostile, extra)


def endpoint_kind(name: str) -> str:
    """healthy, slow, flapping, or hostile-KIND, from an endpoint's name."""
    if name.startswith(("healthy-", "extra-")):
        return "healthy"
    if name.startswith("slow-"):
        return "slow"
    if name.startswith("flap-"):
        return "flapping"
    return name.rsplit("-", 1)[0]


def config_text(plan: Plan, variant: int, ports: dict[str, int], args: argparse.Namespace) -> str:
    """The config of variant 0 or 1; variant 1 swaps the extra endpoints and probes 10 % of the healthy every 10 s."""
    honest = f"http://127.0.0.1:{ports['honest']}"
    delay_ms = round(SLOW_TIMEOUT * args.slow_fraction * 1000)
    lines = [
        "# bench/soak.py, variant " + str(variant),
        f"workers: {args.workers}",
        "defaults: {interval: 15s, timeout: 5s, failure_threshold: 3, success_threshold: 1}",
        "endpoints:",
    ]
    for i in range(plan.healthy):
        interval = ", interval: 10s" if variant == 1 and i % 10 == 0 else ""
        lines.append(f"  - {{name: healthy-{i:04d}, url: '{honest}/h/{i}'{interval}}}")
    for i in range(plan.extra):
        lines.append(f"  - {{name: extra-{'ab'[variant]}-{i:04d}, url: '{honest}/h/{i}'}}")
    for i in range(plan.slow):
        lines.append(f"  - {{name: slow-{i:04d}, url: '{honest}/s/{delay_ms}/{i}', timeout: {SLOW_TIMEOUT:g}s}}")
    for i in range(plan.flapping):
        lines.append(f"  - {{name: flap-{i % 2}-{i:04d}, url: '{honest}/f/{i % 2}/{i}', interval: 5s, timeout: 2s}}")
    for i in range(plan.hostile):
        kind = HOSTILE_KINDS[i % len(HOSTILE_KINDS)]
        lines.append(f"  - {{name: {kind}-{i:04d}, url: 'http://127.0.0.1:{ports[kind]}/{kind}/{i}'}}")
    return "\n".join(lines) + "\n"


def write_atomically(path: Path, text: str) -> None:
    """Replace `path` with `text`, so the agent never reads half a file."""
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text)
    tmp.replace(path)


# ---------------------------------------------------------------------------
# Watching the agent


def agent_rss(pid: int) -> tuple[float, float, int]:
    """(main process RSS, workers' RSS summed, number of workers), in MB; the config-loading child left out."""
    main, workers, count = 0, 0, 0
    with contextlib.suppress(psutil.Error):
        root = psutil.Process(pid)
        main = root.memory_info().rss
        for child in root.children(recursive=True):
            with contextlib.suppress(psutil.Error):
                if "exporter.config.isolated" in " ".join(child.cmdline()):
                    continue
                workers += child.memory_info().rss
                count += 1
    return main / 1e6, workers / 1e6, count


def agent_cpu(pid: int) -> float:
    """utime+stime seconds of the agent and its children so far (reaped ones included)."""
    with contextlib.suppress(psutil.Error):
        root = psutil.Process(pid)
        total = sum(root.cpu_times()[:4])
        for child in root.children(recursive=True):
            with contextlib.suppress(psutil.Error):
                total += sum(child.cpu_times()[:2])
        return total
    return 0.0


def parse_metrics(text: str) -> tuple[dict[str, float], dict[str, str]]:
    """(every counter and histogram series: value, flapping endpoints: their state) from /metrics."""
    types: dict[str, str] = {}
    monotonic: dict[str, float] = {}
    states: dict[str, str] = {}
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ", 3)
            types[name] = kind
            continue
        if not line or line[0] == "#":
            continue
        match = _SAMPLE.match(line)
        if match is None:
            continue
        name, labels, value = match.groups()
        if name.endswith("_created"):
            continue
        if name == "upwatch_endpoint_state" and float(value) == 1 and 'endpoint="flap-' in labels:
            states[_ENDPOINT.search(labels).group(1)] = _STATE.search(labels).group(1)  # type: ignore[union-attr]
            continue
        family = name.removesuffix("_total").removesuffix("_bucket").removesuffix("_count").removesuffix("_sum")
        kind = types.get(name) or types.get(family) or types.get(family + "_total")
        if kind in ("counter", "histogram"):
            monotonic[name + (labels or "")] = float(value)
    return monotonic, states


@dataclass
class Watch:
    """What the run has seen so far."""

    started: float  # monotonic
    last: dict[str, float] = field(default_factory=dict)
    decreases: list[str] = field(default_factory=list)
    failures: Counter[tuple[str, str]] = field(default_factory=Counter)  # (kind, reason): increase
    probes: Counter[str] = field(default_factory=Counter)  # kind: increase of upwatch_probes_total
    skipped: Counter[str] = field(default_factory=Counter)  # kind: increase
    incidents: Counter[str] = field(default_factory=Counter)
    flap_checks: int = 0
    flap_matches: int = 0
    flap_mismatches: list[str] = field(default_factory=list)
    rss: list[tuple[float, float, float, int]] = field(default_factory=list)  # (elapsed, main, workers, n)
    scrape_seconds: list[float] = field(default_factory=list)
    scrapes_failed: int = 0
    reloads_ok: int = 0
    reloads_failed: list[str] = field(default_factory=list)

    def take(self, now_wall: float, series: dict[str, float], states: dict[str, str]) -> None:
        """Fold one scrape in."""
        for key, value in series.items():
            before = self.last.get(key)
            if before is not None and value < before:
                self.decreases.append(f"{self.elapsed():.0f} s: {key} {before:g} -> {value:g}")
            increase = value - (before or 0.0) if before is None or value >= before else 0.0
            if increase <= 0:
                continue
            name = key.split("{", 1)[0]
            endpoint = _ENDPOINT.search(key)
            if endpoint is None:
                continue
            kind = endpoint_kind(endpoint.group(1))
            if name == "upwatch_probe_failures_total":
                self.failures[kind, _REASON.search(key).group(1)] += increase  # type: ignore[union-attr]
            elif name == "upwatch_probes_total":
                self.probes[kind] += increase
            elif name == "upwatch_probe_ticks_skipped_total":
                self.skipped[kind] += increase
            elif name == "upwatch_endpoint_incidents_total":
                self.incidents[kind] += increase
        self.last = series
        if self.elapsed() < FLAP_SETTLE:
            return  # every flapping endpoint has had its first probes by then
        for endpoint, state in states.items():
            down, into = flap_position(int(endpoint.split("-")[1]), now_wall)
            expected = "down" if down and into >= 20 else "up" if not down and into >= 10 else None
            if expected is None:
                continue
            self.flap_checks += 1
            if state == expected or (expected == "up" and state == "degraded"):
                self.flap_matches += 1
            elif len(self.flap_mismatches) < 20:
                self.flap_mismatches.append(f"{self.elapsed():.0f} s: {endpoint} {state}, expected {expected}")

    def elapsed(self) -> float:
        """Seconds since the agent was ready."""
        return time.monotonic() - self.started

    def false_failures(self) -> Counter[tuple[str, str]]:
        """Failed probes of healthy and slow endpoints, by (kind, reason)."""
        return Counter({k: v for k, v in self.failures.items() if k[0] in ("healthy", "slow")})


def total_rss(sample: tuple[float, float, float, int]) -> float:
    """Main plus workers, MB."""
    return sample[1] + sample[2]


def rss_growth(watch: Watch, warmup: float, duration: float) -> tuple[float, float, float] | None:
    """(baseline MB, end MB, growth %): medians of the minute after the warm-up and of the last minute."""
    window = min(60.0, (duration - warmup) / 2)
    if window < 15:
        return None
    base = [total_rss(s) for s in watch.rss if warmup <= s[0] < warmup + window]
    end = [total_rss(s) for s in watch.rss if s[0] >= watch.rss[-1][0] - window]
    if not base or not end:
        return None
    b, e = statistics.median(base), statistics.median(end)
    return b, e, (e - b) / b * 100


# ---------------------------------------------------------------------------
# The run


def get(url: str, timeout: float = SCRAPE_TIMEOUT, method: str = "GET") -> tuple[int, str]:
    """(status, body) of one request; status 0 when it failed."""
    request = urllib.request.Request(url, method=method)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode(errors="replace")
    except (OSError, urllib.error.URLError) as error:
        return 0, str(error)


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_agent(workdir: Path, config: Path, port: int) -> subprocess.Popen[bytes]:
    """`upwatch serve` from this tree, its output in workdir/agent.log; returns once it is ready."""
    log = (workdir / "agent.log").open("wb")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, (str(REPO), os.environ.get("PYTHONPATH"))))}
    command = [sys.executable, "-m", "exporter", "serve", "--config", str(config), "--listen", f"127.0.0.1:{port}"]
    proc = subprocess.Popen(
        [*command, "--web.enable-lifecycle", "--data-dir", str(workdir / "data"), "--log-format", "json"],
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=REPO,
        env=env,
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"the agent exited with {proc.returncode}:\n{tail(workdir / 'agent.log')}")
        if get(f"http://127.0.0.1:{port}/-/ready", timeout=2)[0] == 200:
            return proc
        time.sleep(0.2)
    proc.kill()
    raise SystemExit(f"the agent was not ready after 120 s:\n{tail(workdir / 'agent.log')}")


def tail(path: Path, lines: int = 30) -> str:
    """The last lines of a file."""
    with contextlib.suppress(OSError):
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    return ""


def minute_line(watch: Watch, cpu: float) -> str:
    """The progress line printed about every minute."""
    t, main, workers, n = watch.rss[-1]
    probes = sum(watch.probes.values())
    false = sum(watch.false_failures().values())
    flap = 100 * watch.flap_matches / watch.flap_checks if watch.flap_checks else 100.0
    scrape = max(watch.scrape_seconds[-12:], default=0.0)
    return (
        f"[{int(t) // 60:3d}:{int(t) % 60:02d}] rss {main + workers:6.1f} MB (main {main:.1f} + {n} workers"
        f" {workers:.1f}) | cpu {cpu:5.1f} % | probes {probes:8.0f} | skipped {sum(watch.skipped.values()):4.0f}"
        f" | false failures {false:.0f} | decreases {len(watch.decreases)} | flap match {flap:5.1f} %"
        f" | scrape max {scrape:.2f} s | reloads {watch.reloads_ok} ok {len(watch.reloads_failed)} failed"
    )


def run(args: argparse.Namespace, workdir: Path) -> int:
    """The soak run; its exit code."""
    plan = Plan.of(args.endpoints)
    began = time.monotonic()
    honest, honest_ports = start_targets(hostile=False)
    hostile, hostile_ports = start_targets(hostile=True)
    ports = {**honest_ports, **hostile_ports}
    print(
        f"targets ready in {time.monotonic() - began:.1f} s: {plan.healthy} healthy (+{plan.extra} swapped by"
        f" reloads), {plan.slow} slow ({args.slow_fraction:g} of a {SLOW_TIMEOUT:g} s timeout), {plan.flapping}"
        f" flapping, {plan.hostile} hostile ({', '.join(HOSTILE_KINDS)})",
        flush=True,
    )
    config = workdir / "upwatch.yml"
    write_atomically(config, config_text(plan, 0, ports, args))
    port = free_port()
    agent = start_agent(workdir, config, port)
    base = f"http://127.0.0.1:{port}"
    watch = Watch(started=time.monotonic())
    cpu0 = agent_cpu(agent.pid)
    print(f"agent ready (pid {agent.pid}, {base}); running {args.duration:g} s", flush=True)
    variant, next_reload, next_scrape, next_line = 0, args.reload_every, 0.0, 60.0
    last_line_cpu, last_line_t = cpu0, 0.0
    died = None
    try:
        while watch.elapsed() < args.duration:
            time.sleep(max(0.0, min(next_scrape, next_reload) - watch.elapsed()))
            if agent.poll() is not None:
                died = f"the agent exited with {agent.returncode} at {watch.elapsed():.0f} s"
                break
            if watch.elapsed() >= next_reload:
                next_reload += args.reload_every
                variant = 1 - variant
                write_atomically(config, config_text(plan, variant, ports, args))
                status, body = get(f"{base}/-/reload", method="POST")
                if status == 200:
                    watch.reloads_ok += 1
                else:
                    watch.reloads_failed.append(f"{watch.elapsed():.0f} s: {status} {body[:200]}")
            if watch.elapsed() >= next_scrape:
                next_scrape += args.scrape_every
                t0 = time.monotonic()
                status, body = get(f"{base}/metrics")
                wall = time.time() - (time.monotonic() - t0) / 2
                if status != 200:
                    watch.scrapes_failed += 1
                    continue
                watch.scrape_seconds.append(time.monotonic() - t0)
                watch.rss.append((watch.elapsed(), *agent_rss(agent.pid)))
                watch.take(wall, *parse_metrics(body))
                if watch.elapsed() >= next_line:
                    next_line += 60
                    cpu, t = agent_cpu(agent.pid), watch.elapsed()
                    print(minute_line(watch, 100 * (cpu - last_line_cpu) / (t - last_line_t)), flush=True)
                    last_line_cpu, last_line_t = cpu, t
    except KeyboardInterrupt:
        died = f"interrupted at {watch.elapsed():.0f} s"
    finally:
        cpu = agent_cpu(agent.pid)
        exit_code = agent.returncode
        if exit_code is None:
            agent.send_signal(signal.SIGTERM)
            try:
                exit_code = agent.wait(60)
            except subprocess.TimeoutExpired:
                agent.kill()
                exit_code = agent.wait()
        for proc in (honest, hostile):
            proc.kill()
            proc.join()
    return report(args, watch, died, exit_code, (cpu - cpu0) / max(watch.elapsed(), 1), workdir)


def report(args: argparse.Namespace, watch: Watch, died: str | None, exit_code: int, cpu: float, workdir: Path) -> int:
    """Print the figures and the verdict; the exit code."""
    print("\n== figures")
    totals = [total_rss(s) for s in watch.rss]
    if totals:
        print(
            f"RSS (main + workers): first {totals[0]:.1f} MB, min {min(totals):.1f}, max {max(totals):.1f},"
            f" last {totals[-1]:.1f}; {len(watch.rss)} samples"
        )
        after = [total_rss(s) for s in watch.rss if s[0] >= args.warmup]
        if after:
            at = next(s for s in watch.rss if s[0] >= args.warmup)
            print(
                f"RSS after {args.warmup:g} s: at {at[0]:.0f} s {total_rss(at):.1f} MB (main {at[1]:.1f} + {at[3]}"
                f" workers {at[2]:.1f}), min {min(after):.1f}, max {max(after):.1f},"
                f" last {totals[-1]:.1f} (main {watch.rss[-1][1]:.1f} + workers {watch.rss[-1][2]:.1f})"
            )
    growth = rss_growth(watch, args.warmup, watch.elapsed())
    if growth is not None:
        print(f"RSS growth after the warm-up: {growth[0]:.1f} -> {growth[1]:.1f} MB, {growth[2]:+.1f} % (medians)")
    print(f"agent CPU: {100 * cpu:.1f} % of one core on average")
    probes = sum(watch.probes.values())
    print(f"probes: {probes:.0f} ({', '.join(f'{k} {v:.0f}' for k, v in sorted(watch.probes.items()))})")
    by_kind: dict[str, list[str]] = defaultdict(list)
    for (kind, reason), n in sorted(watch.failures.items()):
        by_kind[kind].append(f"{reason} {n:.0f}")
    for kind in sorted(by_kind):
        print(f"  failures of {kind}: {', '.join(by_kind[kind])}")
    print(f"incidents: {', '.join(f'{k} {v:.0f}' for k, v in sorted(watch.incidents.items())) or 'none'}")
    print(f"skipped ticks: {sum(watch.skipped.values()):.0f} {dict(watch.skipped) or ''}")
    scrapes = watch.scrape_seconds
    if scrapes:
        print(
            f"scrapes: {len(scrapes)} ok, {watch.scrapes_failed} failed; median {statistics.median(scrapes):.3f} s,"
            f" max {max(scrapes):.3f} s"
        )
    print(f"reloads: {watch.reloads_ok} ok, {len(watch.reloads_failed)} failed")
    flap = 100 * watch.flap_matches / watch.flap_checks if watch.flap_checks else 0.0
    print(f"flapping states matching their schedule: {watch.flap_matches}/{watch.flap_checks} ({flap:.1f} %)")
    for line in watch.flap_mismatches[:5]:
        print(f"  {line}")

    problems = []
    if died:
        problems.append(died)
    elif exit_code != 0:
        problems.append(f"the agent stopped with exit code {exit_code}")
    if watch.decreases:
        problems.append(f"{len(watch.decreases)} counter decreases, first: {watch.decreases[:3]}")
    false = watch.false_failures()
    if false:
        problems.append(f"{sum(false.values()):.0f} false failures: {dict(false)}")
    if watch.reloads_failed:
        problems.append(f"{len(watch.reloads_failed)} reloads failed, first: {watch.reloads_failed[0]}")
    if watch.flap_checks == 0 or flap < args.min_flap_match:
        problems.append(f"flapping states matched {flap:.1f} % of checks (at least {args.min_flap_match:g} % wanted)")
    if not scrapes:
        problems.append("no scrape succeeded")
    if growth is None:
        print(f"RSS growth: not checked (a run of {watch.elapsed():.0f} s has no two minutes after the warm-up)")
    elif growth[2] > args.max_rss_growth:
        problems.append(f"RSS grew {growth[2]:.1f} % after the warm-up (at most {args.max_rss_growth:g} %)")
    print(f"counters monotonic: {'yes' if not watch.decreases else 'no'}")
    print(f"false failures: {sum(false.values()):.0f}")
    if problems:
        print(f"last lines of the agent's log ({workdir / 'agent.log'}):\n{tail(workdir / 'agent.log', 10)}")
        print("verdict: FAIL\n- " + "\n- ".join(problems))
        return 1
    print("verdict: PASS")
    return 0


def _interrupted(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    """Run the soak in --workdir or a temporary folder."""
    args = arguments(argv)
    # Stopped with SIGTERM (or SIGINT, which a shell ignores in a program it starts with `&`): stop
    # the agent and the targets on the way out, as at the end of a run.
    signal.signal(signal.SIGTERM, _interrupted)
    signal.signal(signal.SIGINT, _interrupted)
    if args.workdir is not None:
        args.workdir.mkdir(parents=True, exist_ok=True)
        return run(args, args.workdir)
    workdir = Path(tempfile.mkdtemp(prefix="upwatch-soak-"))
    try:
        return run(args, workdir)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
