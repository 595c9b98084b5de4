"""Probe metrics: blackbox-compatible gauges and upwatch's counters, in the Prometheus text format.

At 1,000 probes/s and thousands of endpoints, rendering must cost little and must not grow
faster than the probes do, and the text must not be held twice, so it is kept in two tiers:

- line templates, per family, shared by every endpoint with the same label names: the sample
  names and label strings with a `%s` for each run of the endpoint's own labels (sorted by name,
  they can fall on both sides of a family's own label, `le` or `phase`) and for each value;
- per endpoint, its own labels, escaped once per config, and its rendered lines: the templates
  filled with the labels and the values, formatted by prometheus_client's own function; redone
  only for endpoints whose store `version` changed (after each probe result, by `refresh`), and
  only for the families whose values changed: the values of the last render are kept to tell,
  except for the few families that every probe result changes.

A scrape then only joins the lines: family by family, endpoints in config order. The output is
byte for byte what prometheus_client's `generate_latest` renders for the same metric families
(the tests compare the two on hostile labels and values); the HELP and TYPE lines are rendered
by prometheus_client itself.
"""

from __future__ import annotations

import operator
import threading
import weakref
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from itertools import accumulate, repeat

from prometheus_client.exposition import generate_latest
from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.openmetrics.exposition import escape_label_name
from prometheus_client.utils import floatToGoString

from exporter.config import Endpoint
from exporter.results import PHASES, FailureReason
from exporter.state import State
from exporter.store import EndpointSnapshot, ResultStore

Value = float | None  # None: the sample is absent (a whole family of the endpoint is)

# How prometheus_client writes a sample value and the `le` label (0.005, 1.0, +Inf); untyped upstream.
_go_float: Callable[[float], str] = floatToGoString

_GAUGE = "gauge"
_COUNTER = "counter"
_HISTOGRAM = "histogram"

# Exposed name -> (type, help), in exposition order. Counters are named with `_total` as exposed.
# The data families come first, then the five that depend on the endpoint's config alone (see
# `_data_values` and `_config_values`).
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
    "upwatch_probe_ticks_skipped_total": (
        _COUNTER,
        "Scheduled probes that never ran because the endpoint's previous probe or a free slot came too late.",
    ),
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
    "upwatch_endpoint_quorum": (_GAUGE, "Vantages that must see the endpoint down to page, where the config sets it."),
    "upwatch_endpoint_interval_seconds": (_GAUGE, "Configured time between two probes of the endpoint, in seconds."),
    "upwatch_endpoint_timeout_seconds": (_GAUGE, "Configured deadline of one probe of the endpoint, in seconds."),
    "upwatch_endpoint_info": (_GAUGE, "Probed endpoint: URL without credentials or query string, and HTTP method."),
}
_HIST = "upwatch_probe_duration_seconds"
_DATA_FAMILIES = len(_FAMILIES) - 5  # the last five depend on the endpoint's config alone: `_config_values`
# Data families that every probe result changes (a count goes up, the last run is later): redone
# whenever the endpoint's data changed, without comparing, and so without keeping, their values.
# Kept, their counts (new int objects in every snapshot) would cost more than the lines.
_VOLATILE = frozenset({"upwatch_probes_total", _HIST, "upwatch_probe_last_run_timestamp_seconds"})
# Iterating an enum class is slow (a generator over its members); these are read on every refresh.
_REASONS = tuple(FailureReason)
_STATES = tuple(State)


def _family(name: str) -> Metric:
    typ, doc = _FAMILIES[name]
    if typ == _COUNTER:
        return CounterMetricFamily(name, doc)
    if typ == _HISTOGRAM:
        return HistogramMetricFamily(name, doc)
    return GaugeMetricFamily(name, doc)


class _Families:
    """A registry-like holder of ready families, for prometheus_client's text renderer."""

    def __init__(self, families: Iterable[Metric]) -> None:
        self._families = list(families)

    def collect(self) -> Iterable[Metric]:
        return self._families


def _header(name: str) -> bytes:
    """The HELP and TYPE lines of a family, rendered by prometheus_client from the empty family."""
    return generate_latest(_Families([_family(name)]))


# One sample of an endpoint: its exposed name and its labels besides the endpoint's own, each
# already written as `name="value"` (None for the info family, whose labels are the endpoint's URL
# and method). `_data_values` and `_config_values` yield each family's values in exactly this
# order (`_data_values` puts the `_VOLATILE` families last).
_Sample = tuple[str, dict[str, str] | None]
_Layout = tuple[tuple[_Sample, ...], ...]
_INFO_LABELS = ("method", "url")  # the info family's own labels, given per endpoint


def _pair(name: str, value: str) -> str:
    """One label as the text format writes it."""
    escaped = value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')
    return f'{escape_label_name(name)}="{escaped}"'


def _layout(buckets: Sequence[float]) -> _Layout:
    """Every sample one endpoint can have, in exposition order, grouped by family."""

    def each(name: str, label: str, values: Iterable[str]) -> tuple[_Sample, ...]:
        return tuple((name, {label: _pair(label, v)}) for v in values)

    per_family: dict[str, tuple[_Sample, ...]] = {
        name: ((name, {}),) for name, (typ, _) in _FAMILIES.items() if typ != _HISTOGRAM
    }
    per_family["probe_http_duration_seconds"] = each("probe_http_duration_seconds", "phase", PHASES)
    per_family["upwatch_probes_total"] = each("upwatch_probes_total", "result", ("success", "failure"))
    per_family["upwatch_probe_failures_total"] = each("upwatch_probe_failures_total", "reason", _REASONS)
    per_family[_HIST] = (
        *each(f"{_HIST}_bucket", "le", [_go_float(b) for b in (*buckets, float("inf"))]),
        (f"{_HIST}_count", {}),
        (f"{_HIST}_sum", {}),
    )
    per_family["upwatch_endpoint_state"] = each("upwatch_endpoint_state", "state", _STATES)
    per_family["upwatch_endpoint_info"] = (("upwatch_endpoint_info", None),)
    return tuple(per_family[name] for name in _FAMILIES)


def _line_labels(keys: tuple[str, ...], extra: dict[str, str] | None) -> list[str | tuple[int, int]]:
    """A sample's labels, sorted by name: the family's own as their text, the endpoint's as runs.

    A run (start, stop) stands for the endpoint's label pairs `start` to `stop`: its own labels
    sorted by name, then (for the info family, where `extra` is None) its method and URL.
    """
    theirs: dict[str, str | tuple[int, int]] = (
        {key: (len(keys) + i, len(keys) + i + 1) for i, key in enumerate(_INFO_LABELS)} if extra is None else {**extra}
    )
    out: list[str | tuple[int, int]] = []
    own = 0
    for key in sorted([*keys, *theirs]):  # the config reserves the families' label names
        if key in theirs:
            out.append(theirs[key])
            continue
        last = out[-1] if out else None
        if isinstance(last, tuple) and last[1] == own:  # the previous label is the endpoint's too
            out[-1] = (last[0], own + 1)
        else:
            out.append((own, own + 1))
        own += 1
    return out


class _LineTemplates:
    """Per family, the sample lines of every endpoint whose own label names (`endpoint` and its
    configured ones) are `keys`, with a `%s` for each run of its labels and for each value.

    Shared by those endpoints: a template is as long as the text, so one per endpoint would hold
    the exposition twice over. What an endpoint does not share is the text of its labels, written
    once per config by `labels`, in runs: the stretches of its labels that no label of the family
    falls between once sorted by name (`phase` splits `endpoint` and `team` into two runs, `le`
    too, `result` does not). A family's `getters` entry picks, from the texts of its values
    followed by those runs, the arguments of its template in the order of its `%s`; a family of
    one sample and no label of its own needs none: its template is `name{%s} %s`, for the `whole`
    run (every label of the endpoint) and the value.
    """

    __slots__ = ("__weakref__", "data_runs", "getters", "runs", "templates", "whole")

    def __init__(self, keys: tuple[str, ...], layout: _Layout) -> None:
        runs: dict[tuple[int, int], int] = {}  # run -> its place in `labels`, in order of first use
        templates = []
        getters = []
        data_runs = 0
        for family, samples in enumerate(layout):
            lines = []
            picks = []  # in the order of the family's `%s`: a value's index or, negative, a run's
            for value, (name, extra) in enumerate(samples):
                labels = []
                for label in _line_labels(keys, extra):
                    if isinstance(label, str):
                        labels.append(label.replace("%", "%%"))
                    else:
                        labels.append("%s")
                        picks.append(-1 - runs.setdefault(label, len(runs)))
                lines.append(f"{name}{{{','.join(labels)}}} %s\n")
                picks.append(value)
            templates.append("".join(lines).encode())
            # The values' texts come first, then the runs: a run's index is past the family's values.
            getters.append(operator.itemgetter(*[p if p >= 0 else len(samples) - 1 - p for p in picks]))
            if family < _DATA_FAMILIES:
                data_runs = len(runs)
        self.data_runs = data_runs  # the runs the data families take come first: `refresh` keeps only those
        self.runs = tuple(runs)
        self.whole = runs[0, len(keys)]
        self.templates = tuple(templates)
        self.getters = tuple(getters)

    def labels(self, endpoint: Endpoint) -> tuple[bytes, ...]:
        """The text of each run of the endpoint's labels, in the order the getters expect them."""
        own = {"endpoint": endpoint.name, **endpoint.labels}
        pairs = [_pair(k, own[k]) for k in sorted(own)]
        info = {"method": endpoint.method, "url": endpoint.safe_url}
        pairs += [_pair(k, info[k]) for k in _INFO_LABELS]
        return tuple([",".join(pairs[start:stop]).encode() for start, stop in self.runs])


# The values of the data families, flat (see `_data_values`): the stable families' first, then the
# volatile ones', each in exposition order. An absent family's values are all None.
_NO_PROBE: tuple[Value, ...] = (None,) * (9 + len(PHASES))  # the probe_* families' 14, before the first probe
_PHASE_ZERO = 0.0  # one object, so that an unchanged missing phase compares identical (see `_Renderer.render`)


def _data_values(ep: EndpointSnapshot) -> tuple[Value, ...]:
    """The values of the endpoint's data families (all but the config ones), flat: one tuple, not one per
    family, since `_EndpointText` keeps them; `_Renderer` knows where each family's are."""
    last = ep.last
    if last is None:
        probe = _NO_PROBE
    else:
        phases = last.phases
        probe = (
            1.0 if last.success else 0.0,
            last.duration_seconds,
            last.status_code,
            *[phases.get(p, _PHASE_ZERO) for p in PHASES],
            last.content_length,
            last.redirects,
            1.0 if last.ssl else 0.0,
            last.http_version,
            last.cert_expiry_timestamp,
            1.0 if last.failed_due_to_regex else 0.0,
        )
    state = ep.state
    current = state.state
    return (
        *probe,
        *map(ep.failures.__getitem__, _REASONS),
        ep.ticks_skipped,
        *[1.0 if s is current else 0.0 for s in _STATES],
        state.incidents,
        state.downtime_seconds,
        state.since,
        # the volatile families
        ep.probes_success,
        ep.probes_failure,
        *ep.bucket_counts,
        ep.duration_count,
        ep.duration_sum,
        ep.last_run,
    )


_ABSENT: tuple[Value, ...] = (None,)  # the values of a family the endpoint does not have (now)
_ONE: tuple[Value, ...] = (1.0,)


def _config_values(endpoint: Endpoint) -> tuple[tuple[Value, ...], ...]:
    """The values of the last families, which depend on the endpoint's config alone: rendered with its templates."""
    return (
        _ABSENT if endpoint.slo is None else (_ratio(endpoint.slo.availability),),
        _ABSENT if endpoint.quorum is None else (endpoint.quorum,),
        (endpoint.interval,),
        (endpoint.timeout,),
        _ONE,
    )


def _ratio(percent: float) -> float:
    """A percentage as a ratio without binary noise: 99.9 -> 0.999, not 0.9990000000000001."""
    return float(Decimal(repr(percent)) / 100)


@dataclass(frozen=True, slots=True)
class _EndpointText:
    """One endpoint's rendered samples, and what they were rendered from. Never changed once built."""

    endpoint: Endpoint  # the config the labels were written from
    version: int  # the store's version of the data
    templates: _LineTemplates  # shared by the endpoints with the same label names
    labels: tuple[bytes, ...]  # its runs of labels that the data families' templates take
    values: tuple[Value, ...]  # the stable families' values, flat (see `_data_values`)
    chunks: tuple[bytes, ...]  # per family: the rendered lines, b"" when absent


class _Renderer:
    """Renders endpoint snapshots into `_EndpointText`, reusing what an earlier one of the same endpoint holds."""

    # Counts recur (across endpoints, buckets and refreshes); formatting one costs ~0.7 µs, a
    # lookup ~0.05 µs. The memo is dropped whole when it grows past this many entries.
    _MEMO_LIMIT = 1 << 12

    def __init__(self, buckets: Sequence[float]) -> None:
        self._layout = _layout(buckets)
        self._int_texts: dict[int, bytes] = {}
        # Per set of label names; an entry goes when the last endpoint with those names does.
        self._templates: weakref.WeakValueDictionary[tuple[str, ...], _LineTemplates] = weakref.WeakValueDictionary()
        # Where each data family's values are in `_data_values`: the stable families' first.
        names = list(_FAMILIES)[:_DATA_FAMILIES]
        order = sorted(range(_DATA_FAMILIES), key=lambda f: names[f] in _VOLATILE)
        stops = list(accumulate(len(self._layout[f]) for f in order))
        # (family, start, stop, whether to compare its values with the previous ones), in that order
        self._spans = tuple(
            (f, stop - len(self._layout[f]), stop, names[f] not in _VOLATILE)
            for f, stop in zip(order, stops, strict=True)
        )
        self._kept = max(stop for *_, stop, stable in self._spans if stable)  # the values an `_EndpointText` keeps
        self._slices = tuple(slice(start, stop) for _, start, stop, _ in sorted(self._spans))  # in exposition order

    def render(self, ep: EndpointSnapshot, previous: _EndpointText | None) -> _EndpointText:
        """The endpoint's text; only families whose values changed since `previous` are formatted again."""
        values = _data_values(ep)
        endpoint = ep.endpoint
        if previous is None or not (previous.endpoint is endpoint or previous.endpoint == endpoint):
            keys = tuple(sorted(["endpoint", *endpoint.labels]))
            shared = self._templates.get(keys)
            if shared is None:
                shared = self._templates[keys] = _LineTemplates(keys, self._layout)
            labels = shared.labels(endpoint)
            every = (*[values[s] for s in self._slices], *_config_values(endpoint))
            lines = tuple(map(self._chunk, shared.templates, shared.getters, repeat(labels), every))
            return _EndpointText(endpoint, ep.version, shared, labels[: shared.data_runs], values[: self._kept], lines)
        shared = previous.templates
        templates = shared.templates
        labels = previous.labels
        whole = labels[shared.whole]
        memo = self._int_texts
        kept = previous.values
        chunks = list(previous.chunks)
        for f, start, stop, stable in self._spans:
            if stop - start == 1:  # one sample, no label of its own: the common case, made quick
                new = values[start]
                # Equal values are written alike, except 0.0 and -0.0 (and NaN is only equal to itself).
                if stable and ((old := kept[start]) is new or (new == old and new != 0)):
                    continue
                if new is None:
                    chunks[f] = b""
                else:
                    text = (memo.get(new) or self._count_text(new)) if type(new) is int else _go_float(new).encode()
                    chunks[f] = templates[f] % (whole, text)
                continue
            news = values[start:stop]
            if stable:
                olds = kept[start:stop]
                if news == olds and (all(map(operator.is_, news, olds)) or 0 not in news):
                    continue
            chunks[f] = self._chunk(templates[f], shared.getters[f], labels, news)
        return _EndpointText(endpoint, ep.version, shared, labels, values[: self._kept], tuple(chunks))

    def _chunk(
        self,
        template: bytes,
        getter: Callable[[list[bytes]], tuple[bytes, ...]],
        labels: tuple[bytes, ...],
        values: tuple[Value, ...],
    ) -> bytes:
        """One family's lines of the endpoint, each value as prometheus_client writes it; empty when absent."""
        if values[0] is None:  # a family is absent whole, so no value is None below
            return b""
        memo = self._int_texts
        texts = [
            (memo.get(v) or self._count_text(v)) if type(v) is int else _go_float(v).encode()  # type: ignore[arg-type]
            for v in values
        ]
        texts += labels
        return template % getter(texts)

    def _count_text(self, value: int) -> bytes:
        """A count as prometheus_client writes it, remembered."""
        memo = self._int_texts
        if len(memo) >= self._MEMO_LIMIT:
            memo.clear()
        text = memo[value] = _go_float(value).encode()
        return text


class ProbeExposition:
    """The probe families in the Prometheus text format (0.0.4), re-rendered per endpoint only where it changed.

    `refresh` (the agent calls it after each probe result) re-renders the named endpoints; `render`
    re-renders whatever changed since (a reload, skipped ticks) and hands out the text in pieces.
    """

    # Endpoints per piece of `render`'s output: about a megabyte for the histogram family, whose
    # lines take ~2 KB an endpoint with a label or two.
    _PIECE_ENDPOINTS = 512

    def __init__(self, store: ResultStore) -> None:
        self._store = store
        self._renderer = _Renderer(store.buckets)
        self._headers = tuple(_header(name) for name in _FAMILIES)
        self._lock = threading.Lock()  # guards _texts: refresh runs on the event loop, render in scrape threads
        self._texts: dict[str, _EndpointText] = {}

    def refresh(self, names: Collection[str] | None = None) -> None:
        """Re-render the endpoints (all, or the named ones) whose data changed; forget removed ones."""
        if names is None:
            self._refresh_all()
            return
        with self._lock:
            known = {name: self._texts.get(name) for name in names}
        fresh = []
        for ep in self._store.snapshot(names).endpoints:
            previous = known[ep.endpoint.name]
            if previous is None or previous.version != ep.version:
                fresh.append(self._renderer.render(ep, previous))
        self._install(fresh)

    def _refresh_all(self) -> dict[str, int]:
        """Bring every endpoint up to date, forget removed ones; the store's versions, in config order."""
        versions = self._store.versions()
        with self._lock:
            texts = dict(self._texts)
        stale = [name for name, version in versions.items() if (t := texts.get(name)) is None or t.version != version]
        if stale:
            snapshot = self._store.snapshot(stale)
            self._install([self._renderer.render(ep, texts.get(ep.endpoint.name)) for ep in snapshot.endpoints])
        self._forget(versions)
        return versions

    def forget_removed(self) -> None:
        """Drop the text of endpoints no longer in the store (after a reload removed some), scraped or not."""
        self._forget(self._store.versions())

    def _forget(self, kept: Collection[str]) -> None:
        with self._lock:
            for name in [n for n in self._texts if n not in kept]:
                del self._texts[name]

    def _install(self, fresh: Iterable[_EndpointText]) -> None:
        with self._lock:
            for text in fresh:
                current = self._texts.get(text.endpoint.name)
                # A concurrent render may have installed newer data (versions only grow).
                if current is None or current.version < text.version:
                    self._texts[text.endpoint.name] = text

    def render(self) -> list[bytes]:
        """Every probe family of every endpoint in the text exposition format (UTF-8), in pieces.

        Their concatenation is the exposition. Pieces (a family's lines of up to `_PIECE_ENDPOINTS`
        endpoints) rather than one string keep each step short: the server compresses or writes
        them one by one, and no single join of tens of megabytes holds the GIL, and so the event
        loop and its probes' timing, for tens of milliseconds.
        """
        order = self._refresh_all()
        with self._lock:
            texts = self._texts
            rows = [texts[name].chunks for name in order if name in texts]
        step = self._PIECE_ENDPOINTS
        pieces = []
        for family, header in enumerate(self._headers):
            column = operator.itemgetter(family)
            pieces.append(header)
            pieces.extend(b"".join(map(column, rows[i : i + step])) for i in range(0, len(rows), step))
        return pieces
