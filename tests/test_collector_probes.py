"""The probe collector: every contract metric, with the right type, labels and values."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.openmetrics.exposition import generate_latest as generate_openmetrics
from prometheus_client.openmetrics.parser import text_string_to_metric_families as parse_openmetrics
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import DuplicateTimeseries

from exporter.collectors.probes import ProbeCollector
from exporter.config import Endpoint
from exporter.results import PHASES, FailureReason, ProbeResult
from exporter.store import DEFAULT_BUCKETS, ResultStore

# Exposed sample name -> (family type, labels besides `endpoint` and the endpoint's own).
CONTRACT: dict[str, tuple[str, frozenset[str]]] = {
    "probe_success": ("gauge", frozenset()),
    "probe_duration_seconds": ("gauge", frozenset()),
    "probe_http_status_code": ("gauge", frozenset()),
    "probe_http_duration_seconds": ("gauge", frozenset({"phase"})),
    "probe_http_content_length": ("gauge", frozenset()),
    "probe_http_redirects": ("gauge", frozenset()),
    "probe_http_ssl": ("gauge", frozenset()),
    "probe_http_version": ("gauge", frozenset()),
    "probe_ssl_earliest_cert_expiry": ("gauge", frozenset()),
    "probe_failed_due_to_regex": ("gauge", frozenset()),
    "upwatch_probes_total": ("counter", frozenset({"result"})),
    "upwatch_probe_failures_total": ("counter", frozenset({"reason"})),
    "upwatch_probe_duration_seconds_bucket": ("histogram", frozenset({"le"})),
    "upwatch_probe_duration_seconds_sum": ("histogram", frozenset()),
    "upwatch_probe_duration_seconds_count": ("histogram", frozenset()),
    "upwatch_endpoint_state": ("gauge", frozenset({"state"})),
    "upwatch_endpoint_incidents_total": ("counter", frozenset()),
    "upwatch_endpoint_downtime_seconds_total": ("counter", frozenset()),
    "upwatch_endpoint_state_since_timestamp_seconds": ("gauge", frozenset()),
    "upwatch_probe_last_run_timestamp_seconds": ("gauge", frozenset()),
    "upwatch_endpoint_slo_objective": ("gauge", frozenset()),
    "upwatch_endpoint_interval_seconds": ("gauge", frozenset()),
    "upwatch_endpoint_timeout_seconds": ("gauge", frozenset()),
    "upwatch_endpoint_info": ("gauge", frozenset({"url", "method"})),
}
BLACKBOX = [name for name in CONTRACT if name.startswith("probe_")]
LABELS = {"team": "payments", "severity": "critical"}
CREATED_AT = 1_700_000_000.0
EXPIRY = 1_800_000_000.0


def endpoint(name: str, **extra: Any) -> Endpoint:
    return Endpoint.model_validate({"name": name, "url": f"https://{name}.example.com/health", **extra})


def good(name: str, t: float, duration: float = 0.2, **extra: Any) -> ProbeResult:
    fields: dict[str, Any] = {
        "status_code": 200,
        "http_version": 1.1,
        "content_length": 17,
        "redirects": 1,
        "ssl": True,
        "cert_expiry_timestamp": EXPIRY,
        "phases": dict(zip(PHASES, (0.01, 0.02, 0.03, 0.1, 0.04), strict=True)),
    }
    fields.update(extra)
    return ProbeResult(endpoint=name, success=True, started_at=t, duration_seconds=duration, **fields)


def failed(name: str, t: float, reason: FailureReason, duration: float = 0.5, **extra: Any) -> ProbeResult:
    return ProbeResult(endpoint=name, success=False, started_at=t, duration_seconds=duration, reason=reason, **extra)


@pytest.fixture
def store() -> ResultStore:
    s = ResultStore(clock=lambda: CREATED_AT)
    s.sync(
        [
            endpoint("orders-api", labels=LABELS, slo={"availability": 99.9}),
            endpoint("plain", url="http://user:secret@plain.example.com:8080/ping?token=abc#frag", method="head"),
        ]
    )
    return s


@pytest.fixture
def registry(store: ResultStore) -> CollectorRegistry:
    reg = CollectorRegistry()
    reg.register(ProbeCollector(store))
    return reg


def orders(**more: str) -> dict[str, str]:
    return {"endpoint": "orders-api", **LABELS, **more}


def plain(**more: str) -> dict[str, str]:
    return {"endpoint": "plain", **more}


def samples(registry: CollectorRegistry) -> Iterator[tuple[str, str, dict[str, str]]]:
    """(sample name, family type, labels) of every sample in the text exposition, parsed back."""
    text = generate_latest(registry).decode()
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            yield s.name, family.type, s.labels


def test_every_contract_metric_with_type_and_labels(store: ResultStore, registry: CollectorRegistry) -> None:
    store.record(good("orders-api", t=CREATED_AT + 10))
    store.record(failed("plain", t=CREATED_AT + 10, reason=FailureReason.CONNECT))
    seen: dict[str, set[str]] = {}
    for name, typ, labels in samples(registry):
        assert name in CONTRACT, f"{name} is not a contract metric"
        expected_type, extra = CONTRACT[name]
        assert typ == expected_type, name
        own = LABELS.keys() if labels["endpoint"] == "orders-api" else set()
        assert set(labels) == {"endpoint", *own, *extra}, name
        seen.setdefault(name, set()).add(labels["endpoint"])
    assert set(seen) == set(CONTRACT)
    # The cert expiry is known only from the TLS probe, the SLO only for the endpoint that has one.
    assert seen["probe_ssl_earliest_cert_expiry"] == {"orders-api"}
    assert seen["upwatch_endpoint_slo_objective"] == {"orders-api"}
    assert all(
        endpoints == {"orders-api", "plain"}
        for name, endpoints in seen.items()
        if "ssl_earliest" not in name and "slo" not in name
    )


def test_exposed_names_and_types_are_exact(store: ResultStore, registry: CollectorRegistry) -> None:
    store.record(good("orders-api", t=CREATED_AT + 10))
    text = generate_latest(registry).decode()
    for name, (typ, _) in CONTRACT.items():
        family = (
            name.removesuffix("_bucket").removesuffix("_sum").removesuffix("_count") if typ == "histogram" else name
        )
        assert f"# TYPE {family} {typ}\n" in text
        assert f"# HELP {family} " in text
    for line in text.splitlines():
        if line.startswith("# HELP"):
            assert len(line.split(" ", 3)[3]) > 10, line  # a real description, not an empty or placeholder text
    assert "_created" not in text


def test_openmetrics_exposition_is_valid_without_created(store: ResultStore, registry: CollectorRegistry) -> None:
    store.record(good("orders-api", t=CREATED_AT + 10))
    text = generate_openmetrics(registry).decode()
    assert "_created" not in text
    families = {f.name: f.type for f in parse_openmetrics(text)}
    assert families["upwatch_probes"] == "counter"
    assert families["upwatch_probe_duration_seconds"] == "histogram"
    assert families["upwatch_endpoint_downtime_seconds"] == "counter"


def test_blackbox_gauges_from_last_probe(store: ResultStore, registry: CollectorRegistry) -> None:
    store.record(failed("orders-api", t=CREATED_AT + 10, reason=FailureReason.TIMEOUT))
    store.record(good("orders-api", t=CREATED_AT + 20, duration=0.25))
    get = registry.get_sample_value
    assert get("probe_success", orders()) == 1
    assert get("probe_duration_seconds", orders()) == 0.25
    assert get("probe_http_status_code", orders()) == 200
    assert get("probe_http_content_length", orders()) == 17
    assert get("probe_http_redirects", orders()) == 1
    assert get("probe_http_ssl", orders()) == 1
    assert get("probe_http_version", orders()) == 1.1
    assert get("probe_ssl_earliest_cert_expiry", orders()) == EXPIRY
    assert get("probe_failed_due_to_regex", orders()) == 0
    for phase, value in zip(PHASES, (0.01, 0.02, 0.03, 0.1, 0.04), strict=True):
        assert get("probe_http_duration_seconds", orders(phase=phase)) == value


def test_blackbox_gauges_of_failed_probe(store: ResultStore, registry: CollectorRegistry) -> None:
    store.record(
        failed(
            "plain",
            t=CREATED_AT + 10,
            reason=FailureReason.BODY,
            status_code=200,
            http_version=2.0,
            failed_due_to_regex=True,
        )
    )
    get = registry.get_sample_value
    assert get("probe_success", plain()) == 0
    assert get("probe_failed_due_to_regex", plain()) == 1
    assert get("probe_http_version", plain()) == 2.0
    assert get("probe_http_content_length", plain()) == -1
    assert get("probe_http_ssl", plain()) == 0
    assert get("probe_ssl_earliest_cert_expiry", plain()) is None
    for phase in PHASES:
        assert get("probe_http_duration_seconds", plain(phase=phase)) == 0


def test_not_yet_probed_endpoint(registry: CollectorRegistry) -> None:
    get = registry.get_sample_value
    for name in BLACKBOX:
        assert get(name, orders()) is None, name
    assert get("upwatch_probe_last_run_timestamp_seconds", orders()) is None
    assert get("upwatch_probes_total", orders(result="success")) == 0
    assert get("upwatch_probes_total", orders(result="failure")) == 0
    for reason in FailureReason:
        assert get("upwatch_probe_failures_total", orders(reason=reason.value)) == 0
    assert get("upwatch_probe_duration_seconds_count", orders()) == 0
    assert get("upwatch_probe_duration_seconds_bucket", orders(le="+Inf")) == 0
    assert get("upwatch_endpoint_state", orders(state="unknown")) == 1
    assert get("upwatch_endpoint_state_since_timestamp_seconds", orders()) == CREATED_AT
    assert get("upwatch_endpoint_incidents_total", orders()) == 0
    assert get("upwatch_endpoint_downtime_seconds_total", orders()) == 0
    assert get("upwatch_endpoint_info", orders(url="https://orders-api.example.com/health", method="GET")) == 1


def test_counters_and_histogram(store: ResultStore, registry: CollectorRegistry) -> None:
    store.record(good("orders-api", t=CREATED_AT + 10, duration=0.2))
    store.record(failed("orders-api", t=CREATED_AT + 20, reason=FailureReason.TIMEOUT, duration=10.0))
    store.record(failed("orders-api", t=CREATED_AT + 30, reason=FailureReason.TIMEOUT, duration=10.0))
    store.record(failed("orders-api", t=CREATED_AT + 40, reason=FailureReason.HTTP_STATUS, duration=0.004))
    get = registry.get_sample_value
    assert get("upwatch_probes_total", orders(result="success")) == 1
    assert get("upwatch_probes_total", orders(result="failure")) == 3
    assert get("upwatch_probe_failures_total", orders(reason="timeout")) == 2
    assert get("upwatch_probe_failures_total", orders(reason="http_status")) == 1
    assert get("upwatch_probe_failures_total", orders(reason="dns")) == 0
    assert get("upwatch_probe_duration_seconds_count", orders()) == 4
    assert get("upwatch_probe_duration_seconds_sum", orders()) == pytest.approx(20.204)
    assert get("upwatch_probe_duration_seconds_bucket", orders(le="0.005")) == 1
    assert get("upwatch_probe_duration_seconds_bucket", orders(le="0.25")) == 2
    assert get("upwatch_probe_duration_seconds_bucket", orders(le="7.5")) == 2
    assert get("upwatch_probe_duration_seconds_bucket", orders(le="10.0")) == 4
    assert get("upwatch_probe_duration_seconds_bucket", orders(le="+Inf")) == 4
    les = [
        labels["le"]
        for name, _, labels in samples(registry)
        if name.endswith("_bucket") and labels["endpoint"] == "plain"
    ]
    assert len(les) == len(DEFAULT_BUCKETS) + 1
    assert les[-1] == "+Inf"
    assert [float(le) for le in les[:-1]] == list(DEFAULT_BUCKETS)


def test_state_incidents_downtime_and_since(store: ResultStore, registry: CollectorRegistry) -> None:
    t0 = CREATED_AT + 100
    store.record(good("orders-api", t=t0))
    for i in range(1, 5):  # default failure_threshold 3: down from the first failure at t0 + 10
        store.record(failed("orders-api", t=t0 + 10 * i, reason=FailureReason.CONNECT, duration=1.0))
    get = registry.get_sample_value
    assert get("upwatch_endpoint_state", orders(state="down")) == 1
    for other in ("unknown", "up", "degraded"):
        assert get("upwatch_endpoint_state", orders(state=other)) == 0
    assert get("upwatch_endpoint_incidents_total", orders()) == 1
    assert get("upwatch_endpoint_downtime_seconds_total", orders()) == 30
    assert get("upwatch_endpoint_state_since_timestamp_seconds", orders()) == t0 + 10
    assert get("upwatch_probe_last_run_timestamp_seconds", orders()) == t0 + 41
    store.record(good("orders-api", t=t0 + 50, duration=3.0))  # slower than the default degraded_after (2s)
    assert get("upwatch_endpoint_state", orders(state="degraded")) == 1
    assert get("upwatch_endpoint_state", orders(state="down")) == 0
    assert get("upwatch_endpoint_downtime_seconds_total", orders()) == 40


def test_slo_objective_ratio(registry: CollectorRegistry, store: ResultStore) -> None:
    assert registry.get_sample_value("upwatch_endpoint_slo_objective", orders()) == 0.999
    assert registry.get_sample_value("upwatch_endpoint_slo_objective", plain()) is None
    assert registry.get_sample_value("upwatch_endpoint_interval_seconds", plain()) == 30.0
    assert registry.get_sample_value("upwatch_endpoint_timeout_seconds", plain()) == 10.0
    store.sync([endpoint("orders-api", labels=LABELS, slo={"availability": 99.95})])
    assert registry.get_sample_value("upwatch_endpoint_slo_objective", orders()) == 0.9995


def test_info_url_without_credentials_or_query(registry: CollectorRegistry) -> None:
    infos = [labels for name, _, labels in samples(registry) if name == "upwatch_endpoint_info"]
    assert plain(url="http://plain.example.com:8080/ping", method="HEAD") in infos
    text = generate_latest(registry).decode()
    assert "secret" not in text
    assert "token" not in text


def test_removed_endpoint_series_disappear(store: ResultStore, registry: CollectorRegistry) -> None:
    store.record(good("plain", t=CREATED_AT + 10))
    assert registry.get_sample_value("probe_success", plain()) == 1
    store.sync([endpoint("orders-api", labels=LABELS)])
    assert not [labels for _, _, labels in samples(registry) if labels.get("endpoint") == "plain"]
    # Labels follow the reload too: the SLO was dropped.
    assert registry.get_sample_value("upwatch_endpoint_slo_objective", orders()) is None
    assert (
        registry.get_sample_value(
            "upwatch_endpoint_info", orders(url="https://orders-api.example.com/health", method="GET")
        )
        == 1
    )


def test_endpoint_labels_follow_reload(store: ResultStore, registry: CollectorRegistry) -> None:
    store.record(good("plain", t=CREATED_AT + 10))
    store.sync([endpoint("plain", labels={"team": "core"})])
    assert registry.get_sample_value("probe_success", plain(team="core")) == 1
    assert registry.get_sample_value("probe_success", plain()) is None


def test_no_endpoints_no_series() -> None:
    reg = CollectorRegistry()
    reg.register(ProbeCollector(ResultStore()))
    assert list(samples(reg)) == []


def test_describe_guards_against_duplicate_registration(registry: CollectorRegistry, store: ResultStore) -> None:
    with pytest.raises(DuplicateTimeseries):
        registry.register(ProbeCollector(store))


def test_each_scrape_builds_fresh_families(store: ResultStore) -> None:
    collector = ProbeCollector(store)
    first = list(collector.collect())
    store.record(good("orders-api", t=CREATED_AT + 10))
    second = list(collector.collect())
    assert all(f1 is not f2 for f1, f2 in zip(first, second, strict=True))
    probes_first = next(f for f in first if f.name == "probe_success")
    assert probes_first.samples == []


# -- the cached text exposition the server uses ---------------------------------------------


def test_cached_exposition_is_byte_identical_to_a_fresh_render() -> None:
    from exporter.collectors.probes import ProbeExposition

    store = ResultStore(clock=lambda: CREATED_AT)
    store.sync([endpoint("a", labels=LABELS), endpoint("b"), endpoint("c", slo={"availability": 99.5})])
    registry = CollectorRegistry(auto_describe=False)
    registry.register(ProbeCollector(store))
    exposition = ProbeExposition(store)

    def fresh() -> str:
        return generate_latest(registry).decode()

    assert exposition.render() == fresh()  # before any probe
    store.record(good("a", CREATED_AT + 1))
    store.record(good("b", CREATED_AT + 1))
    assert exposition.render() == fresh()
    # a change recorded without refresh() is still picked up by render()
    store.record(good("a", CREATED_AT + 2, duration=3.0))
    assert exposition.render() == fresh()
    # refresh of one endpoint, then render
    store.record(good("c", CREATED_AT + 3))
    exposition.refresh(["c"])
    assert exposition.render() == fresh()
    # a reload that changes labels and removes an endpoint
    store.sync([endpoint("c", slo={"availability": 99.5}), endpoint("a", labels={"team": "other"})])
    text = exposition.render()
    assert text == fresh()
    assert 'endpoint="b"' not in text
    assert 'team="other"' in text and 'team="payments"' not in text
