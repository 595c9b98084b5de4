"""The incident state machine, driven by probe results with chosen timestamps."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import pytest

from exporter.results import FailureReason, ProbeResult
from exporter.state import EndpointState, State, StateSnapshot, Transition

UNKNOWN, UP, DEGRADED, DOWN = State.UNKNOWN, State.UP, State.DEGRADED, State.DOWN
DEGRADED_AFTER = 1.0


def good(t: float, duration: float = 0.1) -> ProbeResult:
    return ProbeResult(endpoint="api", success=True, started_at=t, duration_seconds=duration, status_code=200)


def failed(t: float, duration: float = 0.1) -> ProbeResult:
    return ProbeResult(
        endpoint="api", success=False, started_at=t, duration_seconds=duration, reason=FailureReason.CONNECT
    )


def results(pattern: str, start: float = 10.0, step: float = 10.0) -> list[ProbeResult]:
    """`+` good, `~` good but slow (degraded), `-` failed; the i-th probe starts at start + i*step."""
    make = {"+": good, "~": lambda t: good(t, duration=DEGRADED_AFTER + 1), "-": failed}
    return [make[ch](start + i * step) for i, ch in enumerate(pattern)]


def machine(
    failure_threshold: int = 3, success_threshold: int = 1, degraded_after: float | None = DEGRADED_AFTER
) -> EndpointState:
    return EndpointState(
        failure_threshold=failure_threshold,
        success_threshold=success_threshold,
        degraded_after=degraded_after,
        created_at=0.0,
    )


def run(state: EndpointState, probes: Sequence[ProbeResult]) -> list[tuple[State, State, float]]:
    transitions = []
    for result in probes:
        tr = state.record(result)
        if tr is not None:
            transitions.append((tr.old, tr.new, tr.at))
    return transitions


# Probes start at t = 10, 20, 30, ...
CASES = [
    # id, failure_threshold, success_threshold, pattern, state, since, incidents, downtime, transitions
    ("no probes yet", 3, 1, "", UNKNOWN, 0, 0, 0, []),
    ("unknown to up", 3, 1, "+", UP, 10, 0, 0, [(UNKNOWN, UP, 10)]),
    ("unknown to degraded", 3, 1, "~", DEGRADED, 10, 0, 0, [(UNKNOWN, DEGRADED, 10)]),
    ("failures below threshold stay unknown", 3, 1, "--", UNKNOWN, 0, 0, 0, []),
    ("unknown to down, threshold 3", 3, 1, "---", DOWN, 10, 1, 20, [(UNKNOWN, DOWN, 10)]),
    ("unknown to down, threshold 1", 1, 1, "-", DOWN, 10, 1, 0, [(UNKNOWN, DOWN, 10)]),
    ("up to down, threshold 1", 1, 1, "+-", DOWN, 20, 1, 0, [(UNKNOWN, UP, 10), (UP, DOWN, 20)]),
    ("up to down, threshold 3", 3, 1, "+---", DOWN, 20, 1, 20, [(UNKNOWN, UP, 10), (UP, DOWN, 20)]),
    ("flapping below threshold never opens an incident", 3, 1, "+--+--+--+", UP, 10, 0, 0, [(UNKNOWN, UP, 10)]),
    ("a good probe resets the failure streak", 3, 1, "--+--", UP, 30, 0, 0, [(UNKNOWN, UP, 30)]),
    (
        "degraded and back",
        3,
        1,
        "+~~+",
        UP,
        40,
        0,
        0,
        [(UNKNOWN, UP, 10), (UP, DEGRADED, 20), (DEGRADED, UP, 40)],
    ),
    ("failures below threshold keep degraded", 3, 1, "~--", DEGRADED, 10, 0, 0, [(UNKNOWN, DEGRADED, 10)]),
    ("down accumulates downtime", 2, 1, "-----", DOWN, 10, 1, 40, [(UNKNOWN, DOWN, 10)]),
    (
        "recovery with threshold 1",
        3,
        1,
        "+---+",
        UP,
        50,
        1,
        30,
        [(UNKNOWN, UP, 10), (UP, DOWN, 20), (DOWN, UP, 50)],
    ),
    ("recovery not yet confirmed", 1, 3, "-++", DOWN, 10, 1, 10, [(UNKNOWN, DOWN, 10)]),
    ("recovery confirmed by the third good probe", 1, 3, "-+++", UP, 20, 1, 10, [(UNKNOWN, DOWN, 10), (DOWN, UP, 20)]),
    # 10 down; 20,30 good (not confirmed); 40 fails: 20..40 counts as down; 50,60,70 good: down ends at 50
    (
        "interrupted recovery counts as down",
        1,
        3,
        "-++-+++",
        UP,
        50,
        1,
        40,
        [(UNKNOWN, DOWN, 10), (DOWN, UP, 50)],
    ),
    ("recovery to degraded", 1, 2, "-+~", DEGRADED, 20, 1, 10, [(UNKNOWN, DOWN, 10), (DOWN, DEGRADED, 20)]),
    (
        "incidents counted",
        2,
        1,
        "--+--+--",
        DOWN,
        70,
        3,
        50,
        [
            (UNKNOWN, DOWN, 10),
            (DOWN, UP, 30),
            (UP, DOWN, 40),
            (DOWN, UP, 60),
            (UP, DOWN, 70),
        ],
    ),
]


@pytest.mark.parametrize(
    ("failure_threshold", "success_threshold", "pattern", "state", "since", "incidents", "downtime", "transitions"),
    [pytest.param(*case[1:], id=case[0]) for case in CASES],
)
def test_state_machine(
    failure_threshold: int,
    success_threshold: int,
    pattern: str,
    state: State,
    since: float,
    incidents: int,
    downtime: float,
    transitions: list[tuple[State, State, float]],
) -> None:
    sm = machine(failure_threshold, success_threshold)
    assert run(sm, results(pattern)) == transitions
    snap = sm.snapshot()
    assert (snap.state, snap.since, snap.incidents, snap.downtime_seconds) == (state, since, incidents, downtime)


def test_downtime_exact_from_uneven_timestamps() -> None:
    sm = machine(failure_threshold=3, success_threshold=2)
    sm.record(good(100.0))
    for t in (110.5, 130.25, 160.0):
        sm.record(failed(t))
    snap = sm.snapshot()
    assert (snap.state, snap.since, snap.downtime_seconds) == (DOWN, 110.5, 160.0 - 110.5)
    sm.record(failed(171.75))
    sm.record(good(190.125))  # recovering streak starts; the downtime ends here if it is confirmed
    sm.record(good(200.0))
    snap = sm.snapshot()
    assert (snap.state, snap.since, snap.incidents) == (UP, 190.125, 1)
    assert snap.downtime_seconds == pytest.approx(190.125 - 110.5, abs=1e-9)


def test_downtime_only_grows_when_the_clock_steps_back() -> None:
    sm = machine(failure_threshold=1)
    sm.record(failed(100.0))
    sm.record(failed(110.0))
    assert sm.snapshot().downtime_seconds == 10
    sm.record(failed(90.0))
    assert sm.snapshot().downtime_seconds == 10
    sm.record(failed(115.0))
    assert sm.snapshot().downtime_seconds == 15


def test_counters_and_streaks_in_snapshot() -> None:
    sm = machine(failure_threshold=5)
    run(sm, results("++--"))
    snap = sm.snapshot()
    assert (snap.consecutive_failures, snap.consecutive_successes) == (2, 0)
    run(sm, results("+", start=100))
    snap = sm.snapshot()
    assert (snap.consecutive_failures, snap.consecutive_successes) == (0, 1)


def test_degraded_after_none_never_degrades() -> None:
    sm = machine(degraded_after=None)
    sm.record(good(10, duration=100.0))
    assert sm.snapshot().state is UP


def test_degraded_boundary_is_exclusive() -> None:
    sm = machine(degraded_after=1.0)
    sm.record(good(10, duration=1.0))
    assert sm.snapshot().state is UP
    sm.record(good(20, duration=1.001))
    assert sm.snapshot().state is DEGRADED


def test_record_returns_transition_with_endpoint() -> None:
    sm = machine()
    assert sm.record(good(10)) == Transition(endpoint="api", old=UNKNOWN, new=UP, at=10)
    assert sm.record(good(20)) is None


def test_configure_keeps_state_and_counters() -> None:
    sm = machine(failure_threshold=1, success_threshold=3)
    run(sm, results("-+"))  # down since 10, one good probe of a recovering streak at 20
    before = sm.snapshot()
    sm.configure(failure_threshold=5, success_threshold=2, degraded_after=None)
    assert sm.snapshot() == before
    # The lowered success threshold applies from the next result: the streak is confirmed
    # and the state begins at its first good probe.
    assert sm.record(good(30, duration=50.0)) == Transition(endpoint="api", old=DOWN, new=UP, at=20)
    snap = sm.snapshot()
    assert (snap.incidents, snap.downtime_seconds) == (1, 10)


def test_configure_lowered_failure_threshold_opens_incident_on_next_failure() -> None:
    sm = machine(failure_threshold=5)
    run(sm, results("+--"))  # failures at 20 and 30
    sm.configure(failure_threshold=2, success_threshold=1, degraded_after=DEGRADED_AFTER)
    assert sm.snapshot().state is UP
    assert sm.record(failed(40)) == Transition(endpoint="api", old=UP, new=DOWN, at=20)
    assert sm.snapshot().downtime_seconds == 20


@pytest.mark.parametrize(
    "kwargs",
    [
        {"failure_threshold": 0, "success_threshold": 1, "degraded_after": None},
        {"failure_threshold": 1, "success_threshold": 0, "degraded_after": None},
        {"failure_threshold": 1, "success_threshold": 1, "degraded_after": -1.0},
    ],
)
def test_configure_rejects_bad_thresholds(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        machine().configure(**kwargs)  # type: ignore[arg-type]


def test_snapshot_is_immutable_copy() -> None:
    sm = machine()
    snap = sm.snapshot()
    with pytest.raises(dataclasses.FrozenInstanceError):
        snap.state = UP  # type: ignore[misc]
    sm.record(good(10))
    assert snap == StateSnapshot(UNKNOWN, 0.0, 0, 0.0, 0, 0)


def test_state_values_are_the_contract_labels() -> None:
    assert [s.value for s in State] == ["unknown", "up", "degraded", "down"]


@pytest.mark.parametrize("pattern", ["---+-+--+++", "+~--~-+-", "-+-+-+--", "--+-++"])
@pytest.mark.parametrize("thresholds", [(1, 1), (2, 2), (3, 1)])
def test_a_restored_state_goes_on_exactly_as_the_saved_one(pattern: str, thresholds: tuple[int, int]) -> None:
    """Saved after any probe and restored into a new machine (a restart), it gives the same transitions and figures."""
    fail, succeed = thresholds
    for split in range(len(pattern) + 1):
        original = machine(fail, succeed)
        before, after = results(pattern)[:split], results(pattern)[split:]
        for r in before:
            original.record(r)
        restarted = EndpointState(
            failure_threshold=fail, success_threshold=succeed, degraded_after=DEGRADED_AFTER, created_at=999.0
        )
        restarted.restore(original.saved())
        assert restarted.saved() == original.saved()
        for r in after:
            assert restarted.record(r) == original.record(r), f"split at {split}"
        assert restarted.snapshot() == original.snapshot(), f"split at {split}"
