"""The host collector's only door to the OS: paths, psutil, statvfs, uname and clock, injectable."""

from __future__ import annotations

import os
import platform as _platform
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol

if TYPE_CHECKING:
    from exporter.config.host import HostPaths

# Linux fixes USER_HZ at 100 for userspace on every architecture; node_exporter assumes it too.
USER_HZ = 100.0
# sysfs attributes are at most a page long.
_ATTR_SIZE = 4096
_CLOEXEC = getattr(os, "O_CLOEXEC", 0)


class StatvfsResult(Protocol):
    """The fields of os.statvfs_result the filesystem collector reads."""

    @property
    def f_bsize(self) -> int: ...
    @property
    def f_blocks(self) -> int: ...
    @property
    def f_bfree(self) -> int: ...
    @property
    def f_bavail(self) -> int: ...
    @property
    def f_files(self) -> int: ...
    @property
    def f_ffree(self) -> int: ...


class Uname(NamedTuple):
    """What uname(2) says, less the domain name (Python's os.uname has none)."""

    sysname: str
    nodename: str
    release: str
    version: str
    machine: str


class Psutil(Protocol):
    """The part of psutil used off Linux; its records differ per OS, so they are read with getattr."""

    def cpu_times(self, percpu: bool = ...) -> Any: ...
    def cpu_stats(self) -> Any: ...
    def getloadavg(self) -> tuple[float, float, float]: ...
    def virtual_memory(self) -> Any: ...
    def swap_memory(self) -> Any: ...
    def disk_partitions(self, all: bool = ...) -> Any: ...
    def disk_usage(self, path: str) -> Any: ...
    def disk_io_counters(self, perdisk: bool = ...) -> Any: ...
    def net_io_counters(self, pernic: bool = ...) -> Any: ...
    def net_if_stats(self) -> Any: ...
    def net_connections(self, kind: str = ...) -> Any: ...
    def boot_time(self) -> float: ...


@dataclass(frozen=True, slots=True)
class System:
    """Where and how host facts are read: real by default (`System.local`), fakes in tests."""

    platform: str
    procfs: Path
    sysfs: Path
    rootfs: Path
    statvfs: Callable[[str | bytes], StatvfsResult]
    uname: Callable[[], Uname]
    clock: Callable[[], float]
    psutil: Psutil | None = None

    @property
    def linux(self) -> bool:
        """Whether /proc and /sys are the sources (else psutil is)."""
        return self.platform.startswith("linux")

    @classmethod
    def local(cls, paths: HostPaths) -> System:
        """The machine this process runs on, its /proc, /sys and root where `paths` say."""
        plat = sys.platform
        ps: Psutil | None = None
        if not plat.startswith("linux"):
            import psutil  # only off Linux: /proc and /sys serve Linux, faster

            ps = psutil
        statvfs: Callable[[str | bytes], StatvfsResult]
        if hasattr(os, "statvfs"):
            statvfs = os.statvfs
        else:
            assert ps is not None
            statvfs = _usage_statvfs(ps)
        return cls(
            platform=plat,
            procfs=paths.procfs,
            sysfs=paths.sysfs,
            rootfs=paths.rootfs,
            statvfs=statvfs,
            uname=_uname,
            clock=time.time,
            psutil=ps,
        )


def _uname() -> Uname:
    if hasattr(os, "uname"):
        u = os.uname()
        return Uname(u.sysname, u.nodename, u.release, u.version, u.machine)
    u2 = _platform.uname()
    return Uname(u2.system, u2.node, u2.release, u2.version, u2.machine)


@dataclass(frozen=True, slots=True)
class _Usage:
    f_bsize: int
    f_blocks: int
    f_bfree: int
    f_bavail: int
    f_files: int
    f_ffree: int


def _usage_statvfs(ps: Psutil) -> Callable[[str | bytes], StatvfsResult]:
    """A statvfs stand-in from psutil.disk_usage, for Windows (no inode counts there)."""

    def statvfs(path: str | bytes) -> StatvfsResult:
        usage = ps.disk_usage(os.fsdecode(path))
        return _Usage(1, int(usage.total), int(usage.free), int(usage.free), 0, 0)

    return statvfs


def read_file(path: str | Path) -> str:
    """A whole (proc) file as text; os-level reads, as Python's buffered layers cost more than the read."""
    fd = os.open(path, os.O_RDONLY | _CLOEXEC)
    try:
        chunks = []
        while chunk := os.read(fd, 65536):
            chunks.append(chunk)
    finally:
        os.close(fd)
    return b"".join(chunks).decode("utf-8", "surrogateescape")


def read_attr(path: str) -> str:
    """One sysfs attribute, stripped (a single read: attributes fit in a page)."""
    fd = os.open(path, os.O_RDONLY | _CLOEXEC)
    try:
        data = os.read(fd, _ATTR_SIZE)
    finally:
        os.close(fd)
    return data.decode("utf-8", "replace").strip()


def read_attr_at(dir_fd: int, name: str) -> str:
    """One sysfs attribute of an open directory: cheaper than a full path, which resolves the class symlink."""
    fd = os.open(name, os.O_RDONLY | _CLOEXEC, dir_fd=dir_fd)
    try:
        data = os.read(fd, _ATTR_SIZE)
    finally:
        os.close(fd)
    return data.decode("utf-8", "replace").strip()


def label_text(text: str) -> str:
    """Text safe for a label value: bytes that are not UTF-8 (kept by surrogateescape) become U+FFFD."""
    if text.isascii():
        return text
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
