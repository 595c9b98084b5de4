"""Where probe results land in the main process: counted in the store and the history, logged, and passed on."""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Sequence
from typing import Any

from .config import Endpoint
from .history import History
from .results import ProbeResult
from .scheduler import SkipCause
from .state import Transition
from .store import ResultStore

# The agent keeps its own history (for the status page) of at most this many endpoints, the first on
# the page: some 2.4 KB each with their incidents (bench/history_memory.py), so 500 cost about 1.2 MB,
# 5,000 would cost 15 MB in a process that otherwise needs under 150 MB for them
# (bench/probe_throughput.py). Public status pages rarely show more; beyond it, the page shows the
# others' current state alone.
HISTORY_LIMIT = 500

_HINTS = {
    SkipCause.LATE: "probes wait for a free slot: raise max_concurrent_probes or lengthen intervals",
    SkipCause.WORKER_DOWN: "the worker process probing this endpoint died and was restarted",
}


class ResultRecorder:
    """Records results and skipped ticks into the store and logs them, whichever process probed.

    `on_change` hears the names of the endpoints whose data changed (the exposition re-renders
    them); it is called once per batch of results, not once per result.
    """

    def __init__(
        self,
        store: ResultStore,
        log: Any,
        on_change: Callable[[Collection[str]], None] | None = None,
        history: History | None = None,
        history_limit: int = HISTORY_LIMIT,
    ) -> None:
        self._store = store
        self._history = history
        self._history_limit = history_limit
        self._kept: frozenset[str] = frozenset()  # the endpoints whose history is kept
        self._log = log
        self._on_change = on_change
        self._urls: dict[str, str] = {}

    def sync(self, endpoints: Sequence[Endpoint]) -> None:
        """Follow a (re)loaded config: the store adds, reconfigures and drops endpoints."""
        self._store.sync(endpoints)
        self._urls = {ep.name: ep.safe_url for ep in endpoints}
        if self._history is not None:
            self._kept = frozenset([ep.name for ep in endpoints if ep.status_page][: self._history_limit])
            self._history.retain(self._kept)

    def result(self, result: ProbeResult) -> None:
        """Record one probe result."""
        self.results((result,))

    def results(self, results: Iterable[ProbeResult]) -> None:
        """Record a batch of probe results, in order."""
        names: dict[str, None] = {}
        history, kept = self._history, self._kept
        for result in results:
            transition = self._store.record(result)
            if history is not None and result.endpoint in kept:
                history.record(result, transition)
            self._log_result(result, transition)
            names[result.endpoint] = None
        self._changed(names)

    def skipped(self, endpoint: str, ticks: int, cause: SkipCause) -> None:
        """Record `ticks` scheduled probes of `endpoint` that never ran."""
        if ticks <= 0:
            return
        self._store.record_skipped(endpoint, ticks)
        self._log.warning("probe ticks skipped", endpoint=endpoint, skipped=ticks, cause=str(cause), hint=_HINTS[cause])
        self._changed((endpoint,))

    def _changed(self, names: Collection[str]) -> None:
        if self._on_change is None or not names:
            return
        try:
            self._on_change(names)
        except Exception:  # a listener's bug must not stop recording
            self._log.exception("result listener failed", endpoints=len(names))

    def _log_result(self, result: ProbeResult, transition: Transition | None) -> None:
        if result.success:
            self._log.debug(
                "probe finished",
                endpoint=result.endpoint,
                outcome="success",
                duration_s=round(result.duration_seconds, 4),
            )
        else:
            self._log.info(
                "probe failed",
                endpoint=result.endpoint,
                reason=str(result.reason),
                message=result.message,
                status_code=result.status_code or None,
                duration_s=round(result.duration_seconds, 4),
            )
        if transition is not None:
            log = self._log.warning if transition.new == "down" else self._log.info
            log(
                "endpoint state changed",
                endpoint=result.endpoint,
                old=str(transition.old),
                new=str(transition.new),
                url=self._urls.get(result.endpoint),
            )
