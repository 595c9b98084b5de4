"""Host metrics under node_exporter's names, label names, units and types, read from the OS at scrape time.

On Linux the sources, parsing and arithmetic are node_exporter 1.5.0's (/proc, /sys, statvfs,
uname), so the numbers agree with it on the same host. Elsewhere psutil provides what it can
under the same names; what it cannot is absent: a collector with nothing to offer on a platform
is left out, its node_scrape_collector_* series included. Names below drop the `node_` prefix.

| collector  | Linux (node_exporter 1.5.0's series)  | macOS (psutil, statvfs)         | Windows (psutil)             |
| ---------- | ------------------------------------- | ------------------------------- | ---------------------------- |
| cpu        | seconds in 8 modes, guest seconds     | modes user nice system idle     | 5 modes (1)                  |
| loadavg    | load1 load5 load15                    | same                            | same, psutil's emulation (2) |
| meminfo    | every /proc/meminfo field             | the 7 fields in (3)             | the 5 fields in (3)          |
| filesystem | size free avail files files_free      | same                            | all but files, files_free    |
|            | readonly device_error                 |                                 |                              |
| diskstats  | 17 counters, disk_info, udev (4)      | reads, writes, bytes, times (5) | same as macOS                |
| netdev     | 16 /proc/net/dev counters, nohandler  | bytes packets errs drop (6)     | same as macOS                |
| netclass   | up info mtu speed carrier flags ...   | up mtu_bytes speed_bytes        | same as macOS                |
| netstat    | netstat, snmp, snmp6 (`fields`)       | Tcp_CurrEstab (7)               | Tcp_CurrEstab                |
| filefd     | allocated maximum                     | -                               | -                            |
| vmstat     | /proc/vmstat fields (`fields`)        | -                               | -                            |
| stat       | boot_time context_switches forks intr | boot_time context_switches intr | same as macOS                |
|            | procs_running procs_blocked           |                                 |                              |
| time       | time_seconds time_zone_offset_seconds | same, without clocksources      | same as macOS                |
|            | clocksource_{available,current}_info  |                                 |                              |
| uname      | uname_info                            | same (domain after 1st dot)     | same (platform.uname)        |
| os         | os_info os_version (os-release)       | same (SystemVersion.plist)      | -                            |

(1) user, system, idle, irq (psutil's "interrupt") and softirq (psutil's "dpc").
(2) psutil samples the processor queue length every 5 s on a thread of its own; 0 until then.
(3) node_memory_<Field>_bytes for MemTotal, MemFree, MemAvailable, SwapTotal and SwapFree;
    macOS adds Active and Inactive.
(4) node_disk_info on every device; node_disk_filesystem_info, node_disk_device_mapper_info and
    node_disk_ata_* from the udev database under <rootfs>/run/udev/data, when it has them.
(5) node_disk_{reads,writes}_completed_total, node_disk_{read,written}_bytes_total and
    node_disk_{read,write}_time_seconds_total.
(6) node_network_{receive,transmit}_{bytes,packets,errs,drop}_total.
(7) psutil.net_connections("tcp") in ESTABLISHED or CLOSE_WAIT (what Linux counts); macOS allows
    that to root only, else the netstat collector's success is 0.

Every collector that runs adds node_scrape_collector_success and
node_scrape_collector_duration_seconds; a failing source makes only its own success 0.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Any

from prometheus_client.core import Metric
from prometheus_client.registry import Collector

from exporter.config import HostConfig

from .base import Scrape, SubCollector, gauge
from .disks import DiskStats
from .filesystem import Filesystem
from .identity import OsRelease, Time, UnameInfo
from .kernel import Cpu, FileFD, LoadAverage, MemInfo, Stat, VmStat
from .network import NetClass, NetDev, NetStat
from .system import Psutil, StatvfsResult, System, Uname

__all__ = ["HostCollector", "Psutil", "StatvfsResult", "System", "Uname"]


class HostCollector(Collector):
    """Host metrics under node_exporter's names, read from the OS at scrape time."""

    def __init__(self, config: HostConfig, *, system: System | None = None, log: Any = None) -> None:
        self._system = system or System.local(config.paths)
        self._log = log
        debug: Callable[..., None] | None = log.debug if log is not None else None
        builders: dict[str, Callable[[], SubCollector]] = {
            "cpu": Cpu,
            "loadavg": LoadAverage,
            "meminfo": MemInfo,
            "filesystem": lambda: Filesystem(config.filesystem, self._system, log=debug),
            "diskstats": lambda: DiskStats(config.diskstats),
            "netdev": lambda: NetDev(config.netdev),
            "netclass": lambda: NetClass(config.netclass),
            "netstat": lambda: NetStat(config.netstat.fields),
            "filefd": FileFD,
            "vmstat": lambda: VmStat(config.vmstat.fields),
            "stat": Stat,
            "time": lambda: Time(self._system),
            "uname": lambda: UnameInfo(self._system),
            "os": lambda: OsRelease(self._system),
        }
        parts = (builders[name]() for name in config.collectors.enabled())
        self._parts: tuple[SubCollector, ...] = tuple(p for p in parts if p.available(self._system))
        self._errors: dict[str, str] = {}  # collector -> its last error, to warn once rather than every scrape

    @property
    def collectors(self) -> tuple[str, ...]:
        """Names of the sub-collectors that run on this system."""
        return tuple(p.name for p in self._parts)

    def describe(self) -> Iterable[Metric]:
        """Nothing: registering must not scrape the host."""
        return []

    def collect(self) -> Iterable[Metric]:
        """Fresh families from every sub-collector, then their success and duration."""
        scrape = Scrape(self._system)
        out: list[Metric] = []
        duration = gauge(
            "node_scrape_collector_duration_seconds", "node_exporter: Duration of a collector scrape.", ["collector"]
        )
        success = gauge("node_scrape_collector_success", "node_exporter: Whether a collector succeeded.", ["collector"])
        for part in self._parts:
            start = time.perf_counter()
            try:
                families = part.collect(scrape)
            except Exception as exc:  # one source failing must not fail the scrape
                ok = False
                self._failed(part.name, exc)
            else:
                ok = True
                out.extend(f for f in families if f.samples)  # no HELP/TYPE lines for a family with no series
                self._errors.pop(part.name, None)
            duration.add_metric([part.name], time.perf_counter() - start)
            success.add_metric([part.name], 1.0 if ok else 0.0)
        out.append(duration)
        out.append(success)
        return out

    def _failed(self, name: str, exc: Exception) -> None:
        """Log a failure: a warning when it is new, debug while it repeats scrape after scrape."""
        error = f"{type(exc).__name__}: {exc}"
        repeated = self._errors.get(name) == error
        self._errors[name] = error
        if self._log is not None:
            (self._log.debug if repeated else self._log.warning)("host collector failed", collector=name, error=error)

    def close(self) -> None:
        """Stop background threads (the filesystem collector's statvfs workers)."""
        for part in self._parts:
            close = getattr(part, "close", None)
            if close is not None:
                close()
