"""The agent's own metrics: build info, config reload status, probe worker processes."""

from __future__ import annotations

import platform
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from .. import __version__
from ..workers.pool import NO_WORKERS, WorkerStatus


@dataclass(frozen=True, slots=True)
class ReloadStatus:
    """What the last config (re)load did."""

    successful: bool
    last_success_timestamp: float
    successes: int
    failures: int


class AgentCollector(Collector):
    """Exports upwatch_build_info, the config reload gauges and counters, and the probe workers' figures."""

    def __init__(
        self, reload_status: Callable[[], ReloadStatus], worker_status: Callable[[], WorkerStatus] | None = None
    ) -> None:
        self._reload_status = reload_status
        self._worker_status = worker_status or (lambda: NO_WORKERS)

    def collect(self) -> Iterator[Metric]:
        """Fresh families on every scrape."""
        info = GaugeMetricFamily(
            "upwatch_build_info",
            "upwatch's version and the Python running it; always 1.",
            labels=["version", "python"],
        )
        info.add_metric([__version__, platform.python_version()], 1)
        yield info
        status = self._reload_status()
        yield GaugeMetricFamily(
            "upwatch_config_last_reload_successful",
            "Whether the last config load or reload succeeded (1) or was rejected (0).",
            value=1 if status.successful else 0,
        )
        yield GaugeMetricFamily(
            "upwatch_config_last_reload_success_timestamp_seconds",
            "When the config was last loaded successfully, unix seconds.",
            value=status.last_success_timestamp,
        )
        reloads = CounterMetricFamily(
            "upwatch_config_reloads",
            "Config loads and reloads by result; a rejected one leaves the old config running.",
            labels=["result"],
        )
        reloads.add_metric(["success"], status.successes)
        reloads.add_metric(["failure"], status.failures)
        yield reloads
        workers = self._worker_status()
        yield GaugeMetricFamily(
            "upwatch_probe_workers",
            "Probe worker processes running; 0 when the main process probes (workers: 0, or auto on a small config).",
            value=workers.running,
        )
        yield CounterMetricFamily(
            "upwatch_probe_worker_restarts",
            "Probe worker processes started again after one died.",
            value=workers.restarts,
        )
        lost = CounterMetricFamily(
            "upwatch_probes_lost",
            "Probes whose result never reached the main process: in flight in a worker that died "
            "(worker_exit), or dropped because the main process did not keep up (backlog).",
            labels=["reason"],
        )
        lost.add_metric(["worker_exit"], workers.lost_in_flight)
        lost.add_metric(["backlog"], workers.lost_backlog)
        yield lost
