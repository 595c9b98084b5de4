"""The config file: a table of bad files with their exact problems, good files, ${VAR}s, the schema, robustness."""

from __future__ import annotations

import dataclasses
import os
import random
import re
import ssl
import textwrap
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from exporter.config import (
    DEFAULT_GROUP,
    AnnouncementLevel,
    Config,
    ConfigError,
    Problem,
    StatusGroup,
    StatusPage,
    StatusRange,
    format_duration,
    format_location,
    json_schema,
    load_config,
    parse_config,
    parse_duration,
    parse_size,
    parse_status_list,
    redact_url,
)
from exporter.config.isolated import load_config_isolated
from exporter.probes.tls import TLSContexts

REPO = Path(__file__).resolve().parent.parent
CONFIGS = Path(__file__).resolve().parent / "configs"
GOOD_FULL = CONFIGS / "good_full.yml"
ENV = {"SET": "value", "EMPTY": ""}
GOOD_FULL_ENV = {"ORDERS_TOKEN": "s3cret"}

Expected = tuple[int, int, str, str]  # line, column, location, message


def problems_of(source: str | bytes, *, env: dict[str, str] = ENV) -> list[Expected]:
    """The problems parse_config finds in a source, as (line, column, location, message)."""
    with pytest.raises(ConfigError) as info:
        parse_config(source, "bad.yml", env=env, base_dir=CONFIGS)
    assert all(p.file == "bad.yml" for p in info.value.problems)
    return [(p.line, p.column, p.location, p.message) for p in info.value.problems]


def y(text: str) -> str:
    """YAML written indented in this file, dedented."""
    return textwrap.dedent(text).lstrip("\n")


A_DEVICE = "it is not a regular file (a character device)"


def ep(*lines: str) -> str:
    """A file with one endpoint `a` (lines 2 and 3) and these lines (from line 4) added to it."""
    return "endpoints:\n  - name: a\n    url: http://x\n" + "".join(f"    {line}\n" for line in lines)


def alias_bomb() -> str:
    """ "Billion laughs": ten levels of nine aliases each, 10^9 values once expanded."""
    lines = ['a: &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for prev, cur in zip("abcdefghi", "bcdefghij", strict=True):
        lines.append(f"{cur}: &{cur} [{', '.join([f'*{prev}'] * 9)}]")
    return "\n".join(lines) + "\n"


ENDPOINT_KEYS = (
    "name, url, method, headers, body, interval, timeout, failure_threshold, success_threshold, degraded_after, "
    "expect, tls, follow_redirects, max_redirects, body_size_limit, labels, slo, quorum, status_page"
)
DEFAULTS_KEYS = ENDPOINT_KEYS.removeprefix("name, url, ")
STATUS_HINT = "use 200, '2xx' or '200-299'"
DURATION_HINT = "use a number and a unit (ms, s, m, h, d, w), e.g. 30s"
METHODS = "GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS"
SLO_RANGE = "availability objective must be a percentage between 0 and 100 (exclusive)"
EMPTY = "the file is empty: expected a mapping with an endpoints list"
PAGE = "endpoints: []\nstatus_page:\n"  # a status_page section, its keys from line 3
NAIVE = "has no timezone: add Z (UTC) or an offset such as +02:00"

BAD_CONFIGS = [
    # -- unknown keys, at every level, with a hint ---------------------------------------------------
    pytest.param(
        "endpoint:\n  - name: a\n",
        [(1, 1, "endpoint", "unknown key 'endpoint' (did you mean 'endpoints'?)")],
        id="unknown-key-top",
    ),
    pytest.param(
        "endpoints: []\nxyz: 1\n",
        [
            (
                2,
                1,
                "xyz",
                "unknown key 'xyz'; known keys: "
                "defaults, endpoints, host, max_concurrent_probes, body_memory_limit, workers, vantage, shard, "
                "status_page, data_dir",
            )
        ],
        id="unknown-key-top-no-close-match",
    ),
    pytest.param(
        "defaults:\n  intervall: 30s\nendpoints: []\n",
        [(2, 3, "defaults.intervall", "unknown key 'intervall' (did you mean 'interval'?)")],
        id="unknown-key-defaults",
    ),
    pytest.param(
        "defaults:\n  name: x\nendpoints: []\n",
        [(2, 3, "defaults.name", f"unknown key 'name'; known keys: {DEFAULTS_KEYS}")],
        id="unknown-key-defaults-name-cannot-be-defaulted",
    ),
    pytest.param(
        ep("urll: http://y"),
        [(4, 5, "endpoints[a].urll", "unknown key 'urll' (did you mean 'url'?)")],
        id="unknown-key-endpoint",
    ),
    pytest.param(
        ep("expect:", "  statuss: 200"),
        [(5, 7, "endpoints[a].expect.statuss", "unknown key 'statuss' (did you mean 'status'?)")],
        id="unknown-key-expect",
    ),
    pytest.param(
        ep("tls: {verfy: false}"),
        [(4, 11, "endpoints[a].tls.verfy", "unknown key 'verfy' (did you mean 'verify'?)")],
        id="unknown-key-tls",
    ),
    pytest.param(
        ep("slo: {availabilty: 99.9}"),
        [
            (4, 10, "endpoints[a].slo", "missing required key 'availability'"),
            (4, 11, "endpoints[a].slo.availabilty", "unknown key 'availabilty' (did you mean 'availability'?)"),
        ],
        id="unknown-key-slo",
    ),
    pytest.param(
        "endpoints: []\nhost:\n  enabeld: true\n",
        [(3, 3, "host.enabeld", "unknown key 'enabeld' (did you mean 'enabled'?)")],
        id="unknown-key-host",
    ),
    # -- required keys, duplicates ------------------------------------------------------------------
    pytest.param(
        "endpoints:\n  - url: http://x\n",
        [(2, 5, "endpoints[0]", "missing required key 'name'")],
        id="missing-name",
    ),
    pytest.param(
        "endpoints:\n  - name: a\n",
        [(2, 5, "endpoints[a]", "missing required key 'url'")],
        id="missing-url",
    ),
    pytest.param(
        "endpoints:\n  - method: GET\n",
        [(2, 5, "endpoints[0]", "missing required key 'name'"), (2, 5, "endpoints[0]", "missing required key 'url'")],
        id="missing-name-and-url",
    ),
    pytest.param(
        y("""
            endpoints:
              - name: api
                url: http://a
              - name: api
                url: http://b
            """),
        [(4, 11, "endpoints[1].name", "duplicate endpoint name 'api' (first used on line 2)")],
        id="duplicate-endpoint-name",
    ),
    pytest.param(
        ep("url: http://y"),
        [(4, 5, "endpoints[a].url", "duplicate key 'url' (first written on line 3)")],
        id="duplicate-yaml-key",
    ),
    # -- URLs ---------------------------------------------------------------------------------------
    pytest.param(
        "endpoints:\n  - name: a\n    url: ftp://x/\n",
        [(3, 10, "endpoints[a].url", "invalid URL 'ftp://x/': scheme must be http or https")],
        id="url-scheme",
    ),
    pytest.param(
        "endpoints:\n  - name: a\n    url: api.example.com/health\n",
        [(3, 10, "endpoints[a].url", "invalid URL 'api.example.com/health': scheme must be http or https")],
        id="url-without-scheme",
    ),
    pytest.param(
        "endpoints:\n  - name: a\n    url: http:///health\n",
        [(3, 10, "endpoints[a].url", "invalid URL 'http:///health': no host")],
        id="url-no-host",
    ),
    pytest.param(
        "endpoints:\n  - name: a\n    url: http://x/a b\n",
        [(3, 10, "endpoints[a].url", "invalid URL 'http://x/a b': contains whitespace")],
        id="url-whitespace",
    ),
    pytest.param(
        "endpoints:\n  - name: a\n    url: http://x:99999/\n",
        [(3, 10, "endpoints[a].url", "invalid URL 'http://x:99999/': bad port")],
        id="url-port-out-of-range",
    ),
    pytest.param(
        "endpoints:\n  - name: a\n    url: http://x:http/\n",
        [(3, 10, "endpoints[a].url", "invalid URL 'http://x:http/': bad port")],
        id="url-port-not-a-number",
    ),
    pytest.param(
        "endpoints:\n  - name: a\n    url: http://x:0/\n",
        [(3, 10, "endpoints[a].url", "invalid URL 'http://x:0/': bad port")],
        id="url-port-0",
    ),
    pytest.param(
        "endpoints:\n  - name: a\n    url: 'http://[::1/'\n",
        [(3, 10, "endpoints[a].url", "invalid URL 'http://[::1/': Invalid IPv6 URL")],
        id="url-unclosed-ipv6-bracket",
    ),
    # -- regular expressions --------------------------------------------------------------------------
    pytest.param(
        ep("expect:", '  body_matches: "(unclosed"'),
        [
            (
                5,
                21,
                "endpoints[a].expect.body_matches",
                "invalid regular expression '(unclosed': missing ), unterminated subpattern at position 0",
            )
        ],
        id="regex-body-matches",
    ),
    pytest.param(
        ep("expect:", '  body_not_matches: "[a-"'),
        [
            (
                5,
                25,
                "endpoints[a].expect.body_not_matches",
                "invalid regular expression '[a-': unterminated character set at position 0",
            )
        ],
        id="regex-body-not-matches",
    ),
    pytest.param(
        ep("expect:", '  headers: {Content-Type: "*json"}'),
        [
            (
                5,
                31,
                "endpoints[a].expect.headers.Content-Type",
                "invalid regular expression '*json': nothing to repeat at position 0",
            )
        ],
        id="regex-expect-header",
    ),
    pytest.param(
        ep("expect:", '  body_matches: "a{4294967296}"'),
        [
            (
                5,
                21,
                "endpoints[a].expect.body_matches",
                "invalid regular expression 'a{4294967296}': the repetition number is too large",
            )
        ],
        id="regex-repetition-too-large",
    ),
    pytest.param(
        ep("expect:", f"  body_matches: '{'(' * 3000}{')' * 3000}'"),
        [
            (
                5,
                21,
                "endpoints[a].expect.body_matches",
                f"invalid regular expression {'(' * 40!r}...: nested too deeply",
            )
        ],
        id="regex-nested-too-deeply",
    ),
    # -- timeout must be shorter than interval: reported once, where it was written ----------------------
    pytest.param(
        ep("interval: 10s", "timeout: 10s"),
        [(5, 14, "endpoints[a].timeout", "must be shorter than interval (10s), got 10s")],
        id="timeout-not-below-interval-in-endpoint",
    ),
    pytest.param(
        y("""
            defaults:
              interval: 5s
              timeout: 10s
            endpoints:
              - name: a
                url: http://x
              - name: b
                url: http://y
            """),
        [(3, 12, "defaults.timeout", "must be shorter than interval (5s), got 10s")],
        id="timeout-not-below-interval-in-defaults-reported-once",
    ),
    pytest.param(
        y("""
            defaults:
              timeout: 10s
            endpoints:
              - name: a
                url: http://x
                interval: 5s
              - name: b
                url: http://y
            """),
        [(6, 15, "endpoints[a].interval", "must be longer than timeout (10s from defaults), got 5s")],
        id="timeout-from-defaults-interval-from-endpoint",
    ),
    pytest.param(
        y("""
            defaults:
              interval: 5s
            endpoints:
              - name: a
                url: http://x
                timeout: 6s
              - name: b
                url: http://y
                timeout: 2s
            """),
        [(6, 14, "endpoints[a].timeout", "must be shorter than interval (5s from defaults), got 6s")],
        id="interval-from-defaults-timeout-from-endpoint",
    ),
    pytest.param(
        y("""
            defaults:
              timeout: 40s
            endpoints:
              - name: a
                url: http://x
              - name: b
                url: http://y
            """),
        [(2, 12, "defaults.timeout", "must be shorter than interval (30s by default), got 40s")],
        id="timeout-in-defaults-above-built-in-interval-reported-once",
    ),
    pytest.param(
        ep("timeout: 1m"),
        [(4, 14, "endpoints[a].timeout", "must be shorter than interval (30s by default), got 1m")],
        id="timeout-above-built-in-interval",
    ),
    pytest.param(
        ep("interval: 10s"),
        [(4, 15, "endpoints[a].interval", "must be longer than timeout (10s by default), got 10s")],
        id="interval-not-above-built-in-timeout",
    ),
    # -- a response-time limit the timeout would always beat -----------------------------------------
    pytest.param(
        ep("expect: {max_response_time: 10s}"),
        [(4, 33, "endpoints[a].expect.max_response_time", "must be shorter than timeout (10s by default), got 10s")],
        id="max-response-time-at-built-in-timeout",
    ),
    pytest.param(
        ep("timeout: 2s", "expect: {max_response_time: 3s}"),
        [(5, 33, "endpoints[a].expect.max_response_time", "must be shorter than timeout (2s), got 3s")],
        id="max-response-time-above-own-timeout",
    ),
    pytest.param(
        "defaults: {timeout: 5s}\n" + ep("expect:", "  max_response_time: 6s"),
        [(6, 26, "endpoints[a].expect.max_response_time", "must be shorter than timeout (5s from defaults), got 6s")],
        id="max-response-time-above-defaults-timeout",
    ),
    pytest.param(
        "defaults: {expect: {max_response_time: 5s}}\n" + ep("timeout: 4s"),
        [(5, 14, "endpoints[a].timeout", "must be longer than expect.max_response_time (5s from defaults), got 4s")],
        id="timeout-below-defaults-max-response-time",
    ),
    pytest.param(
        "defaults: {timeout: 3s, expect: {max_response_time: 3s}}\n" + ep() + "  - name: b\n    url: http://y\n",
        [(1, 53, "defaults.expect.max_response_time", "must be shorter than timeout (3s), got 3s")],
        id="max-response-time-and-timeout-from-defaults-once",
    ),
    # -- durations -------------------------------------------------------------------------------------
    pytest.param(
        ep("interval: 30"),
        [(4, 15, "endpoints[a].interval", "duration 30 needs a unit, e.g. '30s'")],
        id="duration-no-unit",
    ),
    pytest.param(
        ep("interval: 5y"),
        [(4, 15, "endpoints[a].interval", f"invalid duration '5y': {DURATION_HINT}")],
        id="duration-unknown-unit",
    ),
    pytest.param(
        ep("timeout: -1s"),
        [(4, 14, "endpoints[a].timeout", "duration '-1s' must be greater than zero")],
        id="duration-negative",
    ),
    pytest.param(
        ep("degraded_after: 0ms"),
        [(4, 21, "endpoints[a].degraded_after", "duration '0ms' must be greater than zero")],
        id="duration-zero",
    ),
    pytest.param(
        ep("interval: [30s]"),
        [(4, 15, "endpoints[a].interval", "must be a duration like 30s, got a list")],
        id="duration-list",
    ),
    pytest.param(
        ep("expect: {max_response_time: yes}"),
        [(4, 33, "endpoints[a].expect.max_response_time", "must be a duration like 30s, got a boolean")],
        id="duration-boolean",
    ),
    pytest.param(
        ep(f"interval: {'9' * 400}s"),
        [(4, 15, "endpoints[a].interval", f"duration {'9' * 40!r}... is too long: at most 365d")],
        id="duration-infinite",
    ),
    pytest.param(
        ep("timeout: ''"),
        [(4, 14, "endpoints[a].timeout", "invalid duration '': use e.g. 30s")],
        id="duration-empty",
    ),
    # -- expected statuses -------------------------------------------------------------------------
    pytest.param(
        ep("expect: {status: 7xx}"),
        [(4, 22, "endpoints[a].expect.status", f"invalid status '7xx': {STATUS_HINT}")],
        id="status-class-7xx",
    ),
    pytest.param(
        ep("expect: {status: [200, 700]}"),
        [(4, 22, "endpoints[a].expect.status", "status 700 is not an HTTP status code (100-599)")],
        id="status-700",
    ),
    pytest.param(
        ep("expect: {status: 99}"),
        [(4, 22, "endpoints[a].expect.status", "status 99 is not an HTTP status code (100-599)")],
        id="status-99",
    ),
    pytest.param(
        ep("expect: {status: abc}"),
        [(4, 22, "endpoints[a].expect.status", f"invalid status 'abc': {STATUS_HINT}")],
        id="status-text",
    ),
    pytest.param(
        ep("expect: {status: 200-100}"),
        [(4, 22, "endpoints[a].expect.status", "invalid status range '200-100': start is above end")],
        id="status-range-reversed",
    ),
    pytest.param(
        ep("expect: {status: [true]}"),
        [(4, 22, "endpoints[a].expect.status", f"invalid status true: {STATUS_HINT}")],
        id="status-boolean",
    ),
    pytest.param(
        ep("expect: {status: []}"),
        [(4, 22, "endpoints[a].expect.status", "must list at least one status")],
        id="status-empty-list",
    ),
    # -- ${VAR} ------------------------------------------------------------------------------------------
    pytest.param(
        ep('headers: {Authorization: "Bearer ${TOKEN}"}'),
        [
            (
                4,
                30,
                "endpoints[a].headers.Authorization",
                "environment variable TOKEN is not set (write ${TOKEN:-default} for a fallback)",
            )
        ],
        id="env-unset",
    ),
    pytest.param(
        "endpoints:\n  - name: a\n    url: http://x/${1X}\n",
        [(3, 10, "endpoints[a].url", "invalid variable reference ${1X}: use ${NAME} or ${NAME:-default}")],
        id="env-invalid-name",
    ),
    pytest.param(
        "endpoints:\n  - name: a\n    url: http://x/${}\n",
        [(3, 10, "endpoints[a].url", "invalid variable reference ${}: use ${NAME} or ${NAME:-default}")],
        id="env-empty-reference",
    ),
    pytest.param(
        "endpoints:\n  - name: a\n    url: http://x/${HOST\n",
        [(3, 10, "endpoints[a].url", "invalid variable reference: ${ without a closing }")],
        id="env-unclosed-reference",
    ),
    # -- labels --------------------------------------------------------------------------------------
    pytest.param(
        ep("labels: {job: x}"),
        [(4, 14, "endpoints[a].labels.job", "label name 'job' is reserved: upwatch or Prometheus sets it")],
        id="label-job-reserved",
    ),
    pytest.param(
        ep("labels: {endpoint: x}"),
        [(4, 14, "endpoints[a].labels.endpoint", "label name 'endpoint' is reserved: upwatch or Prometheus sets it")],
        id="label-endpoint-reserved",
    ),
    pytest.param(
        ep("labels: {__x: x}"),
        [
            (
                4,
                14,
                "endpoints[a].labels.__x",
                "label name '__x' is reserved: names starting with __ belong to Prometheus",
            )
        ],
        id="label-double-underscore",
    ),
    pytest.param(
        ep("labels: {team-name: x}"),
        [(4, 14, "endpoints[a].labels.team-name", "invalid label name 'team-name': use letters, digits and _")],
        id="label-name-invalid",
    ),
    pytest.param(
        ep("labels: {critical: true}"),
        [(4, 24, "endpoints[a].labels.critical", "must be a string, got a boolean")],
        id="label-value-boolean",
    ),
    # -- SLO ---------------------------------------------------------------------------------------------
    pytest.param(
        ep("slo: {availability: 100}"),
        [(4, 25, "endpoints[a].slo.availability", f"{SLO_RANGE}, got 100")],
        id="slo-100",
    ),
    pytest.param(
        ep("slo: {availability: 0}"),
        [(4, 25, "endpoints[a].slo.availability", f"{SLO_RANGE}, got 0")],
        id="slo-0",
    ),
    pytest.param(
        ep("slo: {availability: 99.9%}"),
        [(4, 25, "endpoints[a].slo.availability", "must be a number, got a string '99.9%'")],
        id="slo-percent-sign",
    ),
    # -- wrong types, ranges, methods, names ----------------------------------------------------------------
    pytest.param(
        ep('failure_threshold: "3"'),
        [(4, 24, "endpoints[a].failure_threshold", "must be an integer, got a string '3'")],
        id="type-string-for-integer",
    ),
    pytest.param(
        ep("headers: [Accept, text/html]"),
        [(4, 14, "endpoints[a].headers", "must be a mapping, got a list")],
        id="type-list-for-headers",
    ),
    pytest.param(
        "endpoints:\n  name: a\n  url: http://x\n",
        [(2, 3, "endpoints", "must be a list of endpoints, got a mapping")],
        id="type-mapping-for-endpoints",
    ),
    pytest.param(
        ep("body: true"),
        [(4, 11, "endpoints[a].body", "must be a string, got a boolean")],
        id="type-boolean-for-string",
    ),
    pytest.param(
        "endpoints:\n  - http://x\n",
        [(2, 5, "endpoints[0]", "each endpoint must be a mapping with name and url, got a string")],
        id="type-string-for-endpoint",
    ),
    pytest.param(
        "defaults: [interval]\nendpoints: []\n",
        [(1, 11, "defaults", "must be a mapping, got a list")],
        id="type-list-for-defaults",
    ),
    pytest.param(
        ep("tls: {ca_file: 5}"),
        [(4, 20, "endpoints[a].tls.ca_file", "must be a file path (a string), got an integer 5")],
        id="type-integer-for-path",
    ),
    pytest.param(
        "endpoints: []\nhost: {enabled: maybe}\n",
        [(2, 17, "host.enabled", "must be true or false, got a string 'maybe'")],
        id="type-string-for-boolean",
    ),
    pytest.param(
        ep("failure_threshold: 0", "success_threshold: -1"),
        [
            (4, 24, "endpoints[a].failure_threshold", "must be >= 1, got 0"),
            (5, 24, "endpoints[a].success_threshold", "must be >= 1, got -1"),
        ],
        id="thresholds-below-1",
    ),
    pytest.param(
        ep("max_redirects: 101"),
        [(4, 20, "endpoints[a].max_redirects", "must be <= 100, got 101")],
        id="max-redirects-above-100",
    ),
    pytest.param(
        "endpoints: []\nmax_concurrent_probes: 0\n",
        [(2, 24, "max_concurrent_probes", "must be >= 1, got 0")],
        id="max-concurrent-probes-0",
    ),
    pytest.param(
        "endpoints: []\nvantage: eu west\n",
        [
            (
                2,
                10,
                "vantage",
                "invalid vantage 'eu west': 1 to 63 letters, digits, '.', '_' or '-', starting with a letter or digit",
            )
        ],
        id="vantage-with-a-space",
    ),
    pytest.param(
        "endpoints: []\nshard: {index: 3, total: 3}\n",
        [(2, 8, "shard", "shard index must be below total (3), got 3")],
        id="shard-index-too-high",
    ),
    pytest.param(
        "endpoints: []\nshard: {index: 0, total: 0}\n",
        [(2, 26, "shard.total", "must be >= 1, got 0")],
        id="shard-total-0",
    ),
    pytest.param(
        ep("labels: {vantage: x}"),
        [(4, 14, "endpoints[a].labels.vantage", "label name 'vantage' is reserved: upwatch or Prometheus sets it")],
        id="vantage-label-reserved",
    ),
    pytest.param(
        "endpoints: []\nworkers: -1\n",
        [(2, 10, "workers", "must be a number of processes from 0 to 1024 or 'auto', got an integer -1")],
        id="workers-negative",
    ),
    pytest.param(
        "endpoints: []\nworkers: all\n",
        [(2, 10, "workers", "must be a number of processes from 0 to 1024 or 'auto', got a string 'all'")],
        id="workers-word",
    ),
    pytest.param(
        "endpoints: []\nworkers: yes\n",
        [(2, 10, "workers", "must be a number of processes from 0 to 1024 or 'auto', got a boolean")],
        id="workers-boolean",
    ),
    pytest.param(
        "endpoints: []\nworkers: 1.5\n",
        [(2, 10, "workers", "must be a number of processes from 0 to 1024 or 'auto', got a number 1.5")],
        id="workers-fraction",
    ),
    pytest.param(
        ep("body_size_limit: 10 megabytes"),
        [
            (
                4,
                22,
                "endpoints[a].body_size_limit",
                "invalid size '10 megabytes': use bytes or a unit (KiB, MiB, GiB), e.g. 10MiB",
            )
        ],
        id="body-size-limit",
    ),
    pytest.param(
        ep("method: FETCH"),
        [(4, 13, "endpoints[a].method", f"must be one of {METHODS}, got 'FETCH'")],
        id="method-unknown",
    ),
    pytest.param(
        ep("method: yes"),
        [(4, 13, "endpoints[a].method", f"must be one of {METHODS}, got true")],
        id="method-boolean",
    ),
    pytest.param(
        ep('headers: {"X Bad": x}'),
        [(4, 15, "endpoints[a].headers.X Bad", "invalid header name 'X Bad'")],
        id="header-name-invalid",
    ),
    pytest.param(
        "endpoints:\n  - name: ' api'\n    url: http://x\n",
        [
            (
                2,
                11,
                "endpoints[ api].name",
                "invalid endpoint name ' api': 1 to 128 printable characters, no leading or trailing space",
            )
        ],
        id="endpoint-name-leading-space",
    ),
    pytest.param(
        # A null in the defaults used to be merged into every endpoint and silently drop it.
        "defaults:\n  labels: null\nendpoints:\n  - name: a\n    url: http://x\n",
        [(2, 11, "defaults.labels", "must be a mapping, got nothing (null)")],
        id="defaults-null-for-a-mapping",
    ),
    # -- not a config at all ---------------------------------------------------------------------------
    pytest.param("", [(1, 1, "(root)", EMPTY)], id="empty-file"),
    pytest.param("# nothing\n\n   # here\n", [(1, 1, "(root)", EMPTY)], id="only-comments"),
    pytest.param(
        "- name: a\n  url: http://x\n",
        [(1, 1, "(root)", "the top level must be a mapping with an endpoints list, got a list")],
        id="top-level-list",
    ),
    pytest.param(
        "endpoints\n",
        [(1, 1, "(root)", "the top level must be a mapping with an endpoints list, got a string")],
        id="top-level-scalar",
    ),
    pytest.param(
        "endpoints: []\n---\nendpoints: []\n",
        [(2, 1, "(root)", "invalid YAML: expected a single document in the stream but found another document")],
        id="two-documents",
    ),
    # -- YAML syntax ---------------------------------------------------------------------------------------
    pytest.param(
        "endpoints:\n  - name: a\n     url: http://x\n",
        [(3, 9, "(root)", "invalid YAML: mapping values are not allowed here")],
        id="yaml-indented-too-far",
    ),
    pytest.param(
        "endpoints:\n  - name: a\n  url: http://x\n",
        [(3, 3, "(root)", "invalid YAML: while parsing a block collection expected <block end>, but found '?'")],
        id="yaml-indented-too-little",
    ),
    pytest.param(
        # Reported where the quote opened, not at the end of the file.
        'endpoints:\n  - name: "a\n    url: http://x\n  - name: b\n',
        [(2, 11, "(root)", "invalid YAML: while scanning a quoted scalar found unexpected end of stream")],
        id="yaml-unclosed-quote",
    ),
    pytest.param(
        "endpoints: [\n  {name: a, url: http://x}\n",
        [(1, 12, "(root)", "invalid YAML: while parsing a flow sequence expected ',' or ']', but got '<stream end>'")],
        id="yaml-unclosed-bracket",
    ),
    pytest.param(
        "endpoints:\n  - name: a\n\turl: http://x\n",
        [(3, 1, "(root)", "invalid YAML: a tab character here; indent with spaces")],
        id="yaml-tab-indentation",
    ),
    pytest.param(
        "endpoints: []\nhost: {1: a, null: b, [x]: c}\n",
        [
            (2, 8, "host", "keys must be strings, got an integer: quote the key"),
            (2, 14, "host", "keys must be strings, got nothing (null): quote the key"),
            (2, 23, "host", "keys must be strings, got a sequence"),
        ],
        id="yaml-non-string-keys",
    ),
    pytest.param(
        ep("body: !include body.json"),
        [(4, 11, "(root)", "invalid YAML: could not determine a constructor for the tag '!include'")],
        id="yaml-unknown-tag",
    ),
    pytest.param(
        ep("body: !!python/object/apply:os.system [true]"),
        [
            (
                4,
                11,
                "(root)",
                "invalid YAML: the tag 'tag:yaml.org,2002:python/object/apply:os.system' is not supported here",
            )
        ],
        id="yaml-python-tag-on-a-list",
    ),
    pytest.param(
        "endpoints:\n  - <<: 5\n    name: a\n",
        [(2, 9, "(root)", "invalid YAML: expected a mapping or list of mappings for merging, but found scalar")],
        id="yaml-merge-of-a-scalar",
    ),
    pytest.param(
        ep("labels: *common"),
        [(4, 13, "(root)", "invalid YAML: found undefined alias 'common'")],
        id="yaml-undefined-alias",
    ),
    pytest.param(
        "endpoints: &e\n  - *e\n",
        # (A list item has no key: reported at the anchor.)
        [(1, 12, "endpoints[0]", "an alias refers to a node that contains it")],
        id="yaml-alias-to-itself",
    ),
    pytest.param(
        "endpoints: []\nhost: &h\n  enabled: *h\n",
        [(3, 3, "host.enabled", "an alias refers to a node that contains it")],
        id="yaml-alias-to-its-mapping",
    ),
    pytest.param(
        alias_bomb(),
        [(1, 1, "(root)", "aliases expand the document by more than 100000 values (alias bomb?)")],
        id="yaml-alias-bomb",
    ),
    pytest.param(
        "endpoints: " + "[" * 150 + "]" * 150 + "\n",
        [(1, 111, "(root)", "nested more than 100 levels deep")],
        id="yaml-nested-too-deep",
    ),
    pytest.param(
        # Deep enough for PyYAML's own recursion to give up: still a problem, not a RecursionError.
        "endpoints: " + "[" * 1200 + "]" * 1200 + "\n",
        [(1, 111, "(root)", "nested more than 100 levels deep")],
        id="yaml-nested-deeper-than-python-recursion",
    ),
    # -- not text --------------------------------------------------------------------------------------------
    pytest.param(
        b"\x00\x01\x02\x7fELF\x00\x00\xff",
        [(1, 10, "(root)", "not UTF-8 text: byte 0xff at offset 9")],
        id="binary-garbage",
    ),
    pytest.param(
        b"\x7fELF\x02\x01\x01\x00\x00",
        [(1, 1, "(root)", "not a text file: control character U+007F")],
        id="binary-garbage-valid-utf8",
    ),
    pytest.param(
        "endpoints:\n  - name: caf\u00e9\n".encode("latin-1"),
        [(2, 14, "(root)", "not UTF-8 text: byte 0xe9 at offset 24")],
        id="not-utf8",
    ),
    pytest.param(
        "endpoints: []\n".encode("utf-16"),
        [(1, 1, "(root)", "not UTF-8 text: byte 0xff at offset 0")],
        id="utf16",
    ),
    pytest.param(
        "endpoints: []\nhost: {enabled: \x80}\n".encode(),
        [(2, 17, "(root)", "not a text file: control character U+0080")],
        id="c1-control-character",
    ),
    pytest.param(
        "endpoints: []\nhost: {enabled: \ud800}\n",
        [(2, 17, "(root)", "not a text file: character U+D800")],
        id="lone-surrogate-in-text",
    ),
    pytest.param(
        b"endpoints: []\nhost: {enabled: \x1b[31m}\n",
        [(2, 17, "(root)", "not a text file: control character U+001B")],
        id="control-character",
    ),
    pytest.param(
        # Every problem stays on one line, whatever the key or name holds.
        'endpoints:\n  - name: "a\\nb"\n    url: http://x\n    "lab\\rels": {}\n',
        [
            (
                2,
                11,
                "endpoints[a\\nb].name",
                "invalid endpoint name 'a\\nb': U+000A LINE FEED is not allowed in a name",
            ),
            (4, 5, "endpoints[a\\nb].lab\\rels", "unknown key 'lab\\rels' (did you mean 'labels'?)"),
        ],
        id="line-breaks-in-keys-and-names-are-escaped",
    ),
    # -- TLS files ---------------------------------------------------------------------------------------
    pytest.param(
        ep("tls: {ca_file: missing.pem}"),
        [(4, 20, "endpoints[a].tls.ca_file", f"file not found: {CONFIGS / 'missing.pem'}")],
        id="tls-ca-file-missing",
    ),
    pytest.param(
        ep(f"tls: {{ca_file: {'a' * 5000}}}"),
        [
            (
                4,
                20,
                "endpoints[a].tls.ca_file",
                f"cannot use file {str(CONFIGS / ('a' * 5000))[:40]!r}...: File name too long",
            )
        ],
        id="tls-file-name-too-long",
    ),
    pytest.param(
        ep("tls: {ca_file: tls}"),
        [(4, 20, "endpoints[a].tls.ca_file", f"cannot use file {CONFIGS / 'tls'}: it is a directory")],
        id="tls-ca-file-is-a-directory",
    ),
    pytest.param(
        ep("tls: {cert_file: /dev/zero, key_file: /dev/zero}"),
        [
            (4, 22, "endpoints[a].tls.cert_file", f"cannot use file /dev/zero: {A_DEVICE}"),
            (4, 43, "endpoints[a].tls.key_file", f"cannot use file /dev/zero: {A_DEVICE}"),
        ],
        id="tls-files-are-a-device",
    ),
    pytest.param(
        ep("tls: {key_file: tls/client.key}"),
        [(4, 21, "endpoints[a].tls.key_file", "key_file needs cert_file")],
        id="tls-key-file-without-cert-file",
    ),
    pytest.param(
        y("""
            defaults:
              tls: {ca_file: /nonexistent/ca.pem}
            endpoints:
              - name: a
                url: https://x
              - name: b
                url: https://y
            """),
        [(2, 18, "defaults.tls.ca_file", "file not found: /nonexistent/ca.pem")],
        id="tls-file-from-defaults-reported-once",
    ),
    # -- the status page ---------------------------------------------------------------------------------
    pytest.param(
        PAGE + "  show_detail: true\n",
        [(3, 3, "status_page.show_detail", "unknown key 'show_detail' (did you mean 'show_details'?)")],
        id="status-page-unknown-key",
    ),
    pytest.param(
        PAGE + "  announcements:\n    - {title: x, severity: incident}\n",
        [
            (
                4,
                18,
                "status_page.announcements[0].severity",
                "unknown key 'severity'; known keys: title, message, level, starts, ends",
            )
        ],
        id="status-page-unknown-key-in-an-announcement",
    ),
    pytest.param(
        PAGE + "  groups:\n    - {name: x, endpoint: [a]}\n",
        [
            (4, 7, "status_page.groups[0]", "missing required key 'endpoints'"),
            (4, 17, "status_page.groups[0].endpoint", "unknown key 'endpoint' (did you mean 'endpoints'?)"),
        ],
        id="status-page-unknown-key-in-a-group",
    ),
    pytest.param(
        PAGE,
        [(2, 13, "status_page", "must be a mapping, got nothing (null)")],
        id="status-page-null",
    ),
    pytest.param(
        PAGE + "  show_details: 'yes'\n",
        [(3, 17, "status_page.show_details", "must be true or false, got a string 'yes'")],
        id="status-page-show-details-not-a-boolean",
    ),
    pytest.param(
        PAGE + "  prometheus_url: prometheus:9090\n",
        [(3, 19, "status_page.prometheus_url", "invalid URL 'prometheus:9090': scheme must be http or https")],
        id="status-page-prometheus-url-without-scheme",
    ),
    pytest.param(
        PAGE + "  prometheus_url: http:///api\n",
        [(3, 19, "status_page.prometheus_url", "invalid URL 'http:///api': no host")],
        id="status-page-prometheus-url-without-host",
    ),
    pytest.param(
        PAGE + "  prometheus_url: https://user:s3cret@prom/?token=t0k\n",
        [
            (
                3,
                19,
                "status_page.prometheus_url",
                "invalid URL 'https://***@prom/?***': no query string or fragment in a base URL",
            )
        ],
        id="status-page-prometheus-url-with-query-shown-without-secrets",
    ),
    pytest.param(
        y("""
            endpoints:
              - {name: orders-api, url: http://x}
            status_page:
              groups:
                - name: APIs
                  endpoints: [orders-api, order-api, billing]
            """),
        [
            (6, 31, "status_page.groups[0].endpoints[1]", "unknown endpoint 'order-api' (did you mean 'orders-api'?)"),
            (6, 42, "status_page.groups[0].endpoints[2]", "unknown endpoint 'billing'"),
        ],
        id="status-page-group-names-an-unknown-endpoint",
    ),
    pytest.param(
        y("""
            endpoints:
              - {name: api, url: http://x}
              - {name: web, url: http://y}
            status_page:
              groups:
                - name: Backend
                  endpoints: [api]
                - name: Frontend
                  endpoints:
                    - web
                    - api
            """),
        [(11, 11, "status_page.groups[1].endpoints[1]", "endpoint 'api' is already in group 'Backend' (line 7)")],
        id="status-page-endpoint-in-two-groups",
    ),
    pytest.param(
        y("""
            defaults:
              status_page: false
            endpoints:
              - {name: api, url: http://x, status_page: true}
              - {name: web, url: http://y}
            status_page:
              groups: [{name: All, endpoints: [api, web]}]
            """),
        [
            (
                7,
                41,
                "status_page.groups[0].endpoints[1]",
                "endpoint 'web' has status_page: false, so it cannot be in a group",
            )
        ],
        id="status-page-group-names-an-endpoint-left-off-the-page-by-the-defaults",
    ),
    pytest.param(
        y("""
            endpoints:
              - {name: api, url: http://x}
              - {name: web, url: http://y}
            status_page:
              groups:
                - {name: Core, endpoints: [api]}
                - {name: Core, endpoints: [web]}
            """),
        [(7, 14, "status_page.groups[1].name", "duplicate group name 'Core' (first used on line 6)")],
        id="status-page-duplicate-group-name",
    ),
    pytest.param(
        ep() + "status_page:\n  groups: [{name: Core, endpoints: []}]\n",
        [(5, 36, "status_page.groups[0].endpoints", "a group must list at least one endpoint")],
        id="status-page-empty-group",
    ),
    pytest.param(
        # The endpoint's own problem only: the group names an endpoint that is there, if broken.
        ep("timeout: 1h") + "status_page:\n  groups: [{name: Core, endpoints: [a]}]\n",
        [(4, 14, "endpoints[a].timeout", "must be shorter than interval (30s by default), got 1h")],
        id="status-page-group-names-an-endpoint-with-problems",
    ),
    pytest.param(
        ep("labels: {team: x}") + "status_page:\n  group_by: team\n  groups: [{name: Core, endpoints: [a]}]\n",
        [(6, 3, "status_page", "set groups or group_by, not both")],
        id="status-page-groups-and-group-by",
    ),
    pytest.param(
        ep("labels: {team: x}") + "status_page:\n  group_by: teams\n",
        [(6, 13, "status_page.group_by", "no endpoint has the label 'teams' (did you mean 'team'?)")],
        id="status-page-group-by-a-label-no-endpoint-has",
    ),
    pytest.param(
        ep("labels: {team: x, tier: '1'}") + "status_page:\n  group_by: owner\n",
        [(6, 13, "status_page.group_by", "no endpoint has the label 'owner'; labels in use: team, tier")],
        id="status-page-group-by-a-label-no-endpoint-has-listing-those-in-use",
    ),
    pytest.param(
        ep() + "status_page:\n  group_by: team\n",
        [(5, 13, "status_page.group_by", "no endpoint has the label 'team'")],
        id="status-page-group-by-a-label-when-no-endpoint-has-labels",
    ),
    pytest.param(
        ep() + "status_page:\n  group_by: team-name\n",
        [
            (
                5,
                13,
                "status_page.group_by",
                "invalid label name 'team-name': use letters, digits and _, not starting with __",
            )
        ],
        id="status-page-group-by-an-invalid-label-name",
    ),
    pytest.param(
        PAGE + "  announcements:\n    - {message: down}\n",
        [(4, 7, "status_page.announcements[0]", "missing required key 'title'")],
        id="announcement-without-title",
    ),
    pytest.param(
        PAGE + "  announcements:\n    - {title: x, level: warning}\n",
        [
            (
                4,
                25,
                "status_page.announcements[0].level",
                "must be one of info, maintenance, incident, got 'warning'",
            )
        ],
        id="announcement-level-unknown",
    ),
    pytest.param(
        PAGE + "  announcements:\n    - {title: x, starts: 2025-06-01 09:00:00}\n",
        [(4, 26, "status_page.announcements[0].starts", f"timestamp 2025-06-01T09:00:00 {NAIVE}")],
        id="announcement-naive-yaml-timestamp",
    ),
    pytest.param(
        PAGE + "  announcements:\n    - {title: x, ends: '2025-06-01T09:00:00'}\n",
        [(4, 24, "status_page.announcements[0].ends", f"timestamp '2025-06-01T09:00:00' {NAIVE}")],
        id="announcement-naive-timestamp-string",
    ),
    pytest.param(
        PAGE + "  announcements:\n    - {title: x, starts: 2025-06-01}\n",
        [
            (
                4,
                26,
                "status_page.announcements[0].starts",
                "timestamp 2025-06-01 needs a time and a timezone, e.g. 2025-06-01T09:00:00Z",
            )
        ],
        id="announcement-date-without-time",
    ),
    pytest.param(
        PAGE + "  announcements:\n    - {title: x, starts: next monday}\n",
        [
            (
                4,
                26,
                "status_page.announcements[0].starts",
                "invalid timestamp 'next monday': use RFC 3339, e.g. 2025-06-01T09:00:00Z",
            )
        ],
        id="announcement-timestamp-not-a-timestamp",
    ),
    pytest.param(
        PAGE + "  announcements:\n    - {title: x, starts: 1717232400}\n",
        [
            (
                4,
                26,
                "status_page.announcements[0].starts",
                "must be a timestamp like 2025-06-01T09:00:00Z, got an integer",
            )
        ],
        id="announcement-timestamp-a-number",
    ),
    pytest.param(
        PAGE + "  announcements:\n    - title: x\n"
        "      starts: 2025-06-01T10:00:00+02:00\n      ends: 2025-06-01T07:00:00Z\n",
        [
            (
                6,
                13,
                "status_page.announcements[0].ends",
                "must be after starts (2025-06-01T10:00:00+02:00), got 2025-06-01T07:00:00+00:00",
            )
        ],
        id="announcement-ends-before-starts",
    ),
    pytest.param(
        PAGE + "  announcements:\n    - {title: x, starts: 2025-06-01T08:00:00Z, ends: '2025-06-01T10:00:00+02:00'}\n",
        [
            (
                4,
                54,
                "status_page.announcements[0].ends",
                "must be after starts (2025-06-01T08:00:00+00:00), got 2025-06-01T10:00:00+02:00",
            )
        ],
        id="announcement-ends-when-it-starts",
    ),
    pytest.param(
        PAGE + '  title: "Status\\x1b[31m"\n',
        [(3, 10, "status_page.title", "must not contain control characters: U+001B at character 7")],
        id="status-page-title-with-a-control-character",
    ),
    pytest.param(
        PAGE + '  title: "Status\\nPage"\n',
        [(3, 10, "status_page.title", "must be one line: line break U+000A at character 7")],
        id="status-page-title-with-a-line-break",
    ),
    pytest.param(
        PAGE + "  title: '  '\n",
        [(3, 10, "status_page.title", "must not be empty")],
        id="status-page-title-blank",
    ),
    pytest.param(
        PAGE + f"  title: {'x' * 201}\n",
        [(3, 10, "status_page.title", "must be at most 200 characters, got 201")],
        id="status-page-title-too-long",
    ),
    pytest.param(
        PAGE + '  announcements:\n    - {title: "a\\u0007"}\n',
        [(4, 15, "status_page.announcements[0].title", "must not contain control characters: U+0007 at character 2")],
        id="announcement-title-with-a-control-character",
    ),
    pytest.param(
        PAGE + '  announcements:\n    - {title: x, message: "a\\rb"}\n',
        [
            (
                4,
                27,
                "status_page.announcements[0].message",
                "must not contain control characters: U+000D at character 2",
            )
        ],
        id="announcement-message-with-a-control-character",
    ),
    pytest.param(
        PAGE + f"  announcements:\n    - {{title: x, message: {'y' * 2001}}}\n",
        [(4, 27, "status_page.announcements[0].message", "must be at most 2000 characters, got 2001")],
        id="announcement-message-too-long",
    ),
    pytest.param(
        ep() + 'status_page:\n  groups: [{name: "\\x00", endpoints: [a]}]\n',
        [(5, 19, "status_page.groups[0].name", "must not contain control characters: U+0000 at character 1")],
        id="status-page-group-name-with-a-control-character",
    ),
    pytest.param(
        ep("status_page: 'no'"),
        [(4, 18, "endpoints[a].status_page", "must be true or false, got a string 'no'")],
        id="endpoint-status-page-not-a-boolean",
    ),
    pytest.param(
        "defaults: {status_page: 0}\nendpoints: []\n",
        [(1, 25, "defaults.status_page", "must be true or false, got an integer 0")],
        id="defaults-status-page-not-a-boolean",
    ),
    # -- everything at once, sorted by line --------------------------------------------------------------
    pytest.param(
        y("""
            defaults:
              intervall: 30s
            endpoints:
              - name: api
                url: ftp://api.example.com
                timeout: 1m
                expect:
                  status: [200, 7xx]
                  body_matches: "(("
                labels: {job: api}
              - url: http://example.com
                method: FETCH
              - name: api
                url: http://b
                slo: {availability: 150}
            host:
              enabled: maybe
            """),
        [
            (2, 3, "defaults.intervall", "unknown key 'intervall' (did you mean 'interval'?)"),
            (5, 10, "endpoints[api].url", "invalid URL 'ftp://api.example.com': scheme must be http or https"),
            (6, 14, "endpoints[api].timeout", "must be shorter than interval (30s by default), got 1m"),
            (8, 15, "endpoints[api].expect.status", f"invalid status '7xx': {STATUS_HINT}"),
            (
                9,
                21,
                "endpoints[api].expect.body_matches",
                "invalid regular expression '((': missing ), unterminated subpattern at position 1",
            ),
            (10, 14, "endpoints[api].labels.job", "label name 'job' is reserved: upwatch or Prometheus sets it"),
            (11, 5, "endpoints[1]", "missing required key 'name'"),
            (12, 13, "endpoints[1].method", f"must be one of {METHODS}, got 'FETCH'"),
            (13, 11, "endpoints[2].name", "duplicate endpoint name 'api' (first used on line 4)"),
            (15, 25, "endpoints[2].slo.availability", f"{SLO_RANGE}, got 150"),
            (17, 12, "host.enabled", "must be true or false, got a string 'maybe'"),
        ],
        id="many-problems-at-once",
    ),
]


def test_a_long_file_written_out_in_full_is_no_alias_bomb() -> None:
    # 20,000 endpoints with a label each are well over 100,000 values, none of them from an alias.
    endpoints = "".join(
        f"  - {{name: ep-{i}, url: 'http://127.0.0.1:1/{i}', labels: {{team: t{i % 9}}}}}\n" for i in range(20_000)
    )
    config = parse_config("endpoints:\n" + endpoints, "long.yml", env={}, base_dir=CONFIGS)
    assert len(config.endpoints) == 20_000
    assert config.endpoints[-1].labels == {"team": "t1"}


@pytest.mark.parametrize(("source", "expected"), BAD_CONFIGS)
def test_bad_config(source: str | bytes, expected: list[Expected]) -> None:
    assert problems_of(source) == expected


def test_problems_are_sorted_by_line_then_column() -> None:
    for param in BAD_CONFIGS:
        expected = param.values[1]
        assert expected == sorted(expected, key=lambda p: (p[0], p[1], p[2])), param.id


# -- problems as text ------------------------------------------------------------------------------------


def test_problem_text_is_file_line_column_location_message(tmp_path: Path) -> None:
    path = tmp_path / "upwatch.yml"
    path.write_text(
        "endpoints:\n  - name: api\n    url: http://a\n    timeout: 1m\n  - url: http://b\n    labels: {job: b}\n"
    )
    with pytest.raises(ConfigError) as info:
        load_config(path, env={})
    lines = [
        f"{path}:4:14: endpoints[api].timeout: must be shorter than interval (30s by default), got 1m",
        f"{path}:5:5: endpoints[1]: missing required key 'name'",
        f"{path}:6:14: endpoints[1].labels.job: label name 'job' is reserved: upwatch or Prometheus sets it",
    ]
    assert [str(p) for p in info.value.problems] == lines
    assert str(info.value) == "\n".join(lines)
    assert dataclasses.asdict(info.value.problems[0]) == {
        "file": str(path),
        "line": 4,
        "column": 14,
        "location": "endpoints[api].timeout",
        "message": "must be shorter than interval (30s by default), got 1m",
    }


def test_problems_sort_by_file_line_column() -> None:
    problems = [
        Problem("b.yml", 1, 1, "x", "m"),
        Problem("a.yml", 9, 1, "x", "m"),
        Problem("a.yml", 2, 7, "x", "m"),
        Problem("a.yml", 2, 3, "x", "m"),
    ]
    assert [(p.file, p.line, p.column) for p in ConfigError(problems).problems] == [
        ("a.yml", 2, 3),
        ("a.yml", 2, 7),
        ("a.yml", 9, 1),
        ("b.yml", 1, 1),
    ]


@pytest.mark.parametrize(
    ("path", "names", "expected"),
    [
        ((), {}, "(root)"),
        (("host", "enabled"), {}, "host.enabled"),
        (("endpoints", 2, "timeout"), {}, "endpoints[2].timeout"),
        (("endpoints", 2, "timeout"), {2: "api"}, "endpoints[api].timeout"),
        (("endpoints", 0, "expect", "status", 1), {0: "api"}, "endpoints[api].expect.status[1]"),
        (("endpoints", 0, "labels", "x"), {1: "other"}, "endpoints[0].labels.x"),
    ],
)
def test_format_location(path: tuple[str | int, ...], names: dict[int, str], expected: str) -> None:
    assert format_location(path, names) == expected


def test_unreadable_file_is_a_problem_not_an_exception(tmp_path: Path) -> None:
    missing = tmp_path / "nope.yml"
    with pytest.raises(ConfigError) as info:
        load_config(missing, env={})
    assert [str(p) for p in info.value.problems] == [
        f"{missing}:1:1: (file): cannot read file: No such file or directory"
    ]
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path, env={})
    assert [str(p) for p in info.value.problems] == [f"{tmp_path}:1:1: (file): is a directory"]


# -- good files -----------------------------------------------------------------------------------------


def test_example_config_loads() -> None:
    config = load_config(REPO / "upwatch.yml", env={})
    assert config.endpoints
    assert len({e.name for e in config.endpoints}) == len(config.endpoints)
    for endpoint in config.endpoints:
        assert endpoint.timeout < endpoint.interval


def test_good_full_config_values(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)  # TLS paths are relative to the config file, not to the working directory
    config = load_config(GOOD_FULL, env=GOOD_FULL_ENV)
    assert isinstance(config, Config)
    assert [e.name for e in config.endpoints] == ["orders-api", "status-page"]
    assert config.max_concurrent_probes == 16
    assert config.workers == 2
    assert config.host.enabled is False

    orders = config.endpoint("orders-api")
    assert orders.url == "https://api.example.com/health"
    assert orders.method == "POST"
    # headers: merged key by key, the endpoint's added to the defaults'
    assert orders.headers == {"User-Agent": "upwatch/dev", "Accept": "*/*", "Authorization": "Bearer s3cret"}
    assert orders.body == '{"ping": true}'
    assert (orders.interval, orders.timeout, orders.degraded_after) == (15.0, 5.0, 2.0)
    assert (orders.failure_threshold, orders.success_threshold) == (3, 1)
    assert orders.expect.status == (StatusRange(200, 200), StatusRange(200, 299), StatusRange(300, 399))
    assert orders.expect.body_contains == "ok"
    assert orders.expect.body_matches is not None
    assert orders.expect.body_matches.pattern == '"status":\\s*"UP"'
    assert orders.expect.body_matches.search('{"status":  "UP"}')
    assert orders.expect.body_not_matches is not None
    assert orders.expect.body_not_matches.pattern == "maintenance"
    assert {k: v.pattern for k, v in orders.expect.headers.items()} == {"Content-Type": "application/json.*"}
    assert orders.expect.max_response_time == 3.0  # the endpoint's, over the defaults' 5s
    tls = orders.tls
    assert tls.verify is True
    assert tls.server_name == "api.internal"
    # tls: merged key by key; relative paths resolved against the config file's directory
    assert tls.ca_file == CONFIGS / "tls" / "ca.pem"
    assert tls.cert_file == CONFIGS / "tls" / "client.crt"
    assert tls.key_file == CONFIGS / "tls" / "client.key"
    assert orders.follow_redirects is True  # the endpoint's true over the defaults' false
    assert orders.max_redirects == 5
    assert orders.body_size_limit == 1024 * 1024
    assert orders.labels == {"team": "payments", "tier": "1", "severity": "critical"}
    assert orders.slo is not None
    assert orders.slo.availability == 99.9

    status = config.endpoint("status-page")
    assert status.url == "http://status.example.com/"  # ${STATUS_URL:-...} with STATUS_URL unset
    assert status.method == "GET"
    assert status.headers == {"User-Agent": "upwatch/dev", "Accept": "*/*"}
    assert status.body is None
    assert (status.interval, status.timeout, status.degraded_after) == (5400.0, 7.5, 0.5)
    assert (status.failure_threshold, status.success_threshold) == (5, 2)
    # expect: the defaults' whole, as the endpoint has none
    assert status.expect.status == (StatusRange(200, 299),)
    assert status.expect.max_response_time == 5.0
    assert status.expect.body_matches is None
    assert status.tls.ca_file == CONFIGS / "tls" / "ca.pem"
    assert status.tls.cert_file is None
    assert status.follow_redirects is False
    assert status.body_size_limit == 512 * 1024
    assert status.labels == {"team": "platform", "tier": "1", "severity": "warning"}
    assert status.slo is None
    assert orders.status_page is True
    assert status.status_page is False  # left off the page, still probed

    page = config.status_page
    assert page.title == "Example Corp status"
    assert page.description == "Live state of our public APIs.\nChecked every 15 seconds."  # no trailing line break
    assert page.prometheus_url == "http://viewer:pa55word@prometheus:9090/prom"
    assert page.safe_prometheus_url == "http://prometheus:9090/prom"
    assert page.show_details is True
    assert page.groups == (StatusGroup(name="APIs", endpoints=("orders-api",)),)
    assert page.group_by is None
    upgrade, news = page.announcements
    assert (upgrade.title, upgrade.message, upgrade.level) == (
        "Database upgrade",
        "Orders may be slow for a few minutes.",
        AnnouncementLevel.MAINTENANCE,
    )
    assert upgrade.starts == datetime(2025, 6, 1, 9, tzinfo=UTC)
    assert upgrade.ends == datetime(2025, 6, 1, 10, tzinfo=UTC)
    assert upgrade.ends is not None
    assert upgrade.ends.utcoffset() == timedelta(hours=2)  # kept as written
    assert (news.title, news.message, news.level, news.starts, news.ends) == (
        "New payment provider",
        None,
        AnnouncementLevel.INFO,
        None,
        None,
    )


@pytest.mark.parametrize(
    ("text", "expected"), [("", "auto"), ("workers: auto\n", "auto"), ("workers: 0\n", 0), ("workers: 1\n", 1)]
)
def test_workers(text: str, expected: int | str) -> None:
    assert parse_config("endpoints: []\n" + text).workers == expected


def test_defaults_fill_every_key_an_endpoint_leaves_out() -> None:
    config = parse_config(
        y("""
            defaults:
              interval: 1m
              timeout: 20s
              failure_threshold: 4
              success_threshold: 3
              degraded_after: 750ms
              method: HEAD
              body: ping
              follow_redirects: false
              max_redirects: 0
              body_size_limit: 2048
              slo: {availability: 99.5}
              expect: {status: [204], body_contains: pong}
              status_page: false
            endpoints:
              - name: a
                url: http://x
              - name: b
                url: http://y
                interval: 2m
                degraded_after: null
                slo: null
                expect: {body_contains: other}
                status_page: true
            """),
        env={},
    )
    a, b = config.endpoints
    assert (a.interval, a.timeout, a.failure_threshold, a.success_threshold, a.degraded_after) == (
        60.0,
        20.0,
        4,
        3,
        0.75,
    )
    assert (a.method, a.body, a.follow_redirects, a.max_redirects, a.body_size_limit) == (
        "HEAD",
        "ping",
        False,
        0,
        2048,
    )
    assert a.slo is not None
    assert a.slo.availability == 99.5
    assert (a.expect.status, a.expect.body_contains) == ((StatusRange(204, 204),), "pong")
    assert (b.interval, b.timeout, b.degraded_after, b.slo) == (120.0, 20.0, None, None)
    assert (b.expect.status, b.expect.body_contains) == ((StatusRange(204, 204),), "other")
    assert (a.status_page, b.status_page) == (False, True)


@pytest.mark.parametrize(
    ("source", "check"),
    [
        pytest.param("endpoints: []\n", lambda c: c.endpoints == [], id="no-endpoints"),
        pytest.param("endpoints:\n", lambda c: c.endpoints == [], id="endpoints-null"),
        pytest.param("host: {enabled: false}\n", lambda c: not c.host.enabled, id="host-only"),
        pytest.param("---\nendpoints: []\n...\n", lambda c: c.endpoints == [], id="explicit-document-markers"),
        pytest.param("\ufeffendpoints: []\r\nhost: {enabled: true}\r\n", lambda c: c.host.enabled, id="bom-and-crlf"),
        pytest.param(ep("method: post"), lambda c: c.endpoints[0].method == "POST", id="method-lowercase"),
        pytest.param(
            ep("expect: {status: [2XX, 404, ' 500 - 503 ']}"),
            lambda c: (
                c.endpoints[0].expect.status == (StatusRange(200, 299), StatusRange(404, 404), StatusRange(500, 503))
            ),
            id="status-forms",
        ),
        pytest.param(
            ep("labels: {tier: 1, weight: 0.5}", "headers: {X-Retry: 3}"),
            lambda c: (
                c.endpoints[0].labels == {"tier": "1", "weight": "0.5"} and c.endpoints[0].headers["X-Retry"] == "3"
            ),
            id="numbers-as-label-and-header-values",
        ),
        pytest.param(
            "endpoints:\n  - name: a\n    url: http://x/${UNSET_VAR:-fallback}\n",
            lambda c: c.endpoints[0].url == "http://x/fallback",
            id="env-unset-with-default",
        ),
        pytest.param(
            y("""
                endpoints:
                  - &base
                    name: a
                    url: http://x
                    interval: 5s
                    timeout: 1s
                    labels: {team: x}
                  - <<: *base
                    name: b
                    timeout: 2s
                """),
            lambda c: (
                [(e.name, e.url, e.interval, e.timeout, e.labels) for e in c.endpoints]
                == [("a", "http://x", 5.0, 1.0, {"team": "x"}), ("b", "http://x", 5.0, 2.0, {"team": "x"})]
            ),
            id="yaml-merge-key-overridden-by-own-keys",
        ),
        pytest.param(
            ep("tls: {ca_file: tls/ca.pem, cert_file: tls/client.crt, key_file: tls/client.key}"),
            lambda c: c.endpoints[0].tls.key_file == CONFIGS / "tls" / "client.key",
            id="tls-files",
        ),
        pytest.param(
            ep(f"tls: {{ca_file: '{CONFIGS / 'tls' / 'ca.pem'}'}}"),
            lambda c: c.endpoints[0].tls.ca_file == CONFIGS / "tls" / "ca.pem",
            id="tls-absolute-path",
        ),
    ],
)
def test_good_config(source: str, check: Any) -> None:
    config = parse_config(source, "good.yml", env=ENV, base_dir=CONFIGS)
    assert check(config)


# -- the status page ------------------------------------------------------------------------------------


def test_status_page_defaults() -> None:
    config = parse_config(ep(), env={})
    assert config.status_page == StatusPage()
    page = config.status_page
    assert (page.title, page.description, page.prometheus_url, page.show_details) == ("Status", None, None, False)
    assert (page.groups, page.group_by, page.announcements) == ((), None, ())
    assert config.endpoints[0].status_page is True


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        pytest.param("2025-06-01T09:00:00Z", datetime(2025, 6, 1, 9, tzinfo=UTC), id="yaml-utc"),
        pytest.param("2025-06-01 11:00:00+02:00", datetime(2025, 6, 1, 9, tzinfo=UTC), id="yaml-space-offset"),
        pytest.param("2025-06-01t09:00:00.5z", datetime(2025, 6, 1, 9, 0, 0, 500000, tzinfo=UTC), id="yaml-lowercase"),
        pytest.param("'2025-06-01T09:00:00Z'", datetime(2025, 6, 1, 9, tzinfo=UTC), id="string-utc"),
        pytest.param("'2025-06-01T04:00:00-05:00'", datetime(2025, 6, 1, 9, tzinfo=UTC), id="string-offset"),
        pytest.param("' 2025-06-01T09:00Z '", datetime(2025, 6, 1, 9, tzinfo=UTC), id="string-no-seconds-spaces"),
    ],
)
def test_announcement_timestamps(raw: str, expected: datetime) -> None:
    page = parse_config(f"status_page:\n  announcements:\n    - {{title: x, starts: {raw}}}\n", env={}).status_page
    assert page.announcements[0].starts == expected


def test_status_page_text_is_trimmed_and_messages_keep_their_lines() -> None:
    page = parse_config(
        y("""
            status_page:
              title: "  Status of Example  "
              announcements:
                - title: Maintenance
                  message: |
                    Line one.
                    \tIndented line two.
                - title: "Émoji 🚧 and non-breaking\u00a0space"
            """),
        env={},
    ).status_page
    assert page.title == "Status of Example"
    assert page.announcements[0].message == "Line one.\n\tIndented line two."
    assert page.announcements[1].title == "Émoji 🚧 and non-breaking\u00a0space"


def test_status_page_texts_at_their_limits_are_accepted() -> None:
    page = parse_config(
        f"status_page:\n  title: {'t' * 200}\n  description: {'d' * 2000}\n"
        f"  announcements:\n    - {{title: {'a' * 200}, message: {'m' * 2000}}}\n",
        env={},
    ).status_page
    assert (len(page.title), len(page.description or ""), len(page.announcements[0].title)) == (200, 2000, 200)


def test_prometheus_url_credentials_never_show() -> None:
    page = parse_config(
        "status_page: {prometheus_url: 'https://user:s3cret@prom.internal:9443/'}\n", env={}
    ).status_page
    assert page.prometheus_url == "https://user:s3cret@prom.internal:9443/"  # as given, for the client to use
    assert page.safe_prometheus_url == "https://prom.internal:9443/"
    assert "s3cret" not in repr(page)
    assert "https://prom.internal:9443/" in repr(page)


def test_announcement_is_shown_from_starts_until_ends() -> None:
    page = parse_config(
        y("""
            status_page:
              announcements:
                - {title: window, starts: 2025-06-01T09:00:00Z, ends: 2025-06-01T10:00:00Z}
                - {title: always}
            """),
        env={},
    ).status_page
    window, always = page.announcements
    nine = datetime(2025, 6, 1, 9, tzinfo=UTC)
    assert not window.shown_at(nine - timedelta(seconds=1))
    assert window.shown_at(nine)
    assert window.shown_at(nine + timedelta(minutes=59))
    assert not window.shown_at(nine + timedelta(hours=1))
    assert always.shown_at(nine)


def _arranged(source: str) -> list[tuple[str | None, list[str]]]:
    config = parse_config(source, env={})
    return [(group.name, [ep.name for ep in group.endpoints]) for group in config.status_page.arrange(config.endpoints)]


FIVE_ENDPOINTS = y("""
    endpoints:
      - {name: a, url: http://x, labels: {team: web}}
      - {name: b, url: http://x, labels: {team: api}}
      - {name: c, url: http://x, labels: {team: web}}
      - {name: d, url: http://x}
      - {name: hidden, url: http://x, labels: {team: ops}, status_page: false}
    """)


@pytest.mark.parametrize(
    ("page", "expected"),
    [
        pytest.param("", [(None, ["a", "b", "c", "d"])], id="no-groups-one-group-without-heading"),
        pytest.param(
            "status_page:\n  groups:\n    - {name: Web, endpoints: [c, a]}\n    - {name: API, endpoints: [b]}\n",
            [("Web", ["c", "a"]), ("API", ["b"]), (DEFAULT_GROUP, ["d"])],
            id="groups-in-their-order-then-the-rest-under-other",
        ),
        pytest.param(
            "status_page:\n  groups:\n    - {name: Other, endpoints: [b]}\n    - {name: Web, endpoints: [a, c]}\n",
            [("Other", ["b", "d"]), ("Web", ["a", "c"])],
            id="the-rest-joins-a-group-named-other-where-it-is",
        ),
        pytest.param(
            "status_page:\n  groups:\n    - {name: All, endpoints: [a, b, c, d]}\n",
            [("All", ["a", "b", "c", "d"])],
            id="no-rest-no-other",
        ),
        pytest.param(
            "status_page:\n  group_by: team\n",
            [("web", ["a", "c"]), ("api", ["b"]), (DEFAULT_GROUP, ["d"])],
            id="group-by-label-in-order-of-first-use",
        ),
    ],
)
def test_status_page_arranges_endpoints_in_groups(page: str, expected: list[tuple[str | None, list[str]]]) -> None:
    assert _arranged(FIVE_ENDPOINTS + page) == expected


def test_status_page_arrange_leaves_out_groups_without_endpoints_here() -> None:
    config = parse_config(
        FIVE_ENDPOINTS
        + "status_page:\n  groups:\n    - {name: Web, endpoints: [a, c]}\n    - {name: API, endpoints: [b]}\n",
        env={},
    )
    some = [ep for ep in config.endpoints if ep.name in ("b", "hidden")]  # e.g. one shard's share
    assert [(g.name, [ep.name for ep in g.endpoints]) for g in config.status_page.arrange(some)] == [("API", ["b"])]


def test_relative_tls_paths_resolve_against_the_config_files_directory(tmp_path: Path) -> None:
    (tmp_path / "certs").mkdir()
    (tmp_path / "certs" / "ca.pem").write_bytes((CONFIGS / "tls" / "ca.pem").read_bytes())
    config_file = tmp_path / "upwatch.yml"
    config_file.write_text(ep("tls: {ca_file: certs/ca.pem}"))
    assert load_config(config_file, env={}).endpoints[0].tls.ca_file == tmp_path / "certs" / "ca.pem"
    config_file.write_text(ep("tls: {ca_file: ../elsewhere/ca.pem}"))
    with pytest.raises(ConfigError) as info:
        load_config(config_file, env={})
    missing = tmp_path / ".." / "elsewhere" / "ca.pem"
    assert [str(p) for p in info.value.problems] == [
        f"{config_file}:4:20: endpoints[a].tls.ca_file: file not found: {missing}"
    ]


def test_a_named_pipe_as_a_tls_file_is_named_so_and_never_opened(tmp_path: Path) -> None:
    pipe = tmp_path / "ca.pem"
    os.mkfifo(pipe)  # opening it to read would wait for a writer forever
    with pytest.raises(ConfigError) as info:
        parse_config(ep("tls: {ca_file: ca.pem}"), "t.yml", env={}, base_dir=tmp_path)
    assert [str(p) for p in info.value.problems] == [
        f"t.yml:4:20: endpoints[a].tls.ca_file: cannot use file {pipe}: it is not a regular file (a named pipe)"
    ]


def test_tls_material_that_does_not_load_is_a_problem_at_its_line(tmp_path: Path) -> None:
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate\n")
    source = (
        "defaults:\n  tls: {ca_file: junk.pem}\n"  # line 2: every endpoint inherits it
        "endpoints:\n"
        "  - name: a\n    url: https://a\n"
        "  - name: b\n    url: https://b\n    tls:\n      verify: false\n"  # no CA needed: loads
        "  - name: c\n    url: https://c\n    timeout: 1h\n"  # reported with the other problems
    )
    with pytest.raises(ConfigError) as info:
        parse_config(source, "t.yml", env={}, base_dir=tmp_path)
    assert [str(p) for p in info.value.problems] == [
        f"t.yml:2:8: endpoints[a].tls: cannot load ca_file {junk}: no certificate or crl found",
        "t.yml:12:14: endpoints[c].timeout: must be shorter than interval (30s by default), got 1h",
    ]


def test_the_loader_builds_the_ssl_contexts_the_prober_uses() -> None:
    tls = TLSContexts()
    config = parse_config(ep("tls: {ca_file: tls/ca.pem}"), "t.yml", env={}, base_dir=CONFIGS, tls=tls)
    (endpoint,) = config.endpoints
    built = tls.context(endpoint.tls)
    assert tls.context(endpoint.tls) is built  # cached, not built again
    assert built.verify_mode == ssl.CERT_REQUIRED
    assert len(built.get_ca_certs()) == 1  # the fixture's CA, instead of the system's


# -- ${VAR} ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("template", "env", "expected"),
    [
        pytest.param("${A}", {"A": "x"}, "x", id="set"),
        pytest.param("${A}", {"A": ""}, "", id="set-empty"),
        pytest.param("${A:-d}", {}, "d", id="unset-with-default"),
        pytest.param("${A:-d}", {"A": ""}, "d", id="empty-with-default"),
        pytest.param("${A:-d}", {"A": "x"}, "x", id="set-with-default"),
        pytest.param("${A:-}", {}, "", id="unset-with-empty-default"),
        pytest.param("${A:-two words}", {}, "two words", id="default-with-space"),
        pytest.param("$${A}", {}, "${A}", id="dollar-dollar-escape"),
        pytest.param("$$$${A}", {}, "$${A}", id="double-escape"),
        pytest.param("$$${A}", {"A": "x"}, "$x", id="escape-then-reference"),
        pytest.param("${A}-${B}:${A}", {"A": "1", "B": "2"}, "1-2:1", id="several-references"),
        pytest.param("${A}", {"A": "${B}"}, "${B}", id="values-are-not-expanded-again"),
        pytest.param("cost $5 or $A", {"A": "x"}, "cost $5 or $A", id="lone-dollars-are-text"),
        pytest.param("Bearer ${TOKEN}", {"TOKEN": "t0k"}, "Bearer t0k", id="in-a-header"),
    ],
)
def test_env_interpolation_in_header_values(template: str, env: dict[str, str], expected: str) -> None:
    config = parse_config(ep(f"headers: {{X-Value: '{template}'}}"), env=env)
    assert config.endpoints[0].headers["X-Value"] == expected


def test_env_interpolation_in_url_body_label_and_regex() -> None:
    source = ep(
        "url: http://${HOST}:${PORT:-8080}/health",
        'body: \'{"user": "${USER_NAME}"}\'',
        "labels: {env: '${DEPLOY_ENV:-dev}'}",
        "expect: {body_matches: '${WORD}$$'}",
    ).replace("    url: http://x\n", "", 1)
    config = parse_config(source, env={"HOST": "api.internal", "USER_NAME": "probe", "WORD": "ok"})
    endpoint = config.endpoints[0]
    assert endpoint.url == "http://api.internal:8080/health"
    assert endpoint.body == '{"user": "probe"}'
    assert endpoint.labels == {"env": "dev"}
    assert endpoint.expect.body_matches is not None
    assert endpoint.expect.body_matches.pattern == "ok$"


def test_env_reports_every_unset_variable() -> None:
    source = ep("headers: {A: '${ONE}', B: '${TWO} ${ONE}'}")
    unset = "environment variable {0} is not set (write ${{{0}:-default}} for a fallback)"
    assert problems_of(source, env={}) == [
        (4, 18, "endpoints[a].headers.A", unset.format("ONE")),
        (4, 31, "endpoints[a].headers.B", unset.format("TWO")),
        (4, 31, "endpoints[a].headers.B", unset.format("ONE")),
    ]


def test_keys_are_not_interpolated() -> None:
    assert problems_of(ep("labels: {'${A}': v}"), env={"A": "ok"}) == [
        (4, 14, "endpoints[a].labels.${A}", "invalid label name '${A}': use letters, digits and _")
    ]


# -- JSON Schema --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def validator() -> jsonschema.Draft202012Validator:
    schema = json_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def test_schema_is_draft_2020_12(validator: jsonschema.Draft202012Validator) -> None:
    assert validator.schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert validator.schema["title"] == "upwatch config"


def test_schema_accepts_the_good_configs(validator: jsonschema.Draft202012Validator) -> None:
    docs = [yaml.safe_load(GOOD_FULL.read_text())]
    if (REPO / "upwatch.yml").exists():
        docs.append(yaml.safe_load((REPO / "upwatch.yml").read_text()))
    for doc in docs:
        assert [e.message for e in validator.iter_errors(doc)] == []


@pytest.mark.parametrize(
    ("doc", "path"),
    [
        pytest.param({"endpoints": [{"name": "a", "url": "http://x", "intervl": "3s"}]}, ["endpoints", 0], id="key"),
        pytest.param({"endponts": []}, [], id="top-key"),
        pytest.param({"workers": -1}, ["workers"], id="workers-negative"),
        pytest.param({"workers": "all"}, ["workers"], id="workers-word"),
        pytest.param(
            {"endpoints": [{"name": "a", "url": "http://x", "interval": "3x"}]},
            ["endpoints", 0, "interval"],
            id="duration",
        ),
        pytest.param(
            {"endpoints": [{"name": "a", "url": "http://x", "interval": 30}]},
            ["endpoints", 0, "interval"],
            id="duration-number",
        ),
        pytest.param({"defaults": {"timeout": "soon"}}, ["defaults"], id="defaults-duration"),
        pytest.param({"endpoints": [{"name": "a", "url": "ftp://x"}]}, ["endpoints", 0, "url"], id="url"),
        pytest.param({"endpoints": [{"name": "a"}]}, ["endpoints", 0], id="missing-url"),
        pytest.param(
            {"endpoints": [{"name": "a", "url": "http://x", "expect": {"status": [700]}}]},
            ["endpoints", 0, "expect", "status"],
            id="status",
        ),
        pytest.param(
            {"endpoints": [{"name": "a", "url": "http://x", "method": "FETCH"}]},
            ["endpoints", 0, "method"],
            id="method",
        ),
        pytest.param({"status_page": {"titel": "x"}}, ["status_page"], id="status-page-key"),
        pytest.param({"status_page": {"prometheus_url": "ftp://p"}}, ["status_page", "prometheus_url"], id="prom-url"),
        pytest.param(
            {"status_page": {"prometheus_url": "http://p/?q=1"}}, ["status_page", "prometheus_url"], id="prom-url-query"
        ),
        pytest.param({"status_page": {"title": "x" * 201}}, ["status_page", "title"], id="status-page-title-long"),
        pytest.param({"status_page": {"group_by": "a-b"}}, ["status_page", "group_by"], id="group-by"),
        pytest.param(
            {"status_page": {"groups": [{"name": "x", "endpoints": []}]}},
            ["status_page", "groups", 0, "endpoints"],
            id="group-empty",
        ),
        pytest.param(
            {"status_page": {"announcements": [{"title": "x", "level": "warning"}]}},
            ["status_page", "announcements", 0, "level"],
            id="announcement-level",
        ),
        pytest.param(
            {"endpoints": [{"name": "a", "url": "http://x", "status_page": "no"}]},
            ["endpoints", 0, "status_page"],
            id="endpoint-status-page",
        ),
    ],
)
def test_schema_rejects(validator: jsonschema.Draft202012Validator, doc: dict[str, Any], path: list[Any]) -> None:
    errors = list(validator.iter_errors(doc))
    assert errors
    assert any(list(e.absolute_path) == path for e in errors), [(list(e.absolute_path), e.message) for e in errors]


def test_schema_defaults_are_written_as_a_user_would(validator: jsonschema.Draft202012Validator) -> None:
    defs = validator.schema["$defs"]
    assert defs["Endpoint"]["properties"]["interval"]["default"] == "30s"
    assert defs["Endpoint"]["properties"]["timeout"]["default"] == "10s"
    assert defs["Expect"]["properties"]["status"]["default"] == ["2xx"]
    for name, model in defs.items():
        for key, prop in model["properties"].items():
            if prop.get("default") is not None:
                schema = {k: v for k, v in prop.items() if k != "default"}
                errors = list(jsonschema.Draft202012Validator(schema).iter_errors(prop["default"]))
                assert not errors, f"{name}.{key}: default {prop['default']!r} does not match its own schema"


# -- robustness -------------------------------------------------------------------------------------------

YAMLISH = b"abc: -[]{}\n\n\t\"'#&*!|>%@`,?0123456789${}\\<."
TOKENS = [
    ":", ": ", "- ", "-", "[", "]", "{", "}", "&a ", "*a", "<<: *a", "!!str ", "!!set ", "!!binary ", "!x ", "\t", "\n",
    "  ", "'", '"', "#", "${", "${X}", "${X:-d}", "$$", "null", "~", "true", "-1", "1e9", "7xx", "0s", "\x00", "\u00e9",
    "---\n", "...\n", "? ", "|\n", ">-\n", "%YAML 1.1\n", "\ufeff", "\\", "\\x", "\r", '"a\\nb"', "${a\\nb}",
    "\x85", "\u2028", "\x80", "9" * 400, "a{4294967296}", "(" * 50,
]  # fmt: skip


def mutate(text: str, rng: random.Random) -> str:
    """The text after one to four random edits that YAML (and upwatch) may or may not accept."""
    for _ in range(rng.randint(1, 4)):
        lines = text.split("\n")
        op = rng.randrange(7)
        i = rng.randrange(len(lines))
        if op == 0 and text:  # delete a span
            start = rng.randrange(len(text))
            text = text[:start] + text[start + rng.randint(1, 10) :]
            continue
        if op == 1:  # insert a token
            pos = rng.randrange(len(text) + 1)
            text = text[:pos] + rng.choice(TOKENS) + text[pos:]
            continue
        if op == 2:
            lines.insert(i, lines[i])
        elif op == 3:
            del lines[i]
        elif op == 4:
            j = rng.randrange(len(lines))
            lines[i], lines[j] = lines[j], lines[i]
        elif op == 5:
            lines[i] = "  " + lines[i] if rng.random() < 0.5 else lines[i].removeprefix("  ")
        else:  # replace a value with another line's value
            j = rng.randrange(len(lines))
            if ":" in lines[i] and ":" in lines[j]:
                lines[i] = lines[i].split(":", 1)[0] + ":" + lines[j].split(":", 1)[1]
        text = "\n".join(lines)
    return text


def parse_or_problems(source: str | bytes) -> Config | ConfigError:
    """A Config or the ConfigError: any other exception fails the calling test."""
    try:
        return parse_config(source, "fuzz.yml", env=GOOD_FULL_ENV, base_dir=CONFIGS)
    except ConfigError as exc:
        assert exc.problems, "a ConfigError without problems"
        for p in exc.problems:
            assert p.line >= 1 and p.column >= 1 and p.location and p.message
            assert len(str(p).splitlines()) == 1, f"a problem of several lines: {p!r}"
        return exc


def test_random_bytes_give_a_config_or_problems() -> None:
    rng = random.Random(20240917)
    for n in range(200):
        size = rng.randint(0, 300)
        # Every other one mostly YAML's own characters, to get past decoding into the parser.
        data = rng.randbytes(size) if n % 2 else bytes(rng.choice(YAMLISH) for _ in range(size))
        try:
            parse_or_problems(data)
        except Exception as exc:  # pragma: no cover - reported with its input
            raise AssertionError(f"input {n}: {data!r} raised {exc!r}") from exc


def test_mutated_good_config_gives_a_config_or_problems() -> None:
    rng = random.Random(7)
    good = GOOD_FULL.read_text()
    assert isinstance(parse_or_problems(good), Config)
    outcomes = {"config": 0, "problems": 0}
    for n in range(200):
        text = mutate(good, rng)
        try:
            result = parse_or_problems(text)
        except Exception as exc:  # pragma: no cover - reported with its input
            raise AssertionError(f"mutation {n} raised {exc!r}:\n{text}") from exc
        if isinstance(result, Config):
            outcomes["config"] += 1
            # Nothing may be dropped silently: every endpoint written is in the config.
            written = (yaml.safe_load(text) or {}).get("endpoints") or []
            assert len(result.endpoints) == len(written), f"mutation {n}:\n{text}"
        else:
            outcomes["problems"] += 1
    assert outcomes["config"] > 0 and outcomes["problems"] > 0, outcomes  # the mutations test both ways


# -- value parsers -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("500ms", 0.5),
        ("30s", 30.0),
        ("5m", 300.0),
        ("1h", 3600.0),
        ("1h30m", 5400.0),
        ("1.5s", 1.5),
        ("1d", 86400.0),
        ("1w", 604800.0),
        ("2m30s500ms", 150.5),
        (" 30s ", 30.0),
    ],
)
def test_parse_duration(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (30, "duration 30 needs a unit, e.g. '30s'"),
        (1.5, "duration 1.5 needs a unit, e.g. '1.5s'"),
        ("30", f"invalid duration '30': {DURATION_HINT}"),
        ("30S", f"invalid duration '30S': {DURATION_HINT}"),
        ("30 s", f"invalid duration '30 s': {DURATION_HINT}"),
        ("1h 30m", f"invalid duration '1h 30m': {DURATION_HINT}"),
        ("5y", f"invalid duration '5y': {DURATION_HINT}"),
        (".5s", f"invalid duration '.5s': {DURATION_HINT}"),
        ("s", f"invalid duration 's': {DURATION_HINT}"),
        ("", "invalid duration '': use e.g. 30s"),
        ("0s", "duration '0s' must be greater than zero"),
        ("0ms", "duration '0ms' must be greater than zero"),
        ("-1s", "duration '-1s' must be greater than zero"),
        (True, "must be a duration like 30s, got a boolean"),
        (None, "must be a duration like 30s, got nothing (null)"),
        ([], "must be a duration like 30s, got a list"),
    ],
)
def test_parse_duration_errors(value: object, message: str) -> None:
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        parse_duration(value)


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0.5, "500ms"), (30, "30s"), (90, "1m30s"), (5400, "1h30m"), (1.5, "1.5s"), (86400, "1d"), (0, "0s")],
)
def test_format_duration(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (200, [(200, 200)]),
        ("404", [(404, 404)]),
        ("2xx", [(200, 299)]),
        ("5XX", [(500, 599)]),
        ("200-299", [(200, 299)]),
        ("300 - 302", [(300, 302)]),
        ([200, "3xx", "400-404"], [(200, 200), (300, 399), (400, 404)]),
        ("100", [(100, 100)]),
        (599, [(599, 599)]),
    ],
)
def test_parse_status_list(value: object, expected: list[tuple[int, int]]) -> None:
    assert [(r.low, r.high) for r in parse_status_list(value)] == expected


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (700, "status 700 is not an HTTP status code (100-599)"),
        (99, "status 99 is not an HTTP status code (100-599)"),
        ("600", "status '600' is not an HTTP status code (100-599)"),
        ("7xx", f"invalid status '7xx': {STATUS_HINT}"),
        ("abc", f"invalid status 'abc': {STATUS_HINT}"),
        ("2xxx", f"invalid status '2xxx': {STATUS_HINT}"),
        ("200-100", "invalid status range '200-100': start is above end"),
        ("200-600", "status '200-600' is not an HTTP status code (100-599)"),
        (True, f"invalid status true: {STATUS_HINT}"),
        (None, f"invalid status null: {STATUS_HINT}"),
        (200.0, f"invalid status 200.0: {STATUS_HINT}"),
        ([[200]], f"invalid status [200]: {STATUS_HINT}"),
        ("\u00b2\u00b2\u00b2", f"invalid status '\u00b2\u00b2\u00b2': {STATUS_HINT}"),
        ([], "must list at least one status"),
    ],
)
def test_parse_status_list_errors(value: object, message: str) -> None:
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        parse_status_list(value)


def test_status_range_membership_and_text() -> None:
    two = StatusRange(200, 299)
    assert 200 in two and 299 in two and 300 not in two and "200" not in two
    assert [str(r) for r in (two, StatusRange(404, 404), StatusRange(300, 302))] == ["2xx", "404", "300-302"]


@pytest.mark.parametrize(
    ("value", "size"),
    [
        (1, 1),
        ("1", 1),
        ("512B", 512),
        ("1KB", 1000),
        ("512KiB", 512 * 1024),
        ("10MiB", 10 * 1024**2),
        ("1 GB", 1000**3),
        ("2GiB", 2 * 1024**3),
    ],
)
def test_parse_size(value: object, size: int) -> None:
    assert parse_size(value) == size


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (0, "size must be greater than zero"),
        ("0KiB", "size must be greater than zero"),
        ("-1", "invalid size '-1': use bytes or a unit (KiB, MiB, GiB), e.g. 10MiB"),
        ("1.5MiB", "invalid size '1.5MiB': use bytes or a unit (KiB, MiB, GiB), e.g. 10MiB"),
        ("10mb", "invalid size '10mb': use bytes or a unit (KiB, MiB, GiB), e.g. 10MiB"),
        ("", "invalid size '': use bytes or a unit (KiB, MiB, GiB), e.g. 10MiB"),
        (True, "must be a size like 10MiB, got a boolean"),
        (1.5, "must be a size like 10MiB, got a number"),
        (None, "must be a size like 10MiB, got nothing (null)"),
    ],
)
def test_parse_size_errors(value: object, message: str) -> None:
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        parse_size(value)


@pytest.mark.parametrize(
    ("url", "safe"),
    [
        ("https://api.example.com/health", "https://api.example.com/health"),
        ("https://user:pa55@api.example.com/health", "https://api.example.com/health"),
        ("https://token@api.example.com/", "https://api.example.com/"),
        ("https://api.example.com/search?q=x&token=secret", "https://api.example.com/search"),
        ("https://api.example.com/page#section", "https://api.example.com/page"),
        ("https://u:p@api.example.com:8443/a/b?c=d#e", "https://api.example.com:8443/a/b"),
        ("http://[::1]:8080/metrics?x", "http://[::1]:8080/metrics"),
        ("http://user@[2001:db8::1]/", "http://[2001:db8::1]/"),
        ("http://127.0.0.1:9877", "http://127.0.0.1:9877"),
        ("HTTP://API.Example.COM/Path", "http://api.example.com/Path"),
    ],
)
def test_redact_url(url: str, safe: str) -> None:
    assert redact_url(url) == safe


def test_endpoint_safe_url_is_redacted() -> None:
    config = parse_config(ep().replace("http://x", "https://u:${PW}@x.example:444/p?key=${PW}"), env={"PW": "pw"})
    endpoint = config.endpoints[0]
    assert endpoint.url == "https://u:pw@x.example:444/p?key=pw"
    assert endpoint.safe_url == "https://x.example:444/p"


def test_header_values_with_line_breaks_are_rejected() -> None:
    raw = "endpoints:\n  - name: api\n    url: http://127.0.0.1/\n    headers: {X-Token: '${TOKEN}'}\n"
    with pytest.raises(ConfigError) as info:
        parse_config(raw, "c.yml", env={"TOKEN": "abc\r\nInjected: yes"})
    assert [str(p) for p in info.value.problems] == [
        "c.yml:4:24: endpoints[api].headers.X-Token: header values must not contain line breaks or NUL characters"
    ]


def test_top_level_extension_keys_hold_anchors() -> None:
    raw = (
        "x-common: &common {interval: 10s, timeout: 2s, labels: {team: web}}\n"
        "endpoints:\n"
        "  - {<<: *common, name: a, url: 'http://127.0.0.1/a'}\n"
        "  - {<<: *common, name: b, url: 'http://127.0.0.1/b', timeout: 3s}\n"
    )
    config = parse_config(raw, "c.yml", env={})
    assert [(e.name, e.interval, e.timeout, e.labels) for e in config.endpoints] == [
        ("a", 10.0, 2.0, {"team": "web"}),
        ("b", 10.0, 3.0, {"team": "web"}),
    ]
    jsonschema.validate(yaml.safe_load(raw), json_schema())


def test_non_ascii_header_values_are_rejected() -> None:
    raw = "endpoints:\n  - name: api\n    url: http://127.0.0.1/\n    headers: {X-Name: 'café'}\n"
    with pytest.raises(ConfigError) as info:
        parse_config(raw, "c.yml", env={})
    assert [p.message for p in info.value.problems] == [
        "header values must be ASCII (encode other text, e.g. percent-encoding)"
    ]


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("ftp://user:hunter2@host/x", "ftp://***@host/x"),
        ("ftp://host/x?token=hunter2", "ftp://host/x?***"),
        ("ftp://host/x#hunter2", "ftp://host/x#***"),
    ],
)
def test_url_problems_do_not_show_secrets(url: str, shown: str) -> None:
    raw = f"endpoints:\n  - name: api\n    url: '{url}'\n"
    with pytest.raises(ConfigError) as info:
        parse_config(raw, "c.yml", env={})
    (problem,) = info.value.problems
    assert "hunter2" not in str(problem)
    assert problem.message == f"invalid URL {shown!r}: scheme must be http or https"


# -- the host section -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (
            "host:\n  collectors: {cpux: false}\n",
            "c.yml:2:16: host.collectors.cpux: unknown key 'cpux' (did you mean 'cpu'?)",
        ),
        (
            "host:\n  collectors: {cpu: 'no'}\n",
            "c.yml:2:21: host.collectors.cpu: must be true or false, got a string 'no'",
        ),
        (
            "host:\n  netdev: {devices_include: a, devices_exclude: b}\n",
            "c.yml:2:11: host.netdev: set devices_include or devices_exclude, not both",
        ),
        (
            "host:\n  diskstats: {devices_include: a, devices_exclude: b}\n",
            "c.yml:2:14: host.diskstats: set devices_include or devices_exclude, not both",
        ),
        (
            "host:\n  filesystem: {fs_types_include: a, fs_types_exclude: b}\n",
            "c.yml:2:15: host.filesystem: set fs_types_include or fs_types_exclude, not both",
        ),
        (
            "host:\n  vmstat: {fields: '('}\n",
            "c.yml:2:20: host.vmstat.fields: invalid regular expression '(': "
            "missing ), unterminated subpattern at position 0",
        ),
        (
            "host:\n  filesystem: {mount_timeout: 5}\n",
            "c.yml:2:31: host.filesystem.mount_timeout: duration 5 needs a unit, e.g. '5s'",
        ),
        (
            "host:\n  paths: {procs: /host/proc}\n",
            "c.yml:2:11: host.paths.procs: unknown key 'procs' (did you mean 'procfs'?)",
        ),
    ],
)
def test_bad_host_sections(raw: str, expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(raw, "c.yml", env={})
    assert [str(p) for p in info.value.problems] == [expected]


def test_host_defaults_are_node_exporters_and_an_include_replaces_the_default_exclude() -> None:
    from exporter.config import NODE_DISK_DEVICES_EXCLUDE, NODE_FS_TYPES_EXCLUDE, NODE_MOUNT_POINTS_EXCLUDE

    host = parse_config("host: {}\n", "c.yml", env={}).host
    assert host.enabled
    assert host.collectors.enabled()[:3] == ("cpu", "loadavg", "meminfo")
    assert host.filesystem.mount_points_exclude is not None
    assert host.filesystem.mount_points_exclude.pattern == NODE_MOUNT_POINTS_EXCLUDE
    assert host.filesystem.fs_types_exclude is not None
    assert host.filesystem.fs_types_exclude.pattern == NODE_FS_TYPES_EXCLUDE
    assert host.diskstats.devices_exclude is not None
    assert host.diskstats.devices_exclude.pattern == NODE_DISK_DEVICES_EXCLUDE
    assert host.diskstats.devices_exclude.search("sda1") and not host.diskstats.devices_exclude.search("sda")
    assert host.filesystem.mount_points_exclude.search("/proc/sys") and not host.filesystem.mount_points_exclude.search(
        "/"
    )
    custom = parse_config(
        "host:\n  collectors: {netstat: false}\n  paths: {procfs: /host/proc, rootfs: /rootfs}\n"
        "  diskstats: {devices_include: '^sd'}\n  filesystem: {mount_points_include: '^/data'}\n",
        "c.yml",
        env={},
    ).host
    assert "netstat" not in custom.collectors.enabled()
    assert str(custom.paths.procfs) == "/host/proc" and str(custom.paths.rootfs) == "/rootfs"
    assert str(custom.paths.sysfs) == "/sys"
    assert custom.diskstats.devices_exclude is None
    assert custom.filesystem.mount_points_exclude is None
    assert custom.filesystem.fs_types_exclude is not None  # untouched


def test_endpoints_alike_share_their_parts_and_unlike_ones_do_not() -> None:
    config = parse_config(
        textwrap.dedent(
            """\
            defaults: {expect: {status: 200, body_contains: ok}, labels: {team: a}}
            endpoints:
              - {name: one, url: "http://127.0.0.1/"}
              - {name: two, url: "http://127.0.0.1/"}
              - {name: three, url: "http://127.0.0.1/", expect: {status: 200, body_contains: OK}}
              - {name: four, url: "http://127.0.0.1/", labels: {team: b}}
            """
        )
    )
    one, two, three, four = config.endpoints
    assert one.expect is two.expect and one.labels is two.labels and one.tls is two.tls is three.tls
    assert three.expect is not one.expect and three.expect.body_contains == "OK"
    assert four.labels is not one.labels and four.labels == {"team": "b"} and one.labels == {"team": "a"}
    assert four.expect is one.expect


def test_a_config_loaded_in_a_child_process_is_the_same_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("UPWATCH_TEST_TOKEN", "s3cret")
    path = tmp_path / "upwatch.yml"
    path.write_text(
        textwrap.dedent(
            """\
            defaults: {interval: 5s, timeout: 2s, expect: {body_matches: "o+k"}}
            endpoints:
              - {name: a, url: "http://127.0.0.1/", headers: {Authorization: "Bearer ${UPWATCH_TEST_TOKEN}"}}
              - {name: b, url: "https://127.0.0.1/", labels: {team: x}, slo: {availability: 99.9}}
            """
        )
    )
    isolated = load_config_isolated(path)
    assert isolated == load_config(path)
    assert isolated.endpoints[0].headers == {"Authorization": "Bearer s3cret"}
    assert isolated.endpoints[0].expect is isolated.endpoints[1].expect  # shared parts stay shared


def test_a_bad_config_loaded_in_a_child_process_names_the_same_problems(tmp_path: Path) -> None:
    path = tmp_path / "upwatch.yml"
    path.write_text("endpoints:\n  - {name: a, url: 'ftp://x'}\n  - {name: b, url: 'http://x', interval: soon}\n")
    with pytest.raises(ConfigError) as in_process:
        load_config(path)
    with pytest.raises(ConfigError) as isolated:
        load_config_isolated(path)
    assert isolated.value.problems == in_process.value.problems
    assert [p.line for p in isolated.value.problems] == [2, 3]


def test_a_child_that_cannot_load_the_config_is_a_problem_with_the_file(tmp_path: Path) -> None:
    path = tmp_path / "upwatch.yml"
    path.write_text("endpoints: []\n")
    with pytest.raises(ConfigError) as slow:
        load_config_isolated(path, timeout=0.001)
    (problem,) = slow.value.problems
    assert (problem.file, problem.line, problem.location) == (str(path), 1, "(file)")
    assert "took more than" in problem.message


def test_shards_split_the_endpoints_without_overlap_and_a_new_shard_moves_about_its_share() -> None:
    lines = "".join(f"  - {{name: ep-{i}, url: 'http://127.0.0.1/'}}\n" for i in range(300))

    def shards(total: int) -> list[set[str]]:
        return [
            {ep.name for ep in parse_config(f"shard: {{index: {i}, total: {total}}}\nendpoints:\n{lines}").probed}
            for i in range(total)
        ]

    three, four = shards(3), shards(4)
    assert set().union(*three) == {f"ep-{i}" for i in range(300)} and sum(map(len, three)) == 300
    assert all(80 <= len(part) <= 120 for part in three)
    moved = sum(1 for i, part in enumerate(three) for name in part if name not in four[i])
    assert 50 <= moved <= 100  # about a quarter of 300, all of them onto the new shard
    assert moved == len(four[3])


def test_an_empty_prometheus_url_is_the_agent_s_own_history(monkeypatch: pytest.MonkeyPatch) -> None:
    """`${VAR:-}` with VAR unset or empty leaves the page on the agent's own history, as without the key."""
    text = "status_page:\n  prometheus_url: ${UPWATCH_PROMETHEUS_URL:-}\nendpoints: []\n"
    monkeypatch.delenv("UPWATCH_PROMETHEUS_URL", raising=False)
    assert parse_config(text).status_page.prometheus_url is None
    monkeypatch.setenv("UPWATCH_PROMETHEUS_URL", "http://127.0.0.1:9090")
    assert parse_config(text).status_page.prometheus_url == "http://127.0.0.1:9090"


@pytest.mark.parametrize(("written", "expected"), [(None, None), ("state", "conf/state"), ("/var/lib/x", "/var/lib/x")])
def test_data_dir_is_relative_to_the_config_file(tmp_path: Path, written: str | None, expected: str | None) -> None:
    (tmp_path / "conf").mkdir()
    path = tmp_path / "conf" / "upwatch.yml"
    path.write_text("endpoints: []\n" + (f"data_dir: {written}\n" if written else ""))
    data_dir = load_config(path).data_dir
    assert data_dir == (None if expected is None else tmp_path / expected)
