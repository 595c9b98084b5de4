"""One endpoint's summary: its windows, day bars, response times and incidents, from a copy of its cells."""

from __future__ import annotations

import math
from bisect import bisect_left, bisect_right
from collections.abc import Sequence
from itertools import accumulate
from operator import sub

from exporter.history.cells import (
    DAY_MS,
    DAYS,
    DAYS_DROPPED,
    FAILURES,
    HEAD,
    HISTOGRAM,
    P50,
    P95,
    PROBES,
    REASONS,
    SLOT_MS,
    SLOTS,
    SLOTS_DROPPED,
    SLOTS_PER_DAY,
    Entry,
    Incidents,
    quantiles,
)
from exporter.history.records import (
    DAY,
    DAYS_KEPT,
    SLOT,
    SLOTS_KEPT,
    DayBar,
    EndpointHistory,
    Incident,
    ResponseSlot,
    Window,
)


class Moment:
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
        self.day_starts_ms = [day * DAY_MS for day in range(self.first_day, self.today + 1)]
        self.day_indices = set(range(DAYS_KEPT))
        self.empty_slots = [
            ResponseSlot(float(n * SLOT), 0, None, None) for n in range(self.first_slot, self.first_slot + SLOTS_KEPT)
        ]
        # The bar of a whole day, wholly known, that no incident of its endpoint overlaps depends on its
        # start, probes, failures and down milliseconds alone: endpoints alike share one.
        self.plain_days: dict[tuple[float, int, int, int], DayBar] = {}


def summarize(name: str, entry: Entry, moment: Moment, bounds: tuple[float, ...]) -> EndpointHistory:
    """Compute the figures of one endpoint from a private copy of its data."""
    now, first_day, first_slot, known_since = moment.now, moment.first_day, moment.first_slot, entry.known_since
    slot_head = entry.cells[HEAD]
    day_head = slot_head // SLOTS_PER_DAY
    incidents, downtime = _shown(entry.incidents, moment)
    if entry.incidents is not None and entry.incidents.dropped is not None:
        days_dropped = DAYS_DROPPED.rows(entry.incidents.dropped, first_day, day_head)
        slots_dropped = SLOTS_DROPPED.rows(entry.incidents.dropped, first_slot, slot_head)
    else:
        days_dropped, slots_dropped = [0] * DAYS_KEPT, [0] * SLOTS_KEPT

    days = DAYS.rows(entry.cells, first_day, day_head)
    probes, failures = days[PROBES :: DAYS.width], days[FAILURES :: DAYS.width]
    slots = SLOTS.rows(entry.cells, first_slot, slot_head)
    slot_probes, slot_failures = slots[PROBES :: SLOTS.width], slots[FAILURES :: SLOTS.width]
    if first_slot <= slot_head < first_slot + SLOTS_KEPT:  # the latest slot's quantiles, from its histogram
        row = (slot_head - first_slot) * SLOTS.width
        slots[row + P50], slots[row + P95] = quantiles(entry.cells[HISTOGRAM:], bounds)

    def window(start_ms: int, probes: Sequence[int], failures: Sequence[int], dropped: Sequence[int]) -> Window:
        down_ms = downtime.overlap(start_ms, moment.now_ms)[2] + sum(dropped)
        return _window(start_ms / 1000, sum(probes), sum(failures), down_ms, now, known_since)

    return EndpointHistory(
        name,
        now,
        window(first_slot * SLOT_MS, slot_probes, slot_failures, slots_dropped),
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
        _response_times(moment, slot_probes, slots[P50 :: SLOTS.width], slots[P95 :: SLOTS.width]),
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
        firsts, lasts = [a // DAY_MS for a in self.starts], [(b - 1) // DAY_MS for b in self.ends]
        touched = {*firsts, *lasts}
        if firsts != lasts and max(map(sub, lasts, firsts)) > 1:  # some overlap whole days in between too
            for first, last in zip(firsts, lasts, strict=True):
                touched.update(range(first + 1, last))
        return touched


def _shown(incidents: Incidents | None, moment: Moment) -> tuple[list[Incident], _Downtime]:
    """The incidents shown, those that end after the first day's start, oldest first, and their downtime."""
    if incidents is None:
        return [], _Downtime([], [])
    now_ms, times = moment.now_ms, incidents.times
    k = bisect_right(times[1::2], moment.first_day * DAY_MS)
    starts, ends = times[2 * k :: 2].tolist(), times[2 * k + 1 :: 2].tolist()
    codes, texts = incidents.codes[2 * k :: 2], incidents.codes[2 * k + 1 :: 2]
    messages = [incidents.texts[i] for i in texts]
    closed = len(ends) - 1 if incidents.is_open else len(ends)
    shown = [
        Incident(a / 1000, b / 1000, (b - a) / 1000, REASONS[code], message)
        for a, b, code, message in zip(starts[:closed], ends[:closed], codes[:closed], messages[:closed], strict=True)
    ]
    if closed < len(ends):
        start = starts[-1]
        duration = (now_ms - start) / 1000 if now_ms > start else 0.0
        shown.append(Incident(start / 1000, None, duration, REASONS[codes[-1]], messages[-1]))
    if ends and ends[-1] > now_ms:  # an open incident; or a clock behind the results: cut at now, not before the start
        ends = [b if b <= now_ms else now_ms if now_ms > a else a for a, b in zip(starts, ends, strict=True)]
    return shown, _Downtime(starts, ends)


def _day_bars(
    moment: Moment,
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
        lo, hi, ms = downtime.overlap(x, x + DAY_MS if x + DAY_MS < now_ms else now_ms)
        down_ms += ms
        end = start + DAY if start + DAY < now else now
        uptime = _uptime(down_ms, end - (start if start > known_since else known_since)) if probes else None
        bars[i] = DayBar(start, probes, failures, down_ms / 1000, uptime, tuple(incidents[lo:hi]))
    for i in [i for i, bar in enumerate(bars) if bar is None]:  # plain: whole, after known_since or without probes
        start, probes, failures, down_ms = keys[i]
        uptime = _uptime(down_ms, DAY) if probes else None
        bars[i] = moment.plain_days[keys[i]] = DayBar(start, probes, failures, down_ms / 1000, uptime, ())
    return tuple(bars)  # type: ignore[arg-type]  # every None was replaced


def _response_times(moment: Moment, probes: list[int], p50s: list[int], p95s: list[int]) -> tuple[ResponseSlot, ...]:
    """The response-time series, from the probes and encoded quantiles of each slot shown."""
    return tuple(
        [
            ResponseSlot(empty.start, n, (p50 - 1) / 1e6 if p50 else None, (p95 - 1) / 1e6 if p95 else None)
            if n
            else empty
            for empty, n, p50, p95 in zip(moment.empty_slots, probes, p50s, p95s, strict=True)
        ]
    )


def _window(start: float, probes: int, failures: int, down_ms: int, now: float, known_since: float) -> Window:
    known = now - (start if start > known_since else known_since)
    if known < 0:
        known = 0.0
    return Window(start, known, down_ms / 1000, probes, failures, _uptime(down_ms, known))


def _uptime(down_ms: int, known: float) -> float | None:
    """1 - down / known, at least 0 (down is never negative); None when nothing is known."""
    if known <= 0:
        return None
    uptime = 1 - down_ms / 1000 / known
    return uptime if uptime > 0 else 0.0
