"""The data directory: endpoint states, incidents in progress and counters kept across restarts.

What is kept, per endpoint (``DIR/state.json``): its state and since, the incident in progress
(its first failed probe, the streaks, the downtime counted so far), every exact counter (probes by
result, failures by reason, incidents, downtime seconds, skipped ticks, the duration histogram's
buckets, sum and count) and its last probe result (the blackbox-style gauges). The status page's
own history is not kept: it starts empty, as before.

When it is written: at most ``SAVE_PERIOD_SECONDS`` after a change, within a
``CHECK_SECONDS`` after a state transition, and at a clean shutdown; always to a temporary file
in the same folder, flushed to disk, then renamed over the old one (and the folder flushed), so
that a crash at any moment leaves the old file or the new one, never a part.

What is restored, at start, before the first probe:
  - an endpoint is the same endpoint when its name, method and URL are unchanged (the file keeps
    a hash of method and URL, not the URL, so that no secret in it reaches the disk); a renamed or
    retargeted endpoint starts fresh, and one no longer configured is dropped;
  - counters always continue, however old the file: they count what happened;
  - the state, since, streaks, incident in progress and last result only when the file is recent:
    saved at most ``max(RESTORE_MAX_AGE_SECONDS, failure_threshold x interval)`` ago. An older
    one cannot say what the endpoint did meanwhile, so it starts ``unknown`` and its probes decide
    (a new incident if it is still down).

A file that cannot be read, is not JSON, is truncated, belongs to another program or breaks the
format is reported in one log line and ignored; so is one written by a newer format version.
The agent starts fresh and overwrites it at its first save.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import json
import math
import os
import tempfile
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

from exporter import __version__
from exporter.config import Endpoint
from exporter.results import FailureReason, ProbeResult
from exporter.state import SavedState, State
from exporter.store import ResultStore, SavedEndpoint

FILE_NAME = "state.json"
FORMAT = "upwatch-state"
FORMAT_VERSION = 1
# How often the saver looks for changes, and saves if a state changed.
CHECK_SECONDS = 1.0
# Counters that changed are saved at least this often: a crash (not a clean stop) loses at most
# this many seconds of counts, which Prometheus then sees as a counter reset.
SAVE_PERIOD_SECONDS = 5.0
# A state saved this long ago (or one failure_threshold x interval ago, whichever is longer) is
# still believed: an upgrade, a crash and its restart, a container moved to another host.
RESTORE_MAX_AGE_SECONDS = 300.0
# A file saved up to this far in the future still counts as recent (clocks of two hosts differ).
CLOCK_SKEW_SECONDS = 5.0

_RESULT_FIELDS = {f.name: f for f in dataclasses.fields(ProbeResult)}


class StateFileError(Exception):
    """The state file cannot be used; the message says why, in one line."""


@dataclass(frozen=True, slots=True)
class SavedFile:
    """What a state file holds: when it was saved, and each endpoint's target hash and data."""

    saved_at: float
    endpoints: Mapping[str, tuple[str, SavedEndpoint]]


def target_id(endpoint: Endpoint) -> str:
    """A hash of the endpoint's method and full URL: tells a retargeted endpoint without keeping its URL."""
    return hashlib.sha256(f"{endpoint.method} {endpoint.url}".encode()).hexdigest()[:32]


def max_age(endpoint: Endpoint) -> float:
    """How old a saved state of this endpoint may be and still be taken up (see the module docstring)."""
    return max(RESTORE_MAX_AGE_SECONDS, endpoint.failure_threshold * endpoint.interval)


# -- encoding ------------------------------------------------------------------------------------


def encode(saved: Sequence[tuple[Endpoint, SavedEndpoint]], buckets: Sequence[float], now: float) -> bytes:
    """The state file's bytes for these endpoints."""
    endpoints = {
        ep.name: {
            "target": target_id(ep),
            "probes": {
                "success": data.success,
                "failures": {str(reason): count for reason, count in data.failures.items() if count},
            },
            "skipped": data.skipped,
            "duration": {"bucket_hits": list(data.bucket_hits), "sum": data.duration_sum},
            "state": {**dataclasses.asdict(data.state), "state": str(data.state.state)},
            "last": _encode_result(data.last) if data.last is not None else None,
        }
        for ep, data in saved
    }
    document = {
        "format": FORMAT,
        "version": FORMAT_VERSION,
        "written_by": f"upwatch {__version__}",
        "saved_at": now,
        "buckets": list(buckets),
        "endpoints": endpoints,
    }
    return json.dumps(document, allow_nan=False, separators=(",", ":")).encode()


def _encode_result(result: ProbeResult) -> dict[str, object]:
    out: dict[str, object] = {name: getattr(result, name) for name in _RESULT_FIELDS if name != "endpoint"}
    out["reason"] = str(result.reason) if result.reason is not None else None
    out["phases"] = dict(result.phases)
    return out


def decode(raw: bytes, buckets: Sequence[float]) -> SavedFile:
    """The contents of a state file; StateFileError when it is not one this version can use."""
    try:
        document = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise StateFileError(f"not JSON (corrupt or truncated): {exc}") from None
    if not isinstance(document, dict) or document.get("format") != FORMAT:
        raise StateFileError("not an upwatch state file")
    version = document.get("version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise StateFileError(f"unknown format version {version!r}")
    if version > FORMAT_VERSION:
        raise StateFileError(
            f"written by a newer upwatch ({document.get('written_by')}, format version {version}); "
            f"this one reads version {FORMAT_VERSION} and earlier"
        )
    try:
        same_buckets = _floats(document, "buckets") == tuple(float(b) for b in buckets)
        endpoints = _dict(document, "endpoints")
        return SavedFile(
            saved_at=_float(document, "saved_at"),
            endpoints={
                str(name): _decode_endpoint(str(name), _dict(endpoints, name), len(buckets) + 1, same_buckets)
                for name in endpoints
            },
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise StateFileError(f"does not follow the format: {exc}") from None


def _decode_endpoint(name: str, data: Mapping[str, Any], hits: int, same_buckets: bool) -> tuple[str, SavedEndpoint]:
    probes = _dict(data, "probes")
    failures = _dict(probes, "failures")
    duration = _dict(data, "duration")
    bucket_hits = tuple(_count(v) for v in _list(duration, "bucket_hits"))
    duration_sum = _float(duration, "sum")
    if not same_buckets:  # another version's buckets: the histogram starts anew, the rest continues
        bucket_hits, duration_sum = (0,) * hits, 0.0
    elif len(bucket_hits) != hits:
        raise ValueError(f"endpoints[{name}]: {len(bucket_hits)} histogram buckets, expected {hits}")
    state = _dict(data, "state")
    last = data.get("last")
    target = data["target"]
    if not isinstance(target, str):
        raise TypeError(f"endpoints[{name}].target must be a string")
    return target, SavedEndpoint(
        last=_decode_result(name, last) if last is not None else None,
        success=_count(probes["success"]),
        failures=MappingProxyType({FailureReason(k): _count(v) for k, v in failures.items()}),
        bucket_hits=bucket_hits,
        duration_sum=duration_sum,
        skipped=_count(data["skipped"]),
        state=SavedState(
            state=State(state["state"]),
            since=_float(state, "since"),
            incidents=_count(state["incidents"]),
            downtime_seconds=_float(state, "downtime_seconds"),
            consecutive_failures=_count(state["consecutive_failures"]),
            consecutive_successes=_count(state["consecutive_successes"]),
            first_failure_at=_float(state, "first_failure_at"),
            first_success_at=_float(state, "first_success_at"),
            accounted_to=_float(state, "accounted_to"),
        ),
    )


def _decode_result(name: str, data: object) -> ProbeResult:
    if not isinstance(data, dict) or set(data) != set(_RESULT_FIELDS) - {"endpoint"}:
        raise ValueError(f"endpoints[{name}].last does not hold a probe result's fields")
    values = dict(data)
    for key in ("started_at", "duration_seconds", "http_version"):
        values[key] = _float(values, key)
    for key in ("status_code", "content_length", "body_bytes", "redirects"):
        if not isinstance(values[key], int) or isinstance(values[key], bool):
            raise TypeError(f"endpoints[{name}].last.{key} must be an integer")
    for key in ("success", "ssl", "failed_due_to_regex"):
        if not isinstance(values[key], bool):
            raise TypeError(f"endpoints[{name}].last.{key} must be true or false")
    if values["cert_expiry_timestamp"] is not None:
        values["cert_expiry_timestamp"] = _float(values, "cert_expiry_timestamp")
    if not isinstance(values["message"], str):
        raise TypeError(f"endpoints[{name}].last.message must be a string")
    values["reason"] = FailureReason(values["reason"]) if values["reason"] is not None else None
    values["phases"] = MappingProxyType({str(k): _finite(v) for k, v in _dict(values, "phases").items()})
    return ProbeResult(endpoint=name, **values)


def _dict(data: Mapping[str, Any], key: str) -> dict[str, Any]:
    value = data[key]
    if not isinstance(value, dict):
        raise TypeError(f"{key} must be an object")
    return value


def _list(data: Mapping[str, Any], key: str) -> list[Any]:
    value = data[key]
    if not isinstance(value, list):
        raise TypeError(f"{key} must be a list")
    return value


def _finite(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise TypeError(f"{value!r} is not a finite number")
    return float(value)


def _float(data: Mapping[str, Any], key: str) -> float:
    return _finite(data[key])


def _floats(data: Mapping[str, Any], key: str) -> tuple[float, ...]:
    return tuple(_finite(v) for v in _list(data, key))


def _count(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise TypeError(f"{value!r} is not a count")
    return value


# -- the file ------------------------------------------------------------------------------------


def write_atomically(directory: Path, data: bytes, name: str = FILE_NAME) -> None:
    """Replace `directory/name` with `data`: a temporary file in the same folder, fsync, rename, fsync the folder."""
    fd, temporary = tempfile.mkstemp(dir=directory, prefix=f".{name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.replace(temporary, directory / name)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    folder = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(folder)
    finally:
        os.close(folder)


def read(directory: Path, buckets: Sequence[float]) -> SavedFile | None:
    """The state file of `directory`; None when there is none; StateFileError when it cannot be used."""
    try:
        raw = (directory / FILE_NAME).read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise StateFileError(f"cannot read it: {exc.strerror or exc}") from None
    return decode(raw, buckets)


# -- the agent's side ----------------------------------------------------------------------------


class StateKeeper:
    """Restores the store from the data directory at start, saves it while running and at shutdown."""

    def __init__(self, directory: Path, store: ResultStore, log: Any, clock: Callable[[], float] = time.time) -> None:
        self._directory = directory
        self._store = store
        self._log = log
        self._clock = clock
        self._saved_generation = -1
        self._saved_transitions = -1
        self._last_save = -math.inf  # monotonic
        self._failing = False
        self._saving = threading.Lock()  # a save in a helper thread and the last one at shutdown never cross
        self._task: asyncio.Task[None] | None = None

    @property
    def directory(self) -> Path:
        """The data directory."""
        return self._directory

    @property
    def path(self) -> Path:
        """The state file."""
        return self._directory / FILE_NAME

    def restore(self, endpoints: Sequence[Endpoint]) -> None:
        """Prepare the folder and take up the saved data of these endpoints (already in the store)."""
        try:
            self._directory.mkdir(parents=True, exist_ok=True, mode=0o700)
            for leftover in self._directory.glob(f".{FILE_NAME}.*.tmp"):  # from a crash while saving
                leftover.unlink(missing_ok=True)
        except OSError as exc:
            self._log.error(
                "data directory unusable; state will not be kept", path=str(self._directory), error=str(exc)
            )
            return
        try:
            saved = read(self._directory, self._store.buckets)
        except StateFileError as exc:
            self._log.warning("state file ignored; starting fresh", path=str(self.path), problem=str(exc))
            return
        if saved is None:
            self._log.info("no state file yet; starting fresh", path=str(self.path))
            return
        self._take_up(saved, endpoints)

    def _take_up(self, saved: SavedFile, endpoints: Sequence[Endpoint]) -> None:
        now = self._clock()
        age = now - saved.saved_at
        restored: list[str] = []
        counters_only: list[str] = []
        retargeted: list[str] = []
        down: list[str] = []
        for ep in endpoints:
            found = saved.endpoints.get(ep.name)
            if found is None:
                continue
            target, data = found
            if target != target_id(ep):
                retargeted.append(ep.name)
                continue
            if -CLOCK_SKEW_SECONDS <= age <= max_age(ep):
                restored.append(ep.name)
                if data.state.state is State.DOWN:
                    down.append(ep.name)
            else:
                data = _counters_only(data, now)
                counters_only.append(ep.name)
            self._store.restore(ep.name, data)
        configured = {ep.name for ep in endpoints}
        self._log.info(
            "state restored",
            path=str(self.path),
            saved_s_ago=round(age, 3),
            restored=len(restored),
            counters_only=len(counters_only),
            retargeted=retargeted[:10],
            dropped=sum(1 for name in saved.endpoints if name not in configured),
            down=down[:10],
        )

    def save(self) -> None:
        """Write the store's data now (from any thread); a failure is logged, never raised."""
        with self._saving:
            generation, transitions = self._store.generation, self._store.transitions
            try:
                write_atomically(self._directory, encode(self._store.saved(), self._store.buckets, self._clock()))
            except (OSError, ValueError) as exc:
                if not self._failing:
                    self._log.error("state not saved; retrying", path=str(self.path), error=str(exc))
                self._failing = True
                return
            if self._failing:
                self._log.info("state saved again", path=str(self.path))
            self._failing = False
            self._saved_generation, self._saved_transitions = generation, transitions

    def start(self) -> None:
        """Save in the background from now on: soon after a state transition, periodically after other changes."""
        self._task = asyncio.create_task(self._run(), name="save-state")

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(CHECK_SECONDS)
            if self._store.generation == self._saved_generation:
                continue
            now = loop.time()
            if self._store.transitions != self._saved_transitions or now - self._last_save >= SAVE_PERIOD_SECONDS:
                self._last_save = now
                try:
                    await asyncio.to_thread(self.save)
                except Exception:  # a bug must not stop the next saves
                    self._log.exception("saving state failed", path=str(self.path))

    async def stop(self) -> None:
        """Stop saving in the background, then save once more (call when no result can arrive any more)."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        await asyncio.to_thread(self.save)


def _counters_only(data: SavedEndpoint, now: float) -> SavedEndpoint:
    """The saved counters of an endpoint, its state `unknown` from `now` and no last result: too old to believe."""
    s = data.state
    state = SavedState(
        state=State.UNKNOWN,
        since=now,
        incidents=s.incidents,
        downtime_seconds=s.downtime_seconds,
        consecutive_failures=0,
        consecutive_successes=0,
        first_failure_at=now,
        first_success_at=now,
        accounted_to=now,
    )
    return dataclasses.replace(data, last=None, state=state)
