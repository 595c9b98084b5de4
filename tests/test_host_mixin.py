"""node_exporter's usual alert and recording expressions evaluate on upwatch's host metrics.

A real Prometheus scrapes a real `upwatch serve` (host metrics only) every second; each
expression below is the PromQL of a node-mixin alert or recording rule (written here from its
meaning, with the threshold comparison left out so that a healthy host still returns series)
and must return at least one series.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from helpers import UPWATCH, free_port, program, running, wait_for

EXPRESSIONS = {
    # instance:node_cpu_utilisation:rate5m, NodeCPUHighUsage
    "cpu utilisation": '1 - avg without (cpu) (sum without (mode) (rate(node_cpu_seconds_total{job="upwatch",'
    ' mode=~"idle|iowait|steal"}[1m])))',
    "cpu busy by mode": 'sum without (mode) (avg without (cpu) (rate(node_cpu_seconds_total{job="upwatch",'
    ' mode!="idle"}[1m]))) * 100',
    # instance:node_load1_per_cpu:ratio, NodeSystemSaturation
    "load per cpu": 'node_load1{job="upwatch"} / count without (cpu, mode) (node_cpu_seconds_total{job="upwatch",'
    ' mode="idle"})',
    # instance:node_memory_utilisation:ratio, NodeMemoryHighUtilization
    "memory utilisation": '1 - (node_memory_MemAvailable_bytes{job="upwatch"}'
    ' / node_memory_MemTotal_bytes{job="upwatch"})',
    # NodeMemoryMajorPagesFaults
    "major page faults": 'rate(node_vmstat_pgmajfault{job="upwatch"}[1m])',
    # NodeFilesystemSpaceFillingUp / NodeFilesystemAlmostOutOfSpace
    "filesystem space left": 'node_filesystem_avail_bytes{job="upwatch", fstype!="", mountpoint!=""}'
    ' / node_filesystem_size_bytes{job="upwatch", fstype!="", mountpoint!=""} * 100'
    ' and node_filesystem_readonly{job="upwatch", fstype!="", mountpoint!=""} == 0',
    "filesystem predicted": 'predict_linear(node_filesystem_avail_bytes{job="upwatch", fstype!="",'
    ' mountpoint!=""}[1m], 24 * 60 * 60)',
    # NodeFilesystemFilesFillingUp / NodeFilesystemAlmostOutOfFiles
    "filesystem files left": 'node_filesystem_files_free{job="upwatch", fstype!="", mountpoint!=""}'
    ' / node_filesystem_files{job="upwatch", fstype!="", mountpoint!=""} * 100',
    # NodeNetworkReceiveErrs / NodeNetworkTransmitErrs (ratio to packets)
    "network receive errors": 'rate(node_network_receive_errs_total{job="upwatch"}[1m])'
    ' / rate(node_network_receive_packets_total{job="upwatch"}[1m])',
    "network transmit errors": 'rate(node_network_transmit_errs_total{job="upwatch"}[1m])'
    ' / rate(node_network_transmit_packets_total{job="upwatch"}[1m])',
    # instance:node_network_receive_drop_excluding_lo:rate5m
    "network drops": 'sum without (device) (rate(node_network_receive_drop_total{job="upwatch", device!="lo"}[1m]))',
    # NodeNetworkInterfaceFlapping
    "interface flapping": 'changes(node_network_up{job="upwatch", device!~"veth.+"}[1m])',
    # NodeFileDescriptorLimit
    "file descriptors": 'node_filefd_allocated{job="upwatch"} * 100 / node_filefd_maximum{job="upwatch"}',
    # NodeDiskIOSaturation, instance_device:node_disk_io_time_seconds:rate5m
    "disk io saturation": 'rate(node_disk_io_time_weighted_seconds_total{job="upwatch", device!=""}[1m])',
    "disk io time": 'rate(node_disk_io_time_seconds_total{job="upwatch", device!=""}[1m])',
    # NodeHighNumberConntrackEntriesUsed needs conntrack (not exported); NodeClockSkewDetected uses node_time
    "clock": 'time() - node_time_seconds{job="upwatch"}',
    # NodeRAIDDegraded etc. need collectors upwatch does not have; the host-down alert uses `up`
    "host up": 'up{job="upwatch"}',
    # NodeTextFileCollectorScrapeError is about the textfile collector; the generic one:
    "collector errors": 'node_scrape_collector_success{job="upwatch"} == 1',
}


@pytest.fixture(scope="module")
def prometheus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real Prometheus scraping a real upwatch every second, queried once it has scraped it twice."""
    tmp: Path = tmp_path_factory.mktemp("mixin")
    up_port, prom_port = free_port(), free_port()
    cfg = tmp / "upwatch.yml"
    cfg.write_text("host: {enabled: true}\n")
    prom_cfg = tmp / "prometheus.yml"
    prom_cfg.write_text(
        "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
        "scrape_configs:\n"
        f"  - {{job_name: upwatch, static_configs: [{{targets: ['127.0.0.1:{up_port}']}}]}}\n"
    )
    up_args = [*UPWATCH, "serve", "--config", str(cfg), "--listen", f"127.0.0.1:{up_port}", "--log-format", "json"]
    prom_args = [
        program("prometheus"),
        f"--config.file={prom_cfg}",
        f"--storage.tsdb.path={tmp / 'data'}",
        f"--web.listen-address=127.0.0.1:{prom_port}",
        "--log.level=warn",
    ]
    base = f"http://127.0.0.1:{prom_port}"
    with running(up_args, f"http://127.0.0.1:{up_port}/-/ready"), running(prom_args, f"{base}/-/ready"):
        # rate() and predict_linear() need two samples in their window.
        wait_for("two scrapes of upwatch", lambda: query(base, 'count_over_time(up{job="upwatch"}[1m]) >= 2'), 60)
        yield base


def query(prometheus: str, expr: str) -> list[dict[str, object]]:
    """The series an instant query returns (none on an error)."""
    body = httpx.get(f"{prometheus}/api/v1/query", params={"query": expr}, timeout=10).json()
    return list(body.get("data", {}).get("result", []))


@pytest.mark.parametrize("name", sorted(EXPRESSIONS))
def test_expression_returns_series(prometheus: str, name: str) -> None:
    resp = httpx.get(f"{prometheus}/api/v1/query", params={"query": EXPRESSIONS[name]}, timeout=10)
    body = resp.json()
    assert resp.status_code == 200 and body["status"] == "success", body
    assert body["data"]["result"], f"{name}: no series for {EXPRESSIONS[name]}"
