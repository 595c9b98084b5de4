"""Benchmark: the status page for N endpoints from the agent's own history: build time, render time, weight.

Builds the real pieces in one process: a config of N endpoints (in groups of 50), a ResultStore
and a History fed through their public API with 90 days of results (one every --every seconds per
endpoint, on an injected clock; about 3 % of days with an outage of 5 to 120 minutes), then times
what serving `/` costs: the view (`build_page`: store snapshot and history summaries) and the HTML
(`render_page`), median of --runs, and prints the page's size raw and gzipped (as served to
browsers that accept gzip, which all do). Also the JSON API and the Atom feed.

    .venv/bin/python bench/status_page.py                  # 500 endpoints, about a minute
    .venv/bin/python bench/status_page.py --endpoints 100 --every 300
"""

from __future__ import annotations

import argparse
import gzip
import random
import statistics
import time

from exporter.config import Config, parse_config
from exporter.history import History
from exporter.results import FailureReason, ProbeResult
from exporter.status.build import build_page
from exporter.status.feeds import api_json, atom_feed
from exporter.status.page import render_page
from exporter.store import ResultStore

DAY = 86_400


def arguments(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--endpoints", type=int, default=500)
    parser.add_argument("--every", type=float, default=900.0, help="seconds between two results of an endpoint")
    parser.add_argument("--days", type=int, default=90)
    parser.add_argument("--runs", type=int, default=7)
    return parser.parse_args(argv)


def fill(args: argparse.Namespace) -> tuple[Config, ResultStore, History, float, int, float]:
    """The config, store and history, filled; also the time now, the results recorded and the seconds it took."""
    rng = random.Random(1)
    lines = ["status_page:", "  title: Benchmark", "  group_by: team", "endpoints:"]
    for i in range(args.endpoints):
        lines.append(
            f"  - {{name: service-{i:04d}, url: 'https://svc{i}.example.com/health', labels: {{team: t{i // 50}}}}}"
        )
    config = parse_config("\n".join(lines) + "\n")
    now = time.time()
    clock_now = [now - args.days * DAY]
    store = ResultStore(clock=lambda: clock_now[0])
    store.sync(config.probed)
    history = History(clock=lambda: clock_now[0], buckets=store.buckets)
    began = time.perf_counter()
    results = 0
    for ep in config.probed:
        outage_days = {d for d in range(args.days) if rng.random() < 0.03}
        outages = {d: (rng.uniform(0, DAY - 7200), rng.uniform(300, 7200)) for d in outage_days}
        t = now - args.days * DAY + rng.uniform(0, args.every)
        while t < now:
            day = int((t - (now - args.days * DAY)) // DAY)
            start, length = outages.get(day, (-1.0, 0.0))
            offset = (t - (now - args.days * DAY)) % DAY
            down = start <= offset < start + length
            duration = rng.lognormvariate(-3.5, 0.5)
            if down:
                result = ProbeResult(ep.name, False, t, 10.0, FailureReason.TIMEOUT, "timed out after 10s")
            else:
                result = ProbeResult(ep.name, True, t, duration, status_code=200)
            clock_now[0] = t + result.duration_seconds
            history.record(result, store.record(result))
            results += 1
            t += args.every
    clock_now[0] = now
    return config, store, history, now, results, time.perf_counter() - began


def main() -> None:
    """Fill, time, print."""
    args = arguments()
    config, store, history, now, results, fill_seconds = fill(args)

    views, pages = [], []
    page = html = ""
    for _ in range(args.runs):
        t0 = time.perf_counter()
        view = build_page(config, store.snapshot(), history.summaries(), now, history_limit=args.endpoints)
        t1 = time.perf_counter()
        html = render_page(view)
        t2 = time.perf_counter()
        views.append(t1 - t0)
        pages.append(t2 - t1)
        page = html
    raw = page.encode()
    zipped = gzip.compress(raw, 6)
    api = api_json(view).encode()
    feed = atom_feed(view)
    print(f"# Status page: {args.endpoints} endpoints, {args.days} days of history")
    print()
    print(f"{results:,} results recorded in {fill_seconds:.1f} s (one every {args.every:g} s per endpoint).")
    print()
    print("| step | median ms | min ms |")
    print("| --- | ---: | ---: |")
    print(f"| view (snapshot + history summaries) | {statistics.median(views) * 1000:.0f} | {min(views) * 1000:.0f} |")
    print(f"| HTML | {statistics.median(pages) * 1000:.0f} | {min(pages) * 1000:.0f} |")
    total = [a + b for a, b in zip(views, pages, strict=True)]
    print(f"| both | {statistics.median(total) * 1000:.0f} | {min(total) * 1000:.0f} |")
    print()
    print(f"Page: {len(raw) / 1000:.0f} kB, gzipped {len(zipped) / 1000:.0f} kB; JSON API {len(api) / 1000:.0f} kB")
    print(f"(gzipped {len(gzip.compress(api, 6)) / 1000:.0f} kB); Atom feed {len(feed) / 1000:.0f} kB.")


if __name__ == "__main__":
    main()
