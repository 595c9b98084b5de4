"""The history itself: what the recorder feeds every probe result, and what the status page asks for summaries."""

from __future__ import annotations

import math
import threading
import time
from bisect import bisect_left
from collections.abc import Callable, Iterable, Sequence

from exporter.history.cells import Entry
from exporter.history.records import EndpointHistory
from exporter.history.summary import Moment, summarize
from exporter.results import ProbeResult
from exporter.state import Transition
from exporter.store import DEFAULT_BUCKETS


class History:
    """Bounded per-30-minute and per-day probe history of every endpoint, and its incidents.

    `record` is called from the event loop for every probe result; `summary` and `summaries` may
    be called from other threads.
    """

    def __init__(self, clock: Callable[[], float] = time.time, buckets: Sequence[float] = DEFAULT_BUCKETS) -> None:
        self._clock = clock
        self._buckets = tuple(float(b) for b in buckets)
        self._lock = threading.Lock()
        self._entries: dict[str, Entry] = {}

    def record(self, result: ProbeResult, transition: Transition | None) -> None:
        """Count one probe result and the transition it caused, if any (what `ResultStore.record` returned)."""
        t = result.started_at
        bucket = bisect_left(self._buckets, result.duration_seconds)  # first bound >= duration: `le`
        failed = 0 if result.success else 1
        with self._lock:
            entry = self._entries.get(result.endpoint)
            if entry is None:
                entry = self._entries[result.endpoint] = Entry(t, len(self._buckets) + 1)
            entry.count(t, bucket, failed, self._buckets)
            if transition is not None:
                entry.transition(result, transition)

    def forget(self, names: Iterable[str]) -> None:
        """Drop the history of these endpoints."""
        with self._lock:
            for name in names:
                self._entries.pop(name, None)

    def retain(self, names: Iterable[str]) -> None:
        """Drop the history of every endpoint not named (after a reload); a late result of a dropped one starts anew."""
        keep = set(names)
        with self._lock:
            self._entries = {name: entry for name, entry in self._entries.items() if name in keep}

    def names(self) -> tuple[str, ...]:
        """The endpoints with a history, in the order of their first result."""
        with self._lock:
            return tuple(self._entries)

    def summary(self, name: str) -> EndpointHistory:
        """The figures of one endpoint as of now; all empty for an endpoint without results."""
        return self._summary(name, Moment(self._clock()))

    def summaries(self) -> dict[str, EndpointHistory]:
        """The figures of every endpoint with a history, all as of the same moment."""
        moment = Moment(self._clock())
        return {name: self._summary(name, moment) for name in self.names()}

    def _summary(self, name: str, moment: Moment) -> EndpointHistory:
        with self._lock:
            entry = self._entries.get(name)
            copy = entry.copy() if entry is not None else None
        if copy is None:
            copy = Entry(0.0, len(self._buckets) + 1)  # its rings hold nothing of the days shown
            copy.known_since = math.inf
        return summarize(name, copy, moment, self._buckets)
