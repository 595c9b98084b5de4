"""The scheduler: spread, drift-free ticks, concurrency cap, isolation of slow endpoints, reload.

Tests with the recording prober run on looptime's fake loop clock: their sleeps take no real
time and the ticks they record are exact. The test with real sockets runs on the real clock and
waits for the result it needs instead of sleeping a fixed time.
"""

from __future__ import annotations

import asyncio
import itertools
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import structlog
from pytest_httpserver import HTTPServer

from exporter.config import Endpoint
from exporter.probes.http import HttpProber
from exporter.recorder import ResultRecorder
from exporter.results import FailureReason, ProbeResult
from exporter.scheduler import MAX_SPREAD_SECONDS, Scheduler, SkipCause, next_tick, spread_offset
from exporter.store import ResultStore

LOG = structlog.get_logger()


def endpoint(name: str, url: str = "http://127.0.0.1:1/", **extra: object) -> Endpoint:
    return Endpoint.model_validate({"name": name, "url": url, **extra})


class RecordingProber:
    """A prober that takes a set time and remembers when and how many ran at once."""

    def __init__(self, duration: float = 0.0, fail: set[str] | None = None, crash: set[str] | None = None) -> None:
        self.duration = duration
        self.fail = fail or set()
        self.crash = crash or set()
        self.starts: dict[str, list[float]] = {}
        self.in_flight = 0
        self.max_in_flight = 0

    async def probe(self, endpoint: Endpoint, deadline: float | None = None) -> ProbeResult:
        loop = asyncio.get_running_loop()
        self.starts.setdefault(endpoint.name, []).append(loop.time())
        if endpoint.name in self.crash:
            raise RuntimeError("prober bug")
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        started = time.time()
        try:
            await asyncio.sleep(self.duration)
        finally:
            self.in_flight -= 1
        ok = endpoint.name not in self.fail
        return ProbeResult(
            endpoint=endpoint.name,
            success=ok,
            reason=None if ok else FailureReason.CONNECT,
            message="" if ok else "refused",
            started_at=started,
            duration_seconds=self.duration,
        )


class Probing:
    """A store, a recorder and a scheduler, wired as the agent wires them when it probes in-process."""

    def __init__(self, prober: RecordingProber | HttpProber, max_concurrency: int, **extra: Any) -> None:
        self.store = ResultStore()
        self.recorder = ResultRecorder(self.store, LOG)
        self.scheduler = Scheduler(prober=prober, sink=self.recorder, max_concurrency=max_concurrency, log=LOG, **extra)

    async def apply(self, endpoints: list[Endpoint], **extra: Any) -> None:
        self.recorder.sync(endpoints)
        await self.scheduler.apply(endpoints, **extra)

    async def stop(self) -> None:
        await self.scheduler.stop()


def counts(store: ResultStore) -> dict[str, int]:
    return {ep.endpoint.name: ep.probes_success + ep.probes_failure for ep in store.snapshot().endpoints}


@pytest.mark.parametrize("interval", [0.5, 5.0, 30.0, 3600.0])
def test_spread_offset_is_stable_and_within_the_interval(interval: float) -> None:
    offsets = [spread_offset(f"ep-{i}", interval) for i in range(200)]
    assert offsets == [spread_offset(f"ep-{i}", interval) for i in range(200)]
    assert all(0 <= o < min(interval, MAX_SPREAD_SECONDS) for o in offsets)
    # 200 names spread over the window: no more than a fifth of them in any tenth of it.
    window = min(interval, MAX_SPREAD_SECONDS)
    buckets = [0] * 10
    for o in offsets:
        buckets[int(o / window * 10)] += 1
    assert max(buckets) < 40


@pytest.mark.parametrize(
    ("anchor", "offset", "interval", "now", "expected"),
    [
        (100.0, 2.0, 10.0, 50.0, 102.0),  # before the first tick: the first tick
        (100.0, 2.0, 10.0, 102.0, 102.0),  # exactly on a tick
        (100.0, 2.0, 10.0, 102.5, 112.0),  # just after: the next one
        (100.0, 2.0, 10.0, 131.9, 132.0),
        (100.0, 0.0, 0.5, 101.1, 101.5),
    ],
)
def test_next_tick(anchor: float, offset: float, interval: float, now: float, expected: float) -> None:
    assert next_tick(anchor, offset, interval, now) == pytest.approx(expected)


@pytest.mark.looptime
async def test_ticks_do_not_drift() -> None:
    prober = RecordingProber(duration=0.03)  # each probe costs time; ticks must not slip by it
    start = asyncio.get_running_loop().time()
    probing = Probing(prober, 4)
    await probing.apply([endpoint("a", interval="200ms", timeout="100ms")])
    await asyncio.sleep(10)
    await probing.stop()
    starts = prober.starts["a"]
    first = start + spread_offset("a", 0.2)
    assert len(starts) == 50
    for k, t in enumerate(starts):
        assert t == pytest.approx(first + k * 0.2, abs=1e-6)


@pytest.mark.looptime
async def test_first_probes_are_spread_not_simultaneous() -> None:
    prober = RecordingProber()
    probing = Probing(prober, 100)
    await probing.apply([endpoint(f"ep-{i}", interval="1s", timeout="500ms") for i in range(40)])
    await asyncio.sleep(1.05)
    await probing.stop()
    firsts = sorted(starts[0] for starts in prober.starts.values())
    assert len(firsts) == 40
    assert firsts[-1] - firsts[0] > 0.5  # spread over most of the interval
    # no thundering herd: at most a quarter of them start within any 100 ms
    assert max(sum(1 for t in firsts if s <= t < s + 0.1) for s in firsts) <= 10


@pytest.mark.looptime
async def test_concurrency_cap_is_respected() -> None:
    prober = RecordingProber(duration=0.3)
    probing = Probing(prober, 2)
    store = probing.store
    await probing.apply([endpoint(f"ep-{i}", interval="500ms", timeout="400ms") for i in range(6)])
    await asyncio.sleep(1.5)
    await probing.stop()
    assert prober.max_in_flight == 2
    assert sum(counts(store).values()) >= 4


@pytest.mark.looptime
async def test_ticks_that_could_not_run_are_counted_and_logged() -> None:
    prober = RecordingProber(duration=0.35)  # one slot, two endpoints: each waits for the other
    with structlog.testing.capture_logs() as logs:
        probing = Probing(prober, 1)
        store = probing.store
        await probing.apply([endpoint(f"ep-{i}", interval="500ms", timeout="400ms") for i in range(2)])
        await asyncio.sleep(5)
        await probing.stop()
    skipped = {ep.endpoint.name: ep.ticks_skipped for ep in store.snapshot().endpoints}
    ran = counts(store)
    assert all(n > 0 for n in skipped.values())
    # every tick of the 5 s either ran or was counted as skipped (the last one may be in flight)
    for name in skipped:
        assert 9 <= ran[name] + skipped[name] <= 10
    logged = [e for e in logs if e["event"] == "probe ticks skipped"]
    assert sum(e["skipped"] for e in logged) == sum(skipped.values())


@pytest.fixture
def silent_server() -> Iterator[int]:
    """A TCP server on loopback that accepts connections and never answers."""
    srv = socket.create_server(("127.0.0.1", 0))
    conns: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        srv.settimeout(0.1)
        while not stop.is_set():
            try:
                conn, _ = srv.accept()
                conns.append(conn)
            except TimeoutError:
                continue
            except OSError:
                return

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield srv.getsockname()[1]
    stop.set()
    thread.join()
    for c in conns:
        c.close()
    srv.close()


async def test_hanging_endpoint_does_not_delay_others(httpserver: HTTPServer, silent_server: int) -> None:
    httpserver.expect_request("/ok").respond_with_data("ok")
    results: list[ProbeResult] = []
    hanging_done = asyncio.Event()

    class Collect:
        def result(self, result: ProbeResult) -> None:
            results.append(result)
            if result.endpoint == "hanging":
                hanging_done.set()

        def skipped(self, endpoint: str, ticks: int, cause: SkipCause) -> None:
            pass

    prober = HttpProber()
    scheduler = Scheduler(prober=prober, sink=Collect(), max_concurrency=10, log=LOG)
    hanging = endpoint("hanging", f"http://127.0.0.1:{silent_server}/", interval="1s", timeout="900ms")
    fast = endpoint("fast", httpserver.url_for("/ok"), interval="200ms", timeout="150ms")
    await scheduler.apply([hanging, fast])
    try:
        await asyncio.wait_for(hanging_done.wait(), timeout=30)
    finally:
        await scheduler.stop()
        await prober.aclose()
    (hung,) = [r for r in results if r.endpoint == "hanging"]
    assert hung.reason is FailureReason.TIMEOUT
    # While "hanging" waited out its 900 ms, "fast" kept its 200 ms ticks (4 or 5 of them) and
    # each of those probes succeeded: none waited on the hanging one.
    during = [
        r
        for r in results
        if r.endpoint == "fast" and hung.started_at <= r.started_at and r.finished_at <= hung.finished_at
    ]
    assert len(during) >= 3 and all(r.success for r in during), (hung, during)


@pytest.mark.looptime
async def test_reload_keeps_unchanged_endpoints_and_drops_removed_ones() -> None:
    prober = RecordingProber()
    probing = Probing(prober, 10)
    store = probing.store
    a = endpoint("a", interval="100ms", timeout="50ms")
    b = endpoint("b", interval="100ms", timeout="50ms")
    await probing.apply([a, b])
    await asyncio.sleep(0.45)
    before = counts(store)
    assert before["a"] >= 3 and before["b"] >= 3
    a_starts = list(prober.starts["a"])

    b_changed = endpoint("b", interval="100ms", timeout="50ms", labels={"team": "x"})
    c = endpoint("c", interval="100ms", timeout="50ms")
    await probing.apply([a, b_changed, c])
    await asyncio.sleep(0.35)
    after = counts(store)
    assert after["a"] > before["a"]  # counters kept and growing
    assert after["b"] > before["b"]  # changed: config replaced, counters kept under the same name
    assert after["c"] >= 1
    # "a" kept its grid: no extra probe was squeezed in by the reload
    a_new = prober.starts["a"][len(a_starts) - 1 :]
    gaps = [y - x for x, y in itertools.pairwise(a_new)]
    assert all(g == pytest.approx(0.1, abs=1e-6) for g in gaps)
    snap = {ep.endpoint.name: ep for ep in store.snapshot().endpoints}
    assert snap["b"].endpoint.labels == {"team": "x"}

    await probing.apply([a])
    assert [ep.endpoint.name for ep in store.snapshot().endpoints] == ["a"]
    assert probing.scheduler.running == 1
    await probing.stop()
    assert probing.scheduler.running == 0


@pytest.mark.looptime
async def test_a_prober_bug_is_a_result_and_the_loop_goes_on() -> None:
    prober = RecordingProber(crash={"buggy"})
    probing = Probing(prober, 10)
    store = probing.store
    await probing.apply(
        [endpoint("buggy", interval="100ms", timeout="50ms"), endpoint("fine", interval="100ms", timeout="50ms")]
    )
    await asyncio.sleep(0.5)
    await probing.stop()
    snap = {ep.endpoint.name: ep for ep in store.snapshot().endpoints}
    assert snap["buggy"].probes_failure >= 3
    assert snap["buggy"].failures[FailureReason.ERROR] == snap["buggy"].probes_failure
    assert snap["buggy"].last is not None and "RuntimeError" in snap["buggy"].last.message
    assert snap["fine"].probes_success >= 3


@pytest.mark.looptime
async def test_failing_endpoint_opens_an_incident_through_the_scheduler() -> None:
    prober = RecordingProber(fail={"down"})
    probing = Probing(prober, 10)
    store = probing.store
    await probing.apply([endpoint("down", interval="100ms", timeout="50ms", failure_threshold=2)])
    await asyncio.sleep(0.45)
    await probing.stop()
    (snap,) = store.snapshot().endpoints
    assert str(snap.state.state) == "down"
    assert snap.state.incidents == 1


@pytest.mark.looptime
async def test_schedulers_given_one_anchor_share_the_grid() -> None:
    # A worker process started later (or restarted) probes an endpoint on the grid the first one used.
    loop = asyncio.get_running_loop()
    anchor = loop.time()
    first, second = RecordingProber(), RecordingProber()
    early = Probing(first, 4, anchor=anchor)
    await early.apply([endpoint("a", interval="1s", timeout="500ms")])
    await asyncio.sleep(3.3)
    await early.stop()
    late = Probing(second, 4, anchor=anchor)
    await late.apply([endpoint("a", interval="1s", timeout="500ms")])
    await asyncio.sleep(3)
    await late.stop()
    grid = anchor + spread_offset("a", 1.0)
    for t in first.starts["a"] + second.starts["a"]:
        assert (t - grid) == pytest.approx(round(t - grid), abs=1e-6)
    assert second.starts["a"][0] == pytest.approx(first.starts["a"][-1] + 1, abs=1e-6)


@pytest.mark.looptime
async def test_a_loop_resumed_after_its_worker_died_counts_the_ticks_it_missed() -> None:
    loop = asyncio.get_running_loop()
    anchor = loop.time()
    prober = RecordingProber()
    await asyncio.sleep(10.25)  # the endpoint's worker died at anchor + 5.25 and comes back now
    probing = Probing(prober, 4, anchor=anchor)
    with structlog.testing.capture_logs() as logs:
        await probing.apply([endpoint("a", interval="1s", timeout="500ms")], resume_from={"a": anchor + 5.25})
        await asyncio.sleep(1)
        await probing.stop()
    # "a" ticks at anchor + 0.91 + k s: those at 5.91, 6.91, 7.91, 8.91 and 9.91 s passed while nothing
    # probed it; the one at 10.91 s runs.
    offset = spread_offset("a", 1.0)
    assert 0.25 < offset < 1
    assert prober.starts["a"][0] == pytest.approx(anchor + offset + 10, abs=1e-6)
    (snap,) = probing.store.snapshot().endpoints
    assert snap.ticks_skipped == 5
    (logged,) = [e for e in logs if e["event"] == "probe ticks skipped"]
    assert logged["skipped"] == snap.ticks_skipped and logged["cause"] == "worker_down"
