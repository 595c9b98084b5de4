"""One supervised probe loop per endpoint: spread start, drift-free interval, deadline, concurrency cap.

A loop between two probes is a timer on the event loop, not a task: a task exists only while its
probe runs. At thousands of endpoints a sleeping task per endpoint (its coroutine frame, the
future it awaits, the task registry's entry) would hold a few kilobytes each, for nothing.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import math
import time
import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Protocol

from .probes.spec import ProbeSpec
from .results import FailureReason, ProbeResult

if TYPE_CHECKING:  # worker processes schedule ProbeSpecs and never load the config machinery
    from .config import Endpoint

# The first probe of an endpoint runs at a stable offset within its interval, so that many
# endpoints do not all fire at start-up or after a reload; the spread is capped so that an
# endpoint with a long interval still gets its first result soon.
MAX_SPREAD_SECONDS = 60.0
RESTART_DELAY_SECONDS = 1.0


class SkipCause(StrEnum):
    """Why scheduled probes never ran."""

    LATE = "late"  # the previous probe, or the wait for a free slot, ran past them
    WORKER_DOWN = "worker_down"  # the worker process probing the endpoint had died and was being restarted


class Prober(Protocol):
    """What the scheduler needs of a prober."""

    async def probe(self, endpoint: Endpoint | ProbeSpec, deadline: float | None = None) -> ProbeResult:
        """Probe once before `deadline` (loop time); never raise for a failing target."""
        ...


def spread_offset(name: str, interval: float) -> float:
    """A stable offset in [0, min(interval, MAX_SPREAD_SECONDS)) derived from the endpoint's name."""
    return zlib.crc32(name.encode()) / 2**32 * min(interval, MAX_SPREAD_SECONDS)


def next_tick(anchor: float, offset: float, interval: float, now: float) -> float:
    """The first time anchor + offset + k*interval (k >= 0) that is not before `now`."""
    first = anchor + offset
    if now <= first:
        return first
    return first + math.ceil((now - first) / interval) * interval


class ResultSink(Protocol):
    """Where the scheduler hands what its loops produce: the recorder in-process, the pipe in a worker."""

    def result(self, result: ProbeResult) -> None:
        """One probe finished."""
        ...

    def skipped(self, endpoint: str, ticks: int, cause: SkipCause) -> None:
        """`ticks` scheduled probes of `endpoint` never ran."""
        ...


@dataclass(frozen=True, slots=True)
class LoopChanges:
    """What one `Scheduler.apply` did: names of the endpoints whose loops it started and stopped."""

    started: tuple[str, ...]
    stopped: tuple[str, ...]  # a changed endpoint is in both


class Scheduler:
    """Runs each endpoint's probe loop and hands results to a sink.

    Every loop runs on the grid anchor + offset(name) + k * interval. `anchor` is a
    `time.monotonic()` value (the loop's clock); passing the same one to schedulers in several
    processes keeps an endpoint on the same grid wherever it runs.
    """

    def __init__(
        self,
        *,
        prober: Prober,
        sink: ResultSink,
        max_concurrency: int,
        log: Any,
        wall_clock: Callable[[], float] = time.time,
        anchor: float | None = None,
    ) -> None:
        self._prober = prober
        self._sink = sink
        self._limit = asyncio.Semaphore(max_concurrency)
        self._max_concurrency = max_concurrency
        self._log = log
        self._wall_clock = wall_clock
        self._loops: dict[str, _Loop] = {}
        self._endpoints: dict[str, Endpoint | ProbeSpec] = {}
        self._anchor = asyncio.get_running_loop().time() if anchor is None else anchor
        self._stopping = False
        # One context for every loop's timer, instead of a copy of the current one per timer (and tick).
        self._context = contextvars.copy_context()

    @property
    def running(self) -> int:
        """How many endpoint loops are alive."""
        return len(self._loops)

    async def apply(
        self,
        endpoints: Sequence[Endpoint | ProbeSpec],
        max_concurrency: int | None = None,
        *,
        resume_from: Mapping[str, float] | None = None,
        due_from: Mapping[str, float] | None = None,
    ) -> LoopChanges:
        """Start, restart and stop loops so that exactly `endpoints` are probed; unchanged ones go on untouched.

        `resume_from` maps names of endpoints that were probed elsewhere until some loop time (a
        worker that died): a loop started for one counts the ticks it missed since then as skipped.
        `due_from` maps names of endpoints due to be probed from some loop time (new to a worker that
        was starting): a first tick that passed since then runs at once, late, rather than never.
        """
        if max_concurrency is not None and max_concurrency != self._max_concurrency:
            # Probes holding the old semaphore release it; new probes wait on the new one.
            self._limit = asyncio.Semaphore(max_concurrency)
            self._max_concurrency = max_concurrency
        wanted = {ep.name: ep for ep in endpoints}
        stale = [name for name, ep in self._endpoints.items() if wanted.get(name) != ep]
        await self._cancel(stale)
        for name in stale:
            del self._endpoints[name]
        resume_from = resume_from or {}
        due_from = due_from or {}
        started = []
        for name, ep in wanted.items():
            if name not in self._endpoints:
                self._endpoints[name] = ep
                self._start(ep, resume_from=resume_from.get(name), due_from=due_from.get(name))
                started.append(name)
        self._endpoints = {name: self._endpoints[name] for name in wanted}
        return LoopChanges(started=tuple(started), stopped=tuple(stale))

    async def stop(self) -> None:
        """Stop every loop; probes in flight are cancelled."""
        self._stopping = True
        await self._cancel(list(self._loops))
        self._endpoints.clear()

    async def _cancel(self, names: Sequence[str]) -> None:
        tasks = []
        for name in names:
            entry = self._loops.pop(name, None)
            if entry is None:
                continue
            if entry.timer is not None:
                entry.timer.cancel()
            if entry.task is not None:
                entry.task.cancel()
                tasks.append(entry.task)
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)

    def _start(
        self,
        endpoint: Endpoint | ProbeSpec,
        delay: float = 0.0,
        resume_from: float | None = None,
        due_from: float | None = None,
    ) -> None:
        loop = asyncio.get_running_loop()
        entry = _Loop(endpoint, spread_offset(endpoint.name, endpoint.interval))
        self._loops[endpoint.name] = entry
        entry.tick = next_tick(self._anchor, entry.offset, endpoint.interval, loop.time() + delay)
        if resume_from is not None:
            owed = next_tick(self._anchor, entry.offset, endpoint.interval, resume_from)
            self._skipped(endpoint, round((entry.tick - owed) / endpoint.interval), SkipCause.WORKER_DOWN)
        elif due_from is not None:  # a call_at in the past runs at once
            entry.tick = min(entry.tick, next_tick(self._anchor, entry.offset, endpoint.interval, due_from))
        entry.timer = loop.call_at(entry.tick, self._fire, entry, context=self._context)

    def _fire(self, entry: _Loop) -> None:
        """The endpoint's tick: start its probe."""
        entry.timer = None
        entry.task = task = asyncio.create_task(self._run(entry))
        task.add_done_callback(functools.partial(self._ran, entry))

    def _ran(self, entry: _Loop, task: asyncio.Task[None]) -> None:
        """A probe ended: wait for the next tick, or restart a loop that died of a bug, so it never stops for good."""
        entry.task = None
        if task.cancelled() or self._stopping or self._loops.get(entry.endpoint.name) is not entry:
            return
        exc = task.exception()
        if exc is not None:
            self._log.error("probe loop crashed", endpoint=entry.endpoint.name, error=repr(exc))
            del self._loops[entry.endpoint.name]
            self._start(entry.endpoint, delay=RESTART_DELAY_SECONDS)
            return
        entry.timer = asyncio.get_running_loop().call_at(entry.tick, self._fire, entry, context=self._context)

    async def _run(self, entry: _Loop) -> None:
        """Probe once, hand the result over and set the loop's next tick."""
        endpoint = entry.endpoint
        result = await self._probe_once(endpoint)
        try:
            self._sink.result(result)
        except Exception:  # a sink's bug must not stop probing
            self._log.exception("result sink failed", endpoint=endpoint.name)
        # Drift-free: the next tick is on the grid, whatever this probe cost; ticks that passed
        # while waiting for a free slot are skipped, not run in a burst.
        following = entry.tick + endpoint.interval
        now = asyncio.get_running_loop().time()
        if following < now:
            missed = next_tick(self._anchor, entry.offset, endpoint.interval, now)
            self._skipped(endpoint, round((missed - following) / endpoint.interval), SkipCause.LATE)
            following = missed
        entry.tick = following

    def _skipped(self, endpoint: Endpoint | ProbeSpec, ticks: int, cause: SkipCause) -> None:
        if ticks > 0:
            self._sink.skipped(endpoint.name, ticks, cause)

    async def _probe_once(self, endpoint: Endpoint | ProbeSpec) -> ProbeResult:
        loop = asyncio.get_running_loop()
        async with self._limit:
            # The deadline starts when the probe may run, so waiting for a slot is not held
            # against the endpoint.
            deadline = loop.time() + endpoint.timeout
            started = self._wall_clock()
            try:
                return await self._prober.probe(endpoint, deadline)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # a prober bug must not stop the loop
                self._log.exception("prober raised", endpoint=endpoint.name)
                return ProbeResult(
                    endpoint=endpoint.name,
                    success=False,
                    reason=FailureReason.ERROR,
                    message=f"internal error: {type(exc).__name__}",
                    started_at=started,
                    duration_seconds=max(0.0, self._wall_clock() - started),
                )


class _Loop:
    """One endpoint's loop: its next tick, and the timer waiting for it or the task probing."""

    __slots__ = ("endpoint", "offset", "task", "tick", "timer")

    def __init__(self, endpoint: Endpoint | ProbeSpec, offset: float) -> None:
        self.endpoint = endpoint
        self.offset = offset
        self.tick = 0.0
        self.timer: asyncio.TimerHandle | None = None
        self.task: asyncio.Task[None] | None = None
