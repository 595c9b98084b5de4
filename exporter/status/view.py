"""What the public status page shows, as immutable records, built from the agent's state and history.

Nothing here knows HTML, Prometheus or the store: `page.py` renders a `PageView`, and whoever builds
one (from the agent's own history or from Prometheus) fills these records.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum

from exporter.history.records import DayBar, ResponseSlot
from exporter.state import State

# The uptime windows the page shows, in this order.
UPTIME_WINDOWS: tuple[str, ...] = ("24h", "7d", "30d", "90d")
DAYS_SHOWN = 90
DAY_SECONDS = 86_400


class Banner(StrEnum):
    """The page's one-line verdict over the endpoints it shows."""

    OPERATIONAL = "operational"
    DEGRADED = "degraded"
    PARTIAL_OUTAGE = "partial_outage"
    MAJOR_OUTAGE = "major_outage"
    NO_DATA = "no_data"


BANNER_TEXT: Mapping[Banner, str] = {
    Banner.OPERATIONAL: "All systems operational",
    Banner.DEGRADED: "Degraded performance",
    Banner.PARTIAL_OUTAGE: "Partial outage",
    Banner.MAJOR_OUTAGE: "Major outage",
    Banner.NO_DATA: "No data yet",
}


@dataclass(frozen=True, slots=True)
class IncidentView:
    """One incident: when the endpoint was down, why, and from where."""

    endpoint: str
    start: float
    end: float | None  # None while it lasts
    reason: str = ""  # the failure reason that opened it (`timeout`, `http_status`, ...)
    message: str = ""  # its detail; shown only with show_details
    vantage: str | None = None

    def duration(self, now: float) -> float:
        """Seconds it lasted, or has lasted so far."""
        return max(0.0, (now if self.end is None else self.end) - self.start)


@dataclass(frozen=True, slots=True)
class EndpointDetails:
    """What only `status_page.show_details: true` reveals about an endpoint."""

    url: str
    method: str
    last_message: str = ""


@dataclass(frozen=True, slots=True)
class EndpointView:
    """One endpoint on the page."""

    name: str
    state: State
    since: float | None = None
    uptime: Mapping[str, float | None] = field(default_factory=dict)  # by UPTIME_WINDOWS name
    days: Sequence[DayBar] = ()  # oldest first, at most DAYS_SHOWN
    latency: Sequence[ResponseSlot] = ()  # oldest first, the last 24 hours
    response: float | None = None  # median response time over the last 24 hours, seconds
    group: str = ""
    details: EndpointDetails | None = None


@dataclass(frozen=True, slots=True)
class GroupView:
    """A named group of endpoints (a section of the page)."""

    name: str
    endpoints: Sequence[EndpointView]


@dataclass(frozen=True, slots=True)
class AnnouncementView:
    """A notice written in the config: news, planned maintenance or an incident report."""

    title: str
    message: str = ""
    level: str = "info"  # info, maintenance or incident
    starts: float | None = None
    ends: float | None = None


@dataclass(frozen=True, slots=True)
class PageView:
    """Everything one rendering of the page needs."""

    title: str
    now: float
    groups: Sequence[GroupView]
    description: str = ""
    incidents: Sequence[IncidentView] = ()  # newest first
    announcements: Sequence[AnnouncementView] = ()
    history_note: str | None = None  # e.g. "History unavailable: Prometheus did not answer"
    vantage: str | None = None
    show_details: bool = False

    @property
    def endpoints(self) -> list[EndpointView]:
        """Every endpoint shown, group by group."""
        return [ep for group in self.groups for ep in group.endpoints]

    @property
    def banner(self) -> Banner:
        """The verdict: any down endpoint is an outage (major when more than half of those known are down)."""
        return banner([ep.state for ep in self.endpoints])


def banner(states: Sequence[State]) -> Banner:
    """The verdict over these states; endpoints not probed yet (unknown) count neither way."""
    known = [s for s in states if s is not State.UNKNOWN]
    if not known:
        return Banner.NO_DATA
    down = sum(s is State.DOWN for s in known)
    if down * 2 > len(known):
        return Banner.MAJOR_OUTAGE
    if down:
        return Banner.PARTIAL_OUTAGE
    if any(s is State.DEGRADED for s in known):
        return Banner.DEGRADED
    return Banner.OPERATIONAL
