"""Where the page's history comes from: Prometheus's last good answer, refreshed in the background, or the agent's own.

A page build never waits for Prometheus: `PrometheusHistorySource.current` returns at once what it
has, and starts a refresh in its own thread when the last one is REFRESH_SECONDS old (one at a time).
While Prometheus fails, the page keeps its last good answer and says since when it is unavailable
and why; until Prometheus has answered once, it shows the agent's own history and says so.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from exporter.history import EndpointHistory

from .prometheus import PrometheusError, PrometheusHistory

REFRESH_SECONDS = 30.0


def _hhmm(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%H:%M UTC")


class PrometheusHistorySource:
    """The histories read from Prometheus by `reader`, cached; never blocks its callers."""

    def __init__(
        self,
        reader: PrometheusHistory,
        *,
        log: Any,
        url: str,
        refresh_seconds: float = REFRESH_SECONDS,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._reader = reader
        self._log = log
        self._url = url  # without credentials, for logs
        self._refresh_seconds = refresh_seconds
        self._clock = clock
        self._lock = threading.Lock()
        self._names: tuple[str, ...] = ()
        self._good: dict[str, EndpointHistory] | None = None
        self._good_at = 0.0
        self._failing_since: float | None = None
        self._failure = ""
        self._started: float | None = None  # when the last refresh started
        self._thread: threading.Thread | None = None
        self._closed = False
        self.refreshed = threading.Event()  # set after every refresh, good or not (for tests and benchmarks)

    @property
    def refreshing(self) -> bool:
        """Whether a refresh is under way."""
        thread = self._thread
        return thread is not None and thread.is_alive()

    def current(
        self, names: Sequence[str], own: Callable[[], Mapping[str, EndpointHistory]]
    ) -> tuple[Mapping[str, EndpointHistory], str | None]:
        """The histories to show now and the note to show with them (None when all is well); starts a refresh if due.

        `own` gives the agent's own history, shown until Prometheus has answered once.
        """
        names = tuple(names)
        with self._lock:
            due = (
                self._started is None or names != self._names or self._clock() - self._started >= self._refresh_seconds
            )
            if due:
                self._names = names
                self._start_refresh()
            good, failing_since, failure = self._good, self._failing_since, self._failure
            good_at = self._good_at
        if good is None:
            if failing_since is None:
                note = "History from Prometheus is being loaded; showing this agent's own history since it started."
            else:
                note = (
                    f"History from Prometheus unavailable since {_hhmm(failing_since)}: {failure}; "
                    "showing this agent's own history since it started."
                )
            return own(), note
        if failing_since is None:
            return good, None
        note = (
            f"History from Prometheus unavailable since {_hhmm(failing_since)}: {failure}; "
            f"showing its figures of {_hhmm(good_at)}."
        )
        return good, note

    def _start_refresh(self) -> None:
        """Start a refresh in its own thread unless one runs (called with the lock held)."""
        if self._closed or (self._thread is not None and self._thread.is_alive()):
            return
        self._started = self._clock()
        self._thread = threading.Thread(
            target=self._refresh, args=(self._names,), name="upwatch-prometheus-history", daemon=True
        )
        self._thread.start()

    def _refresh(self, names: tuple[str, ...]) -> None:
        now = self._clock()
        try:
            histories = self._reader.fetch(names, now)
        except PrometheusError as exc:
            self._failed(str(exc), now)
        except Exception as exc:  # a bug here must not take the page down; it shows as a failure
            self._log.exception("reading history from Prometheus failed", prometheus=self._url)
            self._failed(f"internal error ({type(exc).__name__})", now)
        else:
            with self._lock:
                recovered = self._failing_since is not None
                self._good, self._good_at = histories, now
                self._failing_since, self._failure = None, ""
            if recovered:
                self._log.info("history from Prometheus available again", prometheus=self._url)
        self.refreshed.set()

    def _failed(self, reason: str, now: float) -> None:
        with self._lock:
            first = self._failing_since is None
            if first:
                self._failing_since = now
            self._failure = reason
        if first:  # once per state change, not per refresh
            self._log.warning(
                "history from Prometheus unavailable",
                prometheus=self._url,
                reason=reason,
                showing="last good answer" if self._good is not None else "this agent's own history",
            )

    def close(self) -> None:
        """Start no more refreshes and close the client (a refresh under way ends with an error, unlogged)."""
        with self._lock:
            self._closed = True
        self._reader.close()
