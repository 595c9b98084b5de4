"""Benchmark: the status page for N endpoints with its history from a real Prometheus: fetch, build, render, weight.

Backfills a local Prometheus (Debian's `prometheus` and `promtool`, on 127.0.0.1 and a temporary
data folder) with 91 days of the agent's series for N endpoints, about 3 % of days with an outage
of 5 to 120 minutes (`promtool tsdb create-blocks-from openmetrics`, one file per 2-hour block, as
promtool 2.42 reads its whole input once per block), and the downtime rules of
rules/upwatch-recording.yml where the page reads them (every 15 s in the 5 minutes before each
UTC midnight and before now; `promtool tsdb create-blocks-from rules`). Then times, median and
p95 of --runs: `PrometheusHistory.fetch` of every endpoint (the first read of a new reader, which
reads every day and slot, and the refresh of one that keeps them), `build_page` and `render_page`,
and prints the page's size raw and gzipped.

The counters are sampled every 240 s in the last 25 hours and near midnights and transitions,
hourly elsewhere (the bundle scrapes every 15 s): the queries that look samples up cost the same,
but the one that reads today's raw downtime samples reads fewer than it would in production.

    .venv/bin/python bench/status_prometheus.py                  # 500 endpoints, a few minutes
    .venv/bin/python bench/status_prometheus.py --endpoints 100 --runs 5
    .venv/bin/python bench/status_prometheus.py --hold 3600       # then, while it holds Prometheus up:
    .venv/bin/python bench/status_prometheus.py --url http://127.0.0.1:PORT --now NOW
"""

from __future__ import annotations

import argparse
import gzip
import math
import random
import re
import shutil
import socket
import statistics
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from exporter.config import parse_config
from exporter.status.build import build_page
from exporter.status.page import render_page
from exporter.status.prometheus import PrometheusHistory
from exporter.store import DEFAULT_BUCKETS, ResultStore

REPO = Path(__file__).resolve().parent.parent
DAY, HOUR, GRID, PER_SAMPLE = 86_400, 3600, 240, 4
REASONS = ("timeout", "connect", "http_status")


def _series(name: str, outages: list[tuple[float, float, str]], first: float, now: float, block: dict[int, list[str]]):
    le = 3  # 0.05 s bounds: every probe in that bucket
    anchors = [float(d) for d in range(int(first), int(now) + 1, DAY)] + [now - d * DAY for d in (1, 7, 30)]
    anchors += [t for a, b, _ in outages for t in (a, b)]
    anchors.sort()
    down = failures = incidents = 0.0
    by_reason: dict[str, float] = {}
    prev = first
    labels = f'endpoint="{name}",instance="agent",job="upwatch"'
    for k in range(int((now - first) // GRID) + 1):
        t = first + k * GRID
        outage = next((o for o in outages if o[0] <= t < o[1]), None)
        down += sum(max(0.0, min(t, b) - max(prev, a)) for a, b, _ in outages)
        incidents += sum(1 for a, _, _ in outages if prev < a <= t)
        if outage is not None:
            failures += PER_SAMPLE
            by_reason[outage[2]] = by_reason.get(outage[2], 0) + PER_SAMPLE
        prev = t
        recent = t >= now - 25 * HOUR
        near = any(abs(t - a) <= 720 for a in anchors[max(0, _bisect(anchors, t) - 2) : _bisect(anchors, t) + 2])
        if not (recent or near or t % HOUR == 0):
            continue
        probes = (k + 1) * PER_SAMPLE
        since = max([first] + [a for a, _, _ in outages if a <= t] + [b for _, b, _ in outages if b <= t])
        ts = f"{t:.0f}"
        out = block.setdefault(int(t // 7200), [])
        out.append(f'upwatch_probes_total{{{labels},result="success"}} {probes - failures} {ts}')
        out.append(f'upwatch_probes_total{{{labels},result="failure"}} {failures} {ts}')
        out += [f'upwatch_probe_failures_total{{{labels},reason="{r}"}} {n} {ts}' for r, n in by_reason.items()]
        out.append(f"upwatch_endpoint_downtime_seconds_total{{{labels}}} {down} {ts}")
        out.append(f"upwatch_endpoint_incidents_total{{{labels}}} {incidents} {ts}")
        out.append(f"upwatch_endpoint_state_since_timestamp_seconds{{{labels}}} {since} {ts}")
        out.append(f'upwatch_endpoint_state{{{labels},state="up"}} {0 if outage else 1} {ts}')
        out.append(f'upwatch_endpoint_state{{{labels},state="down"}} {1 if outage else 0} {ts}')
        if recent and (t % 1800 <= GRID or t % 1800 >= 1800 - GRID or t == now):
            for i, bound in enumerate((*DEFAULT_BUCKETS, math.inf)):
                bucket = probes if i >= le else 0
                le_text = "+Inf" if bound == math.inf else str(bound)
                out.append(f'upwatch_probe_duration_seconds_bucket{{{labels},le="{le_text}"}} {bucket} {ts}')
            out.append(f"upwatch_probe_duration_seconds_count{{{labels}}} {probes} {ts}")


def _bisect(values: list[float], x: float) -> int:
    lo, hi = 0, len(values)
    while lo < hi:
        mid = (lo + hi) // 2
        if values[mid] < x:
            lo = mid + 1
        else:
            hi = mid
    return lo


def _parallel(commands: list[list[str]], width: int = 4) -> None:
    running: list[subprocess.Popen[bytes]] = []
    for command in commands:
        running.append(subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE))
        if len(running) >= width:
            _finish(running.pop(0))
    for proc in running:
        _finish(proc)


def _finish(proc: subprocess.Popen[bytes]) -> None:
    _, err = proc.communicate()
    if proc.returncode:
        raise SystemExit(f"{proc.args!r} failed: {err.decode()}")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _start(args: list[str], url: str) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{url}/-/ready", timeout=1) as response:
                if response.status == 200:
                    return proc
        except OSError:
            time.sleep(0.2)
    proc.kill()
    raise SystemExit("prometheus did not get ready")


def _compacted(data: Path, began: float, most: int = 40, wait: float = 1800) -> None:
    deadline = time.monotonic() + wait
    while (blocks := sum(1 for p in data.iterdir() if p.is_dir() and len(p.name) == 26)) > most:
        if time.monotonic() > deadline:
            raise SystemExit(f"Prometheus still holds {blocks} blocks after {wait:.0f} s")
        time.sleep(5)
    print(f"blocks compacted ({blocks} left): {time.perf_counter() - began:.0f} s")


def _timed(runs: int, what: Callable[[], object]) -> tuple[list[float], object]:
    times, result = [], None
    for _ in range(runs):
        began = time.perf_counter()
        result = what()
        times.append((time.perf_counter() - began) * 1000)
    return times, result


_MATCHER = re.compile(r'endpoint=~"[^"]*"')


def _slowest(what: str, timings: list[tuple[float, str]] | None, count: int = 6) -> None:
    """The queries that took longest, and how long all took together."""
    timings = sorted(timings or [], reverse=True)
    print(f"{what}: {len(timings)} queries, {sum(t for t, _ in timings):.2f} s in all; the slowest:")
    for seconds, query in timings[:count]:
        shown = _MATCHER.sub('endpoint=~"…"', query)[:110]
        print(f"  {seconds * 1000:7.1f} ms  {shown}")


def _figures(times: list[float]) -> str:
    ordered = sorted(times)
    p95 = ordered[min(len(ordered) - 1, math.ceil(0.95 * len(ordered)) - 1)]
    return f"median {statistics.median(ordered):7.1f} ms   p95 {p95:7.1f} ms"


def main() -> None:
    """Backfill, time, print."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--endpoints", type=int, default=500)
    parser.add_argument("--runs", type=int, default=9)
    parser.add_argument(
        "--hold",
        type=float,
        default=0,
        help="seconds to keep Prometheus up after the timed runs, to query it (figures print after)",
    )
    parser.add_argument("--url", help="time against this Prometheus (one a --hold run keeps up), without backfilling")
    parser.add_argument("--now", type=float, help="with --url: the moment to read (the one --hold prints)")
    args = parser.parse_args()
    names = [f"service-{i:04d}" for i in range(args.endpoints)]
    if args.url:
        if args.now is None:
            parser.error("--url needs --now")
        config, snapshot = _config(names)
        _report(args, *_measure(args.url, names, args.now, args.runs, config, snapshot))
        return
    promtool, prometheus = shutil.which("promtool"), shutil.which("prometheus")
    if promtool is None or prometheus is None:
        raise SystemExit("needs Debian's prometheus package (prometheus and promtool)")
    rng = random.Random(1)
    now = float(math.floor(time.time() / HOUR) * HOUR - 2 * HOUR + 20 * 60)
    today = math.floor(now / DAY) * DAY
    first = float(today - 91 * DAY)
    with tempfile.TemporaryDirectory(prefix="upwatch-bench-") as folder:
        tmp = Path(folder)
        began = time.perf_counter()
        blocks: dict[int, list[str]] = {}
        incidents = 0
        for name in names:
            outages = []
            for d in range(90):
                if rng.random() < 0.03:
                    start = today - (89 - d) * DAY + GRID * rng.randrange(0, (DAY - 7200) // GRID)
                    outages.append((float(start), float(start + GRID * rng.randrange(2, 30)), rng.choice(REASONS)))
            incidents += len(outages)
            _series(name, outages, first, now, blocks)
        imports = []
        for block, lines in blocks.items():
            path = tmp / f"block-{block}.om"
            path.write_text("\n".join(lines) + "\n# EOF\n")
            imports.append([promtool, "tsdb", "create-blocks-from", "openmetrics", "-q", str(path), str(tmp / "data")])
        _parallel(imports)
        print(f"series written and imported: {time.perf_counter() - began:.0f} s ({incidents} incidents)")
        (tmp / "prometheus.yml").write_text("global: {scrape_interval: 15s}\n")
        port = _free_port()
        url = f"http://127.0.0.1:{port}"
        prom = [
            prometheus,
            f"--config.file={tmp / 'prometheus.yml'}",
            f"--storage.tsdb.path={tmp / 'data'}",
            "--storage.tsdb.retention.time=200d",
            f"--web.listen-address=127.0.0.1:{port}",
        ]
        groups = yaml.safe_load((REPO / "rules" / "upwatch-recording.yml").read_text())["groups"]
        wanted = [
            r
            for g in groups
            for r in g["rules"]
            if r.get("record", "").startswith("endpoint:upwatch_endpoint_downtime_seconds:increase")
            and not r["record"].endswith("1h")
        ]
        proc = _start(prom, url)
        try:
            backfills = []
            for i, end in enumerate([*range(int(first + DAY), int(today) + 1, DAY), now]):
                rules = [r for r in wanted if end == now or r["record"].endswith("1d")]
                path = tmp / f"rules-{i}.yml"
                path.write_text(yaml.safe_dump({"groups": [{"name": "bench", "interval": "15s", "rules": rules}]}))
                command = [promtool, "tsdb", "create-blocks-from", "rules", "-q", f"--url={url}"]
                command += [f"--start={end - 300:.0f}", f"--end={end:.0f}", f"--output-dir={tmp / 'rule-blocks'}"]
                backfills.append([*command, str(path)])
            _parallel(backfills)
        finally:
            proc.terminate()
            proc.wait()
        for block in (tmp / "rule-blocks").iterdir():
            shutil.move(str(block), tmp / "data" / block.name)
        print(f"rules backfilled: {time.perf_counter() - began:.0f} s")

        config, snapshot = _config(names)
        proc = _start(prom, url)
        try:
            # promtool made a block per 2 hours; a Prometheus that has run for 90 days holds a few
            # compacted ones, and every query reads the index of each block in its range: wait for
            # the compaction (it starts a minute after startup).
            _compacted(tmp / "data", began)
            html, histories, figures = _measure(url, names, now, args.runs, config, snapshot)
            if args.hold:
                print(f"Prometheus at {url} for {args.hold:g} s (now = {now:.0f})", flush=True)
                time.sleep(args.hold)
        finally:
            proc.terminate()
            proc.wait()
        _report(args, html, histories, figures)


def _report(args: argparse.Namespace, html: str, histories: dict, figures: dict[str, list[float]]) -> None:
    fetches, builds, renders = figures["refresh"], figures["build"], figures["render"]
    totals = [f + b + r for f, b, r in zip(fetches, builds, renders, strict=True)]
    shown = sum(len(h.incidents) for h in histories.values())
    print(f"{args.endpoints} endpoints, 90 days, {shown} incidents read back; {args.runs} runs")
    print(f"  first read, 3 runs      {_figures(figures['first'])}  (every day and slot; in the background)")
    print(f"  refresh from Prometheus {_figures(fetches)}  (the current figures; days and slots kept)")
    print(f"  build_page              {_figures(builds)}")
    print(f"  render_page             {_figures(renders)}")
    print(f"  all three               {_figures(totals)}")
    body = html.encode()
    print(f"  page: {len(body) / 1000:.0f} kB, gzipped {len(gzip.compress(body)) / 1000:.0f} kB")


def _config(names: list[str]) -> tuple[Any, Any]:
    """The benchmark's config of these endpoints (grouped by team, 50 a team) and a snapshot of a store of it."""
    lines = ["status_page:", "  title: Benchmark", "  group_by: team", "endpoints:"]
    lines += [
        f"  - {{name: {n}, url: 'https://svc{i}.example.com/health', labels: {{team: t{i // 50}}}}}"
        for i, n in enumerate(names)
    ]
    config = parse_config("\n".join(lines) + "\n")
    store = ResultStore()
    store.sync(config.probed)
    return config, store.snapshot()


def _measure(
    url: str, names: list[str], now: float, runs: int, config: Any, snapshot: Any
) -> tuple[str, dict, dict[str, list[float]]]:
    """Time first reads, refreshes, build_page and render_page against the Prometheus at `url`."""
    patient = PrometheusHistory(url, timeout=300)
    patient.fetch(names, now)
    patient.close()
    # Timed without the page's 2-second timeout, so that a slow query shows in the figures.
    # A first read (an agent just started: nothing kept) reads every day and slot ...
    firsts = []
    for _ in range(3):
        fresh = PrometheusHistory(url, timeout=300)
        t0 = time.perf_counter()
        fresh.fetch(names, now)
        firsts.append((time.perf_counter() - t0) * 1000)
        fresh.close()
    # ... the refreshes after it only the current figures.
    reader = PrometheusHistory(url, timeout=300)
    reader.timings = []
    reader.fetch(names, now)
    _slowest("first read", reader.timings)
    reader.timings = []
    fetches, histories = _timed(runs, lambda: reader.fetch(names, now))
    _slowest("refreshes", reader.timings)
    assert isinstance(histories, dict)
    builds, view = _timed(runs, lambda: build_page(config, snapshot, histories, now, history_limit=len(names) + 1))
    renders, html = _timed(runs, lambda: render_page(view))  # type: ignore[arg-type]
    reader.close()
    return html, histories, {"first": firsts, "refresh": fetches, "build": builds, "render": renders}


if __name__ == "__main__":
    main()
