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

import functools
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from prometheus_client.core import Metric
from prometheus_client.registry import Collector

from .base import CollectorContext, Scrape, SubCollector, gauge
from .registry import COLLECTORS
from .system import Psutil, StatvfsResult, System, Uname

if TYPE_CHECKING:
    from exporter.config.host import HostConfig

__all__ = ["HostCollector", "Psutil", "StatvfsResult", "System", "Uname"]


class HostCollector(Collector):
    """Host metrics under node_exporter's names, read from the OS at scrape time."""

    def __init__(self, config: HostConfig, *, system: System | None = None, log: Any = None) -> None:
        self._system = system or System.local(config.paths)
        self._log = log
        enabled = set(config.collectors.enabled())
        # (name, collector) of each enabled collector that can run here, in the registry's order.
        self._parts: tuple[tuple[str, SubCollector], ...] = tuple(
            (spec.name, spec.factory(CollectorContext(config, self._system, self._debug(spec.name))))
            for spec in COLLECTORS
            if spec.name in enabled and spec.platforms.include(self._system)
        )
        self._errors: dict[str, str] = {}  # collector -> its last error, to warn once rather than every scrape

    def _debug(self, collector: str) -> Callable[..., None] | None:
        """The logger's debug method with the collector's name bound, or None without a logger."""
        return None if self._log is None else functools.partial(self._log.debug, collector=collector)

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
        for name, part in self._parts:
            start = time.perf_counter()
            try:
                families = part.collect(scrape)
            except Exception as exc:  # one source failing must not fail the scrape
                ok = False
                self._failed(name, exc)
            else:
                ok = True
                out.extend(f for f in families if f.samples)  # no HELP/TYPE lines for a family with no series
                self._errors.pop(name, None)
            duration.add_metric([name], time.perf_counter() - start)
            success.add_metric([name], 1.0 if ok else 0.0)
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
        for _, part in self._parts:
            close = getattr(part, "close", None)
            if close is not None:
                close()
