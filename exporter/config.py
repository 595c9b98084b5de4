"""The config file: models, strict loading, and errors that name file, line and key."""

from __future__ import annotations

import difflib
import json
import math
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlsplit

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    PrivateAttr,
    Strict,
    ValidationError,
    WithJsonSchema,
    create_model,
    model_validator,
)

DEFAULT_CONFIG_FILE = "upwatch.yml"
CONFIG_ENV_VAR = "UPWATCH_CONFIG"
# Top-level keys starting with x- are ignored, as in Compose files: a place for YAML anchors.
EXTENSION_PREFIX = "x-"
SCHEMA_ID = "https://upwatch.dev/schema/upwatch.schema.json"

# Labels upwatch itself puts on probe series, plus the ones Prometheus owns.
RESERVED_LABELS = frozenset(
    {
        "endpoint",
        "instance",
        "job",
        "le",
        "quantile",
        "state",
        "result",
        "reason",
        "phase",
        "url",
        "method",
        "version",
        "python",
    }
)
_LABEL_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
_HEADER_NAME = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")
_ENDPOINT_NAME = re.compile(r"^[^\x00-\x1f\x7f]{1,128}$")

# ---------------------------------------------------------------------------
# Value types


_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w)")
_DURATION_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration(value: object) -> float:
    """Seconds in a duration like `500ms`, `30s`, `5m`, `1h30m`."""
    if isinstance(value, bool) or not isinstance(value, str):
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            raise ValueError(f"duration {value!r} needs a unit, e.g. '{value}s'")
        raise ValueError(f"must be a duration like 30s, got {_type_name(value)}")
    text = value.strip()
    pos = 0
    total = 0.0
    if text.startswith("-"):
        raise ValueError(f"duration {value!r} must be greater than zero")
    while pos < len(text):
        m = _DURATION_PART.match(text, pos)
        if not m:
            raise ValueError(f"invalid duration {value!r}: use a number and a unit (ms, s, m, h, d, w), e.g. 30s")
        total += float(m.group(1)) * _DURATION_UNITS[m.group(2)]
        pos = m.end()
    if not text:
        raise ValueError("invalid duration '': use e.g. 30s")
    if total <= 0:
        raise ValueError(f"duration {value!r} must be greater than zero")
    if not math.isfinite(total):
        raise ValueError(f"duration {_clip(value)} is too long")
    return total


def format_duration(seconds: float) -> str:
    """The shortest duration text for a number of seconds (30s, 1m30s, 500ms)."""
    ms = round(seconds * 1000)
    if ms % 1000:
        return f"{ms}ms" if ms < 1000 else f"{seconds:g}s"
    s = ms // 1000
    out = ""
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if s >= size:
            out += f"{s // size}{unit}"
            s %= size
    return out or "0s"


_SIZE = re.compile(r"^(\d+)\s*(B|KB|KiB|MB|MiB|GB|GiB)?$")
_SIZE_UNITS = {
    None: 1,
    "B": 1,
    "KB": 1000,
    "KiB": 1024,
    "MB": 1000**2,
    "MiB": 1024**2,
    "GB": 1000**3,
    "GiB": 1024**3,
}


def parse_size(value: object) -> int:
    """Bytes in a size like `512KiB`, `10MiB` or a plain number of bytes."""
    if isinstance(value, bool):
        raise ValueError("must be a size like 10MiB, got a boolean")
    if isinstance(value, int):
        text = str(value)
    elif isinstance(value, str):
        text = value.strip()
    else:
        raise ValueError(f"must be a size like 10MiB, got {_type_name(value)}")
    m = _SIZE.match(text)
    if not m:
        raise ValueError(f"invalid size {value!r}: use bytes or a unit (KiB, MiB, GiB), e.g. 10MiB")
    size = int(m.group(1)) * _SIZE_UNITS[m.group(2)]
    if size <= 0:
        raise ValueError("size must be greater than zero")
    return size


@dataclass(frozen=True, slots=True)
class StatusRange:
    """An inclusive range of HTTP status codes."""

    low: int
    high: int

    def __contains__(self, code: object) -> bool:
        return isinstance(code, int) and self.low <= code <= self.high

    def __str__(self) -> str:
        if self.low == self.high:
            return str(self.low)
        if self.low % 100 == 0 and self.high == self.low + 99:
            return f"{self.low // 100}xx"
        return f"{self.low}-{self.high}"


_STATUS_CLASS = re.compile(r"^([1-5])xx$", re.IGNORECASE)
_STATUS_RANGE = re.compile(r"^(\d{3})\s*-\s*(\d{3})$")


def _status_code(text: str | int, original: object) -> int:
    code = int(text)
    if not 100 <= code <= 599:
        raise ValueError(f"status {original!r} is not an HTTP status code (100-599)")
    return code


def parse_status_list(value: object) -> tuple[StatusRange, ...]:
    """Expected statuses from a code, a class (`2xx`), a range (`200-299`) or a list of them."""
    items = value if isinstance(value, list) else [value]
    if not items:
        raise ValueError("must list at least one status")
    out: list[StatusRange] = []
    for item in items:
        if isinstance(item, bool):
            raise ValueError(f"invalid status {_shown(item)}: use 200, '2xx' or '200-299'")
        if isinstance(item, int):
            code = _status_code(item, item)
            out.append(StatusRange(code, code))
            continue
        if not isinstance(item, str):
            raise ValueError(f"invalid status {_shown(item)}: use 200, '2xx' or '200-299'")
        text = item.strip()
        if m := _STATUS_CLASS.match(text):
            low = int(m.group(1)) * 100
            out.append(StatusRange(low, low + 99))
        elif m := _STATUS_RANGE.match(text):
            low, high = _status_code(m.group(1), item), _status_code(m.group(2), item)
            if low > high:
                raise ValueError(f"invalid status range {item!r}: start is above end")
            out.append(StatusRange(low, high))
        elif text.isascii() and text.isdigit():
            code = _status_code(text, item)
            out.append(StatusRange(code, code))
        else:
            raise ValueError(f"invalid status {item!r}: use 200, '2xx' or '200-299'")
    return tuple(out)


def _compile_regex(value: object) -> re.Pattern[str]:
    if isinstance(value, re.Pattern):  # a built-in default
        return value
    if not isinstance(value, str):
        raise ValueError(f"must be a regular expression (a string), got {_type_name(value)}")
    try:
        return re.compile(value)
    except re.error as exc:
        raise ValueError(f"invalid regular expression {value!r}: {exc}") from None
    except (OverflowError, RecursionError) as exc:  # e.g. a{4294967296}, or thousands of nested groups
        reason = "nested too deeply" if isinstance(exc, RecursionError) else str(exc)
        raise ValueError(f"invalid regular expression {_clip(value)}: {reason}") from None


def _url_for_message(url: str) -> str:
    """A URL as problem messages show it: credentials and query string masked (they may hold secrets)."""
    url = re.sub(r"^([^:/?#]*://)[^/?#]*@", r"\1***@", url)
    return re.sub(r"[?#].*$", lambda m: m.group(0)[0] + "***", url, flags=re.DOTALL)


def _check_url(value: str) -> str:
    shown = _url_for_message(value)
    if any(ch.isspace() for ch in value):
        raise ValueError(f"invalid URL {shown!r}: contains whitespace")
    try:
        parts = urlsplit(value)
    except ValueError as exc:  # e.g. an unclosed [ of an IPv6 address
        raise ValueError(f"invalid URL {shown!r}: {exc}") from None
    if parts.scheme not in ("http", "https"):
        raise ValueError(f"invalid URL {shown!r}: scheme must be http or https")
    if not parts.hostname:
        raise ValueError(f"invalid URL {shown!r}: no host")
    try:
        port = parts.port
    except ValueError:
        port = 0
    if port == 0:
        raise ValueError(f"invalid URL {shown!r}: bad port")
    return value


def _check_label_name(name: str) -> str:
    if not _LABEL_NAME.match(name):
        raise ValueError(f"invalid label name {name!r}: use letters, digits and _")
    if name.startswith("__"):
        raise ValueError(f"label name {name!r} is reserved: names starting with __ belong to Prometheus")
    if name in RESERVED_LABELS:
        raise ValueError(f"label name {name!r} is reserved: upwatch or Prometheus sets it")
    return name


def _check_header_name(name: str) -> str:
    if not _HEADER_NAME.match(name):
        raise ValueError(f"invalid header name {name!r}")
    return name


def _check_header_value(value: str) -> str:
    if any(ch in value for ch in "\r\n\x00"):
        raise ValueError("header values must not contain line breaks or NUL characters")
    if not value.isascii():
        raise ValueError("header values must be ASCII (encode other text, e.g. percent-encoding)")
    return value


def _scalar_text(value: object) -> object:
    """Header and label values may be written as numbers; booleans stay errors."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    return value


def _check_name(value: str) -> str:
    if not _ENDPOINT_NAME.match(value) or value != value.strip():
        raise ValueError(
            f"invalid endpoint name {value!r}: 1 to 128 printable characters, no leading or trailing space"
        )
    return value


def _check_percent(value: float) -> float:
    if not 0 < value < 100:
        raise ValueError(f"availability objective must be a percentage between 0 and 100 (exclusive), got {value:g}")
    return value


def _shown(value: object) -> str:
    """A value as YAML would write it (true, null), strings quoted."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    return repr(value)


def _clip(text: str, limit: int = 40) -> str:
    """A string's repr, cut short if long."""
    return repr(text) if len(text) <= limit else repr(text[:limit]) + "..."


def _type_name(value: object) -> str:
    return {
        type(None): "nothing (null)",
        bool: "a boolean",
        int: "an integer",
        float: "a number",
        str: "a string",
        list: "a list",
        dict: "a mapping",
    }.get(type(value), type(value).__name__)


Duration = Annotated[
    float,
    BeforeValidator(parse_duration),
    PlainSerializer(format_duration, return_type=str),
    WithJsonSchema(
        {
            "type": "string",
            "pattern": r"^(\d+(\.\d+)?(ms|s|m|h|d|w))+$",
            "description": "duration: 500ms, 30s, 5m, 1h30m",
        }
    ),
]
Size = Annotated[
    int,
    BeforeValidator(parse_size),
    WithJsonSchema(
        {
            "oneOf": [
                {"type": "integer", "minimum": 1},
                {"type": "string", "pattern": r"^\d+\s*(B|KB|KiB|MB|MiB|GB|GiB)?$"},
            ],
            "description": "size in bytes, or with a unit: 512KiB, 10MiB",
        }
    ),
]
Regex = Annotated[
    re.Pattern[str],
    BeforeValidator(_compile_regex),
    PlainSerializer(lambda p: p.pattern, return_type=str),
    WithJsonSchema({"type": "string", "format": "regex"}),
]
# Inline rather than a $ref: pydantic cannot resolve refs to definitions it did not make.
_STATUS_ITEM_SCHEMA = {
    "oneOf": [
        {"type": "integer", "minimum": 100, "maximum": 599},
        {"type": "string", "pattern": r"^\s*([1-5][xX][xX]|[1-5]\d\d|[1-5]\d\d\s*-\s*[1-5]\d\d)\s*$"},
    ]
}
StatusList = Annotated[
    tuple[StatusRange, ...],
    BeforeValidator(parse_status_list),
    PlainSerializer(lambda rs: [str(r) for r in rs], return_type=list),
    WithJsonSchema(
        {
            "description": "status codes: 200, a class '2xx', a range '200-299', or a list of them",
            "oneOf": [
                _STATUS_ITEM_SCHEMA,
                {"type": "array", "items": _STATUS_ITEM_SCHEMA, "minItems": 1},
            ],
        }
    ),
]
LabelName = Annotated[str, AfterValidator(_check_label_name)]
HeaderName = Annotated[str, AfterValidator(_check_header_name)]
TextValue = Annotated[str, BeforeValidator(_scalar_text), WithJsonSchema({"type": ["string", "number"]})]
Url = Annotated[
    str,
    AfterValidator(_check_url),
    WithJsonSchema({"type": "string", "format": "uri", "pattern": r"^(https?://|\$\{)"}),
]


HTTP_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")


def _check_method(value: object) -> str:
    if isinstance(value, str) and value.upper() in HTTP_METHODS:
        return value.upper()
    raise ValueError(f"must be one of {', '.join(HTTP_METHODS)}, got {_shown(value)}")


HttpMethod = Annotated[str, BeforeValidator(_check_method), WithJsonSchema({"enum": list(HTTP_METHODS)})]


# ---------------------------------------------------------------------------
# Models


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True, use_enum_values=False)


class Expect(_Model):
    """What a good response looks like."""

    status: StatusList = Field(default=(StatusRange(200, 299),), description="expected status codes; default 2xx")
    body_contains: str | None = Field(default=None, description="the body must contain this text")
    body_matches: Regex | None = Field(default=None, description="the body must match this regular expression")
    body_not_matches: Regex | None = Field(default=None, description="the body must not match this regular expression")
    headers: dict[HeaderName, Regex] = Field(
        default_factory=dict, description="response headers that must be present and match these regular expressions"
    )
    max_response_time: Duration | None = Field(default=None, description="a slower probe counts as failed (too_slow)")


# Strict mode would accept only Path objects; a YAML file can only give strings.
FilePath = Annotated[Path, Strict(False)]


class TLSConfig(_Model):
    """TLS settings for https endpoints."""

    verify: bool = Field(default=True, description="verify the server certificate and host name")
    ca_file: FilePath | None = Field(
        default=None, description="PEM file of CA certificates to trust instead of the system's"
    )
    cert_file: FilePath | None = Field(default=None, description="PEM client certificate (mutual TLS)")
    key_file: FilePath | None = Field(default=None, description="PEM private key of the client certificate")
    server_name: str | None = Field(default=None, description="name to send in SNI and verify the certificate against")


class SLO(_Model):
    """Service level objective."""

    availability: Annotated[float, AfterValidator(_check_percent)] = Field(
        description="availability objective in percent, e.g. 99.9"
    )


class Endpoint(_Model):
    """One HTTP endpoint to probe."""

    name: Annotated[str, AfterValidator(_check_name)] = Field(description="unique; becomes the endpoint label")
    url: Url = Field(description="http:// or https:// URL")
    method: HttpMethod = Field(default="GET", description="HTTP method")
    headers: dict[HeaderName, Annotated[TextValue, AfterValidator(_check_header_value)]] = Field(
        default_factory=dict, description="request headers; ${VAR} allowed"
    )
    body: str | None = Field(default=None, description="request body")
    interval: Duration = Field(default=30.0, description="time between probes")
    timeout: Duration = Field(default=10.0, description="deadline for the whole probe; shorter than interval")
    failure_threshold: int = Field(default=3, ge=1, description="consecutive failed probes that open an incident")
    success_threshold: int = Field(default=1, ge=1, description="consecutive good probes that close it")
    degraded_after: Duration | None = Field(default=2.0, description="a good probe slower than this marks DEGRADED")
    expect: Expect = Field(default_factory=Expect)
    tls: TLSConfig = Field(default_factory=TLSConfig)
    follow_redirects: bool = Field(default=True)
    max_redirects: int = Field(default=10, ge=0, le=100, description="more redirects than this fail the probe")
    body_size_limit: Size = Field(
        default=10 * 1024 * 1024, description="read at most this much of a response body; more fails the probe"
    )
    labels: dict[LabelName, TextValue] = Field(
        default_factory=dict, description="added to every series of the endpoint"
    )
    slo: SLO | None = Field(default=None)

    @property
    def safe_url(self) -> str:
        """The URL without credentials, query string or fragment (safe for labels and logs)."""
        return redact_url(self.url)


_DEFAULTABLE = {k: v for k, v in Endpoint.model_fields.items() if k not in ("name", "url")}

EndpointDefaults: type[_Model] = create_model(  # type: ignore[call-overload]
    "EndpointDefaults",
    __base__=_Model,
    __doc__="Defaults for every endpoint key (but name and url).",
    # Not `| None`: a null default would be merged into every endpoint and fail there, where errors that come
    # from the defaults are not reported. Keys that take null on an endpoint (slo, degraded_after) still do here.
    **{
        name: (field.rebuild_annotation(), Field(default=None, description=field.description))
        for name, field in _DEFAULTABLE.items()
    },
)


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


class HostCollectors(_Model):
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


class HostPaths(_Model):
    """Where the host's /proc, /sys and root are (point them at bind mounts when running in a container)."""

    procfs: FilePath = Field(default=Path("/proc"), description="as node_exporter's --path.procfs")
    sysfs: FilePath = Field(default=Path("/sys"), description="as node_exporter's --path.sysfs")
    rootfs: FilePath = Field(default=Path("/"), description="as node_exporter's --path.rootfs")


class FilesystemOptions(_Model):
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


class DeviceFilter(_Model):
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


class NetclassOptions(_Model):
    """Which interfaces the netclass collector reports."""

    ignored_devices: Regex = Field(
        default=re.compile(NODE_NETCLASS_IGNORED_DEVICES), description="default: node_exporter's"
    )


class FieldsOption(_Model):
    """Which counters of a /proc file a collector reports."""

    fields: Regex


class HostConfig(_Model):
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


class Config(_Model):
    """The whole config file."""

    defaults: EndpointDefaults | None = Field(default=None, description="defaults for every endpoint")
    endpoints: list[Endpoint] = Field(default_factory=list)
    host: HostConfig = Field(default_factory=HostConfig)
    max_concurrent_probes: int = Field(default=64, ge=1, le=10000, description="probes running at once, at most")
    # Where each endpoint's keys were written, for problems found after loading (e.g. TLS files
    # that do not parse): (endpoint name, key) -> (line, column).
    _positions: dict[tuple[str, str], tuple[int, int]] = PrivateAttr(default_factory=dict)

    def position(self, endpoint: str, key: str = "") -> tuple[int, int]:
        """Line and column where an endpoint's key (or the endpoint) was written; (1, 1) if unknown."""
        return self._positions.get((endpoint, key)) or self._positions.get((endpoint, ""), (1, 1))

    def endpoint(self, name: str) -> Endpoint:
        """The endpoint of this name."""
        for ep in self.endpoints:
            if ep.name == name:
                return ep
        raise KeyError(name)


def redact_url(url: str) -> str:
    """A URL without user info, query string or fragment."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    try:
        port = parts.port
    except ValueError:
        port = None
    netloc = f"{host}:{port}" if port else host
    return f"{parts.scheme}://{netloc}{parts.path}"


def json_schema() -> dict[str, Any]:
    """The JSON Schema of the config file, for editors (yaml-language-server)."""
    schema = Config.model_json_schema()
    # pydantic writes defaults as Python values (30.0, {"low": 200, ...}); an editor should show what a user writes.
    examples: list[tuple[dict[str, Any], BaseModel]] = [
        (schema, Config()),
        (schema["$defs"]["Endpoint"], Endpoint.model_construct(name="", url="")),
        (schema["$defs"]["Expect"], Expect()),
        (schema["$defs"]["TLSConfig"], TLSConfig()),
        (schema["$defs"]["HostConfig"], HostConfig()),
        (schema["$defs"]["HostCollectors"], HostCollectors()),
        (schema["$defs"]["HostPaths"], HostPaths()),
        (schema["$defs"]["FilesystemOptions"], FilesystemOptions()),
        (schema["$defs"]["DiskstatsOptions"], DiskstatsOptions()),
        (schema["$defs"]["DeviceFilter"], DeviceFilter()),
        (schema["$defs"]["NetclassOptions"], NetclassOptions()),
    ]
    for model_schema, example in examples:
        written = example.model_dump(mode="json")
        for name, prop in model_schema["properties"].items():
            if "default" in prop and name in written:
                prop["default"] = written[name]
    for prop in schema["$defs"]["EndpointDefaults"]["properties"].values():
        prop.pop("default", None)  # an absent key means "no default", not null
    schema["patternProperties"] = {f"^{EXTENSION_PREFIX}": {"description": "ignored: a place for YAML anchors"}}
    out = {"$schema": "https://json-schema.org/draft/2020-12/schema", "$id": SCHEMA_ID}
    out.update(schema)
    out["title"] = "upwatch config"
    return out


def json_schema_text() -> str:
    """The JSON Schema as stable, indented JSON text."""
    return json.dumps(json_schema(), indent=2, sort_keys=False) + "\n"


# ---------------------------------------------------------------------------
# Errors


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing wrong with a config file."""

    file: str
    line: int
    column: int
    location: str
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.column}: {self.location}: {self.message}"

    def as_dict(self) -> dict[str, object]:
        """The problem as a JSON-ready mapping."""
        return {
            "file": self.file,
            "line": self.line,
            "column": self.column,
            "location": self.location,
            "message": self.message,
        }


class ConfigError(Exception):
    """A config file that cannot be used, with every problem found in it."""

    def __init__(self, problems: Sequence[Problem]) -> None:
        self.problems = tuple(sorted(problems, key=lambda p: (p.file, p.line, p.column, p.location)))
        super().__init__("\n".join(str(p) for p in self.problems))


# ---------------------------------------------------------------------------
# Loading

PathKey = tuple[str | int, ...]
_MAX_NODES = 100_000  # guards against alias bombs ("billion laughs")
_ENV_REF = re.compile(r"\$\$|\$\{([^}]*)\}|\$\{")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class _Document:
    """A YAML document turned into plain data, remembering where every value was written."""

    def __init__(self, file: str, env: Mapping[str, str]) -> None:
        self.file = file
        self.env = env
        self.value_marks: dict[PathKey, tuple[int, int]] = {}
        self.key_marks: dict[PathKey, tuple[int, int]] = {}
        self.names: dict[int, str] = {}  # endpoint index -> name, for locations like endpoints[api]
        self._pending: list[tuple[int, int, PathKey, str, str | None]] = []
        self._constructor = yaml.constructor.SafeConstructor()
        self._nodes = 0
        self._explicit: dict[int, int] = {}  # mapping node -> how many of its pairs were written in it (not merged)

    def problem(
        self,
        path: PathKey,
        message: str,
        *,
        at_key: bool = False,
        location: str | None = None,
        mark: tuple[int, int] | None = None,
    ) -> None:
        """Record a problem at a path of the document (location defaults to the path)."""
        line, col = mark or self.mark(path, at_key=at_key)
        self._pending.append((line, col, path, message, location))

    @property
    def problems(self) -> list[Problem]:
        """Every problem so far, each once; locations name endpoints known by now."""
        return list(
            dict.fromkeys(
                Problem(self.file, line, col, location or self.location(path), message)
                for line, col, path, message, location in self._pending
            )
        )

    def location(self, path: PathKey) -> str:
        """A dotted location naming endpoints by their name where they have one."""
        return format_location(path, self.names)

    def mark(self, path: PathKey, *, at_key: bool = False) -> tuple[int, int]:
        """Line and column (1-based) of the value, or the key, at a path, or of its nearest parent."""
        probe = path
        while True:
            if at_key and probe in self.key_marks:
                return self.key_marks[probe]
            if probe in self.value_marks:
                return self.value_marks[probe]
            if not probe:
                return (1, 1)
            probe = probe[:-1]

    def convert(self, node: yaml.Node, path: PathKey, active: frozenset[int] = frozenset()) -> object:
        """Plain Python data from a YAML node, recording marks, checking keys and filling ${VAR}s."""
        self._nodes += 1
        if self._nodes > _MAX_NODES:
            raise _TooLarge
        self.value_marks[path] = (node.start_mark.line + 1, node.start_mark.column + 1)
        if id(node) in active:  # the node's own mark is its anchor's; the alias's key, if any, is nearer
            raise _RecursiveAlias(path, self.key_marks.get(path, self.value_marks[path]))
        if isinstance(node, yaml.CollectionNode):
            if len(path) >= _MAX_DEPTH:
                raise _TooDeep
            if node.tag not in (_MAP_TAG, _SEQ_TAG):  # e.g. !!set or !!python/object: not plain data
                raise yaml.constructor.ConstructorError(
                    None, None, f"the tag {node.tag!r} is not supported here", node.start_mark
                )
        if isinstance(node, yaml.MappingNode):
            if id(node) not in self._explicit:  # an aliased node is met again already flattened
                self._explicit[id(node)] = sum(1 for k, _ in node.value if k.tag != _MERGE_TAG)
                self._constructor.flatten_mapping(node)  # `<<` pairs first, then the node's own
            split = len(node.value) - self._explicit[id(node)]
            out: dict[str, object] = {}
            first_seen: dict[str, int] = {}
            inner = active | {id(node)}
            for key_node, value_node in node.value[split:]:
                key = self._constructor.construct_object(key_node) if isinstance(key_node, yaml.ScalarNode) else None
                key_mark = (key_node.start_mark.line + 1, key_node.start_mark.column + 1)
                if not isinstance(key, str):
                    if isinstance(key_node, yaml.ScalarNode):
                        message = f"keys must be strings, got {_type_name(key)}: quote the key"
                    else:
                        message = f"keys must be strings, got a {key_node.id}"
                    self.problem(path, message, mark=key_mark)
                    continue
                child = (*path, key)
                if key in first_seen:
                    self.problem(
                        child, f"duplicate key {key!r} (first written on line {first_seen[key]})", mark=key_mark
                    )
                    continue
                first_seen[key] = key_mark[0]
                self.key_marks[child] = key_mark
                out[key] = self.convert(value_node, child, inner)
            # Merged keys never override the node's own; of several merged mappings the first wins.
            for key_node, value_node in reversed(node.value[:split]):
                key = self._constructor.construct_object(key_node) if isinstance(key_node, yaml.ScalarNode) else None
                if not isinstance(key, str) or key in out:
                    continue  # reported where the merged mapping was written
                child = (*path, key)
                self.key_marks[child] = (key_node.start_mark.line + 1, key_node.start_mark.column + 1)
                out[key] = self.convert(value_node, child, inner)
            return out
        if isinstance(node, yaml.SequenceNode):
            inner = active | {id(node)}
            return [self.convert(item, (*path, i), inner) for i, item in enumerate(node.value)]
        value = self._constructor.construct_object(node)
        if isinstance(value, str) and node.tag == "tag:yaml.org,2002:str":
            return self._interpolate(value, path)
        return value

    def _interpolate(self, text: str, path: PathKey) -> str:
        def replace(m: re.Match[str]) -> str:
            if m.group(0) == "$$":
                return "$"
            if m.group(0) == "${":  # no closing brace: a typo, not text to send as it is
                self.problem(path, "invalid variable reference: ${ without a closing }")
                return m.group(0)
            ref = m.group(1)
            name, sep, default = ref.partition(":-")
            if not _ENV_NAME.match(name):
                self.problem(
                    path, f"invalid variable reference ${{{_printable(ref)}}}: use ${{NAME}} or ${{NAME:-default}}"
                )
                return m.group(0)
            value = self.env.get(name)
            if value is None or (sep and value == ""):
                if sep:
                    return default
                self.problem(
                    path, f"environment variable {name} is not set (write ${{{name}:-default}} for a fallback)"
                )
                return ""
            return value

        return _ENV_REF.sub(replace, text) if "$" in text else text


class _TooLarge(Exception):
    pass


class _TooDeep(Exception):
    pass


class _RecursiveAlias(Exception):
    def __init__(self, path: PathKey, mark: tuple[int, int]) -> None:
        super().__init__(path, mark)
        self.path = path
        self.mark = mark


_MERGE_TAG = "tag:yaml.org,2002:merge"
_MAP_TAG = "tag:yaml.org,2002:map"
_SEQ_TAG = "tag:yaml.org,2002:seq"
_MAX_DEPTH = 100


def format_location(path: PathKey, names: Mapping[int, str] | None = None) -> str:
    """A dotted location like `endpoints[api].timeout` from a path of keys and indexes."""
    out = ""
    for i, part in enumerate(path):
        if isinstance(part, int):
            label = None
            if names is not None and i == 1 and path[0] == "endpoints":
                label = names.get(part)
            out += f"[{_printable(label) if label is not None else part}]"
        else:
            out += ("." if out else "") + _printable(part)
    return out or "(root)"


def _printable(text: str) -> str:
    """Text with line breaks and other control characters escaped, so that a problem stays on one line."""
    return text if text.isprintable() else repr(text)[1:-1]


def load_config(path: str | os.PathLike[str], env: Mapping[str, str] | None = None) -> Config:
    """Read, check and return the config in a file; raises ConfigError listing every problem."""
    file = os.fspath(path)
    try:
        raw = Path(file).read_bytes()
    except OSError as exc:
        raise ConfigError([Problem(file, 1, 1, "(file)", f"cannot read file: {exc.strerror or exc}")]) from None
    return parse_config(raw, file, env=env, base_dir=Path(file).resolve().parent)


def parse_config(
    raw: bytes | str,
    file: str = "<config>",
    *,
    env: Mapping[str, str] | None = None,
    base_dir: Path | None = None,
) -> Config:
    """Check and return the config in some YAML text; raises ConfigError listing every problem."""
    env = os.environ if env is None else env
    text = _decode(raw, file)
    doc = _Document(file, env)
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        raise ConfigError([_yaml_problem(exc, file)]) from None
    except yaml.YAMLError as exc:  # one line, as every problem is
        raise ConfigError([Problem(file, 1, 1, "(root)", f"invalid YAML: {' '.join(str(exc).split())}")]) from None
    except RecursionError:  # PyYAML's composer recurses once per level
        raise ConfigError([_too_deep(text, file)]) from None
    if node is None:
        raise ConfigError(
            [Problem(file, 1, 1, "(root)", "the file is empty: expected a mapping with an endpoints list")]
        )
    try:
        data = doc.convert(node, ())
    except _TooLarge:
        raise ConfigError(
            [Problem(file, 1, 1, "(root)", f"the document expands to more than {_MAX_NODES} values (alias bomb?)")]
        ) from None
    except _RecursiveAlias as exc:
        line, col = exc.mark
        message = "an alias refers to a node that contains it"
        raise ConfigError([Problem(file, line, col, format_location(exc.path), message)]) from None
    except (_TooDeep, RecursionError):
        raise ConfigError([_too_deep(text, file)]) from None
    except yaml.YAMLError as exc:  # e.g. a bad merge key or unknown tag
        message = getattr(exc, "problem", None) or str(exc)
        mark = getattr(exc, "problem_mark", None)
        line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        raise ConfigError([Problem(file, line, col, "(root)", f"invalid YAML: {message}")]) from None
    if not isinstance(data, dict):
        doc.problem((), f"the top level must be a mapping with an endpoints list, got {_type_name(data)}")
        raise ConfigError(doc.problems)
    config = _validate(data, doc, base_dir or Path.cwd())
    if doc.problems or config is None:
        raise ConfigError(doc.problems)
    return config


def _yaml_problem(exc: yaml.MarkedYAMLError, file: str) -> Problem:
    """A YAML syntax error, at the line a reader should look at."""
    mark = exc.problem_mark or exc.context_mark
    if exc.context_mark and exc.problem and ("end of stream" in exc.problem or "<stream end>" in exc.problem):
        mark = exc.context_mark  # e.g. an unclosed quote: where it opened, not the end of the file
    line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
    if exc.problem and "'\\t'" in exc.problem:
        return Problem(file, line, col, "(root)", "invalid YAML: a tab character here; indent with spaces")
    message = " ".join(p for p in (exc.context, exc.problem) if p) or "invalid YAML"
    return Problem(file, line, col, "(root)", f"invalid YAML: {message}")


def _too_deep(text: str, file: str) -> Problem:
    """A problem at the first collection nested more than _MAX_DEPTH levels deep."""
    depth = 0
    for event in yaml.parse(text, Loader=yaml.SafeLoader):  # events, unlike nodes, come without recursion
        if isinstance(event, yaml.CollectionStartEvent):
            depth += 1
            if depth > _MAX_DEPTH:
                mark = event.start_mark
                line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
                return Problem(file, line, col, "(root)", f"nested more than {_MAX_DEPTH} levels deep")
        elif isinstance(event, yaml.CollectionEndEvent):
            depth -= 1
    return Problem(file, 1, 1, "(root)", f"nested more than {_MAX_DEPTH} levels deep")


def _decode(raw: bytes | str, file: str) -> str:
    if isinstance(raw, str):
        text = raw
    else:
        try:
            text = raw.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            head = raw[: exc.start]
            line = head.count(b"\n") + 1
            col = exc.start - (head.rfind(b"\n") + 1) + 1
            raise ConfigError(
                [
                    Problem(
                        file, line, col, "(root)", f"not UTF-8 text: byte 0x{raw[exc.start]:02x} at offset {exc.start}"
                    )
                ]
            ) from None
    if m := _NOT_YAML_TEXT.search(text):
        i, ch = m.start(), m.group()
        before = text[:i]
        line = before.count("\n") + 1
        col = i - (before.rfind("\n") + 1) + 1
        kind = "control character" if ch <= "\x9f" else "character"
        raise ConfigError([Problem(file, line, col, "(root)", f"not a text file: {kind} U+{ord(ch):04X}")])
    return text


# What YAML does not allow in a stream (PyYAML would stop at it with a message of several lines).
_NOT_YAML_TEXT = re.compile("[^\t\n\r\x20-\x7e\x85\xa0-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def _validate(data: dict[str, object], doc: _Document, base_dir: Path) -> Config | None:
    """Validate top level, defaults and each endpoint, collecting every problem."""
    raw_endpoints = data.get("endpoints")
    if raw_endpoints is None:
        raw_endpoints = []
    if isinstance(raw_endpoints, list):
        for i, item in enumerate(raw_endpoints):
            name = item.get("name") if isinstance(item, dict) else None
            if isinstance(name, str) and name and name not in doc.names.values():
                doc.names[i] = name

    top_model = None
    try:  # the top level; endpoints are checked one by one below
        top_model = Config.model_validate(
            {k: v for k, v in data.items() if k != "endpoints" and not k.startswith(EXTENSION_PREFIX)}
        )
    except ValidationError as exc:
        _report(exc, doc, ())

    defaults = data.get("defaults")
    if not isinstance(defaults, dict):
        defaults = {}
    elif "interval" in defaults and "timeout" in defaults:
        _check_timing(defaults, doc, ("defaults",), {})

    if not isinstance(raw_endpoints, list):
        doc.problem(("endpoints",), f"must be a list of endpoints, got {_type_name(raw_endpoints)}")
        return None
    endpoints: list[Endpoint] = []
    positions: dict[tuple[str, str], tuple[int, int]] = {}
    first_use: dict[str, int] = {}
    for i, item in enumerate(raw_endpoints):
        path: PathKey = ("endpoints", i)
        if not isinstance(item, dict):
            doc.problem(path, f"each endpoint must be a mapping with name and url, got {_type_name(item)}")
            continue
        name = item.get("name")
        if isinstance(name, str) and name in first_use:
            line = doc.mark(("endpoints", first_use[name], "name"))[0]
            doc.problem((*path, "name"), f"duplicate endpoint name {name!r} (first used on line {line})")
        elif isinstance(name, str):
            first_use[name] = i
        merged, sources = _merge(defaults, item, path)
        timing_ok = _check_timing(merged, doc, path, sources)
        try:
            endpoint = Endpoint.model_validate(merged)
        except ValidationError as exc:
            _report(exc, doc, path, sources)
            continue
        if timing_ok:
            endpoints.append(_resolve_files(endpoint, doc, path, sources, base_dir))
            positions[(endpoint.name, "")] = doc.mark(path)
            for key in merged:
                positions[(endpoint.name, key)] = doc.mark(_source((key,), sources, path))

    if doc.problems or top_model is None:
        return None
    config = top_model.model_copy(update={"endpoints": endpoints})
    config._positions = positions
    return config


def _merge(
    defaults: dict[str, object], item: dict[str, object], path: PathKey
) -> tuple[dict[str, object], dict[PathKey, PathKey]]:
    """An endpoint with defaults filled in, and where in the file each merged key came from."""
    merged: dict[str, object] = {}
    sources: dict[PathKey, PathKey] = {}
    for key, value in defaults.items():
        if key in _DEFAULTABLE:  # other keys are reported when the defaults are checked
            merged[key] = value
            sources[(key,)] = ("defaults", key)
    for key, value in item.items():
        base = merged.get(key)
        sources[(key,)] = (*path, key)
        if isinstance(base, dict) and isinstance(value, dict) and key in _MERGED_MAPPINGS:
            for sub in base:
                sources[(key, sub)] = ("defaults", key, sub)
            for sub in value:
                sources[(key, sub)] = (*path, key, sub)
            merged[key] = {**base, **value}
        else:
            merged[key] = value
    return merged, sources


_MERGED_MAPPINGS = ("headers", "labels", "expect", "tls")


def _source(loc: PathKey, sources: Mapping[PathKey, PathKey], path: PathKey) -> PathKey:
    """Where in the file the value at `loc` (inside an endpoint) was written."""
    for n in range(len(loc), 0, -1):
        if loc[:n] in sources:
            return (*sources[loc[:n]], *loc[n:])
    return (*path, *loc)


def _check_timing(
    merged: Mapping[str, object], doc: _Document, path: PathKey, sources: Mapping[PathKey, PathKey]
) -> bool:
    """Timeout must be shorter than interval (bad durations are reported elsewhere).

    The problem is reported at the timeout if it was written at `path` (an endpoint, or the
    defaults), else at the interval written there; if neither was, at the defaults (problems are
    de-duplicated, so once for all endpoints).
    """
    try:
        interval = parse_duration(merged.get("interval", _BUILTIN_INTERVAL))
        timeout = parse_duration(merged.get("timeout", _BUILTIN_TIMEOUT))
    except ValueError:
        return False
    if timeout < interval:
        return True

    def origin(key: str) -> tuple[bool, str]:
        """Whether the key was written at `path`, and where its value came from otherwise."""
        if key not in merged:
            return False, " by default"
        src = _source((key,), sources, path)
        return src[: len(path)] == path, " from defaults"

    (t_here, t_from), (i_here, i_from) = origin("timeout"), origin("interval")
    if t_here:
        key, message = (
            "timeout",
            f"must be shorter than interval ({format_duration(interval)}{'' if i_here else i_from})",
        )
        message += f", got {format_duration(timeout)}"
    elif i_here:
        key, message = "interval", f"must be longer than timeout ({format_duration(timeout)}{t_from})"
        message += f", got {format_duration(interval)}"
    else:
        if "interval" not in merged or "timeout" not in merged:  # one from the defaults, one built in
            _check_timing({k: merged[k] for k in ("interval", "timeout") if k in merged}, doc, ("defaults",), {})
        return False
    doc.problem((*path, key), message)
    return False


_BUILTIN_INTERVAL = format_duration(Endpoint.model_fields["interval"].default)
_BUILTIN_TIMEOUT = format_duration(Endpoint.model_fields["timeout"].default)


def _resolve_files(
    endpoint: Endpoint, doc: _Document, path: PathKey, sources: Mapping[PathKey, PathKey], base_dir: Path
) -> Endpoint:
    """TLS file paths made absolute (relative to the config file) and checked to exist."""
    tls = endpoint.tls
    update: dict[str, Path] = {}

    def problem(key: str, message: str) -> None:
        # A path from the defaults is reported there, once (problems are de-duplicated), not for every endpoint.
        where = _source(("tls", key), sources, path)
        doc.problem(where, message, location=doc.location(where if where[0] == "defaults" else (*path, "tls", key)))

    for key in ("ca_file", "cert_file", "key_file"):
        value: Path | None = getattr(tls, key)
        if value is None:
            continue
        full = value if value.is_absolute() else base_dir / value
        try:
            found = full.is_file()
        except OSError as exc:  # e.g. a name too long
            problem(key, f"cannot use file {_clip(str(full))}: {exc.strerror}")
            found = True
        if not found:
            problem(key, f"file not found: {_printable(str(full))}")
        update[key] = full
    if tls.key_file is not None and tls.cert_file is None:
        problem("key_file", "key_file needs cert_file")
    if not update:
        return endpoint
    return endpoint.model_copy(update={"tls": tls.model_copy(update=update)})


_MESSAGES = {
    "int_type": "must be an integer",
    "int_parsing": "must be an integer",
    "int_from_float": "must be a whole number",
    "float_type": "must be a number",
    "float_parsing": "must be a number",
    "bool_type": "must be true or false",
    "bool_parsing": "must be true or false",
    "string_type": "must be a string",
    "dict_type": "must be a mapping",
    "model_type": "must be a mapping",
    "model_attributes_type": "must be a mapping",
    "list_type": "must be a list",
    "tuple_type": "must be a list",
    "path_type": "must be a file path (a string)",
}


def _report(
    exc: ValidationError, doc: _Document, path: PathKey, sources: Mapping[PathKey, PathKey] | None = None
) -> None:
    """Turn pydantic's errors into problems with file positions and plain messages."""
    for err in exc.errors(include_url=False):
        loc: PathKey = tuple(err["loc"])
        kind = err["type"]
        bad_key = bool(loc) and loc[-1] == "[key]"  # e.g. a bad label name
        if bad_key:
            loc = loc[:-1]
        where = _source(loc, sources, path) if sources is not None else (*path, *loc)
        if sources is not None and where and where[0] == "defaults":
            continue  # reported once, when the defaults were checked
        location = doc.location((*path, *loc))
        inp = err.get("input")
        if kind == "extra_forbidden":
            key = str(loc[-1])
            message = f"unknown key {key!r}"
            known = _known_keys((*path, *loc[:-1]))
            close = difflib.get_close_matches(key, known, n=1)
            if close:
                message += f" (did you mean {close[0]!r}?)"
            elif known:
                message += f"; known keys: {', '.join(known)}"
            doc.problem(where, message, at_key=True, location=location)
            continue
        if kind == "missing":
            doc.problem(where[:-1], f"missing required key {loc[-1]!r}", location=doc.location((*path, *loc[:-1])))
            continue
        if kind == "value_error":
            message = str(err["ctx"]["error"]) if "ctx" in err else err["msg"]
        elif kind in _MESSAGES:
            message = f"{_MESSAGES[kind]}, got {_type_name(inp)}"
            if isinstance(inp, (str, int, float)) and not isinstance(inp, bool):
                message += f" {inp!r}"
        elif kind in _BOUNDS:
            bound = next(iter(err.get("ctx", {}).values()), "?")
            message = f"must be {_BOUNDS[kind]} {bound}, got {inp!r}"
        else:
            message = err["msg"][:1].lower() + err["msg"][1:]
        doc.problem(where, message, at_key=bad_key, location=location)


_BOUNDS = {"greater_than_equal": ">=", "greater_than": ">", "less_than_equal": "<=", "less_than": "<"}


_SUBMODELS: dict[str, type[BaseModel]] = {
    "expect": Expect,
    "tls": TLSConfig,
    "slo": SLO,
    "host": HostConfig,
    "collectors": HostCollectors,
    "paths": HostPaths,
    "filesystem": FilesystemOptions,
    "diskstats": DiskstatsOptions,
    "netdev": DeviceFilter,
    "netclass": NetclassOptions,
    "netstat": FieldsOption,
    "vmstat": FieldsOption,
}


def _known_keys(path: PathKey) -> list[str]:
    """Valid keys of the mapping at a path, for "did you mean" hints."""
    named = [p for p in path if isinstance(p, str)]
    model: type[BaseModel] = Config
    if named[:1] == ["endpoints"]:
        model = Endpoint
        named = named[1:]
    elif named[:1] == ["defaults"]:
        model = EndpointDefaults
        named = named[1:]
    for part in named:
        sub = _SUBMODELS.get(part)
        if sub is None:
            return []
        model = sub
    return list(model.model_fields)
