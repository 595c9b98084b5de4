"""The per-endpoint incident state machine: thresholds, incidents and downtime.

Every rule below uses the probe's own start time (`ProbeResult.started_at`,
written `t`) as the time of a result, never the time it was recorded, so the
numbers are exact however late results arrive and however often Prometheus
scrapes.

States
  - ``unknown`` from creation (``since`` = ``created_at``) until the first good
    probe or the first confirmed incident.
  - A *good* probe is ``result.success``; it is *slow* when ``degraded_after``
    is not None and ``duration_seconds > degraded_after``. Its *target* state
    is ``degraded`` if slow, else ``up``.
  - Not down (unknown, up, degraded): a good probe moves straight to its
    target state; a failed probe leaves the state as it is, until
    ``failure_threshold`` consecutive failures move it to ``down``.
  - Down: ``success_threshold`` consecutive good probes move it to the target
    state of the last of them; failures keep it down.
  - Every change of state, ``up`` <-> ``degraded`` included, is a transition.

Since (when the current state began)
  - ``down``: ``t`` of the *first* failed probe of the streak that opened it.
  - recovery out of ``down``: ``t`` of the *first* good probe of the streak
    that closed it (where the downtime ends, so the two never overlap).
  - any other change: ``t`` of the probe that caused it.

Incidents: +1 on every transition into ``down``.

Downtime (seconds spent down; only ever grows)
  - entering ``down`` at ``t``: add ``t - first_failure_t``;
  - a failed probe while down: add the time since the previous accounted
    point (the previous result, or the start of an interrupted recovery);
  - the first good probe of a recovering streak: add the time since the
    previous result; the streak's later good probes add nothing, because if
    the streak is confirmed the downtime ended at its first probe;
  - a failure interrupting a recovering streak: the whole interval since the
    streak's first good probe counts as down (it is added by the rule above).
  Downtime is accounted when results arrive, so between two results of an
  ongoing incident the counter stands still; it never goes back. A clock that
  steps backwards adds nothing rather than a negative amount.

Reconfiguring (``configure``) keeps state, since, counters and streaks; new
thresholds apply from the next result on.

Restarting: ``saved()`` copies everything but the thresholds, and ``restore()`` takes such a copy
back (the data directory, `exporter.statefile`), so that an incident in progress goes on.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from exporter.results import ProbeResult


class State(StrEnum):
    """The current state of an endpoint (the `state` label)."""

    UNKNOWN = "unknown"
    UP = "up"
    DEGRADED = "degraded"
    DOWN = "down"


@dataclass(frozen=True, slots=True)
class Transition:
    """A change of state, returned to the caller for logging; `at` is when the new state began."""

    endpoint: str
    old: State
    new: State
    at: float


@dataclass(frozen=True, slots=True)
class StateSnapshot:
    """An immutable copy of an endpoint's state and incident counters."""

    state: State
    since: float
    incidents: int
    downtime_seconds: float
    consecutive_failures: int
    consecutive_successes: int


@dataclass(frozen=True, slots=True)
class SavedState:
    """Everything an EndpointState holds but its thresholds: what a restarted agent takes up again."""

    state: State
    since: float
    incidents: int
    downtime_seconds: float
    consecutive_failures: int
    consecutive_successes: int
    first_failure_at: float  # start of the current failure streak
    first_success_at: float  # start of the current good streak
    accounted_to: float  # while down: downtime is counted up to here


class EndpointState:
    """Thresholds, incidents and downtime of one endpoint, driven by its probe results."""

    __slots__ = (
        "_accounted_to",
        "_consecutive_failures",
        "_consecutive_successes",
        "_degraded_after",
        "_downtime",
        "_failure_threshold",
        "_first_failure_at",
        "_first_success_at",
        "_incidents",
        "_since",
        "_state",
        "_success_threshold",
    )

    def __init__(
        self, *, failure_threshold: int, success_threshold: int, degraded_after: float | None, created_at: float
    ) -> None:
        self._failure_threshold = 1
        self._success_threshold = 1
        self._degraded_after: float | None = None
        self.configure(
            failure_threshold=failure_threshold, success_threshold=success_threshold, degraded_after=degraded_after
        )
        self._state = State.UNKNOWN
        self._since = created_at
        self._incidents = 0
        self._downtime = 0.0
        self._consecutive_failures = 0
        self._consecutive_successes = 0
        self._first_failure_at = created_at  # start of the current failure streak
        self._first_success_at = created_at  # start of the current good streak
        self._accounted_to = created_at  # while down: downtime is counted up to here

    def configure(self, *, failure_threshold: int, success_threshold: int, degraded_after: float | None) -> None:
        """Take new thresholds (on config reload), keeping state, streaks and counters."""
        if failure_threshold < 1 or success_threshold < 1:
            raise ValueError("thresholds must be at least 1")
        if degraded_after is not None and degraded_after < 0:
            raise ValueError("degraded_after must not be negative")
        self._failure_threshold = failure_threshold
        self._success_threshold = success_threshold
        self._degraded_after = degraded_after

    def record(self, result: ProbeResult) -> Transition | None:
        """Apply one probe result; the transition it caused, if any."""
        t = result.started_at
        if result.success:
            return self._good(result, t)
        return self._failed(result, t)

    def snapshot(self) -> StateSnapshot:
        """An immutable copy of the current state and counters."""
        return StateSnapshot(
            state=self._state,
            since=self._since,
            incidents=self._incidents,
            downtime_seconds=self._downtime,
            consecutive_failures=self._consecutive_failures,
            consecutive_successes=self._consecutive_successes,
        )

    def saved(self) -> SavedState:
        """A copy of everything but the thresholds, to restore after a restart."""
        return SavedState(
            state=self._state,
            since=self._since,
            incidents=self._incidents,
            downtime_seconds=self._downtime,
            consecutive_failures=self._consecutive_failures,
            consecutive_successes=self._consecutive_successes,
            first_failure_at=self._first_failure_at,
            first_success_at=self._first_success_at,
            accounted_to=self._accounted_to,
        )

    def restore(self, saved: SavedState) -> None:
        """Take up a saved state, streaks and counters; the thresholds stay those configured."""
        self._state = saved.state
        self._since = saved.since
        self._incidents = saved.incidents
        self._downtime = saved.downtime_seconds
        self._consecutive_failures = saved.consecutive_failures
        self._consecutive_successes = saved.consecutive_successes
        self._first_failure_at = saved.first_failure_at
        self._first_success_at = saved.first_success_at
        self._accounted_to = saved.accounted_to

    def _failed(self, result: ProbeResult, t: float) -> Transition | None:
        self._consecutive_successes = 0
        self._consecutive_failures += 1
        if self._state is State.DOWN:
            self._add_downtime(t)
            return None
        if self._consecutive_failures == 1:
            self._first_failure_at = t
        if self._consecutive_failures < self._failure_threshold:
            return None
        self._incidents += 1
        self._accounted_to = self._first_failure_at
        self._add_downtime(t)
        return self._move(result.endpoint, State.DOWN, self._first_failure_at)

    def _good(self, result: ProbeResult, t: float) -> Transition | None:
        self._consecutive_failures = 0
        self._consecutive_successes += 1
        slow = self._degraded_after is not None and result.duration_seconds > self._degraded_after
        target = State.DEGRADED if slow else State.UP
        if self._state is not State.DOWN:
            return self._move(result.endpoint, target, t) if target is not self._state else None
        if self._consecutive_successes == 1:
            # Count down to here now; whether the rest of this streak is down
            # is known only when it is confirmed or interrupted.
            self._add_downtime(t)
            self._first_success_at = t
        if self._consecutive_successes < self._success_threshold:
            return None
        return self._move(result.endpoint, target, self._first_success_at)

    def _add_downtime(self, t: float) -> None:
        if t > self._accounted_to:
            self._downtime += t - self._accounted_to
            self._accounted_to = t

    def _move(self, endpoint: str, new: State, at: float) -> Transition:
        old = self._state
        self._state = new
        self._since = at
        return Transition(endpoint=endpoint, old=old, new=new, at=at)
