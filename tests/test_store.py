"""The result store: counters, histogram, state and config sync per endpoint."""

from __future__ import annotations

import dataclasses
import math
import threading
from typing import Any

import pytest

from exporter.config import Endpoint
from exporter.results import FailureReason, ProbeResult
from exporter.state import State, Transition
from exporter.store import DEFAULT_BUCKETS, ResultStore


class FakeClock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def endpoint(name: str, **extra: Any) -> Endpoint:
    return Endpoint.model_validate({"name": name, "url": f"https://{name}.example.com/health", **extra})


def good(name: str, t: float = 2000.0, duration: float = 0.1) -> ProbeResult:
    return ProbeResult(endpoint=name, success=True, started_at=t, duration_seconds=duration, status_code=200)


def failed(name: str, reason: FailureReason, t: float = 2000.0, duration: float = 0.1) -> ProbeResult:
    return ProbeResult(endpoint=name, success=False, started_at=t, duration_seconds=duration, reason=reason)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def store(clock: FakeClock) -> ResultStore:
    s = ResultStore(clock=clock)
    s.sync([endpoint("a"), endpoint("b")])
    return s


def by_name(store: ResultStore) -> dict[str, Any]:
    return {e.endpoint.name: e for e in store.snapshot().endpoints}


def test_new_endpoint_starts_empty_and_unknown(store: ResultStore) -> None:
    a = by_name(store)["a"]
    assert a.last is None
    assert a.last_run is None
    assert (a.probes_success, a.probes_failure, a.duration_count, a.duration_sum) == (0, 0, 0, 0.0)
    assert dict(a.failures) == dict.fromkeys(FailureReason, 0)
    assert a.bucket_counts == (0,) * (len(DEFAULT_BUCKETS) + 1)
    assert (a.state.state, a.state.since) == (State.UNKNOWN, 1000.0)


def test_counts_by_result_and_reason(store: ResultStore) -> None:
    store.record(good("a"))
    store.record(good("a"))
    store.record(failed("a", FailureReason.TIMEOUT))
    store.record(failed("a", FailureReason.TIMEOUT))
    store.record(failed("a", FailureReason.DNS))
    store.record(failed("b", FailureReason.TLS))
    snaps = by_name(store)
    a, b = snaps["a"], snaps["b"]
    assert (a.probes_success, a.probes_failure) == (2, 3)
    assert a.failures[FailureReason.TIMEOUT] == 2
    assert a.failures[FailureReason.DNS] == 1
    assert set(a.failures) == set(FailureReason)
    assert sum(a.failures.values()) == 3
    assert (b.probes_success, b.probes_failure, b.failures[FailureReason.TLS]) == (0, 1, 1)


def test_last_result_and_last_run(store: ResultStore) -> None:
    first, second = good("a", t=2000.0, duration=0.25), failed("a", FailureReason.CONNECT, t=2030.0, duration=1.5)
    store.record(first)
    store.record(second)
    a = by_name(store)["a"]
    assert a.last is second
    assert a.last_run == 2031.5  # when the probe finished


def test_histogram_cumulative_buckets_sum_count(clock: FakeClock) -> None:
    store = ResultStore(clock=clock, buckets=(0.1, 1.0))
    assert store.buckets == (0.1, 1.0)
    store.sync([endpoint("a")])
    for duration in (0.05, 0.1, 0.5, 2.0, 1.0):  # bounds are inclusive (`le`)
        store.record(good("a", duration=duration))
    snap = store.snapshot()
    assert snap.buckets == (0.1, 1.0)
    (a,) = snap.endpoints
    assert a.bucket_counts == (2, 4, 5)
    assert a.duration_count == 5
    assert a.duration_sum == pytest.approx(3.65)


def test_histogram_counts_failures_too(store: ResultStore) -> None:
    store.record(failed("a", FailureReason.TIMEOUT, duration=10.0))
    a = by_name(store)["a"]
    assert a.duration_count == 1
    assert a.bucket_counts[DEFAULT_BUCKETS.index(10.0)] == 1
    assert a.bucket_counts[DEFAULT_BUCKETS.index(10.0) - 1] == 0


def test_default_buckets_suit_http_probes() -> None:
    assert 15 <= len(DEFAULT_BUCKETS) <= 18
    assert DEFAULT_BUCKETS[0] == 0.005
    assert DEFAULT_BUCKETS[-1] == 30.0
    assert list(DEFAULT_BUCKETS) == sorted(set(DEFAULT_BUCKETS))
    assert all(math.isfinite(b) for b in DEFAULT_BUCKETS)


@pytest.mark.parametrize("buckets", [(1.0, 0.5), (0.1, 0.1), (0.1, math.inf), (math.nan,)])
def test_bad_buckets_rejected(buckets: tuple[float, ...]) -> None:
    with pytest.raises(ValueError):
        ResultStore(buckets=buckets)


def test_record_returns_transition(store: ResultStore) -> None:
    assert store.record(good("a", t=2000.0)) == Transition(endpoint="a", old=State.UNKNOWN, new=State.UP, at=2000.0)
    assert store.record(good("a", t=2010.0)) is None


def test_state_follows_endpoint_thresholds(clock: FakeClock) -> None:
    store = ResultStore(clock=clock)
    store.sync([endpoint("a", failure_threshold=2, degraded_after="1s")])
    store.record(good("a", t=10, duration=1.5))
    assert by_name(store)["a"].state.state is State.DEGRADED
    store.record(failed("a", FailureReason.CONNECT, t=20))
    store.record(failed("a", FailureReason.CONNECT, t=30))
    state = by_name(store)["a"].state
    assert (state.state, state.since, state.incidents, state.downtime_seconds) == (State.DOWN, 20, 1, 10)


def test_record_for_unknown_endpoint_ignored(store: ResultStore) -> None:
    before = store.snapshot()
    assert store.record(good("nope")) is None
    assert store.record(failed("nope", FailureReason.DNS)) is None
    assert store.snapshot() == before
    assert "nope" not in store.names()


def test_sync_keeps_counters_updates_config_drops_removed(store: ResultStore, clock: FakeClock) -> None:
    store.record(good("a", t=2000.0))
    store.record(failed("a", FailureReason.BODY, t=2010.0))
    store.record(good("b"))
    clock.now = 5000.0
    store.sync([endpoint("c"), endpoint("a", failure_threshold=1, labels={"team": "x"})])

    assert store.names() == ("c", "a")  # config order
    snap = store.snapshot()
    assert [e.endpoint.name for e in snap.endpoints] == ["c", "a"]
    c, a = snap.endpoints
    assert (c.state.state, c.state.since, c.probes_success) == (State.UNKNOWN, 5000.0, 0)
    assert (a.probes_success, a.probes_failure, a.failures[FailureReason.BODY]) == (1, 1, 1)
    assert a.endpoint.labels == {"team": "x"}
    assert a.last is not None and a.last.started_at == 2010.0
    assert (a.state.state, a.state.since) == (State.UP, 2000.0)
    # The new failure threshold applies: one more failure makes a streak of 2 >= 1.
    store.record(failed("a", FailureReason.BODY, t=2020.0))
    assert by_name(store)["a"].state.state is State.DOWN
    # A result of the removed endpoint (its probe was still running) is dropped.
    assert store.record(good("b")) is None
    assert "b" not in by_name(store)


def test_readded_endpoint_starts_fresh(store: ResultStore) -> None:
    store.record(good("b"))
    store.sync([endpoint("a")])
    store.sync([endpoint("a"), endpoint("b")])
    assert by_name(store)["b"].probes_success == 0


def test_versions_tell_what_changed_without_a_snapshot(store: ResultStore) -> None:
    first = store.versions()
    assert list(first) == ["a", "b"]  # config order
    assert first == {e.endpoint.name: e.version for e in store.snapshot().endpoints}
    assert store.versions() == first  # reading changes nothing
    store.record(good("a"))
    store.record_skipped("b", 1)
    second = store.versions()
    assert second["a"] > first["a"] and second["b"] > first["b"]
    store.record_skipped("b", 0)
    store.sync([endpoint("b"), endpoint("a")])  # same config, new order: no data changed
    assert store.versions() == second and list(store.versions()) == ["b", "a"]
    store.sync([endpoint("b", labels={"team": "x"})])  # a config change is a change; removed ones are gone
    third = store.versions()
    assert list(third) == ["b"] and third["b"] > second["b"]


def test_sync_rejects_duplicate_names(store: ResultStore) -> None:
    with pytest.raises(ValueError):
        store.sync([endpoint("a"), endpoint("a")])
    assert store.names() == ("a", "b")


def test_snapshot_is_immutable_and_detached(store: ResultStore) -> None:
    store.record(failed("a", FailureReason.DNS))
    snap = store.snapshot()
    a = snap.endpoints[0]
    with pytest.raises(dataclasses.FrozenInstanceError):
        a.probes_success = 5  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        snap.endpoints = ()  # type: ignore[misc]
    with pytest.raises(TypeError):
        a.failures[FailureReason.DNS] = 7  # type: ignore[index]
    assert isinstance(snap.endpoints, tuple)
    assert isinstance(a.bucket_counts, tuple)

    store.record(failed("a", FailureReason.DNS))
    store.record(good("a"))
    store.sync([endpoint("b")])
    assert (a.probes_success, a.probes_failure, a.failures[FailureReason.DNS], a.duration_count) == (0, 1, 1, 1)
    assert [e.endpoint.name for e in snap.endpoints] == ["a", "b"]


def test_snapshots_consistent_while_recording(clock: FakeClock) -> None:
    store = ResultStore(clock=clock)
    store.sync([endpoint("a")])
    stop = threading.Event()
    bad: list[str] = []

    def scrape() -> None:
        while not stop.is_set():
            (a,) = store.snapshot().endpoints
            total = a.probes_success + a.probes_failure
            if not (total == a.duration_count == a.bucket_counts[-1]):
                bad.append(f"{total} {a.duration_count} {a.bucket_counts[-1]}")

    scraper = threading.Thread(target=scrape)
    scraper.start()
    try:
        for i in range(20_000):
            store.record(good("a", t=i, duration=0.01) if i % 3 else failed("a", FailureReason.ERROR, t=i))
    finally:
        stop.set()
        scraper.join()
    assert not bad
    (a,) = store.snapshot().endpoints
    assert a.duration_count == 20_000


def test_saved_data_restored_into_a_new_store_reads_the_same(clock: FakeClock) -> None:
    """What `saved()` copies and `restore()` takes up is everything a snapshot shows (a restart)."""
    first = ResultStore(clock=clock)
    first.sync([endpoint("a", failure_threshold=2), endpoint("b")])
    for t, result in enumerate([failed("a", FailureReason.DNS), failed("a", FailureReason.TIMEOUT), good("b")]):
        first.record(dataclasses.replace(result, started_at=2000.0 + t, duration_seconds=0.02 + t))
    first.record_skipped("b", 3)
    second = ResultStore(clock=FakeClock(5000.0))
    second.sync([endpoint("a", failure_threshold=2), endpoint("b")])
    before = second.generation
    for ep, data in first.saved():
        assert second.restore(ep.name, data)
    assert second.generation != before
    assert not second.restore("gone", first.saved()[0][1])

    def figures(store: ResultStore) -> list[Any]:
        return [dataclasses.replace(e, version=0) for e in store.snapshot().endpoints]

    assert figures(second) == figures(first)
    assert by_name(second)["a"].state.state is State.DOWN
    assert by_name(second)["a"].state.incidents == 1


def test_restore_rejects_another_bucket_layout(store: ResultStore) -> None:
    _, data = store.saved()[0]
    with pytest.raises(ValueError, match="histogram buckets"):
        store.restore("a", dataclasses.replace(data, bucket_hits=(0, 0)))


def test_generation_and_transitions_move_with_changes(store: ResultStore) -> None:
    generation = store.generation
    store.record(good("a"))
    assert store.generation > generation
    assert store.transitions == 1  # unknown -> up
    store.record(good("a", t=2001.0))
    assert store.transitions == 1
    generation = store.generation
    store.sync([endpoint("a")])  # b removed: there is less to save
    assert store.generation > generation
