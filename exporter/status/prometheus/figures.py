"""The status page's records from what Prometheus answered: pure functions, no queries (see the package's docstring)."""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from exporter.history import (
    DAY,
    DAYS_KEPT,
    MAX_INCIDENTS,
    SLOT,
    SLOTS_KEPT,
    DayBar,
    EndpointHistory,
    Incident,
    ResponseSlot,
    Window,
    histogram_quantile,
)
from exporter.results import FailureReason

from .api import Series

WINDOWS = (("1d", DAY), ("7d", 7 * DAY), ("30d", 30 * DAY))


_REASONS = {reason.value: reason for reason in FailureReason}


# A counter's series at one moment: its labels, sorted, -> (the labels, the value).
Counters = dict[tuple[tuple[str, str], ...], tuple[dict[str, str], float]]


# A day of one endpoint: probes, failed probes, and the down seconds of the vantage that saw the least.
DayFigures = tuple[int, int, float]


def day_figures(down: Iterable[Series], probes: Iterable[Series]) -> dict[str, DayFigures]:
    """Each endpoint's figures of a day, from the downtime (by vantage) and probes (by result) answered for it."""
    by_vantage: defaultdict[str, dict[str | None, float]] = defaultdict(dict)
    for s in down:
        seen = by_vantage[s.labels.get("endpoint", "")]
        vantage = s.labels.get("vantage")
        seen[vantage] = seen.get(vantage, 0.0) + s.points[0][1]
    counts: defaultdict[str, list[float]] = defaultdict(lambda: [0.0, 0.0])  # succeeded, failed
    for s in probes:
        result = s.labels.get("result")
        if result in ("success", "failure"):
            counts[s.labels.get("endpoint", "")][result == "failure"] += s.points[0][1]
    out = {}
    for endpoint in by_vantage.keys() | counts.keys():
        succeeded, failed = counts.get(endpoint, (0.0, 0.0))
        out[endpoint] = (round(succeeded) + round(failed), round(failed), _least_down(by_vantage.get(endpoint, {})))
    return out


def counter_growth(end: Counters, start: Counters, by: tuple[str, str]) -> dict[tuple[str, ...], float]:
    """How much the series grew from `start` to `end`, summed by the labels `by`: a reset or a new series from 0."""
    out: defaultdict[tuple[str, ...], float] = defaultdict(float)
    first, second = by  # two labels: unpacked, for speed (some 10,000 series a call)
    for key, (labels, value) in end.items():
        before = start.get(key)
        grown = value - before[1] if before is not None and value >= before[1] else value
        out[labels.get(first, ""), labels.get(second, "")] += grown
    return out


def counted_probes(end: Counters, start: Counters, at: float, **tag: str) -> list[Series]:
    """Probes by endpoint and result from `start` to `end`, as series tagged like the queries' answers."""
    return [
        Series({"endpoint": endpoint, "result": result, **tag}, [(at, grown)])
        for (endpoint, result), grown in counter_growth(end, start, ("endpoint", "result")).items()
    ]


# One slot of one endpoint: probes, and the p50 and p95 of their durations (None without probes).
SlotRow = tuple[int, float | None, float | None]


def slot_figures(end: Counters, start: Counters) -> dict[str, SlotRow]:
    """Each endpoint's probes, p50 and p95 from the growth of its duration buckets from `start` to `end`."""
    by_endpoint: defaultdict[str, list[tuple[float, float]]] = defaultdict(list)
    for (endpoint, le), grown in counter_growth(end, start, ("endpoint", "le")).items():
        try:
            by_endpoint[endpoint].append((float(le), grown))
        except ValueError:
            continue
    out = {}
    for endpoint, buckets in by_endpoint.items():
        buckets.sort()
        if not buckets or not math.isinf(buckets[-1][0]):
            continue
        cumulative = [round(count) for _, count in buckets]
        bounds = [bound for bound, _ in buckets[:-1]]
        p50, p95 = (
            (histogram_quantile(0.5, cumulative, bounds), histogram_quantile(0.95, cumulative, bounds))
            if bounds
            else (None, None)
        )
        out[endpoint] = (
            cumulative[-1],
            None if p50 is None else round(p50, 6),
            None if p95 is None else round(p95, 6),
        )
    return out


# A window of one endpoint: down seconds (of the vantage that saw the least), probes and failed probes.
WindowFigures = tuple[float, float, float]


_NO_WINDOW: WindowFigures = (0.0, 0.0, 0.0)


def window_figures(now: Mapping[str, Counters], starts: Mapping[str, Counters]) -> dict[tuple[str, str], WindowFigures]:
    """Each endpoint's figures of each window, from the rules and probes now and the probes at the windows' starts."""
    down: defaultdict[tuple[str, str], dict[str | None, float]] = defaultdict(dict)
    probes: defaultdict[tuple[str, str], list[float]] = defaultdict(lambda: [0.0, 0.0])  # probes, failed
    for w, _ in WINDOWS:
        for labels, value in now[f"endpoint:upwatch_endpoint_downtime_seconds:increase{w}"].values():
            seen, vantage = down[labels.get("endpoint", ""), w], labels.get("vantage")
            seen[vantage] = seen.get(vantage, 0.0) + value
        for (endpoint, result), grown in counter_growth(
            now["upwatch_probes_total"], starts[w], ("endpoint", "result")
        ).items():
            if result in ("success", "failure"):
                counts = probes[endpoint, w]
                counts[0] += grown
                if result == "failure":
                    counts[1] += grown
    return {key: (_least_down(down.get(key, {})), *probes.get(key, (0.0, 0.0))) for key in down.keys() | probes.keys()}


def _uptime(down: float, known: float) -> float | None:
    if known <= 0:
        return None
    return min(1.0, max(0.0, 1 - down / known))


def _least_down(per_vantage: Mapping[str | None, float]) -> float:
    return min(per_vantage.values()) if per_vantage else 0.0


def assemble(
    names: Sequence[str],
    now: float,
    days: Sequence[Mapping[str, DayFigures]],
    windows: Mapping[tuple[str, str], WindowFigures],
    slot_rows: Sequence[Mapping[str, SlotRow]],
    incidents: Mapping[str, list[Incident]],
    past: dict[str, Past],
    days_version: object,
    closed_slots: dict[str, tuple[ResponseSlot, ...]],
) -> dict[str, EndpointHistory]:
    """The records of every endpoint from the figures of its days and the answers of `fetch`'s queries.

    `past` keeps each endpoint's bars of the whole days between calls, with `days_version` (which
    changes whenever the figures of those days may have) and the incidents that overlap them: while
    both are the same, the bars are reused rather than built again. `closed_slots` keeps each
    endpoint's closed slots the same way, emptied by the caller when the slots kept change.
    """
    today = math.floor(now / DAY) * DAY
    first_day = today - (DAYS_KEPT - 1) * DAY
    day_starts = [float(first_day + i * DAY) for i in range(DAYS_KEPT)]

    first_slot = float((math.floor(now / SLOT) - SLOTS_KEPT + 1) * SLOT)
    slot_starts = [first_slot + i * SLOT for i in range(SLOTS_KEPT)]
    out = {}
    plain: dict[tuple[float, int, int, float], DayBar] = {}
    no_probes = {start: ResponseSlot(start, 0, None, None) for start in slot_starts}
    for name in names:
        shown = incidents.get(name, [])
        earlier = tuple(inc for inc in shown if inc.start < today)
        kept = past.get(name)
        if kept is None or kept.version is not days_version or kept.incidents != earlier:
            whole = _bars(name, day_starts[:-1], days[:-1], earlier, now, plain)
            kept = past[name] = Past(
                days_version,
                earlier,
                whole,
                sum(DAY for b in whole if b.probes),
                sum(b.down_seconds for b in whole if b.probes),
                sum(b.probes for b in whole),
                sum(b.failures for b in whole),
            )
        bars = [*kept.bars, *_bars(name, day_starts[-1:], days[-1:], shown, now, plain)]
        window_list = []
        for w, length in WINDOWS:
            down, n, failed = windows.get((name, w), _NO_WINDOW)
            window_list.append(
                Window(now - length, float(length), down, round(n), round(failed), _uptime(down, length))
            )
        last = bars[-1]  # today, up to now
        known = kept.known + (now - last.start if last.probes else 0.0)
        down90 = kept.down + (last.down_seconds if last.probes else 0.0)
        last_90d = Window(
            day_starts[0],
            known,
            down90,
            kept.probes + last.probes,
            kept.failures + last.failures,
            _uptime(down90, known),
        )
        closed = closed_slots.get(name)
        if closed is None:
            closed = closed_slots[name] = tuple(
                ResponseSlot(start, *row) if (row := rows.get(name)) is not None and row[0] else no_probes[start]
                for start, rows in zip(slot_starts[:-1], slot_rows[:-1], strict=True)
            )
        row = slot_rows[-1].get(name)
        response = (
            *closed,
            ResponseSlot(slot_starts[-1], *row) if row is not None and row[0] else no_probes[slot_starts[-1]],
        )
        out[name] = EndpointHistory(
            name,
            now,
            window_list[0],
            window_list[1],
            window_list[2],
            last_90d,
            tuple(bars),
            response,
            tuple(shown),
        )
    return out


@dataclass(frozen=True, slots=True)
class Past:
    """An endpoint's bars of the whole days, kept with what they were built from."""

    version: object
    incidents: tuple[Incident, ...]  # those that started before today
    bars: tuple[DayBar, ...]
    # Over those bars, for the 90-day window: the seconds of the days with probes, down seconds, probes, failures.
    known: float
    down: float
    probes: int
    failures: int


_NOTHING: DayFigures = (0, 0, 0.0)


def _bars(
    name: str,
    starts: Sequence[float],
    days: Sequence[Mapping[str, DayFigures]],
    shown: Sequence[Incident],
    now: float,
    plain: dict[tuple[float, int, int, float], DayBar],
) -> tuple[DayBar, ...]:
    """The bars of these days of one endpoint; those of whole days without incidents shared through `plain`."""
    bars = []
    for start, figures in zip(starts, days, strict=True):
        n, failed, down = figures.get(name, _NOTHING)
        end = start + DAY if start + DAY < now else now
        overlapping = (
            tuple(inc for inc in shown if inc.start < end and (inc.end is None or inc.end > start)) if shown else ()
        )
        if overlapping or end < start + DAY:
            bars.append(DayBar(start, n, failed, down, _uptime(down, end - start) if n else None, overlapping))
            continue
        alike = (start, n, failed, down)  # a whole day without incidents: shared by the endpoints alike
        bar = plain.get(alike)
        if bar is None:
            bar = plain[alike] = DayBar(start, n, failed, down, _uptime(down, DAY) if n else None, ())
        bars.append(bar)
    return tuple(bars)


# A series of incidents: (endpoint, vantage, its other labels).
_Key = tuple[str, str | None, tuple[tuple[str, str], ...]]


@dataclass(frozen=True, slots=True)
class Changes:
    """The state changes read, by series: {since value: the state it began}, and the reasons' growth."""

    states: dict[_Key, dict[float, str]]
    reasons: dict[_Key, list[tuple[float, str, float]]]  # (time, reason, growth)
    # The incidents of the series whose incidents had all ended, once worked out (see incidents_of).
    ended: dict[_Key, list[Incident]] = field(default_factory=dict)


def _key(labels: Mapping[str, str]) -> _Key:
    rest = tuple(sorted((k, v) for k, v in labels.items() if k not in ("state", "reason", "__name__")))
    return labels.get("endpoint", ""), labels.get("vantage"), rest


def gather_changes(transitions: Iterable[Series], onto: Changes | None = None) -> Changes:
    """The changes in `transitions` gathered by series, added to (a copy of what is touched in) `onto`."""
    states = dict(onto.states) if onto else {}
    reasons = dict(onto.reasons) if onto else {}
    copied: set[_Key] = set()
    for s in transitions:
        k = _key(s.labels)
        if "state" in s.labels:
            if k not in copied:
                states[k] = dict(states.get(k, {}))
                copied.add(k)
            state, seen = s.labels["state"], states[k]
            for _, since in s.points:
                seen[since] = state
        elif "reason" in s.labels:
            reasons[k] = [*reasons.get(k, ()), *((t, s.labels["reason"], v) for t, v in s.points)]
    return Changes(states, reasons)


def open_incidents(state: Counters, since: Counters) -> list[Series]:
    """When the incidents open now began: the `since` gauge of each series whose state `down` is 1."""
    out = []
    for labels, value in state.values():
        if value != 1 or labels.get("state") != "down":
            continue
        began = since.get(tuple(sorted((k, v) for k, v in labels.items() if k != "state")))
        if began is not None:
            out.append(Series(labels, [(0.0, began[1])]))
    return out


def incidents_of(
    past: Changes, today: list[Series], open_now: list[Series], now: float, first_day: float
) -> dict[str, list[Incident]]:
    """The incidents of each endpoint, oldest first, from the whole days' changes, today's and those open now."""
    changes = gather_changes(today, past)
    states = changes.states
    for s in open_now:  # down now: its start even if it is older than the days read
        k = _key(s.labels)
        if s.points[0][1] not in states.get(k, {}):
            states[k] = {**states.get(k, {}), s.points[0][1]: "down"}
    out: defaultdict[str, list[Incident]] = defaultdict(list)
    for k, by_since in states.items():
        endpoint, vantage, _ = k
        found = changes.reasons.get(k, [])
        untouched = by_since is past.states.get(k) and found is past.reasons.get(k, found)
        if untouched and k in past.ended:  # only the whole days': worked out once
            out[endpoint] += past.ended[k]
            continue
        incidents = []
        start: float | None = None
        for since in sorted(by_since):
            state = by_since[since]
            if state == "down" and start is None:
                start = since
            elif state != "down" and start is not None:
                if since > first_day:
                    incidents.append(_incident(start, since, now, _reason(found, start), vantage))
                start = None
        if start is not None:
            incidents.append(_incident(start, None, now, _reason(found, start), vantage))
        elif untouched:
            past.ended[k] = incidents
        out[endpoint] += incidents
    return {ep: sorted(incs, key=lambda inc: inc.start)[-MAX_INCIDENTS:] for ep, incs in out.items()}


def _incident(
    start: float, end: float | None, now: float, reason: FailureReason | None, vantage: str | None
) -> Incident:
    duration = (end if end is not None else max(now, start)) - start
    return Incident(start, end, round(duration, 3), reason, "", vantage)


def _reason(found: list[tuple[float, str, float]], start: float) -> FailureReason | None:
    """The reason whose failures grew most at the first step the incident starting at `start` was seen."""
    after = [(t, -growth, reason) for t, reason, growth in found if t >= start]
    if not after:
        return None
    first = min(t for t, _, _ in after)
    _, _, reason = min(item for item in after if item[0] == first)
    return _REASONS.get(reason)
