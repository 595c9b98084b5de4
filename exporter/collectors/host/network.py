"""node_network_* and node_netstat_*: node_exporter's netdev, netclass and netstat collectors."""

from __future__ import annotations

import contextlib
import os
import re
from typing import TYPE_CHECKING, Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from .base import CollectorSpec, NameFilter, Platforms, Scrape, counter, gauge, single
from .proc import NET_DEV_FIELDS, ParseError, netstat_sections, parse_net_dev, parse_snmp6, snmp6_name
from .system import System, label_text, read_attr, read_attr_at

if TYPE_CHECKING:
    from exporter.config.host import DeviceFilter, NetclassOptions

# node_exporter's defaults (upstream's, not a distribution's patched ones): --collector.netclass.ignored-devices
# and --collector.netstat.fields.
NODE_NETCLASS_IGNORED_DEVICES = r"^$"
NODE_NETSTAT_FIELDS = (
    r"^(.*_(InErrors|InErrs)|Ip_Forwarding|Ip(6|Ext)_(InOctets|OutOctets)|Icmp6?_(InMsgs|OutMsgs)|"
    r"TcpExt_(Listen.*|Syncookies.*|TCPSynRetrans|TCPTimeouts|TCPOFOQueue|TCPRcvQDrop)|"
    r"Tcp_(ActiveOpens|InSegs|OutSegs|OutRsts|PassiveOpens|RetransSegs|CurrEstab)|"
    r"Udp6?_(InDatagrams|OutDatagrams|NoPorts|RcvbufErrors|SndbufErrors))$"
)
# psutil's net_io_counters fields under node_exporter's names.
_PSUTIL_NET = (
    ("receive_bytes", "bytes_recv"),
    ("receive_packets", "packets_recv"),
    ("receive_errs", "errin"),
    ("receive_drop", "dropin"),
    ("transmit_bytes", "bytes_sent"),
    ("transmit_packets", "packets_sent"),
    ("transmit_errs", "errout"),
    ("transmit_drop", "dropout"),
)

# Numeric /sys/class/net/<iface>/ attributes: (metric name after node_network_, file, counter?).
_CLASS_NUMBERS = (
    ("address_assign_type", "addr_assign_type", False),
    ("carrier", "carrier", False),
    ("carrier_changes_total", "carrier_changes", True),
    ("carrier_up_changes_total", "carrier_up_count", True),
    ("carrier_down_changes_total", "carrier_down_count", True),
    ("device_id", "dev_id", False),
    ("dormant", "dormant", False),
    ("flags", "flags", False),
    ("iface_id", "ifindex", False),
    ("iface_link", "iflink", False),
    ("iface_link_mode", "link_mode", False),
    ("mtu_bytes", "mtu", False),
    ("name_assign_type", "name_assign_type", False),
    ("net_dev_group", "netdev_group", False),
    ("speed_bytes", "speed", False),
    ("transmit_queue_length", "tx_queue_len", False),
    ("protocol_type", "type", False),
)
# Set when the interface is created and never changed after (see the kernel's sysfs-class-net ABI).
_STATIC_FILES = frozenset({"addr_assign_type", "dev_id", "name_assign_type", "type"})
_INFO_LABELS = ("device", "address", "broadcast", "duplex", "operstate", "ifalias")
# Linux counts CLOSE_WAIT sockets in Tcp CurrEstab too.
_ESTABLISHED = frozenset({"ESTABLISHED", "CLOSE_WAIT"})


class NetDev:
    """Per-interface traffic counters from /proc/net/dev (psutil elsewhere)."""

    def __init__(self, options: DeviceFilter) -> None:
        self._devices = NameFilter(options.devices_include, options.devices_exclude)

    def collect(self, scrape: Scrape) -> list[Metric]:
        """The counters of every selected interface."""
        system = scrape.system
        if not system.linux:
            return self._collect_psutil(system)
        families = [
            counter(f"node_network_{field}_total", f"Network device statistic {field}.", ["device"])
            for field in NET_DEV_FIELDS
        ]
        # node_exporter reads netlink, which also has rx_nohandler; /proc/net/dev lacks it, sysfs has it.
        nohandler = counter(
            "node_network_receive_nohandler_total", "Network device statistic receive_nohandler.", ["device"]
        )
        class_net = os.path.join(scrape.sysfs, "class/net")
        for device, values in scrape.proc("net/dev", parse_net_dev):
            if self._devices.ignored(device):
                continue
            for family, value in zip(families, values, strict=True):
                family.add_metric([device], float(value))
            # Absent on old kernels, or when sysfs is not mounted where configured.
            with contextlib.suppress(OSError, ValueError):
                nohandler.add_metric([device], float(read_attr(f"{class_net}/{device}/statistics/rx_nohandler")))
        return [*families, nohandler]

    def _collect_psutil(self, system: System) -> list[Metric]:
        assert system.psutil is not None
        families = {
            field: counter(f"node_network_{field}_total", f"Network device statistic {field}.", ["device"])
            for field, _ in _PSUTIL_NET
        }
        nics: dict[str, Any] = system.psutil.net_io_counters(pernic=True) or {}
        for device, record in nics.items():
            if self._devices.ignored(device):
                continue
            for field, attr_name in _PSUTIL_NET:
                value = getattr(record, attr_name, None)
                if value is not None:
                    families[field].add_metric([device], float(value))
        return list(families.values())


NETDEV = CollectorSpec(
    name="netdev", default_enabled=True, platforms=Platforms.LINUX_OR_PSUTIL, factory=lambda c: NetDev(c.config.netdev)
)


class NetClass:
    """Interface state and properties from /sys/class/net (psutil's net_if_stats elsewhere)."""

    def __init__(self, options: NetclassOptions) -> None:
        self._ignored = options.ignored_devices
        # (device, ifindex) -> its attributes that never change while the interface exists; a new
        # interface of the same name has a new ifindex, so is read afresh.
        self._static: dict[tuple[str, int | None], dict[str, int | None]] = {}

    def collect(self, scrape: Scrape) -> list[Metric]:
        """up, info and the numeric attributes of every interface not ignored."""
        system = scrape.system
        up = gauge("node_network_up", "Value is 1 if operstate is 'up', 0 otherwise.", ["device"])
        if not system.linux:
            return self._collect_psutil(system, up)
        info = gauge(
            "node_network_info", "Non-numeric data from /sys/class/net/<iface>, value is always 1.", _INFO_LABELS
        )
        numbers: dict[str, GaugeMetricFamily | CounterMetricFamily] = {
            name: (counter if is_counter else gauge)(
                f"node_network_{name}", f"Network device property: {name}", ["device"]
            )
            for name, _, is_counter in _CLASS_NUMBERS
        }
        base = os.path.join(scrape.sysfs, "class/net")
        with os.scandir(base) as entries:
            # Entries are symlinks to device directories; regular files (bonding_masters) are not interfaces.
            devices = sorted(e.name for e in entries if not e.is_file(follow_symlinks=False))
        static: dict[tuple[str, int | None], dict[str, int | None]] = {}
        for device in devices:
            if self._ignored.search(device):
                continue
            try:
                dir_fd = os.open(f"{base}/{device}", os.O_RDONLY | os.O_DIRECTORY)
            except OSError:
                continue  # gone since the listing
            try:
                texts = {key: _attr_text(dir_fd, key) for key in _INFO_LABELS[1:]}
                key = (device, _attr_int(dir_fd, "ifindex"))
                fixed = self._static.get(key)
                if fixed is None:
                    fixed = {file: _attr_int(dir_fd, file) for file in _STATIC_FILES}
                static[key] = fixed
                up.add_metric([device], 1.0 if texts["operstate"] == "up" else 0.0)
                info.add_metric([device, *(label_text(texts[k]) for k in _INFO_LABELS[1:])], 1.0)
                for name, file, _ in _CLASS_NUMBERS:
                    if file in fixed:
                        value = fixed[file]
                    elif file == "ifindex":
                        value = key[1]
                    else:
                        value = _attr_int(dir_fd, file)
                    if value is None:
                        continue
                    if name == "speed_bytes":  # Mbit/s to bytes/s; -1 (unknown) stays negative, as node_exporter
                        value *= 125_000
                    numbers[name].add_metric([device], float(value))
            finally:
                os.close(dir_fd)
        self._static = static  # interfaces that went away are forgotten
        return [up, info, *numbers.values()]

    def _collect_psutil(self, system: System, up: GaugeMetricFamily) -> list[Metric]:
        assert system.psutil is not None
        mtu = gauge("node_network_mtu_bytes", "Network device property: mtu_bytes", ["device"])
        speed = gauge("node_network_speed_bytes", "Network device property: speed_bytes", ["device"])
        stats: dict[str, Any] = system.psutil.net_if_stats() or {}
        for device in sorted(stats):
            if self._ignored.search(device):
                continue
            record = stats[device]
            up.add_metric([device], 1.0 if record.isup else 0.0)
            mtu.add_metric([device], float(record.mtu))
            if record.speed > 0:  # psutil says 0 when it does not know
                speed.add_metric([device], float(record.speed * 125_000))
        return [up, mtu, speed]


NETCLASS = CollectorSpec(
    name="netclass",
    default_enabled=True,
    platforms=Platforms.LINUX_OR_PSUTIL,
    factory=lambda c: NetClass(c.config.netclass),
)


def _attr_text(dir_fd: int, name: str) -> str:
    """An attribute's text; "" when the file is missing or the driver does not support it (EINVAL)."""
    try:
        return read_attr_at(dir_fd, name)
    except OSError:
        return ""


def _attr_int(dir_fd: int, name: str) -> int | None:
    """An attribute's number (decimal, or hex with 0x); None when missing, unsupported or not a number."""
    try:
        text = read_attr_at(dir_fd, name)
        return int(text[2:], 16) if text.startswith("0x") else int(text)
    except (OSError, ValueError):
        return None


class NetStat:
    """node_netstat_<Proto>_<Field> from /proc/net/{netstat,snmp,snmp6}, the fields matching the regex."""

    def __init__(self, fields: re.Pattern[str]) -> None:
        self._fields = fields
        # The kernel's header lines and snmp6 names do not change: which columns the regex selects is
        # worked out once per header (a few hundred searches saved per scrape).
        self._columns: dict[str, tuple[str, int, tuple[tuple[int, str], ...]]] = {}
        self._snmp6: dict[str, tuple[str, str] | None] = {}

    def collect(self, scrape: Scrape) -> list[Metric]:
        """The selected protocol counters, untyped as node_exporter has them."""
        if not scrape.system.linux:
            return self._collect_psutil(scrape.system)
        # Protocol -> its selected (field, value); a protocol seen again replaces the earlier one, as node_exporter.
        selected: dict[str, list[tuple[str, str]]] = {}
        for name in ("net/netstat", "net/snmp"):
            for header, values_line in scrape.proc(name, netstat_sections):
                proto, width, columns = self._columns_of(header)
                values = values_line.split(" ")
                if len(values) != width or values[0] != header.split(" ", 1)[0]:
                    raise ParseError(f"field count mismatch in {name}: {proto}")
                selected[proto] = [(field, values[i]) for i, field in columns]
        try:
            snmp6 = scrape.proc("net/snmp6", parse_snmp6)
        except FileNotFoundError:  # no snmp6 when IPv6 is disabled
            snmp6 = []
        by_proto: dict[str, list[tuple[str, str]]] = {}
        for name, number in snmp6:
            if name not in self._snmp6:
                split = snmp6_name(name)
                self._snmp6[name] = split if split and self._fields.search(f"{split[0]}_{split[1]}") else None
            hit = self._snmp6[name]
            if hit is not None:
                by_proto.setdefault(hit[0], []).append((hit[1], number))
        selected.update(by_proto)
        out: list[Metric] = []
        for proto, pairs in selected.items():
            for field, text in pairs:
                try:
                    value = float(text)
                except ValueError:
                    raise ParseError(f"invalid value {text!r} for {proto}_{field}") from None
                out.append(single(f"node_netstat_{proto}_{field}", f"Statistic {proto}{field}.", value, "untyped"))
        return out

    def _columns_of(self, header: str) -> tuple[str, int, tuple[tuple[int, str], ...]]:
        """(protocol, column count, selected (column, field)) of a header line."""
        found = self._columns.get(header)
        if found is None:
            names = header.split(" ")
            proto = names[0].removesuffix(":")
            chosen = tuple((i, n) for i, n in enumerate(names) if i and self._fields.search(f"{proto}_{n}"))
            found = self._columns[header] = (proto, len(names), chosen)
        return found

    def _collect_psutil(self, system: System) -> list[Metric]:
        assert system.psutil is not None
        if not self._fields.search("Tcp_CurrEstab"):
            return []
        sockets = system.psutil.net_connections(kind="tcp")
        established = sum(1 for s in sockets if s.status in _ESTABLISHED)
        return [single("node_netstat_Tcp_CurrEstab", "Statistic TcpCurrEstab.", float(established), "untyped")]


NETSTAT = CollectorSpec(
    name="netstat",
    default_enabled=True,
    platforms=Platforms.LINUX_OR_PSUTIL,
    factory=lambda c: NetStat(c.config.netstat.fields),
)
