"""One supervised probe loop per endpoint: spread start, drift-free interval, deadline, concurrency cap."""

from __future__ import annotations

import asyncio
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
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._endpoints: dict[str, Endpoint | ProbeSpec] = {}
        self._anchor = asyncio.get_running_loop().time() if anchor is None else anchor
        self._stopping = False

    @property
    def running(self) -> int:
        """How many endpoint loops are alive."""
        return sum(1 for t in self._tasks.values() if not t.done())

    async def apply(
        self,
        endpoints: Sequence[Endpoint | ProbeSpec],
        max_concurrency: int | None = None,
        *,
        resume_from: Mapping[str, float] | None = None,
    ) -> LoopChanges:
        """Start, restart and stop loops so that exactly `endpoints` are probed; unchanged ones go on untouched.

        `resume_from` maps names of endpoints that were probed elsewhere until some loop time (a
        worker that died): a loop started for one counts the ticks it missed since then as skipped.
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
        started = []
        for name, ep in wanted.items():
            if name not in self._endpoints:
                self._endpoints[name] = ep
                self._start(ep, resume_from=resume_from.get(name))
                started.append(name)
        self._endpoints = {name: self._endpoints[name] for name in wanted}
        return LoopChanges(started=tuple(started), stopped=tuple(stale))

    async def stop(self) -> None:
        """Stop every loop; probes in flight are cancelled."""
        self._stopping = True
        await self._cancel(list(self._tasks))
        self._endpoints.clear()

    async def _cancel(self, names: Sequence[str]) -> None:
        tasks = [self._tasks.pop(name) for name in names if name in self._tasks]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)

    def _start(self, endpoint: Endpoint | ProbeSpec, delay: float = 0.0, resume_from: float | None = None) -> None:
        task = asyncio.create_task(self._loop(endpoint, delay, resume_from), name=f"probe:{endpoint.name}")
        self._tasks[endpoint.name] = task
        task.add_done_callback(functools.partial(self._supervise, endpoint))

    def _supervise(self, endpoint: Endpoint | ProbeSpec, task: asyncio.Task[None]) -> None:
        """Restart a loop that died of a bug, so one endpoint never stops probing for good."""
        if task.cancelled() or self._stopping or self._tasks.get(endpoint.name) is not task:
            return
        exc = task.exception()
        self._log.error("probe loop crashed", endpoint=endpoint.name, error=repr(exc))
        self._start(endpoint, delay=RESTART_DELAY_SECONDS)

    async def _loop(self, endpoint: Endpoint | ProbeSpec, delay: float, resume_from: float | None) -> None:
        loop = asyncio.get_running_loop()
        if delay:
            await asyncio.sleep(delay)
        offset = spread_offset(endpoint.name, endpoint.interval)
        tick = next_tick(self._anchor, offset, endpoint.interval, loop.time())
        if resume_from is not None:
            owed = next_tick(self._anchor, offset, endpoint.interval, resume_from)
            self._skipped(endpoint, round((tick - owed) / endpoint.interval), SkipCause.WORKER_DOWN)
        while True:
            await asyncio.sleep(max(0.0, tick - loop.time()))
            result = await self._probe_once(endpoint)
            try:
                self._sink.result(result)
            except Exception:  # a sink's bug must not stop probing
                self._log.exception("result sink failed", endpoint=endpoint.name)
            # Drift-free: the next tick is on the grid, whatever this probe cost; ticks that
            # passed while waiting for a free slot are skipped, not run in a burst.
            following = tick + endpoint.interval
            now = loop.time()
            if following < now:
                missed = next_tick(self._anchor, offset, endpoint.interval, now)
                self._skipped(endpoint, round((missed - following) / endpoint.interval), SkipCause.LATE)
                following = missed
            tick = following

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
