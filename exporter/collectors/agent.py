"""The agent's own metrics: build info and config reload status."""

from __future__ import annotations

import platform
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from .. import __version__


@dataclass(frozen=True, slots=True)
class ReloadStatus:
    """What the last config (re)load did."""

    successful: bool
    last_success_timestamp: float
    successes: int
    failures: int


class AgentCollector(Collector):
    """Exports upwatch_build_info and the config reload gauges and counters."""

    def __init__(self, reload_status: Callable[[], ReloadStatus]) -> None:
        self._reload_status = reload_status

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
