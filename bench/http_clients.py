"""Benchmark: CPU and latency of probe-like HTTP requests for each client stack the probe engine could use.

Starts nginx (one process, `return 200 "ok\\n"`, HTTP and HTTPS with a trustme CA) on loopback, then
for each stack, on the default asyncio loop and on uvloop, makes N requests at concurrency C. Each
request is probe-like: a NEW TCP (and TLS) connection, GET /, status, headers and the whole body
read, connection closed. Every measurement runs in a fresh subprocess (its own interpreter and
event loop), the combinations are run round-robin, each --repeats times, and the table shows the
median of the repeats: CPU of the client process per request (time.process_time), requests/s
(wall) and the median and p99 latency of single requests.

Stacks:

- httpx: a new httpx.AsyncClient per request (so a new httpcore pool and connection), given one
  prebuilt SSLContext as `verify`, trust_env off;
- httpcore: a new httpcore.AsyncConnectionPool per request, prebuilt SSLContext;
- aiohttp: one ClientSession for all requests, TCPConnector(force_close=True, limit=0) so that no
  connection is reused, DummyCookieJar;
- raw: loop.create_connection with an asyncio.Protocol that writes the request bytes and feeds
  what arrives to httptools.HttpResponseParser, closing once the message is complete;
- upwatch: this tree's exporter.probes.http.HttpProber (today: httpx on a new httpcore pool per
  probe, with phase tracing), as the baseline.

    .venv/bin/python bench/http_clients.py                 # about 5 minutes on 2 cores
    .venv/bin/python bench/http_clients.py --requests 1000 --repeats 1 --stacks raw,aiohttp
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import psutil
from _nginx import run_nginx

STACKS = ("httpx", "httpcore", "aiohttp", "raw", "upwatch")
LOOPS = ("asyncio", "uvloop")
WARMUP_REQUESTS = 50
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

Fetch = Callable[[], Awaitable[int]]


# ---------------------------------------------------------------------------
# Stacks (run in the child process)


async def _httpx(url: str, ctx: ssl.SSLContext) -> tuple[Fetch, Callable[[], Awaitable[None]]]:
    import httpx

    async def fetch() -> int:
        async with httpx.AsyncClient(verify=ctx, trust_env=False) as client:
            return (await client.get(url)).status_code

    return fetch, _nothing


async def _httpcore(url: str, ctx: ssl.SSLContext) -> tuple[Fetch, Callable[[], Awaitable[None]]]:
    import httpcore

    async def fetch() -> int:
        async with httpcore.AsyncConnectionPool(ssl_context=ctx) as pool:
            return (await pool.request("GET", url)).status

    return fetch, _nothing


async def _aiohttp(url: str, ctx: ssl.SSLContext) -> tuple[Fetch, Callable[[], Awaitable[None]]]:
    import aiohttp

    session = aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(force_close=True, limit=0, ssl=ctx), cookie_jar=aiohttp.DummyCookieJar()
    )

    async def fetch() -> int:
        async with session.get(url) as response:
            await response.read()
            return response.status

    return fetch, session.close


class _RawProbe(asyncio.Protocol):
    """One request on one connection, parsed by httptools; `closed` resolves to the status once the socket is gone."""

    def __init__(self, request: bytes, closed: asyncio.Future[int]) -> None:
        import httptools

        self._request = request
        self._closed = closed
        self._parser = httptools.HttpResponseParser(self)
        self._transport: Any = None  # uvloop's transports do not subclass asyncio.Transport
        self.headers: list[tuple[bytes, bytes]] = []
        self.body = bytearray()
        self.status = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport
        transport.write(self._request)

    def data_received(self, data: bytes) -> None:
        try:
            self._parser.feed_data(data)
        except Exception as exc:
            if not self._closed.done():
                self._closed.set_exception(exc)
            self._transport.abort()

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name, value))

    def on_body(self, body: bytes) -> None:
        self.body += body

    def on_message_complete(self) -> None:
        self.status = self._parser.get_status_code()
        self._transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._closed.done():
            return
        if self.status:
            self._closed.set_result(self.status)
        else:
            self._closed.set_exception(exc or ConnectionError("closed before the response was complete"))


async def _raw(url: str, ctx: ssl.SSLContext) -> tuple[Fetch, Callable[[], Awaitable[None]]]:
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or (443 if parts.scheme == "https" else 80)
    request = f"GET {parts.path or '/'} HTTP/1.1\r\nHost: {parts.netloc}\r\nUser-Agent: bench\r\n\r\n".encode()
    tls = ctx if parts.scheme == "https" else None
    loop = asyncio.get_running_loop()

    async def fetch() -> int:
        closed: asyncio.Future[int] = loop.create_future()
        await loop.create_connection(lambda: _RawProbe(request, closed), host, port, ssl=tls)
        return await closed

    return fetch, _nothing


async def _upwatch(url: str, ctx: ssl.SSLContext) -> tuple[Fetch, Callable[[], Awaitable[None]]]:
    sys.path.insert(0, REPO)
    from exporter.config import parse_config
    from exporter.probes.http import HttpProber
    from exporter.probes.tls import TLSContexts

    ca_file = os.environ.get("BENCH_CA_FILE", "")
    tls_line = f"    tls: {{ca_file: {ca_file}}}\n" if url.startswith("https") else ""
    contexts = TLSContexts()
    config = parse_config(
        f"host: {{enabled: false}}\nendpoints:\n  - name: bench\n    url: {url}\n{tls_line}", tls=contexts
    )
    endpoint = config.endpoints[0]
    prober = HttpProber(contexts)

    async def fetch() -> int:
        result = await prober.probe(endpoint)
        if not result.success:
            raise RuntimeError(f"{result.reason}: {result.message}")
        return result.status_code

    return fetch, prober.aclose


async def _nothing() -> None:
    return None


_FACTORIES = {"httpx": _httpx, "httpcore": _httpcore, "aiohttp": _aiohttp, "raw": _raw, "upwatch": _upwatch}


async def _measure(stack: str, url: str, ctx: ssl.SSLContext, requests: int, concurrency: int) -> dict[str, Any]:
    """Make `requests` requests, `concurrency` at a time; return CPU, wall time, latencies and errors."""
    fetch, close = await _FACTORIES[stack](url, ctx)
    latencies: list[float] = []
    errors: list[str] = []

    async def worker(count: int, record: bool) -> None:
        for _ in range(count):
            began = time.perf_counter()
            try:
                status = await fetch()
            except Exception as exc:
                errors.append(f"{type(exc).__name__}: {exc}"[:200])
                continue
            if status != 200:
                errors.append(f"status {status}")
            elif record:
                latencies.append(time.perf_counter() - began)

    def shares(total: int) -> list[int]:
        return [total // concurrency + (i < total % concurrency) for i in range(concurrency)]

    await asyncio.gather(*(worker(n, False) for n in shares(WARMUP_REQUESTS)))
    errors.clear()
    cpu, wall = time.process_time(), time.perf_counter()
    await asyncio.gather(*(worker(n, True) for n in shares(requests)))
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    await close()
    return {"cpu": cpu, "wall": wall, "latencies": latencies, "errors": errors}


def _child(args: argparse.Namespace) -> None:
    """Run one measurement in this process and print it as JSON."""
    stack, loop_name, url = args.child
    ctx = ssl.create_default_context(cafile=os.environ.get("BENCH_CA_FILE") or None)
    if loop_name == "uvloop":
        import uvloop

        factory: Callable[[], asyncio.AbstractEventLoop] | None = uvloop.new_event_loop
    else:
        factory = None
    with asyncio.Runner(loop_factory=factory) as runner:
        out = runner.run(_measure(stack, url, ctx, args.requests, args.concurrency))
    lat = sorted(out["latencies"])
    n = args.requests
    print(
        json.dumps(
            {
                "cpu_ms": out["cpu"] / n * 1000,
                "rps": n / out["wall"],
                "p50_ms": statistics.median(lat) * 1000 if lat else float("nan"),
                "p99_ms": _pct(lat, 99) * 1000 if lat else float("nan"),
                "errors": len(out["errors"]),
                "first_error": out["errors"][0] if out["errors"] else "",
            }
        )
    )


# ---------------------------------------------------------------------------
# The parent: nginx, subprocesses, table


def _pct(ordered: list[float], q: float) -> float:
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def _run_child(
    stack: str, loop_name: str, url: str, ca_file: Path, requests: int, concurrency: int
) -> dict[str, Any] | str:
    cmd = [sys.executable, __file__, "--child", stack, loop_name, url]
    cmd += ["--requests", str(requests), "--concurrency", str(concurrency)]
    try:
        proc = subprocess.run(
            cmd, capture_output=True, text=True, env={**os.environ, "BENCH_CA_FILE": str(ca_file)}, timeout=300
        )
    except subprocess.TimeoutExpired:
        return "timed out after 300 s"
    if proc.returncode != 0:
        return (proc.stderr.strip().splitlines() or ["failed"])[-1][:120]
    return dict(json.loads(proc.stdout.strip().splitlines()[-1]))


def _machine_busy() -> float:
    """Busy CPU seconds of all cores so far."""
    t = psutil.cpu_times()
    return t.user + t.nice + t.system + getattr(t, "irq", 0.0) + getattr(t, "softirq", 0.0)


def _our_cpu(nginx_pid: int) -> float:
    """CPU seconds of this script, its finished children (the measurements) and nginx so far."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    nginx = psutil.Process(nginx_pid).cpu_times()
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime + nginx.user + nginx.system


def _versions() -> str:
    from importlib.metadata import version

    names = ("httpx", "httpcore", "aiohttp", "httptools", "uvloop")
    return ", ".join(f"{name} {version(name)}" for name in names)


def main() -> None:
    """Run the benchmark and print its figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=3000, help="measured plain-HTTP requests per run")
    parser.add_argument("--https-requests", type=int, default=1000, help="measured HTTPS requests per run")
    parser.add_argument("--concurrency", type=int, default=50, help="requests in flight at once")
    parser.add_argument("--repeats", type=int, default=3, help="runs of each combination; the median is shown")
    parser.add_argument("--stacks", default=",".join(STACKS), help="comma-separated, of: " + ", ".join(STACKS))
    parser.add_argument("--loops", default=",".join(LOOPS), help="comma-separated, of: " + ", ".join(LOOPS))
    parser.add_argument("--schemes", default="http,https", help="comma-separated: http, https")
    parser.add_argument("--child", nargs=3, metavar=("STACK", "LOOP", "URL"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        _child(args)
        return
    stacks = [s for s in args.stacks.split(",") if s]
    loops = [s for s in args.loops.split(",") if s]
    schemes = [s for s in args.schemes.split(",") if s]
    for name, chosen, known in (
        ("stack", stacks, STACKS),
        ("loop", loops, LOOPS),
        ("scheme", schemes, ("http", "https")),
    ):
        if unknown := set(chosen) - set(known):
            parser.error(f"unknown {name}: {', '.join(sorted(unknown))}")

    with tempfile.TemporaryDirectory() as tmp, run_nginx(Path(tmp)) as nginx:
        urls = {"http": nginx.http_url, "https": nginx.https_url}
        combos = [(scheme, stack, loop) for scheme in schemes for stack in stacks for loop in loops]
        runs: dict[tuple[str, str, str], list[dict[str, Any]]] = {combo: [] for combo in combos}
        failures: dict[tuple[str, str, str], str] = {}
        started, busy0, ours0 = time.monotonic(), _machine_busy(), _our_cpu(nginx.pid)
        for repeat in range(args.repeats):
            for combo in combos:
                scheme, stack, loop_name = combo
                print(f"run {repeat + 1}/{args.repeats}: {scheme} {stack} {loop_name}", file=sys.stderr, flush=True)
                requests = args.https_requests if scheme == "https" else args.requests
                result = _run_child(stack, loop_name, urls[scheme], nginx.ca_file, requests, args.concurrency)
                if isinstance(result, str):
                    failures[combo] = result
                else:
                    runs[combo].append(result)
        elapsed = time.monotonic() - started
        others = (_machine_busy() - busy0 - (_our_cpu(nginx.pid) - ours0)) / elapsed
        nginx_version = nginx.version

    cpu_model = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if "model name" in line
        ),
        "?",
    )
    print(
        f"# HTTP client stacks: {args.requests} HTTP / {args.https_requests} HTTPS requests per run, "
        f"{args.concurrency} at a time, each on a new connection"
    )
    print()
    print(f"{time.strftime('%Y-%m-%d %H:%M %Z')}, {os.cpu_count()} x {cpu_model}, Python {sys.version.split()[0]},")
    print(f"{_versions()}, {nginx_version} (1 process); median of {args.repeats} runs, {elapsed:.0f} s in all;")
    print(f"other programs kept {others:.2f} of {os.cpu_count()} cores busy meanwhile on average.")
    print()
    print("| scheme | stack | loop | CPU ms/request | requests/s | latency p50 ms | latency p99 ms | errors |")
    print("| --- | --- | --- | ---: | ---: | ---: | ---: | ---: |")
    for combo in combos:
        scheme, stack, loop_name = combo
        results = runs[combo]
        if not results:
            print(f"| {scheme} | {stack} | {loop_name} | failed: {failures.get(combo, '?')} | | | | |")
            continue

        def med(key: str, results: list[dict[str, Any]] = results) -> float:
            return statistics.median(r[key] for r in results)

        errors = sum(r["errors"] for r in results)
        note = next((r["first_error"] for r in results if r["first_error"]), "")
        print(
            f"| {scheme} | {stack} | {loop_name} | {med('cpu_ms'):.2f} | {med('rps'):.0f} | {med('p50_ms'):.1f} | "
            f"{med('p99_ms'):.1f} | {errors}{' (' + note + ')' if note else ''} |"
        )


if __name__ == "__main__":
    main()
