"""The `host` section: which node_exporter collectors run, where /proc and /sys are, and each collector's filters.

The collectors and node_exporter's default filters are declared beside the collectors, in
exporter.collectors.host; the models here are made from them.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar, Self

from pydantic import Field, create_model, model_validator

# node_exporter's default filters, kept beside their collectors and exported from here too.
from exporter.collectors.host.disks import NODE_DISK_DEVICES_EXCLUDE as NODE_DISK_DEVICES_EXCLUDE
from exporter.collectors.host.filesystem import NODE_FS_TYPES_EXCLUDE as NODE_FS_TYPES_EXCLUDE
from exporter.collectors.host.filesystem import NODE_MOUNT_POINTS_EXCLUDE as NODE_MOUNT_POINTS_EXCLUDE
from exporter.collectors.host.kernel import NODE_VMSTAT_FIELDS as NODE_VMSTAT_FIELDS
from exporter.collectors.host.network import NODE_NETCLASS_IGNORED_DEVICES as NODE_NETCLASS_IGNORED_DEVICES
from exporter.collectors.host.network import NODE_NETSTAT_FIELDS as NODE_NETSTAT_FIELDS
from exporter.collectors.host.registry import COLLECTORS

from .values import Duration, FilePath, Regex, StrictModel

HOST_COLLECTORS = tuple(spec.name for spec in COLLECTORS)


class CollectorSwitches(StrictModel):
    """The base of `HostCollectors`, which adds one bool per collector of the registry."""

    def enabled(self) -> tuple[str, ...]:
        """Names of the collectors that run, in the registry's order."""
        return tuple(name for name, on in self if on)


if TYPE_CHECKING:
    HostCollectors = CollectorSwitches  # its fields come from the registry, which a type checker cannot see
else:
    HostCollectors = create_model(
        "HostCollectors",
        __base__=CollectorSwitches,
        __doc__="Which host sub-collectors run (all by default), as node_exporter's --[no-]collector.NAME.",
        __module__=__name__,
        **{spec.name: (bool, spec.default_enabled) for spec in COLLECTORS},
    )


class HostPaths(StrictModel):
    """Where the host's /proc, /sys and root are (point them at bind mounts when running in a container)."""

    procfs: FilePath = Field(default=Path("/proc"), description="as node_exporter's --path.procfs")
    sysfs: FilePath = Field(default=Path("/sys"), description="as node_exporter's --path.sysfs")
    rootfs: FilePath = Field(default=Path("/"), description="as node_exporter's --path.rootfs")


class IncludeOrExclude(StrictModel):
    """A model of `<kind>_include` / `<kind>_exclude` regex pairs, node_exporter's filters."""

    filter_kinds: ClassVar[tuple[str, ...]] = ()

    @model_validator(mode="after")
    def _include_replaces_exclude(self) -> Self:
        """An include replaces the default exclude; setting both is an error, as in node_exporter."""
        given = self.model_fields_set
        for kind in self.filter_kinds:
            include, exclude = f"{kind}_include", f"{kind}_exclude"
            if {include, exclude} <= given and getattr(self, exclude) is not None:
                raise ValueError(f"set {include} or {exclude}, not both")
            if getattr(self, include) is not None:
                object.__setattr__(self, exclude, None)
        return self


class FilesystemOptions(IncludeOrExclude):
    """Which mounts the filesystem collector reports."""

    filter_kinds: ClassVar[tuple[str, ...]] = ("mount_points", "fs_types")

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


class DeviceFilter(IncludeOrExclude):
    """Which devices a collector reports: those matching `devices_include`, or those not matching `devices_exclude`."""

    filter_kinds: ClassVar[tuple[str, ...]] = ("devices",)

    devices_include: Regex | None = None
    devices_exclude: Regex | None = None


class DiskstatsOptions(DeviceFilter):
    """Which block devices the diskstats collector reports."""

    devices_exclude: Regex | None = Field(
        default=re.compile(NODE_DISK_DEVICES_EXCLUDE), description="default: node_exporter's"
    )


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
