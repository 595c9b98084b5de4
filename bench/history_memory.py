"""Benchmark: memory and time of the status page's probe history (exporter/history.py) at steady state.

Fills a History with synthetic results of N endpoints over D days, through its public API on an
injected clock, with the transitions of a real EndpointState per endpoint: a probe every
`--interval` seconds, every `--recent-interval` seconds in the last 24 hours (where the 30-minute
slots look at them), and outages at random, `--incidents-per-day` per endpoint on average, each
1 to 30 minutes longer than the three failed probes that confirm it. Each failed probe has a
message string of its own, its text one of a few, as the prober's are ("connection refused",
"connect timed out", ...). Then prints:

  - resident memory growth (RSS) over the fill and tracemalloc's count of the bytes it left
    allocated (a second fill into a fresh History, with tracemalloc on);
  - the cost of `record` alone, per result, at either interval, and the time of the whole fill;
  - the time of `summaries()` for every endpoint (wall and CPU; the machine's load average with
    it, as other work on the machine slows it down), and of one `summary()`;
  - tracemalloc's bytes for one endpoint without incidents (what every endpoint costs at least)
    and the upper bound: one endpoint with the full incident history, times N, with one message
    and with all of them distinct.

Run it from the repository's root with the checkout first on the path (PYTHONPATH=.). At the
defaults (500 endpoints, 90 days) it takes some 8 minutes, 6 of them in the second fill under
tracemalloc (`--no-tracemalloc` skips it):

    PYTHONPATH=. .venv/bin/python bench/history_memory.py --endpoints 500 --days 90

What an endpoint keeps does not depend on how often it is probed, only on its incidents, so 5,000
endpoints fill in some 4 minutes with fewer probes and the same outages:

    PYTHONPATH=. .venv/bin/python bench/history_memory.py --endpoints 5000 --interval 3600 \
        --recent-interval 60 --no-tracemalloc
"""

from __future__ import annotations

import argparse
import gc
import os
import random
import statistics
import time
import tracemalloc
from collections.abc import Iterator
from types import MappingProxyType

import psutil

from exporter.history import MAX_INCIDENTS, History
from exporter.results import PHASES, FailureReason, ProbeResult
from exporter.state import EndpointState, Transition

DAY = 86_400
START = 19_600 * DAY  # a UTC midnight
_PHASES = MappingProxyType(dict.fromkeys(PHASES, 0.0))  # shared: the synthetic results need no phase timings
_MESSAGES = ("connection refused", "connect timed out", "status 503 not in the expected statuses", "read timed out")


class Clock:
    """The injected clock: moved by the fill, read by the summaries."""

    def __init__(self) -> None:
        self.now = float(START)

    def __call__(self) -> float:
        return self.now


def _schedule(args: argparse.Namespace, end: float) -> Iterator[float]:
    """Start times of one endpoint's probes, oldest first, from a random offset."""
    t = START + random.uniform(0, args.interval)
    recent = end - DAY
    while t < end:
        yield t
        t += args.recent_interval if t >= recent else args.interval


def _outages(args: argparse.Namespace, end: float) -> list[tuple[float, float]]:
    """Random periods in which the endpoint fails, sorted: 1 to 30 minutes plus the 3 probes that confirm them."""
    count = round(args.days * args.incidents_per_day * random.uniform(0.5, 1.5))
    starts = sorted(random.uniform(START, end) for _ in range(count))
    confirm = [3 * (args.recent_interval if s >= end - DAY else args.interval) for s in starts]
    return [(s, s + c + random.uniform(60, 1800)) for s, c in zip(starts, confirm, strict=True)]


def _fill_endpoint(history: History, name: str, args: argparse.Namespace, end: float) -> tuple[list[int], list[float]]:
    """Feed one endpoint's synthetic results; how many, and the seconds spent in `History.record` alone.

    Both are split in two: before the last day and in it (the two intervals).
    """
    state = EndpointState(failure_threshold=3, success_threshold=1, degraded_after=2.0, created_at=START)
    outages = _outages(args, end)
    o = 0
    spent = [0.0, 0.0]
    count = [0, 0]
    for t in _schedule(args, end):
        while o < len(outages) and outages[o][1] <= t:
            o += 1
        failing = o < len(outages) and outages[o][0] <= t
        if failing:
            result = ProbeResult(
                endpoint=name,
                success=False,
                started_at=t,
                duration_seconds=random.uniform(0.001, 10.0),
                reason=FailureReason.CONNECT,
                message="".join(random.choice(_MESSAGES)),  # a new string of one of the usual texts
                phases=_PHASES,
            )
        else:
            result = ProbeResult(
                endpoint=name,
                success=True,
                started_at=t,
                duration_seconds=random.lognormvariate(-2.5, 0.6),
                status_code=200,
                phases=_PHASES,
            )
        transition: Transition | None = state.record(result)
        recent = int(t >= end - DAY)
        before = time.perf_counter()
        history.record(result, transition)
        spent[recent] += time.perf_counter() - before
        count[recent] += 1
    return count, spent


def _fill(history: History, clock: Clock, args: argparse.Namespace) -> tuple[list[int], list[float], float]:
    """Fill every endpoint; results and seconds in `record` (before the last day, in it), seconds in all."""
    end = START + args.days * DAY
    random.seed(args.seed)
    results, spent = [0, 0], [0.0, 0.0]
    began = time.perf_counter()
    for i in range(args.endpoints):
        n, s = _fill_endpoint(history, f"endpoint-{i:04d}", args, end)
        results = [a + b for a, b in zip(results, n, strict=True)]
        spent = [a + b for a, b in zip(spent, s, strict=True)]
    clock.now = end
    return results, spent, time.perf_counter() - began


def _rss() -> int:
    gc.collect()
    return int(psutil.Process().memory_info().rss)


def _quiet_endpoint_bytes() -> int:
    """tracemalloc's bytes for one endpoint probed for 90 days without incidents: what any endpoint costs."""
    history = History(clock=Clock())
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    for i in range(90 * 96):
        result = ProbeResult(
            endpoint="quiet", success=True, started_at=START + i * 900.0, duration_seconds=0.1, phases=_PHASES
        )
        history.record(result, None)
        del result
    gc.collect()
    size = tracemalloc.get_traced_memory()[0] - base
    tracemalloc.stop()
    return size


def _worst_endpoint_bytes(distinct: bool) -> int:
    """tracemalloc's bytes for one endpoint holding MAX_INCIDENTS incidents, with one message or distinct ones."""
    history = History(clock=Clock())
    state = EndpointState(failure_threshold=1, success_threshold=1, degraded_after=None, created_at=START)
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    for i in range(MAX_INCIDENTS):
        t = START + i * 600
        for ok, at in ((False, t), (True, t + 60)):
            text = f"no answer within 10s from 192.0.2.{i if distinct else 1}:443 after the TLS handshake"
            result = ProbeResult(
                endpoint="worst",
                success=ok,
                started_at=at,
                duration_seconds=0.1,
                reason=None if ok else FailureReason.TIMEOUT,
                message="" if ok else text,
                phases=_PHASES,
            )
            history.record(result, state.record(result))
            del result, text
    gc.collect()
    size = tracemalloc.get_traced_memory()[0] - base
    tracemalloc.stop()
    return size


def main() -> None:
    """Run the benchmark and print its figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--endpoints", type=int, default=500)
    parser.add_argument("--days", type=int, default=90)
    parser.add_argument("--interval", type=float, default=900.0, help="seconds between probes before the last day")
    parser.add_argument("--recent-interval", type=float, default=30.0, help="seconds between probes in the last day")
    parser.add_argument("--incidents-per-day", type=float, default=0.5, help="per endpoint, on average")
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--no-tracemalloc", action="store_true", help="skip the second fill under tracemalloc")
    args = parser.parse_args()

    clock = Clock()
    rss_before = _rss()
    history = History(clock=clock)
    results, spent, elapsed = _fill(history, clock, args)
    rss_after = _rss()
    incidents = sum(len(s.incidents) for s in history.summaries().values())
    print(f"fill: {args.endpoints} endpoints, {args.days} days, {sum(results):,} results, {incidents:,} incidents kept")
    print(
        f"  record alone: {spent[0] / results[0] * 1e6:.2f} us per result every {args.interval:g} s,"
        f" {spent[1] / results[1] * 1e6:.2f} us every {args.recent_interval:g} s; whole fill {elapsed:.1f} s"
    )
    grown = rss_after - rss_before
    print(f"  RSS growth: {grown / 2**20:.2f} MiB ({grown / args.endpoints:,.0f} B per endpoint)")

    runs, cpu = [], []
    for _ in range(5):
        began, began_cpu = time.perf_counter(), time.process_time()
        summaries = history.summaries()
        runs.append(time.perf_counter() - began)
        cpu.append(time.process_time() - began_cpu)
        del summaries
    summaries = history.summaries()
    assert len(summaries) == args.endpoints
    one = []
    for _ in range(50):
        began = time.perf_counter()
        history.summary("endpoint-0000")
        one.append(time.perf_counter() - began)
    print(
        f"summaries(): {statistics.median(runs) * 1e3:.0f} ms for {args.endpoints} endpoints"
        f" (median of 5, min {min(runs) * 1e3:.0f} ms; CPU {statistics.median(cpu) * 1e3:.0f} ms;"
        f" load average {os.getloadavg()[0]:.2f})"
    )
    print(f"summary(): {statistics.median(one) * 1e3:.2f} ms for one endpoint (median of 50)")
    del summaries, history
    gc.collect()

    if not args.no_tracemalloc:
        clock = Clock()
        tracemalloc.start()
        base = tracemalloc.get_traced_memory()[0]
        history = History(clock=clock)
        _fill(history, clock, args)
        gc.collect()
        traced = tracemalloc.get_traced_memory()[0] - base
        tracemalloc.stop()
        each = traced / args.endpoints
        print(f"tracemalloc: {traced / 2**20:.2f} MiB left allocated by the fill ({each:,.0f} B per endpoint)")
        del history

    print(f"one endpoint without incidents: {_quiet_endpoint_bytes():,} B (tracemalloc)")
    for distinct in (False, True):
        worst = _worst_endpoint_bytes(distinct)
        print(
            f"full incident history: {worst:,} B for one endpoint with {MAX_INCIDENTS} incidents"
            f" ({'distinct' if distinct else 'one'} 63-character message{'s' if distinct else ''});"
            f" x {args.endpoints} = {worst * args.endpoints / 2**20:.2f} MiB"
        )


if __name__ == "__main__":
    main()
