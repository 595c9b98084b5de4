"""Value types of the config file: durations, sizes, status ranges, names, URLs, and the strict model base."""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    PlainSerializer,
    Strict,
    WithJsonSchema,
)

from exporter.redact import redact_url

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
        "vantage",
    }
)
_LABEL_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
_HEADER_NAME = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")
_WHITESPACE = re.compile(r"\s")

_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w)")
_DURATION_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration(value: object) -> float:
    """Seconds in a duration like `500ms`, `30s`, `5m`, `1h30m`."""
    if isinstance(value, bool) or not isinstance(value, str):
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            raise ValueError(f"duration {value!r} needs a unit, e.g. '{value}s'")
        raise ValueError(f"must be a duration like 30s, got {type_name(value)}")
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
    if total < MIN_DURATION:
        raise ValueError(f"duration {clip(value)} is too short: at least 1ms")
    if not total <= MAX_DURATION:  # infinity too: float() takes 400 digits without complaint
        raise ValueError(f"duration {clip(value)} is too long: at most {format_duration(MAX_DURATION)}")
    return total


MIN_DURATION = 0.001  # a finer duration would be shown and timed as 0
MAX_DURATION = 365 * 86400.0  # longer is a typo: no probe waits a year
MIN_INTERVAL = 0.1  # probes of one endpoint at most 10 times a second: 1ms made one endpoint burn a core


def check_interval(seconds: float) -> float:
    """An interval between probes no shorter than MIN_INTERVAL."""
    if seconds < MIN_INTERVAL:
        raise ValueError(f"must be at least {format_duration(MIN_INTERVAL)}, got {format_duration(seconds)}")
    return seconds


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
        raise ValueError(f"must be a size like 10MiB, got {type_name(value)}")
    m = _SIZE.match(text)
    written = clip(value) if isinstance(value, str) else text
    if not m:
        raise ValueError(f"invalid size {written}: use bytes or a unit (KiB, MiB, GiB), e.g. 10MiB")
    if len(m.group(1)) > 18:  # int() refuses 4,300 digits; no limit needs a billion gigabytes
        raise ValueError(f"size {written} is too large")
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
    code = int(text) if isinstance(text, int) or len(text) <= 3 else 0  # int() refuses 4,300 digits
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
            raise ValueError(f"invalid status {shown(item)}: use 200, '2xx' or '200-299'")
        if isinstance(item, int):
            code = _status_code(item, item)
            out.append(StatusRange(code, code))
            continue
        if not isinstance(item, str):
            raise ValueError(f"invalid status {shown(item)}: use 200, '2xx' or '200-299'")
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
        raise ValueError(f"must be a regular expression (a string), got {type_name(value)}")
    try:
        return re.compile(value)
    except re.error as exc:
        raise ValueError(f"invalid regular expression {value!r}: {exc}") from None
    except (OverflowError, RecursionError) as exc:  # e.g. a{4294967296}, or thousands of nested groups
        reason = "nested too deeply" if isinstance(exc, RecursionError) else str(exc)
        raise ValueError(f"invalid regular expression {clip(value)}: {reason}") from None


def _check_url(value: str) -> str:
    problem = _url_problem(value)
    if problem is not None:
        raise ValueError(f"invalid URL {redact_url(value, mask=True)!r}: {problem}")
    return value


def _url_problem(value: str) -> str | None:
    """What is wrong with a probe URL, or None."""
    if _WHITESPACE.search(value):
        return "contains whitespace"
    try:
        parts = urlsplit(value)
    except ValueError as exc:  # e.g. an unclosed [ of an IPv6 address
        return str(exc)
    if parts.scheme not in ("http", "https"):
        return "scheme must be http or https"
    if not parts.hostname:
        return "no host"
    try:
        port = parts.port
    except ValueError:
        port = 0
    return "bad port" if port == 0 else None


def _check_base_url(value: str) -> str:
    """A URL other paths are put after (a Prometheus server's): http(s), a host, no query string or fragment."""
    problem = _url_problem(value)
    if problem is None:
        parts = urlsplit(value)
        if parts.query or parts.fragment or value.endswith(("?", "#")):
            problem = "no query string or fragment in a base URL"
    if problem is not None:
        raise ValueError(f"invalid URL {redact_url(value, mask=True)!r}: {problem}")
    return value


def check_label_syntax(name: str) -> str:
    """A valid Prometheus label name (reserved names too: this names a label to read, not one to set)."""
    if not _LABEL_NAME.match(name) or name.startswith("__"):
        raise ValueError(f"invalid label name {name!r}: use letters, digits and _, not starting with __")
    return name


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


def check_header_value(value: str) -> str:
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


def check_name(value: str) -> str:
    """An endpoint name: 1 to 128 characters a terminal or a page shows as they are, no surrounding space."""
    if (unsafe := unshowable(value)) is not None:
        raise ValueError(f"invalid endpoint name {value!r}: {unsafe} is not allowed in a name")
    if not 1 <= len(value) <= 128 or value != value.strip():
        raise ValueError(
            f"invalid endpoint name {value!r}: 1 to 128 printable characters, no leading or trailing space"
        )
    return value


def check_label_value(value: str) -> str:
    """A label value: text a terminal or a page shows as it is (Prometheus takes any; terminals and Slack do not)."""
    if (unsafe := unshowable(value)) is not None:
        raise ValueError(f"{unsafe} is not allowed in a label value")
    return value


def unshowable(text: str) -> str | None:
    """The first character of `text` that is not shown as itself, named (`U+202E RIGHT-TO-LEFT OVERRIDE`); or None.

    Those are control characters (C0, DEL, C1: a terminal acts on U+009B as on ESC [), format characters
    (bidi overrides, which reorder what follows them; zero-width ones, which make two names look
    alike), line and paragraph separators, spaces other than U+0020, surrogates, private-use and
    unassigned code points: what Python's str.isprintable refuses.
    """
    if text.isprintable():
        return None
    ch = next(c for c in text if not c.isprintable())
    name = _CONTROLS.get(ch) or unicodedata.name(ch, "") or _UNNAMED.get(unicodedata.category(ch), "(not printable)")
    return f"U+{ord(ch):04X} {name}"


# Control characters have no name in Unicode's data, only aliases; those met most often.
_CONTROLS = {
    "\t": "CHARACTER TABULATION",
    "\n": "LINE FEED",
    "\r": "CARRIAGE RETURN",
    "\x1b": "ESCAPE",
    "\x7f": "DELETE",
    "\x85": "NEXT LINE",
    "\x9b": "CONTROL SEQUENCE INTRODUCER",
}
_UNNAMED = {"Cc": "(a control character)", "Cs": "(a surrogate)", "Co": "(private use)", "Cn": "(unassigned)"}


_VANTAGE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")


def check_vantage(value: str) -> str:
    """A vantage name: a short word such as eu-west or fra1, the value of the `vantage` label."""
    if not _VANTAGE.match(value):
        raise ValueError(
            f"invalid vantage {value!r}: 1 to 63 letters, digits, '.', '_' or '-', starting with a letter or digit"
        )
    return value


def as_tuple(value: object) -> object:
    """A YAML list as the tuple a frozen model keeps (other values are left for the type check to report)."""
    return tuple(value) if isinstance(value, list) else value


MAX_WORKERS = 1024


def parse_workers(value: object) -> int | str:
    """A number of probe worker processes (0: the main process probes), or `auto`."""
    if value == "auto" or (isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= MAX_WORKERS):
        return value
    shown_value = f" {value!r}" if isinstance(value, (str, int, float)) and not isinstance(value, bool) else ""
    raise ValueError(
        f"must be a number of processes from 0 to {MAX_WORKERS} or 'auto', got {type_name(value)}{shown_value}"
    )


def check_percent(value: float) -> float:
    if not 0 < value < 100:
        raise ValueError(f"availability objective must be a percentage between 0 and 100 (exclusive), got {value:g}")
    return value


def shown(value: object) -> str:
    """A value as YAML would write it (true, null), strings quoted."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    return repr(value)


def clip(text: str, limit: int = 40) -> str:
    """A string's repr, cut short if long."""
    return repr(text) if len(text) <= limit else repr(text[:limit]) + "..."


def type_name(value: object) -> str:
    """How a problem names the type of a YAML value (a string, a mapping, nothing (null))."""
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
Workers = Annotated[
    int | Literal["auto"],
    BeforeValidator(parse_workers),
    WithJsonSchema(
        {
            "oneOf": [{"type": "integer", "minimum": 0, "maximum": MAX_WORKERS}, {"const": "auto"}],
            "description": "probe worker processes: a number (0: the main process probes), or auto (as the load needs)",
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
BaseUrl = Annotated[
    str,
    AfterValidator(_check_base_url),
    WithJsonSchema({"type": "string", "format": "uri", "pattern": r"^(https?://|\$\{)[^?#]*$"}),
]


HTTP_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")


def _check_method(value: object) -> str:
    if isinstance(value, str) and value.upper() in HTTP_METHODS:
        return value.upper()
    raise ValueError(f"must be one of {', '.join(HTTP_METHODS)}, got {shown(value)}")


HttpMethod = Annotated[str, BeforeValidator(_check_method), WithJsonSchema({"enum": list(HTTP_METHODS)})]


class StrictModel(BaseModel):
    """The base of every config model: unknown keys are errors, values are not coerced, models are frozen."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True, use_enum_values=False)


FilePath = Annotated[Path, Strict(False)]
