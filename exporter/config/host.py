"""The `host` section: which node_exporter collectors run, where /proc and /sys are, and each collector's filters."""

from __future__ import annotations

import re
from pathlib import Path

from pydantic import Field, model_validator

from .values import Duration, FilePath, Regex, StrictModel

# node_exporter's defaults (upstream, not a distribution's patched ones), so that the same
# filesystems, disks and counters appear as under a stock node_exporter.
NODE_MOUNT_POINTS_EXCLUDE = r"^/(dev|proc|run/credentials/.+|sys|var/lib/docker/.+|var/lib/containers/storage/.+)($|/)"
NODE_FS_TYPES_EXCLUDE = (
    r"^(autofs|binfmt_misc|bpf|cgroup2?|configfs|debugfs|devpts|devtmpfs|fusectl|hugetlbfs|iso9660|mqueue|nsfs|"
    r"overlay|proc|procfs|pstore|rpc_pipefs|securityfs|selinuxfs|squashfs|erofs|sysfs|tracefs)$"
)
NODE_DISK_DEVICES_EXCLUDE = r"^(z?ram|loop|fd|(h|s|v|xv)d[a-z]|nvme\d+n\d+p)\d+$"
NODE_NETCLASS_IGNORED_DEVICES = r"^$"
NODE_NETSTAT_FIELDS = (
    r"^(.*_(InErrors|InErrs)|Ip_Forwarding|Ip(6|Ext)_(InOctets|OutOctets)|Icmp6?_(InMsgs|OutMsgs)|"
    r"TcpExt_(Listen.*|Syncookies.*|TCPSynRetrans|TCPTimeouts|TCPOFOQueue|TCPRcvQDrop)|"
    r"Tcp_(ActiveOpens|InSegs|OutSegs|OutRsts|PassiveOpens|RetransSegs|CurrEstab)|"
    r"Udp6?_(InDatagrams|OutDatagrams|NoPorts|RcvbufErrors|SndbufErrors))$"
)
NODE_VMSTAT_FIELDS = r"^(oom_kill|pgpg|pswp|pg.*fault).*"

HOST_COLLECTORS = (
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


class HostCollectors(StrictModel):
    """Which host sub-collectors run (all by default), as node_exporter's --[no-]collector.NAME."""

    cpu: bool = True
    loadavg: bool = True
    meminfo: bool = True
    filesystem: bool = True
    diskstats: bool = True
    netdev: bool = True
    netclass: bool = True
    netstat: bool = True
    filefd: bool = True
    vmstat: bool = True
    stat: bool = True
    time: bool = True
    uname: bool = True
    os: bool = True

    def enabled(self) -> tuple[str, ...]:
        """Names of the collectors that run, in a fixed order."""
        return tuple(name for name in HOST_COLLECTORS if getattr(self, name))


class HostPaths(StrictModel):
    """Where the host's /proc, /sys and root are (point them at bind mounts when running in a container)."""

    procfs: FilePath = Field(default=Path("/proc"), description="as node_exporter's --path.procfs")
    sysfs: FilePath = Field(default=Path("/sys"), description="as node_exporter's --path.sysfs")
    rootfs: FilePath = Field(default=Path("/"), description="as node_exporter's --path.rootfs")


class FilesystemOptions(StrictModel):
    """Which mounts the filesystem collector reports."""

    mount_points_include: Regex | None = None
    mount_points_exclude: Regex | None = Field(
        default=re.compile(NODE_MOUNT_POINTS_EXCLUDE), description="default: node_exporter's"
    )
    fs_types_include: Regex | None = None
    fs_types_exclude: Regex | None = Field(
        default=re.compile(NODE_FS_TYPES_EXCLUDE), description="default: node_exporter's"
    )
    mount_timeout: Duration = Field(
        default=5.0, description="a mount whose statfs takes longer is reported with node_filesystem_device_error 1"
    )

    @model_validator(mode="after")
    def _one_of_each(self) -> FilesystemOptions:
        given = self.model_fields_set
        for what in ("mount_points", "fs_types"):
            include, exclude = f"{what}_include", f"{what}_exclude"
            if {include, exclude} <= given and getattr(self, exclude) is not None:
                raise ValueError(f"set {include} or {exclude}, not both")
            if getattr(self, include) is not None:  # an include replaces the default exclude
                object.__setattr__(self, exclude, None)
        return self


class DeviceFilter(StrictModel):
    """Which devices a collector reports: those matching `devices_include`, or those not matching `devices_exclude`."""

    devices_include: Regex | None = None
    devices_exclude: Regex | None = None

    @model_validator(mode="after")
    def _one_of(self) -> DeviceFilter:
        if self.devices_include is not None and self.devices_exclude is not None:
            raise ValueError("set devices_include or devices_exclude, not both")
        return self


class DiskstatsOptions(DeviceFilter):
    """Which block devices the diskstats collector reports."""

    devices_exclude: Regex | None = Field(
        default=re.compile(NODE_DISK_DEVICES_EXCLUDE), description="default: node_exporter's"
    )

    @model_validator(mode="after")
    def _one_of(self) -> DiskstatsOptions:
        if {"devices_include", "devices_exclude"} <= self.model_fields_set and self.devices_exclude is not None:
            raise ValueError("set devices_include or devices_exclude, not both")
        if self.devices_include is not None:  # an include replaces the default exclude
            object.__setattr__(self, "devices_exclude", None)
        return self


class NetclassOptions(StrictModel):
    """Which interfaces the netclass collector reports."""

    ignored_devices: Regex = Field(
        default=re.compile(NODE_NETCLASS_IGNORED_DEVICES), description="default: node_exporter's"
    )


class FieldsOption(StrictModel):
    """Which counters of a /proc file a collector reports."""

    fields: Regex


class HostConfig(StrictModel):
    """Host metrics under node_exporter's names."""

    enabled: bool = Field(default=True, description="export the host's metrics under node_exporter's names")
    collectors: HostCollectors = Field(default_factory=HostCollectors)
    paths: HostPaths = Field(default_factory=HostPaths)
    filesystem: FilesystemOptions = Field(default_factory=FilesystemOptions)
    diskstats: DiskstatsOptions = Field(default_factory=DiskstatsOptions)
    netdev: DeviceFilter = Field(default_factory=DeviceFilter)
    netclass: NetclassOptions = Field(default_factory=NetclassOptions)
    netstat: FieldsOption = Field(default_factory=lambda: FieldsOption(fields=re.compile(NODE_NETSTAT_FIELDS)))
    vmstat: FieldsOption = Field(default_factory=lambda: FieldsOption(fields=re.compile(NODE_VMSTAT_FIELDS)))
