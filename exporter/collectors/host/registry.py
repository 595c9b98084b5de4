"""Every host collector, in node_exporter's order: the order of the output and of the `host.collectors` keys.

Each collector module declares its collectors' specs beside their classes; this is the one list
of them. The config model `host.collectors`, the collector set and the README's list are made from it.
"""

from __future__ import annotations

from .base import CollectorSpec
from .disks import DISKSTATS
from .filesystem import FILESYSTEM
from .identity import OS, TIME, UNAME
from .kernel import CPU, FILEFD, LOADAVG, MEMINFO, STAT, VMSTAT
from .network import NETCLASS, NETDEV, NETSTAT

COLLECTORS: tuple[CollectorSpec, ...] = (
    CPU,
    LOADAVG,
    MEMINFO,
    FILESYSTEM,
    DISKSTATS,
    NETDEV,
    NETCLASS,
    NETSTAT,
    FILEFD,
    VMSTAT,
    STAT,
    TIME,
    UNAME,
    OS,
)


def markdown_list() -> str:
    """The collectors as the README lists them: each name, with where it runs and its default when they narrow it."""
    return ", ".join(spec.markdown() for spec in COLLECTORS)
