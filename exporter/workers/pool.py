"""The main process's side of the probe workers: start them, assign endpoints, take in results, restart the dead.

Endpoints go to workers by rendezvous hashing of their names, so a reload moves nothing that did
not change and a change of the number of workers moves only what it must. Each worker index is
watched by a supervisor task: when its process dies (its result pipe ends), the death is logged
and counted, the probes it had in flight are counted as lost, and after a backoff that grows
with repeated crashes a new process takes over the same endpoints on the same tick grid.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import functools
import json
import os
import signal
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from exporter.children import child_environment, python_module_command
from exporter.config import Endpoint
from exporter.logs import LogSettings
from exporter.probes.budget import DEFAULT_BODY_BUDGET
from exporter.results import ProbeResult
from exporter.scheduler import SkipCause
from exporter.sharding import partition

from .wire import (
    CANCELLED,
    COUNTERS_BYTES,
    STARTED,
    Assignment,
    Batch,
    decode_result,
    frame,
    open_counters,
    read_message,
)

RESTART_BACKOFF_MIN = 0.5
RESTART_BACKOFF_MAX = 30.0
# A worker that ran this long before dying was not crash-looping: its next restart is quick again.
STABLE_AFTER_SECONDS = 60.0
STOP_TIMEOUT_SECONDS = 10.0
# A worker sends at least a heartbeat every second (process.HEARTBEAT_SECONDS); one silent this
# long is hung (stopped, or stuck in a loop that never yields) and is killed, then started again.
HANG_TIMEOUT_SECONDS = 10.0


class BatchRecorder(Protocol):
    """Where the pool hands what workers send (the ResultRecorder)."""

    def results(self, results: Sequence[ProbeResult]) -> None:
        """Record a batch of results."""
        ...

    def skipped(self, endpoint: str, ticks: int, cause: SkipCause) -> None:
        """Record skipped ticks."""
        ...


@dataclass(frozen=True, slots=True)
class WorkerStatus:
    """The probe workers' figures for the agent's metrics."""

    running: int  # worker processes alive now
    restarts: int  # worker processes started again after one died
    lost_in_flight: int  # probes under way (or finished, not yet sent) in workers that died
    lost_backlog: int  # results workers dropped because the main process was not reading them


NO_WORKERS = WorkerStatus(running=0, restarts=0, lost_in_flight=0, lost_backlog=0)


def split_cap(total: int, parts: int) -> list[int]:
    """`total` split into `parts` shares that differ by at most one and add up to `total`."""
    return [total // parts + (1 if i < total % parts else 0) for i in range(parts)]


@dataclass(eq=False)
class _Slot:
    """One worker index: the endpoints it owns and the process that probes them (replaced when it dies)."""

    index: int
    endpoints: dict[str, Endpoint] = field(default_factory=dict)
    max_concurrency: int = 1
    resume_from: dict[str, float] = field(default_factory=dict)  # to send with the next assignment
    due_from: dict[str, float] = field(default_factory=dict)  # likewise
    sent: dict[str, Endpoint] = field(default_factory=dict)  # what the current process was told
    sent_max_concurrency: int = 0
    body_memory_limit: int = DEFAULT_BODY_BUDGET
    sent_body_memory_limit: int = 0
    process: subprocess.Popen[bytes] | None = None
    pid: int | None = None  # of the process while it runs (read by scrapes, so kept apart from `process`)
    control: asyncio.WriteTransport | None = None
    counters: ctypes.Array[ctypes.c_uint64] | None = None
    received: int = 0  # results (and dropped results) the current process reported
    crashes: int = 0  # consecutive quick deaths, for the backoff
    retiring: bool = False
    supervisor: asyncio.Task[None] | None = None


class WorkerPool:
    """N probe worker processes: fresh interpreters (never a fork of this threaded process), started with subprocess."""

    def __init__(self, *, recorder: BatchRecorder, log: Any, log_settings: LogSettings, anchor: float) -> None:
        self._recorder = recorder
        self._log = log
        self._log_settings = log_settings
        self._anchor = anchor
        self._slots: list[_Slot] = []
        self._retiring: set[_Slot] = set()
        self._stop = asyncio.Event()
        self._restarts = 0
        self._lost_in_flight = 0
        self._lost_backlog = 0

    def status(self) -> WorkerStatus:
        """Running workers, restarts and lost probes so far."""
        running = sum(1 for s in self._slots if s.pid is not None)
        return WorkerStatus(running, self._restarts, self._lost_in_flight, self._lost_backlog)

    def pids(self) -> list[int | None]:
        """Process ids of the workers, by index (None while one is being restarted)."""
        return [s.pid for s in self._slots]

    async def apply(
        self,
        endpoints: Sequence[Endpoint],
        max_concurrency: int,
        workers: int,
        *,
        resume_from: Mapping[str, float] | None = None,
        body_memory_limit: int = DEFAULT_BODY_BUDGET,
    ) -> None:
        """Probe exactly `endpoints` on `workers` processes (0 stops them all), `max_concurrency` probes at most.

        `resume_from` names endpoints probed elsewhere until some loop time (the main process, when
        the number of workers goes from one to more): their missed ticks are counted as skipped.
        """
        loop = asyncio.get_running_loop()
        owner = {name: slot.index for slot in self._slots for name in slot.endpoints}
        while len(self._slots) < workers:
            self._slots.append(_Slot(index=len(self._slots)))
        retired, self._slots = self._slots[workers:], self._slots[:workers]
        parts = partition(endpoints, workers, name=lambda ep: ep.name) if workers else []
        now = loop.time()
        moved = 0
        for slot, part, cap in zip(self._slots, parts, split_cap(max_concurrency, workers), strict=True):
            slot.endpoints = {ep.name: ep for ep in part}
            slot.max_concurrency = cap
            slot.body_memory_limit = body_memory_limit
            for name in slot.endpoints:
                if owner.get(name, slot.index) != slot.index:
                    moved += 1
                    slot.resume_from[name] = now
                elif resume_from and name in resume_from:
                    slot.resume_from[name] = resume_from[name]
                elif name not in owner:
                    # New to the workers: a first tick that passes while the worker starts runs late, not never.
                    slot.due_from[name] = now
            if slot.supervisor is None:
                self._start_supervisor(slot)
            else:
                self._send(slot)
        for slot in retired:
            slot.retiring = True
            self._retiring.add(slot)
            self._close_control(slot)
        if endpoints or retired:
            self._log.info(
                "probe endpoints assigned",
                workers=workers,
                endpoints=len(endpoints),
                moved=moved,
                per_worker=[len(s.endpoints) for s in self._slots],
            )

    async def stop(self) -> None:
        """Stop every worker in order: each cancels its probes, sends what it has and exits."""
        self._stop.set()
        slots = [*self._slots, *self._retiring]
        for slot in slots:
            self._close_control(slot)
        tasks = [s.supervisor for s in slots if s.supervisor is not None]
        if not tasks:
            return
        _, pending = await asyncio.wait(tasks, timeout=STOP_TIMEOUT_SECONDS)
        for slot in slots:
            if slot.supervisor in pending and slot.process is not None and slot.process.poll() is None:
                self._log.warning("probe worker did not stop; killing it", worker=slot.index, pid=slot.process.pid)
                slot.process.kill()
        if pending:
            await asyncio.wait(pending, timeout=STOP_TIMEOUT_SECONDS)
        for task in pending:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._slots.clear()
        self._retiring.clear()

    # -- one worker index ------------------------------------------------------------------------

    def _start_supervisor(self, slot: _Slot) -> None:
        slot.supervisor = asyncio.create_task(self._supervise(slot), name=f"probe-worker-{slot.index}")
        slot.supervisor.add_done_callback(functools.partial(self._supervisor_done, slot))

    def _supervisor_done(self, slot: _Slot, task: asyncio.Task[None]) -> None:
        """A supervisor that died of a bug is logged and started again: its endpoints must not go unprobed."""
        if task.cancelled() or (exc := task.exception()) is None:
            return
        self._log.error("probe worker supervisor crashed", worker=slot.index, exc_info=exc)
        if slot.process is not None and slot.process.poll() is None:
            slot.process.kill()  # the new supervisor starts a process of its own
        slot.process = slot.pid = None
        slot.crashes += 1
        if not (self._stop.is_set() or slot.retiring):
            asyncio.get_running_loop().call_later(self._delay(slot), self._start_supervisor, slot)

    async def _supervise(self, slot: _Slot) -> None:
        """Run the slot's process, and a new one each time it dies, until the pool stops or retires the slot."""
        loop = asyncio.get_running_loop()
        first = True
        while not (self._stop.is_set() or slot.retiring):
            try:
                reader = await self._launch(slot)
            except Exception:  # e.g. fork failed for lack of memory: try again after the backoff
                self._log.exception("probe worker failed to start", worker=slot.index)
                slot.crashes += 1
                await self._backoff(slot)
                continue
            if not first:
                self._restarts += 1
                self._log.info(
                    "probe worker restarted", worker=slot.index, pid=slot.process.pid if slot.process else None
                )
            first = False
            started = loop.time()
            await self._pump(slot, reader)
            code = await self._reap(slot)
            died = loop.time()
            if self._stop.is_set() or slot.retiring:
                break
            slot.crashes = 1 if died - started >= STABLE_AFTER_SECONDS else slot.crashes + 1
            self._died(slot, code, died)
            await self._backoff(slot)
        self._retiring.discard(slot)

    @staticmethod
    def _delay(slot: _Slot) -> float:
        """Seconds before restarting a slot: doubling with each quick death in a row, from 0.5 s to 30 s."""
        return min(RESTART_BACKOFF_MAX, RESTART_BACKOFF_MIN * 2.0 ** max(0, slot.crashes - 1))

    async def _backoff(self, slot: _Slot) -> None:
        delay = self._delay(slot)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stop.wait(), timeout=delay)

    async def _launch(self, slot: _Slot) -> asyncio.StreamReader:
        """Start the slot's process and connect its pipes; it gets its whole assignment at once."""
        loop = asyncio.get_running_loop()
        control_read, control_write = os.pipe()
        results_read, results_write = os.pipe()
        counters_file = tempfile.TemporaryFile()  # noqa: SIM115 - closed below, once both ends have mapped it
        try:
            counters_file.truncate(COUNTERS_BYTES)
            counters = open_counters(counters_file.fileno())
            spec = {
                "index": slot.index,
                "anchor": self._anchor,
                "log_level": self._log_settings.level,
                "log_format": self._log_settings.format,
                "control_fd": control_read,
                "results_fd": results_write,
                "counters_fd": counters_file.fileno(),
            }
            # From the loop's thread, not a helper thread: the child inherits the scheduling
            # priority of the thread that starts it, and the agent's helper threads yield the CPU.
            # (Popen is a vfork and an exec: about a millisecond of the loop's time.)
            process = subprocess.Popen(  # noqa: ASYNC220
                [*python_module_command("exporter.workers.process"), json.dumps(spec)],
                pass_fds=(control_read, results_write, counters_file.fileno()),
                stdin=subprocess.DEVNULL,
                env=child_environment(),
            )
        except BaseException:
            for fd in (control_write, results_read):
                os.close(fd)
            raise
        finally:
            # Only the child keeps its ends, so that a pipe ends when either process dies.
            os.close(control_read)
            os.close(results_write)
            counters_file.close()
        reader = asyncio.StreamReader()
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), os.fdopen(results_read, "rb", 0))
        control, _ = await loop.connect_write_pipe(asyncio.Protocol, os.fdopen(control_write, "wb", 0))
        slot.process, slot.pid, slot.control, slot.counters = process, process.pid, control, counters
        slot.sent, slot.sent_max_concurrency, slot.sent_body_memory_limit, slot.received = {}, 0, 0, 0
        if self._stop.is_set() or slot.retiring:
            self._close_control(slot)
        else:
            self._send(slot)
        return reader

    def _send(self, slot: _Slot) -> None:
        """Tell the slot's process what changed in its assignment, if anything did."""
        if slot.control is None or slot.control.is_closing():
            return  # the next process gets everything when it starts
        upsert = tuple(ep for name, ep in slot.endpoints.items() if slot.sent.get(name) != ep)
        remove = tuple(name for name in slot.sent if name not in slot.endpoints)
        settings = (slot.max_concurrency, slot.body_memory_limit)
        if not upsert and not remove and settings == (slot.sent_max_concurrency, slot.sent_body_memory_limit):
            return
        resume = {name: t for name, t in slot.resume_from.items() if name in slot.endpoints}
        due = {name: t for name, t in slot.due_from.items() if name in slot.endpoints}
        shared: dict[int, object] = {}
        specs = tuple(ep.probe_spec(shared) for ep in upsert)
        slot.control.write(frame(Assignment(specs, remove, slot.max_concurrency, resume, due, slot.body_memory_limit)))
        slot.sent = dict(slot.endpoints)
        slot.sent_max_concurrency, slot.sent_body_memory_limit = settings
        slot.resume_from.clear()
        slot.due_from.clear()

    def _close_control(self, slot: _Slot) -> None:
        if slot.control is not None and not slot.control.is_closing():
            slot.control.close()  # the worker reads the end of its control pipe as "stop"

    async def _pump(self, slot: _Slot, reader: asyncio.StreamReader) -> None:
        """Hand the worker's batches to the recorder until its pipe ends."""
        while True:
            try:
                message = await asyncio.wait_for(read_message(reader), HANG_TIMEOUT_SECONDS)
            except TimeoutError:
                self._log.error("probe worker hung; killing it", worker=slot.index, silent_for_s=HANG_TIMEOUT_SECONDS)
                if slot.process is not None:
                    slot.process.kill()
                slot.pid = None
                return
            except Exception:  # a garbled pipe: the worker cannot be trusted any more
                self._log.exception("probe worker sent a bad message; killing it", worker=slot.index)
                if slot.process is not None:
                    slot.process.kill()
                return
            if message is None:
                slot.pid = None
                return
            if not isinstance(message, Batch):
                continue
            self._take(slot, message)

    def _take(self, slot: _Slot, batch: Batch) -> None:
        slot.received += len(batch.results) + batch.dropped
        try:
            if batch.results:
                self._recorder.results([decode_result(fields) for fields in batch.results])
            for name, ticks, cause in batch.skipped:
                self._recorder.skipped(name, ticks, cause)
        except Exception:  # a recording bug must not stop the intake of the other results
            self._log.exception("recording worker results failed", worker=slot.index)
        if batch.dropped:
            self._lost_backlog += batch.dropped
            self._log.warning(
                "probe results dropped",
                worker=slot.index,
                dropped=batch.dropped,
                hint="the main process did not keep up with the workers' results",
            )

    async def _reap(self, slot: _Slot) -> int | None:
        """Wait for the slot's process to exit (its pipe has ended); its exit code, -N when killed by signal N."""
        process = slot.process
        self._close_control(slot)
        if process is None:
            return None
        try:
            try:
                code = await asyncio.to_thread(process.wait, STOP_TIMEOUT_SECONDS)
            except subprocess.TimeoutExpired:  # its pipe closed but it lingers: it is of no use
                process.kill()
                code = await asyncio.to_thread(process.wait, STOP_TIMEOUT_SECONDS)
        except subprocess.TimeoutExpired:
            self._log.error("probe worker cannot be reaped", worker=slot.index, pid=process.pid)
            code = None
        slot.process = slot.pid = None
        return code

    def _died(self, slot: _Slot, code: int | None, when: float) -> None:
        """Count and log an unplanned death; the slot's endpoints resume, owing the ticks missed from `when`."""
        counters = slot.counters
        lost = 0
        if counters is not None:
            lost = max(0, counters[STARTED] - counters[CANCELLED] - slot.received)
        self._lost_in_flight += lost
        slot.resume_from.update(dict.fromkeys(slot.endpoints, when))
        how: dict[str, object] = {"exit_code": code}
        if code is not None and code < 0:
            with contextlib.suppress(ValueError):
                how = {"signal": signal.Signals(-code).name}
        self._log.error(
            "probe worker died",
            worker=slot.index,
            **how,
            endpoints=len(slot.endpoints),
            lost_probes=lost,
            restart_in_s=self._delay(slot),
        )
