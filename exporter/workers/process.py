"""A probe worker process: its own event loop, prober and scheduler for the endpoints the main process assigns it.

It only probes. Results and skipped ticks go back to the main process in one batch per loop
iteration, written without ever blocking the loop; the main process keeps state, counters and
histograms. The worker stops (cancelling its probes) when its control pipe ends: the main
process closed it, or died. Signals are the main process's business; a worker ignores them.
"""

from __future__ import annotations

import asyncio
import ctypes
import gc
import json
import os
import signal
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from exporter import loop as event_loop
from exporter.logs import configure_logging, get_logger
from exporter.probes.http import HttpProber
from exporter.probes.spec import ExpectSpec, ProbeSpec
from exporter.probes.tls import TLSContexts, build_contexts
from exporter.results import ProbeResult
from exporter.scheduler import Prober, Scheduler, SkipCause

from .wire import CANCELLED, STARTED, Assignment, Batch, encode_result, frame, open_counters, read_message

if TYPE_CHECKING:
    from exporter.config import Endpoint

# Results waiting in the pipe's user-space buffer beyond this (the main process is not reading)
# are dropped and counted rather than kept: probing goes on on time either way.
MAX_BACKLOG_BYTES = 8 * 1024 * 1024
# A worker with nothing to send still writes an empty batch this often, so that the main process
# can tell an idle worker from a hung one (see pool.HANG_TIMEOUT_SECONDS).
HEARTBEAT_SECONDS = 1.0


@dataclass(frozen=True, slots=True)
class WorkerSpec:
    """What a worker process needs to know at start."""

    index: int
    anchor: float  # the tick grid's origin, a time.monotonic() value shared by every process
    log_level: str
    log_format: str | None


def main(argv: Sequence[str] | None = None) -> None:
    """The worker process's entry point: `python -m exporter.workers.process SPEC`, started by the pool.

    SPEC is the WorkerSpec as JSON, with the numbers of the three inherited file descriptors.
    """
    fields = json.loads((sys.argv[1:] if argv is None else argv)[0])
    spec = WorkerSpec(**{k: fields[k] for k in ("index", "anchor", "log_level", "log_format")})
    worker_main(spec, fields["control_fd"], fields["results_fd"], open_counters(fields["counters_fd"]))


def worker_main(spec: WorkerSpec, control_fd: int, results_fd: int, counters: ctypes.Array[ctypes.c_uint64]) -> None:
    """Run the worker: ignore the signals the main process handles, probe until the control pipe ends."""
    # Ctrl-C, a terminal hangup or a service manager's SIGTERM reach the whole process group;
    # the main process handles them and stops the workers in order through their pipes.
    for sig in (signal.SIGINT, signal.SIGHUP, signal.SIGTERM):
        signal.signal(sig, signal.SIG_IGN)
    _name_process(f"upwatch-probe{spec.index}")
    configure_logging(spec.log_level, spec.log_format)
    # The tens of thousands of objects imported modules hold would make every full garbage
    # collection pause the loop for tens of milliseconds, in the middle of probes they would
    # lengthen: they live as long as the process, so the collector is told to leave them be.
    gc.collect()
    gc.freeze()
    try:
        event_loop.run(_serve(spec, control_fd, results_fd, counters))
    except Exception:  # the main process sees the exit, logs it and starts another worker
        get_logger(worker=spec.index).exception("probe worker failed")
        raise SystemExit(1) from None


def _name_process(name: str) -> None:
    """Show the worker as `name` in ps and top (Linux; elsewhere it keeps Python's name)."""
    try:
        with open("/proc/self/comm", "w") as comm:
            comm.write(name[:15])
    except OSError:
        pass


class _PipeClosed(asyncio.Protocol):
    """Resolves a future when the results pipe is gone (closed by us, or the main process died)."""

    def __init__(self, closed: asyncio.Future[None]) -> None:
        self._closed = closed

    def connection_lost(self, exc: Exception | None) -> None:
        if not self._closed.done():
            self._closed.set_result(None)


async def _serve(spec: WorkerSpec, control_fd: int, results_fd: int, counters: ctypes.Array[ctypes.c_uint64]) -> None:
    loop = asyncio.get_running_loop()
    log = get_logger(worker=spec.index)
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), os.fdopen(control_fd, "rb", 0))
    closed: asyncio.Future[None] = loop.create_future()
    transport, _ = await loop.connect_write_pipe(lambda: _PipeClosed(closed), os.fdopen(results_fd, "wb", 0))
    outbox = Outbox(transport)
    outbox.heartbeat(HEARTBEAT_SECONDS)
    tls = TLSContexts()
    prober = HttpProber(tls)
    scheduler = Scheduler(
        prober=CountingProber(prober, counters), sink=outbox, max_concurrency=1, log=log, anchor=spec.anchor
    )
    endpoints: dict[str, ProbeSpec] = {}
    first = True
    await _warm_up(prober, log)
    log.debug("probe worker started", pid=os.getpid())
    try:
        while (message := await read_message(reader)) is not None:
            if not isinstance(message, Assignment):
                raise TypeError(f"a worker takes assignments, got {type(message).__name__}")
            prober.budget.resize(message.body_memory_limit)
            for name in message.remove:
                endpoints.pop(name, None)
            for endpoint in message.upsert:
                endpoints[endpoint.name] = endpoint
            # Building SSL contexts costs milliseconds: off the loop, before the first probe needs one.
            await asyncio.to_thread(build_contexts, tls, message.upsert, log)
            changes = await scheduler.apply(
                list(endpoints.values()),
                message.max_concurrency,
                resume_from=message.resume_from,
                due_from=message.due_from,
            )
            prober.retain(endpoints)
            if first:
                gc.freeze()  # the endpoints, SSL contexts and clients just made live as long, too
                first = False
            log.info(
                "probe worker assigned",
                endpoints=len(endpoints),
                loops_started=len(changes.started),
                loops_stopped=len(changes.stopped),
                max_concurrency=message.max_concurrency,
            )
    finally:
        outbox.heartbeat_cancel()
        await scheduler.stop()
        await prober.aclose()
        outbox.flush()
        transport.close()
        await asyncio.wait_for(closed, timeout=10)
        log.debug("probe worker stopped", pid=os.getpid())


async def _warm_up(prober: Prober, log: Any) -> None:
    """Probe a throwaway local server once, before any endpoint.

    What a prober imports and builds on its first use (tens of milliseconds, more on a busy
    machine) would otherwise be timed as part of the first real probes, or make them time out.
    """

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await reader.readuntil(b"\r\n\r\n")
            writer.write(b"HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n")
            await writer.drain()
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    endpoint = ProbeSpec("warm-up", f"http://127.0.0.1:{port}/", expect=ExpectSpec(((204, 204),), "204"))
    try:
        result = await prober.probe(endpoint, asyncio.get_running_loop().time() + 10)
        log.debug("probe worker warmed up", success=result.success, duration_s=round(result.duration_seconds, 4))
    except Exception:  # only a head start; the real probes report their own failures
        log.exception("probe worker warm-up failed")
    finally:
        server.close()
        await server.wait_closed()


class CountingProber:
    """A prober that counts, in memory the main process can read, the probes it starts and those cancelled."""

    def __init__(self, prober: Prober, counters: ctypes.Array[ctypes.c_uint64]) -> None:
        self._prober = prober
        self._counters = counters

    async def probe(self, endpoint: Endpoint | ProbeSpec, deadline: float | None = None) -> ProbeResult:
        """Probe through the wrapped prober, counting."""
        self._counters[STARTED] += 1
        try:
            return await self._prober.probe(endpoint, deadline)
        except asyncio.CancelledError:
            self._counters[CANCELLED] += 1
            raise


class Outbox:
    """The worker's result sink: collects what the loops produce and writes it out once per loop iteration.

    Writes go through a non-blocking pipe transport, so a probe never waits on the main process.
    If the main process stops reading and the transport's buffer passes `max_backlog` bytes,
    results are dropped and the count is sent with the next batch that gets through.
    """

    def __init__(self, transport: asyncio.WriteTransport, max_backlog: int = MAX_BACKLOG_BYTES) -> None:
        self._transport = transport
        self._max_backlog = max_backlog
        self._results: list[tuple[object, ...]] = []
        self._skipped: dict[tuple[str, SkipCause], int] = {}
        self._dropped = 0
        self._pending = False
        self._written = False  # since the last heartbeat
        self._beat: asyncio.TimerHandle | None = None

    def heartbeat(self, every: float) -> None:
        """Write an empty batch if nothing was written since the last heartbeat; again in `every` seconds."""
        if not self._written and not self._transport.is_closing():
            self._transport.write(frame(Batch((), (), 0)))
        self._written = False
        self._beat = asyncio.get_running_loop().call_later(every, self.heartbeat, every)

    def heartbeat_cancel(self) -> None:
        """Stop the heartbeats."""
        if self._beat is not None:
            self._beat.cancel()

    def result(self, result: ProbeResult) -> None:
        """Queue one result."""
        self._results.append(encode_result(result))
        self._soon()

    def skipped(self, endpoint: str, ticks: int, cause: SkipCause) -> None:
        """Queue skipped ticks."""
        key = (endpoint, cause)
        self._skipped[key] = self._skipped.get(key, 0) + ticks
        self._soon()

    def _soon(self) -> None:
        if not self._pending:
            self._pending = True
            asyncio.get_running_loop().call_soon(self.flush)

    def flush(self) -> None:
        """Write what is queued as one batch (or count it as dropped when the pipe is backed up)."""
        self._pending = False
        if self._transport.is_closing() or not (self._results or self._skipped or self._dropped):
            return
        if self._transport.get_write_buffer_size() > self._max_backlog:
            self._dropped += len(self._results)
            self._results.clear()
            return
        skipped = tuple((name, ticks, cause) for (name, cause), ticks in self._skipped.items())
        self._transport.write(frame(Batch(tuple(self._results), skipped, self._dropped)))
        self._written = True
        self._results.clear()
        self._skipped.clear()
        self._dropped = 0


if __name__ == "__main__":
    main()
