"""The agent's own bounded probe history of every endpoint, for the public status page.

Kept in memory per endpoint, in rings indexed by period number (``floor(t / period)``), the
oldest row reused for the newest, and moved on by the latest probe start recorded:

  - per UTC day, the last 90 (today included): probes and failed probes;
  - per 30-minute slot, the last 48 (24 h): probes, failed probes, and the p50 and p95 of their
    durations, fixed when the slot closes (when a probe of a later slot is recorded); until then
    the latest slot's durations are counted in the store's buckets (``DEFAULT_BUCKETS`` and +Inf),
    failed probes included, as in ``upwatch_probe_duration_seconds``;
  - the incidents: start and end in whole milliseconds, reason and message; at most
    ``MAX_INCIDENTS``, none that ended before the oldest of those 90 days. The down milliseconds of
    an incident dropped beyond the bound are added, per day and per slot, to counts kept from then on.

A probe counts in the slot and day in which it started (``ProbeResult.started_at``), the time
``EndpointState`` uses for everything.

Down
  An endpoint is down from ``Transition.at`` of its transition into ``down`` (the first failed
  probe of the streak that opened the incident) to ``Transition.at`` of its transition out of
  ``down`` (the first good probe of the streak that closed it): the interval whose length
  ``upwatch_endpoint_downtime_seconds_total`` counts. Its ends are kept rounded to the millisecond
  (and an incident never starts before the previous one ended, even if a clock stepped back). The
  down seconds of a day or window are the milliseconds of these intervals inside it, computed at
  summary time from the intervals themselves: day, window and incident figures agree to the
  millisecond. An interval still open counts up to ``now``, the clock at summary time.

Known
  An endpoint is known from the start of its first recorded probe (``known_since``). The known
  seconds of a window are ``now - max(window start, known_since)``; of a day,
  ``min(day end, now) - max(day start, known_since)``; never below 0.

Uptime of a window or a day
  ``1 - down seconds / known seconds``, clamped to [0, 1]; None when none of it is known, and, for
  a day, when it had no probes.

Windows (``EndpointHistory.last_24h`` ... ``last_90d``)
  Every window ends at ``now`` and starts on a period boundary; its probes, failures and down
  seconds are those from its start to ``now``:
  - 24 h: the current 30-minute slot, partial up to ``now``, and the 47 slots before it: between
    23 h 30 min and 24 h long.
  - 7 d, 30 d, 90 d: the current UTC day, partial up to ``now``, and the 6, 29 or 89 whole UTC days
    before it: between N - 1 and N days long. The N-day window is exactly the last N day bars, and
    its uptime is theirs taken together (down over known, not a mean of ratios). Its probes and
    failures are those started in it (``increase(upwatch_probes_total)`` by ``result``).

Day bars (``EndpointHistory.days``)
  90, oldest first, today (partial up to ``now``) last: probes, failed probes, down seconds and
  uptime of the day, and the incidents of the history that overlap it (``[start, end)``, or
  ``[start, now)`` while open). An incident dropped by the bound is missing from its days' bars,
  though its seconds still count in them.

Response times (``EndpointHistory.response_times``)
  48 slots of 30 minutes, oldest first, the current (partial) slot last: p50 and p95 of the
  durations of the probes started in the slot, interpolated inside a bucket exactly as
  Prometheus's ``histogram_quantile`` does for a classic histogram (the first bucket starts at 0;
  a quantile that falls in the +Inf bucket is the highest finite bound), rounded to the
  microsecond; None without probes. A slot's quantiles are fixed when it closes: a result of an
  earlier slot recorded after that counts in the slot's probes but not in its quantiles. (One probe
  of an endpoint runs at a time, so its results come in the order they started, unless the wall
  clock steps back.)

Incidents (``EndpointHistory.incidents``)
  Oldest first: start, end (None while open) and duration (up to ``now`` while open), in seconds to
  the millisecond, and the ``reason`` and ``message`` of the failed probe whose result caused the
  transition into ``down``, a message longer than ``MAX_MESSAGE`` characters cut to its first
  ``MAX_MESSAGE - 1`` and "…". The oldest are dropped first beyond ``MAX_INCIDENTS``.

Compared with the recording rules ``endpoint:upwatch_endpoint_uptime:ratio1h/1d/7d/30d``
(``clamp(1 - increase(upwatch_endpoint_downtime_seconds_total[w]) / w, 0, 1)``), which these
figures should match:
  1. Prometheus's windows slide (``[now - w, now)``); these start on a 30-minute slot or a UTC
     midnight, so they are shorter by up to 30 minutes (24 h) or a day (7 d, 30 d, 90 d). Down
     seconds agree when the endpoint was not down in that difference.
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
  ``record`` is O(1): a lock, a row of each ring, a few increments (2 to 6 us); a ring moving to a
  later period clears the rows it skips (at most its length), and closing a slot computes its two
  quantiles. ``summary`` copies one endpoint's arrays under the lock (some 2 KB) and computes
  outside it: the down milliseconds of any interval come from the incidents' ends by bisection and
  running sums. It builds a record per incident, per day bar an incident overlaps (those of plain
  days are shared by the endpoints alike in one ``summaries``), per response slot and per window:
  most of its time goes there and to the bars of days with incidents. ``summaries`` of 500
  endpoints with 90 days of probes took 118 to 129 ms with some 43 incidents each, 55 to 62 ms
  with some 4.
  Memory per endpoint: 1,568 B of counts (one array of uint32: 720 for the days, 768 for the
  slots, 80 for the latest slot and its histogram) and 18 B per incident (two int64, two bytes),
  each distinct message once, plus headers: tracemalloc counts 1,736 B for an endpoint without
  incidents, 3,972 B with the full 100 sharing one message. With some 43 incidents each, RSS grew
  by 1.15 MiB for 500 endpoints (tracemalloc: 3,185 B each, the benchmark's names of endpoints
  included) and by 14.98 MiB for 5,000 (3,142 B each).
"""

from __future__ import annotations

import dataclasses
import datetime
import math
import threading
import time
from array import array
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from itertools import accumulate, repeat
from operator import sub
from typing import Any, TypeVar

from exporter.results import FailureReason, ProbeResult
from exporter.state import State, Transition
from exporter.store import DEFAULT_BUCKETS

SLOT = 30 * 60  # one point of the response-time series, and the step of the 24-hour window's start
DAY = 86_400
SLOTS_KEPT = 24 * 2
DAYS_KEPT = 90
MAX_INCIDENTS = 100
MAX_MESSAGE = 200  # characters of an incident's message kept, the last of a longer one an ellipsis

_SLOT_MS, _DAY_MS = SLOT * 1000, DAY * 1000
# Incident reasons are kept as one byte each: an index into this tuple.
_REASONS: tuple[FailureReason | None, ...] = (None, *FailureReason)
_REASON_CODES: dict[FailureReason | None, int] = {reason: code for code, reason in enumerate(_REASONS)}
_MAX_CELL = 2**32 - 1
_OPEN = 2**63 - 1  # the end of an open incident: after every other


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
    """Response-time quantiles of the probes started in one 30-minute slot."""

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


@dataclass(frozen=True, slots=True)
class _Ring:
    """Where a ring lives in an array of cells: `size` rows of `width` cells from `base`, period n in row n % size.

    A ring holds the `size` periods up to its latest one, `head`, which its owner keeps.
    """

    base: int
    width: int
    size: int
    period: int  # seconds

    def offset(self, n: int) -> int:
        """Where the row of period `n` starts."""
        return self.base + (n % self.size) * self.width

    def clear(self, cells: array[int], first: int, last: int) -> None:
        """Zero the rows of periods first..last, at most a whole ring."""
        count = min(last - first + 1, self.size)
        if count <= 0:
            return
        a = first % self.size
        _zero(cells, self.base + a * self.width, min(a + count, self.size) - a, self.width)
        if a + count > self.size:  # wraps round the end of the ring
            _zero(cells, self.base, a + count - self.size, self.width)

    def rows(self, cells: array[int], first: int, head: int) -> list[int]:
        """The cells of the periods first .. first + size - 1, row after row, zeros for those the ring does not hold."""
        size, width = self.size, self.width
        values = cells[self.base : self.base + size * width].tolist()
        s = (first % size) * width
        values = values[s:] + values[:s]  # the row of period first + i is now the i-th
        lo, hi = max(head - size + 1 - first, 0), min(head - first, size - 1)  # those held
        if lo > hi:
            return [0] * (size * width)
        values[: lo * width] = repeat(0, lo * width)
        values[(hi + 1) * width :] = repeat(0, (size - 1 - hi) * width)
        return values


def _zero(cells: array[int], start: int, rows: int, width: int) -> None:
    cells[start : start + rows * width] = array(cells.typecode, bytes(rows * width * cells.itemsize))


# The counting cells of an endpoint, one array of uint32: per day probes and failures; per slot
# probes, failures and the p50 and p95 in microseconds plus one (0 for none), set when the slot
# closes; the latest slot with a probe, the head of both rings (a day is whole slots); then the
# bucket counts of the latest slot's durations, from which its quantiles come.
_DAYS = _Ring(base=0, width=2, size=DAYS_KEPT, period=DAY)
_SLOTS = _Ring(base=DAYS_KEPT * 2, width=4, size=SLOTS_KEPT, period=SLOT)
_SLOTS_PER_DAY = DAY // SLOT
_HEAD = DAYS_KEPT * 2 + SLOTS_KEPT * 4
_HISTOGRAM = _HEAD + 1
_PROBES, _FAILURES, _P50, _P95 = 0, 1, 2, 3
# Milliseconds down of the incidents the bound dropped, per day and per slot: allocated when it first drops one.
_DAYS_DROPPED = _Ring(base=0, width=1, size=DAYS_KEPT, period=DAY)
_SLOTS_DROPPED = _Ring(base=DAYS_KEPT, width=1, size=SLOTS_KEPT, period=SLOT)


class _Incidents:
    """The incident history of one endpoint, oldest first: parallel arrays, times in whole milliseconds."""

    __slots__ = ("codes", "dropped", "texts", "times")

    # The arrays grow by concatenation, which allocates them to the size (append leaves room).
    def __init__(self) -> None:
        self.times = array("q")  # start and end of each, an open one's end _OPEN
        self.codes = array("B")  # reason and message of each: indices into _REASONS and texts
        self.texts: tuple[str, ...] = ()  # the messages, each once: most incidents of an endpoint repeat one
        self.dropped: array[int] | None = None  # see _DAYS_DROPPED

    def copy(self) -> _Incidents:
        """An independent copy."""
        copy = _Incidents.__new__(_Incidents)
        copy.times, copy.codes, copy.texts = self.times[:], self.codes[:], self.texts
        copy.dropped = None if self.dropped is None else self.dropped[:]
        return copy

    @property
    def is_open(self) -> bool:
        """Whether the latest incident is still open."""
        return bool(self.times) and self.times[-1] == _OPEN

    def open(self, at_ms: int, reason: FailureReason | None, message: str, horizon_ms: int) -> list[tuple[int, int]]:
        """Add an open incident, dropping those that ended by `horizon_ms`; return those dropped beyond the bound."""
        ends = self.times[1::2]
        self._drop(bisect_right(ends, horizon_ms))
        dropped = []
        if len(self.times) // 2 >= MAX_INCIDENTS:
            count = len(self.times) // 2 - MAX_INCIDENTS + 1
            dropped = list(zip(self.times[: 2 * count : 2], self.times[1 : 2 * count : 2], strict=True))
            self._drop(count)
        # One at a time, in order, even if a clock stepped back: the summaries rely on it.
        self.times = self.times + array("q", (max(at_ms, ends[-1]) if ends else at_ms, _OPEN))
        if len(message) > MAX_MESSAGE:
            message = message[: MAX_MESSAGE - 1] + "\u2026"
        if message not in self.texts:
            self.texts = (*self.texts, message)
        self.codes = self.codes + array("B", (_REASON_CODES[reason], self.texts.index(message)))
        return dropped

    def close(self, at_ms: int) -> None:
        """End the open incident at `at_ms`."""
        self.times[-1] = max(at_ms, self.times[-2])

    def _drop(self, count: int) -> None:
        # Ends never decrease, so the ones to drop lead the arrays.
        if count <= 0:
            return
        self.times, self.codes = self.times[2 * count :], self.codes[2 * count :]
        used = sorted(set(self.codes[1::2]))
        if len(used) < len(self.texts):  # forget the messages of none kept; at most MAX_INCIDENTS remain
            self.texts = tuple(self.texts[i] for i in used)
            renumbered = {old: new for new, old in enumerate(used)}
            self.codes[1::2] = array("B", [renumbered[i] for i in self.codes[1::2]])


class _Entry:
    """What is kept about one endpoint; only touched with the history's lock held, or as a private copy."""

    __slots__ = ("cells", "incidents", "known_since")

    def __init__(self, t: float, buckets: int) -> None:
        self.cells = array("I", [0]) * (_HISTOGRAM + buckets)  # allocated to the size, unlike array("I", bytes(n))
        self.cells[_HEAD] = int(t // SLOT)
        self.known_since = t
        self.incidents: _Incidents | None = None

    def copy(self) -> _Entry:
        """An independent copy, to compute from outside the lock."""
        entry = _Entry.__new__(_Entry)
        entry.cells, entry.known_since = self.cells[:], self.known_since
        entry.incidents = None if self.incidents is None else self.incidents.copy()
        return entry

    def count(self, t: float, bucket: int, failed: int, bounds: Sequence[float]) -> None:
        """Count one probe started at `t`, its duration in `bucket`, failed (1) or not (0)."""
        cells = self.cells
        slot, head = int(t // SLOT), cells[_HEAD]
        if slot > head:
            self._move_on(head, slot, bounds)
            head = slot
        elif t < self.known_since:
            self.known_since = t
        day = slot // _SLOTS_PER_DAY
        if day > head // _SLOTS_PER_DAY - DAYS_KEPT:
            row = _DAYS.offset(day)
            cells[row + _PROBES] += 1
            cells[row + _FAILURES] += failed
        if slot > head - SLOTS_KEPT:
            row = _SLOTS.offset(slot)
            cells[row + _PROBES] += 1
            cells[row + _FAILURES] += failed
            if slot == head:  # a late result of a closed slot is left out of its quantiles
                cells[_HISTOGRAM + bucket] += 1

    def _move_on(self, old: int, new: int, bounds: Sequence[float]) -> None:
        """Make slot `new` the latest: close slot `old` and clear the rows of the periods skipped."""
        cells, dropped = self.cells, self.incidents.dropped if self.incidents is not None else None
        old_day, new_day = old // _SLOTS_PER_DAY, new // _SLOTS_PER_DAY
        if new_day > old_day:
            _DAYS.clear(cells, old_day + 1, new_day)
            if dropped is not None:
                _DAYS_DROPPED.clear(dropped, old_day + 1, new_day)
        row = _SLOTS.offset(old)
        cells[row + _P50], cells[row + _P95] = _quantiles(cells[_HISTOGRAM:], bounds)
        _zero(cells, _HISTOGRAM, 1, len(cells) - _HISTOGRAM)
        _SLOTS.clear(cells, old + 1, new)
        if dropped is not None:
            _SLOTS_DROPPED.clear(dropped, old + 1, new)
        cells[_HEAD] = new

    def transition(self, result: ProbeResult, transition: Transition) -> None:
        """Open or close an incident on a transition into or out of down."""
        if State.DOWN not in (transition.old, transition.new):
            return
        at_ms = round(transition.at * 1000)
        incidents = self.incidents
        # Out of down (or, which EndpointState never does, into it twice).
        if incidents is not None and incidents.is_open:
            incidents.close(at_ms)
        if transition.new is State.DOWN:
            self.known_since = min(self.known_since, transition.at)
            if incidents is None:
                incidents = self.incidents = _Incidents()
            horizon_ms = (int(transition.at // DAY) - DAYS_KEPT + 1) * _DAY_MS
            for start_ms, end_ms in incidents.open(at_ms, result.reason, result.message, horizon_ms):
                self._keep_down(incidents, start_ms, end_ms)

    def _keep_down(self, incidents: _Incidents, a: int, b: int) -> None:
        """Add the milliseconds [a, b) of a dropped incident to the days and slots they fall in."""
        if incidents.dropped is None:
            incidents.dropped = array("I", [0]) * (DAYS_KEPT + SLOTS_KEPT)
        for ring in (_DAYS_DROPPED, _SLOTS_DROPPED):
            period = ring.period * 1000
            head = self.cells[_HEAD] * SLOT // ring.period
            for n in range(max(a // period, head - ring.size + 1), min((b - 1) // period, head) + 1):
                incidents.dropped[ring.offset(n)] += min(b, (n + 1) * period) - max(a, n * period)


def _quantiles(histogram: Sequence[int], bounds: Sequence[float]) -> tuple[int, int]:
    """p50 and p95 of bucket counts (not cumulative), as kept in a slot's row."""
    cumulative = list(accumulate(histogram))
    return _encode(histogram_quantile(0.5, cumulative, bounds)), _encode(histogram_quantile(0.95, cumulative, bounds))


def _encode(seconds: float | None) -> int:
    """Microseconds plus one, 0 for None: how a slot's row holds a quantile."""
    return 0 if seconds is None else min(max(round(seconds * 1e6), 0), _MAX_CELL - 1) + 1


class History:
    """Bounded per-30-minute and per-day probe history of every endpoint, and its incidents.

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
        bucket = bisect_left(self._buckets, result.duration_seconds)  # first bound >= duration: `le`
        failed = 0 if result.success else 1
        with self._lock:
            entry = self._entries.get(result.endpoint)
            if entry is None:
                entry = self._entries[result.endpoint] = _Entry(t, len(self._buckets) + 1)
            entry.count(t, bucket, failed, self._buckets)
            if transition is not None:
                entry.transition(result, transition)

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
        return self._summary(name, _Moment(self._clock()))

    def summaries(self) -> dict[str, EndpointHistory]:
        """The figures of every endpoint with a history, all as of the same moment."""
        moment = _Moment(self._clock())
        return {name: self._summary(name, moment) for name in self.names()}

    def _summary(self, name: str, moment: _Moment) -> EndpointHistory:
        with self._lock:
            entry = self._entries.get(name)
            copy = entry.copy() if entry is not None else None
        if copy is None:
            copy = _Entry(0.0, len(self._buckets) + 1)  # its rings hold nothing of the days shown
            copy.known_since = math.inf
        return _summarize(name, copy, moment, self._buckets)


class _Moment:
    """What the figures of every endpoint at one moment share: the periods shown, and the records alike for all."""

    __slots__ = (
        "day_indices",
        "day_starts",
        "day_starts_ms",
        "empty_slots",
        "first_day",
        "first_slot",
        "now",
        "now_ms",
        "plain_days",
        "today",
    )

    def __init__(self, now: float) -> None:
        self.now, self.now_ms = now, round(now * 1000)
        self.today = math.floor(now / DAY)
        self.first_day = self.today - DAYS_KEPT + 1
        self.first_slot = math.floor(now / SLOT) - SLOTS_KEPT + 1
        self.day_starts = [float(day * DAY) for day in range(self.first_day, self.today + 1)]
        self.day_starts_ms = [day * _DAY_MS for day in range(self.first_day, self.today + 1)]
        self.day_indices = set(range(DAYS_KEPT))
        self.empty_slots = [
            ResponseSlot(float(n * SLOT), 0, None, None) for n in range(self.first_slot, self.first_slot + SLOTS_KEPT)
        ]
        # The bar of a whole day, wholly known, that no incident of its endpoint overlaps depends on its
        # start, probes, failures and down milliseconds alone: endpoints alike share one.
        self.plain_days: dict[tuple[float, int, int, int], DayBar] = {}


_R = TypeVar("_R")


def _constructor(record: type[_R]) -> Callable[..., _R]:
    """A constructor of the frozen, slotted dataclass `record` (positional arguments only), 3 times as fast as its own.

    A summary of 500 endpoints builds some 65,000 records, and a frozen dataclass's ``__init__``
    sets each field through ``object.__setattr__`` (0.9 us for a DayBar here, against 0.3 us for
    this). This builds a mutable twin with the same slots, hence the same layout, and makes it an
    instance of `record`: the object the constructor would have built, frozen from then on.
    """
    names = [field.name for field in dataclasses.fields(record)]  # type: ignore[arg-type]
    twin: Any = dataclass(slots=True)(type(record.__name__, (), {"__annotations__": dict.fromkeys(names, "object")}))

    def construct(*values: object) -> Any:
        made = twin(*values)
        made.__class__ = record
        return made

    return construct


_incident = _constructor(Incident)
_day_bar = _constructor(DayBar)
_response_slot = _constructor(ResponseSlot)
_window_record = _constructor(Window)
_endpoint_history = _constructor(EndpointHistory)


def _summarize(name: str, entry: _Entry, moment: _Moment, bounds: tuple[float, ...]) -> EndpointHistory:
    """Compute the figures of one endpoint from a private copy of its data."""
    now, first_day, first_slot, known_since = moment.now, moment.first_day, moment.first_slot, entry.known_since
    slot_head = entry.cells[_HEAD]
    day_head = slot_head // _SLOTS_PER_DAY
    incidents, downtime = _shown(entry.incidents, moment)
    if entry.incidents is not None and entry.incidents.dropped is not None:
        days_dropped = _DAYS_DROPPED.rows(entry.incidents.dropped, first_day, day_head)
        slots_dropped = _SLOTS_DROPPED.rows(entry.incidents.dropped, first_slot, slot_head)
    else:
        days_dropped, slots_dropped = [0] * DAYS_KEPT, [0] * SLOTS_KEPT

    days = _DAYS.rows(entry.cells, first_day, day_head)
    probes, failures = days[_PROBES :: _DAYS.width], days[_FAILURES :: _DAYS.width]
    slots = _SLOTS.rows(entry.cells, first_slot, slot_head)
    slot_probes, slot_failures = slots[_PROBES :: _SLOTS.width], slots[_FAILURES :: _SLOTS.width]
    if first_slot <= slot_head < first_slot + SLOTS_KEPT:  # the latest slot's quantiles, from its histogram
        row = (slot_head - first_slot) * _SLOTS.width
        slots[row + _P50], slots[row + _P95] = _quantiles(entry.cells[_HISTOGRAM:], bounds)

    def window(start_ms: int, probes: Sequence[int], failures: Sequence[int], dropped: Sequence[int]) -> Window:
        down_ms = downtime.overlap(start_ms, moment.now_ms)[2] + sum(dropped)
        return _window(start_ms / 1000, sum(probes), sum(failures), down_ms, now, known_since)

    return _endpoint_history(
        name,
        now,
        window(first_slot * _SLOT_MS, slot_probes, slot_failures, slots_dropped),
        window(moment.day_starts_ms[-7], probes[-7:], failures[-7:], days_dropped[-7:]),
        window(moment.day_starts_ms[-30], probes[-30:], failures[-30:], days_dropped[-30:]),
        window(moment.day_starts_ms[0], probes, failures, days_dropped),
        _day_bars(
            moment,
            list(zip(moment.day_starts, probes, failures, days_dropped, strict=True)),
            known_since,
            incidents,
            downtime,
        ),
        _response_times(moment, slot_probes, slots[_P50 :: _SLOTS.width], slots[_P95 :: _SLOTS.width]),
        tuple(incidents),
    )


class _Downtime:
    """The incidents shown, as milliseconds: which of them overlap an interval, and how long they are down in it.

    They start and end at `starts` and `ends` (cut at the summary's time), oldest first, one at a time.
    """

    __slots__ = ("ends", "starts", "sums")

    def __init__(self, starts: list[int], ends: list[int]) -> None:
        self.starts, self.ends = starts, ends
        self.sums = [0, *accumulate(map(sub, ends, starts))]  # sums[i]: the lengths of the incidents before the i-th

    def overlap(self, x: int, y: int) -> tuple[int, int, int]:
        """The incidents that overlap [x, y), the i-th for lo <= i < hi, and their milliseconds in it."""
        starts, ends = self.starts, self.ends
        lo, hi = bisect_right(ends, x), bisect_left(starts, y)
        if lo >= hi:
            return lo, hi, 0
        ms = self.sums[hi] - self.sums[lo]
        if starts[lo] < x:
            ms -= x - starts[lo]
        if ends[hi - 1] > y:
            ms -= ends[hi - 1] - y
        return lo, hi, ms

    def days(self) -> set[int]:
        """The day numbers the incidents overlap."""
        firsts, lasts = [a // _DAY_MS for a in self.starts], [(b - 1) // _DAY_MS for b in self.ends]
        touched = {*firsts, *lasts}
        if firsts != lasts and max(map(sub, lasts, firsts)) > 1:  # some overlap whole days in between too
            for first, last in zip(firsts, lasts, strict=True):
                touched.update(range(first + 1, last))
        return touched


def _shown(incidents: _Incidents | None, moment: _Moment) -> tuple[list[Incident], _Downtime]:
    """The incidents shown, those that end after the first day's start, oldest first, and their downtime."""
    if incidents is None:
        return [], _Downtime([], [])
    now_ms, times = moment.now_ms, incidents.times
    k = bisect_right(times[1::2], moment.first_day * _DAY_MS)
    starts, ends = times[2 * k :: 2].tolist(), times[2 * k + 1 :: 2].tolist()
    codes, texts = incidents.codes[2 * k :: 2], incidents.codes[2 * k + 1 :: 2]
    messages = [incidents.texts[i] for i in texts]
    closed = len(ends) - 1 if incidents.is_open else len(ends)
    shown = [
        _incident(a / 1000, b / 1000, (b - a) / 1000, _REASONS[code], message)
        for a, b, code, message in zip(starts[:closed], ends[:closed], codes[:closed], messages[:closed], strict=True)
    ]
    if closed < len(ends):
        start = starts[-1]
        duration = (now_ms - start) / 1000 if now_ms > start else 0.0
        shown.append(_incident(start / 1000, None, duration, _REASONS[codes[-1]], messages[-1]))
    if ends and ends[-1] > now_ms:  # an open incident; or a clock behind the results: cut at now, not before the start
        ends = [b if b <= now_ms else now_ms if now_ms > a else a for a, b in zip(starts, ends, strict=True)]
    return shown, _Downtime(starts, ends)


def _day_bars(
    moment: _Moment,
    keys: list[tuple[float, int, int, int]],
    known_since: float,
    incidents: list[Incident],
    downtime: _Downtime,
) -> tuple[DayBar, ...]:
    """The bars of the days shown, from the start, probes, failures and dropped milliseconds down of each."""
    first_day, now, now_ms = moment.first_day, moment.now, moment.now_ms
    bars: list[DayBar | None] = list(map(moment.plain_days.get, keys))
    special = moment.day_indices.intersection(map(first_day.__rsub__, downtime.days()))
    special.add(DAYS_KEPT - 1)  # today, partial up to now
    if first_day * DAY <= known_since < moment.day_starts[-1] + DAY:
        special.add(math.floor(known_since / DAY) - first_day)  # partly known
    for i in special:
        start, probes, failures, down_ms = keys[i]
        x = moment.day_starts_ms[i]
        lo, hi, ms = downtime.overlap(x, x + _DAY_MS if x + _DAY_MS < now_ms else now_ms)
        down_ms += ms
        end = start + DAY if start + DAY < now else now
        uptime = _uptime(down_ms, end - (start if start > known_since else known_since)) if probes else None
        bars[i] = _day_bar(start, probes, failures, down_ms / 1000, uptime, tuple(incidents[lo:hi]))
    for i in [i for i, bar in enumerate(bars) if bar is None]:  # plain: whole, after known_since or without probes
        start, probes, failures, down_ms = keys[i]
        uptime = _uptime(down_ms, DAY) if probes else None
        bars[i] = moment.plain_days[keys[i]] = _day_bar(start, probes, failures, down_ms / 1000, uptime, ())
    return tuple(bars)  # type: ignore[arg-type]  # every None was replaced


def _response_times(moment: _Moment, probes: list[int], p50s: list[int], p95s: list[int]) -> tuple[ResponseSlot, ...]:
    """The response-time series, from the probes and encoded quantiles of each slot shown."""
    return tuple(
        [
            _response_slot(empty.start, n, (p50 - 1) / 1e6 if p50 else None, (p95 - 1) / 1e6 if p95 else None)
            if n
            else empty
            for empty, n, p50, p95 in zip(moment.empty_slots, probes, p50s, p95s, strict=True)
        ]
    )


def _window(start: float, probes: int, failures: int, down_ms: int, now: float, known_since: float) -> Window:
    known = now - (start if start > known_since else known_since)
    if known < 0:
        known = 0.0
    return _window_record(start, known, down_ms / 1000, probes, failures, _uptime(down_ms, known))


def _uptime(down_ms: int, known: float) -> float | None:
    """1 - down / known, at least 0 (down is never negative); None when nothing is known."""
    if known <= 0:
        return None
    uptime = 1 - down_ms / 1000 / known
    return uptime if uptime > 0 else 0.0


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
