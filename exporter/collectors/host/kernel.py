"""CPU, load, memory and kernel counters: node_exporter's cpu, loadavg, meminfo, stat, vmstat and filefd."""

from __future__ import annotations

import re
import threading
from typing import Any

from prometheus_client.core import Metric

from .base import CollectorSpec, Platforms, Refreshing, Scrape, attr, counter, single
from .proc import (
    CPU_MODES,
    KernelStat,
    ParseError,
    parse_file_nr,
    parse_loadavg,
    parse_meminfo,
    parse_stat,
    parse_vmstat,
)
from .system import System

# node_exporter's default --collector.vmstat.fields (upstream's, not a distribution's patched one).
NODE_VMSTAT_FIELDS = r"^(oom_kill|pgpg|pswp|pg.*fault).*"

# node_exporter resets a CPU's held counters when idle drops by this much: a CPU hot-plugged back in.
_JUMP_BACK_SECONDS = 3.0
_GUEST_MODES = (("user", "guest"), ("nice", "guest_nice"))
# psutil's cpu_times fields by node_exporter mode; Windows calls irq "interrupt" and softirq "dpc".
_PSUTIL_CPU_FIELDS = (
    ("user", "user"),
    ("nice", "nice"),
    ("system", "system"),
    ("idle", "idle"),
    ("iowait", "iowait"),
    ("irq", "irq"),
    ("irq", "interrupt"),
    ("softirq", "softirq"),
    ("softirq", "dpc"),
    ("steal", "steal"),
)
# psutil's memory fields under /proc/meminfo's names.
_PSUTIL_MEMORY = (
    ("MemTotal", "total"),
    ("MemFree", "free"),
    ("MemAvailable", "available"),
    ("Buffers", "buffers"),
    ("Cached", "cached"),
    ("Active", "active"),
    ("Inactive", "inactive"),
    ("Shmem", "shared"),
)
_PSUTIL_SWAP = (("SwapTotal", "total"), ("SwapFree", "free"))
# (name, help, type) of node_exporter's stat collector series.
_INTR = ("node_intr_total", "Total number of interrupts serviced.", "counter")
_CTXT = ("node_context_switches_total", "Total number of context switches.", "counter")
_FORKS = ("node_forks_total", "Total number of forks.", "counter")
_BOOT = ("node_boot_time_seconds", "Node boot time, in unixtime.", "gauge")
_RUNNING = ("node_procs_running", "Number of processes in runnable state.", "gauge")
_BLOCKED = ("node_procs_blocked", "Number of processes blocked waiting for I/O to complete.", "gauge")


def _psutil(system: System) -> Any:
    assert system.psutil is not None, "psutil is needed off Linux"
    return system.psutil


class Cpu:
    """node_cpu_seconds_total and node_cpu_guest_seconds_total, held where the kernel goes backwards."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._held: list[dict[str, float]] = []

    def collect(self, scrape: Scrape) -> list[Metric]:
        """Seconds per CPU and mode."""
        system = scrape.system
        if system.linux:
            stat = scrape.proc("stat", parse_stat)
            fresh = [{f: getattr(c, f) for f in (*CPU_MODES, "guest", "guest_nice")} for c in stat.cpus]
        else:
            fresh = []
            for times in _psutil(system).cpu_times(percpu=True):
                modes: dict[str, float] = {}
                for mode, field in _PSUTIL_CPU_FIELDS:
                    value = attr(times, field)
                    if value is not None:
                        modes[mode] = value
                fresh.append(modes)
        held = self._hold(fresh)
        seconds = counter("node_cpu_seconds_total", "Seconds the CPUs spent in each mode.", ["cpu", "mode"])
        guest = counter(
            "node_cpu_guest_seconds_total", "Seconds the CPUs spent in guests (VMs) for each mode.", ["cpu", "mode"]
        )
        for cpu, modes in enumerate(held):
            label = str(cpu)
            for mode in CPU_MODES:
                if mode in modes:
                    seconds.add_metric([label, mode], modes[mode])
            if system.linux:
                for mode, field in _GUEST_MODES:
                    guest.add_metric([label, mode], modes[field])
        return [seconds, guest] if system.linux else [seconds]

    def _hold(self, fresh: list[dict[str, float]]) -> list[dict[str, float]]:
        """Each counter at the highest value seen, per CPU and mode (idle and iowait can go backwards)."""
        with self._lock:
            if len(self._held) != len(fresh):  # CPUs came or went: start over, as node_exporter does
                self._held = [{} for _ in fresh]
            for held, new in zip(self._held, fresh, strict=True):
                if held.get("idle", 0.0) - new.get("idle", 0.0) >= _JUMP_BACK_SECONDS:
                    held.clear()
                for mode, value in new.items():
                    if value >= held.get(mode, 0.0):
                        held[mode] = value
            return [dict(h) for h in self._held]


CPU = CollectorSpec(name="cpu", default_enabled=True, platforms=Platforms.LINUX_OR_PSUTIL, factory=lambda _: Cpu())


class LoadAverage:
    """node_load1, node_load5, node_load15."""

    def collect(self, scrape: Scrape) -> list[Metric]:
        """The three load averages."""
        if scrape.system.linux:
            loads = scrape.proc("loadavg", parse_loadavg)
        else:
            loads = tuple(_psutil(scrape.system).getloadavg())
        return [
            single(f"node_load{minutes}", f"{minutes}m load average.", value)
            for minutes, value in zip((1, 5, 15), loads, strict=True)
        ]


LOADAVG = CollectorSpec(
    name="loadavg", default_enabled=True, platforms=Platforms.LINUX_OR_PSUTIL, factory=lambda _: LoadAverage()
)


class MemInfo:
    """node_memory_*: every /proc/meminfo field on Linux, psutil's under the same names elsewhere."""

    def collect(self, scrape: Scrape) -> list[Metric]:
        """One gauge per field."""
        if scrape.system.linux:
            fields = scrape.proc("meminfo", parse_meminfo)
        else:
            ps = _psutil(scrape.system)
            fields = []
            for record, names in ((ps.virtual_memory(), _PSUTIL_MEMORY), (ps.swap_memory(), _PSUTIL_SWAP)):
                for key, field in names:
                    value = attr(record, field)
                    if value is not None:
                        fields.append((f"{key}_bytes", value))
        return [single(f"node_memory_{key}", f"Memory information field {key}.", v) for key, v in fields]


MEMINFO = CollectorSpec(
    name="meminfo", default_enabled=True, platforms=Platforms.LINUX_OR_PSUTIL, factory=lambda _: MemInfo()
)


class Stat:
    """Boot time, context switches, forks, interrupts and process counts from /proc/stat."""

    def __init__(self) -> None:
        self._boot_time: Refreshing[float] | None = None

    def collect(self, scrape: Scrape) -> list[Metric]:
        """The kernel's activity counters."""
        if not scrape.system.linux:
            return self._collect_psutil(scrape.system)
        stat: KernelStat = scrape.proc("stat", parse_stat)
        pairs = (
            (_INTR, stat.interrupts),
            (_CTXT, stat.context_switches),
            (_FORKS, stat.forks),
            (_BOOT, stat.boot_time),
            (_RUNNING, stat.procs_running),
            (_BLOCKED, stat.procs_blocked),
        )
        return [single(name, doc, value, typ) for (name, doc, typ), value in pairs if value is not None]

    def _collect_psutil(self, system: System) -> list[Metric]:
        ps = _psutil(system)
        if self._boot_time is None:
            self._boot_time = Refreshing(lambda: float(ps.boot_time()))
        name, doc, typ = _BOOT
        out: list[Metric] = [single(name, doc, self._boot_time.get(), typ)]
        stats = ps.cpu_stats()
        for (name, doc, typ), field in ((_INTR, "interrupts"), (_CTXT, "ctx_switches")):
            value = attr(stats, field)
            if value is not None:
                out.append(single(name, doc, value, typ))
        return out


STAT = CollectorSpec(name="stat", default_enabled=True, platforms=Platforms.LINUX_OR_PSUTIL, factory=lambda _: Stat())


class VmStat:
    """node_vmstat_<field> for the /proc/vmstat fields matching the configured regex (untyped)."""

    def __init__(self, fields: re.Pattern[str]) -> None:
        self._fields = fields
        # Field -> whether the regex selects it: the kernel's field names do not change, so search each once.
        self._selected: dict[str, bool] = {}

    def collect(self, scrape: Scrape) -> list[Metric]:
        """The selected fields."""
        out: list[Metric] = []
        for key, text in scrape.proc("vmstat", parse_vmstat):
            selected = self._selected.get(key)
            if selected is None:
                selected = self._selected[key] = self._fields.search(key) is not None
            if selected:
                try:
                    value = float(text)
                except ValueError:
                    raise ParseError(f"bad vmstat value for {key}: {text[:40]!r}") from None
                out.append(single(f"node_vmstat_{key}", f"/proc/vmstat information field {key}.", value, "untyped"))
        return out


VMSTAT = CollectorSpec(
    name="vmstat",
    default_enabled=True,
    platforms=Platforms.LINUX,
    factory=lambda c: VmStat(c.config.vmstat.fields),
)


class FileFD:
    """node_filefd_allocated and node_filefd_maximum from /proc/sys/fs/file-nr."""

    def collect(self, scrape: Scrape) -> list[Metric]:
        """File handles in use and the system-wide limit."""
        allocated, maximum = scrape.proc("sys/fs/file-nr", parse_file_nr)
        return [
            single("node_filefd_allocated", "File descriptor statistics: allocated.", allocated),
            single("node_filefd_maximum", "File descriptor statistics: maximum.", maximum),
        ]


FILEFD = CollectorSpec(name="filefd", default_enabled=True, platforms=Platforms.LINUX, factory=lambda _: FileFD())
