"""Across several vantages on the real engines: scripts/bundle.py with Prometheus agents per vantage, remote write
to a central Prometheus, shards of agents, and two Alertmanagers in one gossip cluster (issue 10).

Each test waits for what it needs with a generous deadline; none asserts on a stopwatch.
"""

from __future__ import annotations

import json
import urllib.parse
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
import trustme
from helpers import free_port, native_bundle, wait_for

VANTAGES = ("eu", "us", "ap")
SHARDS = 3  # three agents per vantage share
ENDPOINTS = 300  # endpoints, every one probed by exactly one of them


def query(prometheus: str, expr: str) -> list[dict[str, Any]]:
    url = f"{prometheus}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    with urllib.request.urlopen(url, timeout=10) as resp:
        result: list[dict[str, Any]] = json.load(resp)["data"]["result"]
    return result


@pytest.fixture(scope="module")
def topology(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    tmp = tmp_path_factory.mktemp("topology")
    config = tmp / "upwatch.yml"
    closed = free_port()  # nothing listens there: every probe fails fast, which is all these tests need
    # A relative TLS path: the bundle's per-agent copies of the config, in its work folder, must still find it.
    trustme.CA().cert_pem.write_to_path(str(tmp / "ca.pem"))
    config.write_text(
        "host: {enabled: false}\ndefaults: {interval: 5s, timeout: 1s, tls: {ca_file: ca.pem}}\nendpoints:\n"
        # ${UPWATCH_VANTAGE}: the bundle gives each agent its vantage in its environment.
        + "".join(
            f"  - {{name: ep-{i}, url: 'http://127.0.0.1:{closed}/${{UPWATCH_VANTAGE}}'}}\n" for i in range(ENDPOINTS)
        )
    )
    with native_bundle(
        tmp,
        upwatch_config=config,
        prometheus_override={"global": {"scrape_interval": "3s", "scrape_timeout": "2s", "evaluation_interval": "3s"}},
        vantages=VANTAGES,
        shards=SHARDS,
        alertmanagers=2,
    ) as bundle:
        yield bundle.urls


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
    # Exactly one agent (instance) per vantage and endpoint, so their union is every endpoint with
    # no overlap; each agent has about its third.
    assert query(central, "max(count by (vantage, endpoint) (probe_success))")[0]["value"][1] == "1"
    shares = query(central, "count by (vantage, instance) (probe_success)")
    assert len(shares) == len(VANTAGES) * SHARDS
    assert all(80 <= int(r["value"][1]) <= 120 for r in shares), shares


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
