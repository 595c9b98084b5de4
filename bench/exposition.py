"""Benchmark: CPU cost of the probe exposition, per refreshed endpoint and per full render.

In-process, no network: a store of N endpoints (labels, an SLO, HTTPS results), each probed once,
then times what the agent does with it:

- refresh: one endpoint gets a new result and `refresh((name,))` re-renders it; the agent does
  this on the event loop after every probe result;
- render: the whole probe exposition, as a scrape asks for it, when nothing changed and after
  every endpoint changed (the steady state of 1,000 probes/s scraped every 15 s);
- the server's share: the body encoded and gzip-compressed at level 1, as Prometheus asks;
- loop lag: how late a 1 ms asyncio timer fires while scrapes render in a worker thread, which is
  what a scrape does to the probes' own timing.

    .venv/bin/python bench/exposition.py --endpoints 5000
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import statistics
import threading
import time
from collections.abc import Callable

from exporter.collectors.probes import ProbeExposition
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


def _as_bytes(body: str | bytes) -> bytes:
    return body.encode() if isinstance(body, str) else body


def _timed(fn: Callable[[], object], repeat: int) -> list[float]:
    """Milliseconds of each of `repeat` calls."""
    out = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t0) * 1000)
    return out


def _figures(ms: list[float]) -> str:
    ordered = sorted(ms)
    p99 = ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]
    return f"median {statistics.median(ms):8.2f} ms   p99 {p99:8.2f} ms   max {max(ms):8.2f} ms"


async def _loop_lag(work: Callable[[], object], seconds: float) -> list[float]:
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
    parser.add_argument("--refreshes", type=int, default=5000, help="single-endpoint refreshes to time")
    parser.add_argument("--renders", type=int, default=10, help="full renders to time, each case")
    parser.add_argument("--lag-seconds", type=float, default=5.0, help="how long to watch the loop's timer")
    args = parser.parse_args()

    store = ResultStore()
    endpoints = _endpoints(args.endpoints)
    names = [ep.name for ep in endpoints]
    store.sync(endpoints)
    t = time.time()
    for i, name in enumerate(names):
        store.record(_result(name, t, 0.05 + (i % 100) / 1000))
    exposition = ProbeExposition(store)

    t0 = time.perf_counter()
    body = _as_bytes(exposition.render())
    first = (time.perf_counter() - t0) * 1000
    lines = body.count(b"\n")
    samples = sum(1 for line in body.split(b"\n") if line and not line.startswith(b"#"))

    # One changed endpoint at a time, re-rendered as the agent does after each result.
    per_refresh = []
    for k in range(args.refreshes):
        name = names[k % len(names)]
        store.record(_result(name, t + 1 + k, 0.07 + (k % 50) / 1000))
        t0 = time.perf_counter()
        exposition.refresh((name,))
        per_refresh.append((time.perf_counter() - t0) * 1e6)

    unchanged = _timed(exposition.render, args.renders)

    def every_endpoint_changed() -> None:
        for i, name in enumerate(names):
            store.record(_result(name, time.time(), 0.05 + (i % 90) / 1000))
            exposition.refresh((name,))

    changed = []
    for _ in range(args.renders):
        every_endpoint_changed()
        changed += _timed(exposition.render, 1)

    def server_share() -> None:
        gzip.compress(_as_bytes(exposition.render()), compresslevel=1)

    gzipped = _timed(server_share, args.renders)
    zipped_size = len(gzip.compress(body, compresslevel=1))

    idle_lag = asyncio.run(_loop_lag(lambda: time.sleep(0.01), args.lag_seconds))
    scrape_lag = asyncio.run(_loop_lag(server_share, args.lag_seconds))

    print(f"endpoints              {args.endpoints}")
    print(f"exposition             {len(body) / 2**20:.1f} MiB, {lines} lines, {samples} samples")
    print(f"per endpoint           {samples / args.endpoints:.1f} samples")
    print(f"gzip -1                {zipped_size / 2**20:.1f} MiB")
    print(f"first render           {first:8.1f} ms (every endpoint rendered from nothing)")
    print(
        f"refresh of 1 endpoint  median {statistics.median(per_refresh):6.1f} µs   "
        f"p99 {sorted(per_refresh)[round(0.99 * (len(per_refresh) - 1))]:6.1f} µs"
    )
    print(f"render, none changed   {_figures(unchanged)}")
    print(f"render, all refreshed  {_figures(changed)}")
    print(f"render + gzip -1       {_figures(gzipped)}")
    print(f"loop lag, idle         {_figures(idle_lag)}")
    print(f"loop lag, scraping     {_figures(scrape_lag)}")


if __name__ == "__main__":
    main()
