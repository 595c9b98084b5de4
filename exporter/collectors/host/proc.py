"""Parsers for /proc files and friends: text in, plain records out, no I/O.

The parsing rules follow node_exporter 1.5.0 (and the procfs library it uses), so that the same
file yields the same numbers under both.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .system import USER_HZ

# Active(anon) -> Active_anon, as node_exporter names meminfo fields.
_PARENS = re.compile(r"\((.*)\)")
# The major.minor part of VERSION_ID, as node_exporter's node_os_version.
_VERSION = re.compile(r"^[0-9]+\.?[0-9]*")
# Escapes the kernel writes in /proc/*/mounts fields: space, tab, newline, backslash.
_MOUNT_ESCAPE = re.compile(r"\\([0-7]{3})")

CPU_MODES = ("user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal")


class ParseError(ValueError):
    """A /proc file did not have the expected shape."""


@dataclass(frozen=True, slots=True)
class CpuTimes:
    """Seconds one CPU spent in each mode since boot (guest time is also in user and nice)."""

    user: float = 0.0
    nice: float = 0.0
    system: float = 0.0
    idle: float = 0.0
    iowait: float = 0.0
    irq: float = 0.0
    softirq: float = 0.0
    steal: float = 0.0
    guest: float = 0.0
    guest_nice: float = 0.0


@dataclass(frozen=True, slots=True)
class KernelStat:
    """/proc/stat: per-CPU times and the kernel's activity counters."""

    cpus: tuple[CpuTimes, ...]  # index is the CPU number; a gap (offline CPU) is all zeros, as in node_exporter
    interrupts: int | None
    context_switches: int | None
    boot_time: int | None
    forks: int | None
    procs_running: int | None
    procs_blocked: int | None


def parse_stat(text: str) -> KernelStat:
    """/proc/stat."""
    cpus: dict[int, CpuTimes] = {}
    counters: dict[str, int] = {}
    for line in text.splitlines():
        parts = line.split()
        if not parts:
            continue
        key = parts[0]
        if key.startswith("cpu"):
            if key == "cpu":
                continue
            try:
                cpu = int(key[3:])
                ticks = [int(v) / USER_HZ for v in parts[1:11]]
            except ValueError:
                raise ParseError(f"bad cpu line in stat: {line[:80]!r}") from None
            cpus[cpu] = CpuTimes(*ticks)
        elif key in ("intr", "ctxt", "btime", "processes", "procs_running", "procs_blocked") and len(parts) > 1:
            try:
                counters[key] = int(parts[1])
            except ValueError:
                raise ParseError(f"bad {key} line in stat: {line[:80]!r}") from None
    size = max(cpus) + 1 if cpus else 0
    return KernelStat(
        cpus=tuple(cpus.get(i, CpuTimes()) for i in range(size)),
        interrupts=counters.get("intr"),
        context_switches=counters.get("ctxt"),
        boot_time=counters.get("btime"),
        forks=counters.get("processes"),
        procs_running=counters.get("procs_running"),
        procs_blocked=counters.get("procs_blocked"),
    )


def parse_loadavg(text: str) -> tuple[float, float, float]:
    """/proc/loadavg: the 1, 5 and 15 minute load averages."""
    parts = text.split()
    if len(parts) < 3:
        raise ParseError("loadavg has fewer than 3 fields")
    try:
        return float(parts[0]), float(parts[1]), float(parts[2])
    except ValueError:
        raise ParseError(f"bad loadavg: {text[:80]!r}") from None


def parse_meminfo(text: str) -> list[tuple[str, float]]:
    """/proc/meminfo as node_exporter names it: `Active(anon):  12 kB` -> ("Active_anon_bytes", 12288.0)."""
    out: list[tuple[str, float]] = []
    for line in text.splitlines():
        parts = line.split()
        if not parts:
            continue  # some kernels print empty lines
        if len(parts) not in (2, 3):
            raise ParseError(f"bad meminfo line: {line[:80]!r}")
        try:
            value = float(parts[1])
        except ValueError:
            raise ParseError(f"bad meminfo value: {line[:80]!r}") from None
        key = parts[0].removesuffix(":")
        if "(" in key:
            key = _PARENS.sub(r"_\1", key)
        if len(parts) == 3:  # a unit, always kB
            key += "_bytes"
            value *= 1024
        out.append((key, value))
    return out


def parse_vmstat(text: str) -> list[tuple[str, str]]:
    """/proc/vmstat: (field, value text) pairs; the caller converts the few it keeps."""
    out: list[tuple[str, str]] = []
    for line in text.splitlines():
        key, _, value = line.partition(" ")
        if value:
            out.append((key, value))
    return out


def parse_file_nr(text: str) -> tuple[float, float]:
    """/proc/sys/fs/file-nr: allocated and maximum file handles (the middle field is always 0)."""
    parts = text.split()
    if len(parts) < 3:
        raise ParseError("file-nr has fewer than 3 fields")
    try:
        return float(parts[0]), float(parts[2])
    except ValueError:
        raise ParseError(f"bad file-nr: {text[:80]!r}") from None


@dataclass(frozen=True, slots=True)
class DiskLine:
    """One line of /proc/diskstats: 11, 15 or 17 counters depending on the kernel."""

    major: int
    minor: int
    device: str
    stats: tuple[int, ...]


def parse_diskstats(text: str) -> list[DiskLine]:
    """/proc/diskstats."""
    out: list[DiskLine] = []
    for line in text.splitlines():
        parts = line.split()
        if not parts:
            continue
        if len(parts) < 14:
            raise ParseError(f"diskstats line has {len(parts)} fields, expected at least 14")
        try:
            out.append(DiskLine(int(parts[0]), int(parts[1]), parts[2], tuple(int(v) for v in parts[3:20])))
        except ValueError:
            raise ParseError(f"bad diskstats line: {line[:80]!r}") from None
    return out


# Column names of /proc/net/dev, as node_exporter names them (node_network_<name>_total).
NET_DEV_FIELDS = (
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
)


def parse_net_dev(text: str) -> list[tuple[str, tuple[int, ...]]]:
    """/proc/net/dev: (interface, its 16 counters in NET_DEV_FIELDS order)."""
    out: list[tuple[str, tuple[int, ...]]] = []
    for line in text.splitlines()[2:]:  # two header lines
        name, sep, rest = line.partition(":")
        if not sep:
            continue
        values = rest.split()
        if len(values) != len(NET_DEV_FIELDS):
            raise ParseError(f"net/dev line for {name.strip()!r} has {len(values)} fields")
        try:
            out.append((name.strip(), tuple(int(v) for v in values)))
        except ValueError:
            raise ParseError(f"bad net/dev line: {line[:80]!r}") from None
    return out


def netstat_sections(text: str) -> list[tuple[str, str]]:
    """/proc/net/netstat or /proc/net/snmp: (`Proto: names...`, `Proto: values...`) line pairs."""
    lines = [line for line in text.splitlines() if line]
    if len(lines) % 2:
        raise ParseError("an odd number of lines: a header without values")
    return list(zip(lines[::2], lines[1::2], strict=True))


def parse_snmp6(text: str) -> list[tuple[str, str]]:
    """/proc/net/snmp6: (name, value) pairs like ("Ip6InReceives", "123")."""
    return [(parts[0], parts[1]) for parts in map(str.split, text.splitlines()) if len(parts) >= 2]


def snmp6_name(name: str) -> tuple[str, str] | None:
    """An snmp6 name split after its "6" into protocol and field, as node_exporter: Ip6InReceives -> Ip6, InReceives."""
    six = name.find("6")
    return None if six == -1 else (name[: six + 1], name[six + 1 :])


@dataclass(frozen=True, slots=True)
class Mount:
    """One line of /proc/<pid>/mounts, escapes decoded."""

    device: str
    mountpoint: str
    fstype: str
    options: str

    @property
    def readonly(self) -> bool:
        """Whether it is mounted read-only."""
        return "ro" in self.options.split(",")


def _unescape(field: str) -> str:
    return _MOUNT_ESCAPE.sub(lambda m: chr(int(m.group(1), 8)), field) if "\\" in field else field


def parse_mounts(text: str) -> list[Mount]:
    """/proc/<pid>/mounts."""
    out: list[Mount] = []
    for line in text.splitlines():
        parts = line.split()
        if not parts:
            continue
        if len(parts) < 4:
            raise ParseError(f"malformed mounts line: {line[:80]!r}")
        out.append(Mount(_unescape(parts[0]), _unescape(parts[1]), parts[2], parts[3]))
    return out


def parse_udev(text: str) -> dict[str, str]:
    """A udev database file (/run/udev/data/b8:0): its `E:KEY=value` device properties."""
    out: dict[str, str] = {}
    for line in text.splitlines():
        if line.startswith("E:"):
            key, sep, value = line[2:].partition("=")
            if sep:
                out[key] = value
    return out


_OS_ESCAPES = {"\\": "\\", '"': '"', "$": "$", "`": "`", "\n": ""}


def parse_os_release(text: str) -> dict[str, str]:
    """os-release(5): shell-style KEY=value lines, values optionally quoted."""
    out: dict[str, str] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, rest = line.partition("=")
        key = key.removeprefix("export ").strip()
        if not sep or not key:
            continue
        out[key] = _shell_value(rest)
    return out


def _shell_value(rest: str) -> str:
    """One shell word: quotes removed, backslash escapes applied, an unquoted # comment dropped."""
    value: list[str] = []
    i, n = 0, len(rest)
    while i < n:
        ch = rest[i]
        if ch == "'":
            end = rest.find("'", i + 1)
            end = n if end == -1 else end
            value.append(rest[i + 1 : end])
            i = end + 1
        elif ch == '"':
            i += 1
            while i < n and rest[i] != '"':
                if rest[i] == "\\" and i + 1 < n and rest[i + 1] in _OS_ESCAPES:
                    value.append(_OS_ESCAPES[rest[i + 1]])
                    i += 2
                else:
                    value.append(rest[i])
                    i += 1
            i += 1
        elif ch == "\\" and i + 1 < n:
            value.append(rest[i + 1])
            i += 2
        elif ch.isspace() or ch == "#":
            break
        else:
            value.append(ch)
            i += 1
    return "".join(value)


def os_version(version_id: str) -> float:
    """node_os_version's value: the major.minor part of VERSION_ID, 0 when there is none."""
    m = _VERSION.match(version_id)
    return float(m.group()) if m else 0.0
