"""Shared test helpers: free ports, real programs started on loopback, waiting for them."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

REPO = Path(__file__).resolve().parent.parent
UPWATCH = [sys.executable, "-m", "exporter"]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def program(name: str) -> str:
    """The path of a program the tests need; fail (never skip) with how to get it when it is missing."""
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is not installed: run scripts/test, which installs the Debian packages the tests need")
    return path


def wait_until_ready(url: str, proc: subprocess.Popen[str], timeout: float = 30.0) -> None:
    """Poll an HTTP URL until it answers 200; fail with the process's output if it dies or never does."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            out, err = proc.communicate()
            pytest.fail(f"{proc.args!r} exited with {proc.returncode}:\n{out}\n{err}")
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    proc.kill()
    out, err = proc.communicate()
    pytest.fail(f"{url} not ready after {timeout}s:\n{out}\n{err}")


@contextmanager
def running(
    args: Sequence[str], ready_url: str, *, env: dict[str, str] | None = None
) -> Iterator[subprocess.Popen[str]]:
    """Run a program until the block ends; it must answer `ready_url` first."""
    proc = subprocess.Popen(
        list(args),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **(env or {})},
    )
    try:
        wait_until_ready(ready_url, proc)
        yield proc
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.communicate(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.communicate()


Samples = dict[str, dict[tuple[tuple[str, str], ...], float]]


def scrape(url: str) -> tuple[dict[str, str], Samples]:
    """Family types (by family name) and sample values (by sample name, then sorted labels) of a /metrics page."""
    text = httpx.get(url, timeout=10).text
    types: dict[str, str] = {}
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        types[family.name] = family.type
        for s in family.samples:
            samples.setdefault(s.name, {})[tuple(sorted(s.labels.items()))] = s.value
    return types, samples
