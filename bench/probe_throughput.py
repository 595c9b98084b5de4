"""Benchmark: probe throughput and cost of upwatch next to blackbox_exporter's, same machine, same run.

Starts nginx (one process: `return 200 "ok\\n"` on HTTP and HTTPS with a trustme CA, and a /sleep
location that answers after 50 ms), then for each case runs `upwatch serve` from this tree with N
endpoints on that page, measures it, stops it, and does the same with blackbox_exporter driven at
the same rate as Prometheus would drive it. nginx's CPU is counted for neither.

upwatch, per case (its config: the endpoints, `host: {enabled: false}`, probe timeout 2s, and
`workers`/`max_concurrent_probes` only when given as options):

1. warm-up: until every endpoint has been probed once (sum of upwatch_probes_total >= N), plus one
   interval;
2. probe window (about --window seconds, a whole number of interval+1 s steps, at least two): one
   plain /metrics scrape per step, as a Prometheus scraping about every interval would. Probes/s
   from the delta of sum(upwatch_probes_total); CPU per probe from utime+stime of the whole process
   tree (main and workers) over the window; RSS summed over the tree at its end; skipped ticks from
   upwatch_probe_ticks_skipped_total, or from the "probe ticks skipped" log lines of an upwatch
   without it; durations of the distinct probes begun in the window, read from each endpoint's
   probe_duration_seconds and upwatch_probe_last_run_timestamp_seconds;
3. scrape window (--window seconds): one scrape a second, plain and gzip in turns: /metrics latency
   and size, and probes/s and CPU per probe at that scrape rate;
4. cases marked +echo only: hammer window, as long as the probe window: --scrapers threads scrape
   /metrics (gzip) back to back while the probe window's sampling repeats (with --hammer-path /,
   they read the status page instead). Each /sleep probe's own
   start and end (from its duration and last-run time) tell whether a /metrics request was in
   flight meanwhile, so their durations are shown for probes with none, with one, and under the hammer.

blackbox_exporter, per case: a `http_2xx` module (`http_2xx_tls` trusting the CA for https), and a
driver in its own process (so its CPU is not blackbox's) that sends `GET /probe?module=M&target=URL`
for each of the N targets once per interval, each at a stable offset spread evenly over the
interval, on keep-alive connections, as Prometheus does: at most one probe per target in flight (a
target still busy skips its turn), the scrape timeout (min(interval, 10 s)) as timeout and in the
X-Prometheus-Scrape-Timeout-Seconds header. It keeps at most --connections probes in flight, by
default as many as upwatch may run at once (max_concurrent_probes, 64 unless given), so that both
tools meet overload alike; `--connections 0` lifts the cap as a lone Prometheus would, and then a
blackbox that cannot keep up collapses (probes pile up, time out, and their work is lost). The
driver is asyncio on uvloop with httptools parsing (about 0.2 ms CPU a request); it parses
probe_success and probe_duration_seconds from each answer and reports how late it sent requests, so
a starved driver shows. blackbox's CPU and RSS come from /proc over the driver's window.

Each case also says how busy the machine was during each window, and with what: on a shared machine
other programs' load shows there, and the side-by-side ratios are the figures to quote.

    .venv/bin/python bench/probe_throughput.py                      # about 9 minutes
    .venv/bin/python bench/probe_throughput.py --cases 1000@10 --window 20
    .venv/bin/python bench/probe_throughput.py --cases 5000@5+echo,https:5000@5 --upwatch-workers 2

A case is `[https:]N@INTERVAL[+echo]`: N endpoints (targets) every INTERVAL seconds; +echo puts
--echo-endpoints of them on /sleep and adds the hammer window.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gzip
import json
import math
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import psutil
from _nginx import Nginx, free_port, run_nginx, stop, wait_for_port

REPO = Path(__file__).resolve().parent.parent
BLACKBOX = "/usr/bin/prometheus-blackbox-exporter"
TIMEOUT = "2s"  # every probe's timeout, upwatch's and blackbox's
SCRAPE_TIMEOUT = 120.0
UPWATCH_MAX_CONCURRENT_PROBES = 64  # upwatch's default max_concurrent_probes

_PROBES = re.compile(rb"^upwatch_probes_total\{[^}]*\} (\S+)$", re.MULTILINE)
_SUCCESSES = re.compile(rb'^upwatch_probes_total\{[^}]*result="success"[^}]*\} (\S+)$', re.MULTILINE)
_SKIPPED = re.compile(rb"^upwatch_probe_ticks_skipped_total\{[^}]*\} (\S+)$", re.MULTILINE)
_DURATION = re.compile(rb'^probe_duration_seconds\{(?:[^}]*,)?endpoint="([^"]*)"[^}]*\} (\S+)$', re.MULTILINE)
_LAST_RUN = re.compile(
    rb'^upwatch_probe_last_run_timestamp_seconds\{(?:[^}]*,)?endpoint="([^"]*)"[^}]*\} (\S+)$', re.MULTILINE
)
_CASE = re.compile(r"^(?:(https?):)?(\d+)@(\d+(?:\.\d+)?)s?(\+echo)?$")


@dataclass(frozen=True)
class Case:
    """N endpoints every `interval` seconds, over http or https, with or without the /sleep endpoints."""

    scheme: str
    endpoints: int
    interval: float
    echo: bool

    @property
    def label(self) -> str:
        """How the case is named in the output."""
        extra = " + echo" if self.echo else ""
        return f"{self.scheme} {self.endpoints} endpoints every {self.interval:g} s{extra}"

    @property
    def rate(self) -> float:
        """Probes a second expected."""
        return self.endpoints / self.interval


def parse_cases(text: str) -> list[Case]:
    """Cases from `[https:]N@INTERVAL[+echo],...`."""
    cases = []
    for item in filter(None, (part.strip() for part in text.split(","))):
        match = _CASE.match(item)
        if match is None:
            raise argparse.ArgumentTypeError(f"bad case {item!r}: expected [https:]N@INTERVAL[+echo]")
        scheme, n, interval, echo = match.groups()
        cases.append(Case(scheme or "http", int(n), float(interval), bool(echo)))
    return cases


# ---------------------------------------------------------------------------
# Measuring helpers


@dataclass
class Scrape:
    """One /metrics answer and what the benchmark reads from it."""

    at: float  # monotonic, midway through the request
    seconds: float
    size: int
    probes: float = 0.0
    successes: float = 0.0
    skipped: float | None = None
    last_probes: dict[str, tuple[float, float]] = field(default_factory=dict)  # endpoint: (finished, duration)


def fetch(
    url: str, encoding: str = "identity", spans: list[tuple[float, float]] | None = None
) -> tuple[float, float, bytes]:
    """GET url; (monotonic midpoint, seconds taken, body as sent). Adds its (start, end) wall-clock time to `spans`."""
    request = urllib.request.Request(url, headers={"Accept-Encoding": encoding})
    wall, began = time.time(), time.monotonic()
    try:
        with urllib.request.urlopen(request, timeout=SCRAPE_TIMEOUT) as response:
            body = response.read()
    finally:
        ended = time.monotonic()
        if spans is not None:
            spans.append((wall, wall + ended - began))
    return (began + ended) / 2, ended - began, body


def scrape(
    url: str, encoding: str = "identity", parse: bool = True, spans: list[tuple[float, float]] | None = None
) -> Scrape:
    """Scrape /metrics; with `parse`, sum the probe and skipped-tick counters and read every endpoint's last probe."""
    at, seconds, body = fetch(url, encoding, spans)
    result = Scrape(at, seconds, len(body))
    if parse:
        if body.startswith(b"\x1f\x8b"):
            body = gzip.decompress(body)
        result.probes = sum(float(v) for v in _PROBES.findall(body))
        result.successes = sum(float(v) for v in _SUCCESSES.findall(body))
        skipped = _SKIPPED.findall(body)
        result.skipped = sum(float(v) for v in skipped) if skipped else None
        finished = {name: float(v) for name, v in _LAST_RUN.findall(body)}
        result.last_probes = {
            name.decode(): (finished[name], float(v)) for name, v in _DURATION.findall(body) if name in finished
        }
    return result


def tree(pid: int) -> list[psutil.Process]:
    """The process and all its descendants."""
    with contextlib.suppress(psutil.Error):
        root = psutil.Process(pid)
        return [root, *root.children(recursive=True)]
    return []


def tree_cpu(pid: int) -> float:
    """utime+stime seconds of a process tree, reaped children included."""
    total = 0.0
    for proc in tree(pid):
        with contextlib.suppress(psutil.Error):
            t = proc.cpu_times()
            total += t.user + t.system + t.children_user + t.children_system
    return total


def tree_rss(pid: int) -> tuple[float, int]:
    """(VmRSS summed over a process tree in MB, number of processes)."""
    procs = tree(pid)
    total = 0
    for proc in procs:
        with contextlib.suppress(psutil.Error):
            total += proc.memory_info().rss
    return total / 1e6, len(procs)


@dataclass(frozen=True)
class Meter:
    """CPU seconds used so far by the measured tool, nginx, this script (with the driver) and the whole machine."""

    at: float
    tool: float
    nginx: float
    bench: float
    machine: float

    @classmethod
    def read(cls, pid: int, nginx_pid: int, driver_pid: int | None = None) -> Meter:
        """Read them all now; the machine's figure is the busy time of all cores."""
        t = psutil.cpu_times()
        machine = t.user + t.nice + t.system + getattr(t, "irq", 0.0) + getattr(t, "softirq", 0.0)
        own = psutil.Process().cpu_times()
        bench = own.user + own.system + (tree_cpu(driver_pid) if driver_pid is not None else 0.0)
        return cls(time.monotonic(), tree_cpu(pid), tree_cpu(nginx_pid), bench, machine)


def load_line(tool: str, start: Meter, end: Meter) -> str:
    """How busy the machine was between two readings, and who kept it busy (in cores)."""
    seconds = end.at - start.at
    busy, mine, nginx, bench = (
        (getattr(end, name) - getattr(start, name)) / seconds for name in ("machine", "tool", "nginx", "bench")
    )
    return (
        f"{busy:.2f} of {os.cpu_count()} cores busy: {tool} {mine:.2f}, nginx {nginx:.2f}, this script and its "
        f"driver {bench:.2f}, other programs {busy - mine - nginx - bench:.2f}"
    )


def pct(values: list[float], q: float) -> float:
    """The q-th percentile (nearest rank); nan for no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def skipped_in_log(log: Path, start: int, end: int) -> int:
    """Ticks the scheduler logged as skipped between two offsets of its JSON log."""
    with log.open("rb") as f:
        f.seek(start)
        chunk = f.read(end - start)
    total = 0
    for line in chunk.splitlines():
        if b"probe ticks skipped" in line:
            with contextlib.suppress(ValueError, TypeError):
                total += int(json.loads(line).get("skipped", 0))
    return total


# ---------------------------------------------------------------------------
# upwatch


@dataclass
class Window:
    """Figures of one measuring window of upwatch."""

    seconds: float = 0.0
    probes: float = 0.0
    successes: float = 0.0
    cpu: float = 0.0
    meters: tuple[Meter, Meter] | None = None
    wall_start: float = 0.0
    skipped: int = 0
    skipped_source: str = "metric"
    seen: dict[tuple[str, float], float] = field(default_factory=dict)  # (endpoint, finished): duration
    scrapes: list[Scrape] = field(default_factory=list)

    @property
    def durations(self) -> list[float]:
        """Durations of the distinct probes, begun in the window, of endpoints other than /sleep ones."""
        return [
            duration
            for (name, finished), duration in self.seen.items()
            if not name.startswith("echo-") and finished - duration >= self.wall_start
        ]

    def echo(self, spans: list[tuple[float, float]]) -> tuple[list[float], list[float]]:
        """Durations of the window's /sleep probes: (those that overlapped no /metrics request, those that did)."""
        quiet, loud = [], []
        for (name, finished), duration in self.seen.items():
            began = finished - duration
            if name.startswith("echo-") and began >= self.wall_start:
                overlaps = any(start < finished and began < end for start, end in spans)
                (loud if overlaps else quiet).append(duration)
        return quiet, loud

    @property
    def rate(self) -> float:
        """Probes a second."""
        return self.probes / self.seconds if self.seconds else math.nan

    @property
    def cpu_ms(self) -> float:
        """CPU milliseconds per probe."""
        return self.cpu / self.probes * 1000 if self.probes else math.nan


def upwatch_config(case: Case, url: str, echo_url: str, ca_file: Path, args: argparse.Namespace) -> str:
    """A config of case.endpoints endpoints on the nginx page, the first --echo-endpoints on /sleep if +echo."""
    lines = ["host: {enabled: false}"]
    if args.upwatch_workers is not None:
        lines.append(f"workers: {args.upwatch_workers}")
    if args.max_concurrent_probes is not None:
        lines.append(f"max_concurrent_probes: {args.max_concurrent_probes}")
    lines += ["defaults:", f"  interval: {case.interval:g}s", f"  timeout: {TIMEOUT}"]
    if case.scheme == "https":
        lines.append(f"  tls: {{ca_file: {ca_file}}}")
    lines.append("endpoints:")
    echo = args.echo_endpoints if case.echo else 0
    for i in range(case.endpoints):
        if i < echo:
            lines.append(f"  - {{name: echo-{i:03d}, url: '{echo_url}'}}")
        else:
            lines.append(f"  - {{name: ep-{i:05d}, url: '{url}'}}")
    return "\n".join(lines) + "\n"


class UpwatchRun:
    """One `upwatch serve` process and its measuring windows."""

    def __init__(self, case: Case, urls: tuple[str, str], nginx: Nginx, tmp: Path, args: argparse.Namespace) -> None:
        self.case = case
        self.args = args
        self.nginx_pid = nginx.pid
        self.log = tmp / f"upwatch-{case.scheme}-{case.endpoints}.log"
        config = tmp / f"upwatch-{case.scheme}-{case.endpoints}.yml"
        config.write_text(upwatch_config(case, urls[0], urls[1], nginx.ca_file, args))
        port = free_port()
        self.base = f"http://127.0.0.1:{port}"
        self.metrics = f"{self.base}/metrics"
        self.spans: list[tuple[float, float]] = []  # wall-clock (start, end) of every /metrics request sent
        command = [sys.executable, "-m", "exporter", "serve", "--config", str(config)]
        command += ["--listen", f"127.0.0.1:{port}", "--log-format", "json", "--log-level", "warning"]
        with self.log.open("wb") as log:
            self.proc = subprocess.Popen(
                command,
                cwd=REPO,
                env={**os.environ, "PYTHONPATH": str(REPO), "PYTHONUNBUFFERED": "1"},
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    def wait_ready(self) -> None:
        """Return once /-/ready answers 200; exit if upwatch died."""
        until = time.monotonic() + 120
        while time.monotonic() < until:
            if self.proc.poll() is not None:
                raise SystemExit(f"upwatch exited with {self.proc.returncode}:\n{self.log.read_text()[-3000:]}")
            with contextlib.suppress(OSError), urllib.request.urlopen(f"{self.base}/-/ready", timeout=5) as r:
                if r.status == 200:
                    return
            time.sleep(0.2)
        raise SystemExit("upwatch never became ready")

    def warm_up(self) -> float:
        """Wait until every endpoint was probed once, then one more interval; return the seconds it took."""
        began = time.monotonic()
        until = began + 4 * self.case.interval + 60
        while time.monotonic() < until:
            time.sleep(max(5.0, self.case.interval / 2))
            if scrape(self.metrics, spans=self.spans).probes >= self.case.endpoints:
                break
        else:
            print(f"  warning: not every endpoint was probed within {until - began:.0f} s", file=sys.stderr)
        time.sleep(self.case.interval)
        return time.monotonic() - began

    def window(
        self, seconds: float, every: float, encodings: tuple[str, ...] = ("identity",), sample: bool = True
    ) -> Window:
        """Scrape every `every` seconds for `seconds` (in turns of `encodings`); `sample` reads durations from each."""
        steps = max(1, math.ceil(seconds / every))
        wall_start = time.time()
        first = scrape(self.metrics, spans=self.spans)
        meter0, log0 = Meter.read(self.proc.pid, self.nginx_pid), self.log.stat().st_size
        out = Window(scrapes=[first], wall_start=wall_start)
        started = time.monotonic()
        last = first
        for step in range(1, steps + 1):
            time.sleep(max(0.0, started + step * every - time.monotonic()))
            encoding = encodings[step % len(encodings)]
            last = scrape(self.metrics, encoding, sample or step == steps, self.spans)
            out.scrapes.append(last)
        meter1, log1 = Meter.read(self.proc.pid, self.nginx_pid), self.log.stat().st_size
        out.seconds = last.at - first.at
        out.probes = last.probes - first.probes
        out.successes = last.successes - first.successes
        out.cpu = meter1.tool - meter0.tool
        out.meters = (meter0, meter1)
        if first.skipped is not None and last.skipped is not None:
            out.skipped = round(last.skipped - first.skipped)
        else:
            out.skipped, out.skipped_source = skipped_in_log(self.log, log0, log1), "log"
        for s in out.scrapes:
            for name, (finished, duration) in s.last_probes.items():
                out.seen[name, finished] = duration
        return out

    def hammer(self, threads: int, stop_event: threading.Event, latencies: list[float]) -> list[threading.Thread]:
        """Start `threads` threads that GET --hammer-path (gzip) back to back until stop_event is set."""
        url = self.base + self.args.hammer_path

        def run() -> None:
            while not stop_event.is_set():
                with contextlib.suppress(OSError):
                    latencies.append(fetch(url, "gzip", self.spans)[1])

        workers = [threading.Thread(target=run, daemon=True) for _ in range(threads)]
        for worker in workers:
            worker.start()
        return workers


def run_upwatch(case: Case, urls: tuple[str, str], nginx: Nginx, tmp: Path, args: argparse.Namespace) -> dict[str, Any]:
    """All of upwatch's windows for one case."""
    run = UpwatchRun(case, urls, nginx, tmp, args)
    try:
        run.wait_ready()
        warm = run.warm_up()
        print(f"  upwatch warmed up in {warm:.0f} s; probe window", file=sys.stderr, flush=True)
        sample_every = case.interval + 1
        steps = max(2, math.ceil(args.window / sample_every))
        probe = run.window(steps * sample_every, sample_every)
        rss, procs = tree_rss(run.proc.pid)
        print("  scrape window", file=sys.stderr, flush=True)
        scrape_win = run.window(args.window, 1.0, ("identity", "gzip"), sample=False)
        result: dict[str, Any] = {"probe": probe, "scrape": scrape_win, "rss": rss, "procs": procs}
        if case.echo:
            print(f"  hammer window ({args.scrapers} scrapers)", file=sys.stderr, flush=True)
            stop_event = threading.Event()
            latencies: list[float] = []
            workers = run.hammer(args.scrapers, stop_event, latencies)
            try:
                result["hammer"] = run.window(steps * sample_every, sample_every)
            finally:
                stop_event.set()
                for worker in workers:
                    worker.join(SCRAPE_TIMEOUT)
            result["hammer_latencies"] = latencies
        result["spans"] = run.spans
        return result
    finally:
        stop(run.proc)


# ---------------------------------------------------------------------------
# blackbox_exporter and its driver


def blackbox_config(ca_file: Path) -> str:
    """Two modules: plain http_2xx, and http_2xx_tls trusting the benchmark's CA."""
    return (
        "modules:\n"
        "  http_2xx:\n"
        f"    prober: http\n    timeout: {TIMEOUT}\n"
        "    http:\n      preferred_ip_protocol: ip4\n"
        "  http_2xx_tls:\n"
        f"    prober: http\n    timeout: {TIMEOUT}\n"
        "    http:\n      preferred_ip_protocol: ip4\n"
        f"      tls_config:\n        ca_file: {ca_file}\n"
    )


def driver_cap(args: argparse.Namespace) -> int:
    """How many probes the driver keeps in flight at most: --connections, else upwatch's concurrency cap."""
    if args.connections is not None:
        return int(args.connections)
    return int(args.max_concurrent_probes or UPWATCH_MAX_CONCURRENT_PROBES)


def run_blackbox(
    case: Case, urls: tuple[str, str], nginx: Nginx, tmp: Path, args: argparse.Namespace
) -> dict[str, Any]:
    """blackbox_exporter driven at the case's rate; its CPU and RSS over the driver's window."""
    port = free_port()
    config = tmp / "blackbox.yml"
    targets = tmp / f"targets-{case.scheme}-{case.endpoints}.txt"
    echo = args.echo_endpoints if case.echo else 0
    targets.write_text("".join(f"{urls[1] if i < echo else urls[0]}\n" for i in range(case.endpoints)))
    command = [BLACKBOX, f"--web.listen-address=127.0.0.1:{port}", f"--config.file={config}", "--log.level=warn"]
    blackbox = subprocess.Popen(command, stdin=subprocess.DEVNULL, stderr=(tmp / "blackbox.log").open("wb"))
    driver: subprocess.Popen[str] | None = None
    try:
        wait_for_port(port)
        sample_every = case.interval + 1
        window = max(2, math.ceil(args.window / sample_every)) * sample_every
        module = "http_2xx_tls" if case.scheme == "https" else "http_2xx"
        driver = subprocess.Popen(
            [
                *(sys.executable, __file__, "--drive", f"127.0.0.1:{port}", module, str(targets)),
                *("--interval", str(case.interval), "--window", str(window), "--echo-endpoints", str(echo)),
                *("--connections", str(driver_cap(args))),
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert driver.stdout is not None
        meters: dict[str, Meter] = {}
        rss = 0.0
        report: dict[str, Any] = {}
        for line in driver.stdout:
            if line.startswith("window-"):
                meters[line.strip()] = Meter.read(blackbox.pid, nginx.pid, driver.pid)
                rss = tree_rss(blackbox.pid)[0]
            elif line.startswith("{"):
                report = json.loads(line)
        if driver.wait() != 0 or not report or len(meters) != 2:
            raise SystemExit("the blackbox driver failed")
        report["cpu"] = meters["window-end"].tool - meters["window-start"].tool
        report["meters"] = (meters["window-start"], meters["window-end"])
        report["rss"] = rss
        return report
    finally:
        if driver is not None:
            stop(driver)
        stop(blackbox)


class _KeepAlive(asyncio.Protocol):
    """One keep-alive HTTP/1.1 connection of the driver; httptools parses the answers, one request at a time."""

    def __init__(self) -> None:
        import httptools

        self._parser = httptools.HttpResponseParser(self)
        self._transport: Any = None  # uvloop's transports do not subclass asyncio.Transport
        self._waiter: asyncio.Future[tuple[int, bytes]] | None = None
        self._body = bytearray()
        self.reusable = True

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport

    def data_received(self, data: bytes) -> None:
        try:
            self._parser.feed_data(data)
        except Exception as exc:
            self._fail(exc)

    def on_message_begin(self) -> None:
        self._body.clear()

    def on_body(self, body: bytes) -> None:
        self._body += body

    def on_message_complete(self) -> None:
        self.reusable = self._parser.should_keep_alive()
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result((self._parser.get_status_code(), bytes(self._body)))

    def connection_lost(self, exc: Exception | None) -> None:
        self._fail(exc or ConnectionError("connection closed"))

    def _fail(self, exc: Exception) -> None:
        self.reusable = False
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_exception(exc)
        if self._transport is not None:
            self._transport.abort()

    async def request(self, data: bytes) -> tuple[int, bytes]:
        """Send one request and return (status, body) of its answer."""
        self._waiter = asyncio.get_running_loop().create_future()
        self._transport.write(data)
        return await self._waiter

    def close(self) -> None:
        """Drop the connection."""
        self.reusable = False
        self._transport.abort()


async def _drive(args: argparse.Namespace, targets: list[str]) -> dict[str, Any]:
    """Send each target's probe once per interval at its own offset, as Prometheus would; report what came back.

    Like a Prometheus scrape loop, a target whose previous probe is still running skips its turn. Requests go
    over keep-alive connections: an idle one if there is one, else a new one. With --connections, a probe
    first waits for one of that many slots, as upwatch's do, and its timeout starts when it has one.
    """
    address, module, _ = args.drive
    host, port = address.rsplit(":", 1)
    n, interval = len(targets), args.interval
    # Prometheus's scrape timeout: at most 10 s and the interval; it tells blackbox, which probes for at
    # most that less 0.5 s (and its module's timeout).
    scrape_timeout = min(10.0, interval)
    requests = [
        (
            f"GET /probe?module={module}&target={quote(target, safe='')} HTTP/1.1\r\nHost: {address}\r\n"
            f"User-Agent: probe_throughput\r\nX-Prometheus-Scrape-Timeout-Seconds: {scrape_timeout:g}\r\n\r\n"
        ).encode()
        for target in targets
    ]
    loop = asyncio.get_running_loop()
    idle: list[_KeepAlive] = []
    limit = asyncio.Semaphore(args.connections) if args.connections > 0 else None
    started = loop.time() + 0.5
    window_start = started + interval + 1  # one interval of warm-up
    window_end = window_start + args.window
    done: list[tuple[float, bool, float, bool]] = []  # (finished, is echo, duration, success)
    late: list[float] = []
    errors: list[str] = []
    busy = bytearray(n)
    skipped = 0
    tasks: set[asyncio.Task[None]] = set()

    async def exchange(i: int) -> bytes:
        conn = idle.pop() if idle else (await loop.create_connection(_KeepAlive, host, int(port)))[1]
        try:
            status, body = await conn.request(requests[i])
        except BaseException:
            conn.close()
            raise
        if conn.reusable:
            idle.append(conn)
        if status != 200:
            raise RuntimeError(f"status {status}")
        return body

    async def probe(i: int) -> None:
        busy[i] = 1
        try:
            if limit is not None:
                await limit.acquire()
            try:
                async with asyncio.timeout(scrape_timeout):
                    body = await exchange(i)
            finally:
                if limit is not None:
                    limit.release()
            duration = _gauge(body, b"probe_duration_seconds")
            success = _gauge(body, b"probe_success") == 1.0
            done.append((loop.time(), i < args.echo_endpoints, duration, success))
        except TimeoutError:
            errors.append(f"timed out after {scrape_timeout:g} s")
        except Exception as exc:
            errors.append(f"{type(exc).__name__}: {exc}"[:200])
        finally:
            busy[i] = 0

    def due(k: int) -> float:
        """When the k-th send is due: target k % n in round k // n."""
        return started + (k // n) * interval + (k % n) * interval / n

    cpu: dict[str, float] = {}
    k = 0
    for mark_at, mark in ((window_start, "window-start"), (window_end, "window-end")):
        while (now := loop.time()) < mark_at:
            while due(k) <= now:
                in_window = due(k) >= window_start
                if busy[k % n]:
                    skipped += in_window
                else:
                    if in_window:
                        late.append(now - due(k))
                    task = loop.create_task(probe(k % n))
                    tasks.add(task)
                    task.add_done_callback(tasks.discard)
                k += 1
            await asyncio.sleep(max(0.0, min(due(k), mark_at) - loop.time()))
        _say(mark)
        cpu[mark] = time.process_time()
    measured = [d for d in done if window_start <= d[0] < window_end]
    if tasks:
        await asyncio.wait(tasks, timeout=scrape_timeout)
    for conn in idle:
        conn.close()
    return {
        "seconds": args.window,
        "probes": len(measured),
        "successes": sum(1 for d in measured if d[3]),
        "durations": [d[2] for d in measured if not d[1]],
        "echo": [d[2] for d in measured if d[1]],
        "skipped": skipped,
        "cap": args.connections,
        "late_p50": pct(late, 50),
        "late_p99": pct(late, 99),
        "late_max": max(late, default=math.nan),
        "sent": len(late),
        "driver_cpu_ms": (cpu["window-end"] - cpu["window-start"]) / max(1, len(late)) * 1000,
        "errors": len(errors),
        "first_error": errors[0] if errors else "",
    }


def _say(line: str) -> None:
    """Print a line to the parent; uvloop may have left stdout non-blocking, which would cut a long line short."""
    os.set_blocking(sys.stdout.fileno(), True)
    print(line, flush=True)


def _gauge(body: bytes, name: bytes) -> float:
    """The value of an unlabelled gauge in a text exposition, nan if absent."""
    start = body.find(b"\n" + name + b" ")
    if start < 0:
        return math.nan
    start += len(name) + 2
    end = body.find(b"\n", start)
    return float(body[start : end if end >= 0 else None])


def drive_main(args: argparse.Namespace) -> None:
    """The driver process: run on uvloop when it is installed, print the report as one JSON line."""
    factory = None
    with contextlib.suppress(ImportError):
        import uvloop

        factory = uvloop.new_event_loop
    with asyncio.Runner(loop_factory=factory) as runner:
        report = runner.run(_drive(args, Path(args.drive[2]).read_text().split()))
    _say(json.dumps(report))


# ---------------------------------------------------------------------------
# Report


def _versions(nginx_version: str) -> str:
    upwatch = subprocess.run(
        [sys.executable, "-c", "import exporter; print(exporter.__version__)"],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
    ).stdout.strip()
    commit = subprocess.run(
        ["git", "-C", str(REPO), "describe", "--always", "--dirty"], capture_output=True, text=True
    ).stdout.strip()
    blackbox = subprocess.run([BLACKBOX, "--version"], capture_output=True, text=True)
    blackbox_version = (blackbox.stdout or blackbox.stderr).split("\n", 1)[0].replace("blackbox_exporter, ", "")
    return f"upwatch {upwatch} ({commit}), blackbox_exporter {blackbox_version}, {nginx_version}"


def _ms(value: float) -> str:
    return "n/a" if math.isnan(value) else f"{value * 1000:.1f}"


def _summary(values: list[float]) -> str:
    return (
        f"{_ms(pct(values, 50))} / {_ms(pct(values, 99))} / {_ms(max(values, default=math.nan))} ms "
        f"({len(values)} samples)"
    )


def print_case(case: Case, up: dict[str, Any], bb: dict[str, Any], args: argparse.Namespace) -> None:
    """One markdown table for a case, and the lines that go with it."""
    probe: Window = up["probe"]
    scrape_win: Window = up["scrape"]
    sizes = {"identity": 0, "gzip": 0}
    latency: dict[str, list[float]] = {"identity": [], "gzip": []}
    for step, s in enumerate(scrape_win.scrapes[1:], start=1):
        encoding = ("identity", "gzip")[step % 2]
        latency[encoding].append(s.seconds)
        sizes[encoding] = s.size
    bb_rate = bb["probes"] / bb["seconds"]
    bb_cpu = bb["cpu"] / bb["probes"] * 1000 if bb["probes"] else math.nan
    up_p99, bb_p99 = pct(probe.durations, 99), pct(bb["durations"], 99)
    skipped = f"{probe.skipped}" + (" (from log)" if probe.skipped_source == "log" else "")
    metrics = (
        f"{_ms(pct(latency['identity'], 50))} / {_ms(pct(latency['identity'], 99))}, {sizes['identity'] / 1e6:.2f} MB; "
        f"gzip {_ms(pct(latency['gzip'], 50))} / {_ms(pct(latency['gzip'], 99))}, {sizes['gzip'] / 1e6:.2f} MB"
    )
    print(f"## {case.label}: {case.rate:g} probes/s expected")
    print()
    print(
        "| tool | probes/s (expected) | CPU ms/probe | duration p50 / p99 ms | RSS MB | skipped ticks "
        "| /metrics p50 / p99 ms, size |"
    )
    print("| --- | ---: | ---: | ---: | ---: | ---: | --- |")
    print(
        f"| upwatch | {probe.rate:.0f} ({case.rate:g}, {probe.rate / case.rate:.1%}; "
        f"{probe.successes / probe.probes if probe.probes else math.nan:.1%} ok) | {probe.cpu_ms:.2f} | "
        f"{_ms(pct(probe.durations, 50))} / {_ms(up_p99)} | {up['rss']:.0f} ({up['procs']} proc) | {skipped} "
        f"| {metrics} |"
    )
    print(
        f"| blackbox_exporter | {bb_rate:.0f} ({case.rate:g}, {bb_rate / case.rate:.1%}; "
        f"{bb['successes'] / bb['probes'] if bb['probes'] else math.nan:.1%} ok) | {bb_cpu:.2f} | "
        f"{_ms(pct(bb['durations'], 50))} / {_ms(bb_p99)} | {bb['rss']:.0f} | {bb['skipped']} (driver) | n/a |"
    )
    print(
        f"| upwatch / blackbox | {probe.rate / bb_rate:.2f}x | {probe.cpu_ms / bb_cpu:.2f}x | "
        f"p99 {(up_p99 - bb_p99) * 1000:+.1f} ms | {up['rss'] / bb['rss']:.1f}x | | |"
    )
    print()
    print(
        f"- upwatch probe window {probe.seconds:.0f} s: {probe.probes:.0f} probes, {probe.successes:.0f} succeeded; "
        f"{len(probe.scrapes)} scrapes {case.interval + 1:g} s apart, {len(probe.durations)} distinct probes read; "
        f"with 1 scrape/s ({len(latency['identity'])} plain, {len(latency['gzip'])} gzip; /metrics figures from "
        f"these): {scrape_win.rate:.0f} probes/s, "
        f"{scrape_win.cpu_ms:.2f} CPU ms/probe, {scrape_win.skipped} skipped ticks."
    )
    print(
        f"- blackbox window {bb['seconds']:.0f} s: {bb['probes']} probes, {bb['successes']} succeeded, "
        f"{bb['errors']} driver errors{' (' + bb['first_error'] + ')' if bb['first_error'] else ''}; "
        f"at most {bb['cap'] or 'unlimited'} in flight; driver late "
        f"p50 {_ms(bb['late_p50'])} / p99 {_ms(bb['late_p99'])} / max {_ms(bb['late_max'])} ms, "
        f"its own CPU {bb['driver_cpu_ms']:.2f} ms/probe."
    )
    assert probe.meters is not None
    print(f"- machine during upwatch's probe window: {load_line('upwatch', *probe.meters)}.")
    print(f"- machine during blackbox's window: {load_line('blackbox_exporter', *bb['meters'])}.")
    if case.echo:
        hammer_win: Window = up["hammer"]
        quiet, during_one = probe.echo(up["spans"])
        loud = hammer_win.echo(up["spans"])[1]
        lat = up["hammer_latencies"]
        during = f", during one {_summary(during_one)}" if during_one else ""
        print(
            f"- /sleep (50 ms) endpoints, {args.echo_endpoints} of them, duration p50 / p99 / max: upwatch, probes "
            f"during no /metrics request {_summary(quiet)}{during}; blackbox {_summary(bb['echo'])}."
        )
        print(
            f"- the same under {args.scrapers} scrapers hammering upwatch's {args.hammer_path} "
            f"(gzip, {len(lat)} requests, "
            f"p50 / p99 {_ms(pct(lat, 50))} / {_ms(pct(lat, 99))} ms): upwatch {_summary(loud)}; p99 moved by "
            f"{(pct(loud, 99) - pct(quiet, 99)) * 1000:+.1f} ms, max by "
            f"{(max(loud, default=math.nan) - max(quiet, default=math.nan)) * 1000:+.1f} ms; {hammer_win.rate:.0f} "
            f"probes/s, {hammer_win.cpu_ms:.2f} CPU ms/probe, {hammer_win.skipped} skipped ticks meanwhile."
        )
    print()


def main() -> None:
    """Run the benchmark and print its figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--cases", type=parse_cases, default="1000@10,5000@5+echo,https:1000@10", help="[https:]N@INTERVAL[+echo],..."
    )
    parser.add_argument("--window", type=float, default=30.0, help="seconds of each measuring window")
    parser.add_argument("--upwatch-workers", help="write `workers: VALUE` into upwatch's config (int or auto)")
    parser.add_argument("--max-concurrent-probes", type=int, help="write max_concurrent_probes into upwatch's config")
    parser.add_argument("--echo-endpoints", type=int, default=20, help="endpoints on /sleep in +echo cases")
    parser.add_argument("--scrapers", type=int, default=10, help="threads scraping /metrics in the hammer window")
    parser.add_argument(
        "--hammer-path", default="/metrics", help="what the scrapers GET in the hammer window (/ : the status page)"
    )
    parser.add_argument(
        "--connections",
        type=int,
        help="blackbox probes in flight at most (default: upwatch's max_concurrent_probes; 0: no limit)",
    )
    parser.add_argument("--interval", type=float, help=argparse.SUPPRESS)
    parser.add_argument("--drive", nargs=3, metavar=("ADDRESS", "MODULE", "TARGETS"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.drive:
        drive_main(args)
        return
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # so that the finally blocks stop every child

    results: list[tuple[Case, dict[str, Any], dict[str, Any]]] = []
    began = time.monotonic()
    with tempfile.TemporaryDirectory() as tmp_name, run_nginx(Path(tmp_name)) as nginx:
        tmp = Path(tmp_name)
        (tmp / "blackbox.yml").write_text(blackbox_config(nginx.ca_file))
        versions = _versions(nginx.version)
        for case in args.cases:
            port = nginx.https_port if case.scheme == "https" else nginx.http_port
            urls = (f"{case.scheme}://127.0.0.1:{port}/", f"{case.scheme}://127.0.0.1:{port}/sleep")
            print(f"{case.label}: upwatch", file=sys.stderr, flush=True)
            up = run_upwatch(case, urls, nginx, tmp, args)
            print(f"{case.label}: blackbox_exporter", file=sys.stderr, flush=True)
            bb = run_blackbox(case, urls, nginx, tmp, args)
            results.append((case, up, bb))

    cpuinfo = Path("/proc/cpuinfo").read_text().splitlines()
    cpu_model = next((line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name")), "?")
    print("# Probe throughput: upwatch and blackbox_exporter, same machine, same run")
    print()
    print(f"{time.strftime('%Y-%m-%d %H:%M %Z')}, {os.cpu_count()} x {cpu_model}, Python {sys.version.split()[0]};")
    print(f"{versions} (1 process, CPU not counted);")
    workers = f"workers: {args.upwatch_workers}" if args.upwatch_workers is not None else "no workers key"
    cap = args.max_concurrent_probes or f"{UPWATCH_MAX_CONCURRENT_PROBES} (default)"
    print(
        f"upwatch config: {workers}, max_concurrent_probes {cap}, probe timeout {TIMEOUT}; blackbox driver: at most "
        f"{driver_cap(args) or 'unlimited'} probes in flight; {time.monotonic() - began:.0f} s in all."
    )
    print()
    for case, up, bb in results:
        print_case(case, up, bb, args)


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:  # every child was stopped on the way out
        print("interrupted", file=sys.stderr)
        sys.exit(130)
