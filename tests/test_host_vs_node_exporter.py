"""upwatch's host metrics against the real node_exporter (Debian's), scraped on the same host.

Both run with the same filters: node_exporter is given upstream's defaults explicitly, since
Debian patches its defaults (it also excludes /run, /mnt, /media and the `lo` interface).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import UPWATCH, Samples, free_port, program, running, scrape

from exporter.config import (
    NODE_DISK_DEVICES_EXCLUDE,
    NODE_FS_TYPES_EXCLUDE,
    NODE_MOUNT_POINTS_EXCLUDE,
    NODE_NETSTAT_FIELDS,
    NODE_VMSTAT_FIELDS,
)

Scrape = tuple[dict[str, str], Samples]

# Families upwatch must export on Linux (the contract's list), checked to be present.
REQUIRED = [
    "node_cpu_seconds_total",
    "node_load1",
    "node_load5",
    "node_load15",
    "node_memory_MemTotal_bytes",
    "node_memory_MemFree_bytes",
    "node_memory_MemAvailable_bytes",
    "node_memory_Buffers_bytes",
    "node_memory_Cached_bytes",
    "node_memory_SwapTotal_bytes",
    "node_memory_SwapFree_bytes",
    "node_filesystem_size_bytes",
    "node_filesystem_free_bytes",
    "node_filesystem_avail_bytes",
    "node_filesystem_files",
    "node_filesystem_files_free",
    "node_filesystem_readonly",
    "node_disk_reads_completed_total",
    "node_disk_writes_completed_total",
    "node_disk_read_bytes_total",
    "node_disk_written_bytes_total",
    "node_disk_read_time_seconds_total",
    "node_disk_write_time_seconds_total",
    "node_disk_io_time_seconds_total",
    "node_disk_io_time_weighted_seconds_total",
    "node_network_receive_bytes_total",
    "node_network_transmit_bytes_total",
    "node_network_receive_packets_total",
    "node_network_transmit_packets_total",
    "node_network_receive_errs_total",
    "node_network_transmit_errs_total",
    "node_network_receive_drop_total",
    "node_network_transmit_drop_total",
    "node_network_up",
    "node_boot_time_seconds",
    "node_time_seconds",
    "node_uname_info",
    "node_os_info",
    "node_netstat_Tcp_CurrEstab",
    "node_filefd_allocated",
    "node_filefd_maximum",
    "node_vmstat_pgmajfault",
    "node_scrape_collector_success",
    "node_scrape_collector_duration_seconds",
]


@pytest.fixture(scope="module")
def scrapes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Scrape, Scrape, Scrape]]:
    """node_exporter, then upwatch, then node_exporter again, scraped back to back."""
    node_exporter = program("prometheus-node-exporter")
    ne_port, up_port = free_port(), free_port()
    cfg: Path = tmp_path_factory.mktemp("host") / "upwatch.yml"
    cfg.write_text("host: {enabled: true}\n")
    ne_args = [
        node_exporter,
        f"--web.listen-address=127.0.0.1:{ne_port}",
        "--no-collector.systemd",
        f"--collector.filesystem.mount-points-exclude={NODE_MOUNT_POINTS_EXCLUDE}",
        f"--collector.filesystem.fs-types-exclude={NODE_FS_TYPES_EXCLUDE}",
        f"--collector.diskstats.device-exclude={NODE_DISK_DEVICES_EXCLUDE}",
        "--collector.netdev.device-exclude=",
        f"--collector.netstat.fields={NODE_NETSTAT_FIELDS}",
        f"--collector.vmstat.fields={NODE_VMSTAT_FIELDS}",
    ]
    up_args = [*UPWATCH, "serve", "--config", str(cfg), "--listen", f"127.0.0.1:{up_port}", "--log-format", "json"]
    ne_url, up_url = f"http://127.0.0.1:{ne_port}/metrics", f"http://127.0.0.1:{up_port}/metrics"
    with running(ne_args, ne_url), running(up_args, f"http://127.0.0.1:{up_port}/-/ready"):
        scrape(up_url)  # a first scrape, so that one-time work is not in the bracket below
        yield scrape(ne_url), scrape(up_url), scrape(ne_url)


def node_families(types: dict[str, str]) -> dict[str, str]:
    return {name: typ for name, typ in types.items() if name.startswith("node_")}


def label_names(samples: Samples, family: str, types: dict[str, str]) -> set[frozenset[str]]:
    names = {family} if types[family] != "histogram" else {family + s for s in ("_bucket", "_sum", "_count")}
    if types[family] == "counter":
        names = {family + "_total"}
    return {frozenset(k for k, _ in labels) for name in names for labels in samples.get(name, {})}


def test_required_families_are_exported(scrapes: tuple[Scrape, Scrape, Scrape]) -> None:
    _, (_, up), _ = scrapes
    missing = [name for name in REQUIRED if name not in up]
    assert not missing


def test_every_node_family_exists_in_node_exporter_with_the_same_type_and_labels(
    scrapes: tuple[Scrape, Scrape, Scrape],
) -> None:
    (ne_types, ne), (up_types, up), _ = scrapes
    problems = []
    for family, typ in sorted(node_families(up_types).items()):
        if family not in ne_types:
            problems.append(f"{family}: not in node_exporter's output")
            continue
        if ne_types[family] != typ:
            problems.append(f"{family}: type {typ}, node_exporter says {ne_types[family]}")
        ours, theirs = label_names(up, family, up_types), label_names(ne, family, ne_types)
        if ours != theirs:
            problems.append(
                f"{family}: label names {sorted(map(sorted, ours))}, node_exporter {sorted(map(sorted, theirs))}"
            )
    assert not problems, "\n".join(problems)


def test_collectors_all_succeed(scrapes: tuple[Scrape, Scrape, Scrape]) -> None:
    _, (_, up), _ = scrapes
    results = {dict(k)["collector"]: v for k, v in up["node_scrape_collector_success"].items()}
    assert results and all(v == 1 for v in results.values()), results


def series(samples: Samples, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    return samples.get(name, {})


@pytest.mark.parametrize(
    "name",
    [
        "node_memory_MemTotal_bytes",
        "node_memory_SwapTotal_bytes",
        "node_filesystem_size_bytes",
        "node_filesystem_files",
        "node_filesystem_readonly",
        "node_filefd_maximum",
        "node_network_up",
        "node_uname_info",
        "node_os_info",
        "node_memory_Hugepagesize_bytes",
    ],
)
def test_sizes_and_facts_agree_exactly(scrapes: tuple[Scrape, Scrape, Scrape], name: str) -> None:
    (_, ne), (_, up), _ = scrapes
    assert series(up, name), f"upwatch exports no {name}"
    assert series(up, name) == series(ne, name)


def test_boot_time_agrees_within_a_second(scrapes: tuple[Scrape, Scrape, Scrape]) -> None:
    (_, ne), (_, up), _ = scrapes
    ((_, ours),) = series(up, "node_boot_time_seconds").items()
    ((_, theirs),) = series(ne, "node_boot_time_seconds").items()
    assert abs(ours - theirs) <= 1


@pytest.mark.parametrize(
    ("name", "slack"),
    [
        ("node_cpu_seconds_total", 0.05),
        ("node_cpu_guest_seconds_total", 0.05),
        ("node_network_receive_bytes_total", 0),
        ("node_network_transmit_bytes_total", 0),
        ("node_network_receive_packets_total", 0),
        ("node_network_transmit_packets_total", 0),
        ("node_network_receive_errs_total", 0),
        ("node_network_receive_drop_total", 0),
        ("node_disk_reads_completed_total", 0),
        ("node_disk_writes_completed_total", 0),
        ("node_disk_read_bytes_total", 0),
        ("node_disk_written_bytes_total", 0),
        ("node_disk_io_time_seconds_total", 0.05),
        ("node_disk_io_time_weighted_seconds_total", 0.05),
        ("node_context_switches_total", 0),
        ("node_intr_total", 0),
        ("node_forks_total", 0),
        ("node_vmstat_pgmajfault", 0),
        ("node_vmstat_pgfault", 0),
    ],
)
def test_counters_fall_between_two_node_exporter_scrapes(
    scrapes: tuple[Scrape, Scrape, Scrape], name: str, slack: float
) -> None:
    (_, before), (_, up), (_, after) = scrapes
    ours = series(up, name)
    assert ours, f"upwatch exports no {name}"
    assert set(ours) == set(series(before, name)), "same series (devices, cpus, modes) as node_exporter"
    for labels, value in ours.items():
        low, high = series(before, name)[labels], series(after, name)[labels]
        assert low - slack <= value <= high + slack, f"{name}{dict(labels)}: {low} <= {value} <= {high}"


@pytest.mark.parametrize(
    ("name", "relative"),
    [
        ("node_memory_MemFree_bytes", 0.05),
        ("node_memory_MemAvailable_bytes", 0.05),
        ("node_memory_Cached_bytes", 0.05),
        ("node_memory_Buffers_bytes", 0.05),
        ("node_memory_SwapFree_bytes", 0.05),
        ("node_filesystem_free_bytes", 0.01),
        ("node_filesystem_avail_bytes", 0.01),
        ("node_filesystem_files_free", 0.01),
        ("node_filefd_allocated", 0.2),
        ("node_load1", 0.5),
    ],
)
def test_gauges_that_move_agree_closely(scrapes: tuple[Scrape, Scrape, Scrape], name: str, relative: float) -> None:
    (_, before), (_, up), (_, after) = scrapes
    ours = series(up, name)
    assert ours, f"upwatch exports no {name}"
    assert set(ours) == set(series(before, name))
    for labels, value in ours.items():
        low = min(series(before, name)[labels], series(after, name)[labels])
        high = max(series(before, name)[labels], series(after, name)[labels])
        margin = relative * max(abs(low), abs(high), 1.0)
        assert low - margin <= value <= high + margin, f"{name}{dict(labels)}: {value} vs {low}..{high}"


def test_node_time_is_now(scrapes: tuple[Scrape, Scrape, Scrape]) -> None:
    (_, before), (_, up), (_, after) = scrapes
    ((_, ours),) = series(up, "node_time_seconds").items()
    ((_, t0),) = series(before, "node_time_seconds").items()
    ((_, t1),) = series(after, "node_time_seconds").items()
    assert t0 - 0.01 <= ours <= t1 + 0.01
    assert not math.isnan(ours)
