"""How the history keeps an endpoint: counting cells in rings of one array, and the incidents in parallel arrays."""

from __future__ import annotations

from array import array
from bisect import bisect_right
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import accumulate, repeat

from exporter.history.records import (
    DAY,
    DAYS_KEPT,
    MAX_INCIDENTS,
    MAX_MESSAGE,
    SLOT,
    SLOTS_KEPT,
    histogram_quantile,
)
from exporter.results import FailureReason, ProbeResult
from exporter.state import State, Transition

SLOT_MS, DAY_MS = SLOT * 1000, DAY * 1000
# Incident reasons are kept as one byte each: an index into this tuple.
REASONS: tuple[FailureReason | None, ...] = (None, *FailureReason)
REASON_CODES: dict[FailureReason | None, int] = {reason: code for code, reason in enumerate(REASONS)}
MAX_CELL = 2**32 - 1
OPEN = 2**63 - 1  # the end of an open incident: after every other


@dataclass(frozen=True, slots=True)
class Ring:
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
        zero(cells, self.base + a * self.width, min(a + count, self.size) - a, self.width)
        if a + count > self.size:  # wraps round the end of the ring
            zero(cells, self.base, a + count - self.size, self.width)

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


def zero(cells: array[int], start: int, rows: int, width: int) -> None:
    cells[start : start + rows * width] = array(cells.typecode, bytes(rows * width * cells.itemsize))


# The counting cells of an endpoint, one array of uint32: per day probes and failures; per slot
# probes, failures and the p50 and p95 in microseconds plus one (0 for none), set when the slot
# closes; the latest slot with a probe, the head of both rings (a day is whole slots); then the
# bucket counts of the latest slot's durations, from which its quantiles come.
DAYS = Ring(base=0, width=2, size=DAYS_KEPT, period=DAY)
SLOTS = Ring(base=DAYS_KEPT * 2, width=4, size=SLOTS_KEPT, period=SLOT)
SLOTS_PER_DAY = DAY // SLOT
HEAD = DAYS_KEPT * 2 + SLOTS_KEPT * 4
HISTOGRAM = HEAD + 1
PROBES, FAILURES, P50, P95 = 0, 1, 2, 3
# Milliseconds down of the incidents the bound dropped, per day and per slot: allocated when it first drops one.
DAYS_DROPPED = Ring(base=0, width=1, size=DAYS_KEPT, period=DAY)
SLOTS_DROPPED = Ring(base=DAYS_KEPT, width=1, size=SLOTS_KEPT, period=SLOT)


class Incidents:
    """The incident history of one endpoint, oldest first: parallel arrays, times in whole milliseconds."""

    __slots__ = ("codes", "dropped", "texts", "times")

    # The arrays grow by concatenation, which allocates them to the size (append leaves room).
    def __init__(self) -> None:
        self.times = array("q")  # start and end of each, an open one's end OPEN
        self.codes = array("B")  # reason and message of each: indices into REASONS and texts
        self.texts: tuple[str, ...] = ()  # the messages, each once: most incidents of an endpoint repeat one
        self.dropped: array[int] | None = None  # see DAYS_DROPPED

    def copy(self) -> Incidents:
        """An independent copy."""
        copy = Incidents.__new__(Incidents)
        copy.times, copy.codes, copy.texts = self.times[:], self.codes[:], self.texts
        copy.dropped = None if self.dropped is None else self.dropped[:]
        return copy

    @property
    def is_open(self) -> bool:
        """Whether the latest incident is still open."""
        return bool(self.times) and self.times[-1] == OPEN

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
        self.times = self.times + array("q", (max(at_ms, ends[-1]) if ends else at_ms, OPEN))
        if len(message) > MAX_MESSAGE:
            message = message[: MAX_MESSAGE - 1] + "\u2026"
        if message not in self.texts:
            self.texts = (*self.texts, message)
        self.codes = self.codes + array("B", (REASON_CODES[reason], self.texts.index(message)))
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


class Entry:
    """What is kept about one endpoint; only touched with the history's lock held, or as a private copy."""

    __slots__ = ("cells", "incidents", "known_since")

    def __init__(self, t: float, buckets: int) -> None:
        self.cells = array("I", [0]) * (HISTOGRAM + buckets)  # allocated to the size, unlike array("I", bytes(n))
        self.cells[HEAD] = int(t // SLOT)
        self.known_since = t
        self.incidents: Incidents | None = None

    def copy(self) -> Entry:
        """An independent copy, to compute from outside the lock."""
        entry = Entry.__new__(Entry)
        entry.cells, entry.known_since = self.cells[:], self.known_since
        entry.incidents = None if self.incidents is None else self.incidents.copy()
        return entry

    def count(self, t: float, bucket: int, failed: int, bounds: Sequence[float]) -> None:
        """Count one probe started at `t`, its duration in `bucket`, failed (1) or not (0)."""
        cells = self.cells
        slot, head = int(t // SLOT), cells[HEAD]
        if slot > head:
            self._move_on(head, slot, bounds)
            head = slot
        elif t < self.known_since:
            self.known_since = t
        day = slot // SLOTS_PER_DAY
        if day > head // SLOTS_PER_DAY - DAYS_KEPT:
            row = DAYS.offset(day)
            cells[row + PROBES] += 1
            cells[row + FAILURES] += failed
        if slot > head - SLOTS_KEPT:
            row = SLOTS.offset(slot)
            cells[row + PROBES] += 1
            cells[row + FAILURES] += failed
            if slot == head:  # a late result of a closed slot is left out of its quantiles
                cells[HISTOGRAM + bucket] += 1

    def _move_on(self, old: int, new: int, bounds: Sequence[float]) -> None:
        """Make slot `new` the latest: close slot `old` and clear the rows of the periods skipped."""
        cells, dropped = self.cells, self.incidents.dropped if self.incidents is not None else None
        old_day, new_day = old // SLOTS_PER_DAY, new // SLOTS_PER_DAY
        if new_day > old_day:
            DAYS.clear(cells, old_day + 1, new_day)
            if dropped is not None:
                DAYS_DROPPED.clear(dropped, old_day + 1, new_day)
        row = SLOTS.offset(old)
        cells[row + P50], cells[row + P95] = quantiles(cells[HISTOGRAM:], bounds)
        zero(cells, HISTOGRAM, 1, len(cells) - HISTOGRAM)
        SLOTS.clear(cells, old + 1, new)
        if dropped is not None:
            SLOTS_DROPPED.clear(dropped, old + 1, new)
        cells[HEAD] = new

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
                incidents = self.incidents = Incidents()
            horizon_ms = (int(transition.at // DAY) - DAYS_KEPT + 1) * DAY_MS
            for start_ms, end_ms in incidents.open(at_ms, result.reason, result.message, horizon_ms):
                self._keep_down(incidents, start_ms, end_ms)

    def _keep_down(self, incidents: Incidents, a: int, b: int) -> None:
        """Add the milliseconds [a, b) of a dropped incident to the days and slots they fall in."""
        if incidents.dropped is None:
            incidents.dropped = array("I", [0]) * (DAYS_KEPT + SLOTS_KEPT)
        for ring in (DAYS_DROPPED, SLOTS_DROPPED):
            period = ring.period * 1000
            head = self.cells[HEAD] * SLOT // ring.period
            for n in range(max(a // period, head - ring.size + 1), min((b - 1) // period, head) + 1):
                incidents.dropped[ring.offset(n)] += min(b, (n + 1) * period) - max(a, n * period)


def quantiles(histogram: Sequence[int], bounds: Sequence[float]) -> tuple[int, int]:
    """p50 and p95 of bucket counts (not cumulative), as kept in a slot's row."""
    cumulative = list(accumulate(histogram))
    return encode(histogram_quantile(0.5, cumulative, bounds)), encode(histogram_quantile(0.95, cumulative, bounds))


def encode(seconds: float | None) -> int:
    """Microseconds plus one, 0 for None: how a slot's row holds a quantile."""
    return 0 if seconds is None else min(max(round(seconds * 1e6), 0), MAX_CELL - 1) + 1
