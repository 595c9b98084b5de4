"""Benchmark: /metrics latency of `upwatch serve` while it probes N endpoints every few seconds.

Starts a local target server (its own process), writes a config of N endpoints pointing at it,
runs `upwatch serve` as a real process, lets the probes run, then scrapes /metrics repeatedly and
prints latency percentiles, response size and series count, and the agent's CPU and memory use.

    .venv/bin/python bench/scrape_latency.py --endpoints 100 --interval 5s --scrapes 300
"""

from __future__ import annotations

import argparse
import http.server
import multiprocessing
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import psutil


class _Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = b'{"status": "UP"}'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


def _serve_target(port: int) -> None:
    http.server.ThreadingHTTPServer(("127.0.0.1", port), _Handler).serve_forever()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def main() -> None:
    """Run the benchmark and print its figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--endpoints", type=int, default=100)
    parser.add_argument("--interval", default="5s")
    parser.add_argument("--warmup", type=float, default=12.0, help="seconds of probing before scraping")
    parser.add_argument("--scrapes", type=int, default=300)
    parser.add_argument("--scrape-every", type=float, default=0.1, help="seconds between scrapes")
    parser.add_argument("--gzip", action="store_true", help="ask for a gzip-compressed response, as Prometheus does")
    args = parser.parse_args()

    target_port, agent_port = _free_port(), _free_port()
    target = multiprocessing.Process(target=_serve_target, args=(target_port,), daemon=True)
    target.start()
    with tempfile.TemporaryDirectory() as tmp:
        cfg = Path(tmp) / "upwatch.yml"
        lines = ["endpoints:"]
        for i in range(args.endpoints):
            lines += [
                f"  - name: ep-{i:04d}",
                f"    url: http://127.0.0.1:{target_port}/health/{i}",
                f"    interval: {args.interval}",
                "    timeout: 2s",
                '    expect: {body_matches: \'"status":\\s*"UP"\'}',
                f"    labels: {{team: team-{i % 7}}}",
                "    slo: {availability: 99.9}",
            ]
        cfg.write_text("\n".join(lines) + "\n")
        agent = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "exporter",
                "serve",
                "--config",
                str(cfg),
                "--listen",
                f"127.0.0.1:{agent_port}",
                "--log-format",
                "json",
                "--log-level",
                "warning",
            ],
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        try:
            base = f"http://127.0.0.1:{agent_port}"
            with httpx.Client(timeout=5) as client:
                for _ in range(100):
                    try:
                        if client.get(f"{base}/-/ready").status_code == 200:
                            break
                    except httpx.TransportError:
                        time.sleep(0.1)
                time.sleep(args.warmup)
                proc = psutil.Process(agent.pid)
                cpu_before = sum(proc.cpu_times()[:2])
                wall_before = time.monotonic()
                encoding = "gzip" if args.gzip else "identity"
                latencies = []
                size = 0
                for _ in range(args.scrapes):
                    t0 = time.perf_counter()
                    resp = client.get(f"{base}/metrics", headers={"Accept-Encoding": encoding})
                    latencies.append((time.perf_counter() - t0) * 1000)
                    size = int(resp.headers.get("Content-Length") or len(resp.content))
                    series = sum(1 for line in resp.text.splitlines() if line and not line.startswith("#"))
                    time.sleep(args.scrape_every)
                cpu = (sum(proc.cpu_times()[:2]) - cpu_before) / (time.monotonic() - wall_before) * 100
                rss = proc.memory_info().rss / 2**20
                probes = sum(
                    float(line.rsplit(" ", 1)[1])
                    for line in resp.text.splitlines()
                    if line.startswith("upwatch_probes_total{")
                )
        finally:
            agent.terminate()
            agent.wait(10)
            target.terminate()
    print(f"endpoints            {args.endpoints} every {args.interval}")
    print(f"probes run so far    {probes:.0f}")
    print(f"/metrics size        {size / 1024:.0f} KiB ({encoding}), {series} series")
    print(f"scrapes              {len(latencies)}")
    print(
        f"latency ms           p50 {statistics.median(latencies):.1f}  p95 {_percentile(latencies, 95):.1f}  "
        f"p99 {_percentile(latencies, 99):.1f}  max {max(latencies):.1f}"
    )
    print(f"agent CPU            {cpu:.1f}% of one core (probing + scraping)")
    print(f"agent RSS            {rss:.0f} MiB")


if __name__ == "__main__":
    main()
