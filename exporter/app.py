"""Composition root: builds config, prober, store, scheduler or worker pool, server; signals and shutdown."""

from __future__ import annotations

import asyncio
import math
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Collection, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .collectors.agent import AgentCollector, Placement, ReloadStatus
from .collectors.host import HostCollector
from .collectors.probes import ProbeExposition
from .config import (
    CONFIG_ENV_VAR,
    Config,
    ConfigError,
    Endpoint,
    HostConfig,
)
from .config.isolated import load_config_isolated
from .cpus import cpu_count
from .history import History
from .logs import LogSettings
from .memory import release_freed_memory
from .probes.budget import DEFAULT_BODY_BUDGET
from .probes.tls import TLSContexts, build_contexts
from .probing import InProcessProber
from .recorder import HISTORY_LIMIT, ResultRecorder
from .reloads import ReloadRequests
from .scheduler import Scheduler
from .server import MetricsServer
from .source import ConfigSource
from .statefile import StateKeeper
from .status.build import build_page
from .status.serve import StatusPages
from .status.view import PageView
from .store import ResultStore
from .workers.pool import NO_WORKERS, WorkerPool, WorkerStatus

if TYPE_CHECKING:
    from .status.history_source import PrometheusHistorySource
    from .web import WebAccess

# `workers: auto` starts worker processes from this many probes a second, or this many endpoints
# (whose /metrics rendering would otherwise share the probing process): below both, the main
# process probes, records and serves, and its scrapes are too small to move probe timings.
AUTO_WORKERS_FROM_RATE = 50.0
AUTO_WORKERS_FROM_ENDPOINTS = 500
# Above that, `auto` starts as many workers as the probes' CPU needs, at most one per usable CPU:
# each worker is planned to be busy at most WORKER_CPU_SHARE of a core, so that probes never wait
# for their loop, with a probe costing a worker this many CPU seconds (bench/probe_throughput.py,
# one worker: HTTP on a local page, HTTPS with a full handshake, rounded up). One worker process
# costs about 25 MB of memory, so a second one is only started when the first would be too busy.
PROBE_CPU_SECONDS = {"http": 0.0004, "https": 0.0025}
WORKER_CPU_SHARE = 0.5
# With worker processes, the main process's helper threads (rendering scrapes, loading configs)
# run this much nicer than the rest, so that a burst of scrapes or a reload takes CPU time from
# serving, not from the workers' probes and their timings.
SERVING_NICENESS = 10
# With worker processes, the endpoints whose results arrived are re-rendered for /metrics at
# most this often, together, in a helper thread: the loop that takes in results only records
# them. (A scrape renders whatever is still pending itself, so it never serves stale data.)
RENDER_PERIOD_SECONDS = 0.5


def auto_workers(endpoints: Sequence[Endpoint], cpus: int) -> int:
    """What `workers: auto` means for these endpoints on `cpus` usable CPUs (see AUTO_WORKERS_FROM_RATE)."""
    rate = sum(1 / ep.interval for ep in endpoints)
    if rate < AUTO_WORKERS_FROM_RATE and len(endpoints) < AUTO_WORKERS_FROM_ENDPOINTS:
        return 0
    cpu = sum(PROBE_CPU_SECONDS["https" if ep.url.startswith("https:") else "http"] / ep.interval for ep in endpoints)
    return max(1, min(cpus, math.ceil(round(cpu / WORKER_CPU_SHARE, 6))))  # rounded: no float noise


def lower_thread_priority(niceness: int = SERVING_NICENESS) -> None:
    """Make the calling thread nicer by `niceness` (Linux, where nice values are per thread; a no-op elsewhere)."""
    if sys.platform != "linux":
        return
    try:
        tid = threading.get_native_id()
        os.setpriority(os.PRIO_PROCESS, tid, min(19, os.getpriority(os.PRIO_PROCESS, tid) + niceness))
    except OSError:
        pass


class Agent:
    """The running `upwatch serve`: probes on schedule, serves metrics, reloads on demand.

    With `workers: 0` (or nothing to probe) the main process probes itself, as one scheduler.
    With more, worker processes probe and this process records their results and serves.
    """

    def __init__(
        self,
        *,
        source: ConfigSource,
        listen: tuple[str, int],
        log: Any,
        log_settings: LogSettings | None = None,
        cpus: Callable[[], int] = cpu_count,
        access: WebAccess | None = None,
        lifecycle: bool = False,
        data_dir: Path | None = None,
    ) -> None:
        self._source = source
        self._data_dir = data_dir  # --data-dir or $UPWATCH_DATA_DIR; else the config's data_dir
        self._keeper: StateKeeper | None = None
        self._listen = listen
        self._log = log
        self._log_settings = log_settings or LogSettings()
        self._cpus = cpus
        # The loader builds each endpoint's SSL context into this cache; the prober uses them from there.
        self._tls = TLSContexts()
        self._prober = InProcessProber(self._tls)  # loaded only if this process probes
        self._store = ResultStore()
        self._exposition = ProbeExposition(self._store)
        # The status page's own history (per 30 minutes for 24 h, per day for 90 days) of the first
        # HISTORY_LIMIT endpoints on the page; the recorder feeds it.
        self._history = History(buckets=self._store.buckets)
        self._recorder = ResultRecorder(self._store, log, on_change=self._changed, history=self._history)
        # With `status_page.prometheus_url`: the page's history from Prometheus, refreshed in the background.
        self._prometheus_history: PrometheusHistorySource | None = None
        self._prometheus_url: str | None = None
        self._unrendered: set[str] = set()
        self._renderer: asyncio.Task[None] | None = None
        self._scheduler: Scheduler | None = None  # probes in this process (workers: 0)
        self._pool: WorkerPool | None = None  # probes in worker processes (workers: 1 or more)
        self._workers: int | None = None  # worker processes probing now; 0: this process probes; None: not yet
        self._yielding_executor: ThreadPoolExecutor | None = None
        self._server = MetricsServer(
            probe_text=self._exposition.render,
            ready=self.ready,
            reload=self.reload,
            pages=StatusPages(self._page_view),
            access=access,
            lifecycle=lifecycle,
        )
        self._web = {"tls": access is not None and access.tls is not None, "lifecycle_api": lifecycle}
        # SIGHUPs and /-/reload requests that arrive while a reload runs share one reload after it.
        self._reloads = ReloadRequests(self._reload_now)
        self._stop = asyncio.Event()
        self._config: Config | None = None
        self._host: HostCollector | None = None
        self._host_config: HostConfig | None = None
        self._status = ReloadStatus(successful=True, last_success_timestamp=0.0, successes=0, failures=0)
        self._ready = False

    @property
    def config(self) -> Config | None:
        """The config in force (None when running host metrics only)."""
        return self._config

    @property
    def server(self) -> MetricsServer:
        """The HTTP server (listening once started)."""
        return self._server

    def ready(self) -> bool:
        """True once the config is loaded and probing has started."""
        return self._ready

    def _page_view(self) -> PageView:
        """The status page's view as of now, built in a helper thread: the endpoints, their states and history."""
        config = self._config
        if config is None:  # not started yet
            return PageView(title="Status", now=time.time(), groups=())
        source = self._prometheus_history
        if source is None:
            return build_page(
                config, self._store.snapshot(), self._history.summaries(), time.time(), history_limit=HISTORY_LIMIT
            )
        names = [ep.name for group in config.status_page.arrange(config.probed) for ep in group.endpoints]
        histories, note = source.current(names, self._history.summaries)
        return build_page(
            config,
            self._store.snapshot(),
            histories,
            time.time(),
            # Prometheus has every endpoint's history; the agent's own covers the first HISTORY_LIMIT.
            history_limit=HISTORY_LIMIT if note is not None else len(names) + 1,
            history_note=note,
        )

    def _apply_prometheus_history(self, config: Config | None) -> None:
        """Read the page's history from `status_page.prometheus_url` (a new client when it changed), or not."""
        url = config.status_page.prometheus_url if config is not None else None
        if url == self._prometheus_url:
            return
        if self._prometheus_history is not None:
            self._prometheus_history.close()
            self._prometheus_history = None
        if url is not None:
            assert config is not None
            safe = config.status_page.safe_prometheus_url or ""
            # Loaded only where used: httpx and the reader cost some megabytes an agent without it need not hold.
            from .status.history_source import PrometheusHistorySource
            from .status.prometheus import PrometheusHistory

            self._prometheus_history = PrometheusHistorySource(PrometheusHistory(url), log=self._log, url=safe)
            self._log.info("status page history from Prometheus", prometheus=safe)
        self._prometheus_url = url

    def placement(self) -> Placement:
        """This agent's vantage and shard, and how many endpoints it probes of those configured."""
        config = self._config
        if config is None:
            return Placement()
        shard = config.shard
        return Placement(
            vantage=config.vantage,
            shard_index=shard.index if shard else 0,
            shard_total=shard.total if shard else 1,
            configured=len(config.endpoints),
            probed=len(config.probed),
        )

    @staticmethod
    def _placement_log(config: Config | None) -> dict[str, object]:
        """The vantage and shard for a log line, where set."""
        out: dict[str, object] = {}
        if config is not None and config.vantage is not None:
            out["vantage"] = config.vantage
        if config is not None and config.shard is not None:
            out["shard"] = f"{config.shard.index}/{config.shard.total}"
            out["configured_endpoints"] = len(config.endpoints)
        return out

    def reload_status(self) -> ReloadStatus:
        """The outcome of the last config load."""
        return self._status

    def worker_status(self) -> WorkerStatus:
        """The probe worker processes' figures (all 0 while the main process probes)."""
        return self._pool.status() if self._pool is not None else NO_WORKERS

    @property
    def worker_pids(self) -> list[int | None]:
        """Process ids of the probe workers, by index (empty while the main process probes)."""
        return self._pool.pids() if self._pool is not None else []

    def _load(self) -> Config | None:
        """Read the config file; None when there is no file and none was asked for."""
        if not self._source.explicit and not self._source.path.exists():
            return None
        return load_config_isolated(self._source.path)

    async def start(self) -> None:
        """Load the config (raising ConfigError if it is bad), start probing and serving."""
        config = await asyncio.to_thread(self._load)
        self._record_load(ok=True)
        if config is None:
            self._log.info(
                "no config file found; serving host metrics only (no endpoints to probe)",
                looked_for=str(self._source.path),
                hint=f"pass --config or set {CONFIG_ENV_VAR}",
            )
        self._server.register(AgentCollector(self.reload_status, self.worker_status, self.placement))
        # One tick grid for every process: an endpoint keeps its slots wherever it is probed.
        anchor = asyncio.get_running_loop().time()
        self._scheduler = Scheduler(
            prober=self._prober,
            sink=self._recorder,
            max_concurrency=config.max_concurrent_probes if config else 64,
            log=self._log,
            anchor=anchor,
        )
        self._pool = WorkerPool(recorder=self._recorder, log=self._log, log_settings=self._log_settings, anchor=anchor)
        self._renderer = asyncio.create_task(self._render_changed(), name="render-probe-metrics")
        data_dir = self._data_dir or (config.data_dir if config else None)
        if data_dir is not None:  # saved states and counters taken up before the first probe
            self._keeper = StateKeeper(data_dir, self._store, self._log)
            self._recorder.sync(config.probed if config else ())
            await asyncio.to_thread(self._keeper.restore, config.probed if config else ())
            self._keeper.start()
        await self._apply(config)
        host, port = self._listen
        await self._server.start(host, port)
        self._ready = True
        self._log.info(
            "upwatch started",
            listen=[f"[{h}]:{p}" if ":" in h else f"{h}:{p}" for h, p in self._server.addresses],
            config=str(self._source.path) if config else None,
            endpoints=len(config.probed) if config else 0,
            **self._placement_log(config),
            workers=self._workers,
            **self._web,
        )

    def _changed(self, names: Collection[str]) -> None:
        """Endpoints with new results: re-rendered now in-process, soon and off the loop with workers."""
        if self._workers:
            self._unrendered.update(names)
        else:
            self._exposition.refresh(names)

    async def _render_changed(self) -> None:
        """Re-render the endpoints that got results, every RENDER_PERIOD_SECONDS, in a helper thread."""
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(RENDER_PERIOD_SECONDS)
            if not self._unrendered:
                continue
            names, self._unrendered = self._unrendered, set()
            try:
                await loop.run_in_executor(None, self._exposition.refresh, names)
            except Exception:  # a rendering bug must not stop the next rounds; scrapes render anyway
                self._log.exception("rendering probe metrics failed", endpoints=len(names))

    def _worker_count(self, config: Config | None) -> int:
        """Worker processes to probe with (0: this process probes): `workers`, at most one per allowed concurrent probe.

        `auto` is 0 for a small config (see AUTO_WORKERS_FROM_RATE), where a worker would cost more
        memory than it saves time; else as many as the probes' CPU needs (see WORKER_CPU_SHARE), from
        one to the usable CPUs. With no endpoints there is nothing to start worker processes for.
        """
        if config is None or not config.probed:
            return 0
        wanted = auto_workers(config.probed, self._cpus()) if config.workers == "auto" else int(config.workers)
        return max(0, min(wanted, config.max_concurrent_probes))

    async def _apply(self, config: Config | None) -> None:
        assert self._scheduler is not None and self._pool is not None
        endpoints: Sequence[Endpoint] = config.probed if config else ()
        cap = config.max_concurrent_probes if config else 64
        workers = self._worker_count(config)
        self._recorder.sync(endpoints)
        # Without a scrape meanwhile, removed endpoints' text (and the old config it points to) would stay.
        self._exposition.forget_removed()
        # Going between this process and worker processes, the new side owes the ticks it missed
        # while it was taking over.
        now = asyncio.get_running_loop().time()
        switched = self._workers is not None and (self._workers == 0) != (workers == 0)
        previous = {ep.name: now for ep in self._config.probed} if switched and self._config else None
        self._prober.budget.resize(config.body_memory_limit if config else DEFAULT_BODY_BUDGET)
        if workers == 0:
            await self._pool.apply((), cap, 0)
            # Building SSL contexts costs milliseconds, and loading the prober more: off the loop,
            # before the first probe needs them.
            await asyncio.to_thread(build_contexts, self._tls, endpoints, self._log)
            if endpoints:
                await asyncio.to_thread(self._prober.load)
            await self._scheduler.apply(endpoints, cap, resume_from=previous)
        else:
            await self._scheduler.apply((), cap)
            await self._pool.apply(
                endpoints, cap, workers, resume_from=previous, body_memory_limit=self._prober.budget.total
            )
        self._prober.retain({ep.name for ep in endpoints} if workers == 0 else ())
        if workers != self._workers:
            self._yield_to_workers(workers > 0)
            self._log.info(
                "probe processes",
                workers=workers,
                where="main process" if workers == 0 else "worker processes",
                setting=str(config.workers) if config else None,
                usable_cpus=self._cpus(),
            )
        self._workers = workers
        self._apply_host(config.host if config else HostConfig())
        self._apply_prometheus_history(config)
        self._config = config

    def _yield_to_workers(self, on: bool) -> None:
        """Run the loop's helper threads (scrape rendering, config loads) at a lower priority while workers probe.

        Not with `workers: 0`: there the loop that probes waits for the GIL those threads hold, and a
        thread made nicer would hold it longer under CPU contention.
        """
        loop = asyncio.get_running_loop()
        if on and self._yielding_executor is None:
            self._yielding_executor = ThreadPoolExecutor(
                thread_name_prefix="upwatch-serving", initializer=lower_thread_priority
            )
            loop.set_default_executor(self._yielding_executor)
        elif not on and self._yielding_executor is not None:
            loop.set_default_executor(ThreadPoolExecutor())
            self._yielding_executor.shutdown(wait=False)
            self._yielding_executor = None

    def _apply_host(self, host: HostConfig) -> None:
        """(Re)build the host collector when its settings changed; none when host metrics are off."""
        if host == self._host_config:
            return
        if self._host is not None:
            self._server.unregister(self._host)
            self._host.close()
            self._host = None
        if host.enabled:
            self._host = HostCollector(host, log=self._log)
            self._server.register(self._host)
        self._host_config = host

    def _record_load(self, *, ok: bool) -> None:
        s = self._status
        if ok:
            self._status = ReloadStatus(True, time.time(), s.successes + 1, s.failures)
        else:
            self._status = ReloadStatus(False, s.last_success_timestamp, s.successes, s.failures + 1)

    async def reload(self) -> tuple[bool, str]:
        """Reload the config: now, or if a reload runs, right after it (in one reload with the requests meanwhile)."""
        return await self._reloads()

    async def _reload_now(self) -> tuple[bool, str]:
        """Load the config again; a bad one is rejected, logged and counted, and the old one keeps running."""
        try:
            config = await asyncio.to_thread(self._load)
        except ConfigError as exc:
            self._record_load(ok=False)
            for problem in exc.problems:
                self._log.error("config reload rejected", problem=str(problem))
            return False, "config reload rejected; the old config keeps running:\n" + str(exc)
        except Exception as exc:  # never let a reload take the agent down
            self._record_load(ok=False)
            self._log.exception("config reload failed")
            return False, f"config reload failed: {exc}"
        await self._apply(config)
        await release_freed_memory()  # the old config's objects, scattered through malloc's pages
        self._record_load(ok=True)
        in_force = self._keeper.directory if self._keeper is not None else None
        if self._data_dir is None and config is not None and config.data_dir != in_force:
            self._log.warning("data_dir changed; it takes effect at the next start", data_dir=str(config.data_dir))
        count = len(config.probed) if config else 0
        where = self._placement_log(config)
        self._log.info("config reloaded", config=str(self._source.path), endpoints=count, **where)
        return True, f"config reloaded: {count} endpoints"

    def request_stop(self) -> None:
        """Ask the agent to shut down (from a signal handler or a test)."""
        self._stop.set()

    async def run(self) -> None:
        """Start, then serve until SIGTERM or SIGINT; SIGHUP reloads the config."""
        await self.start()
        loop = asyncio.get_running_loop()
        installed = []
        for sig, handler in (
            (signal.SIGHUP, self._reloads.request),
            (signal.SIGTERM, self.request_stop),
            (signal.SIGINT, self.request_stop),
        ):
            try:
                loop.add_signal_handler(sig, handler)
                installed.append(sig)
            except (NotImplementedError, RuntimeError):  # not on this platform or thread
                pass
        try:
            await self._stop.wait()
            self._log.info("shutting down")
        finally:
            for sig in installed:
                loop.remove_signal_handler(sig)
            await self._reloads.cancel()
            await self.stop()

    async def stop(self) -> None:
        """Ordered shutdown: stop scheduling and cancel probes, close the prober, close the server."""
        self._ready = False
        if self._pool is not None:
            await self._pool.stop()
        if self._renderer is not None:
            self._renderer.cancel()
            await asyncio.gather(self._renderer, return_exceptions=True)
        if self._scheduler is not None:
            await self._scheduler.stop()
        if self._keeper is not None:  # no result can arrive any more: the last save is complete
            await self._keeper.stop()
        await self._prober.aclose()
        await self._server.stop()
        if self._prometheus_history is not None:
            self._prometheus_history.close()
        if self._host is not None:
            self._host.close()
        self._log.info("upwatch stopped")
