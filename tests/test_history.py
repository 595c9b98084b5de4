"""The status page's probe history, fed real results and the transitions of a real EndpointState, on a fake clock."""

from __future__ import annotations

import pytest

from exporter.history import (
    DAYS_KEPT,
    MAX_INCIDENTS,
    MAX_MESSAGE,
    SLOTS_KEPT,
    DayBar,
    EndpointHistory,
    History,
    Incident,
    ResponseSlot,
    Window,
    histogram_quantile,
)
from exporter.results import FailureReason, ProbeResult
from exporter.state import EndpointState

DAY = 86_400
HOUR = 3_600
SLOT = 1_800
MIDNIGHT = 19_676 * DAY  # 2023-11-15 00:00 UTC; "day 0" below


class Clock:
    """A clock the test moves by hand."""

    def __init__(self, now: float = MIDNIGHT) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class Endpoint:
    """One endpoint: a real state machine whose transitions, with the results that caused them, go to the history."""

    def __init__(
        self,
        history: History,
        name: str = "api",
        failure_threshold: int = 1,
        success_threshold: int = 1,
        degraded_after: float | None = None,
    ) -> None:
        self.history = history
        self.name = name
        self.state = EndpointState(
            failure_threshold=failure_threshold,
            success_threshold=success_threshold,
            degraded_after=degraded_after,
            created_at=0.0,
        )

    def probe(self, t: float, ok: bool, duration: float = 0.1, message: str = "connection refused") -> None:
        result = ProbeResult(
            endpoint=self.name,
            success=ok,
            started_at=t,
            duration_seconds=duration,
            reason=None if ok else FailureReason.CONNECT,
            message="" if ok else message,
        )
        self.history.record(result, self.state.record(result))

    def pattern(self, pattern: str, start: float, step: float = 60.0) -> None:
        """`+` a good probe, `-` a failed one; the i-th starts at start + i * step."""
        for i, ch in enumerate(pattern):
            self.probe(start + i * step, ch == "+")

    def outage(self, start: float, end: float) -> None:
        """With thresholds of 1: down from `start` to `end`."""
        self.probe(start, False)
        self.probe(end, True)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def history(clock: Clock) -> History:
    return History(clock=clock)


def bar(summary: EndpointHistory, day: int) -> tuple[int, int, float, float | None, int]:
    """Probes, failures, down seconds, uptime and incident count of the bar of `day` (0 = MIDNIGHT's day)."""
    found = [b for b in summary.days if b.start == MIDNIGHT + day * DAY]
    assert len(found) == 1, f"no bar for day {day}"
    b = found[0]
    return b.probes, b.failures, b.down_seconds, b.uptime, len(b.incidents)


def test_empty_history(history: History, clock: Clock) -> None:
    clock.now = MIDNIGHT + 12 * HOUR
    summary = history.summary("nobody")
    assert summary.endpoint == "nobody"
    assert summary.at == clock.now
    for window in (summary.last_24h, summary.last_7d, summary.last_30d, summary.last_90d):
        assert (window.known_seconds, window.down_seconds, window.probes, window.failures) == (0, 0, 0, 0)
        assert window.uptime is None
    assert len(summary.days) == DAYS_KEPT
    assert all((b.probes, b.down_seconds, b.uptime, b.incidents) == (0, 0, None, ()) for b in summary.days)
    assert summary.days[-1].start == MIDNIGHT
    assert summary.days[-1].date.isoformat() == "2023-11-15"
    assert summary.days[0].date.isoformat() == "2023-08-18"
    assert len(summary.response_times) == SLOTS_KEPT
    assert all((s.probes, s.p50, s.p95) == (0, None, None) for s in summary.response_times)
    assert summary.response_times[-1].start == MIDNIGHT + 12 * HOUR
    assert summary.response_times[0].start == MIDNIGHT + 12 * HOUR - (SLOTS_KEPT - 1) * SLOT
    assert summary.incidents == ()
    assert history.summaries() == {}


def test_window_starts(history: History, clock: Clock) -> None:
    clock.now = MIDNIGHT + 12 * HOUR + 30.5
    Endpoint(history).probe(MIDNIGHT - 100 * DAY, True)
    summary = history.summary("api")
    # 24 h: the current 30-minute slot and the 47 before it; N days: today and the N - 1 days before it.
    assert summary.last_24h.start == MIDNIGHT + 12 * HOUR - 47 * SLOT
    assert summary.last_24h.known_seconds == 47 * SLOT + 30.5
    assert summary.last_7d.start == MIDNIGHT - 6 * DAY
    assert summary.last_30d.start == MIDNIGHT - 29 * DAY
    assert summary.last_90d.start == MIDNIGHT - 89 * DAY
    assert summary.last_90d.known_seconds == 89 * DAY + 12 * HOUR + 30.5
    assert summary.last_90d.uptime == 1.0


def test_outage_spanning_midnight(history: History, clock: Clock) -> None:
    ep = Endpoint(history, failure_threshold=3)
    # A probe a minute from 23:00 on day -1 to 01:00 on day 0; failing from 23:30 to 00:19 (50 probes).
    ep.pattern("+" * 30 + "-" * 50 + "+" * 41, start=MIDNIGHT - HOUR)
    clock.now = MIDNIGHT + HOUR + 30
    summary = history.summary("api")

    # Down from the first failed probe (23:30) to the first good one (00:20), as the agent counts it.
    assert ep.state.snapshot().downtime_seconds == 3000
    assert summary.incidents == (
        Incident(MIDNIGHT - 1800, MIDNIGHT + 1200, 3000, FailureReason.CONNECT, "connection refused"),
    )
    # Day -1: 60 probes from 23:00, 30 failed; down 1800 s of the 3600 known.
    assert bar(summary, -1) == (60, 30, 1800, 0.5, 1)
    # Day 0: 61 probes, 20 failed; down 1200 s of the 3630 known so far.
    assert bar(summary, 0) == (61, 20, 1200, 1 - 1200 / 3630, 1)
    assert summary.days[-1].incidents == summary.days[-2].incidents == summary.incidents
    for window in (summary.last_24h, summary.last_7d):
        assert (window.probes, window.failures, window.down_seconds, window.known_seconds) == (121, 50, 3000, 7230)
        assert window.uptime == 1 - 3000 / 7230


def test_open_incident_counts_up_to_now(history: History, clock: Clock) -> None:
    ep = Endpoint(history, failure_threshold=3)
    ep.pattern("+---", start=MIDNIGHT - 90, step=30)  # down since the first failure, MIDNIGHT - 60
    clock.now = MIDNIGHT + 540
    summary = history.summary("api")
    assert ep.state.snapshot().downtime_seconds == 60  # the agent's counter moves with results only
    assert summary.incidents == (Incident(MIDNIGHT - 60, None, 600, FailureReason.CONNECT, "connection refused"),)
    assert summary.last_24h.down_seconds == 600
    assert summary.last_24h.uptime == 1 - 600 / 630
    assert bar(summary, -1) == (3, 2, 60, 1 - 60 / 90, 1)
    assert bar(summary, 0) == (1, 1, 540, 0.0, 1)

    clock.now += 60  # no new result: still counts up to now
    assert history.summary("api").last_24h.down_seconds == 660

    ep.pattern("+", start=MIDNIGHT + 570)  # closed at the first good probe, before now
    summary = history.summary("api")
    assert summary.incidents[0].end == MIDNIGHT + 570
    assert summary.last_24h.down_seconds == 630 == ep.state.snapshot().downtime_seconds


@pytest.mark.parametrize(
    ("failure_threshold", "success_threshold", "pattern", "down"),
    [
        (1, 1, "+-+", 60),
        (3, 1, "+--+--+", 0),  # failures below the threshold are not downtime
        (3, 1, "+---+", 180),  # counted from the first failure, once confirmed
        (1, 2, "-+-++", 180),  # an interrupted recovery is down; the confirmed one ends at its first probe
        (2, 3, "--+++--+++", 240),  # two incidents
    ],
)
def test_down_seconds_match_the_agents_counter(
    history: History, clock: Clock, failure_threshold: int, success_threshold: int, pattern: str, down: float
) -> None:
    ep = Endpoint(history, failure_threshold=failure_threshold, success_threshold=success_threshold)
    ep.pattern(pattern, start=MIDNIGHT)
    clock.now = MIDNIGHT + 3600
    summary = history.summary("api")
    assert ep.state.snapshot().downtime_seconds == down
    assert summary.last_24h.down_seconds == summary.days[-1].down_seconds == down
    assert sum(i.duration for i in summary.incidents) == down
    assert all(i.end is not None for i in summary.incidents)


def test_incident_keeps_the_reason_and_message_of_the_failure_that_opened_it(history: History) -> None:
    ep = Endpoint(history, failure_threshold=2)
    ep.probe(MIDNIGHT, False, message="first")
    ep.probe(MIDNIGHT + 30, False, message="second")
    ep.probe(MIDNIGHT + 60, False, message="third")
    ep.probe(MIDNIGHT + 90, True)
    ep.probe(MIDNIGHT + 120, False, message="".join(["sec", "ond"]))
    ep.probe(MIDNIGHT + 150, False, message="".join(["sec", "ond"]))
    first, second = history.summary("api").incidents
    assert (first.start, first.reason, first.message) == (MIDNIGHT, FailureReason.CONNECT, "second")
    assert (second.start, second.message) == (MIDNIGHT + 120, "second")
    assert second.message is first.message  # kept once


def test_long_messages_are_cut(history: History) -> None:
    ep = Endpoint(history)
    long = "x" * (MAX_MESSAGE - 1) + "yz"
    for i, message in enumerate([long, "x" * MAX_MESSAGE, "".join(["x" * (MAX_MESSAGE - 1), "yz"])]):
        ep.probe(MIDNIGHT + 60 * i, False, message=message)
        ep.probe(MIDNIGHT + 60 * i + 30, True)
    first, second, third = (i.message for i in history.summary("api").incidents)
    assert first == "x" * (MAX_MESSAGE - 1) + "…"
    assert second == "x" * MAX_MESSAGE  # at the bound: kept whole
    assert third is first  # the cut text is kept once too


def test_messages_stay_with_their_incidents_as_the_oldest_are_dropped(history: History, clock: Clock) -> None:
    ep = Endpoint(history)
    count = 6 * MAX_INCIDENTS  # more distinct messages than a byte can number
    for i in range(count):
        ep.probe(MIDNIGHT + i * 60, False, message=f"text {i % 7}" if i % 2 else f"text of incident {i}")
        ep.probe(MIDNIGHT + i * 60 + 30, True)
    clock.now = MIDNIGHT + DAY - 1
    incidents = history.summary("api").incidents
    first = count - MAX_INCIDENTS
    assert [i.message for i in incidents] == [
        f"text {i % 7}" if i % 2 else f"text of incident {i}" for i in range(first, count)
    ]


def test_known_seconds_start_at_the_first_probe(history: History, clock: Clock) -> None:
    ep = Endpoint(history)
    ep.probe(MIDNIGHT + 12 * HOUR, True)
    ep.outage(MIDNIGHT + 13 * HOUR, MIDNIGHT + 14 * HOUR)
    clock.now = MIDNIGHT + 18 * HOUR
    summary = history.summary("api")
    for window in (summary.last_24h, summary.last_7d, summary.last_30d, summary.last_90d):
        assert (window.known_seconds, window.down_seconds) == (6 * HOUR, HOUR)
        assert window.uptime == 1 - 1 / 6
    assert bar(summary, 0) == (3, 1, HOUR, 1 - 1 / 6, 1)
    assert bar(summary, -1) == (0, 0, 0, None, 0)


def test_ninety_day_cutoff(history: History, clock: Clock) -> None:
    ep = Endpoint(history)
    ep.outage(MIDNIGHT - 95 * DAY + 10 * HOUR, MIDNIGHT - 95 * DAY + 11 * HOUR)  # ended before the oldest bar
    ep.outage(MIDNIGHT - 91 * DAY, MIDNIGHT - 89 * DAY + 6 * HOUR)  # reaches into the oldest bar
    ep.outage(MIDNIGHT - 2 * DAY, MIDNIGHT - 2 * DAY + 60)
    clock.now = MIDNIGHT + 12 * HOUR
    summary = history.summary("api")

    assert [(i.start, i.end, i.duration) for i in summary.incidents] == [
        (MIDNIGHT - 91 * DAY, MIDNIGHT - 89 * DAY + 6 * HOUR, 2 * DAY + 6 * HOUR),
        (MIDNIGHT - 2 * DAY, MIDNIGHT - 2 * DAY + 60, 60),
    ]
    assert summary.days[0].start == MIDNIGHT - 89 * DAY
    assert bar(summary, -89) == (1, 0, 6 * HOUR, 0.75, 1)
    assert bar(summary, -2) == (2, 1, 60, 1 - 60 / DAY, 1)
    assert bar(summary, -50) == (0, 0, 0, None, 0)  # known, but no probes: no uptime
    assert summary.last_90d.down_seconds == 6 * HOUR + 60
    assert summary.last_90d.probes == 3
    assert summary.last_90d.known_seconds == 89 * DAY + 12 * HOUR
    assert summary.last_30d.down_seconds == summary.last_7d.down_seconds == 60
    assert summary.last_24h.down_seconds == 0
    assert summary.last_24h.uptime == 1.0

    # A new incident drops the ones that ended before its own oldest bar.
    clock.now = MIDNIGHT + 100 * DAY
    ep.outage(clock.now - 60, clock.now - 30)
    assert [i.start for i in history.summary("api").incidents] == [clock.now - 60]


def test_slot_ring_wraps_after_a_day(history: History, clock: Clock) -> None:
    ep = Endpoint(history)
    # A probe a minute for 30 hours, the last 90 minutes of them down, then nothing.
    ep.pattern("+" * (30 * 60 - 90) + "-" * 90, start=MIDNIGHT)
    clock.now = MIDNIGHT + 30 * HOUR - 30  # in the slot of the last probe, 29:30 to 30:00
    summary = history.summary("api")
    # From 06:00: the probes of the minutes 360 to 1799; down since 28:30.
    assert summary.last_24h.start == MIDNIGHT + 6 * HOUR
    assert (summary.last_24h.probes, summary.last_24h.failures, summary.last_24h.down_seconds) == (1440, 90, 5370)
    assert summary.last_24h.known_seconds == DAY - 30
    assert (summary.last_7d.probes, summary.last_7d.failures) == (1800, 90)

    # 25 hours later, the slot rows skipped are empty, not the day before's.
    clock.now = MIDNIGHT + 55 * HOUR + 30
    ep.probe(MIDNIGHT + 55 * HOUR, True)
    summary = history.summary("api")
    assert (summary.last_24h.probes, summary.last_24h.failures) == (1, 0)
    assert [s.probes for s in summary.response_times if s.probes] == [1]
    # Down from the first failure to that probe: 26.5 h, of which the window's 23.5 h (from 31:30) count here.
    assert summary.incidents[0].duration == 26.5 * HOUR
    assert summary.last_24h.start == MIDNIGHT + 31.5 * HOUR
    assert summary.last_24h.down_seconds == 23.5 * HOUR


def test_late_results_older_than_a_ring_are_left_out_of_it(history: History, clock: Clock) -> None:
    ep = Endpoint(history, failure_threshold=3)
    ep.probe(MIDNIGHT + 30 * HOUR, True)
    ep.probe(MIDNIGHT + 5 * HOUR, False)  # 25 hours late: too old for the minutes, not for the days
    ep.probe(MIDNIGHT - 100 * DAY, True)  # too old for the days too
    clock.now = MIDNIGHT + 30 * HOUR + 30
    summary = history.summary("api")
    assert (summary.last_24h.probes, summary.last_24h.failures) == (1, 0)
    assert [s.probes for s in summary.response_times if s.probes] == [1]
    assert (summary.last_90d.probes, summary.last_90d.failures) == (2, 1)
    assert bar(summary, 0) == (1, 1, 0, 1.0, 0)
    assert bar(summary, 1) == (1, 0, 0, 1.0, 0)


def test_a_clock_behind_the_results_shows_none_of_them(history: History, clock: Clock) -> None:
    ep = Endpoint(history, failure_threshold=3)
    ep.probe(MIDNIGHT + 100 * DAY, False)  # after a clock stepped back by 100 days
    summary = history.summary("api")
    assert (summary.last_24h.probes, summary.last_90d.probes, summary.last_90d.known_seconds) == (0, 0, 0)
    assert [b.probes for b in summary.days] == [0] * DAYS_KEPT
    assert [s.probes for s in summary.response_times] == [0] * SLOTS_KEPT


def test_day_ring_wraps_after_ninety_days(history: History, clock: Clock) -> None:
    ep = Endpoint(history)
    for day in range(-119, 1):
        ep.probe(MIDNIGHT + day * DAY + 12 * HOUR, day % 2 == 0)
    clock.now = MIDNIGHT + 13 * HOUR
    summary = history.summary("api")
    assert [b.probes for b in summary.days] == [1] * DAYS_KEPT
    assert (summary.last_90d.probes, summary.last_90d.failures) == (90, 45)
    assert (summary.last_30d.probes, summary.last_30d.failures) == (30, 15)
    assert (summary.last_7d.probes, summary.last_7d.failures) == (7, 3)
    # Down a day every other day, from noon to noon; the 7-day window starts in the middle of one.
    assert summary.last_7d.down_seconds == 3.5 * DAY
    assert summary.last_90d.down_seconds == 45 * DAY
    assert len(summary.incidents) == 45

    # After a gap longer than the ring, only the new day is there.
    clock.now = MIDNIGHT + 200 * DAY + 13 * HOUR
    ep.probe(MIDNIGHT + 200 * DAY + 12 * HOUR, False)
    summary = history.summary("api")
    assert [b.probes for b in summary.days] == [0] * (DAYS_KEPT - 1) + [1]
    assert (summary.last_90d.probes, summary.last_90d.failures) == (1, 1)
    assert summary.last_90d.down_seconds == HOUR


@pytest.mark.parametrize(
    ("durations", "p50", "p95"),
    [
        ([0.1], 0.0875, 0.09875),  # 0.1 is in the bucket le=0.1: (0.075, 0.1]
        ([0.002] * 4, 0.0025, 0.00475),  # the first bucket starts at 0
        ([0.02] * 5 + [0.2] * 4 + [3.5], 0.025, 4.0),
        ([0.3] * 19 + [60.0], 0.25 + 0.25 * 10 / 19, 0.5),
        ([60.0] * 2, 30.0, 30.0),  # in the +Inf bucket: the highest finite bound
    ],
)
def test_response_time_quantiles(
    history: History, clock: Clock, durations: list[float], p50: float, p95: float
) -> None:
    ep = Endpoint(history)
    for i, duration in enumerate(durations):
        ep.probe(MIDNIGHT + 900 + i, True, duration=duration)
    clock.now = MIDNIGHT + SLOT
    slots = history.summary("api").response_times
    assert [s.start for s in slots[-2:]] == [MIDNIGHT, MIDNIGHT + SLOT]
    # The latest slot's, from its histogram; rounded to the microsecond as a closed slot keeps them.
    quantiles = (pytest.approx(p50, abs=5e-7), pytest.approx(p95, abs=5e-7))
    assert (slots[-2].p50, slots[-2].p95) == quantiles
    assert (slots[-2].p50, slots[-2].p95) == (round(slots[-2].p50 * 1e6) / 1e6, round(slots[-2].p95 * 1e6) / 1e6)
    assert slots[-2].probes == len(durations)
    assert [s.probes for s in slots[:-2]] + [slots[-1].probes] == [0] * (SLOTS_KEPT - 1)

    ep.probe(MIDNIGHT + SLOT, True, duration=5.0)  # closes the slot: its quantiles are kept, the same
    closed = history.summary("api").response_times[-2]
    assert closed == slots[-2]


def test_a_slot_s_quantiles_are_fixed_when_it_closes(history: History, clock: Clock) -> None:
    ep = Endpoint(history)
    ep.probe(MIDNIGHT + 60, True, duration=0.1)
    ep.probe(MIDNIGHT + SLOT + 60, True, duration=3.0)  # a later slot: the first closes
    ep.probe(MIDNIGHT + 120, False, duration=20.0)  # late, in the closed slot
    clock.now = MIDNIGHT + SLOT + 90
    summary = history.summary("api")
    first, latest = summary.response_times[-2:]
    assert (first.start, first.probes, first.p50, first.p95) == (MIDNIGHT, 2, 0.0875, 0.09875)  # 0.1 alone
    assert (latest.start, latest.probes, latest.p50, latest.p95) == (MIDNIGHT + SLOT, 1, 2.5, 2.95)
    assert (summary.last_24h.probes, summary.last_24h.failures) == (3, 1)


def test_response_times_drop_slots_older_than_a_day(history: History, clock: Clock) -> None:
    ep = Endpoint(history)
    ep.probe(MIDNIGHT, False, duration=10.0)  # failed probes count too
    ep.probe(MIDNIGHT + 23 * HOUR + 50 * 60, True, duration=0.5)
    clock.now = MIDNIGHT + DAY
    slots = history.summary("api").response_times
    assert [(s.start, s.p50) for s in slots if s.probes] == [(MIDNIGHT + 23.5 * HOUR, 0.375)]
    clock.now = MIDNIGHT + DAY - 1
    slots = history.summary("api").response_times
    assert [(s.start, s.p50) for s in slots if s.probes] == [(MIDNIGHT, 8.75), (MIDNIGHT + 23.5 * HOUR, 0.375)]


@pytest.mark.parametrize(
    ("q", "cumulative", "expected"),
    [
        (0.5, [0, 0, 0], None),
        (0.5, [2, 2, 2], 0.5),
        (0.5, [1, 2, 2], 1.0),
        (0.75, [1, 2, 2], 1.5),
        (0.9, [0, 9, 10], 2.0),
        (0.95, [0, 0, 4], 2.0),  # in the +Inf bucket: the highest finite bound
        (0.5, [3, 4, 4], 2 / 3),
    ],
)
def test_histogram_quantile(q: float, cumulative: list[int], expected: float | None) -> None:
    assert histogram_quantile(q, cumulative, (1.0, 2.0)) == (None if expected is None else pytest.approx(expected))


def test_histogram_quantile_with_a_bucket_at_zero() -> None:
    assert histogram_quantile(0.5, [3, 4, 4], (0.0, 1.0)) == 0.0


def test_incidents_are_bounded(history: History, clock: Clock) -> None:
    ep = Endpoint(history)
    for i in range(MAX_INCIDENTS + 51):
        ep.outage(MIDNIGHT + i * 60, MIDNIGHT + i * 60 + 10)
    clock.now = MIDNIGHT + 12 * HOUR
    summary = history.summary("api")
    assert len(summary.incidents) == MAX_INCIDENTS
    assert summary.incidents[0].start == MIDNIGHT + 51 * 60
    assert summary.incidents[-1].start == MIDNIGHT + (MAX_INCIDENTS + 50) * 60
    assert summary.days[-1].incidents == summary.incidents
    # The seconds of the dropped ones still count.
    assert summary.last_24h.down_seconds == summary.days[-1].down_seconds == (MAX_INCIDENTS + 51) * 10


def test_the_bound_counts_the_incidents_left_after_the_ninety_days(history: History, clock: Clock) -> None:
    ep = Endpoint(history)
    for i in range(10):  # kept by the next ones, two days ago; before the oldest bar of today's
        ep.outage(MIDNIGHT - 90 * DAY + i * 60, MIDNIGHT - 90 * DAY + i * 60 + 10)
    for i in range(MAX_INCIDENTS - 10):
        ep.outage(MIDNIGHT - 2 * DAY + i * 60, MIDNIGHT - 2 * DAY + i * 60 + 10)
    ep.outage(MIDNIGHT + 60, MIDNIGHT + 70)  # drops the first 10, and no more
    clock.now = MIDNIGHT + HOUR
    summary = history.summary("api")
    assert len(summary.incidents) == MAX_INCIDENTS - 9
    assert summary.incidents[0].start == MIDNIGHT - 2 * DAY
    assert summary.last_7d.down_seconds == (MAX_INCIDENTS - 9) * 10
    assert bar(summary, -2)[2:] == ((MAX_INCIDENTS - 10) * 10, 1 - (MAX_INCIDENTS - 10) * 10 / DAY, MAX_INCIDENTS - 10)


def test_dropped_incidents_still_count_in_their_days(history: History, clock: Clock) -> None:
    ep = Endpoint(history)
    ep.outage(MIDNIGHT - 3 * DAY + 100, MIDNIGHT - 3 * DAY + 160)  # both dropped below
    ep.outage(MIDNIGHT - 30, MIDNIGHT + 30)  # across midnight
    for i in range(MAX_INCIDENTS):
        ep.outage(MIDNIGHT + 60 + i * 60, MIDNIGHT + 70 + i * 60)
    clock.now = MIDNIGHT + 12 * HOUR
    summary = history.summary("api")
    assert len(summary.incidents) == MAX_INCIDENTS
    assert summary.incidents[0].start == MIDNIGHT + 60
    assert bar(summary, -3) == (2, 1, 60, 1 - 60 / (DAY - 100), 0)  # known from its first probe
    assert bar(summary, -1) == (1, 1, 30, 1 - 30 / DAY, 0)
    down = 30 + MAX_INCIDENTS * 10
    assert bar(summary, 0) == (1 + 2 * MAX_INCIDENTS, MAX_INCIDENTS, down, 1 - down / (12 * HOUR), MAX_INCIDENTS)
    assert summary.last_7d.down_seconds == 60 + 60 + MAX_INCIDENTS * 10
    assert summary.last_24h.start == MIDNIGHT - 11.5 * HOUR
    assert summary.last_24h.down_seconds == 60 + MAX_INCIDENTS * 10

    # The rings moving on forget them with their days.
    clock.now = MIDNIGHT + 87 * DAY + 12 * HOUR
    ep.probe(clock.now - 60, True)
    summary = history.summary("api")
    assert summary.days[0].start == MIDNIGHT - 2 * DAY
    assert summary.last_90d.down_seconds == 60 + MAX_INCIDENTS * 10
    assert summary.last_24h.down_seconds == 0


def test_endpoints_alike_share_plain_days_only(history: History, clock: Clock) -> None:
    b = Endpoint(history, "b")  # first, so that its bars are built first
    b.probe(MIDNIGHT - 4 * DAY + 12 * HOUR, False)  # known from noon, down for 6 hours
    b.probe(MIDNIGHT - 4 * DAY + 18 * HOUR, True)
    b.probe(MIDNIGHT - 3 * DAY + 12 * HOUR, True)
    b.outage(MIDNIGHT - DAY - HOUR, MIDNIGHT - DAY + HOUR)  # its day -1: one good probe, as a's, but down an hour
    a = Endpoint(history, "a")
    for day in (-4, -3, -2, -1):
        a.probe(MIDNIGHT + day * DAY + (12 * HOUR if day > -4 else 0), True)
    clock.now = MIDNIGHT + HOUR
    summaries = history.summaries()
    sa, sb = summaries["a"], summaries["b"]
    assert [bar(sa, day) for day in (-4, -3, -2, -1)] == [(1, 0, 0, 1.0, 0)] * 4
    assert [bar(sb, day) for day in (-4, -3, -2, -1)] == [
        (2, 1, 6 * HOUR, 0.5, 1),
        (1, 0, 0, 1.0, 0),
        (1, 1, HOUR, 1 - 1 / 24, 1),
        (1, 0, HOUR, 1 - 1 / 24, 1),
    ]
    assert sa.days[-4] == sb.days[-4]  # day -3: the same figures
    assert history.summary("a") == sa


def test_summaries_are_frozen_records(history: History, clock: Clock) -> None:
    Endpoint(history).outage(MIDNIGHT, MIDNIGHT + 60)
    clock.now = MIDNIGHT + 120
    summary = history.summary("api")
    day, slot, incident, window = summary.days[-1], summary.response_times[-1], summary.incidents[0], summary.last_24h
    assert (type(summary), type(day), type(slot), type(incident), type(window)) == (
        EndpointHistory,
        DayBar,
        ResponseSlot,
        Incident,
        Window,
    )
    same = DayBar(day.start, day.probes, day.failures, day.down_seconds, day.uptime, day.incidents)
    assert (day, hash(day)) == (same, hash(same))
    assert incident == Incident(MIDNIGHT, MIDNIGHT + 60, 60, FailureReason.CONNECT, "connection refused")
    for record, field in ((summary, "at"), (day, "probes"), (slot, "p50"), (incident, "end"), (window, "uptime")):
        with pytest.raises(AttributeError):
            setattr(record, field, None)


def test_incidents_stay_in_order_when_the_clock_steps_back(history: History, clock: Clock) -> None:
    ep = Endpoint(history)
    ep.outage(MIDNIGHT, MIDNIGHT + 60)
    ep.outage(MIDNIGHT + 30, MIDNIGHT + 90)  # starts before the first ended: from its end
    clock.now = MIDNIGHT + 120
    summary = history.summary("api")
    assert [(i.start, i.end) for i in summary.incidents] == [(MIDNIGHT, MIDNIGHT + 60), (MIDNIGHT + 60, MIDNIGHT + 90)]
    assert summary.last_24h.down_seconds == summary.days[-1].down_seconds == 90


def test_retain_and_forget(history: History, clock: Clock) -> None:
    endpoints = {name: Endpoint(history, name) for name in ("a", "b", "c")}
    for ep in endpoints.values():
        ep.probe(MIDNIGHT, True)
    clock.now = MIDNIGHT + 60
    assert history.names() == ("a", "b", "c")

    history.retain(["a", "c", "unknown"])
    assert history.names() == ("a", "c")
    assert history.summary("b").last_24h.probes == 0
    assert set(history.summaries()) == {"a", "c"}

    history.forget(["a", "unknown"])
    assert history.names() == ("c",)
    assert history.summary("c").last_24h.probes == 1

    endpoints["b"].probe(MIDNIGHT + 30, True)  # a late result starts a new history
    assert history.names() == ("c", "b")
    assert history.summary("b").last_24h.known_seconds == 30


def test_summaries_share_one_moment(history: History, clock: Clock) -> None:
    Endpoint(history, "a").outage(MIDNIGHT, MIDNIGHT + 60)
    Endpoint(history, "b").probe(MIDNIGHT, False)
    clock.now = MIDNIGHT + 120
    summaries = history.summaries()
    assert {name: (s.at, s.last_24h.down_seconds) for name, s in summaries.items()} == {
        "a": (MIDNIGHT + 120, 60),
        "b": (MIDNIGHT + 120, 120),
    }


def test_summary_is_a_copy(history: History, clock: Clock) -> None:
    ep = Endpoint(history)
    ep.probe(MIDNIGHT, False)
    clock.now = MIDNIGHT + 60
    before = history.summary("api")
    ep.probe(MIDNIGHT + 30, True)
    assert (before.last_24h.probes, before.incidents[0].end) == (1, None)
    assert history.summary("api").last_24h.probes == 2


def test_millisecond_ends(history: History, clock: Clock) -> None:
    ep = Endpoint(history)
    ep.outage(MIDNIGHT - 0.0004, MIDNIGHT + 59.9996)  # rounded to MIDNIGHT and MIDNIGHT + 60
    clock.now = MIDNIGHT + 60
    summary = history.summary("api")
    assert (summary.days[-2].down_seconds, summary.days[-1].down_seconds) == (0, 60)
    assert [(i.start, i.end, i.duration) for i in summary.incidents] == [(MIDNIGHT, MIDNIGHT + 60, 60)]
    assert summary.days[-2].incidents == ()


def test_degraded_is_not_down(history: History, clock: Clock) -> None:
    ep = Endpoint(history, degraded_after=1.0)
    for i, duration in enumerate([0.1, 2.0, 2.0, 0.1]):
        ep.probe(MIDNIGHT + 60 * i, True, duration=duration)
    clock.now = MIDNIGHT + 300
    summary = history.summary("api")
    assert ep.state.snapshot().since == MIDNIGHT + 180  # degraded from 60 to 180
    assert (summary.last_24h.down_seconds, summary.last_24h.uptime, summary.incidents) == (0, 1.0, ())
