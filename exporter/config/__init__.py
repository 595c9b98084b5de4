"""The config file: value types, models, strict loading, and problems that name file, line and key.

| module        | holds                                                                        |
| ------------- | ---------------------------------------------------------------------------- |
| `values`      | durations, sizes, status ranges, names and URLs; the strict model base        |
| `models`      | `Endpoint`, `Expect`, `TLSConfig`, `SLO`, `EndpointDefaults`, `Config`         |
| `host`        | the `host` section (collector switches, paths, filters)                       |
| `status_page` | the `status_page` section (title, groups, announcements, Prometheus URL)      |
| `document`    | YAML with the position of every value; numbers Python cannot convert refused  |
| `interpolation` | `${VAR}` from the environment, nested defaults; their values kept out of problems |
| `problems`    | `Problem`, `ConfigError`, locations like `endpoints[api].timeout`            |
| `loader`      | `load_config`: defaults merged, cross-checks, files resolved, TLS loaded      |
| `schema`      | the JSON Schema for editors                                                  |
"""

from __future__ import annotations

from exporter.redact import redact_url

from .host import (
    HOST_COLLECTORS,
    NODE_DISK_DEVICES_EXCLUDE,
    NODE_FS_TYPES_EXCLUDE,
    NODE_MOUNT_POINTS_EXCLUDE,
    NODE_NETCLASS_IGNORED_DEVICES,
    NODE_NETSTAT_FIELDS,
    NODE_VMSTAT_FIELDS,
    DeviceFilter,
    DiskstatsOptions,
    FieldsOption,
    FilesystemOptions,
    HostCollectors,
    HostConfig,
    HostPaths,
    NetclassOptions,
)
from .loader import CONFIG_ENV_VAR, DEFAULT_CONFIG_FILE, EXTENSION_PREFIX, load_config, parse_config
from .models import SLO, Config, Endpoint, EndpointDefaults, Expect, TLSConfig
from .problems import ConfigError, PathKey, Problem, format_location
from .schema import SCHEMA_ID, json_schema, json_schema_text
from .status_page import DEFAULT_GROUP, Announcement, AnnouncementLevel, PageGroup, StatusGroup, StatusPage
from .values import (
    HTTP_METHODS,
    RESERVED_LABELS,
    StatusRange,
    format_duration,
    parse_duration,
    parse_size,
    parse_status_list,
)

__all__ = [
    "CONFIG_ENV_VAR",
    "DEFAULT_CONFIG_FILE",
    "DEFAULT_GROUP",
    "EXTENSION_PREFIX",
    "HOST_COLLECTORS",
    "HTTP_METHODS",
    "NODE_DISK_DEVICES_EXCLUDE",
    "NODE_FS_TYPES_EXCLUDE",
    "NODE_MOUNT_POINTS_EXCLUDE",
    "NODE_NETCLASS_IGNORED_DEVICES",
    "NODE_NETSTAT_FIELDS",
    "NODE_VMSTAT_FIELDS",
    "RESERVED_LABELS",
    "SCHEMA_ID",
    "SLO",
    "Announcement",
    "AnnouncementLevel",
    "Config",
    "ConfigError",
    "DeviceFilter",
    "DiskstatsOptions",
    "Endpoint",
    "EndpointDefaults",
    "Expect",
    "FieldsOption",
    "FilesystemOptions",
    "HostCollectors",
    "HostConfig",
    "HostPaths",
    "NetclassOptions",
    "PageGroup",
    "PathKey",
    "Problem",
    "StatusGroup",
    "StatusPage",
    "StatusRange",
    "TLSConfig",
    "format_duration",
    "format_location",
    "json_schema",
    "json_schema_text",
    "load_config",
    "parse_config",
    "parse_duration",
    "parse_size",
    "parse_status_list",
    "redact_url",
]
