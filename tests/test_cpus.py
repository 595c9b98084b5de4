"""CPUs this process may use: affinity capped by a cgroup v1 or v2 quota, read from real files in a temp tree."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from exporter.cpus import cgroup_cpu_quota, cpu_count, quota_from_cfs, quota_from_cpu_max


def write(root: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("max 100000\n", None),
        ("200000 100000\n", 2.0),
        ("150000 100000\n", 1.5),
        ("50000 100000", 0.5),
        ("100000", 1.0),  # period left out: the kernel's default 100 ms
        ("", None),
        ("garbage here\n", None),
        ("0 100000", None),
    ],
)
def test_cpu_max(text: str, expected: float | None) -> None:
    assert quota_from_cpu_max(text) == expected


@pytest.mark.parametrize(
    ("quota", "period", "expected"),
    [("-1\n", "100000\n", None), ("300000\n", "100000\n", 3.0), ("25000", "100000", 0.25), ("x", "100000", None)],
)
def test_cfs_quota(quota: str, period: str, expected: float | None) -> None:
    assert quota_from_cfs(quota, period) == expected


V2_IN_CONTAINER = "0::/\n"
V2_SERVICE = "0::/system.slice/upwatch.service\n"
V1_HYBRID = "12:cpu,cpuacct:/docker/abc\n11:memory:/docker/abc\n1:name=systemd:/docker/abc\n0::/docker/abc\n"


@pytest.mark.parametrize(
    ("membership", "files", "affinity", "expected"),
    [
        pytest.param(V2_IN_CONTAINER, {"cgroup.controllers": "cpu", "cpu.max": "150000 100000\n"}, 8, 2, id="v2-1.5"),
        pytest.param(V2_IN_CONTAINER, {"cgroup.controllers": "cpu", "cpu.max": "max 100000\n"}, 8, 8, id="v2-max"),
        pytest.param(V2_IN_CONTAINER, {"cgroup.controllers": "cpu", "cpu.max": "50000 100000\n"}, 8, 1, id="v2-half"),
        pytest.param(
            V2_IN_CONTAINER, {"cgroup.controllers": "cpu", "cpu.max": "800000 100000\n"}, 2, 2, id="v2-affinity-lower"
        ),
        pytest.param(
            V2_SERVICE,
            {
                "cgroup.controllers": "cpu",
                "system.slice/cpu.max": "300000 100000\n",
                "system.slice/upwatch.service/cpu.max": "max 100000\n",
            },
            16,
            3,
            id="v2-parent-limit",
        ),
        pytest.param(
            V2_SERVICE,
            {
                "cgroup.controllers": "cpu",
                "system.slice/cpu.max": "600000 100000\n",
                "system.slice/upwatch.service/cpu.max": "200000 100000\n",
            },
            16,
            2,
            id="v2-own-limit-tighter",
        ),
        pytest.param(
            V1_HYBRID,
            {
                "cpu,cpuacct/docker/abc/cpu.cfs_quota_us": "250000\n",
                "cpu,cpuacct/docker/abc/cpu.cfs_period_us": "100000\n",
                "unified/docker/abc/cgroup.procs": "1\n",
            },
            8,
            3,
            id="v1-quota",
        ),
        pytest.param(
            V1_HYBRID,
            {
                "cpu,cpuacct/docker/abc/cpu.cfs_quota_us": "-1\n",
                "cpu,cpuacct/docker/abc/cpu.cfs_period_us": "100000\n",
            },
            4,
            4,
            id="v1-unlimited",
        ),
        pytest.param(
            # No cgroup namespace: /proc/self/cgroup shows the host's path, the mount is the container's own cgroup.
            V1_HYBRID,
            {"cpu/cpu.cfs_quota_us": "100000\n", "cpu/cpu.cfs_period_us": "100000\n"},
            4,
            1,
            id="v1-container-without-namespace",
        ),
        pytest.param(V2_IN_CONTAINER, {}, 6, 6, id="no-cgroup-files"),
    ],
)
def test_cpu_count(tmp_path: Path, membership: str, files: dict[str, str], affinity: int, expected: int) -> None:
    root = tmp_path / "cgroup"
    root.mkdir()
    write(root, files)
    proc = tmp_path / "proc-self-cgroup"
    proc.write_text(membership)
    assert cpu_count(affinity=affinity, cgroup_root=root, proc_self_cgroup=proc) == expected


def test_no_proc_file_means_no_quota(tmp_path: Path) -> None:
    assert cgroup_cpu_quota(cgroup_root=tmp_path, proc_self_cgroup=tmp_path / "missing") is None
    assert cpu_count(affinity=3, cgroup_root=tmp_path, proc_self_cgroup=tmp_path / "missing") == 3


def test_at_least_one() -> None:
    assert cpu_count(affinity=0, cgroup_root=Path("/nonexistent"), proc_self_cgroup=Path("/nonexistent")) == 1


def test_this_machine() -> None:
    # Whatever the machine, the count is a positive number no larger than its CPUs.
    assert 1 <= cpu_count() <= (os.cpu_count() or 1)
