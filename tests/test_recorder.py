"""The recorder: results and skipped ticks counted in the store, logged, and announced once per batch."""

from __future__ import annotations

from collections.abc import Collection

import structlog

from exporter.config import Endpoint
from exporter.history import History
from exporter.recorder import ResultRecorder
from exporter.results import FailureReason, ProbeResult
from exporter.scheduler import SkipCause
from exporter.store import ResultStore

LOG = structlog.get_logger()


def result(name: str, ok: bool, at: float) -> ProbeResult:
    return ProbeResult(
        endpoint=name,
        success=ok,
        reason=None if ok else FailureReason.CONNECT,
        message="" if ok else "refused",
        started_at=at,
        duration_seconds=0.01,
    )


def test_a_batch_is_counted_logged_and_announced_once() -> None:
    store = ResultStore()
    changed: list[Collection[str]] = []
    recorder = ResultRecorder(store, LOG, on_change=changed.append)
    endpoints = [
        Endpoint.model_validate({"name": n, "url": "http://user:pw@example.com/x?token=t", "failure_threshold": 1})
        for n in ("a", "b")
    ]
    recorder.sync(endpoints)
    with structlog.testing.capture_logs() as logs:
        recorder.results([result("a", True, 1.0), result("b", False, 1.0), result("a", True, 2.0)])
        recorder.results([result("gone", True, 3.0)])  # removed by a reload while in flight: dropped
    snap = {ep.endpoint.name: ep for ep in store.snapshot().endpoints}
    assert (snap["a"].probes_success, snap["b"].probes_failure) == (2, 1)
    assert [list(names) for names in changed] == [["a", "b"], ["gone"]]
    events = [(e["event"], e["endpoint"]) for e in logs]
    assert events == [
        ("probe finished", "a"),
        ("endpoint state changed", "a"),
        ("probe failed", "b"),
        ("endpoint state changed", "b"),
        ("probe finished", "a"),
        ("probe finished", "gone"),
    ]
    down = next(e for e in logs if e["event"] == "endpoint state changed" and e["endpoint"] == "b")
    assert (down["new"], down["log_level"], down["url"]) == ("down", "warning", "http://example.com/x")


def test_skipped_ticks_are_counted_and_logged_with_their_cause() -> None:
    store = ResultStore()
    recorder = ResultRecorder(store, LOG)
    recorder.sync([Endpoint.model_validate({"name": "a", "url": "http://example.com/"})])
    with structlog.testing.capture_logs() as logs:
        recorder.skipped("a", 2, SkipCause.LATE)
        recorder.skipped("a", 3, SkipCause.WORKER_DOWN)
        recorder.skipped("a", 0, SkipCause.LATE)
    (snap,) = store.snapshot().endpoints
    assert snap.ticks_skipped == 5
    assert [(e["skipped"], e["cause"]) for e in logs] == [(2, "late"), (3, "worker_down")]


def test_a_failing_listener_does_not_stop_recording() -> None:
    store = ResultStore()

    def broken(names: Collection[str]) -> None:
        raise RuntimeError("bug")

    recorder = ResultRecorder(store, LOG, on_change=broken)
    recorder.sync([Endpoint.model_validate({"name": "a", "url": "http://example.com/"})])
    with structlog.testing.capture_logs() as logs:
        recorder.result(result("a", True, 1.0))
        recorder.result(result("a", True, 2.0))
    assert store.snapshot().endpoints[0].probes_success == 2
    assert [e["event"] for e in logs if e["log_level"] == "error"] == ["result listener failed"] * 2


def test_the_history_is_kept_for_the_first_endpoints_on_the_page_up_to_its_limit() -> None:
    history = History(clock=lambda: 100.0)
    recorder = ResultRecorder(ResultStore(), LOG, history=history, history_limit=2)
    endpoints = [
        Endpoint.model_validate({"name": n, "url": "http://127.0.0.1/", "status_page": n != "hidden"})
        for n in ("hidden", "a", "b", "c")
    ]
    recorder.sync(endpoints)
    recorder.results([result(n, True, 50.0) for n in ("hidden", "a", "b", "c")])
    assert set(history.names()) == {"a", "b"}  # not the one off the page, not the one over the limit
    recorder.sync(endpoints[2:])  # a reload removes "a": "c" moves up into the limit
    recorder.results([result("c", True, 60.0)])
    assert set(history.names()) == {"b", "c"}
