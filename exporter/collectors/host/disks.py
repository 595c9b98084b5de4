"""node_disk_*: block device I/O counters from /proc/diskstats (psutil elsewhere), as node_exporter's diskstats."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from .base import CollectorSpec, NameFilter, Platforms, Scrape, counter, gauge
from .proc import DiskLine, parse_diskstats, parse_udev
from .system import System, read_file

if TYPE_CHECKING:
    from exporter.config.host import DiskstatsOptions

# node_exporter's default --collector.diskstats.device-exclude (upstream's): partitions, loop, ram, zram, fd.
NODE_DISK_DEVICES_EXCLUDE = r"^(z?ram|loop|fd|(h|s|v|xv)d[a-z]|nvme\d+n\d+p)\d+$"
# Sectors in /proc/diskstats are 512 bytes whatever the device's own sector size.
_SECTOR = 512.0
# Go multiplies by 1/1000 rather than dividing; the same here gives the same float.
_MS = 1.0 / 1000.0

# /proc/diskstats columns after major, minor and name, in order: (name, help, counter?, scale).
_COLUMNS: tuple[tuple[str, str, bool, float], ...] = (
    ("node_disk_reads_completed_total", "The total number of reads completed successfully.", True, 1.0),
    ("node_disk_reads_merged_total", "The total number of reads merged.", True, 1.0),
    ("node_disk_read_bytes_total", "The total number of bytes read successfully.", True, _SECTOR),
    ("node_disk_read_time_seconds_total", "The total number of seconds spent by all reads.", True, _MS),
    ("node_disk_writes_completed_total", "The total number of writes completed successfully.", True, 1.0),
    ("node_disk_writes_merged_total", "The number of writes merged.", True, 1.0),
    ("node_disk_written_bytes_total", "The total number of bytes written successfully.", True, _SECTOR),
    ("node_disk_write_time_seconds_total", "This is the total number of seconds spent by all writes.", True, _MS),
    ("node_disk_io_now", "The number of I/Os currently in progress.", False, 1.0),
    ("node_disk_io_time_seconds_total", "Total seconds spent doing I/Os.", True, _MS),
    ("node_disk_io_time_weighted_seconds_total", "The weighted # of seconds spent doing I/Os.", True, _MS),
    ("node_disk_discards_completed_total", "The total number of discards completed successfully.", True, 1.0),
    ("node_disk_discards_merged_total", "The total number of discards merged.", True, 1.0),
    # node_exporter 1.5.0 exports discarded sectors, not bytes.
    ("node_disk_discarded_sectors_total", "The total number of sectors discarded successfully.", True, 1.0),
    ("node_disk_discard_time_seconds_total", "This is the total number of seconds spent by all discards.", True, _MS),
    ("node_disk_flush_requests_total", "The total number of flush requests completed successfully", True, 1.0),
    (
        "node_disk_flush_requests_time_seconds_total",
        "This is the total number of seconds spent by all flush requests.",
        True,
        _MS,
    ),
)
# psutil's per-disk fields (milliseconds for times) by node_exporter column index.
_PSUTIL_FIELDS = (
    (0, "read_count", 1.0),
    (1, "read_merged_count", 1.0),
    (2, "read_bytes", 1.0),
    (3, "read_time", _MS),
    (4, "write_count", 1.0),
    (5, "write_merged_count", 1.0),
    (6, "write_bytes", 1.0),
    (7, "write_time", _MS),
    (9, "busy_time", _MS),
)
_ATA = (
    ("ID_ATA_WRITE_CACHE", "node_disk_ata_write_cache", "ATA disk has a write cache."),
    ("ID_ATA_WRITE_CACHE_ENABLED", "node_disk_ata_write_cache_enabled", "ATA disk has its write cache enabled."),
    ("ID_ATA_ROTATION_RATE_RPM", "node_disk_ata_rotation_rate_rpm", "ATA disk rotation rate in RPMs (0 for SSDs)."),
)


def _family(index: int) -> CounterMetricFamily | GaugeMetricFamily:
    name, doc, is_counter, _ = _COLUMNS[index]
    return counter(name, doc, ["device"]) if is_counter else gauge(name, doc, ["device"])


class DiskStats:
    """Per-device reads, writes, bytes, times and queue, plus node_disk_info and udev facts on Linux."""

    def __init__(self, options: DiskstatsOptions) -> None:
        self._devices = NameFilter(options.devices_include, options.devices_exclude)

    def collect(self, scrape: Scrape) -> list[Metric]:
        """The counters of every selected device."""
        if not scrape.system.linux:
            return self._collect_psutil(scrape.system)
        columns = [_family(i) for i in range(len(_COLUMNS))]
        info = gauge(
            "node_disk_info",
            "Info of /sys/block/<block_device>.",
            ["device", "major", "minor", "path", "wwn", "model", "serial", "revision"],
        )
        fs_info = gauge(
            "node_disk_filesystem_info", "Info about disk filesystem.", ["device", "type", "usage", "uuid", "version"]
        )
        dm_info = gauge(
            "node_disk_device_mapper_info",
            "Info about disk device mapper.",
            ["device", "name", "uuid", "vg_name", "lv_name", "lv_layer"],
        )
        ata = {key: gauge(name, doc, ["device"]) for key, name, doc in _ATA}
        udev_dir = os.path.join(scrape.rootfs, "run/udev/data")
        for disk in scrape.proc("diskstats", parse_diskstats):
            if self._devices.ignored(disk.device):
                continue
            for family, value, (_, _, _, scale) in zip(columns, disk.stats, _COLUMNS, strict=False):
                family.add_metric([disk.device], float(value) * scale)
            udev = _udev(udev_dir, disk)
            info.add_metric(
                [
                    disk.device,
                    str(disk.major),
                    str(disk.minor),
                    udev.get("ID_PATH", ""),
                    udev.get("ID_WWN", ""),
                    udev.get("ID_MODEL", ""),
                    udev.get("ID_SERIAL_SHORT", ""),
                    udev.get("ID_REVISION", ""),
                ],
                1.0,
            )
            if udev.get("ID_FS_TYPE"):
                fs_info.add_metric(
                    [
                        disk.device,
                        udev["ID_FS_TYPE"],
                        udev.get("ID_FS_USAGE", ""),
                        udev.get("ID_FS_UUID", ""),
                        udev.get("ID_FS_VERSION", ""),
                    ],
                    1.0,
                )
            if udev.get("DM_NAME"):
                dm_info.add_metric(
                    [
                        disk.device,
                        udev["DM_NAME"],
                        udev.get("DM_UUID", ""),
                        udev.get("DM_VG_NAME", ""),
                        udev.get("DM_LV_NAME", ""),
                        udev.get("DM_LV_LAYER", ""),
                    ],
                    1.0,
                )
            if udev.get("ID_ATA"):
                for key, family in ata.items():
                    try:
                        family.add_metric([disk.device], float(udev[key]))
                    except (KeyError, ValueError):
                        continue
        return [info, *columns, fs_info, dm_info, *ata.values()]

    def _collect_psutil(self, system: System) -> list[Metric]:
        assert system.psutil is not None
        columns = {index: _family(index) for index, _, _ in _PSUTIL_FIELDS}
        disks: dict[str, Any] = system.psutil.disk_io_counters(perdisk=True) or {}
        for device, record in disks.items():
            if self._devices.ignored(device):
                continue
            for index, field, scale in _PSUTIL_FIELDS:
                value = getattr(record, field, None)
                if value is not None:
                    columns[index].add_metric([device], float(value) * scale)
        return list(columns.values())


DISKSTATS = CollectorSpec(
    name="diskstats",
    default_enabled=True,
    platforms=Platforms.LINUX_OR_PSUTIL,
    factory=lambda c: DiskStats(c.config.diskstats),
)


def _udev(udev_dir: str, disk: DiskLine) -> dict[str, str]:
    """The udev properties of a block device; none when udev keeps no database (containers, this VM)."""
    try:
        return parse_udev(read_file(os.path.join(udev_dir, f"b{disk.major}:{disk.minor}")))
    except OSError:
        return {}
