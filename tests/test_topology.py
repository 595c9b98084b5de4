"""Across several vantages on the real engines: scripts/bundle.py with Prometheus agents per vantage, remote write
to a central Prometheus, shards of agents, and two Alertmanagers in one gossip cluster (issue 10).

Each test waits for what it needs with a generous deadline; none asserts on a stopwatch.
"""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.parse
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
from helpers import REPO, free_ports, program, stop, wait_for

VANTAGES = ("eu", "us", "ap")
SHARDS = 2
ENDPOINTS = 30


def query(prometheus: str, expr: str) -> list[dict[str, Any]]:
    url = f"{prometheus}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    with urllib.request.urlopen(url, timeout=10) as resp:
        result: list[dict[str, Any]] = json.load(resp)["data"]["result"]
    return result


@pytest.fixture(scope="module")
def topology(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    program("prometheus")
    program("prometheus-alertmanager")
    tmp = tmp_path_factory.mktemp("topology")
    config = tmp / "upwatch.yml"
    # One range of free ports: 6 agents, 4 Prometheus (central, 3 agents), 2 Alertmanagers and their
    # 2 cluster ports, and a closed port for the endpoints (every probe fails fast: all these tests need).
    base = free_ports(15)
    agents, proms, ams, closed = base, base + 6, base + 10, base + 14
    config.write_text(
        "host: {enabled: false}\ndefaults: {interval: 2s, timeout: 1s}\nendpoints:\n"
        # ${UPWATCH_VANTAGE}: the bundle gives each agent its vantage in its environment.
        + "".join(
            f"  - {{name: ep-{i}, url: 'http://127.0.0.1:{closed}/${{UPWATCH_VANTAGE}}'}}\n" for i in range(ENDPOINTS)
        )
    )
    override = tmp / "prometheus-override.yml"
    override.write_text("global: {scrape_interval: 2s, scrape_timeout: 1s, evaluation_interval: 2s}\n")
    ready = tmp / "ready.json"
    proc = subprocess.Popen(
        [
            sys.executable,
            str(REPO / "scripts" / "bundle.py"),
            "--workdir",
            str(tmp / "work"),
            "--upwatch-config",
            str(config),
            "--upwatch-port",
            str(agents),
            "--prometheus-port",
            str(proms),
            "--alertmanager-port",
            str(ams),
            "--cluster-port",
            str(ams + 2),
            "--prometheus-override",
            str(override),
            "--vantages",
            ",".join(VANTAGES),
            "--shards",
            str(SHARDS),
            "--alertmanagers",
            "2",
            "--ready-file",
            str(ready),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_for("the bundle to start", lambda: ready.exists() or proc.poll() is not None, 120)
        if proc.poll() is not None:
            out, err = proc.communicate()
            logs = "\n".join(p.read_text()[-2000:] for p in (tmp / "work").glob("*.log"))
            pytest.fail(f"scripts/bundle.py exited {proc.returncode}:\n{out}\n{err}\n{logs}")
        yield json.loads(ready.read_text())
    finally:
        stop(proc, timeout=30)


def test_every_vantage_reaches_the_central_prometheus_by_remote_write(topology: dict[str, str]) -> None:
    central = topology["prometheus"]

    def per_vantage() -> dict[str, float]:
        return {
            r["metric"].get("vantage", ""): float(r["value"][1])
            for r in query(central, "count by (vantage) (probe_success)")
        }

    wait_for("every endpoint from every vantage", lambda: per_vantage() == dict.fromkeys(VANTAGES, ENDPOINTS), 90)

    # `up` of each vantage's agents carries the vantage too (its Prometheus agent's external label).
    def up() -> dict[str, float]:
        return {
            r["metric"]["vantage"]: float(r["value"][1])
            for r in query(central, 'count by (vantage) (up{job="upwatch"} == 1)')
        }

    wait_for("every agent's up in the central Prometheus", lambda: up() == dict.fromkeys(VANTAGES, SHARDS), 60)
    urls = {(r["metric"]["vantage"], r["metric"]["url"]) for r in query(central, "upwatch_endpoint_info")}
    assert {url.rsplit("/", 1)[1] for _, url in urls} == set(VANTAGES)
    assert all(url.endswith("/" + vantage) for vantage, url in urls)


def test_the_shards_of_a_vantage_split_its_endpoints_without_overlap(topology: dict[str, str]) -> None:
    central = topology["prometheus"]
    wait_for(
        "every endpoint from every vantage",
        lambda: (
            query(central, "count(count by (vantage, endpoint) (probe_success))")[0]["value"][1]
            == str(ENDPOINTS * len(VANTAGES))
        ),
        90,
    )
    # Exactly one agent (instance) per vantage and endpoint; each agent has a share.
    assert query(central, "max(count by (vantage, endpoint) (probe_success))")[0]["value"][1] == "1"
    shares = query(central, "count by (vantage, instance) (probe_success)")
    assert len(shares) == len(VANTAGES) * SHARDS and all(int(r["value"][1]) > 0 for r in shares)


def test_the_alertmanagers_form_one_cluster_and_prometheus_sends_to_both(topology: dict[str, str]) -> None:
    for name in ("alertmanager", "alertmanager-1"):

        def status(name: str = name) -> dict[str, Any]:
            with urllib.request.urlopen(f"{topology[name]}/api/v2/status", timeout=10) as resp:
                data: dict[str, Any] = json.load(resp)["cluster"]
            return data

        wait_for(
            f"{name} in a cluster of two",
            lambda status=status: status()["status"] == "ready" and len(status()["peers"]) == 2,
            60,
        )
    with urllib.request.urlopen(f"{topology['prometheus']}/api/v1/alertmanagers", timeout=10) as resp:
        active = json.load(resp)["data"]["activeAlertmanagers"]
    assert len(active) == 2
