"""Benchmark: host-metrics scrape time of upwatch next to node_exporter's, same machine, same run.

Starts Debian's node_exporter (its default collectors, as a user would run it, systemd off) and
`upwatch serve` with host metrics only, both on loopback, then scrapes them in turns and prints
latency percentiles, response size and series count for each.

    .venv/bin/python bench/host_scrape.py --scrapes 200
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait(client: httpx.Client, url: str) -> None:
    for _ in range(200):
        try:
            if client.get(url).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.05)
    raise SystemExit(f"{url} never answered")


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def main() -> None:
    """Run the benchmark and print its figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scrapes", type=int, default=200, help="scrapes of each exporter")
    parser.add_argument("--pause", type=float, default=0.05, help="seconds between scrapes")
    args = parser.parse_args()
    node_exporter = shutil.which("prometheus-node-exporter")
    if node_exporter is None:
        raise SystemExit("install Debian's prometheus-node-exporter first (scripts/test does)")

    ne_port, up_port = _free_port(), _free_port()
    with tempfile.TemporaryDirectory() as tmp:
        cfg = Path(tmp) / "upwatch.yml"
        cfg.write_text("host: {enabled: true}\n")
        procs = [
            subprocess.Popen(
                [node_exporter, f"--web.listen-address=127.0.0.1:{ne_port}", "--no-collector.systemd"],
                stderr=subprocess.DEVNULL,
            ),
            subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "exporter",
                    "serve",
                    "--config",
                    str(cfg),
                    "--listen",
                    f"127.0.0.1:{up_port}",
                    "--log-level",
                    "warning",
                ],
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            ),
        ]
        targets = {
            "node_exporter 1.5 (Debian, default collectors)": f"http://127.0.0.1:{ne_port}/metrics",
            "upwatch (host metrics only)": f"http://127.0.0.1:{up_port}/metrics",
        }
        times: dict[str, list[float]] = {name: [] for name in targets}
        sizes: dict[str, tuple[int, int]] = {}
        try:
            with httpx.Client(timeout=10) as client:
                for url in targets.values():
                    _wait(client, url)
                    client.get(url)  # warm-up
                for _ in range(args.scrapes):
                    for name, url in targets.items():
                        t0 = time.perf_counter()
                        resp = client.get(url, headers={"Accept-Encoding": "identity"})
                        times[name].append((time.perf_counter() - t0) * 1000)
                        series = sum(1 for line in resp.text.splitlines() if line and not line.startswith("#"))
                        sizes[name] = (len(resp.content), series)
                        time.sleep(args.pause)
        finally:
            for proc in procs:
                proc.terminate()
                proc.wait(10)
    print(f"{args.scrapes} scrapes each, taken in turns, {args.pause}s apart")
    for name, values in times.items():
        size, series = sizes[name]
        print(
            f"{name:48} p50 {statistics.median(values):6.1f} ms  p95 {_pct(values, 95):6.1f} ms  "
            f"max {max(values):6.1f} ms  {size / 1024:5.0f} KiB  {series} series"
        )


if __name__ == "__main__":
    main()
