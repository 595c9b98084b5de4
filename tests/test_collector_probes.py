"""The probe exposition: every contract metric with the right type, labels and values, and byte for
byte the text prometheus_client renders for the same metric families."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.openmetrics.exposition import generate_latest as generate_openmetrics
from prometheus_client.openmetrics.parser import text_string_to_metric_families as parse_openmetrics
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.utils import floatToGoString

from exporter.collectors.agent import AgentCollector, ReloadStatus
from exporter.collectors.probes import _FAMILIES, ProbeExposition
from exporter.config import Endpoint
from exporter.results import PHASES, FailureReason, ProbeResult
from exporter.state import State
from exporter.store import DEFAULT_BUCKETS, EndpointSnapshot, ResultStore, StoreSnapshot

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
    "upwatch_probe_ticks_skipped_total": ("counter", frozenset()),
    "upwatch_probe_duration_seconds_bucket": ("histogram", frozenset({"le"})),
    "upwatch_probe_duration_seconds_sum": ("histogram", frozenset()),
    "upwatch_probe_duration_seconds_count": ("histogram", frozenset()),
    "upwatch_endpoint_state": ("gauge", frozenset({"state"})),
    "upwatch_endpoint_incidents_total": ("counter", frozenset()),
    "upwatch_endpoint_downtime_seconds_total": ("counter", frozenset()),
    "upwatch_endpoint_state_since_timestamp_seconds": ("gauge", frozenset()),
    "upwatch_probe_last_run_timestamp_seconds": ("gauge", frozenset()),
    "upwatch_endpoint_slo_objective": ("gauge", frozenset()),
    "upwatch_endpoint_quorum": ("gauge", frozenset()),
    "upwatch_endpoint_interval_seconds": ("gauge", frozenset()),
    "upwatch_endpoint_timeout_seconds": ("gauge", frozenset()),
    "upwatch_endpoint_info": ("gauge", frozenset({"url", "method"})),
}
BLACKBOX = [name for name in CONTRACT if name.startswith("probe_")]
LABELS = {"team": "payments", "severity": "critical"}
CREATED_AT = 1_700_000_000.0
EXPIRY = 1_800_000_000.0


def endpoint(name: str, **extra: Any) -> Endpoint:
    return unchecked({"name": name, "url": f"https://{name}.example.com/health", **extra})


def unchecked(fields: dict[str, Any]) -> Endpoint:
    """An endpoint whose name and label values are taken as they are, the rest checked.

    The config refuses control, bidi and zero-width characters in them; the exposition must escape
    whatever it is handed all the same.
    """
    labels = fields.get("labels", {})
    checked = Endpoint.model_validate({**fields, "name": "checked", "labels": dict.fromkeys(labels, "checked")})
    return checked.model_copy(update={"name": fields["name"], "labels": labels})


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


def text(exposition: ProbeExposition) -> str:
    """What a scrape gets of the probe families."""
    return b"".join(exposition.render()).decode()


def samples(exposition: ProbeExposition) -> Iterator[tuple[str, str, dict[str, str]]]:
    """(sample name, family type, labels) of every sample in the text exposition, parsed back."""
    for family in text_string_to_metric_families(text(exposition)):
        for s in family.samples:
            yield s.name, family.type, s.labels


Get = Callable[[str, dict[str, str]], float | None]


def sample_value(exposition: ProbeExposition) -> Get:
    """Like `CollectorRegistry.get_sample_value`: a sample's value from a fresh render, None if absent."""

    def get(name: str, labels: dict[str, str]) -> float | None:
        for family in text_string_to_metric_families(text(exposition)):
            for s in family.samples:
                if s.name == name and s.labels == labels:
                    return float(s.value)
        return None

    return get


@pytest.fixture
def store() -> ResultStore:
    s = ResultStore(clock=lambda: CREATED_AT)
    s.sync(
        [
            endpoint("orders-api", labels=LABELS, slo={"availability": 99.9}, quorum=2),
            endpoint("plain", url="http://user:secret@plain.example.com:8080/ping?token=abc#frag", method="head"),
        ]
    )
    return s


@pytest.fixture
def exposition(store: ResultStore) -> ProbeExposition:
    return ProbeExposition(store)


@pytest.fixture
def get(exposition: ProbeExposition) -> Get:
    return sample_value(exposition)


def orders(**more: str) -> dict[str, str]:
    return {"endpoint": "orders-api", **LABELS, **more}


def plain(**more: str) -> dict[str, str]:
    return {"endpoint": "plain", **more}


# -- what the families hold --------------------------------------------------------------------


def test_every_contract_metric_with_type_and_labels(store: ResultStore, exposition: ProbeExposition) -> None:
    store.record(good("orders-api", t=CREATED_AT + 10))
    store.record(failed("plain", t=CREATED_AT + 10, reason=FailureReason.CONNECT))
    seen: dict[str, set[str]] = {}
    for name, typ, labels in samples(exposition):
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
    assert seen["upwatch_endpoint_quorum"] == {"orders-api"}
    assert all(
        endpoints == {"orders-api", "plain"}
        for name, endpoints in seen.items()
        if "ssl_earliest" not in name and "slo" not in name and "quorum" not in name
    )


def test_exposed_names_and_types_are_exact(store: ResultStore, exposition: ProbeExposition) -> None:
    store.record(good("orders-api", t=CREATED_AT + 10))
    exposed = text(exposition)
    for name, (typ, _) in CONTRACT.items():
        family = (
            name.removesuffix("_bucket").removesuffix("_sum").removesuffix("_count") if typ == "histogram" else name
        )
        assert f"# TYPE {family} {typ}\n" in exposed
        assert f"# HELP {family} " in exposed
    for line in exposed.splitlines():
        if line.startswith("# HELP"):
            assert len(line.split(" ", 3)[3]) > 10, line  # a real description, not an empty or placeholder text
    assert "_created" not in exposed


def test_openmetrics_exposition_is_valid_without_created(store: ResultStore, exposition: ProbeExposition) -> None:
    # The families as the text format names them, re-rendered by prometheus_client as OpenMetrics.
    store.record(good("orders-api", t=CREATED_AT + 10))
    families = list(text_string_to_metric_families(text(exposition)))
    om_text = generate_openmetrics(_Families(families)).decode()
    assert "_created" not in om_text
    types = {f.name: f.type for f in parse_openmetrics(om_text)}
    assert types["upwatch_probes"] == "counter"
    assert types["upwatch_probe_ticks_skipped"] == "counter"
    assert types["upwatch_probe_duration_seconds"] == "histogram"
    assert types["upwatch_endpoint_downtime_seconds"] == "counter"


def test_blackbox_gauges_from_last_probe(store: ResultStore, get: Get) -> None:
    store.record(failed("orders-api", t=CREATED_AT + 10, reason=FailureReason.TIMEOUT))
    store.record(good("orders-api", t=CREATED_AT + 20, duration=0.25))
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


def test_blackbox_gauges_of_failed_probe(store: ResultStore, get: Get) -> None:
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
    assert get("probe_success", plain()) == 0
    assert get("probe_failed_due_to_regex", plain()) == 1
    assert get("probe_http_version", plain()) == 2.0
    assert get("probe_http_content_length", plain()) == -1
    assert get("probe_http_ssl", plain()) == 0
    assert get("probe_ssl_earliest_cert_expiry", plain()) is None
    for phase in PHASES:
        assert get("probe_http_duration_seconds", plain(phase=phase)) == 0


def test_not_yet_probed_endpoint(get: Get) -> None:
    for name in BLACKBOX:
        assert get(name, orders()) is None, name
    assert get("upwatch_probe_last_run_timestamp_seconds", orders()) is None
    assert get("upwatch_probes_total", orders(result="success")) == 0
    assert get("upwatch_probes_total", orders(result="failure")) == 0
    for reason in FailureReason:
        assert get("upwatch_probe_failures_total", orders(reason=reason.value)) == 0
    assert get("upwatch_probe_ticks_skipped_total", orders()) == 0
    assert get("upwatch_probe_duration_seconds_count", orders()) == 0
    assert get("upwatch_probe_duration_seconds_bucket", orders(le="+Inf")) == 0
    assert get("upwatch_endpoint_state", orders(state="unknown")) == 1
    assert get("upwatch_endpoint_state_since_timestamp_seconds", orders()) == CREATED_AT
    assert get("upwatch_endpoint_incidents_total", orders()) == 0
    assert get("upwatch_endpoint_downtime_seconds_total", orders()) == 0
    assert get("upwatch_endpoint_info", orders(url="https://orders-api.example.com/health", method="GET")) == 1


def test_counters_and_histogram(store: ResultStore, exposition: ProbeExposition, get: Get) -> None:
    store.record(good("orders-api", t=CREATED_AT + 10, duration=0.2))
    store.record(failed("orders-api", t=CREATED_AT + 20, reason=FailureReason.TIMEOUT, duration=10.0))
    store.record(failed("orders-api", t=CREATED_AT + 30, reason=FailureReason.TIMEOUT, duration=10.0))
    store.record(failed("orders-api", t=CREATED_AT + 40, reason=FailureReason.HTTP_STATUS, duration=0.004))
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
        for name, _, labels in samples(exposition)
        if name.endswith("_bucket") and labels["endpoint"] == "plain"
    ]
    assert len(les) == len(DEFAULT_BUCKETS) + 1
    assert les[-1] == "+Inf"
    assert [float(le) for le in les[:-1]] == list(DEFAULT_BUCKETS)


def test_skipped_ticks_counted_per_endpoint(store: ResultStore, exposition: ProbeExposition, get: Get) -> None:
    assert get("upwatch_probe_ticks_skipped_total", orders()) == 0
    store.record_skipped("orders-api", 2)
    store.record_skipped("orders-api", 3)
    store.record_skipped("orders-api", 0)  # nothing skipped: no change
    store.record_skipped("gone", 7)  # an endpoint a reload removed: ignored
    assert get("upwatch_probe_ticks_skipped_total", orders()) == 5
    assert get("upwatch_probe_ticks_skipped_total", plain()) == 0
    # A refresh after the agent's next probe result shows it too, and the count survives a reload.
    store.record(good("orders-api", t=CREATED_AT + 10))
    exposition.refresh(["orders-api"])
    store.sync([endpoint("orders-api", labels={"team": "core"})])
    assert get("upwatch_probe_ticks_skipped_total", {"endpoint": "orders-api", "team": "core"}) == 5


def test_state_incidents_downtime_and_since(store: ResultStore, get: Get) -> None:
    t0 = CREATED_AT + 100
    store.record(good("orders-api", t=t0))
    for i in range(1, 5):  # default failure_threshold 3: down from the first failure at t0 + 10
        store.record(failed("orders-api", t=t0 + 10 * i, reason=FailureReason.CONNECT, duration=1.0))
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


def test_quorum_only_where_the_config_sets_it(get: Get) -> None:
    assert get("upwatch_endpoint_quorum", orders()) == 2
    assert get("upwatch_endpoint_quorum", plain()) is None


def test_slo_objective_ratio(store: ResultStore, get: Get) -> None:
    assert get("upwatch_endpoint_slo_objective", orders()) == 0.999
    assert get("upwatch_endpoint_slo_objective", plain()) is None
    assert get("upwatch_endpoint_interval_seconds", plain()) == 30.0
    assert get("upwatch_endpoint_timeout_seconds", plain()) == 10.0
    store.sync([endpoint("orders-api", labels=LABELS, slo={"availability": 99.95})])
    assert get("upwatch_endpoint_slo_objective", orders()) == 0.9995


def test_info_url_without_credentials_or_query(exposition: ProbeExposition) -> None:
    infos = [labels for name, _, labels in samples(exposition) if name == "upwatch_endpoint_info"]
    assert plain(url="http://plain.example.com:8080/ping", method="HEAD") in infos
    exposed = text(exposition)
    assert "secret" not in exposed
    assert "token" not in exposed


def test_removed_endpoint_series_disappear(store: ResultStore, exposition: ProbeExposition, get: Get) -> None:
    store.record(good("plain", t=CREATED_AT + 10))
    assert get("probe_success", plain()) == 1
    store.sync([endpoint("orders-api", labels=LABELS)])
    assert not [labels for _, _, labels in samples(exposition) if labels.get("endpoint") == "plain"]
    # Labels follow the reload too: the SLO was dropped.
    assert get("upwatch_endpoint_slo_objective", orders()) is None
    assert get("upwatch_endpoint_info", orders(url="https://orders-api.example.com/health", method="GET")) == 1


def test_endpoint_labels_follow_reload(store: ResultStore, get: Get) -> None:
    store.record(good("plain", t=CREATED_AT + 10))
    store.sync([endpoint("plain", labels={"team": "core"})])
    assert get("probe_success", plain(team="core")) == 1
    assert get("probe_success", plain()) is None


def test_no_endpoints_no_series() -> None:
    exposition = ProbeExposition(ResultStore())
    assert list(samples(exposition)) == []
    # Every family is still described, as prometheus_client does for a family without samples.
    assert [f.name for f in text_string_to_metric_families(text(exposition))] == [
        name.removesuffix("_total") for name in _FAMILIES
    ]


def test_probe_families_do_not_clash_with_the_agents(store: ResultStore, exposition: ProbeExposition) -> None:
    # The server serves the probe text followed by its registry's (agent and host collectors): a
    # family in both would be exposed twice, which Prometheus rejects.
    registry = CollectorRegistry(auto_describe=True)
    registry.register(AgentCollector(lambda: ReloadStatus(True, CREATED_AT, 1, 0)))
    served = text(exposition) + generate_latest(registry).decode()
    names = [f.name for f in text_string_to_metric_families(served)]
    assert len(names) == len(set(names))
    assert "upwatch_build_info" in names and "probe_success" in names


def test_each_render_shows_the_store_as_it_is(store: ResultStore, exposition: ProbeExposition) -> None:
    first = text(exposition)
    store.record(good("orders-api", t=CREATED_AT + 10))
    second = text(exposition)
    assert "probe_success{" not in first
    assert 'probe_success{endpoint="orders-api",severity="critical",team="payments"} 1.0\n' in second
    assert text(exposition) == second  # nothing changed since: the same text


# -- byte for byte prometheus_client's rendering ------------------------------------------------


class _Families:
    """A registry-like holder of ready families, for prometheus_client's renderers."""

    def __init__(self, families: Iterable[Metric]) -> None:
        self._families = list(families)

    def collect(self) -> Iterable[Metric]:
        return self._families


def reference(snapshot: StoreSnapshot) -> str:
    """The probe families built as prometheus_client metric families and rendered by its `generate_latest`.

    Names, types and help texts come from the exposition's own table; samples, their order, labels and
    values are built here the plain way, one `add_sample` each, and prometheus_client writes them.
    """
    families: dict[str, Metric] = {}
    for name, (typ, doc) in _FAMILIES.items():
        kind = {"counter": CounterMetricFamily, "histogram": HistogramMetricFamily}.get(typ, GaugeMetricFamily)
        families[name] = kind(name, doc)
    for ep in snapshot.endpoints:
        _reference_endpoint(families, ep, snapshot.buckets)
    return generate_latest(_Families(families.values())).decode()


def _reference_endpoint(families: dict[str, Metric], ep: EndpointSnapshot, buckets: tuple[float, ...]) -> None:
    base = {"endpoint": ep.endpoint.name, **ep.endpoint.labels}

    def put(name: str, value: float, extra: dict[str, str] | None = None, *, suffix: str = "") -> None:
        families[name].add_sample(name + suffix, {**base, **extra} if extra else base, value)

    last = ep.last
    if last is not None:
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
    put("upwatch_probes_total", ep.probes_success, {"result": "success"})
    put("upwatch_probes_total", ep.probes_failure, {"result": "failure"})
    for reason in FailureReason:
        put("upwatch_probe_failures_total", ep.failures[reason], {"reason": reason.value})
    put("upwatch_probe_ticks_skipped_total", ep.ticks_skipped)
    hist = "upwatch_probe_duration_seconds"
    for bound, count in zip((*buckets, math.inf), ep.bucket_counts, strict=True):
        put(hist, count, {"le": floatToGoString(bound)}, suffix="_bucket")
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
        # The ratio as a decimal fraction, as the exposition promises (0.999, not 0.9990000000000001).
        put("upwatch_endpoint_slo_objective", float(f"{ep.endpoint.slo.availability / 100:.12g}"))
    if ep.endpoint.quorum is not None:
        put("upwatch_endpoint_quorum", ep.endpoint.quorum)
    put("upwatch_endpoint_interval_seconds", ep.endpoint.interval)
    put("upwatch_endpoint_timeout_seconds", ep.endpoint.timeout)
    put("upwatch_endpoint_info", 1.0, {"url": ep.endpoint.safe_url, "method": ep.endpoint.method})


def assert_same_as_reference(store: ResultStore, exposition: ProbeExposition) -> str:
    exposed = text(exposition)
    expected = reference(store.snapshot())
    assert exposed == expected
    return exposed


def test_renders_what_prometheus_client_renders(store: ResultStore, exposition: ProbeExposition) -> None:
    store.sync([endpoint("a", labels=LABELS), endpoint("b"), endpoint("c", slo={"availability": 99.5})])
    assert_same_as_reference(store, exposition)  # before any probe
    store.record(good("a", CREATED_AT + 1))
    store.record(good("b", CREATED_AT + 1))
    assert_same_as_reference(store, exposition)
    # a change recorded without refresh() is still picked up by render()
    store.record(good("a", CREATED_AT + 2, duration=3.0))
    assert_same_as_reference(store, exposition)
    # refresh of one endpoint, then render
    store.record(good("c", CREATED_AT + 3))
    exposition.refresh(["c"])
    assert_same_as_reference(store, exposition)
    # a reload that changes labels, removes an endpoint and reorders the rest
    store.sync([endpoint("c", slo={"availability": 99.5}), endpoint("a", labels={"team": "other"})])
    exposed = assert_same_as_reference(store, exposition)
    assert 'endpoint="b"' not in exposed
    assert 'team="other"' in exposed and 'team="payments"' not in exposed
    # an endpoint removed and added again starts over
    store.sync([endpoint("c", slo={"availability": 99.5})])
    exposition.refresh()
    store.sync([endpoint("c", slo={"availability": 99.5}), endpoint("a", labels={"team": "other"})])
    assert_same_as_reference(store, exposition)


def test_pieces_split_families_between_endpoints(store: ResultStore) -> None:
    store.sync([endpoint(name) for name in "abcde"])
    for name in "abc":
        store.record(good(name, CREATED_AT + 1))
    exposition = ProbeExposition(store)
    exposition._PIECE_ENDPOINTS = 2  # the server gets a family's lines in pieces of this many endpoints
    pieces = exposition.render()
    assert len(pieces) == len(_FAMILIES) * (1 + 3)  # its HELP and TYPE lines, then endpoints a-b, c-d, e
    assert_same_as_reference(store, exposition)


# Label values the text format must escape (backslash, double quote, newline) or must pass through
# untouched (everything else), and `%`, which means something to the exposition's line templates.
HOSTILE_LABELS = {
    "quote": 'say "hi"',
    "backslash": "C:\\temp\\",
    "newline": "line one\nline two\n",
    "escaped_looking": '\\n \\" \\\\',
    "rtl": "\u202e\u05e9\u05dc\u05d5\u05dd \u05e2\u05d5\u05dc\u05dd\u202c",  # Hebrew, right to left
    "unicode": "café Ω 🚀 \u0000 \t \r",
    "empty": "",
    "percent": "100% %s %d %% %(x)s",
    "Zeta": "upper-case names sort before lower-case ones",
    "_under": "and _ sorts between them",
}

HOSTILE_ENDPOINTS = [
    {"name": 'we"ird\\name %s', "url": 'https://user:pw@x.example.com/a"b\\c%s?key=1', "labels": HOSTILE_LABELS},
    {"name": "\u202eevil-rtl", "url": "http://[::1]:8080/", "labels": {"team": ""}, "method": "post"},
    {"name": "café", "url": "https://xn--caf-dma.example/", "slo": {"availability": 0.001}, "interval": "24h"},
    {"name": "slo-tiny", "url": "https://t.example/", "slo": {"availability": 99.99999}, "timeout": "1ms"},
]

NAN, INF = math.nan, math.inf
HOSTILE_PHASES = {"resolve": NAN, "connect": -INF, "tls": -0.0, "processing": 5e-324, "transfer": 12345678.9}


def hostile_results(t: float) -> list[ProbeResult]:
    return [
        ProbeResult(
            endpoint='we"ird\\name %s',
            success=True,
            started_at=t,
            duration_seconds=1e-310,
            status_code=2**70,
            http_version=-0.0,
            content_length=-(2**63),
            redirects=10**20,
            ssl=True,
            cert_expiry_timestamp=INF,
            phases=HOSTILE_PHASES,
        ),
        ProbeResult(
            endpoint="\u202eevil-rtl",
            success=False,
            started_at=-0.0,
            duration_seconds=NAN,
            reason=FailureReason.BODY,
            failed_due_to_regex=True,
            cert_expiry_timestamp=-INF,
        ),
        ProbeResult(endpoint="café", success=True, started_at=1e300, duration_seconds=1e308),
    ]


def test_hostile_labels_and_values_render_as_prometheus_client_does() -> None:
    # Bucket bounds whose `le` text takes Go's exponent form (1e+06) or is tiny.
    store = ResultStore(clock=lambda: CREATED_AT, buckets=(1e-9, 0.5, 1e6, 1.5e7, 1e21))
    store.sync([unchecked(ep) for ep in HOSTILE_ENDPOINTS])
    exposition = ProbeExposition(store)
    assert_same_as_reference(store, exposition)
    for result in hostile_results(1.7e9):
        store.record(result)
    store.record(ProbeResult(endpoint="café", success=True, started_at=1e300, duration_seconds=1e308))  # sum: inf
    store.record_skipped("slo-tiny", 10**18 + 1)  # more than a float holds exactly
    exposition.refresh(['we"ird\\name %s'])
    exposed = assert_same_as_reference(store, exposition)
    for written in ("NaN", "+Inf", "-Inf", "-0.0", "5e-324", "1e-310", "1.23456789e+07", "1e+06", "1e+20"):
        assert written in exposed, written
    assert 'quote="say \\"hi\\""' in exposed
    assert 'newline="line one\\nline two\\n"' in exposed
    assert 'backslash="C:\\\\temp\\\\"' in exposed


@pytest.mark.parametrize(
    ("before", "after"),
    [
        (0.0, -0.0),  # equal, but written differently
        (-0.0, 0.0),
        (NAN, NAN),
        (NAN, 1.0),
        (1.0, NAN),
        (INF, -INF),
        (1, 1.0),  # equal and written alike
        (2**53, 2**53 + 1),  # unequal and written alike
        (1e22, 1e21),  # Go's exponent form
    ],
)
def test_a_changed_value_is_written_anew(before: float, after: float) -> None:
    store = ResultStore(clock=lambda: CREATED_AT)
    store.sync([endpoint("a")])
    exposition = ProbeExposition(store)
    for value in (before, after, before):
        phases = dict.fromkeys(PHASES, value)
        store.record(good("a", CREATED_AT + 1, http_version=value, status_code=value, phases=phases))
        exposition.refresh(["a"])
        assert_same_as_reference(store, exposition)


# Label names that sort before, between and after the families' own labels (le < method < phase <
# reason < result < state < url), and some that only the info family's method and URL split.
LABEL_NAME_SETS = [
    {},
    {"team": "payments"},
    {"a": "x", "f": "%s", "lz": "%%", "mz": '"', "pz": "\\", "reb": "\n", "rf": "", "sz": "%(x)s", "v": "z"},
    {"lz": "between le", "mz": "and method"},  # one run everywhere but in the info family
    {"Zeta": "upper", "_under": "score", "team": "x"},
]


def test_endpoints_with_different_label_names_render_as_prometheus_client_does() -> None:
    store = ResultStore(clock=lambda: CREATED_AT)
    endpoints = [endpoint(f"{n}-{i}", labels=labels) for n, labels in enumerate(LABEL_NAME_SETS) for i in (0, 1)]
    store.sync(endpoints)
    exposition = ProbeExposition(store)
    assert_same_as_reference(store, exposition)
    for ep in endpoints:
        store.record(good(ep.name, CREATED_AT + 1))
    assert_same_as_reference(store, exposition)
    for ep in endpoints[::3]:
        store.record(failed(ep.name, CREATED_AT + 2, FailureReason.TIMEOUT, phases={"connect": -0.0}))
        exposition.refresh([ep.name])
    assert_same_as_reference(store, exposition)
    # a reload that gives endpoints other label names, and other values under the same names
    store.sync(
        [
            endpoint("0-0", labels=LABEL_NAME_SETS[2]),
            endpoint("2-0", labels={}),
            endpoint("3-1", labels={"lz": "new", "mz": "values"}),
            endpoint("new", labels=LABEL_NAME_SETS[3]),
        ]
    )
    store.record(good("new", CREATED_AT + 3))
    assert_same_as_reference(store, exposition)
    store.record(good("0-0", CREATED_AT + 4, duration=2.5))
    exposition.refresh(["0-0"])
    assert_same_as_reference(store, exposition)


def test_endpoints_with_the_same_label_names_share_line_templates() -> None:
    store = ResultStore(clock=lambda: CREATED_AT)
    store.sync([endpoint("a", labels={"team": "x"}), endpoint("b", labels={"team": "y"}), endpoint("c")])
    exposition = ProbeExposition(store)
    exposition.render()
    texts = exposition._texts
    assert texts["a"].templates is texts["b"].templates
    assert texts["a"].templates is not texts["c"].templates
    # the templates of label names no endpoint has any more are let go
    store.sync([endpoint("a", labels={"team": "x"}), endpoint("c", labels={"team": "z"})])
    exposition.render()
    assert len(exposition._renderer._templates) == 1
    assert_same_as_reference(store, exposition)


def test_a_refresh_after_skipped_ticks_alone_renders_what_prometheus_client_renders(store: ResultStore) -> None:
    exposition = ProbeExposition(store)
    store.record(good("orders-api", CREATED_AT + 1))
    exposition.refresh(["orders-api"])
    store.record_skipped("orders-api", 2)  # no probe result: only the skipped ticks changed
    exposition.refresh(["orders-api"])
    assert_same_as_reference(store, exposition)
