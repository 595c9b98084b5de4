"""The agent's own bounded probe history of every endpoint, for the public status page.

Kept in memory per endpoint, in rings indexed by period number (``floor(t / period)``), the
oldest row reused for the newest:

  - per minute, the last 1440 (24 h): probes, failed probes, milliseconds down;
  - per 15 minutes, the last 96 (24 h): probe durations in the store's buckets
    (``DEFAULT_BUCKETS`` and +Inf), failed probes included, as in ``upwatch_probe_duration_seconds``;
  - per UTC day, the last 90 (today included): probes, failed probes, milliseconds down;
  - the incidents: at most ``MAX_INCIDENTS``, none that ended before the oldest of those 90 days.

A probe counts in the minute, slot and day in which it started (``ProbeResult.started_at``), the
time ``EndpointState`` uses for everything.

Down
  An endpoint is down from ``Transition.at`` of its transition into ``down`` (the first failed
  probe of the streak that opened the incident) to ``Transition.at`` of its transition out of
  ``down`` (the first good probe of the streak that closed it): the interval whose length
  ``upwatch_endpoint_downtime_seconds_total`` counts. When the interval closes, it is split into
  the minutes and days it covers, in whole milliseconds (its ends rounded to the millisecond), so
  that minute, day and window sums agree to the millisecond. An interval still open counts up to
  ``now``, the clock at summary time; a period of it that closes only later counts then.

Known
  An endpoint is known from the start of its first recorded probe (``known_since``). The known
  seconds of a window are ``now - max(window start, known_since)``; of a day,
  ``min(day end, now) - max(day start, known_since)``; never below 0.

Uptime of a window or a day
  ``1 - down seconds / known seconds``, clamped to [0, 1]; None when none of it is known, and, for
  a day, when it had no probes.

Windows (``EndpointHistory.last_24h`` ... ``last_90d``)
  Every window ends at ``now`` and starts on a period boundary:
  - 24 h: the current minute, partial up to ``now``, and the 1439 minutes before it, from the
    minute rings: between 23 h 59 min and 24 h long.
  - 7 d, 30 d, 90 d: the current UTC day, partial up to ``now``, and the 6, 29 or 89 whole UTC days
    before it, from the day rings: between N - 1 and N days long. The N-day window is exactly the
    last N day bars, and its uptime is theirs taken together (down over known, not a mean of
    ratios). Its probes and failures are those started in it (``increase(upwatch_probes_total)``
    by ``result``).

Day bars (``EndpointHistory.days``)
  90, oldest first, today (partial up to ``now``) last: probes, failed probes, down seconds and
  uptime of the day, and the incidents of the history that overlap it (``[start, end)``, or
  ``[start, now)`` while open). An incident dropped by the bound is missing from its days' bars,
  though its seconds still count in them.

Response times (``EndpointHistory.response_times``)
  96 slots of 15 minutes, oldest first, the current (partial) slot last: p50 and p95 of the
  durations of the probes started in the slot, interpolated inside a bucket exactly as
  Prometheus's ``histogram_quantile`` does for a classic histogram (the first bucket starts at 0;
  a quantile that falls in the +Inf bucket is the highest finite bound); None without probes.

Incidents (``EndpointHistory.incidents``)
  Oldest first: start, end (None while open), duration (up to ``now`` while open), and the
  ``reason`` and ``message`` of the failed probe whose result caused the transition into ``down``,
  a message longer than ``MAX_MESSAGE`` characters cut to its first ``MAX_MESSAGE - 1`` and "…".
  The oldest are dropped first beyond ``MAX_INCIDENTS``.

Compared with the recording rules ``endpoint:upwatch_endpoint_uptime:ratio1h/1d/7d/30d``
(``clamp(1 - increase(upwatch_endpoint_downtime_seconds_total[w]) / w, 0, 1)``), which these
figures should match:
  1. Prometheus's windows slide (``[now - w, now)``); these start on a minute or a UTC midnight, so
     they are shorter by up to a minute (24 h) or a day (7 d, 30 d, 90 d). Down seconds agree when
     the endpoint was not down in that difference.
  2. The rules divide by the whole window; these divide by the known seconds. They agree once the
     endpoint has been probed for the whole window; before that the rules count the time before
     its first probe as up. On a whole window the ratios differ by the lengths in 1 even at equal
     down seconds: compare down seconds, or uptime over the same known seconds.
  3. The agent's counter grows when results arrive: confirming an incident adds the failures
     before it at once, and between two results of an open incident it stands still;
     ``increase()`` places the seconds where the counter grew and extrapolates to the window's
     edges. Here each down second is placed where it was, and an open incident counts up to
     ``now``. Near a window's edges the two differ by up to ``failure_threshold`` probe intervals
     plus a scrape interval.
  4. While a recovery is being confirmed (``success_threshold`` > 1) the counter stops at its first
     good probe; here the endpoint is still down until the transition. Once it comes, both end the
     incident at that first good probe; if the recovery fails, both count it as down.
  5. Seconds are whole milliseconds here, floats there.
  6. There is no 90-day rule. This history lives in memory: it starts empty when the agent starts.

Costs (bench/history_memory.py measures them)
  ``record`` is O(1): a lock, one row of each ring, a few increments (about 3 us); a ring moving
  to a later period clears the rows it skips (at most its length). Closing an incident writes each
  of its minutes (at most 1440) and days (at most 90). ``summary`` copies one endpoint's rings
  under the lock (about 14 KB) and computes outside it (about 1 ms). Memory: about 14 KB per
  endpoint for the rings, plus some 25 bytes per incident and its message, one copy per distinct
  text: 8 MiB for 500 endpoints with 90 days of probes and some 45 incidents each; 8.6 MiB with
  the full 100 incidents each, or 14 MiB if every one of those had a message of its own.
"""

from __future__ import annotations

import datetime
import math
import threading
import time
from array import array
from bisect import bisect_left
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from itertools import accumulate

from exporter.results import FailureReason, ProbeResult
from exporter.state import State, Transition
from exporter.store import DEFAULT_BUCKETS

MINUTE = 60
SLOT = 15 * MINUTE  # one point of the response-time series
DAY = 86_400
MINUTES_KEPT = 24 * 60
SLOTS_KEPT = 24 * 4
DAYS_KEPT = 90
MAX_INCIDENTS = 100
MAX_MESSAGE = 200  # characters of an incident's message kept, the last of a longer one an ellipsis

# Columns of the minute and day rings.
_PROBES, _FAILURES, _DOWN_MS = 0, 1, 2
# Incident reasons are kept as one byte each: an index into this tuple.
_REASONS: tuple[FailureReason | None, ...] = (None, *FailureReason)
_REASON_CODES: dict[FailureReason | None, int] = {reason: code for code, reason in enumerate(_REASONS)}


@dataclass(frozen=True, slots=True)
class Incident:
    """One period down: from the first failed probe of the streak that opened it to the first good one that ended it."""

    start: float
    end: float | None  # None while open
    duration: float  # up to the summary's time while open
    reason: FailureReason | None  # of the failed probe that opened it
    message: str


@dataclass(frozen=True, slots=True)
class Window:
    """Figures of one window ending at the summary's time (see the module docstring for its start)."""

    start: float
    known_seconds: float
    down_seconds: float
    probes: int
    failures: int
    uptime: float | None  # None when nothing of the window is known


@dataclass(frozen=True, slots=True)
class DayBar:
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


@dataclass(frozen=True, slots=True)
class ResponseSlot:
    """Response-time quantiles of the probes started in one 15-minute slot."""

    start: float
    probes: int
    p50: float | None  # None without probes
    p95: float | None


@dataclass(frozen=True, slots=True)
class EndpointHistory:
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


class _Ring:
    """`slots` rows of `width` integer cells, one row per period number; a later period reuses the oldest row."""

    __slots__ = ("cells", "head", "slots", "width")

    def __init__(self, slots: int, width: int, typecode: str) -> None:
        self.slots = slots
        self.width = width
        self.cells = array(typecode, bytes(slots * width * array(typecode).itemsize))
        self.head = -1  # the latest period held; rows of head - slots + 1 .. head are valid

    def copy(self) -> _Ring:
        """An independent copy."""
        ring = _Ring.__new__(_Ring)
        ring.slots, ring.width, ring.cells, ring.head = self.slots, self.width, self.cells[:], self.head
        return ring

    def row(self, n: int) -> int:
        """Offset of period `n`'s row, moving the ring on to `n` if it is later; -1 when `n` is too old to keep."""
        if n > self.head:
            self._clear(max(self.head + 1, n - self.slots + 1), n)
            self.head = n
        elif n <= self.head - self.slots:
            return -1
        return (n % self.slots) * self.width

    def count(self, n: int, failed: int) -> None:
        """Count one probe, failed (1) or not (0), in period `n` of a ring of probes, failures and milliseconds down."""
        row = self.row(n)
        if row >= 0:
            self.cells[row + _PROBES] += 1
            self.cells[row + _FAILURES] += failed

    def values(self, n: int) -> Sequence[int]:
        """The row of period `n`, all zeros for a period the ring does not hold."""
        if n > self.head or n <= self.head - self.slots:
            return (0,) * self.width
        offset = (n % self.slots) * self.width
        return self.cells[offset : offset + self.width]

    def total(self, first: int, last: int, column: int) -> int:
        """Sum of `column` over periods first..last, those the ring holds."""
        first = max(first, self.head - self.slots + 1)
        last = min(last, self.head)
        if first > last:
            return 0
        w = self.width
        a, b = first % self.slots, last % self.slots
        if a <= b:
            return sum(self.cells[a * w + column : b * w + column + 1 : w])
        return sum(self.cells[a * w + column :: w]) + sum(self.cells[column : b * w + column + 1 : w])

    def spread(self, start_ms: int, end_ms: int, period_ms: int, column: int) -> None:
        """Add the milliseconds of [start_ms, end_ms) to `column` of each period they cover that the ring holds."""
        first = max(start_ms // period_ms, self.head - self.slots + 1)
        last = min((end_ms - 1) // period_ms, self.head)
        for n in range(first, last + 1):
            lo = max(start_ms, n * period_ms)
            hi = min(end_ms, (n + 1) * period_ms)
            self.cells[(n % self.slots) * self.width + column] += hi - lo

    def _clear(self, first: int, last: int) -> None:
        """Zero the rows of periods first..last, at most a whole ring."""
        slots, width, cells = self.slots, self.width, self.cells
        count = min(last - first + 1, slots)
        a = first % slots
        b = a + count
        if b <= slots:
            cells[a * width : b * width] = _zeros(cells, count * width)
        else:  # wraps round the end of the ring
            cells[a * width :] = _zeros(cells, (slots - a) * width)
            cells[: (b - slots) * width] = _zeros(cells, (b - slots) * width)


def _zeros(like: array[int], count: int) -> array[int]:
    return array(like.typecode, bytes(count * like.itemsize))


class _Incidents:
    """The incident history of one endpoint: parallel arrays, oldest first; an open one has a NaN end."""

    __slots__ = ("ends", "messages", "reasons", "starts")

    def __init__(self) -> None:
        self.starts = array("d")
        self.ends = array("d")
        self.reasons = array("B")
        self.messages: list[str] = []

    def copy(self) -> _Incidents:
        """An independent copy."""
        copy = _Incidents()
        copy.starts, copy.ends, copy.reasons, copy.messages = (
            self.starts[:],
            self.ends[:],
            self.reasons[:],
            self.messages[:],
        )
        return copy

    @property
    def down_since(self) -> float | None:
        """Start of the open incident; None when there is none."""
        return self.starts[-1] if self.ends and math.isnan(self.ends[-1]) else None

    def open(self, at: float, reason: FailureReason | None, message: str, horizon: float) -> None:
        """Add an open incident, dropping those that ended by `horizon` and the oldest beyond the bound."""
        self._drop(sum(1 for end in self.ends if end <= horizon))
        if len(self.starts) >= MAX_INCIDENTS:
            self._drop(len(self.starts) - MAX_INCIDENTS + 1)
        self.starts.append(at)
        self.ends.append(math.nan)
        self.reasons.append(_REASON_CODES[reason])
        if len(message) > MAX_MESSAGE:
            message = message[: MAX_MESSAGE - 1] + "…"
        # Keep one copy of a message the endpoint failed with before: most incidents repeat one.
        self.messages.append(next((m for m in reversed(self.messages) if m == message), message))

    def close(self, at: float) -> None:
        """End the open incident at `at`."""
        self.ends[-1] = at

    def listed(self, now: float, horizon: float) -> list[Incident]:
        """The incidents that end after `horizon`, as records, an open one up to `now`."""
        incidents = []
        for start, end, code, message in zip(self.starts, self.ends, self.reasons, self.messages, strict=True):
            if math.isnan(end):
                incidents.append(Incident(start, None, max(now - start, 0.0), _REASONS[code], message))
            elif end > horizon:
                incidents.append(Incident(start, end, end - start, _REASONS[code], message))
        return incidents

    def _drop(self, count: int) -> None:
        # Ends never decrease (one incident at a time), so the ones to drop lead the arrays.
        if count > 0:
            del self.starts[:count], self.ends[:count], self.reasons[:count], self.messages[:count]


class _Entry:
    """What is kept about one endpoint; only touched with the history's lock held, or as a private copy."""

    __slots__ = ("days", "incidents", "known_since", "minutes", "slots")

    def __init__(self, histogram_buckets: int) -> None:
        self.minutes = _Ring(MINUTES_KEPT, 3, "H")  # a minute holds at most 60,000 ms and 65,535 probes
        self.slots = _Ring(SLOTS_KEPT, histogram_buckets, "H")
        self.days = _Ring(DAYS_KEPT, 3, "I")
        self.incidents = _Incidents()
        self.known_since = math.inf

    def copy(self) -> _Entry:
        """An independent copy, to compute from outside the lock."""
        entry = _Entry.__new__(_Entry)
        entry.minutes, entry.slots, entry.days = self.minutes.copy(), self.slots.copy(), self.days.copy()
        entry.incidents, entry.known_since = self.incidents.copy(), self.known_since
        return entry


class History:
    """Bounded per-minute, per-15-minute and per-day probe history of every endpoint, and its incidents.

    `record` is called from the event loop for every probe result; `summary` and `summaries` may
    be called from other threads.
    """

    def __init__(self, clock: Callable[[], float] = time.time, buckets: Sequence[float] = DEFAULT_BUCKETS) -> None:
        self._clock = clock
        self._buckets = tuple(float(b) for b in buckets)
        self._lock = threading.Lock()
        self._entries: dict[str, _Entry] = {}

    def record(self, result: ProbeResult, transition: Transition | None) -> None:
        """Count one probe result and the transition it caused, if any (what `ResultStore.record` returned)."""
        t = result.started_at
        minute = int(t // MINUTE)
        bucket = bisect_left(self._buckets, result.duration_seconds)  # first bound >= duration: `le`
        failed = 0 if result.success else 1
        with self._lock:
            entry = self._entries.get(result.endpoint)
            if entry is None:
                entry = self._entries[result.endpoint] = _Entry(len(self._buckets) + 1)
            if t < entry.known_since:
                entry.known_since = t
            entry.minutes.count(minute, failed)
            entry.days.count(minute // MINUTES_KEPT, failed)
            row = entry.slots.row(minute // (SLOT // MINUTE))
            if row >= 0:
                entry.slots.cells[row + bucket] += 1
            if transition is not None:
                self._transition(entry, result, transition)

    def forget(self, names: Iterable[str]) -> None:
        """Drop the history of these endpoints."""
        with self._lock:
            for name in names:
                self._entries.pop(name, None)

    def retain(self, names: Iterable[str]) -> None:
        """Drop the history of every endpoint not named (after a reload); a late result of a dropped one starts anew."""
        keep = set(names)
        with self._lock:
            self._entries = {name: entry for name, entry in self._entries.items() if name in keep}

    def names(self) -> tuple[str, ...]:
        """The endpoints with a history, in the order of their first result."""
        with self._lock:
            return tuple(self._entries)

    def summary(self, name: str) -> EndpointHistory:
        """The figures of one endpoint as of now; all empty for an endpoint without results."""
        return self._summary(name, self._clock())

    def summaries(self) -> dict[str, EndpointHistory]:
        """The figures of every endpoint with a history, all as of the same moment."""
        now = self._clock()
        return {name: self._summary(name, now) for name in self.names()}

    def _summary(self, name: str, now: float) -> EndpointHistory:
        with self._lock:
            entry = self._entries.get(name)
            copy = entry.copy() if entry is not None else None
        return _summarize(name, copy if copy is not None else _Entry(len(self._buckets) + 1), now, self._buckets)

    @staticmethod
    def _transition(entry: _Entry, result: ProbeResult, transition: Transition) -> None:
        if State.DOWN not in (transition.old, transition.new):
            return
        incidents = entry.incidents
        down_since = incidents.down_since
        if down_since is not None:  # out of down (or, which EndpointState never does, into it twice)
            start_ms, end_ms = round(down_since * 1000), round(transition.at * 1000)
            entry.minutes.spread(start_ms, end_ms, MINUTE * 1000, _DOWN_MS)
            entry.days.spread(start_ms, end_ms, DAY * 1000, _DOWN_MS)
            incidents.close(transition.at)
        if transition.new is State.DOWN:
            entry.known_since = min(entry.known_since, transition.at)
            horizon = (int(transition.at // DAY) - DAYS_KEPT + 1) * DAY
            incidents.open(transition.at, result.reason, result.message, horizon)


def _summarize(name: str, entry: _Entry, now: float, buckets: tuple[float, ...]) -> EndpointHistory:
    """Compute the figures of one endpoint from a private copy of its data."""
    minute, today = math.floor(now / MINUTE), math.floor(now / DAY)
    first_day = today - DAYS_KEPT + 1
    down_since = entry.incidents.down_since
    open_ms = None if down_since is None else (round(down_since * 1000), round(now * 1000))

    def window(ring: _Ring, first: int, last: int, period: int) -> Window:
        start = first * period
        down_ms = ring.total(first, last, _DOWN_MS) + _overlap_ms(open_ms, start, now)
        known = max(now - max(start, entry.known_since), 0.0)
        return Window(
            start=float(start),
            known_seconds=known,
            down_seconds=down_ms / 1000,
            probes=ring.total(first, last, _PROBES),
            failures=ring.total(first, last, _FAILURES),
            uptime=_uptime(down_ms, known),
        )

    incidents = entry.incidents.listed(now, first_day * DAY)
    return EndpointHistory(
        endpoint=name,
        at=now,
        last_24h=window(entry.minutes, minute - MINUTES_KEPT + 1, minute, MINUTE),
        last_7d=window(entry.days, today - 6, today, DAY),
        last_30d=window(entry.days, today - 29, today, DAY),
        last_90d=window(entry.days, first_day, today, DAY),
        days=_day_bars(entry, first_day, now, incidents, open_ms),
        response_times=_response_times(entry.slots, now, buckets),
        incidents=tuple(incidents),
    )


def _day_bars(
    entry: _Entry, first_day: int, now: float, incidents: Sequence[Incident], open_ms: tuple[int, int] | None
) -> tuple[DayBar, ...]:
    """The bars of the days from `first_day` to today."""
    touching: list[list[Incident]] = [[] for _ in range(DAYS_KEPT)]
    for incident in incidents:
        first = math.floor(incident.start / DAY)
        last = max(math.ceil((now if incident.end is None else incident.end) / DAY) - 1, first)  # its end is out
        for day in range(max(first, first_day), min(last, first_day + DAYS_KEPT - 1) + 1):
            touching[day - first_day].append(incident)

    bars = []
    for day, overlapping in enumerate(touching, start=first_day):
        start = day * DAY
        end = min(start + DAY, now)
        probes, failures, down_ms = entry.days.values(day)
        down_ms += _overlap_ms(open_ms, start, end)
        uptime = _uptime(down_ms, end - max(start, entry.known_since)) if probes else None
        bars.append(DayBar(float(start), probes, failures, down_ms / 1000, uptime, tuple(overlapping)))
    return tuple(bars)


def _response_times(ring: _Ring, now: float, buckets: tuple[float, ...]) -> tuple[ResponseSlot, ...]:
    """The response-time series of the slots of the last 24 hours."""
    slots = []
    current = math.floor(now / SLOT)
    for n in range(current - SLOTS_KEPT + 1, current + 1):
        cumulative = list(accumulate(ring.values(n)))
        p50, p95 = histogram_quantile(0.5, cumulative, buckets), histogram_quantile(0.95, cumulative, buckets)
        slots.append(ResponseSlot(float(n * SLOT), cumulative[-1], p50, p95))
    return tuple(slots)


def _overlap_ms(interval: tuple[int, int] | None, start: float, end: float) -> int:
    """Milliseconds of the interval [a, b) (in ms; None for none) inside [start, end) (in seconds)."""
    if interval is None:
        return 0
    a, b = interval
    return max(min(b, round(end * 1000)) - max(a, round(start * 1000)), 0)


def _uptime(down_ms: int, known: float) -> float | None:
    if known <= 0:
        return None
    return min(max(1 - down_ms / 1000 / known, 0.0), 1.0)


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
