"""The figures of the status page's history, as immutable records, and the quantile of a classic histogram.

The agent's own history (`exporter.history.History`) and the history read from Prometheus
(`exporter.status.prometheus`) both give them. Their meaning is set out in `exporter.history`.
"""

from __future__ import annotations

import datetime
from bisect import bisect_left
from collections.abc import Sequence
from typing import NamedTuple

from exporter.results import FailureReason

SLOT = 30 * 60  # one point of the response-time series, and the step of the 24-hour window's start
DAY = 86_400
SLOTS_KEPT = 24 * 2
DAYS_KEPT = 90
MAX_INCIDENTS = 100
MAX_MESSAGE = 200  # characters of an incident's message kept, the last of a longer one an ellipsis


class Incident(NamedTuple):
    """One period down: from the first failed probe of the streak that opened it to the first good one that ended it."""

    start: float
    end: float | None  # None while open
    duration: float  # up to the summary's time while open
    reason: FailureReason | None  # of the failed probe that opened it
    message: str
    vantage: str | None = None  # where it was seen, when read from Prometheus; None: this agent's own


class Window(NamedTuple):
    """Figures of one window ending at the summary's time (see the module docstring for its start)."""

    start: float
    known_seconds: float
    down_seconds: float
    probes: int
    failures: int
    uptime: float | None  # None when nothing of the window is known


class DayBar(NamedTuple):
    """One UTC day of the status page's bar chart."""

    start: float  # midnight UTC, unix seconds
    probes: int
    failures: int
    down_seconds: float
    uptime: float | None  # None when the day had no probes
    incidents: tuple[Incident, ...]  # those of the history that overlap the day

    @property
    def date(self) -> datetime.date:
        """The UTC date of the day."""
        return datetime.datetime.fromtimestamp(self.start, datetime.UTC).date()


class ResponseSlot(NamedTuple):
    """Response-time quantiles of the probes started in one 30-minute slot."""

    start: float
    probes: int
    p50: float | None  # None without probes
    p95: float | None


class EndpointHistory(NamedTuple):
    """Everything the status page shows about one endpoint, computed at one moment (`at`)."""

    endpoint: str
    at: float
    last_24h: Window
    last_7d: Window
    last_30d: Window
    last_90d: Window
    days: tuple[DayBar, ...]  # DAYS_KEPT, oldest first, today last
    response_times: tuple[ResponseSlot, ...]  # SLOTS_KEPT, oldest first, the current slot last
    incidents: tuple[Incident, ...]  # oldest first


def histogram_quantile(q: float, cumulative: Sequence[int], bounds: Sequence[float]) -> float | None:
    """The q-quantile (0 < q <= 1) of a classic histogram, as Prometheus's histogram_quantile; None when it is empty.

    `cumulative` are the bucket counts as Prometheus has them (observations <= each bound), one per
    bound in `bounds` and the +Inf bucket last, like `EndpointSnapshot.bucket_counts`.
    """
    observations = cumulative[-1]
    if observations == 0:
        return None
    rank = q * observations
    b = bisect_left(cumulative, rank, 0, len(bounds))  # the first finite bucket holding the rank-th observation
    if b == len(bounds):
        return bounds[-1]  # in the +Inf bucket: the highest finite bound
    if b == 0 and bounds[0] <= 0:
        return bounds[0]
    start, below = (bounds[b - 1], cumulative[b - 1]) if b > 0 else (0.0, 0)
    return start + (bounds[b] - start) * ((rank - below) / (cumulative[b] - below))
