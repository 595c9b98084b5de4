"""Benchmark: CPU cost of the probe exposition, per refreshed endpoint and per full render.

In-process, no network: a store of N endpoints (labels, an SLO, HTTPS results), each probed once,
then times what the agent does with it:

- refresh: one endpoint gets a new result and `refresh((name,))` re-renders it; the agent does
  this on the event loop after every probe result;
- render: the whole probe exposition, as a scrape asks for it, when nothing changed and after
  every endpoint changed (the steady state of 1,000 probes/s scraped every 15 s);
- the server's share: the body gzip-compressed as the server does it when Prometheus asks;
- loop lag: how late a 1 ms asyncio timer fires while scrapes render in a worker thread, which is
  what a scrape does to the probes' own timing;
- memory: what the exposition holds once every endpoint was refreshed many times (the size of
  every object reachable from it but not from the store or the module's constants), and the
  process's RSS growth over the first render.

    .venv/bin/python bench/exposition.py --endpoints 5000
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import statistics
import sys
import threading
import time
from collections.abc import Callable, Iterable
from types import BuiltinFunctionType, FunctionType, ModuleType

import psutil

from exporter.collectors import probes
from exporter.collectors.probes import ProbeExposition
from exporter.compression import gzip_pieces
from exporter.config import Endpoint
from exporter.results import PHASES, ProbeResult
from exporter.store import ResultStore


def _endpoints(count: int) -> list[Endpoint]:
    return [
        Endpoint.model_validate(
            {
                "name": f"ep-{i:05d}",
                "url": f"https://host-{i % 50}.example.com/health/{i}",
                "labels": {"team": f"team-{i % 7}"},
                "slo": {"availability": 99.9},
            }
        )
        for i in range(count)
    ]


def _result(name: str, t: float, duration: float) -> ProbeResult:
    shares = (0.1, 0.2, 0.3, 0.3, 0.1)
    phases = {phase: duration * share for phase, share in zip(PHASES, shares, strict=True)}
    return ProbeResult(
        endpoint=name,
        success=True,
        started_at=t,
        duration_seconds=duration,
        status_code=200,
        http_version=1.1,
        content_length=16,
        ssl=True,
        cert_expiry_timestamp=1_800_000_000.0,
        phases=phases,
    )


def probed_store(count: int) -> ResultStore:
    """A store of `count` endpoints (labels, an SLO), each with one successful HTTPS result."""
    store = ResultStore()
    endpoints = _endpoints(count)
    store.sync(endpoints)
    t = time.time()
    for i, ep in enumerate(endpoints):
        store.record(_result(ep.name, t, 0.05 + (i % 100) / 1000))
    return store


def pieces(body: str | bytes | list[bytes]) -> list[bytes]:
    """What `render` returned, as the server gets it: one string once, UTF-8 pieces now."""
    if isinstance(body, str):
        return [body.encode()]
    return [body] if isinstance(body, bytes) else body


class _Timings:
    """Wall-clock and CPU time (this thread's) of repeated calls; CPU time is what other processes on a
    busy machine do not inflate."""

    def __init__(self, unit: float) -> None:
        self.unit = unit  # 1e3 for ms, 1e6 for µs
        self.wall: list[float] = []
        self.cpu: list[float] = []

    def time(self, fn: Callable[[], object]) -> None:
        w0, c0 = time.perf_counter(), time.thread_time()
        fn()
        self.cpu.append((time.thread_time() - c0) * self.unit)
        self.wall.append((time.perf_counter() - w0) * self.unit)

    def __str__(self) -> str:
        unit = "ms" if self.unit == 1e3 else "µs"
        wall = sorted(self.wall)
        p99 = wall[min(len(wall) - 1, round(0.99 * (len(wall) - 1)))]
        return (
            f"CPU median {statistics.median(self.cpu):7.1f} {unit}   "
            f"wall median {statistics.median(wall):7.1f}  p99 {p99:7.1f}  max {wall[-1]:7.1f} {unit}"
        )


def _reachable(roots: Iterable[object], shared: dict[int, object] | None = None) -> dict[int, object]:
    """Every object reachable from `roots` (by id) that is not in `shared`; classes, functions and
    modules are neither counted nor followed."""
    seen: dict[int, object] = {}
    todo = list(roots)
    while todo:
        obj = todo.pop()
        key = id(obj)
        if key in seen or (shared is not None and key in shared):
            continue
        if isinstance(obj, type | ModuleType | FunctionType | BuiltinFunctionType):
            continue
        seen[key] = obj
        todo.extend(gc.get_referents(obj))
    return seen


def _held(exposition: ProbeExposition, store: ResultStore) -> int:
    """Bytes that only the exposition keeps alive: what dropping it would free."""
    gc.collect()
    shared = _reachable([store, vars(probes)])
    return sum(map(sys.getsizeof, _reachable([exposition], shared).values()))


async def loop_lag(work: Callable[[], object], seconds: float) -> list[float]:
    """Lateness (ms) of a 1 ms timer while `work` runs over and over in a worker thread."""
    stop = threading.Event()

    def scrapes() -> None:
        while not stop.is_set():
            work()

    thread = threading.Thread(target=scrapes)
    thread.start()
    lags = []
    loop = asyncio.get_running_loop()
    end = loop.time() + seconds
    try:
        while loop.time() < end:
            t0 = loop.time()
            await asyncio.sleep(0.001)
            lags.append((loop.time() - t0 - 0.001) * 1000)
    finally:
        stop.set()
        thread.join()
    return lags


def main() -> None:
    """Run the benchmark and print its figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--endpoints", type=int, default=5000)
    parser.add_argument("--refreshes", type=int, default=15000, help="single-endpoint refreshes to time")
    parser.add_argument("--renders", type=int, default=10, help="full renders to time, each case")
    parser.add_argument("--lag-seconds", type=float, default=5.0, help="how long to watch the loop's timer")
    args = parser.parse_args()

    store = probed_store(args.endpoints)
    names = [ep.endpoint.name for ep in store.snapshot().endpoints]
    t = time.time()
    process = psutil.Process()
    gc.collect()
    rss_before = process.memory_info().rss
    exposition = ProbeExposition(store)

    first = _Timings(1e3)
    first.time(exposition.render)
    gc.collect()
    rss_growth = process.memory_info().rss - rss_before
    body = b"".join(pieces(exposition.render()))
    lines = body.count(b"\n")
    samples = sum(1 for line in body.split(b"\n") if line and not line.startswith(b"#"))

    # One changed endpoint at a time, re-rendered as the agent does after each result.
    refresh = _Timings(1e6)
    for k in range(args.refreshes):
        name = names[k % len(names)]
        store.record(_result(name, t + 1 + k, 0.07 + (k % 50) / 1000))
        refresh.time(lambda name=name: exposition.refresh((name,)))

    unchanged = _Timings(1e3)
    for _ in range(args.renders):
        unchanged.time(exposition.render)

    changed = _Timings(1e3)
    for _ in range(args.renders):
        for i, name in enumerate(names):  # every endpoint probed once more, refreshed as the agent does
            store.record(_result(name, time.time(), 0.05 + (i % 90) / 1000))
            exposition.refresh((name,))
        changed.time(exposition.render)

    def server_share() -> None:
        gzip_pieces(pieces(exposition.render()))  # as the server does

    gzipped = _Timings(1e3)
    for _ in range(args.renders):
        gzipped.time(server_share)
    zipped_size = len(gzip_pieces([body]))

    held = _held(exposition, store)
    idle_lag = asyncio.run(loop_lag(lambda: time.sleep(0.01), args.lag_seconds))
    scrape_lag = asyncio.run(loop_lag(server_share, args.lag_seconds))

    print(f"endpoints              {args.endpoints}")
    print(f"exposition             {len(body) / 2**20:.1f} MiB, {lines} lines, {samples} samples")
    print(f"per endpoint           {samples / args.endpoints:.1f} samples")
    print(f"gzip (the server's)    {zipped_size / 2**20:.1f} MiB")
    print(f"first render           {first} (every endpoint rendered from nothing)")
    print(f"refresh of 1 endpoint  {refresh}")
    print(f"render, none changed   {unchanged}")
    print(f"render, all refreshed  {changed}")
    print(f"render + gzip          {gzipped}")
    print(f"loop lag, idle         {format_lags(idle_lag)}")
    print(f"loop lag, scraping     {format_lags(scrape_lag)}")
    print(
        f"memory held            {held / 2**20:.1f} MiB, {held / args.endpoints / 1024:.1f} KiB an endpoint "
        f"(the text itself: {len(body) / args.endpoints / 1024:.1f} KiB)"
    )
    print(f"RSS growth             {rss_growth / 2**20:.1f} MiB over the first render")


def format_lags(ms: list[float]) -> str:
    ordered = sorted(ms)
    p99 = ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]
    return f"median {statistics.median(ms):5.2f} ms   p99 {p99:5.2f} ms   max {max(ms):5.2f} ms   ({len(ms)} timers)"


if __name__ == "__main__":
    main()
