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


@dataclass(frozen=True, slots=True)
class Placement:
    """Where this agent stands among others: its vantage, its shard, and its share of the endpoints."""

    vantage: str | None = None
    shard_index: int = 0
    shard_total: int = 1
    configured: int = 0  # endpoints in the config file
    probed: int = 0  # of which this agent's shard probes and exports


class AgentCollector(Collector):
    """Exports upwatch_build_info, the config reload gauges and counters, and the probe workers' figures."""

    def __init__(
        self,
        reload_status: Callable[[], ReloadStatus],
        worker_status: Callable[[], WorkerStatus] | None = None,
        placement: Callable[[], Placement] | None = None,
    ) -> None:
        self._reload_status = reload_status
        self._worker_status = worker_status or (lambda: NO_WORKERS)
        self._placement = placement or Placement

    def collect(self) -> Iterator[Metric]:
        """Fresh families on every scrape."""
        info = GaugeMetricFamily(
            "upwatch_build_info",
            "upwatch's version and the Python running it; always 1.",
            labels=["version", "python"],
        )
        info.add_metric([__version__, platform.python_version()], 1)
        yield info
        place = self._placement()
        names, values = ["shard_index", "shard_total"], [str(place.shard_index), str(place.shard_total)]
        if place.vantage is not None:
            names, values = ["vantage", *names], [place.vantage, *values]
        agent = GaugeMetricFamily(
            "upwatch_agent_info",
            "Where this agent probes from (vantage, when set) and which shard of the endpoints it probes; always 1.",
            labels=names,
        )
        agent.add_metric(values, 1)
        yield agent
        yield _by(
            GaugeMetricFamily("upwatch_endpoints", _ENDPOINTS_HELP, labels=["scope"]),
            {"configured": place.configured, "probed": place.probed},
        )
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
        yield _by(
            CounterMetricFamily("upwatch_config_reloads", _RELOADS_HELP, labels=["result"]),
            {"success": status.successes, "failure": status.failures},
        )
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
        yield _by(
            CounterMetricFamily("upwatch_probes_lost", _LOST_HELP, labels=["reason"]),
            {"worker_exit": workers.lost_in_flight, "backlog": workers.lost_backlog},
        )


_ENDPOINTS_HELP = "Endpoints in the config file (configured) and those this agent's shard probes and exports (probed)."
_RELOADS_HELP = "Config loads and reloads by result; a rejected one leaves the old config running."
_LOST_HELP = (
    "Probes whose result never reached the main process: in flight in a worker that died "
    "(worker_exit), or dropped because the main process did not keep up (backlog)."
)


def _by(family: GaugeMetricFamily | CounterMetricFamily, values: dict[str, float]) -> Metric:
    """The family with one sample per value of its one label."""
    for label, value in values.items():
        family.add_metric([label], value)
    return family
