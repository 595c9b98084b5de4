"""`PrometheusHistory`: the endpoints' histories read, what can no longer change kept (see the package)."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from typing import Any

import httpx

from exporter.history import DAY, DAYS_KEPT, SLOT, SLOTS_KEPT, EndpointHistory, ResponseSlot

from .api import (
    DEFAULT_TIMEOUT,
    PrometheusAPI,
    PrometheusError,
    Series,
    difference,
    duration,
    endpoint_matcher,
    point,
    state_expr,
    tagged,
)
from .figures import (
    WINDOWS,
    Changes,
    Counters,
    DayFigures,
    Past,
    SlotRow,
    assemble,
    counted_probes,
    counter_growth,
    day_figures,
    gather_changes,
    incidents_of,
    open_incidents,
    slot_figures,
    window_figures,
)

INCIDENT_STEP = 15  # seconds: the bundle's scrape interval; transitions closer than this may merge

PARALLEL_QUERIES = 4

# A day or a slot is read once it has ended this long ago and kept from then on: by then the rules have
# been evaluated past its end and remote-written samples of every vantage have arrived.
SETTLE = 10 * 60

# What a refresh reads as it stands now (of the state gauges, those of `down`), and at midnight.
_MIDNIGHT_METRICS = ("upwatch_probes_total", "upwatch_endpoint_downtime_seconds_total")
_NOW_METRICS = (
    *_MIDNIGHT_METRICS,
    "upwatch_endpoint_state",
    "upwatch_endpoint_state_since_timestamp_seconds",
    *(f"endpoint:upwatch_endpoint_downtime_seconds:increase{w}" for w, _ in WINDOWS),
)


@dataclass(frozen=True, slots=True)
class _Today:
    """Today's state changes of the endpoints down today, up to `settled` (those after may still change)."""

    day: float
    endpoints: frozenset[str]
    settled: float
    series: dict[tuple[tuple[str, str], ...], tuple[dict[str, str], list[tuple[float, float]]]]


@dataclass(frozen=True, slots=True)
class _Day:
    """What one whole day's queries answered: final once the day has ended and settled."""

    figures: dict[str, DayFigures]  # by endpoint
    transitions: list[Series]  # state changes of the endpoints down that day (see _transitions)


class PrometheusHistory(PrometheusAPI):
    """Reads the histories of endpoints from a Prometheus (its HTTP API), as the rules record them."""

    def __init__(self, url: str, *, timeout: float = DEFAULT_TIMEOUT, transport: httpx.BaseTransport | None = None):
        super().__init__(url, timeout=timeout, transport=transport, connections=PARALLEL_QUERIES)
        self._pool = ThreadPoolExecutor(PARALLEL_QUERIES, thread_name_prefix="upwatch-prometheus")
        # What is kept of the endpoints matched by _sel: whole days and closed slots, by their start.
        self._sel = ""
        self._days: dict[float, _Day] = {}
        self._slots: dict[float, dict[str, SlotRow]] = {}
        # The buckets at the start of the current slot, and the probes at today's midnight, once settled.
        self._buckets: tuple[float, Counters] | None = None
        self._midnight: tuple[float, dict[str, Counters]] | None = None
        self._today: _Today | None = None
        # Each endpoint's bars of the whole days, reused while the kept days are the same (_days_version).
        self._past: dict[str, Past] = {}
        self._days_version: object = None
        # Each endpoint's closed slots, reused while they are those kept (of the same first slot).
        self._closed_slots: dict[str, tuple[ResponseSlot, ...]] = {}
        self._slots_first = 0.0
        self._days_first = 0.0
        # The state changes and reasons of the whole days kept, gathered by series (see gather_changes).
        self._past_changes: Changes | None = None

    def close(self) -> None:
        """Close the connections."""
        self._pool.shutdown(wait=False, cancel_futures=True)
        super().close()

    # The figures

    def fetch(self, names: Sequence[str], now: float) -> dict[str, EndpointHistory]:
        """The history of each named endpoint as of `now` (those Prometheus knows nothing of get empty ones).

        Whole days and closed slots are read once each and kept (see the package's docstring): a
        first call reads the 89 days and 47 slots, later ones only what is new and the current figures.
        """
        if not names:
            return {}
        sel = endpoint_matcher(names)
        if sel != self._sel:  # other endpoints: what is kept is not theirs
            self._sel, self._days, self._slots = sel, {}, {}
            self._buckets = self._midnight = self._today = None
            self._past, self._days_version, self._past_changes = {}, None, None
            self._closed_slots = {}
        today = math.floor(now / DAY) * DAY
        first_day = today - (DAYS_KEPT - 1) * DAY
        first_slot = (math.floor(now / SLOT) - SLOTS_KEPT + 1) * SLOT
        current_slot = first_slot + (SLOTS_KEPT - 1) * SLOT
        self._days = {day: kept for day, kept in self._days.items() if day >= first_day}
        self._slots = {slot: kept for slot, kept in self._slots.items() if slot >= first_slot}
        jobs: dict[Any, Callable[[], Any]] = {
            ("day", day): partial(self._day, sel, day)
            for day in (first_day + i * DAY for i in range(DAYS_KEPT - 1))
            if day not in self._days
        }
        # Counters are read as they stand at chosen moments and subtracted here: PromQL's arithmetic on
        # thousands of series (the buckets) costs Prometheus far more than handing them over.
        boundaries = {now, current_slot} if now > current_slot else {now}
        for slot in (first_slot + i * SLOT for i in range(SLOTS_KEPT - 1)):
            if slot not in self._slots:
                boundaries.update((slot, slot + SLOT))
        kept_buckets = self._buckets if self._buckets is not None and self._buckets[0] in boundaries else None
        for t in boundaries:
            if kept_buckets is None or t != kept_buckets[0]:
                jobs[("buckets", t)] = partial(self._counters, "upwatch_probe_duration_seconds_bucket", sel, t)
        # Everything else of now in one answer: the probes and downtime counters, the window rules and
        # the state gauges of the endpoints down.
        jobs["now"] = partial(self._snapshot, _NOW_METRICS, sel, now)
        for _, seconds in WINDOWS:
            jobs[("probes", now - seconds)] = partial(self._counters, "upwatch_probes_total", sel, now - seconds)
        kept_midnight = self._midnight if self._midnight is not None and self._midnight[0] == today else None
        if kept_midnight is None:
            jobs["midnight"] = partial(self._snapshot, _MIDNIGHT_METRICS, sel, today)
        got = self._run(jobs, now)

        buckets = {t: got[("buckets", t)] for t in boundaries if ("buckets", t) in got}
        if kept_buckets is not None:
            buckets[kept_buckets[0]] = kept_buckets[1]
        for slot in (first_slot + i * SLOT for i in range(SLOTS_KEPT - 1)):
            if slot not in self._slots:
                closed = slot_figures(buckets[slot + SLOT], buckets[slot])
                if slot + SLOT + SETTLE <= now:
                    self._slots[slot] = closed
                got[("slot", slot)] = closed
        if now > current_slot and current_slot + SETTLE <= now:
            self._buckets = (current_slot, buckets[current_slot])
        current = slot_figures(buckets[now], buckets[current_slot]) if now > current_slot else {}
        if kept_midnight is not None:
            midnight = kept_midnight[1]
        else:
            midnight = got["midnight"]
            if today + SETTLE <= now:
                self._midnight = (today, midnight)
        at_now = got["now"]
        probes_now = at_now["upwatch_probes_total"]
        windows = window_figures(at_now, {w: got[("probes", now - seconds)] for w, seconds in WINDOWS})
        down_now = counter_growth(
            at_now["upwatch_endpoint_downtime_seconds_total"],
            midnight["upwatch_endpoint_downtime_seconds_total"],
            ("endpoint", "vantage"),
        )
        today_down = [
            Series({"endpoint": endpoint, "vantage": vantage} if vantage else {"endpoint": endpoint}, [(now, down)])
            for (endpoint, vantage), down in down_now.items()
        ]
        today_probes = counted_probes(probes_now, midnight["upwatch_probes_total"], now)
        open_now = open_incidents(
            at_now["upwatch_endpoint_state"], at_now["upwatch_endpoint_state_since_timestamp_seconds"]
        )

        days = [self._days.get(day) or got[("day", day)] for day in (first_day + i * DAY for i in range(DAYS_KEPT - 1))]
        # The whole days' figures are those kept before, unless one was read now or the days moved on.
        if any(key[0] == "day" for key in jobs if isinstance(key, tuple)) or self._days_first != first_day:
            self._days_version = object()
            self._past_changes = None
        self._days_first = first_day
        if self._past_changes is None:
            self._past_changes = gather_changes([series for day in days for series in day.transitions])
        down_today = {endpoint for (endpoint, _), down in down_now.items() if down > 0}
        today_transitions = self._today_transitions(down_today, today, now) if down_today else []
        if any(key[0] == "slot" for key in got if isinstance(key, tuple)) or self._slots_first != first_slot:
            self._closed_slots = {}
        self._slots_first = first_slot
        slot_rows = [
            self._slots[slot] if slot in self._slots else got[("slot", slot)]
            for slot in (first_slot + i * SLOT for i in range(SLOTS_KEPT - 1))
        ]
        slot_rows.append(current)
        return assemble(
            names,
            now,
            [*(day.figures for day in days), day_figures(today_down, today_probes)],
            windows,
            slot_rows,
            incidents_of(self._past_changes, today_transitions, open_now, now, first_day),
            self._past,
            self._days_version,
            self._closed_slots,
        )

    def _counters(self, metric: str, sel: str, at: float) -> Counters:
        """Every series of a counter as it stood at `at` (its latest sample up to 5 minutes before)."""
        return self._snapshot((metric,), sel, at)[metric]

    def _snapshot(self, metrics: Sequence[str], sel: str, at: float) -> dict[str, Counters]:
        """Every series of these metrics (of `upwatch_endpoint_state`, those of `down`) as they stood at `at`."""
        names = f'__name__="{metrics[0]}"' if len(metrics) == 1 else f'__name__=~"{"|".join(metrics)}",state=~"|down"'
        answer = self._instant(f"{{{names},{sel}}}", at)
        out: dict[str, Counters] = {metric: {} for metric in metrics}
        for item in answer:
            labels = item.metric
            name = labels.pop("__name__", "")
            if name in out:
                out[name][tuple(sorted(labels.items()))] = (labels, point(item.value)[1])
        return out

    def _today_transitions(self, endpoints: set[str], today: float, now: float) -> list[Series]:
        """Today's state changes of these endpoints: those that have settled read once and kept, later ones anew."""
        kept = self._today
        if kept is not None and kept.day == today and endpoints <= kept.endpoints:
            read, start, series = kept.endpoints, kept.settled + INCIDENT_STEP, kept.series
        else:  # from a little before the day, as for whole days
            read, start, series = frozenset(endpoints), today - 5 * 60, {}
        merged = {key: list(points) for key, (_, points) in series.items()}
        labels_of = {key: labels for key, (labels, _) in series.items()}
        if start <= now:
            for s in self._transitions(endpoint_matcher(read), start, now):
                key = tuple(sorted(s.labels.items()))
                labels_of.setdefault(key, s.labels)
                merged.setdefault(key, []).extend(s.points)
        settled = math.floor((now - SETTLE) / INCIDENT_STEP) * INCIDENT_STEP
        if settled >= start:
            self._today = _Today(
                today,
                read,
                settled,
                {key: (labels_of[key], [p for p in points if p[0] <= settled]) for key, points in merged.items()},
            )
        return [Series(labels_of[key], points) for key, points in merged.items()]

    def _run(self, jobs: Mapping[Any, Callable[[], Any]], now: float) -> dict[Any, Any]:
        """Run the jobs, PARALLEL_QUERIES at a time; keep the days and slots that are final, even if another fails."""
        futures = {key: self._pool.submit(job) for key, job in jobs.items()}
        got, failure = {}, None
        for key, future in futures.items():
            try:
                got[key] = future.result()
            except PrometheusError as exc:
                failure = failure or exc
                continue
            if isinstance(key, tuple):
                kind, start = key
                if kind == "day" and start + DAY + SETTLE <= now:
                    self._days[start] = got[key]
        if failure is not None:
            raise failure
        return got

    def _day(self, sel: str, day: float) -> _Day:
        """One whole UTC day: its down seconds by vantage, probes by result, and state changes if any was down."""
        end = day + DAY
        answer = self.instant(
            tagged(
                f"sum by (endpoint, vantage) (endpoint:upwatch_endpoint_downtime_seconds:increase1d{{{sel}}})",
                "f",
                "down",
            )
            + " or "
            + tagged(f"sum by (endpoint, result) ({difference('upwatch_probes_total', sel, DAY)})", "f", "probes"),
            end,
        )
        down = [s for s in answer if s.labels.get("f") == "down"]
        figures = day_figures(down, [s for s in answer if s.labels.get("f") == "probes"])
        were_down = {s.labels.get("endpoint", "") for s in down if s.points[0][1] > 0}
        transitions = self._transitions(endpoint_matcher(were_down), day - 5 * 60, end) if were_down else []
        return _Day(figures, transitions)

    def _transitions(self, sel: str, start: float, end: float) -> list[Series]:
        """The state changes and the failure reasons at those into `down` of these endpoints in [start, end].

        Read every INCIDENT_STEP from `start`: callers start on that grid, a little before the day (a
        transition just before midnight the day's rule sample may have missed lands in the next day's).
        """
        step = duration(INCIDENT_STEP)
        since = f"upwatch_endpoint_state_since_timestamp_seconds{{{sel}}}"
        unchanged = f"({since} == {since} offset {step})"
        changes = f"({state_expr(sel, None)} unless ignoring (state) {unchanged})"
        into_down = f"({state_expr(sel, 'down')} unless ignoring (state) {unchanged})"
        grown = difference("upwatch_probe_failures_total", sel, INCIDENT_STEP)
        reasons = f"({grown} > 0 and ignoring (reason, state) {into_down})"
        return self.range(f"{changes} or {reasons}", start, end, INCIDENT_STEP)
