"""The host collector against recorded /proc, /sys and root trees, a fake statvfs and a fake psutil."""

from __future__ import annotations

import re
import shutil
import sys
import threading
import time
from collections import Counter, namedtuple
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from exporter.collectors.host import HostCollector, System, Uname
from exporter.collectors.host.proc import parse_os_release
from exporter.collectors.host.registry import COLLECTORS, markdown_list
from exporter.config import HOST_COLLECTORS, HostCollectors, HostConfig

README = Path(__file__).parent.parent / "README.md"
FIXTURES = Path(__file__).parent / "fixtures" / "host"
PROC, SYS, ROOT = FIXTURES / "proc", FIXTURES / "sys", FIXTURES / "root"
NOW = 1_795_689_041.25
UNAME = Uname("Linux", "vm", "6.18.44-fc-v657", "#1 SMP PREEMPT_DYNAMIC @0", "x86_64")

StatvfsResult = namedtuple("StatvfsResult", "f_bsize f_frsize f_blocks f_bfree f_bavail f_files f_ffree")
Labels = frozenset[tuple[str, str]]


class FakeStatvfs:
    """statvfs from a table by path; paths not in it fail with ENOENT; `hang` paths block until released."""

    def __init__(self, table: dict[str, StatvfsResult], hang: frozenset[str] = frozenset()) -> None:
        self.table = table
        self.hang = hang
        self.release = threading.Event()
        self.calls: Counter[str] = Counter()
        self._lock = threading.Lock()

    def __call__(self, path: str | bytes) -> StatvfsResult:
        path = path.decode() if isinstance(path, bytes) else path
        with self._lock:
            self.calls[path] += 1
        if path in self.hang:
            self.release.wait()
        if path not in self.table:
            raise FileNotFoundError(2, "No such file or directory", path)
        return self.table[path]


def usage(blocks: int, bfree: int, bavail: int, files: int, ffree: int, bsize: int = 4096) -> StatvfsResult:
    # f_frsize differs from f_bsize on purpose: node_exporter multiplies by f_bsize.
    return StatvfsResult(bsize, 1024, blocks, bfree, bavail, files, ffree)


# Mount points in the fixture's proc/1/mounts that the default filters keep, and their statvfs.
STATFS = {
    "/": usage(66053021, 60170097, 20714794, 16777216, 16354854),
    "/run": usage(1233750, 1233600, 1233600, 3083623, 3082900),
    "/boot": usage(249830, 100000, 90000, 65536, 65000, 1024),
    "/mnt/with space": usage(1000, 500, 400, 100, 50),
}


def rooted(mountpoint: str, root: Path = ROOT) -> str:
    """Where a mount point is statted under rootfs (node_exporter's --path.rootfs)."""
    return str(root) if mountpoint == "/" else str(root / mountpoint.lstrip("/"))


def statfs_table(root: Path = ROOT) -> dict[str, StatvfsResult]:
    return {rooted(mp, root): st for mp, st in STATFS.items()}


def linux(**overrides: Any) -> System:
    fields: dict[str, Any] = {
        "platform": "linux",
        "procfs": PROC,
        "sysfs": SYS,
        "rootfs": ROOT,
        "statvfs": FakeStatvfs(statfs_table()),
        "uname": lambda: UNAME,
        "clock": lambda: NOW,
        "psutil": None,
    }
    fields.update(overrides)
    return System(**fields)


def config(*only: str, **sections: Any) -> HostConfig:
    """A host config with only the named collectors (all when none named) and some sections set."""
    data: dict[str, Any] = dict(sections)
    if only:
        data["collectors"] = {name: name in only for name in HOST_COLLECTORS}
    return HostConfig.model_validate(data)


class Families(dict[str, tuple[str, dict[str, dict[Labels, float]]]]):
    """Scraped families: name -> (type as the TYPE line says, sample name -> labels -> value)."""

    text = ""

    def series(self, name: str) -> dict[Labels, float]:
        return self[name][1].get(name, {}) if name in self else {}

    def value(self, name: str, **labels: str) -> float:
        return self[name][1][name][frozenset(labels.items())]

    def label_names(self, name: str) -> set[frozenset[str]]:
        return {frozenset(k for k, _ in labels) for samples in self[name][1].values() for labels in samples}


def scrape(collector: HostCollector) -> Families:
    """Render through a fresh registry in the text format and parse it back, as Prometheus would."""
    registry = CollectorRegistry()
    registry.register(collector)
    text = generate_latest(registry).decode()
    # The TYPE lines as written: the parser reads "untyped" back as "unknown".
    types = dict(line.split()[2:4] for line in text.splitlines() if line.startswith("# TYPE "))
    out = Families()
    out.text = text
    for family in text_string_to_metric_families(text):
        samples: dict[str, dict[Labels, float]] = {}
        for s in family.samples:
            key = frozenset(s.labels.items())
            assert key not in samples.get(s.name, {}), f"duplicate series {s.name}{s.labels}"
            samples.setdefault(s.name, {})[key] = s.value
        name = family.name + "_total" if family.type == "counter" else family.name
        out[name] = (types[name], samples)
    return out


@pytest.fixture
def host() -> Iterator[Callable[..., HostCollector]]:
    """Build host collectors and close them (statvfs workers) after the test."""
    made: list[HostCollector] = []

    def make(cfg: HostConfig | None = None, system: System | None = None, log: Any = None) -> HostCollector:
        collector = HostCollector(cfg or config(), system=system or linux(), log=log)
        made.append(collector)
        return collector

    yield make
    for collector in made:
        collector.close()


@pytest.fixture
def udev_root(tmp_path: Path) -> Path:
    """The fixture rootfs plus a udev database entry for sda (8:0), a name Windows cannot check out."""
    root = tmp_path / "root"
    shutil.copytree(ROOT, root)
    (root / "run/udev/data").mkdir(parents=True)
    shutil.copy(FIXTURES / "udev/b8_0", root / "run/udev/data/b8:0")
    return root


def lab(**labels: str) -> Labels:
    return frozenset(labels.items())


def copy_proc(tmp_path: Path, *leave_out: str) -> Path:
    """A writable copy of the fixture procfs, less some files."""
    proc = tmp_path / "proc"
    shutil.copytree(PROC, proc)
    for name in leave_out:
        (proc / name).unlink()
    return proc


# ---------------------------------------------------------------------------
# Names, types and label names, as node_exporter 1.5.0 exports them


NODE_EXPORTER_1_5 = {
    "node_cpu_seconds_total": ("counter", {"cpu", "mode"}),
    "node_cpu_guest_seconds_total": ("counter", {"cpu", "mode"}),
    "node_load1": ("gauge", set()),
    "node_load5": ("gauge", set()),
    "node_load15": ("gauge", set()),
    "node_memory_MemTotal_bytes": ("gauge", set()),
    "node_memory_HugePages_Total": ("gauge", set()),
    "node_filesystem_size_bytes": ("gauge", {"device", "fstype", "mountpoint"}),
    "node_filesystem_free_bytes": ("gauge", {"device", "fstype", "mountpoint"}),
    "node_filesystem_avail_bytes": ("gauge", {"device", "fstype", "mountpoint"}),
    "node_filesystem_files": ("gauge", {"device", "fstype", "mountpoint"}),
    "node_filesystem_files_free": ("gauge", {"device", "fstype", "mountpoint"}),
    "node_filesystem_readonly": ("gauge", {"device", "fstype", "mountpoint"}),
    "node_filesystem_device_error": ("gauge", {"device", "fstype", "mountpoint"}),
    "node_disk_reads_completed_total": ("counter", {"device"}),
    "node_disk_read_bytes_total": ("counter", {"device"}),
    "node_disk_io_now": ("gauge", {"device"}),
    "node_disk_io_time_weighted_seconds_total": ("counter", {"device"}),
    "node_disk_discarded_sectors_total": ("counter", {"device"}),
    "node_disk_flush_requests_time_seconds_total": ("counter", {"device"}),
    "node_disk_info": ("gauge", {"device", "major", "minor", "path", "wwn", "model", "serial", "revision"}),
    "node_disk_filesystem_info": ("gauge", {"device", "type", "usage", "uuid", "version"}),
    "node_disk_ata_rotation_rate_rpm": ("gauge", {"device"}),
    "node_network_receive_bytes_total": ("counter", {"device"}),
    "node_network_transmit_colls_total": ("counter", {"device"}),
    "node_network_receive_nohandler_total": ("counter", {"device"}),
    "node_network_up": ("gauge", {"device"}),
    "node_network_info": ("gauge", {"device", "address", "broadcast", "duplex", "operstate", "ifalias"}),
    "node_network_mtu_bytes": ("gauge", {"device"}),
    "node_network_speed_bytes": ("gauge", {"device"}),
    "node_network_carrier_changes_total": ("counter", {"device"}),
    "node_netstat_Tcp_CurrEstab": ("untyped", set()),
    "node_netstat_Ip6_InOctets": ("untyped", set()),
    "node_filefd_allocated": ("gauge", set()),
    "node_filefd_maximum": ("gauge", set()),
    "node_vmstat_pgmajfault": ("untyped", set()),
    "node_boot_time_seconds": ("gauge", set()),
    "node_context_switches_total": ("counter", set()),
    "node_forks_total": ("counter", set()),
    "node_intr_total": ("counter", set()),
    "node_procs_running": ("gauge", set()),
    "node_procs_blocked": ("gauge", set()),
    "node_time_seconds": ("gauge", set()),
    "node_time_zone_offset_seconds": ("gauge", {"time_zone"}),
    "node_time_clocksource_current_info": ("gauge", {"device", "clocksource"}),
    "node_uname_info": ("gauge", {"sysname", "release", "version", "machine", "nodename", "domainname"}),
    "node_os_info": (
        "gauge",
        {
            "build_id",
            "id",
            "id_like",
            "image_id",
            "image_version",
            "name",
            "pretty_name",
            "variant",
            "variant_id",
            "version",
            "version_codename",
            "version_id",
        },
    ),
    "node_os_version": ("gauge", {"id", "id_like", "name"}),
    "node_scrape_collector_success": ("gauge", {"collector"}),
    "node_scrape_collector_duration_seconds": ("gauge", {"collector"}),
}


@pytest.mark.parametrize("name", sorted(NODE_EXPORTER_1_5))
def test_names_types_and_label_names_are_node_exporters(
    host: Callable[..., HostCollector], udev_root: Path, name: str
) -> None:
    families = scrape(host(system=linux(rootfs=udev_root, statvfs=FakeStatvfs(statfs_table(udev_root)))))
    typ, labels = NODE_EXPORTER_1_5[name]
    assert name in families
    assert families[name][0] == typ
    assert families.label_names(name) == {frozenset(labels)}


def test_every_collector_succeeds_on_the_fixtures_and_nothing_has_created_series(
    host: Callable[..., HostCollector],
) -> None:
    collector = host()
    families = scrape(collector)
    assert families.series("node_scrape_collector_success") == {lab(collector=n): 1.0 for n in HOST_COLLECTORS}
    durations = families.series("node_scrape_collector_duration_seconds")
    assert set(durations) == {lab(collector=n) for n in HOST_COLLECTORS}
    assert all(0 <= v < 1 for v in durations.values())
    assert "_created" not in families.text
    assert list(collector.describe()) == []


def test_a_disabled_collector_has_no_series_at_all(host: Callable[..., HostCollector]) -> None:
    families = scrape(host(config(collectors={"vmstat": False})))
    assert lab(collector="vmstat") not in families.series("node_scrape_collector_duration_seconds")
    assert lab(collector="vmstat") not in families.series("node_scrape_collector_success")
    assert not [n for n in families if n.startswith("node_vmstat_")]
    assert lab(collector="meminfo") in families.series("node_scrape_collector_duration_seconds")


# ---------------------------------------------------------------------------
# The registry: one list of collectors for the config, the collector set and the docs


def test_the_registry_is_node_exporters_order_and_the_config_switches_follow_it() -> None:
    # The order fixes the output's order: the success and duration series come out in it.
    assert HOST_COLLECTORS == (
        "cpu",
        "loadavg",
        "meminfo",
        "filesystem",
        "diskstats",
        "netdev",
        "netclass",
        "netstat",
        "filefd",
        "vmstat",
        "stat",
        "time",
        "uname",
        "os",
    )
    assert tuple(spec.name for spec in COLLECTORS) == HOST_COLLECTORS
    assert tuple(HostCollectors.model_fields) == HOST_COLLECTORS
    assert HostCollectors().enabled() == tuple(spec.name for spec in COLLECTORS if spec.default_enabled)


def test_the_output_follows_the_registry_order(host: Callable[..., HostCollector]) -> None:
    text = scrape(host()).text
    labels = re.findall(r'^node_scrape_collector_success\{collector="([a-z]+)"\}', text, re.MULTILINE)
    assert tuple(labels) == HOST_COLLECTORS


def test_off_linux_without_psutil_only_the_collectors_needing_nothing_run(host: Callable[..., HostCollector]) -> None:
    families = scrape(host(system=macos(platform="freebsd", psutil=None)))
    assert families.series("node_scrape_collector_success") == {lab(collector=n): 1 for n in ("time", "uname", "os")}


def test_the_readme_names_exactly_the_registry_collectors() -> None:
    lines = README.read_text(encoding="utf-8").splitlines()
    row = (
        "| `host.collectors.NAME` | `true` | turn one sub-collector off, as node_exporter's "
        f"`--no-collector.NAME`: {markdown_list()} |"
    )
    assert row in lines
    assert "`filefd` (Linux only)" in row and "`os` (not on Windows)" in row and "`cpu`, " in row
    # The table of what each collector exports, one row per collector in the same order.
    start = lines.index("| collector | Linux | macOS (psutil) | Windows (psutil) |") + 2
    end = lines.index("", start)
    assert tuple(line.split("`")[1] for line in lines[start:end]) == HOST_COLLECTORS


# ---------------------------------------------------------------------------
# cpu and stat


def stat_lines() -> dict[str, list[int]]:
    return {line.split()[0]: [int(v) for v in line.split()[1:]] for line in (PROC / "stat").read_text().splitlines()}


def test_cpu_seconds_are_ticks_over_user_hz(host: Callable[..., HostCollector]) -> None:
    families = scrape(host(config("cpu")))
    stat = stat_lines()
    modes = ["user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal"]
    expected = {lab(cpu=str(c), mode=m): stat[f"cpu{c}"][i] / 100 for c in (0, 1) for i, m in enumerate(modes)}
    assert families.series("node_cpu_seconds_total") == expected
    guest = {
        lab(cpu=str(c), mode=m): stat[f"cpu{c}"][8 + i] / 100 for c in (0, 1) for i, m in enumerate(["user", "nice"])
    }
    assert families.series("node_cpu_guest_seconds_total") == guest
    assert families.value("node_cpu_guest_seconds_total", cpu="1", mode="user") == 2.5


def test_cpu_counters_are_held_when_the_kernel_goes_backwards(
    host: Callable[..., HostCollector], tmp_path: Path
) -> None:
    proc = copy_proc(tmp_path)
    collector = host(config("cpu"), linux(procfs=proc))

    def write(cpu0: str) -> dict[Labels, float]:
        (proc / "stat").write_text(f"cpu  0 0 0 0 0 0 0 0 0 0\ncpu0 {cpu0}\n")
        return scrape(collector).series("node_cpu_seconds_total")

    write("1000 0 500 100000 300 0 10 0 0 0")
    # idle 1 s and iowait 2 s lower (less than node_exporter's 3 s hot-plug threshold), user higher.
    held = write("1100 0 500 99900 100 0 10 0 0 0")
    assert held[lab(cpu="0", mode="idle")] == 1000.0
    assert held[lab(cpu="0", mode="iowait")] == 3.0
    assert held[lab(cpu="0", mode="user")] == 11.0
    # idle 5 s lower: a hot-plugged CPU, its counters start over.
    reset = write("1200 0 500 99500 100 0 10 0 0 0")
    assert reset[lab(cpu="0", mode="idle")] == 995.0
    assert reset[lab(cpu="0", mode="iowait")] == 1.0


def test_stat_counters(host: Callable[..., HostCollector]) -> None:
    families = scrape(host(config("stat")))
    stat = stat_lines()
    assert families.value("node_boot_time_seconds") == stat["btime"][0]
    assert families.value("node_context_switches_total") == stat["ctxt"][0]
    assert families.value("node_forks_total") == stat["processes"][0]
    assert families.value("node_intr_total") == stat["intr"][0]
    assert families.value("node_procs_running") == 3
    assert families.value("node_procs_blocked") == 1


def test_offline_cpu_in_the_middle_is_reported_as_zeros_like_node_exporter(
    host: Callable[..., HostCollector], tmp_path: Path
) -> None:
    proc = copy_proc(tmp_path)
    (proc / "stat").write_text("cpu  0 0 0 0\ncpu0 100 0 0 200\ncpu2 300 0 0 400\n")
    seconds = scrape(host(config("cpu"), linux(procfs=proc))).series("node_cpu_seconds_total")
    assert seconds[lab(cpu="1", mode="user")] == 0.0
    assert seconds[lab(cpu="2", mode="user")] == 3.0


# ---------------------------------------------------------------------------
# loadavg, meminfo, vmstat, filefd


def test_loadavg(host: Callable[..., HostCollector]) -> None:
    families = scrape(host(config("loadavg")))
    one, five, fifteen = ((PROC / "loadavg").read_text().split())[:3]
    assert families.value("node_load1") == float(one)
    assert families.value("node_load5") == float(five)
    assert families.value("node_load15") == float(fifteen)


def test_meminfo_every_field_renamed_and_in_bytes(host: Callable[..., HostCollector]) -> None:
    families = scrape(host(config("meminfo")))
    expected = {}
    for line in (PROC / "meminfo").read_text().splitlines():
        key, number, *unit = line.split()
        name = "node_memory_" + re.sub(r"\((.*)\)", r"_\1", key[:-1])
        expected[name + ("_bytes" if unit else "")] = float(number) * (1024 if unit else 1)
    got = {name: families.value(name) for name in families if name.startswith("node_memory_")}
    assert got == expected
    assert "node_memory_Active_anon_bytes" in got
    assert "node_memory_HugePages_Total" in got
    assert all(families[name][0] == "gauge" for name in got)


def test_vmstat_default_fields_untyped(host: Callable[..., HostCollector]) -> None:
    families = scrape(host(config("vmstat")))
    got = {name: families.value(name) for name in families if name.startswith("node_vmstat_")}
    assert got == {
        "node_vmstat_pgpgin": 601337,
        "node_vmstat_pgpgout": 1110200,
        "node_vmstat_pswpin": 17,
        "node_vmstat_pswpout": 0,
        "node_vmstat_pgfault": 9995724,
        "node_vmstat_pgmajfault": 324,
        "node_vmstat_oom_kill": 2,
    }
    assert {families[name][0] for name in got} == {"untyped"}


def test_vmstat_fields_regex_is_searched(host: Callable[..., HostCollector]) -> None:
    families = scrape(host(config("vmstat", vmstat={"fields": "kswapd"})))
    assert {n for n in families if n.startswith("node_vmstat_")} == {
        "node_vmstat_pgsteal_kswapd",
        "node_vmstat_pgdemote_kswapd",
    }


def test_filefd(host: Callable[..., HostCollector]) -> None:
    families = scrape(host(config("filefd")))
    allocated, _, maximum = (PROC / "sys/fs/file-nr").read_text().split()
    assert families.value("node_filefd_allocated") == float(allocated)
    assert families.value("node_filefd_maximum") == float(maximum)


# ---------------------------------------------------------------------------
# diskstats


def disk_fields() -> dict[str, list[int]]:
    return {p[2]: [int(v) for v in p[3:]] for p in map(str.split, (PROC / "diskstats").read_text().splitlines())}


def test_diskstats_values_and_default_exclude(host: Callable[..., HostCollector]) -> None:
    families = scrape(host(config("diskstats")))
    d = disk_fields()
    # loop0, zram0 and partitions sda1 and nvme0n1p1 are excluded by node_exporter's default.
    assert set(families.series("node_disk_reads_completed_total")) == {
        lab(device=n) for n in ("vda", "sda", "nvme0n1", "sdb")
    }
    vda = d["vda"]
    assert families.value("node_disk_reads_completed_total", device="vda") == vda[0]
    assert families.value("node_disk_reads_merged_total", device="vda") == vda[1]
    assert families.value("node_disk_read_bytes_total", device="vda") == vda[2] * 512
    assert families.value("node_disk_read_time_seconds_total", device="vda") == pytest.approx(vda[3] / 1000)
    assert families.value("node_disk_writes_completed_total", device="vda") == vda[4]
    assert families.value("node_disk_writes_merged_total", device="vda") == vda[5]
    assert families.value("node_disk_written_bytes_total", device="vda") == vda[6] * 512
    assert families.value("node_disk_write_time_seconds_total", device="vda") == pytest.approx(vda[7] / 1000)
    assert families.value("node_disk_io_now", device="sda") == 2
    assert families.value("node_disk_io_time_seconds_total", device="vda") == pytest.approx(vda[9] / 1000)
    assert families.value("node_disk_io_time_weighted_seconds_total", device="vda") == pytest.approx(vda[10] / 1000)
    assert families.value("node_disk_discards_completed_total", device="vda") == vda[11]
    assert families.value("node_disk_discards_merged_total", device="vda") == vda[12]
    assert families.value("node_disk_discarded_sectors_total", device="vda") == vda[13]
    assert families.value("node_disk_discard_time_seconds_total", device="vda") == pytest.approx(vda[14] / 1000)
    assert families.value("node_disk_flush_requests_total", device="vda") == vda[15]
    assert families.value("node_disk_flush_requests_time_seconds_total", device="vda") == pytest.approx(vda[16] / 1000)
    assert families[("node_disk_io_now")][0] == "gauge"
    # Older kernels print fewer columns: only those are exported (sdb: 11, nvme0n1: 15).
    assert lab(device="sdb") not in families.series("node_disk_discards_completed_total")
    assert lab(device="nvme0n1") in families.series("node_disk_discard_time_seconds_total")
    assert lab(device="nvme0n1") not in families.series("node_disk_flush_requests_total")


def test_disk_info_with_and_without_udev_data(host: Callable[..., HostCollector], udev_root: Path) -> None:
    families = scrape(host(config("diskstats"), linux(rootfs=udev_root)))
    info = families.series("node_disk_info")
    sda = dict(
        device="sda",
        major="8",
        minor="0",
        path="pci-0000:00:17.0-ata-1",
        wwn="0x5002538e40a0eb1c",
        model="Samsung_SSD_860_EVO_500GB",
        serial="S3Z1NB0K123456",
        revision="RVT04B6Q",
    )
    assert info[lab(**sda)] == 1
    vda = dict(device="vda", major="254", minor="0", path="", wwn="", model="", serial="", revision="")
    assert info[lab(**vda)] == 1
    fs = lab(device="sda", type="LVM2_member", usage="raid", uuid="Xq1Bk3-abcd", version="LVM2 001")
    assert families.series("node_disk_filesystem_info") == {fs: 1.0}
    assert families.value("node_disk_ata_write_cache_enabled", device="sda") == 1
    assert families.value("node_disk_ata_rotation_rate_rpm", device="sda") == 0
    assert "node_disk_device_mapper_info" not in families  # no DM_NAME anywhere: no empty family either


@pytest.mark.parametrize(
    ("section", "devices"),
    [
        ({"devices_include": "^sd"}, {"sda", "sda1", "sdb"}),  # an include replaces the default exclude
        ({"devices_exclude": "^(loop|sd)"}, {"vda", "zram0", "nvme0n1", "nvme0n1p1"}),
    ],
)
def test_diskstats_device_filters(
    host: Callable[..., HostCollector], section: dict[str, str], devices: set[str]
) -> None:
    families = scrape(host(config("diskstats", diskstats=section)))
    assert set(families.series("node_disk_reads_completed_total")) == {lab(device=d) for d in devices}


# ---------------------------------------------------------------------------
# netdev, netclass, netstat

NETDEV = [
    "receive_bytes",
    "receive_packets",
    "receive_errs",
    "receive_drop",
    "receive_fifo",
    "receive_frame",
    "receive_compressed",
    "receive_multicast",
    "transmit_bytes",
    "transmit_packets",
    "transmit_errs",
    "transmit_drop",
    "transmit_fifo",
    "transmit_colls",
    "transmit_carrier",
    "transmit_compressed",
]


def test_netdev_every_column(host: Callable[..., HostCollector]) -> None:
    families = scrape(host(config("netdev")))
    lines = (PROC / "net/dev").read_text().splitlines()[2:]
    rows = {name.strip(): [float(v) for v in rest.split()] for name, _, rest in (ln.partition(":") for ln in lines)}
    for i, field in enumerate(NETDEV):
        name = f"node_network_{field}_total"
        assert families[name][0] == "counter"
        assert families.series(name) == {lab(device=d): row[i] for d, row in rows.items()}, name
    # From sysfs, for the devices it has (docker0 has no directory in the fixture).
    assert families.series("node_network_receive_nohandler_total") == {
        lab(device="eth0"): 5.0,
        lab(device="lo"): 0.0,
        lab(device="ifb0"): 0.0,
    }


@pytest.mark.parametrize(
    ("section", "devices"),
    [
        ({}, {"lo", "ifb0", "eth0", "docker0"}),  # upstream node_exporter excludes nothing by default
        ({"devices_exclude": "^(lo|docker)"}, {"ifb0", "eth0"}),
        ({"devices_include": "eth"}, {"eth0"}),
    ],
)
def test_netdev_device_filters(host: Callable[..., HostCollector], section: dict[str, str], devices: set[str]) -> None:
    families = scrape(host(config("netdev", netdev=section)))
    assert set(families.series("node_network_receive_bytes_total")) == {lab(device=d) for d in devices}


def test_netclass_state_info_and_attributes(host: Callable[..., HostCollector]) -> None:
    families = scrape(host(config("netclass")))
    # bonding_masters is a file in class/net, not an interface; lo's operstate is "unknown", so not up.
    assert families.series("node_network_up") == {lab(device="eth0"): 1, lab(device="lo"): 0, lab(device="ifb0"): 0}
    info = families.series("node_network_info")
    eth0 = dict(
        device="eth0",
        address="02:fc:00:00:00:01",
        broadcast="ff:ff:ff:ff:ff:ff",
        duplex="full",
        operstate="up",
        ifalias="uplink",
    )
    assert info[lab(**eth0)] == 1
    # lo's duplex file cannot be read (EINVAL on the real host, absent here): an empty label.
    lo = dict(
        device="lo",
        address="00:00:00:00:00:00",
        broadcast="00:00:00:00:00:00",
        duplex="",
        operstate="unknown",
        ifalias="",
    )
    assert info[lab(**lo)] == 1
    assert families.value("node_network_mtu_bytes", device="lo") == 65536
    assert families.value("node_network_speed_bytes", device="eth0") == 1000 * 1_000_000 / 8
    assert families.value("node_network_flags", device="eth0") == 0x1003
    assert families.value("node_network_protocol_type", device="lo") == 772
    assert families.value("node_network_carrier_changes_total", device="eth0") == 2
    assert families.value("node_network_iface_id", device="ifb0") == 2
    # Attributes the driver does not support are skipped, not errors.
    assert lab(device="ifb0") not in families.series("node_network_carrier")
    assert lab(device="lo") not in families.series("node_network_speed_bytes")


def test_netclass_unknown_speed_is_negative_like_node_exporter(
    host: Callable[..., HostCollector], tmp_path: Path
) -> None:
    sys_dir = tmp_path / "sys"
    shutil.copytree(SYS, sys_dir)
    (sys_dir / "class/net/eth0/speed").write_text("-1\n")
    families = scrape(host(config("netclass"), linux(sysfs=sys_dir)))
    assert families.value("node_network_speed_bytes", device="eth0") == -125000


def test_netclass_reads_fixed_attributes_once_per_interface(host: Callable[..., HostCollector], tmp_path: Path) -> None:
    sys_dir = tmp_path / "sys"
    shutil.copytree(SYS, sys_dir)
    collector = host(config("netclass"), linux(sysfs=sys_dir))
    assert scrape(collector).value("node_network_protocol_type", device="eth0") == 1
    (sys_dir / "class/net/eth0/type").write_text("32\n")
    (sys_dir / "class/net/eth0/mtu").write_text("9000\n")
    families = scrape(collector)
    assert families.value("node_network_protocol_type", device="eth0") == 1  # fixed for the interface's life
    assert families.value("node_network_mtu_bytes", device="eth0") == 9000  # read every scrape
    # Same name, new ifindex: another interface, read afresh.
    (sys_dir / "class/net/eth0/ifindex").write_text("7\n")
    assert scrape(collector).value("node_network_protocol_type", device="eth0") == 32


def test_netclass_ignored_devices(host: Callable[..., HostCollector]) -> None:
    families = scrape(host(config("netclass", netclass={"ignored_devices": "^(lo|ifb)"})))
    assert set(families.series("node_network_up")) == {lab(device="eth0")}


def test_netstat_default_fields_from_netstat_snmp_and_snmp6(host: Callable[..., HostCollector]) -> None:
    families = scrape(host(config("netstat")))
    netstat = {name: families.value(name) for name in families if name.startswith("node_netstat_")}
    assert netstat["node_netstat_Tcp_CurrEstab"] == 7
    assert netstat["node_netstat_Tcp_ActiveOpens"] == 9001
    assert netstat["node_netstat_Ip_Forwarding"] == 2
    assert netstat["node_netstat_IpExt_InOctets"] == 649891649
    assert netstat["node_netstat_TcpExt_ListenDrops"] == 0
    assert netstat["node_netstat_Ip6_InOctets"] == 2508
    assert netstat["node_netstat_Icmp6_InErrors"] == 1
    assert netstat["node_netstat_UdpLite6_InErrors"] == 0
    assert "node_netstat_Tcp_MaxConn" not in netstat  # not in the default fields
    assert "node_netstat_Ip6_InReceives" not in netstat
    assert {families[name][0] for name in netstat} == {"untyped"}


def test_netstat_without_ipv6(host: Callable[..., HostCollector], tmp_path: Path) -> None:
    collector = host(config("netstat"), linux(procfs=copy_proc(tmp_path, "net/snmp6")))
    families = scrape(collector)
    assert families.value("node_scrape_collector_success", collector="netstat") == 1
    assert "node_netstat_Tcp_CurrEstab" in families
    assert "node_netstat_Ip6_InOctets" not in families


# ---------------------------------------------------------------------------
# filesystem


def fs_labels(mountpoint: str) -> Labels:
    device, fstype = {
        "/": ("/dev/vda", "ext4"),
        "/run": ("tmpfs", "tmpfs"),
        "/boot": ("/dev/sda1", "ext4"),
        "/mnt/with space": ("/dev/sdb1", "xfs"),
        "/mnt/nfs": ("server:/export", "nfs4"),
    }[mountpoint]
    return lab(device=device, mountpoint=mountpoint, fstype=fstype)


def test_filesystem_values_filters_and_dedup(host: Callable[..., HostCollector]) -> None:
    statvfs = FakeStatvfs(statfs_table())
    families = scrape(host(config("filesystem"), linux(statvfs=statvfs)))
    for mp, st in STATFS.items():
        labels = fs_labels(mp)
        assert families.series("node_filesystem_size_bytes")[labels] == st.f_blocks * st.f_bsize
        assert families.series("node_filesystem_free_bytes")[labels] == st.f_bfree * st.f_bsize
        assert families.series("node_filesystem_avail_bytes")[labels] == st.f_bavail * st.f_bsize
        assert families.series("node_filesystem_files")[labels] == st.f_files
        assert families.series("node_filesystem_files_free")[labels] == st.f_ffree
        assert families.series("node_filesystem_readonly")[labels] == (1 if mp == "/boot" else 0)
        assert families.series("node_filesystem_device_error")[labels] == 0
    # The NFS mount is not in the statvfs table: its call fails, so device_error 1 and no sizes.
    assert families.series("node_filesystem_device_error")[fs_labels("/mnt/nfs")] == 1
    assert fs_labels("/mnt/nfs") not in families.series("node_filesystem_size_bytes")
    # /proc, /sys, /dev, /run/credentials, docker's overlay, cgroup2 and squashfs are left out by default;
    # /run is mounted twice and reported once (and statted once).
    assert set(families.series("node_filesystem_device_error")) == {fs_labels(mp) for mp in [*STATFS, "/mnt/nfs"]}
    assert statvfs.calls == Counter({rooted(mp): 1 for mp in [*STATFS, "/mnt/nfs"]})


@pytest.mark.parametrize(
    ("section", "mountpoints"),
    [
        ({"mount_points_include": "^/mnt/"}, {"/mnt/with space", "/mnt/nfs"}),
        (
            {"mount_points_exclude": "^/(proc|sys|dev|mnt)($|/)"},
            {"/", "/boot", "/run", "/run/credentials/systemd-journald.service"},
        ),
        ({"fs_types_include": "^ext4$"}, {"/", "/boot"}),
        (
            {"fs_types_exclude": "^(proc|sysfs|devtmpfs|tmpfs|cgroup2|overlay|nfs4)$"},
            {"/", "/boot", "/mnt/with space", "/snap/core/1"},
        ),
    ],
)
def test_filesystem_filters(host: Callable[..., HostCollector], section: dict[str, str], mountpoints: set[str]) -> None:
    families = scrape(host(config("filesystem", filesystem=section)))
    got = {dict(labels)["mountpoint"] for labels in families.series("node_filesystem_device_error")}
    assert got == mountpoints


def test_filesystem_rootfs_prefix_is_stripped_from_mount_points(
    host: Callable[..., HostCollector], tmp_path: Path
) -> None:
    proc = copy_proc(tmp_path)
    (proc / "1/mounts").write_text(
        "/dev/vda /host ext4 rw 0 0\n/dev/vdb /host/data xfs ro 0 0\n/dev/vdc /other ext4 rw 0 0\n"
    )
    root = Path("/host")
    statvfs = FakeStatvfs({"/host": usage(10, 5, 4, 3, 2), "/host/data": usage(20, 5, 4, 3, 2)})
    families = scrape(host(config("filesystem"), linux(procfs=proc, rootfs=root, statvfs=statvfs)))
    sizes = families.series("node_filesystem_size_bytes")
    assert sizes[lab(device="/dev/vda", mountpoint="/", fstype="ext4")] == 10 * 4096
    assert sizes[lab(device="/dev/vdb", mountpoint="/data", fstype="xfs")] == 20 * 4096
    # statvfs ran under rootfs: "/" -> /host, "/data" -> /host/data, "/other" (outside rootfs) -> /host/other
    assert set(statvfs.calls) == {"/host", "/host/data", "/host/other"}


def test_filesystem_falls_back_to_self_mounts(host: Callable[..., HostCollector], tmp_path: Path) -> None:
    proc = copy_proc(tmp_path, "1/mounts")
    (proc / "self").mkdir()
    (proc / "self/mounts").write_text("/dev/vda / ext4 rw 0 0\n")
    families = scrape(host(config("filesystem"), linux(procfs=proc)))
    assert set(families.series("node_filesystem_size_bytes")) == {fs_labels("/")}


# A scrape with a hung mount must return; it is given far longer than any mount_timeout below, so
# that a slow machine cannot fail it, and a scrape that waited for the hung call would never return.
SCRAPE_BOUND = 60.0


def scrape_while_hung(collector: HostCollector, statvfs: FakeStatvfs) -> Families:
    """A scrape that returns while the hung statfs calls are still blocked (they are released only after)."""
    pool = ThreadPoolExecutor(1)
    try:
        families = pool.submit(scrape, collector).result(timeout=SCRAPE_BOUND)
    finally:
        pool.shutdown(wait=False)
    assert not statvfs.release.is_set()
    return families


def test_a_hung_mount_does_not_hang_the_scrape_and_is_not_called_again(host: Callable[..., HostCollector]) -> None:
    nfs = rooted("/mnt/nfs")
    statvfs = FakeStatvfs({**statfs_table(), nfs: usage(100, 50, 40, 10, 5)}, hang=frozenset({nfs}))
    log = RecordingLog()
    collector = host(config("filesystem", filesystem={"mount_timeout": "1s"}), linux(statvfs=statvfs), log=log)
    try:
        families = scrape_while_hung(collector, statvfs)
        errors = families.series("node_filesystem_device_error")
        assert errors[fs_labels("/mnt/nfs")] == 1
        assert fs_labels("/mnt/nfs") not in families.series("node_filesystem_size_bytes")
        assert all(errors[fs_labels(mp)] == 0 for mp in STATFS)
        assert families.value("node_scrape_collector_success", collector="filesystem") == 1
        timed_out = {"collector": "filesystem", "mountpoint": "/mnt/nfs"}
        assert ("debug", "mount point timed out, labelled stuck until its call returns", timed_out) in log.records

        # Still stuck: not called, so not waited for, and reported as an error with no second call piling up.
        families = scrape_while_hung(collector, statvfs)
        assert families.series("node_filesystem_device_error")[fs_labels("/mnt/nfs")] == 1
        assert statvfs.calls[nfs] == 1
        assert all(statvfs.calls[rooted(mp)] == 2 for mp in STATFS)
        skipped = ("debug", "mount point still unresponsive, not called again", timed_out)
        assert log.records.count(skipped) == 1
    finally:
        statvfs.release.set()

    # Once the call returns, the mount is called again and reported normally.
    deadline = time.monotonic() + SCRAPE_BOUND
    while True:
        families = scrape(collector)
        if families.series("node_filesystem_device_error")[fs_labels("/mnt/nfs")] == 0 or time.monotonic() > deadline:
            break
        time.sleep(0.01)
    assert families.series("node_filesystem_size_bytes")[fs_labels("/mnt/nfs")] == 100 * 4096
    assert statvfs.calls[nfs] == 2


def test_many_hung_mounts_do_not_starve_the_others(host: Callable[..., HostCollector], tmp_path: Path) -> None:
    proc = copy_proc(tmp_path)
    hung = [f"/mnt/nfs{i}" for i in range(6)]  # more than the 4 workers
    lines = [f"server:/e{i} {mp} nfs4 rw 0 0" for i, mp in enumerate(hung)] + ["/dev/vda / ext4 rw 0 0"]
    (proc / "1/mounts").write_text("\n".join(lines) + "\n")
    statvfs = FakeStatvfs(statfs_table(), hang=frozenset(rooted(mp) for mp in hung))
    collector = host(config("filesystem", filesystem={"mount_timeout": "1s"}), linux(procfs=proc, statvfs=statvfs))
    try:
        families = scrape_while_hung(collector, statvfs)
        assert families.series("node_filesystem_device_error")[fs_labels("/")] == 1  # queued behind 4 hung calls
        # The next scrape gets "/" within the timeout: stuck calls no longer hold the workers.
        families = scrape_while_hung(collector, statvfs)
        assert families.series("node_filesystem_device_error")[fs_labels("/")] == 0
        assert all(statvfs.calls[rooted(mp)] <= 1 for mp in hung)
    finally:
        statvfs.release.set()


# ---------------------------------------------------------------------------
# time, uname, os


def test_time(host: Callable[..., HostCollector]) -> None:
    families = scrape(host(config("time")))
    assert families.value("node_time_seconds") == NOW
    local = time.localtime(NOW)
    assert families.series("node_time_zone_offset_seconds") == {lab(time_zone=local.tm_zone): local.tm_gmtoff}
    assert families.series("node_time_clocksource_available_info") == {
        lab(device="0", clocksource="tsc"): 1,
        lab(device="0", clocksource="kvm-clock"): 1,
    }
    assert families.series("node_time_clocksource_current_info") == {lab(device="0", clocksource="tsc"): 1}


def test_uname(host: Callable[..., HostCollector]) -> None:
    families = scrape(host(config("uname")))
    expected = lab(
        sysname="Linux",
        release="6.18.44-fc-v657",
        version="#1 SMP PREEMPT_DYNAMIC @0",
        machine="x86_64",
        nodename="vm",
        domainname="(none)",
    )
    assert families.series("node_uname_info") == {expected: 1}


def test_uname_is_read_once_not_per_scrape(host: Callable[..., HostCollector]) -> None:
    calls = []

    def uname() -> Uname:
        calls.append(1)
        return UNAME

    collector = host(config("uname"), linux(uname=uname))
    for _ in range(3):
        scrape(collector)
    assert len(calls) == 1


def test_os_release(host: Callable[..., HostCollector]) -> None:
    families = scrape(host(config("os")))
    info = dict.fromkeys(NODE_EXPORTER_1_5["node_os_info"][1], "")
    info.update(
        id="debian",
        name="Debian GNU/Linux",
        pretty_name="Debian GNU/Linux 12 (bookworm)",
        version="12 (bookworm)",
        version_codename="bookworm",
        version_id="12",
    )
    assert families.series("node_os_info") == {lab(**info): 1}
    assert families.series("node_os_version") == {lab(id="debian", id_like="", name="Debian GNU/Linux"): 12}


def test_os_release_falls_back_to_usr_lib(host: Callable[..., HostCollector], tmp_path: Path) -> None:
    (tmp_path / "usr/lib").mkdir(parents=True)
    (tmp_path / "usr/lib/os-release").write_text('NAME="Ubuntu"\nID=ubuntu\nID_LIKE=debian\nVERSION_ID="22.04"\n')
    families = scrape(host(config("os"), linux(rootfs=tmp_path)))
    assert families.series("node_os_version") == {lab(id="ubuntu", id_like="debian", name="Ubuntu"): 22.04}


def test_os_release_without_a_version_number_has_no_version_series(
    host: Callable[..., HostCollector], tmp_path: Path
) -> None:
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc/os-release").write_text("NAME=Arch\nID=arch\nBUILD_ID=rolling\n")
    families = scrape(host(config("os"), linux(rootfs=tmp_path)))
    assert "node_os_version" not in families
    assert len(families.series("node_os_info")) == 1


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('NAME="Debian GNU/Linux"', {"NAME": "Debian GNU/Linux"}),
        ("NAME='single quoted'", {"NAME": "single quoted"}),
        ('PRETTY_NAME="say \\"hi\\" \\$HOME"', {"PRETTY_NAME": 'say "hi" $HOME'}),
        ("ID=fedora # a comment", {"ID": "fedora"}),
        ("# comment\n\nVERSION_ID=39", {"VERSION_ID": "39"}),
        ("not a pair", {}),
    ],
)
def test_os_release_parsing(text: str, expected: dict[str, str]) -> None:
    assert parse_os_release(text) == expected


def test_the_local_system_reads_from_the_configured_paths() -> None:
    cfg = HostConfig.model_validate({"paths": {"procfs": "/host/proc", "sysfs": "/host/sys", "rootfs": "/host"}})
    system = System.local(cfg.paths)
    # Linux reads /proc and /sys itself; elsewhere psutil is loaded instead.
    on_linux = sys.platform.startswith("linux")
    assert system.linux == on_linux
    assert (system.psutil is None) == on_linux
    assert (system.procfs, system.sysfs, system.rootfs) == (Path("/host/proc"), Path("/host/sys"), Path("/host"))
    assert abs(system.clock() - time.time()) < 1


# ---------------------------------------------------------------------------
# Failures


class RecordingLog:
    """A structlog-like logger that keeps (level, event, context)."""

    def __init__(self) -> None:
        self.records: list[tuple[str, str, dict[str, Any]]] = []

    def __getattr__(self, level: str) -> Callable[..., None]:
        def log(event: str, **kw: Any) -> None:
            self.records.append((level, event, kw))

        return log


def test_a_missing_source_fails_only_its_collector(host: Callable[..., HostCollector], tmp_path: Path) -> None:
    log = RecordingLog()
    collector = host(config(), linux(procfs=copy_proc(tmp_path, "meminfo")), log=log)
    families = scrape(collector)
    success = families.series("node_scrape_collector_success")
    assert success[lab(collector="meminfo")] == 0
    assert all(v == 1 for k, v in success.items() if k != lab(collector="meminfo"))
    assert not [n for n in families if n.startswith("node_memory_")]
    assert "node_cpu_seconds_total" in families
    assert lab(collector="meminfo") in families.series("node_scrape_collector_duration_seconds")
    warnings = [r for r in log.records if r[0] == "warning"]
    assert len(warnings) == 1 and warnings[0][2]["collector"] == "meminfo"
    assert "FileNotFoundError" in warnings[0][2]["error"]

    scrape(collector)  # the same failure again: logged at debug, not another warning
    assert len([r for r in log.records if r[0] == "warning"]) == 1
    assert [r for r in log.records if r[0] == "debug" and r[2].get("collector") == "meminfo"]


def test_a_shared_file_missing_fails_both_readers(host: Callable[..., HostCollector], tmp_path: Path) -> None:
    families = scrape(host(config("cpu", "stat", "loadavg"), linux(procfs=copy_proc(tmp_path, "stat"))))
    success = families.series("node_scrape_collector_success")
    assert success == {lab(collector="cpu"): 0, lab(collector="stat"): 0, lab(collector="loadavg"): 1}


def test_a_malformed_file_fails_its_collector(host: Callable[..., HostCollector], tmp_path: Path) -> None:
    proc = copy_proc(tmp_path)
    (proc / "loadavg").write_text("garbage\n")
    families = scrape(host(config("loadavg", "filefd"), linux(procfs=proc)))
    success = families.series("node_scrape_collector_success")
    assert success == {lab(collector="loadavg"): 0, lab(collector="filefd"): 1}


def test_os_without_any_release_file_fails_only_os(host: Callable[..., HostCollector], tmp_path: Path) -> None:
    families = scrape(host(config("os", "uname"), linux(rootfs=tmp_path)))
    assert families.series("node_scrape_collector_success") == {lab(collector="os"): 0, lab(collector="uname"): 1}


# ---------------------------------------------------------------------------
# macOS and Windows, through a fake psutil

CpuTimesMac = namedtuple("CpuTimesMac", "user nice system idle")
CpuTimesWin = namedtuple("CpuTimesWin", "user system idle interrupt dpc")
VMemMac = namedtuple("VMemMac", "total available percent used free active inactive wired")
VMemWin = namedtuple("VMemWin", "total available percent used free")
Swap = namedtuple("Swap", "total used free percent sin sout")
Partition = namedtuple("Partition", "device mountpoint fstype opts")
Usage = namedtuple("Usage", "total used free percent")
DiskIO = namedtuple("DiskIO", "read_count write_count read_bytes write_bytes read_time write_time")
NetIO = namedtuple("NetIO", "bytes_sent bytes_recv packets_sent packets_recv errin errout dropin dropout")
IfStats = namedtuple("IfStats", "isup duplex speed mtu flags")
CpuStats = namedtuple("CpuStats", "ctx_switches interrupts soft_interrupts syscalls")
Conn = namedtuple("Conn", "fd family type laddr raddr status pid")


class FakePsutil:
    """The psutil functions the host collector calls, with macOS- or Windows-shaped records."""

    def __init__(self, windows: bool = False) -> None:
        self.windows = windows

    def cpu_times(self, percpu: bool = False) -> list[Any]:
        if self.windows:
            return [CpuTimesWin(100.5, 50.25, 1000.0, 3.0, 1.5), CpuTimesWin(110.0, 40.0, 990.0, 2.0, 1.0)]
        return [CpuTimesMac(100.5, 2.0, 50.25, 1000.0), CpuTimesMac(110.0, 0.0, 40.0, 990.0)]

    def cpu_stats(self) -> CpuStats:
        return CpuStats(123456, 7890, 0, 55555)

    def getloadavg(self) -> tuple[float, float, float]:
        return (1.5, 1.25, 0.75)

    def virtual_memory(self) -> Any:
        if self.windows:
            return VMemWin(16 * 2**30, 8 * 2**30, 50.0, 8 * 2**30, 8 * 2**30)
        return VMemMac(16 * 2**30, 6 * 2**30, 62.5, 9 * 2**30, 2**30, 5 * 2**30, 4 * 2**30, 3 * 2**30)

    def swap_memory(self) -> Swap:
        return Swap(2 * 2**30, 2**29, 3 * 2**29, 25.0, 0, 0)

    def disk_partitions(self, all: bool = False) -> list[Partition]:
        if self.windows:
            return [Partition("C:\\", "C:\\", "NTFS", "rw,fixed")]
        return [
            Partition("/dev/disk3s1s1", "/", "apfs", "ro,local,rootfs,dovolfs,journaled,multilabel"),
            Partition("/dev/disk3s5", "/System/Volumes/Data", "apfs", "rw,local,dovolfs,journaled,multilabel"),
            Partition("devfs", "/dev", "devfs", "rw,local,nobrowse,multilabel"),
        ]

    def disk_usage(self, path: str) -> Usage:
        assert path == "C:\\"
        return Usage(500 * 10**9, 200 * 10**9, 300 * 10**9, 40.0)

    def disk_io_counters(self, perdisk: bool = False) -> dict[str, DiskIO]:
        name = "PhysicalDrive0" if self.windows else "disk0"
        return {name: DiskIO(1000, 2000, 4096000, 8192000, 1500, 2500)}

    def net_io_counters(self, pernic: bool = False) -> dict[str, NetIO]:
        return {"en0": NetIO(2000, 1000, 20, 10, 1, 2, 3, 4), "lo0": NetIO(5, 5, 1, 1, 0, 0, 0, 0)}

    def net_if_stats(self) -> dict[str, IfStats]:
        return {"en0": IfStats(True, 2, 1000, 1500, "up,broadcast"), "lo0": IfStats(True, 0, 0, 16384, "up,loopback")}

    def net_connections(self, kind: str = "inet") -> list[Conn]:
        assert kind == "tcp"
        return [Conn(-1, 2, 1, None, None, s, None) for s in ("ESTABLISHED", "ESTABLISHED", "CLOSE_WAIT", "LISTEN")]

    def boot_time(self) -> float:
        return 1_700_000_000.0


MAC_ROOT = FIXTURES / "macos-root"


def macos(**overrides: Any) -> System:
    statvfs = FakeStatvfs(
        {
            rooted("/", MAC_ROOT): usage(1000, 600, 500, 100, 60),
            rooted("/System/Volumes/Data", MAC_ROOT): usage(2000, 900, 800, 10, 5),
        }
    )
    fields: dict[str, Any] = {
        "platform": "darwin",
        "procfs": FIXTURES / "no-proc",
        "sysfs": FIXTURES / "no-sys",
        "rootfs": MAC_ROOT,
        "statvfs": statvfs,
        "uname": lambda: Uname("Darwin", "mac.example.com", "23.5.0", "Darwin Kernel Version 23.5.0", "arm64"),
        "clock": lambda: NOW,
        "psutil": FakePsutil(),
    }
    fields.update(overrides)
    return System(**fields)


def windows() -> System:
    ps = FakePsutil(windows=True)

    def statvfs(path: str | bytes) -> Any:
        u = ps.disk_usage(str(path))
        return StatvfsResult(1, 1, u.total, u.free, u.free, 0, 0)

    return System(
        platform="win32",
        procfs=FIXTURES / "no-proc",
        sysfs=FIXTURES / "no-sys",
        rootfs=Path("/"),
        statvfs=statvfs,
        uname=lambda: Uname("Windows", "WINBOX", "10", "10.0.19045", "AMD64"),
        clock=lambda: NOW,
        psutil=ps,
    )


# What each platform exports, as the table in exporter/collectors/host/__init__.py says.
PSUTIL_COMMON = {
    "node_cpu_seconds_total",
    "node_load1",
    "node_load5",
    "node_load15",
    "node_memory_MemTotal_bytes",
    "node_memory_MemFree_bytes",
    "node_memory_MemAvailable_bytes",
    "node_memory_SwapTotal_bytes",
    "node_memory_SwapFree_bytes",
    "node_filesystem_size_bytes",
    "node_filesystem_free_bytes",
    "node_filesystem_avail_bytes",
    "node_filesystem_readonly",
    "node_filesystem_device_error",
    "node_disk_reads_completed_total",
    "node_disk_writes_completed_total",
    "node_disk_read_bytes_total",
    "node_disk_written_bytes_total",
    "node_disk_read_time_seconds_total",
    "node_disk_write_time_seconds_total",
    "node_network_receive_bytes_total",
    "node_network_receive_packets_total",
    "node_network_receive_errs_total",
    "node_network_receive_drop_total",
    "node_network_transmit_bytes_total",
    "node_network_transmit_packets_total",
    "node_network_transmit_errs_total",
    "node_network_transmit_drop_total",
    "node_network_up",
    "node_network_mtu_bytes",
    "node_network_speed_bytes",
    "node_netstat_Tcp_CurrEstab",
    "node_boot_time_seconds",
    "node_context_switches_total",
    "node_intr_total",
    "node_time_seconds",
    "node_time_zone_offset_seconds",
    "node_uname_info",
    "node_scrape_collector_success",
    "node_scrape_collector_duration_seconds",
}
PSUTIL_COLLECTORS = {n for n in HOST_COLLECTORS if n not in ("filefd", "vmstat")}


def test_macos_subset_under_linux_names(host: Callable[..., HostCollector]) -> None:
    families = scrape(host(system=macos()))
    mac_only = {
        "node_memory_Active_bytes",
        "node_memory_Inactive_bytes",
        "node_filesystem_files",
        "node_filesystem_files_free",
        "node_os_info",
        "node_os_version",
    }
    assert set(families) == PSUTIL_COMMON | mac_only
    assert families.series("node_scrape_collector_success") == {lab(collector=n): 1 for n in PSUTIL_COLLECTORS}
    for name, (typ, labels) in NODE_EXPORTER_1_5.items():
        if name in families:
            assert families[name][0] == typ, name
            assert families.label_names(name) == {frozenset(labels)}, name
    cpu = families.series("node_cpu_seconds_total")
    assert set(cpu) == {lab(cpu=c, mode=m) for c in "01" for m in ("user", "nice", "system", "idle")}
    assert cpu[lab(cpu="0", mode="system")] == 50.25
    assert families.value("node_load5") == 1.25
    assert families.value("node_memory_MemAvailable_bytes") == 6 * 2**30
    assert families.value("node_memory_SwapFree_bytes") == 3 * 2**29
    root = lab(device="/dev/disk3s1s1", mountpoint="/", fstype="apfs")
    assert families.series("node_filesystem_size_bytes")[root] == 1000 * 4096
    assert families.series("node_filesystem_readonly")[root] == 1
    assert families.series("node_filesystem_files_free")[root] == 60
    assert lab(device="devfs", mountpoint="/dev", fstype="devfs") not in families.series("node_filesystem_device_error")
    assert families.value("node_disk_read_bytes_total", device="disk0") == 4096000
    assert families.value("node_disk_write_time_seconds_total", device="disk0") == 2.5
    assert families.value("node_network_receive_bytes_total", device="en0") == 1000
    assert families.value("node_network_transmit_drop_total", device="en0") == 4
    assert families.series("node_network_speed_bytes") == {lab(device="en0"): 125_000_000}
    assert families.value("node_netstat_Tcp_CurrEstab") == 3
    assert families.value("node_boot_time_seconds") == 1_700_000_000
    assert families.value("node_context_switches_total") == 123456
    uname = dict(next(iter(families.series("node_uname_info"))))
    assert (uname["nodename"], uname["domainname"]) == ("mac", "example.com")


def test_macos_os_info_from_system_version_plist(host: Callable[..., HostCollector]) -> None:
    families = scrape(host(config("os"), macos()))
    info = dict.fromkeys(NODE_EXPORTER_1_5["node_os_info"][1], "")
    info.update(name="macOS", version="14.5", version_id="14.5", build_id="23F79")
    assert families.series("node_os_info") == {lab(**info): 1}
    assert families.series("node_os_version") == {lab(id="", id_like="", name="macOS"): 14.5}


def test_windows_subset_under_linux_names(host: Callable[..., HostCollector]) -> None:
    families = scrape(host(system=windows()))
    assert set(families) == PSUTIL_COMMON
    assert families.series("node_scrape_collector_success") == {
        lab(collector=n): 1 for n in PSUTIL_COLLECTORS if n != "os"
    }
    cpu = families.series("node_cpu_seconds_total")
    assert set(cpu) == {lab(cpu=c, mode=m) for c in "01" for m in ("user", "system", "idle", "irq", "softirq")}
    assert cpu[lab(cpu="0", mode="irq")] == 3.0
    assert cpu[lab(cpu="0", mode="softirq")] == 1.5
    c = lab(device="C:\\", mountpoint="C:\\", fstype="NTFS")
    assert families.series("node_filesystem_size_bytes")[c] == 500 * 10**9
    assert families.series("node_filesystem_avail_bytes")[c] == 300 * 10**9
    assert families.value("node_memory_MemFree_bytes") == 8 * 2**30
    assert "node_memory_Buffers_bytes" not in families


def test_psutil_failure_fails_only_that_collector(host: Callable[..., HostCollector]) -> None:
    class NoSockets(FakePsutil):
        def net_connections(self, kind: str = "inet") -> list[Conn]:
            raise PermissionError("psutil.AccessDenied: needs root on macOS")

    families = scrape(host(system=macos(psutil=NoSockets())))
    success = families.series("node_scrape_collector_success")
    assert success[lab(collector="netstat")] == 0
    assert success[lab(collector="netdev")] == 1
    assert "node_netstat_Tcp_CurrEstab" not in families
