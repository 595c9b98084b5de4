"""Probe metrics: blackbox-compatible gauges and upwatch's counters, built from one store snapshot per scrape."""

from __future__ import annotations

import threading
from collections.abc import Callable, Collection, Iterable
from decimal import Decimal

from prometheus_client.exposition import generate_latest
from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from exporter.results import PHASES, FailureReason, ProbeResult
from exporter.state import State
from exporter.store import EndpointSnapshot, ResultStore

Labels = dict[str, str]

# The `le` text prometheus_client's own histograms use (0.005, 1.0, +Inf); the
# helper is untyped upstream.
_le_text: Callable[[float], str] = floatToGoString

_GAUGE = "gauge"
_COUNTER = "counter"
_HISTOGRAM = "histogram"

# Exposed name -> (type, help), in exposition order. Counters are named with
# `_total` as exposed; CounterMetricFamily strips it from the family name and
# the text format adds it back to the TYPE and HELP lines.
_FAMILIES: dict[str, tuple[str, str]] = {
    "probe_success": (_GAUGE, "Whether the last probe succeeded (1) or failed (0)."),
    "probe_duration_seconds": (_GAUGE, "How long the last probe took to complete, in seconds."),
    "probe_http_status_code": (_GAUGE, "HTTP status code of the last probe's final response, 0 if none arrived."),
    "probe_http_duration_seconds": (
        _GAUGE,
        "Duration of the last probe's HTTP request by phase, summed over redirects.",
    ),
    "probe_http_content_length": (_GAUGE, "Content-Length of the last probe's final response, -1 if unknown."),
    "probe_http_redirects": (_GAUGE, "Number of redirects the last probe followed."),
    "probe_http_ssl": (_GAUGE, "Whether the last probe's final response came over TLS (1) or not (0)."),
    "probe_http_version": (_GAUGE, "HTTP version of the last probe's final response, 0 if none arrived."),
    "probe_ssl_earliest_cert_expiry": (_GAUGE, "Expiry of the last probe's TLS leaf certificate, unix seconds."),
    "probe_failed_due_to_regex": (_GAUGE, "Whether the last probe failed a body or header expectation (1) or not (0)."),
    "upwatch_probes_total": (_COUNTER, "Probes run, by result."),
    "upwatch_probe_failures_total": (_COUNTER, "Failed probes, by reason."),
    "upwatch_probe_duration_seconds": (_HISTOGRAM, "Total duration of every probe, in seconds."),
    "upwatch_endpoint_state": (_GAUGE, "Current state of the endpoint: 1 for the current state, 0 for the others."),
    "upwatch_endpoint_incidents_total": (_COUNTER, "Incidents opened: transitions into the down state."),
    "upwatch_endpoint_downtime_seconds_total": (
        _COUNTER,
        "Seconds spent down, counted from the first failed probe of each incident.",
    ),
    "upwatch_endpoint_state_since_timestamp_seconds": (_GAUGE, "When the current state began, unix seconds."),
    "upwatch_probe_last_run_timestamp_seconds": (_GAUGE, "When the last probe finished, unix seconds."),
    "upwatch_endpoint_slo_objective": (_GAUGE, "Availability objective of the endpoint as a ratio (0.999 for 99.9%)."),
    "upwatch_endpoint_interval_seconds": (_GAUGE, "Configured time between two probes of the endpoint, in seconds."),
    "upwatch_endpoint_timeout_seconds": (_GAUGE, "Configured deadline of one probe of the endpoint, in seconds."),
    "upwatch_endpoint_info": (_GAUGE, "Probed endpoint: URL without credentials or query string, and HTTP method."),
}


def _family(name: str) -> Metric:
    typ, doc = _FAMILIES[name]
    if typ == _COUNTER:
        return CounterMetricFamily(name, doc)
    if typ == _HISTOGRAM:
        return HistogramMetricFamily(name, doc)
    return GaugeMetricFamily(name, doc)


class ProbeCollector(Collector):
    """Turns a `ResultStore` snapshot into fresh metric families on every scrape."""

    def __init__(self, store: ResultStore) -> None:
        self._store = store

    def describe(self) -> Iterable[Metric]:
        """Empty families naming every metric, so registration neither scrapes nor misses clashes."""
        return [_family(name) for name in _FAMILIES]

    def collect(self) -> Iterable[Metric]:
        """Every probe metric of every endpoint, from one consistent snapshot."""
        snapshot = self._store.snapshot()
        families = {name: _family(name) for name in _FAMILIES}
        for ep in snapshot.endpoints:
            _add_endpoint(families, ep, snapshot.buckets)
        return list(families.values())


def _add_endpoint(families: dict[str, Metric], ep: EndpointSnapshot, buckets: tuple[float, ...]) -> None:
    base: Labels = {"endpoint": ep.endpoint.name, **ep.endpoint.labels}
    if ep.last is not None:
        _add_last(families, base, ep.last)
    _add_counters(families, base, ep, buckets)


class _Families:
    """A registry-like holder of ready families, for prometheus_client's text renderer."""

    def __init__(self, families: Iterable[Metric]) -> None:
        self._families = list(families)

    def collect(self) -> Iterable[Metric]:
        return self._families


def _render(family: Metric) -> str:
    return generate_latest(_Families([family])).decode()


class ProbeExposition:
    """The probe families in Prometheus text format, re-rendered per endpoint only when its data changed.

    prometheus_client renders about 7 µs a sample; 100 endpoints are ~5,600 samples, too slow to
    render whole on every scrape. Each endpoint's samples are rendered by prometheus_client itself
    when its data changes (`refresh`, called after each probe) and a scrape only joins the pieces.
    """

    def __init__(self, store: ResultStore) -> None:
        self._store = store
        self._lock = threading.Lock()
        self._chunks: dict[str, tuple[int, tuple[str, ...]]] = {}  # name -> (version, samples per family)
        # HELP and TYPE lines of each family, rendered once.
        self._headers = tuple(_render(_family(name)) for name in _FAMILIES)

    def refresh(self, names: Collection[str] | None = None) -> None:
        """Re-render the endpoints (all, or the named ones) whose data changed; forget removed ones."""
        snapshot = self._store.snapshot(names)
        with self._lock:
            known = {name: chunk[0] for name, chunk in self._chunks.items()}
        fresh: dict[str, tuple[int, tuple[str, ...]]] = {}
        for ep in snapshot.endpoints:
            if known.get(ep.endpoint.name) == ep.version:
                continue
            families = {name: _family(name) for name in _FAMILIES}
            _add_endpoint(families, ep, snapshot.buckets)
            samples = tuple(_render(f)[len(h) :] for f, h in zip(families.values(), self._headers, strict=True))
            fresh[ep.endpoint.name] = (ep.version, samples)
        with self._lock:
            for name, chunk in fresh.items():
                current = self._chunks.get(name)
                if current is None or current[0] < chunk[0]:
                    self._chunks[name] = chunk
            if names is None:
                alive = {ep.endpoint.name for ep in snapshot.endpoints}
                for name in [n for n in self._chunks if n not in alive]:
                    del self._chunks[name]

    def render(self) -> str:
        """Every probe family of every endpoint, in the text exposition format."""
        self.refresh()
        order = self._store.names()
        with self._lock:
            chunks = [self._chunks[name][1] for name in order if name in self._chunks]
        return "".join(header + "".join(c[i] for c in chunks) for i, header in enumerate(self._headers))


def _add_last(families: dict[str, Metric], base: Labels, last: ProbeResult) -> None:
    """The blackbox_exporter gauges, from the last probe."""

    def put(name: str, value: float, extra: Labels | None = None) -> None:
        families[name].add_sample(name, {**base, **extra} if extra else base, value)

    put("probe_success", float(last.success))
    put("probe_duration_seconds", last.duration_seconds)
    put("probe_http_status_code", last.status_code)
    for phase in PHASES:
        put("probe_http_duration_seconds", last.phases.get(phase, 0.0), {"phase": phase})
    put("probe_http_content_length", last.content_length)
    put("probe_http_redirects", last.redirects)
    put("probe_http_ssl", float(last.ssl))
    put("probe_http_version", last.http_version)
    if last.cert_expiry_timestamp is not None:
        put("probe_ssl_earliest_cert_expiry", last.cert_expiry_timestamp)
    put("probe_failed_due_to_regex", float(last.failed_due_to_regex))


def _add_counters(families: dict[str, Metric], base: Labels, ep: EndpointSnapshot, buckets: tuple[float, ...]) -> None:
    """upwatch's own series: counters, histogram, state and endpoint metadata."""

    def put(name: str, value: float, extra: Labels | None = None, *, suffix: str = "") -> None:
        families[name].add_sample(name + suffix, {**base, **extra} if extra else base, value)

    put("upwatch_probes_total", ep.probes_success, {"result": "success"})
    put("upwatch_probes_total", ep.probes_failure, {"result": "failure"})
    for reason in FailureReason:
        put("upwatch_probe_failures_total", ep.failures.get(reason, 0), {"reason": reason.value})

    hist = "upwatch_probe_duration_seconds"
    for bound, count in zip((*buckets, float("inf")), ep.bucket_counts, strict=True):
        put(hist, count, {"le": _le_text(bound)}, suffix="_bucket")
    put(hist, ep.duration_count, suffix="_count")
    put(hist, ep.duration_sum, suffix="_sum")

    for state in State:
        put("upwatch_endpoint_state", float(ep.state.state is state), {"state": state.value})
    put("upwatch_endpoint_incidents_total", ep.state.incidents)
    put("upwatch_endpoint_downtime_seconds_total", ep.state.downtime_seconds)
    put("upwatch_endpoint_state_since_timestamp_seconds", ep.state.since)
    if ep.last_run is not None:
        put("upwatch_probe_last_run_timestamp_seconds", ep.last_run)
    if ep.endpoint.slo is not None:
        put("upwatch_endpoint_slo_objective", _ratio(ep.endpoint.slo.availability))
    put("upwatch_endpoint_interval_seconds", ep.endpoint.interval)
    put("upwatch_endpoint_timeout_seconds", ep.endpoint.timeout)
    put("upwatch_endpoint_info", 1.0, {"url": ep.endpoint.safe_url, "method": ep.endpoint.method})


def _ratio(percent: float) -> float:
    """A percentage as a ratio without binary noise: 99.9 -> 0.999, not 0.9990000000000001."""
    return float(Decimal(repr(percent)) / 100)
