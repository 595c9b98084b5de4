"""Benchmark: gzip of a large /metrics body with each candidate codec, to choose the server's by the figures.

In-process, no network: the probe exposition of N endpoints (bench/exposition.py's store: labels,
an SLO, HTTPS results), in the pieces the server gets, is compressed into one gzip stream piece by
piece, as `exporter/server.py` does, by each candidate:

- stdlib zlib at level 1 (what the server used before) and zlib-ng at level 1;
- ISA-L (python-isal) at its levels 0-3;
- libdeflate (the `deflate` package), which has no streaming API: the pieces are joined first;
- two gzip members compressed in two threads and concatenated (RFC 1952 allows it; Go's
  compress/gzip, Prometheus's reader, reads multistream by default).

For each: compress time (wall median, p99; CPU median of the whole process, so both threads of the
parallel ones count), output size, a check that Python's gzip module decompresses it to the very
text, and how late a 1 ms asyncio timer fires while it compresses in a worker thread (a codec that
held the GIL would show its whole compress time there). Candidates whose package is not installed
are skipped.

    .venv/bin/python bench/compression.py --endpoints 5000
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import gzip
import importlib
import statistics
import time
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from types import ModuleType
from typing import Any

from exposition import format_lags, loop_lag, pieces, probed_store

from exporter.collectors.probes import ProbeExposition

Codec = Callable[[Sequence[bytes]], bytes]


def _streamed(module: Any, level: int) -> Codec:
    """One gzip stream (wbits 31) of the pieces, compressed one by one with a zlib-like module."""

    def compress(parts: Sequence[bytes]) -> bytes:
        stream = module.compressobj(level, module.DEFLATED, 31)
        out = [stream.compress(part) for part in parts]
        out.append(stream.flush())
        return b"".join(out)

    return compress


def _members(codec: Codec, pool: concurrent.futures.ThreadPoolExecutor) -> Codec:
    """The pieces cut in two halves of about equal size, each its own gzip member, compressed side by side."""

    def compress(parts: Sequence[bytes]) -> bytes:
        total, cut, seen = sum(map(len, parts)), 0, 0
        while cut < len(parts) and seen < total / 2:
            seen += len(parts[cut])
            cut += 1
        return b"".join(pool.map(codec, (parts[:cut], parts[cut:])))

    return compress


def _optional(name: str) -> ModuleType | None:
    try:
        return importlib.import_module(name)
    except ImportError:
        return None


def _candidates(pool: concurrent.futures.ThreadPoolExecutor) -> dict[str, Codec | None]:
    """Each candidate by name; None where its package is not installed."""
    isal = _optional("isal.isal_zlib")
    zlib_ng = _optional("zlib_ng.zlib_ng")
    libdeflate = _optional("deflate")
    out: dict[str, Codec | None] = {"zlib 1 (stdlib)": _streamed(zlib, 1)}
    out["zlib-ng 1"] = _streamed(zlib_ng, 1) if zlib_ng else None
    for level in range(4):
        out[f"isal {level}"] = _streamed(isal, level) if isal else None
    out["libdeflate 1 (joined)"] = (lambda parts: libdeflate.gzip_compress(b"".join(parts), 1)) if libdeflate else None
    out["zlib 1, 2 members x 2 threads"] = _members(_streamed(zlib, 1), pool)
    out["isal 1, 2 members x 2 threads"] = _members(_streamed(isal, 1), pool) if isal else None
    return out


@dataclass
class _Figures:
    wall_ms: list[float]
    cpu_ms: list[float]
    size: int
    lag_ms: list[float]

    def row(self, name: str, text_size: int) -> str:
        wall = sorted(self.wall_ms)
        p99 = wall[min(len(wall) - 1, round(0.99 * (len(wall) - 1)))]
        return (
            f"| {name} | {statistics.median(wall):.1f} | {p99:.1f} | {statistics.median(self.cpu_ms):.1f} "
            f"| {self.size / 2**20:.2f} | {text_size / self.size:.1f}x | {format_lags(self.lag_ms)} |"
        )


def _measure(codec: Codec, parts: list[bytes], text: bytes, runs: int, lag_seconds: float) -> _Figures:
    out = codec(parts)  # once untimed: first-call costs, and the check
    if gzip.decompress(out) != text:
        raise SystemExit("output does not decompress to the exposition text")
    wall, cpu = [], []
    for _ in range(runs):
        w0, c0 = time.perf_counter(), time.process_time()
        codec(parts)
        cpu.append((time.process_time() - c0) * 1e3)
        wall.append((time.perf_counter() - w0) * 1e3)
    lag = asyncio.run(loop_lag(lambda: codec(parts), lag_seconds))
    return _Figures(wall, cpu, len(out), lag)


def main() -> None:
    """Run the benchmark and print its figures as a Markdown table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--endpoints", type=int, default=5000)
    parser.add_argument("--runs", type=int, default=20, help="timed compressions, each candidate")
    parser.add_argument("--lag-seconds", type=float, default=2.0, help="how long to watch the loop's timer, each")
    args = parser.parse_args()

    parts = pieces(ProbeExposition(probed_store(args.endpoints)).render())
    text = b"".join(parts)
    print(f"endpoints {args.endpoints}: exposition {len(text) / 2**20:.1f} MiB in {len(parts)} pieces")
    print()
    print("| codec | wall median ms | wall p99 ms | CPU median ms | MiB out | ratio | loop lag while compressing |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | --- |")
    idle = asyncio.run(loop_lag(lambda: time.sleep(0.01), args.lag_seconds))
    print(f"| (none: the thread sleeps) | | | | | | {format_lags(idle)} |")
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        for name, codec in _candidates(pool).items():
            if codec is None:
                print(f"| {name} | not installed | | | | | |")
                continue
            print(_measure(codec, parts, text, args.runs, args.lag_seconds).row(name, len(text)), flush=True)


if __name__ == "__main__":
    main()
