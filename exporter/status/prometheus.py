"""The status page's history read from Prometheus: the same records as the agent's own history, from the bundle's rules.

`PrometheusHistory.fetch` asks Prometheus's HTTP API for all the endpoints on the page at once (each
selector filtered by one `endpoint=~"a|b|..."` matcher, a set of literals to Prometheus) and builds an
`EndpointHistory` for each. What can no longer change is read once and kept by the reader: each whole
UTC day (one query of its downtime rule and probes at the next midnight, and one of the state changes
of the endpoints down that day) and each closed 30-minute slot (one query), once it ended SETTLE ago.
A first read therefore asks some 230 queries, PARALLEL_QUERIES at a time; later ones 9, each of plain
selectors or recorded series: counters are read as they stand at the moments needed (the buckets now
and at the current slot's start, the probes now, at midnight and 1, 7 and 30 days ago) and subtracted
here, since PromQL's arithmetic on thousands of series costs Prometheus far more than handing them
over. bench/status_prometheus.py measures both.

Figures (`exporter.history` defines the in-memory ones these stand for):

- Windows 24 h, 7 d, 30 d: the recording rules at `now`. Down seconds are
  `endpoint:upwatch_endpoint_downtime_seconds:increase1d`, `increase7d`, `increase30d`; the uptime
  is `clamp(1 - down / w, 0, 1)`, the expression of `endpoint:upwatch_endpoint_uptime:ratio1d` ...;
  the window is the rules' sliding one, `[now - w, now]`, and its known seconds all of `w`.
  Probes and failures are differences of `upwatch_probes_total` between `now - w` and `now`.
- Day bars: whole days from `endpoint:upwatch_endpoint_downtime_seconds:increase1d` at each UTC
  midnight (the sample the rule recorded last before it, up to its 2-minute interval early);
  today from the rule's expression over `[midnight, now]`. Probes and failures are differences
  of `upwatch_probes_total` at the midnights. A day without probes has no uptime.
- 90 d: the 90 bars taken together, down over known (there is no 90-day rule).
- Response times: p50 and p95 per 30-minute slot, `histogram_quantile` of the differences of
  `upwatch_probe_duration_seconds_bucket` between the slot's ends (every probe whose result was
  scraped in the slot, from every vantage); the p50/p95 rules are 5-minute figures and their
  quantiles do not add up to a slot's.
- Incidents: from the state gauges. A day whose downtime rule is above 0 is read at
  `INCIDENT_STEP` for the endpoints down that day: the values of
  `upwatch_endpoint_state_since_timestamp_seconds` where they change, with the state they began,
  are the incidents' starts (into `down`) and ends (out of it); the reason is that of the
  `upwatch_probe_failures_total` counter that grew at the step the state turned `down`. An incident
  that opened and closed between two scrapes is counted by the rules but not listed. Messages are
  not in Prometheus: they are empty.

Vantages: series are summed per `vantage` (the agents and shards of a vantage together), and the
down seconds of an endpoint are those of the vantage that saw the least of them: one vantage
that reached it while another did not shows it up, as `endpoint_vantages:upwatch_endpoint_uptime`
does. Probes, failures and response times are those of all vantages; incidents are listed per
vantage and say which. Without a `vantage` label all agents are one vantage.
"""

from __future__ import annotations

import math
import re
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from typing import Any

import httpx

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

DEFAULT_TIMEOUT = 2.0  # seconds, per query
INCIDENT_STEP = 15  # seconds: the bundle's scrape interval; transitions closer than this may merge
PARALLEL_QUERIES = 4
# A day or a slot is read once it has ended this long ago and kept from then on: by then the rules have
# been evaluated past its end and remote-written samples of every vantage have arrived.
SETTLE = 10 * 60

_WINDOWS = (("1d", DAY), ("7d", 7 * DAY), ("30d", 30 * DAY))
_REASONS = {reason.value: reason for reason in FailureReason}


class PrometheusError(Exception):
    """Prometheus did not give a usable answer; the message is short and safe to show on the page."""


def _promql_string(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


# The characters RE2 gives a meaning to outside a class: escaped, and nothing else. Prometheus matches a
# regex that is an alternation of literals with only these escaped through a set of strings (a lookup
# per label value); any other escape, such as Python's re.escape gives '-', makes it run the regex
# itself on every value: with 500 names, some 100 ms per selector and block (bench/status_prometheus.py).
_RE2_META = re.compile(r"([\\.+*?()|\[\]{}^$])")


def endpoint_matcher(names: Iterable[str]) -> str:
    """The label matcher of these endpoints, for a PromQL selector's braces."""
    return "endpoint=~" + _promql_string("|".join(_RE2_META.sub(r"\\\1", name) for name in sorted(names)))


def _duration(seconds: float) -> str:
    """A PromQL duration of whole milliseconds (at least 1 ms)."""
    return f"{max(1, round(seconds * 1000))}ms"


def _difference(metric: str, sel: str, seconds: float) -> str:
    """The growth of a counter over the last `seconds`, from two samples: a reset counts from 0."""
    d = _duration(seconds)
    return f"(({metric}{{{sel}}} - {metric}{{{sel}}} offset {d}) >= 0 or {metric}{{{sel}}})"


@dataclass(frozen=True, slots=True)
class _Series:
    labels: dict[str, str]
    points: list[tuple[float, float]]


# A day of one endpoint: probes, failed probes, and the down seconds of the vantage that saw the least.
_DayFigures = tuple[int, int, float]


def _day_figures(down: Iterable[_Series], probes: Iterable[_Series]) -> dict[str, _DayFigures]:
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


@dataclass(frozen=True, slots=True)
class _Day:
    """What one whole day's queries answered: final once the day has ended and settled."""

    figures: dict[str, _DayFigures]  # by endpoint
    transitions: list[_Series]  # state changes of the endpoints down that day (see _transitions)


class PrometheusHistory:
    """Reads the histories of endpoints from a Prometheus (its HTTP API), as the rules record them."""

    def __init__(self, url: str, *, timeout: float = DEFAULT_TIMEOUT, transport: httpx.BaseTransport | None = None):
        parsed = httpx.URL(url)
        auth = None
        if parsed.username or parsed.password:
            auth = httpx.BasicAuth(parsed.username, parsed.password)
            parsed = parsed.copy_with(username=None, password=None)
        self._client = httpx.Client(
            base_url=str(parsed).rstrip("/"),
            auth=auth,
            timeout=timeout,
            transport=transport,
            limits=httpx.Limits(max_connections=PARALLEL_QUERIES),
        )
        self._pool = ThreadPoolExecutor(PARALLEL_QUERIES, thread_name_prefix="upwatch-prometheus")
        # What is kept of the endpoints matched by _sel: whole days and closed slots, by their start.
        self._sel = ""
        self._days: dict[float, _Day] = {}
        self._slots: dict[float, dict[str, _SlotRow]] = {}
        # The buckets at the start of the current slot, and the probes at today's midnight, once settled.
        self._buckets: tuple[float, _Counters] | None = None
        self._midnight: tuple[float, _Counters] | None = None
        # Each endpoint's bars of the whole days, reused while the kept days are the same (_days_version).
        self._past: dict[str, _Past] = {}
        self._days_version: object = None
        self._days_first = 0.0
        # Seconds each query took (its expression, cut), for bench/status_prometheus.py; kept while `timings` is set.
        self.timings: list[tuple[float, str]] | None = None

    def close(self) -> None:
        """Close the connections."""
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._client.close()

    # Queries

    def _query(self, path: str, params: dict[str, str]) -> list[_Series]:
        began = time.perf_counter()
        try:
            response = self._client.post(f"/api/v1/{path}", data=params)
            if self.timings is not None:
                self.timings.append((time.perf_counter() - began, f"{path} {params['query'][:160]}"))
        except httpx.TimeoutException:
            raise PrometheusError(f"no answer within {self._client.timeout.read:g} s") from None
        except httpx.HTTPError as exc:
            raise PrometheusError(_short(str(exc) or type(exc).__name__)) from None
        try:
            body = response.json()
        except ValueError:
            raise PrometheusError(f"HTTP {response.status_code}, not a Prometheus answer") from None
        if not isinstance(body, dict) or body.get("status") != "success":
            error = body.get("error") if isinstance(body, dict) else None
            raise PrometheusError(f"HTTP {response.status_code}: {_short(str(error or 'not a Prometheus answer'))}")
        try:
            data = body["data"]
            out = []
            for item in data["result"]:
                if "values" in item:
                    points = [(float(t), float(v)) for t, v in item["values"]]
                else:
                    t, v = item["value"]
                    points = [(float(t), float(v))]
                out.append(_Series(dict(item["metric"]), points))
        except (KeyError, TypeError, ValueError):
            raise PrometheusError("not a Prometheus answer: unexpected JSON") from None
        return out

    def instant(self, expr: str, at: float) -> list[_Series]:
        """`/api/v1/query` at `at`."""
        return self._query("query", {"query": expr, "time": f"{at:.3f}"})

    def range(self, expr: str, start: float, end: float, step: float) -> list[_Series]:
        """`/api/v1/query_range` from `start` to `end` every `step` seconds."""
        return self._query(
            "query_range", {"query": expr, "start": f"{start:.3f}", "end": f"{end:.3f}", "step": f"{step:g}"}
        )

    # The figures

    def fetch(self, names: Sequence[str], now: float) -> dict[str, EndpointHistory]:
        """The history of each named endpoint as of `now` (those Prometheus knows nothing of get empty ones).

        Whole days and closed slots are read once each and kept (see the module's docstring): a
        first call reads the 89 days and 47 slots, later ones only what is new and the current figures.
        """
        if not names:
            return {}
        sel = endpoint_matcher(names)
        if sel != self._sel:  # other endpoints: what is kept is not theirs
            self._sel, self._days, self._slots = sel, {}, {}
            self._buckets = self._midnight = None
            self._past, self._days_version = {}, None
        today = math.floor(now / DAY) * DAY
        first_day = today - (DAYS_KEPT - 1) * DAY
        into_today = now - today
        first_slot = (math.floor(now / SLOT) - SLOTS_KEPT + 1) * SLOT
        current_slot = first_slot + (SLOTS_KEPT - 1) * SLOT
        self._days = {day: kept for day, kept in self._days.items() if day >= first_day}
        self._slots = {slot: kept for slot, kept in self._slots.items() if slot >= first_slot}
        by_vantage = "sum by (endpoint, vantage)"
        since_midnight = _duration(into_today)
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
        moments = {now, *(now - seconds for _, seconds in _WINDOWS)}
        kept_midnight = self._midnight if self._midnight is not None and self._midnight[0] == today else None
        if kept_midnight is None:
            moments.add(today)
        for t in moments:
            jobs[("probes", t)] = partial(self._counters, "upwatch_probes_total", sel, t)
        jobs["today"] = lambda: self.instant(
            _tagged(
                f"{by_vantage} (increase(upwatch_endpoint_downtime_seconds_total{{{sel}}}[{since_midnight}]))",
                "f",
                "down",
            ),
            now,
        )
        jobs["windows"] = lambda: self.instant(
            " or ".join(
                _tagged(f"{by_vantage} (endpoint:upwatch_endpoint_downtime_seconds:increase{w}{{{sel}}})", "w", w)
                for w, _ in _WINDOWS
            ),
            now,
        )
        jobs["open"] = lambda: self.instant(_state_expr(sel, "down"), now)
        got = self._run(jobs, now)

        buckets = {t: got[("buckets", t)] for t in boundaries if ("buckets", t) in got}
        if kept_buckets is not None:
            buckets[kept_buckets[0]] = kept_buckets[1]
        for slot in (first_slot + i * SLOT for i in range(SLOTS_KEPT - 1)):
            if slot not in self._slots:
                closed = _slot_rows(buckets[slot + SLOT], buckets[slot])
                if slot + SLOT + SETTLE <= now:
                    self._slots[slot] = closed
                got[("slot", slot)] = closed
        if now > current_slot and current_slot + SETTLE <= now:
            self._buckets = (current_slot, buckets[current_slot])
        current = _slot_rows(buckets[now], buckets[current_slot]) if now > current_slot else {}
        probes = {t: got[("probes", t)] for t in moments}
        if kept_midnight is not None:
            probes[today] = kept_midnight[1]
        elif today + SETTLE <= now:
            self._midnight = (today, probes[today])
        got["today"] += _counted(probes[now], probes[today], now, f="probes")
        for w, seconds in _WINDOWS:
            got["windows"] += _counted(probes[now], probes[now - seconds], now, w=w)

        days = [self._days.get(day) or got[("day", day)] for day in (first_day + i * DAY for i in range(DAYS_KEPT - 1))]
        down_today = {
            s.labels.get("endpoint", "") for s in got["today"] if s.labels.get("f") == "down" and s.points[0][1] > 0
        }
        transitions = [series for day in days for series in day.transitions]
        if down_today:
            transitions += self._transitions(endpoint_matcher(down_today), today, now)
        answers = {key: got[key] for key in ("today", "windows", "open")}
        slot_rows = [
            self._slots[slot] if slot in self._slots else got[("slot", slot)]
            for slot in (first_slot + i * SLOT for i in range(SLOTS_KEPT - 1))
        ]
        slot_rows.append(current)
        today_figures = _day_figures(
            [s for s in got["today"] if s.labels.get("f") == "down"],
            [s for s in got["today"] if s.labels.get("f") == "probes"],
        )
        # The whole days' figures are those kept before, unless one was read now or the days moved on.
        if any(key[0] == "day" for key in jobs if isinstance(key, tuple)) or self._days_first != first_day:
            self._days_version = object()
        self._days_first = first_day
        return _assemble(
            names,
            now,
            [*(day.figures for day in days), today_figures],
            answers,
            slot_rows,
            transitions,
            self._past,
            self._days_version,
        )

    def _counters(self, metric: str, sel: str, at: float) -> _Counters:
        """Every series of a counter as it stood at `at` (its latest sample up to 5 minutes before)."""
        return {
            tuple(sorted(s.labels.items())): (s.labels, s.points[0][1]) for s in self.instant(f"{metric}{{{sel}}}", at)
        }

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
            _tagged(
                f"sum by (endpoint, vantage) (endpoint:upwatch_endpoint_downtime_seconds:increase1d{{{sel}}})",
                "f",
                "down",
            )
            + " or "
            + _tagged(f"sum by (endpoint, result) ({_difference('upwatch_probes_total', sel, DAY)})", "f", "probes"),
            end,
        )
        down = [s for s in answer if s.labels.get("f") == "down"]
        figures = _day_figures(down, [s for s in answer if s.labels.get("f") == "probes"])
        were_down = {s.labels.get("endpoint", "") for s in down if s.points[0][1] > 0}
        transitions = self._transitions(endpoint_matcher(were_down), day, end) if were_down else []
        return _Day(figures, transitions)

    def _transitions(self, sel: str, start: float, end: float) -> list[_Series]:
        """The state changes and the failure reasons at those into `down` of these endpoints in [start, end]."""
        step = _duration(INCIDENT_STEP)
        since = f"upwatch_endpoint_state_since_timestamp_seconds{{{sel}}}"
        unchanged = f"({since} == {since} offset {step})"
        changes = f"({_state_expr(sel, None)} unless ignoring (state) {unchanged})"
        into_down = f"({_state_expr(sel, 'down')} unless ignoring (state) {unchanged})"
        grown = _difference("upwatch_probe_failures_total", sel, INCIDENT_STEP)
        reasons = f"({grown} > 0 and ignoring (reason, state) {into_down})"
        # From a little before the day: a transition just before midnight the day's rule sample may
        # have missed lands in the next day's.
        return self.range(f"{changes} or {reasons}", start - 5 * 60, end, INCIDENT_STEP)


# A counter's series at one moment: its labels, sorted, -> (the labels, the value).
_Counters = dict[tuple[tuple[str, str], ...], tuple[dict[str, str], float]]


def _growth(end: _Counters, start: _Counters, by: tuple[str, str]) -> dict[tuple[str, ...], float]:
    """How much the series grew from `start` to `end`, summed by the labels `by`: a reset or a new series from 0."""
    out: defaultdict[tuple[str, ...], float] = defaultdict(float)
    first, second = by  # two labels: unpacked, for speed (some 10,000 series a call)
    for key, (labels, value) in end.items():
        before = start.get(key)
        grown = value - before[1] if before is not None and value >= before[1] else value
        out[labels.get(first, ""), labels.get(second, "")] += grown
    return out


def _counted(end: _Counters, start: _Counters, at: float, **tag: str) -> list[_Series]:
    """Probes by endpoint and result from `start` to `end`, as series tagged like the queries' answers."""
    return [
        _Series({"endpoint": endpoint, "result": result, **tag}, [(at, grown)])
        for (endpoint, result), grown in _growth(end, start, ("endpoint", "result")).items()
    ]


# One slot of one endpoint: probes, and the p50 and p95 of their durations (None without probes).
_SlotRow = tuple[int, float | None, float | None]


def _slot_rows(end: _Counters, start: _Counters) -> dict[str, _SlotRow]:
    """Each endpoint's probes, p50 and p95 from the growth of its duration buckets from `start` to `end`."""
    by_endpoint: defaultdict[str, list[tuple[float, float]]] = defaultdict(list)
    for (endpoint, le), grown in _growth(end, start, ("endpoint", "le")).items():
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


def _tagged(expr: str, label: str, value: str) -> str:
    """The expression's series with one more label, to tell the parts of one query apart."""
    return f'label_replace({expr}, "{label}", "{value}", "", "")'


def _state_expr(sel: str, state: str | None) -> str:
    """When the current state began, labelled with that state (`state` alone, when given)."""
    only = f', state="{state}"' if state else ""
    return (
        f"upwatch_endpoint_state_since_timestamp_seconds{{{sel}}}"
        f" * ignoring (state) group_left (state) (upwatch_endpoint_state{{{sel}{only}}} == 1)"
    )


def _short(text: str, limit: int = 120) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _uptime(down: float, known: float) -> float | None:
    if known <= 0:
        return None
    return min(1.0, max(0.0, 1 - down / known))


def _least_down(per_vantage: Mapping[str | None, float]) -> float:
    return min(per_vantage.values()) if per_vantage else 0.0


def _assemble(
    names: Sequence[str],
    now: float,
    days: Sequence[Mapping[str, _DayFigures]],
    got: Mapping[str, list[_Series]],
    slot_rows: Sequence[Mapping[str, _SlotRow]],
    transitions: list[_Series],
    past: dict[str, _Past],
    days_version: object,
) -> dict[str, EndpointHistory]:
    """The records of every endpoint from the figures of its days and the answers of `fetch`'s queries.

    `past` keeps each endpoint's bars of the whole days between calls, with `days_version` (which
    changes whenever the figures of those days may have) and the incidents that overlap them: while
    both are the same, the bars are reused rather than built again.
    """
    today = math.floor(now / DAY) * DAY
    first_day = today - (DAYS_KEPT - 1) * DAY
    day_starts = [float(first_day + i * DAY) for i in range(DAYS_KEPT)]

    def nested() -> defaultdict[str, Any]:
        return defaultdict(lambda: defaultdict(float))

    windows: defaultdict[str, Any] = defaultdict(nested)  # endpoint -> window -> vantage -> down
    window_probes: defaultdict[str, Any] = defaultdict(nested)  # endpoint -> window -> result -> probes
    for s in got["windows"]:
        ep, w, v = s.labels.get("endpoint", ""), s.labels.get("w", ""), s.points[0][1]
        if "result" in s.labels:
            window_probes[ep][w][s.labels["result"]] += v
        else:
            windows[ep][w][s.labels.get("vantage")] += v
    incidents = _incidents(transitions, got["open"], now, first_day)

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
            kept = past[name] = _Past(
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
        for w, length in _WINDOWS:
            down = _least_down(windows[name][w])
            probes = window_probes[name][w]
            n, failed = probes.get("success", 0.0) + probes.get("failure", 0.0), probes.get("failure", 0.0)
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
        response = []
        for start, rows in zip(slot_starts, slot_rows, strict=True):
            row = rows.get(name)
            response.append(ResponseSlot(start, *row) if row is not None and row[0] else no_probes[start])
        out[name] = EndpointHistory(
            name,
            now,
            window_list[0],
            window_list[1],
            window_list[2],
            last_90d,
            tuple(bars),
            tuple(response),
            tuple(shown),
        )
    return out


@dataclass(frozen=True, slots=True)
class _Past:
    """An endpoint's bars of the whole days, kept with what they were built from."""

    version: object
    incidents: tuple[Incident, ...]  # those that started before today
    bars: tuple[DayBar, ...]
    # Over those bars, for the 90-day window: the seconds of the days with probes, down seconds, probes, failures.
    known: float
    down: float
    probes: int
    failures: int


_NOTHING: _DayFigures = (0, 0, 0.0)


def _bars(
    name: str,
    starts: Sequence[float],
    days: Sequence[Mapping[str, _DayFigures]],
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


def _incidents(
    transitions: list[_Series], open_now: list[_Series], now: float, first_day: float
) -> dict[str, list[Incident]]:
    """The incidents of each endpoint, oldest first, from the state changes and failure reasons read."""
    # (endpoint, vantage, the series' other labels) -> {since value: state}, and -> [(time, reason, growth)]
    changes: defaultdict[tuple[str, str | None, tuple[tuple[str, str], ...]], dict[float, str]] = defaultdict(dict)
    reasons: defaultdict[tuple[str, str | None, tuple[tuple[str, str], ...]], list[tuple[float, str, float]]]
    reasons = defaultdict(list)

    def key(labels: Mapping[str, str]) -> tuple[str, str | None, tuple[tuple[str, str], ...]]:
        rest = tuple(sorted((k, v) for k, v in labels.items() if k not in ("state", "reason", "__name__")))
        return labels.get("endpoint", ""), labels.get("vantage"), rest

    for s in transitions:
        if "state" in s.labels:
            state, seen = s.labels["state"], changes[key(s.labels)]
            for _, since in s.points:
                seen[since] = state
        elif "reason" in s.labels:
            reasons[key(s.labels)] += [(t, s.labels["reason"], v) for t, v in s.points]
    for s in open_now:  # down now: its start even if it is older than the days read
        changes[key(s.labels)].setdefault(s.points[0][1], "down")

    out: defaultdict[str, list[Incident]] = defaultdict(list)
    for k, by_since in changes.items():
        endpoint, vantage, _ = k
        start: float | None = None
        for since in sorted(by_since):
            state = by_since[since]
            if state == "down" and start is None:
                start = since
            elif state != "down" and start is not None:
                if since > first_day:
                    out[endpoint].append(_incident(start, since, now, _reason(reasons[k], start), vantage))
                start = None
        if start is not None:
            out[endpoint].append(_incident(start, None, now, _reason(reasons[k], start), vantage))
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
