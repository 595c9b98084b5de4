"""What the host is and when: node_exporter's time, uname and os collectors."""

from __future__ import annotations

import glob
import os
import plistlib
import time

from prometheus_client.core import Metric

from .base import CollectorSpec, Platforms, Refreshing, Scrape, gauge, single
from .proc import os_version, parse_os_release
from .system import System, label_text, read_attr, read_file

_OS_LABELS = (
    "build_id",
    "id",
    "id_like",
    "image_id",
    "image_version",
    "name",
    "pretty_name",
    "variant",
    "variant_id",
    "version",
    "version_codename",
    "version_id",
)
_OS_RELEASE_FILES = ("etc/os-release", "usr/lib/os-release")
_MACOS_VERSION_FILE = "System/Library/CoreServices/SystemVersion.plist"


class Time:
    """node_time_seconds, node_time_zone_offset_seconds and, on Linux, the clocksources."""

    def __init__(self, system: System) -> None:
        # The clocksource directories are made at boot; which source is current is read every scrape.
        self._clocksources = Refreshing(lambda: _clocksource_dirs(system))

    def collect(self, scrape: Scrape) -> list[Metric]:
        """The wall clock now, its zone, and the kernel's clocksources."""
        system = scrape.system
        now = system.clock()
        local = time.localtime(now)
        zone = gauge("node_time_zone_offset_seconds", "System time zone offset in seconds.", ["time_zone"])
        zone.add_metric([label_text(local.tm_zone or "")], float(local.tm_gmtoff or 0))
        out: list[Metric] = [
            single("node_time_seconds", "System time in seconds since epoch (1970).", now),
            zone,
        ]
        if system.linux:
            out.extend(_clocksources(self._clocksources.get()))
        return out


TIME = CollectorSpec(
    name="time", default_enabled=True, platforms=Platforms.EVERYWHERE, factory=lambda c: Time(c.system)
)


def _clocksource_dirs(system: System) -> list[str]:
    pattern = os.path.join(glob.escape(str(system.sysfs)), "devices/system/clocksource/clocksource[0-9]*")
    return sorted(glob.glob(pattern))


def _clocksources(dirs: list[str]) -> list[Metric]:
    """node_time_clocksource_{available,current}_info; `device` is the directory's position, as node_exporter."""
    available = gauge(
        "node_time_clocksource_available_info",
        "Available clocksources read from '/sys/devices/system/clocksource'.",
        ["device", "clocksource"],
    )
    current = gauge(
        "node_time_clocksource_current_info",
        "Current clocksource read from '/sys/devices/system/clocksource'.",
        ["device", "clocksource"],
    )
    for index, path in enumerate(dirs):
        try:
            names = read_attr(f"{path}/available_clocksource").split()
            now = read_attr(f"{path}/current_clocksource")
        except OSError:
            continue
        for name in names:
            available.add_metric([str(index), name], 1.0)
        current.add_metric([str(index), now], 1.0)
    return [available, current]


class UnameInfo:
    """node_uname_info, read once a minute at most (it changes only with the host name)."""

    def __init__(self, system: System) -> None:
        self._info = Refreshing(lambda: _uname_labels(system))

    def collect(self, scrape: Scrape) -> list[Metric]:
        """One series, value 1."""
        family = gauge(
            "node_uname_info",
            "Labeled system information as provided by the uname system call.",
            ["sysname", "release", "version", "machine", "nodename", "domainname"],
        )
        family.add_metric(list(self._info.get()), 1.0)
        return [family]


UNAME = CollectorSpec(
    name="uname", default_enabled=True, platforms=Platforms.EVERYWHERE, factory=lambda c: UnameInfo(c.system)
)


def _uname_labels(system: System) -> tuple[str, ...]:
    u = system.uname()
    if system.linux:
        nodename = u.nodename
        try:  # Python's os.uname leaves out utsname.domainname; the kernel shows it here
            domainname = read_attr(os.path.join(system.procfs, "sys/kernel/domainname"))
        except OSError:
            domainname = "(none)"
    else:  # as node_exporter on the BSDs and macOS: the node name split at its first dot
        nodename, _, domain = u.nodename.partition(".")
        domainname = domain or "(none)"
    return tuple(label_text(v) for v in (u.sysname, u.release, u.version, u.machine, nodename, domainname))


class OsRelease:
    """node_os_info and node_os_version from os-release (macOS: SystemVersion.plist), re-read once a minute."""

    def __init__(self, system: System) -> None:
        self._release = Refreshing(lambda: _os_release(system))

    def collect(self, scrape: Scrape) -> list[Metric]:
        """The release's labels, and its major.minor version as a number when it has one."""
        release = self._release.get()
        info = gauge(
            "node_os_info",
            "A metric with a constant '1' value labeled by build_id, id, id_like, image_id, image_version, "
            "name, pretty_name, variant, variant_id, version, version_codename, version_id.",
            _OS_LABELS,
        )
        info.add_metric([label_text(release.get(key.upper(), "")) for key in _OS_LABELS], 1.0)
        out: list[Metric] = [info]
        version = os_version(release.get("VERSION_ID", ""))
        if version > 0:
            family = gauge(
                "node_os_version",
                "Metric containing the major.minor part of the OS version.",
                ["id", "id_like", "name"],
            )
            family.add_metric([label_text(release.get(k, "")) for k in ("ID", "ID_LIKE", "NAME")], version)
            out.append(family)
        return out


OS = CollectorSpec(
    name="os", default_enabled=True, platforms=Platforms.NOT_WINDOWS, factory=lambda c: OsRelease(c.system)
)


def _os_release(system: System) -> dict[str, str]:
    """The first of /etc/os-release, /usr/lib/os-release and macOS's SystemVersion.plist under rootfs."""
    for name in _OS_RELEASE_FILES:
        try:
            return parse_os_release(read_file(os.path.join(system.rootfs, name)))
        except FileNotFoundError:
            continue
    try:
        with open(os.path.join(system.rootfs, _MACOS_VERSION_FILE), "rb") as f:
            plist = plistlib.load(f)
    except FileNotFoundError:
        raise FileNotFoundError("no os-release file (etc/os-release, usr/lib/os-release) under rootfs") from None
    version = str(plist.get("ProductVersion", ""))
    return {
        "NAME": str(plist.get("ProductName", "")),
        "VERSION": version,
        "VERSION_ID": version,
        "BUILD_ID": str(plist.get("ProductBuildVersion", "")),
    }
