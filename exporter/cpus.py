"""How many CPUs this process may use: its CPU affinity, capped by its cgroup's CPU quota, rounded up.

A container limited to 1.5 CPUs still sees every CPU of the host in its affinity mask; only the
cgroup's quota (cgroup v2 `cpu.max`, v1 `cpu.cfs_quota_us` / `cpu.cfs_period_us`) tells. A limit
on any ancestor cgroup applies too, so the tightest one on the way up counts.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

CGROUP_ROOT = Path("/sys/fs/cgroup")
PROC_SELF_CGROUP = Path("/proc/self/cgroup")

_T = TypeVar("_T")


def quota_from_cpu_max(text: str) -> float | None:
    """CPUs allowed by a cgroup v2 `cpu.max` ("QUOTA PERIOD", or "max PERIOD" for none); None when unlimited."""
    parts = text.split()
    if len(parts) not in (1, 2) or parts[0] == "max":
        return None
    period = parts[1] if len(parts) == 2 else "100000"
    return _ratio(parts[0], period)


def quota_from_cfs(quota_us: str, period_us: str) -> float | None:
    """CPUs allowed by cgroup v1 `cpu.cfs_quota_us` and `cpu.cfs_period_us`; None when unlimited (-1)."""
    return _ratio(quota_us.strip(), period_us.strip())


def _ratio(quota: str, period: str) -> float | None:
    try:
        q, p = int(quota), int(period)
    except ValueError:
        return None
    if q <= 0 or p <= 0:
        return None
    return q / p


def cpu_count(
    *,
    affinity: int | None = None,
    cgroup_root: Path = CGROUP_ROOT,
    proc_self_cgroup: Path = PROC_SELF_CGROUP,
) -> int:
    """CPUs this process may use: `affinity` (default: its affinity mask) capped by the cgroup quota, rounded up."""
    if affinity is None:
        affinity = _affinity()
    quota = cgroup_cpu_quota(cgroup_root=cgroup_root, proc_self_cgroup=proc_self_cgroup)
    if quota is not None:
        affinity = min(affinity, math.ceil(quota))
    return max(1, affinity)


def _affinity() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on macOS or Windows
        return os.cpu_count() or 1


def cgroup_cpu_quota(*, cgroup_root: Path = CGROUP_ROOT, proc_self_cgroup: Path = PROC_SELF_CGROUP) -> float | None:
    """The tightest CPU quota on this process's cgroup or an ancestor, in CPUs; None when there is none."""
    try:
        membership = proc_self_cgroup.read_text()
    except OSError:
        return None
    quotas = [q for q in _quotas(membership, cgroup_root) if q is not None]
    return min(quotas, default=None)


def _quotas(membership: str, root: Path) -> Iterator[float | None]:
    """The quota of every cgroup folder that applies to this process, from its /proc/self/cgroup lines."""
    for line in membership.splitlines():
        hierarchy, _, rest = line.partition(":")
        controllers, _, path = rest.partition(":")
        if hierarchy == "0" and controllers == "":
            # cgroup v2: the unified hierarchy is at the root, or under unified/ on a hybrid system.
            unified = root if (root / "cgroup.controllers").exists() else root / "unified"
            for folder in _folders(unified, path):
                yield _read(folder / "cpu.max", quota_from_cpu_max)
        elif "cpu" in controllers.split(","):
            # cgroup v1: the cpu controller is mounted as cpu,cpuacct (often also linked as cpu).
            for mount in (root / controllers, root / "cpu"):
                if mount.is_dir():
                    for folder in _folders(mount, path):
                        period = _read(folder / "cpu.cfs_period_us", str)
                        quota = _read(folder / "cpu.cfs_quota_us", str)
                        if period is not None and quota is not None:
                            yield quota_from_cfs(quota, period)
                    break


def _folders(mount: Path, path: str) -> Iterator[Path]:
    """The cgroup's folder under `mount` and each ancestor up to the mount itself.

    In a container without its own cgroup namespace the listed path is the host's and does not
    exist under the container's mount: those folders are skipped and the mount root, which is
    the container's own cgroup, is still read.
    """
    folder = mount.joinpath(*[p for p in path.split("/") if p])
    while True:
        yield folder
        if folder == mount or mount not in folder.parents:
            return
        folder = folder.parent


def _read(file: Path, parse: Callable[[str], _T]) -> _T | None:
    """`parse` of a file's text; None when the file is not there or cannot be read."""
    try:
        return parse(file.read_text())
    except OSError:
        return None
