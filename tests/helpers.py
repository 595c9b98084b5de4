"""Shared test helpers: free ports, real programs started on loopback, waiting for them."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
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


def wait_for(what: str, predicate: Callable[[], object], timeout: float) -> None:
    """Poll until `predicate()` is true; fail saying what was awaited."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    pytest.fail(f"timed out after {timeout:.0f}s waiting for {what}")


@dataclass(frozen=True)
class NativeBundle:
    """A running scripts/bundle.py: its URLs and ports."""

    prometheus: str
    alertmanager: str
    upwatch: str
    ports: dict[str, int]


@contextmanager
def native_bundle(
    tmp: Path,
    *,
    upwatch_config: Path,
    secrets: Path,
    prometheus_override: dict[str, Any],
    alertmanager_override: dict[str, Any],
) -> Iterator[NativeBundle]:
    """Run the whole bundle with scripts/bundle.py on free loopback ports, with test-only overrides."""
    program("prometheus")
    program("prometheus-alertmanager")
    overrides = {}
    for name, data in (("prometheus", prometheus_override), ("alertmanager", alertmanager_override)):
        overrides[name] = tmp / f"{name}-override.yml"
        overrides[name].write_text(yaml.safe_dump(data))
    ports = {"upwatch": free_port(), "prometheus": free_port(), "alertmanager": free_port()}
    ready = tmp / "ready.json"
    proc = subprocess.Popen(
        [
            sys.executable,
            str(REPO / "scripts" / "bundle.py"),
            "--workdir",
            str(tmp / "work"),
            "--upwatch-config",
            str(upwatch_config),
            *(arg for name, port in ports.items() for arg in (f"--{name}-port", str(port))),
            "--secrets",
            str(secrets),
            "--prometheus-override",
            str(overrides["prometheus"]),
            "--alertmanager-override",
            str(overrides["alertmanager"]),
            "--ready-file",
            str(ready),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_for("the bundle to start", lambda: ready.exists() or proc.poll() is not None, 90)
        if proc.poll() is not None:
            out, err = proc.communicate()
            logs = "\n".join(p.read_text()[-3000:] for p in (tmp / "work").glob("*.log"))
            pytest.fail(f"scripts/bundle.py exited {proc.returncode}:\n{out}\n{err}\n{logs}")
        urls = json.loads(ready.read_text())
        yield NativeBundle(
            prometheus=urls["prometheus"], alertmanager=urls["alertmanager"], upwatch=urls["upwatch"], ports=ports
        )
    finally:
        proc.terminate()
        try:
            proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
