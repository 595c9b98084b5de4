"""Latest result, counters, duration histogram and state of every endpoint; read through `snapshot()`."""

from __future__ import annotations

import itertools
import math
import threading
import time
from bisect import bisect_left
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from itertools import pairwise
from types import MappingProxyType

from exporter.config import Endpoint
from exporter.results import FailureReason, ProbeResult
from exporter.state import EndpointState, SavedState, StateSnapshot, Transition

# Probe durations in seconds. Dense below 1s where healthy HTTP APIs answer,
# with edges at the usual latency objectives (100ms, 250ms, 500ms, 1s), at the
# default degraded_after (2s) and timeout (10s), and up to 30s, the longest
# timeout a default interval allows. +Inf is implicit.
DEFAULT_BUCKETS: tuple[float, ...] = (
    0.005,
    0.01,
    0.025,
    0.05,
    0.075,
    0.1,
    0.25,
    0.5,
    0.75,
    1.0,
    1.5,
    2.0,
    3.0,
    5.0,
    7.5,
    10.0,
    15.0,
    30.0,
)

# Iterating an enum class runs a generator over its members: slow in `_finish`, which runs per snapshot.
_REASONS: tuple[FailureReason, ...] = tuple(FailureReason)


@dataclass(frozen=True, slots=True)
class EndpointSnapshot:
    """An immutable copy of everything known about one endpoint at one moment."""

    endpoint: Endpoint
    last: ProbeResult | None  # None until the first probe finished
    probes_success: int
    probes_failure: int
    failures: Mapping[FailureReason, int]  # every reason, 0 when it never happened
    bucket_counts: tuple[int, ...]  # cumulative, one per bucket plus +Inf last
    duration_sum: float
    duration_count: int
    state: StateSnapshot
    last_run: float | None  # when the last probe finished (unix seconds)
    ticks_skipped: int = 0  # scheduled probes that never ran because the previous one ran late
    version: int = 0  # changes whenever anything above changes; equal versions mean equal data


@dataclass(frozen=True, slots=True)
class StoreSnapshot:
    """Immutable copies of every endpoint, in config order, and the histogram's bucket bounds."""

    endpoints: tuple[EndpointSnapshot, ...]
    buckets: tuple[float, ...]


@dataclass(frozen=True, slots=True)
class SavedEndpoint:
    """One endpoint's counters, histogram, last result and state: what a restarted agent takes up again."""

    last: ProbeResult | None
    success: int
    failures: Mapping[FailureReason, int]  # every reason counted so far; a missing one is 0
    bucket_hits: tuple[int, ...]  # per bucket (not cumulative), +Inf last; one more than the store's buckets
    duration_sum: float
    skipped: int
    state: SavedState


class _Entry:
    """Mutable per-endpoint data; only touched with the store's lock held."""

    __slots__ = (
        "bucket_hits",
        "duration_sum",
        "endpoint",
        "failures",
        "last",
        "skipped",
        "state",
        "success",
        "version",
    )

    def __init__(self, endpoint: Endpoint, state: EndpointState, buckets: int) -> None:
        self.endpoint = endpoint
        self.state = state
        self.last: ProbeResult | None = None
        self.success = 0
        self.failures = dict.fromkeys(FailureReason, 0)
        self.bucket_hits = [0] * (buckets + 1)  # per bucket, not cumulative: cheap to update
        self.duration_sum = 0.0
        self.skipped = 0
        self.version = 0


@dataclass(frozen=True, slots=True)
class _Raw:
    """What `snapshot()` copies under the lock; the rest is computed outside it."""

    endpoint: Endpoint
    last: ProbeResult | None
    success: int
    failures: tuple[int, ...]
    bucket_hits: tuple[int, ...]
    duration_sum: float
    state: StateSnapshot
    skipped: int
    version: int


class ResultStore:
    """Results, counters, histograms and state of every configured endpoint, safe to read from another thread."""

    def __init__(self, *, clock: Callable[[], float] = time.time, buckets: Sequence[float] = DEFAULT_BUCKETS) -> None:
        bounds = tuple(float(b) for b in buckets)
        if any(not math.isfinite(b) for b in bounds):
            raise ValueError("histogram buckets must be finite (+Inf is implicit)")
        if any(a >= b for a, b in pairwise(bounds)):
            raise ValueError("histogram buckets must be strictly increasing")
        self._clock = clock
        self._buckets = bounds
        # record() and sync() run in the event loop, snapshot() in scrape
        # threads: every access to _entries holds this lock, briefly.
        self._lock = threading.Lock()
        self._entries: dict[str, _Entry] = {}
        self._versions = itertools.count(1)  # store-wide, so a re-added endpoint never reuses a version
        self._generation = 0  # the latest version given out: changes whenever anything changes
        self._transitions = 0  # state transitions recorded so far

    @property
    def generation(self) -> int:
        """A number that changes whenever any endpoint's data changes (cheap to poll)."""
        return self._generation

    @property
    def transitions(self) -> int:
        """State transitions recorded so far, by every endpoint (cheap to poll)."""
        return self._transitions

    def _next_version(self) -> int:
        """The next store-wide version; only called with the lock held."""
        self._generation = next(self._versions)
        return self._generation

    @property
    def buckets(self) -> tuple[float, ...]:
        """Upper bounds of the duration histogram's buckets, +Inf left out."""
        return self._buckets

    def sync(self, endpoints: Sequence[Endpoint]) -> None:
        """Follow a (re)loaded config: add new endpoints, reconfigure kept ones, drop removed ones."""
        names = [ep.name for ep in endpoints]
        if len(set(names)) != len(names):
            raise ValueError("endpoint names must be unique")
        now = self._clock()
        with self._lock:
            old = self._entries
            entries: dict[str, _Entry] = {}
            for ep in endpoints:
                entry = old.get(ep.name)
                if entry is None:
                    state = EndpointState(
                        failure_threshold=ep.failure_threshold,
                        success_threshold=ep.success_threshold,
                        degraded_after=ep.degraded_after,
                        created_at=now,
                    )
                    entry = _Entry(ep, state, len(self._buckets))
                    entry.version = self._next_version()
                elif entry.endpoint != ep:
                    entry.version = self._next_version()
                    entry.endpoint = ep
                    entry.state.configure(
                        failure_threshold=ep.failure_threshold,
                        success_threshold=ep.success_threshold,
                        degraded_after=ep.degraded_after,
                    )
                entries[ep.name] = entry
            if old.keys() - entries.keys():
                self._next_version()  # a removal changes what there is to save
            self._entries = entries  # rebuilt so that iteration follows config order

    def record(self, result: ProbeResult) -> Transition | None:
        """Count one probe result; the state transition it caused, if any. Results of unknown endpoints are dropped."""
        index = bisect_left(self._buckets, result.duration_seconds)  # first bound >= duration: `le` semantics
        with self._lock:
            entry = self._entries.get(result.endpoint)
            if entry is None:  # removed by a reload while its probe was running
                return None
            entry.last = result
            entry.version = self._next_version()
            if result.success:
                entry.success += 1
            elif result.reason is not None:
                entry.failures[result.reason] += 1
            entry.bucket_hits[index] += 1
            entry.duration_sum += result.duration_seconds
            transition = entry.state.record(result)
            if transition is not None:
                self._transitions += 1
            return transition

    def record_skipped(self, name: str, ticks: int) -> None:
        """Count `ticks` scheduled probes of `name` that never ran; unknown endpoints are ignored."""
        if ticks <= 0:
            return
        with self._lock:
            entry = self._entries.get(name)
            if entry is not None:
                entry.skipped += ticks
                entry.version = self._next_version()

    def saved(self) -> list[tuple[Endpoint, SavedEndpoint]]:
        """Every endpoint and a copy of its data, in config order, to restore after a restart."""
        with self._lock:
            return [
                (
                    e.endpoint,
                    SavedEndpoint(
                        last=e.last,
                        success=e.success,
                        failures=MappingProxyType(dict(e.failures)),
                        bucket_hits=tuple(e.bucket_hits),
                        duration_sum=e.duration_sum,
                        skipped=e.skipped,
                        state=e.state.saved(),
                    ),
                )
                for e in self._entries.values()
            ]

    def restore(self, name: str, saved: SavedEndpoint) -> bool:
        """Take up an endpoint's saved data (at start, before its first probe); False if it is unknown."""
        if len(saved.bucket_hits) != len(self._buckets) + 1:
            raise ValueError(f"{len(saved.bucket_hits)} histogram buckets, the store has {len(self._buckets) + 1}")
        with self._lock:
            entry = self._entries.get(name)
            if entry is None:
                return False
            entry.last = saved.last
            entry.success = saved.success
            entry.failures = {reason: saved.failures.get(reason, 0) for reason in _REASONS}
            entry.bucket_hits = list(saved.bucket_hits)
            entry.duration_sum = saved.duration_sum
            entry.skipped = saved.skipped
            entry.state.restore(saved.state)
            entry.version = self._next_version()
            return True

    def snapshot(self, names: Collection[str] | None = None) -> StoreSnapshot:
        """Immutable copies of every endpoint's data (or only the named ones), in config order."""
        with self._lock:
            entries = (
                self._entries.values() if names is None else [self._entries[n] for n in names if n in self._entries]
            )
            raws = [
                _Raw(
                    endpoint=e.endpoint,
                    last=e.last,
                    success=e.success,
                    failures=tuple(e.failures.values()),
                    bucket_hits=tuple(e.bucket_hits),
                    duration_sum=e.duration_sum,
                    state=e.state.snapshot(),
                    skipped=e.skipped,
                    version=e.version,
                )
                for e in entries
            ]
        return StoreSnapshot(endpoints=tuple(_finish(raw) for raw in raws), buckets=self._buckets)

    def versions(self) -> dict[str, int]:
        """Each endpoint's `version`, in config order: what changed since a snapshot, without copying any data."""
        with self._lock:
            return {name: entry.version for name, entry in self._entries.items()}

    def names(self) -> tuple[str, ...]:
        """Names of the known endpoints, in config order."""
        with self._lock:
            return tuple(self._entries)


def _finish(raw: _Raw) -> EndpointSnapshot:
    """Turn raw copied data into a snapshot: cumulative buckets, totals, read-only mappings."""
    cumulative = tuple(itertools.accumulate(raw.bucket_hits))
    failed = sum(raw.failures)
    return EndpointSnapshot(
        endpoint=raw.endpoint,
        last=raw.last,
        probes_success=raw.success,
        probes_failure=failed,
        failures=MappingProxyType(dict(zip(_REASONS, raw.failures, strict=True))),
        bucket_counts=cumulative,
        duration_sum=raw.duration_sum,
        duration_count=cumulative[-1],
        state=raw.state,
        last_run=raw.last.finished_at if raw.last is not None else None,
        ticks_skipped=raw.skipped,
        version=raw.version,
    )
