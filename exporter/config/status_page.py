"""The `status_page` section: the public page's title, its groups of endpoints, its announcements, its history source.

Which endpoints a group names is checked against the endpoints by the loader, which alone sees both.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Annotated, Any, Self

from pydantic import (
    AfterValidator,
    BeforeValidator,
    Field,
    ValidationInfo,
    WithJsonSchema,
    field_validator,
    model_validator,
)

from exporter.redact import redact_url

from .values import BaseUrl, StrictModel, as_tuple, check_label_syntax, clip, shown, type_name, unshowable

if TYPE_CHECKING:
    from .models import Endpoint

MAX_PAGE_LINE = 200
MAX_PAGE_TEXT = 2000
_LINE_BREAKS = "\n\r\x85\u2028\u2029"


def _page_text(value: str, limit: int, *, multiline: bool) -> str:
    """Text for the public status page, without its surrounding whitespace: no control characters, not too long."""
    text = value.strip(" \t\n")  # what a YAML block scalar adds; other control characters are reported
    if not text:
        raise ValueError("must not be empty")
    for i, ch in enumerate(text, 1):
        if multiline and ch in "\n\t":
            continue
        if not multiline and ch in _LINE_BREAKS:
            raise ValueError(f"must be one line: line break U+{ord(ch):04X} at character {i}")
        if unicodedata.category(ch) in ("Cc", "Zl", "Zp"):
            raise ValueError(f"must not contain control characters: U+{ord(ch):04X} at character {i}")
    if len(text) > limit:
        raise ValueError(f"must be at most {limit} characters, got {len(text)}")
    return text


def check_page_line(value: str) -> str:
    """A title or name shown on the status page: one line of at most MAX_PAGE_LINE characters."""
    return _page_text(value, MAX_PAGE_LINE, multiline=False)


def check_page_text(value: str) -> str:
    """A message shown on the status page: at most MAX_PAGE_TEXT characters, line breaks and tabs allowed."""
    return _page_text(value, MAX_PAGE_TEXT, multiline=True)


_TIMESTAMP_EXAMPLE = "2025-06-01T09:00:00Z"


def parse_timestamp(value: object) -> datetime:
    """A moment with a timezone: a YAML timestamp or an RFC 3339 / ISO 8601 string."""
    if isinstance(value, str):
        text = value.strip().upper()  # RFC 3339 allows a lowercase t and z, fromisoformat does not
        try:
            moment = datetime.fromisoformat(text)
        except ValueError:
            raise ValueError(f"invalid timestamp {clip(value)}: use RFC 3339, e.g. {_TIMESTAMP_EXAMPLE}") from None
        if not _is_date(text):  # a date alone fromisoformat takes for its midnight
            return _with_timezone(moment, clip(value))
        value = moment.date()
    if isinstance(value, datetime):
        return _with_timezone(value, value.isoformat())
    if isinstance(value, date):
        raise ValueError(f"timestamp {value.isoformat()} needs a time and a timezone, e.g. {_TIMESTAMP_EXAMPLE}")
    raise ValueError(f"must be a timestamp like {_TIMESTAMP_EXAMPLE}, got {type_name(value)}")


def _with_timezone(moment: datetime, written: str) -> datetime:
    if moment.utcoffset() is None:
        raise ValueError(f"timestamp {written} has no timezone: add Z (UTC) or an offset such as +02:00")
    return moment


def _is_date(text: str) -> bool:
    try:
        date.fromisoformat(text)
    except ValueError:
        return False
    return True


PageLine = Annotated[
    str,
    AfterValidator(check_page_line),
    WithJsonSchema({"type": "string", "minLength": 1, "maxLength": MAX_PAGE_LINE}),
]


def check_page_name(value: str) -> str:
    """A name on the page (a group's): a page line without format characters (bidi overrides, zero-width ones)."""
    text = check_page_line(value)
    if (unsafe := unshowable(text)) is not None:
        raise ValueError(f"{unsafe} is not allowed in a name")
    return text


PageName = Annotated[
    str,
    AfterValidator(check_page_name),
    WithJsonSchema({"type": "string", "minLength": 1, "maxLength": MAX_PAGE_LINE}),
]
PageText = Annotated[
    str,
    AfterValidator(check_page_text),
    WithJsonSchema({"type": "string", "minLength": 1, "maxLength": MAX_PAGE_TEXT}),
]
Timestamp = Annotated[
    datetime,
    BeforeValidator(parse_timestamp),
    WithJsonSchema(
        {"type": "string", "format": "date-time", "description": f"RFC 3339 with a timezone: {_TIMESTAMP_EXAMPLE}"}
    ),
]

# The heading of the endpoints no group takes in.
DEFAULT_GROUP = "Other"


class AnnouncementLevel(StrEnum):
    """How an announcement is shown: a note, planned work, or a problem being dealt with."""

    INFO = "info"
    MAINTENANCE = "maintenance"
    INCIDENT = "incident"


def _check_level(value: object) -> AnnouncementLevel:
    if isinstance(value, str) and value in {level.value for level in AnnouncementLevel}:
        return AnnouncementLevel(value)
    raise ValueError(f"must be one of {', '.join(AnnouncementLevel)}, got {shown(value)}")


Level = Annotated[
    AnnouncementLevel,
    BeforeValidator(_check_level),
    WithJsonSchema({"enum": list(AnnouncementLevel)}),
]


class Announcement(StrictModel):
    """A notice at the top of the status page, shown from `starts` until `ends`."""

    title: PageLine = Field(description="one line, at most 200 characters")
    message: PageText | None = Field(default=None, description="at most 2000 characters; line breaks kept")
    level: Level = Field(default=AnnouncementLevel.INFO, description="info, maintenance or incident")
    starts: Timestamp | None = Field(default=None, description="shown from then on (default: at once)")
    ends: Timestamp | None = Field(default=None, description="shown until then (default: until removed)")

    @field_validator("ends")
    @classmethod
    def _ends_after_starts(cls, ends: datetime | None, info: ValidationInfo) -> datetime | None:
        starts = info.data.get("starts")
        if ends is not None and starts is not None and ends <= starts:
            raise ValueError(f"must be after starts ({starts.isoformat()}), got {ends.isoformat()}")
        return ends

    def shown_at(self, moment: datetime) -> bool:
        """Whether the announcement is on the page at this (timezone-aware) moment."""
        return (self.starts is None or self.starts <= moment) and (self.ends is None or moment < self.ends)


def _not_empty(names: tuple[str, ...]) -> tuple[str, ...]:
    if not names:
        raise ValueError("a group must list at least one endpoint")
    return names


class StatusGroup(StrictModel):
    """A heading on the status page and the endpoints under it, in the order listed."""

    name: PageName = Field(description="the heading; one line, at most 200 characters")
    endpoints: Annotated[tuple[str, ...], BeforeValidator(as_tuple), AfterValidator(_not_empty)] = Field(
        description="names of endpoints; each in one group at most", json_schema_extra={"minItems": 1}
    )


LabelToRead = Annotated[
    str,
    AfterValidator(check_label_syntax),
    WithJsonSchema({"type": "string", "pattern": "^(?!__)[a-zA-Z_][a-zA-Z0-9_]*$"}),
]


@dataclass(frozen=True, slots=True)
class PageGroup:
    """One heading of the page as it is laid out (None: the page has no groups) and its endpoints."""

    name: str | None
    endpoints: tuple[Endpoint, ...]


class StatusPage(StrictModel):
    """The public status page at `/`."""

    title: PageLine = Field(default="Status", description="the page's heading and HTML title")
    description: PageText | None = Field(default=None, description="text under the title")
    prometheus_url: BaseUrl | None = Field(
        default=None,
        description=(
            "Prometheus to read uptime history from: http://prometheus:9090 (user:password@ for basic auth);"
            " empty, as ${VAR:-} gives, or absent: the agent's own history"
        ),
    )

    @field_validator("prometheus_url", mode="before")
    @classmethod
    def _empty_is_none(cls, value: object) -> object:
        # So that `prometheus_url: ${UPWATCH_PROMETHEUS_URL:-}` reads from Prometheus only where it is set.
        return None if isinstance(value, str) and not value.strip() else value

    show_details: bool = Field(
        default=False, description="show URLs, status codes, response times and failure reasons, not only states"
    )
    groups: Annotated[tuple[StatusGroup, ...], BeforeValidator(as_tuple)] = Field(
        default=(), description="headings and their endpoints; the endpoints of no group are listed last, under Other"
    )
    group_by: LabelToRead | None = Field(
        default=None, description="instead of groups: a heading per value of this endpoint label (e.g. team)"
    )
    announcements: Annotated[tuple[Announcement, ...], BeforeValidator(as_tuple)] = Field(
        default=(), description="notices shown at the top of the page, in the order listed"
    )

    @model_validator(mode="after")
    def _groups_or_group_by(self) -> Self:
        if self.groups and self.group_by is not None:
            raise ValueError("set groups or group_by, not both")
        return self

    def __repr_args__(self) -> Iterator[tuple[str | None, Any]]:
        """The fields as repr shows them: the Prometheus URL without its credentials."""
        for name, value in super().__repr_args__():
            yield name, self.safe_prometheus_url if name == "prometheus_url" else value

    @property
    def safe_prometheus_url(self) -> str | None:
        """The Prometheus URL without credentials (safe for logs and pages)."""
        return None if self.prometheus_url is None else redact_url(self.prometheus_url)

    def arrange(self, endpoints: Sequence[Endpoint]) -> list[PageGroup]:
        """The endpoints on the page (not those with `status_page: false`) under their headings.

        Groups come in the order listed (with `group_by`, in the order their label values first
        appear among the endpoints); the endpoints of no group (or without the label) follow under
        DEFAULT_GROUP, or join a group of that name if there is one. Groups left empty (another
        shard's endpoints) are left out. Without groups and group_by: one group, named None.
        """
        shown_here = [ep for ep in endpoints if ep.status_page]
        if not self.groups and self.group_by is None:
            return [PageGroup(None, tuple(shown_here))] if shown_here else []
        laid_out: dict[str, list[Endpoint]] = {group.name: [] for group in self.groups}
        group_of = {name: group.name for group in self.groups for name in group.endpoints}
        for ep in shown_here:
            if self.group_by is not None:
                name = ep.labels.get(self.group_by) or DEFAULT_GROUP
            else:
                name = group_of.get(ep.name, DEFAULT_GROUP)
            laid_out.setdefault(name, []).append(ep)
        for group in self.groups:  # the order the group lists, not the order of the endpoints list
            order = {name: i for i, name in enumerate(group.endpoints)}
            laid_out[group.name].sort(key=lambda ep: order.get(ep.name, len(order)))
        if DEFAULT_GROUP in laid_out and all(group.name != DEFAULT_GROUP for group in self.groups):
            laid_out[DEFAULT_GROUP] = laid_out.pop(DEFAULT_GROUP)  # last, unless the user placed it
        return [PageGroup(name, tuple(members)) for name, members in laid_out.items() if members]
