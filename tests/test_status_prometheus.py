"""The status page's history from a real Prometheus 2.42 fed with a known recorded history.

The agent's series of three endpoints over 91 days, a sample every GRID seconds, are written as
OpenMetrics and backfilled with `promtool tsdb create-blocks-from openmetrics`; the shipped
downtime rules (their expressions as committed, evaluated at UTC midnights and at `now` only, to
keep the backfill short) with `promtool tsdb create-blocks-from rules` against that Prometheus,
which is then restarted on the data. Incidents start and end on the grid, so the rules' figures
are the planted ones exactly.

- alpha: always up, 20 ms probes;
- beta: down 2 hours 40 days ago (timeout), 80 minutes across a midnight 3 days ago
  (http_status), and since 40 minutes before `now` (connect, still open); 300 ms probes;
- gamma, probed from two vantages: eu down 60 minutes 5 days ago (timeout), us 20 minutes of
  them (dns); 100 ms probes.
"""

from __future__ import annotations

import math
import re
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import yaml
from helpers import REPO, free_port, program, running
from pytest_httpserver import HTTPServer

from exporter.history import DAY, SLOT, histogram_quantile
from exporter.results import FailureReason
from exporter.status.history_source import PrometheusHistorySource
from exporter.status.prometheus import PrometheusHistory
from exporter.store import DEFAULT_BUCKETS

GRID = 240  # seconds between samples: divides an hour and a day, and is under the 5-minute lookback
PROBES_PER_SAMPLE = 4
HOUR = 3600
# How far the rules' figures may be from the planted ones: a rule sample is up to 15 s older than
# the moment read, so its window misses the last grid interval, and increase() extrapolates.
SLACK = GRID + 60


@dataclass(frozen=True)
class Outage:
    start: float
    end: float | None
    reason: str


@dataclass(frozen=True)
class Series:
    """One vantage's view of one endpoint."""

    endpoint: str
    vantage: str | None
    outages: tuple[Outage, ...]
    duration: float  # of every probe

    def labels(self, **extra: str) -> str:
        pairs = {"endpoint": self.endpoint, "instance": f"agent-{self.vantage or 'one'}", "job": "upwatch"}
        if self.vantage is not None:
            pairs["vantage"] = self.vantage
        pairs.update(extra)
        return "{" + ",".join(f'{k}="{v}"' for k, v in pairs.items()) + "}"

    def down_at(self, t: float) -> Outage | None:
        return next((o for o in self.outages if o.start <= t and (o.end is None or t < o.end)), None)

    def down_seconds(self, a: float, b: float) -> float:
        return sum(max(0.0, min(b, o.end if o.end is not None else b) - max(a, o.start)) for o in self.outages)


@dataclass(frozen=True)
class Planted:
    now: float
    first: float  # the first sample
    series: tuple[Series, ...]
    url: str

    def of(self, endpoint: str) -> list[Series]:
        return [s for s in self.series if s.endpoint == endpoint]

    def failures(self, s: Series, a: float, b: float) -> int:
        """Failed probes counted in (a, b] (samples on the grid)."""
        steps = range(math.floor(a / GRID) + 1, math.floor(b / GRID) + 1)
        return sum(PROBES_PER_SAMPLE for k in steps if k * GRID >= self.first and s.down_at(k * GRID))

    def probes(self, a: float, b: float) -> int:
        first = max(math.floor(a / GRID) + 1, math.ceil(self.first / GRID))
        return max(0, math.floor(b / GRID) + 1 - first) * PROBES_PER_SAMPLE


def _anchors(planted_series: tuple[Series, ...], first: float, now: float) -> list[float]:
    """The moments some query reads a sample at or just after: midnights, window starts, transitions."""
    today = math.floor(now / DAY) * DAY
    out = [float(d) for d in range(int(first), int(today) + 1, DAY)]
    out += [now - days * DAY for days in (1, 7, 30)]
    out += [t for s in planted_series for o in s.outages for t in (o.start, o.end) if t is not None]
    return out


def _openmetrics(planted_series: tuple[Series, ...], first: float, now: float) -> dict[int, str]:
    """OpenMetrics text of the series, one per UTC day (promtool 2.42 reads its whole input once per 2-hour block).

    The counters are sampled on the whole grid in the last 25 hours, hourly before, and on the grid
    within 12 minutes of every anchor: every lookup and range the queries make finds the samples a
    dense history would give at its ends, with a tenth of the samples.
    """
    times = [first + k * GRID for k in range(int((now - first) // GRID) + 1)]
    bucket_from = now - 25 * HOUR
    anchors = _anchors(planted_series, first, now)
    kept = {t for t in times if t >= bucket_from or t % HOUR == 0 or any(abs(t - a) <= 720 for a in anchors)}
    families: dict[tuple[int, str], list[str]] = {}
    for s in planted_series:
        lines: dict[tuple[int, str], list[str]] = {}
        probes = failures = incidents = 0
        down = 0.0
        by_reason: dict[str, int] = {}
        buckets = [0] * (len(DEFAULT_BUCKETS) + 1)
        le = next((i for i, b in enumerate(DEFAULT_BUCKETS) if s.duration <= b), len(DEFAULT_BUCKETS))
        prev: float | None = None
        for t in times:
            outage = s.down_at(t)
            if prev is not None:
                down += s.down_seconds(prev, t)
                incidents += sum(1 for o in s.outages if prev < o.start <= t)
            probes += PROBES_PER_SAMPLE
            if outage is not None:
                failures += PROBES_PER_SAMPLE
                by_reason[outage.reason] = by_reason.get(outage.reason, 0) + PROBES_PER_SAMPLE
            if t not in kept:
                prev = t
                continue
            starts = (
                [first]
                + [o.start for o in s.outages if o.start <= t]
                + [o.end for o in s.outages if o.end and o.end <= t]
            )
            since = max(starts)

            def add(
                name: str,
                value: float,
                _s: Series = s,
                _t: float = t,
                _to: dict[tuple[int, str], list[str]] = lines,
                **extra: str,
            ) -> None:
                key = (math.floor(_t / DAY), f"{name}{_s.labels(**extra)}")
                _to.setdefault(key, []).append(f"{value} {_t:.0f}")

            add("upwatch_probes_total", probes - failures, result="success")
            add("upwatch_probes_total", failures, result="failure")
            for reason, n in by_reason.items():
                add("upwatch_probe_failures_total", n, reason=reason)
            add("upwatch_endpoint_downtime_seconds_total", down)
            add("upwatch_endpoint_incidents_total", incidents)
            add("upwatch_endpoint_state_since_timestamp_seconds", since)
            add("upwatch_endpoint_state", 0 if outage else 1, state="up")
            add("upwatch_endpoint_state", 1 if outage else 0, state="down")
            if t >= bucket_from:
                for i in range(le, len(buckets)):
                    buckets[i] += PROBES_PER_SAMPLE
            if t >= bucket_from:
                for i, bound in enumerate((*DEFAULT_BUCKETS, math.inf)):
                    add(
                        "upwatch_probe_duration_seconds_bucket",
                        buckets[i],
                        le="+Inf" if bound == math.inf else f"{bound}",
                    )
                add("upwatch_probe_duration_seconds_count", buckets[-1])
            prev = t
        for (day, key), values in lines.items():
            families.setdefault((day, key.split("{", 1)[0]), []).extend(f"{key} {v}" for v in values)
    out: dict[int, list[str]] = {}
    for (day, name), lines_of in families.items():
        out.setdefault(day, []).append(f"# TYPE {name} gauge")  # the TSDB ignores types; gauge takes any name
        out[day].extend(lines_of)
    return {day: "\n".join(text) + "\n# EOF\n" for day, text in out.items()}


def _rules(interval: str, only: str) -> dict[str, Any]:
    """The committed downtime rules (those ending in `only`), as written, in one group evaluated every `interval`."""
    groups = yaml.safe_load((REPO / "rules" / "upwatch-recording.yml").read_text())["groups"]
    wanted = [
        rule
        for group in groups
        for rule in group["rules"]
        if rule.get("record", "").startswith("endpoint:upwatch_endpoint_downtime_seconds:increase")
        and not rule["record"].endswith("1h")
        and rule["record"].endswith(only)
    ]
    assert wanted
    return {"groups": [{"name": f"backfill-{interval}", "interval": interval, "rules": wanted}]}


def rule_expr(record: str) -> str:
    """The expression of a committed recording rule."""
    groups = yaml.safe_load((REPO / "rules" / "upwatch-recording.yml").read_text())["groups"]
    return next(r["expr"] for g in groups for r in g["rules"] if r.get("record") == record)


def _finish(proc: subprocess.Popen[bytes]) -> None:
    _, err = proc.communicate()
    assert proc.returncode == 0, err.decode()


@pytest.fixture(scope="module")
def planted(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Planted]:
    tmp = tmp_path_factory.mktemp("prometheus-history")
    # 13:20 UTC yesterday: on the grid, 20 minutes into a slot, the open outage inside its day, whatever the time now.
    now = float(math.floor(time.time() / DAY) * DAY - DAY + 13 * HOUR + 20 * 60)
    today = math.floor(now / DAY) * DAY
    first = float(today - 91 * DAY)
    series = (
        Series("alpha", None, (), 0.02),
        Series(
            "beta",
            None,
            (
                Outage(today - 40 * DAY + 10 * HOUR, today - 40 * DAY + 12 * HOUR, "timeout"),
                Outage(today - 3 * DAY + 23 * HOUR + 20 * 60, today - 2 * DAY + 40 * 60, "http_status"),
                Outage(now - 40 * 60, None, "connect"),
            ),
            0.3,
        ),
        Series("gamma", "eu", (Outage(today - 5 * DAY + 8 * HOUR, today - 5 * DAY + 9 * HOUR, "timeout"),), 0.1),
        Series("gamma", "us", (Outage(today - 5 * DAY + 8 * HOUR, today - 5 * DAY + 8 * HOUR + 1200, "dns"),), 0.1),
    )
    data = tmp / "data"
    imports = []
    for day, text in _openmetrics(series, first, now).items():
        (tmp / f"day-{day}.om").write_text(text)
        command = [program("promtool"), "tsdb", "create-blocks-from", "openmetrics", "-q", str(tmp / f"day-{day}.om")]
        imports.append(subprocess.Popen([*command, str(data)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE))
        if len(imports) >= 4:
            _finish(imports.pop(0))
    for proc in imports:
        _finish(proc)
    (tmp / "prometheus.yml").write_text("global: {scrape_interval: 15s}\n")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    args = [
        program("prometheus"),
        f"--config.file={tmp / 'prometheus.yml'}",
        f"--storage.tsdb.path={data}",
        "--storage.tsdb.retention.time=200d",
        f"--web.listen-address=127.0.0.1:{port}",
        "--log.level=warn",
    ]
    blocks = tmp / "rule-blocks"
    with running(args, f"{url}/-/ready"):
        # Rule samples where the queries read them (every 15 s in the 5 minutes before each UTC
        # midnight and before now): evaluating the 30-day rules every 15 s for 90 days would take minutes.
        backfills = [("1d", midnight) for midnight in range(int(first + DAY), int(today) + 1, DAY)] + [("", now)]
        running_now: list[subprocess.Popen[bytes]] = []
        for i, (only, end) in enumerate(backfills):
            rules = tmp / f"rules-{i}.yml"
            rules.write_text(yaml.safe_dump(_rules("15s", only)))
            command = [program("promtool"), "tsdb", "create-blocks-from", "rules", "-q", f"--url={url}"]
            command += [f"--start={end - 300:.0f}", f"--end={end:.0f}", f"--output-dir={blocks}", str(rules)]
            running_now.append(subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE))
            if len(running_now) >= 4:
                _finish(running_now.pop(0))
        for proc in running_now:
            _finish(proc)
    for block in blocks.iterdir():
        shutil.move(str(block), data / block.name)
    with running(args, f"{url}/-/ready"):
        yield Planted(now, first, series, url)


@pytest.fixture(scope="module")
def fetched(planted: Planted) -> dict[str, Any]:
    reader = PrometheusHistory(planted.url)
    try:
        return reader.fetch(["alpha", "beta", "gamma", "nowhere"], planted.now)
    finally:
        reader.close()


def instant(planted: Planted, expr: str, at: float) -> dict[tuple[str, str | None], float]:
    """(endpoint, vantage) -> value of an instant query."""
    body = httpx.post(f"{planted.url}/api/v1/query", data={"query": expr, "time": str(at)}, timeout=10).json()
    assert body["status"] == "success", body
    return {
        (r["metric"].get("endpoint"), r["metric"].get("vantage")): float(r["value"][1]) for r in body["data"]["result"]
    }


# What was planted


def test_day_bars_are_the_planted_days(planted: Planted, fetched: dict[str, Any]) -> None:
    """Each day's down seconds, probes, failures and uptime; the least down of the vantages for gamma."""
    for name in ("alpha", "beta", "gamma"):
        bars = fetched[name].days
        assert len(bars) == 90
        for bar in bars:
            end = min(bar.start + DAY, planted.now)
            views = planted.of(name)
            down = min(s.down_seconds(bar.start, end) for s in views)
            assert bar.down_seconds == pytest.approx(down, abs=SLACK), (name, bar.date)
            assert bar.probes == len(views) * planted.probes(bar.start, end), (name, bar.date)
            assert bar.failures == sum(planted.failures(s, bar.start, end) for s in views), (name, bar.date)
            assert bar.uptime == pytest.approx(1 - down / (end - bar.start), abs=SLACK / (end - bar.start))
    beta = fetched["beta"].days
    assert [b.down_seconds for b in beta[-4:-2]] == [pytest.approx(40 * 60, abs=SLACK)] * 2  # across a midnight
    assert fetched["gamma"].days[-6].down_seconds == pytest.approx(1200, abs=SLACK)  # us saw 20 min of eu's hour
    assert fetched["alpha"].days[-41].uptime == 1.0 and beta[-41].uptime < 1 - 1.5 / 24


def test_windows_are_the_planted_windows(planted: Planted, fetched: dict[str, Any]) -> None:
    """24 h, 7 d, 30 d: the rules' sliding windows; 90 d: the 90 days."""
    now = planted.now
    beta = fetched["beta"]
    for window, days in ((beta.last_24h, 1), (beta.last_7d, 7), (beta.last_30d, 30)):
        down = planted.of("beta")[0].down_seconds(now - days * DAY, now)
        assert window.down_seconds == pytest.approx(down, abs=SLACK)
        assert window.uptime == pytest.approx(1 - down / (days * DAY), abs=SLACK / (days * DAY))
        assert window.probes == planted.probes(now - days * DAY, now)
    assert beta.last_90d.down_seconds == pytest.approx(2 * HOUR + 80 * 60 + 40 * 60, abs=4 * SLACK)
    assert beta.last_90d.down_seconds == pytest.approx(sum(bar.down_seconds for bar in beta.days))
    assert fetched["alpha"].last_30d.uptime == 1.0
    assert fetched["gamma"].last_7d.down_seconds == pytest.approx(1200, abs=SLACK)


def test_response_times_are_the_planted_durations(planted: Planted, fetched: dict[str, Any]) -> None:
    """48 slots of 30 minutes; p50 and p95 as histogram_quantile gives them for the planted buckets."""
    for name, duration, vantages in (("alpha", 0.02, 1), ("beta", 0.3, 1), ("gamma", 0.1, 2)):
        slots = fetched[name].response_times
        assert len(slots) == 48
        assert slots[-1].start == math.floor(planted.now / SLOT) * SLOT
        le = next(i for i, b in enumerate(DEFAULT_BUCKETS) if duration <= b)
        for slot in slots:
            n = vantages * planted.probes(slot.start, min(slot.start + SLOT, planted.now))
            cumulative = [0] * le + [n] * (len(DEFAULT_BUCKETS) + 1 - le)
            assert slot.probes == n, (name, slot.start)
            assert slot.p50 == pytest.approx(histogram_quantile(0.5, cumulative, DEFAULT_BUCKETS)), (name, slot.start)
            assert slot.p95 == pytest.approx(histogram_quantile(0.95, cumulative, DEFAULT_BUCKETS)), (name, slot.start)


def test_incidents_are_the_planted_outages(planted: Planted, fetched: dict[str, Any]) -> None:
    """Start, end, reason and vantage of each; the open one up to now; the day bars hold those overlapping them."""
    beta = fetched["beta"].incidents
    planted_beta = planted.of("beta")[0].outages
    assert [(i.start, i.end, i.reason, i.vantage) for i in beta] == [
        (o.start, o.end, FailureReason(o.reason), None) for o in planted_beta
    ]
    assert beta[-1].duration == 40 * 60
    gamma = fetched["gamma"].incidents
    assert sorted((i.vantage, i.reason, i.end - i.start) for i in gamma if i.end) == [
        ("eu", FailureReason.TIMEOUT, 3600),
        ("us", FailureReason.DNS, 1200),
    ]
    assert fetched["alpha"].incidents == ()
    assert [len(b.incidents) for b in fetched["beta"].days[-4:]] == [1, 1, 0, 1]
    assert fetched["nowhere"].days[-1].uptime is None and fetched["nowhere"].incidents == ()


# Every figure equals the recording rule for the same window


@pytest.mark.parametrize("window", ["1d", "7d", "30d"])
def test_windows_equal_the_rules(planted: Planted, fetched: dict[str, Any], window: str) -> None:
    """Down seconds: the increase rule as recorded; uptime: the committed ratio rule's expression; incidents: theirs."""
    now = planted.now
    down = instant(planted, f"endpoint:upwatch_endpoint_downtime_seconds:increase{window}", now)
    ratio = instant(planted, rule_expr(f"endpoint:upwatch_endpoint_uptime:ratio{window}"), now)
    opened = instant(planted, rule_expr(f"endpoint:upwatch_endpoint_incidents:increase{window}"), now)
    attr = {"1d": "last_24h", "7d": "last_7d", "30d": "last_30d"}[window]
    for name in ("alpha", "beta", "gamma"):
        shown = getattr(fetched[name], attr)
        keys = [k for k in down if k[0] == name]
        least = min(keys, key=lambda k: down[k])  # the vantage that saw the least down
        assert shown.down_seconds == down[least]
        assert shown.uptime == pytest.approx(ratio[least], abs=1e-12)
        started = [i for i in fetched[name].incidents if i.start > now - shown.known_seconds]
        assert len(started) == sum(opened[k] for k in keys)


def test_day_bars_equal_the_rules(planted: Planted, fetched: dict[str, Any]) -> None:
    """Each whole day: the 1-day rules at its end; today: the downtime counters' growth since midnight."""
    for bar in fetched["beta"].days[:-1]:
        end = bar.start + DAY
        down = instant(planted, "endpoint:upwatch_endpoint_downtime_seconds:increase1d", end)
        ratio = instant(planted, rule_expr("endpoint:upwatch_endpoint_uptime:ratio1d"), end)
        assert bar.down_seconds == down[("beta", None)], bar.date
        assert bar.uptime == pytest.approx(ratio[("beta", None)], abs=1e-12), bar.date
    today = fetched["beta"].days[-1]
    at_midnight = instant(planted, "upwatch_endpoint_downtime_seconds_total", today.start)
    at_now = instant(planted, "upwatch_endpoint_downtime_seconds_total", planted.now)
    assert today.down_seconds == at_now[("beta", None)] - at_midnight[("beta", None)] == 40 * 60


# Prometheus down, slow or broken


class _Silent:
    """A TCP server on loopback that accepts connections and never answers; `accepted` is set at the first."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.accepted = threading.Event()
        self.conns: list[socket.socket] = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.conns.append(conn)
            self.accepted.set()

    def close(self) -> None:
        self.sock.close()
        for conn in self.conns:
            conn.close()


class _Log:
    def __init__(self) -> None:
        self.events: list[tuple[str, str, dict[str, Any]]] = []

    def _add(self, level: str, event: str, **kw: Any) -> None:
        self.events.append((level, event, kw))

    def warning(self, event: str, **kw: Any) -> None:
        self._add("warning", event, **kw)

    def info(self, event: str, **kw: Any) -> None:
        self._add("info", event, **kw)

    def exception(self, event: str, **kw: Any) -> None:
        self._add("exception", event, **kw)


def _own() -> dict[str, Any]:
    return {"own": "history"}


def test_a_silent_prometheus_never_delays_the_page() -> None:
    """While Prometheus accepts and never answers, `current` returns at once: the refresh is still waiting."""
    silent = _Silent()
    log = _Log()
    source = PrometheusHistorySource(
        PrometheusHistory(f"http://127.0.0.1:{silent.port}", timeout=30), log=log, url="silent"
    )
    try:
        histories, note = source.current(["alpha"], _own)  # starts the refresh
        assert silent.accepted.wait(10)
        histories, note = source.current(["alpha"], _own)
        assert source.refreshing  # the answer came while Prometheus was still being waited for
        assert histories == _own()
        assert note is not None and "being loaded" in note and "own history" in note
    finally:
        silent.close()
        source.close()


def test_connection_refused_keeps_the_last_good_answer(planted: Planted) -> None:
    """Prometheus answers, then is gone: its last answer stays, with a note saying since when and why; logged once."""
    log = _Log()
    port = free_port()
    clock = [planted.now]
    reader = PrometheusHistory(planted.url)
    source = PrometheusHistorySource(reader, log=log, url="test", refresh_seconds=0.0, clock=lambda: clock[0])
    try:
        source.current(["beta"], _own)
        assert source.refreshed.wait(30)
        good, note = source.current(["beta"], _own)
        assert note is None and good["beta"].incidents[-1].end is None
        reader._client.base_url = httpx.URL(f"http://127.0.0.1:{port}")  # where nobody listens now
        for _ in range(3):
            _wait_idle(source)
            source.refreshed.clear()
            clock[0] += 60
            source.current(["beta"], _own)
            assert source.refreshed.wait(30)
        shown, note = source.current(["beta"], _own)
        assert shown["beta"] == good["beta"]
        assert note is not None and note.startswith("History from Prometheus unavailable since ")
        assert "refused" in note.lower() and "showing its figures of" in note
        assert [e[1] for e in log.events] == ["history from Prometheus unavailable"]
    finally:
        source.close()


def _wait_idle(source: PrometheusHistorySource) -> None:
    deadline = time.monotonic() + 30
    while source.refreshing and time.monotonic() < deadline:
        time.sleep(0.01)


@pytest.mark.parametrize(
    ("status", "body", "reason"),
    [
        (500, b"<html>oops</html>", "HTTP 500, not a Prometheus answer"),
        (
            200,
            b'{"status": "success", "data": {"result": [{"metric": 3}]}}',
            "not a Prometheus answer: unexpected JSON",
        ),
        (
            200,
            b'{"status": "success", "data": {"result": [{"metric": {}, "value": [1, "many"]}]}}',
            "not a Prometheus answer: the value 'many'",
        ),
        (
            422,
            b'{"status": "error", "errorType": "execution", "error": "query timed out"}',
            "HTTP 422: query timed out",
        ),
    ],
)
def test_a_broken_answer_is_the_reason_in_the_note(status: int, body: bytes, reason: str) -> None:
    """Garbage or an error from Prometheus: no crash, the own history, and the reason on the page."""
    server = HTTPServer(host="127.0.0.1", port=free_port())
    server.expect_request(re.compile("^/api/v1/")).respond_with_data(body, status=status)
    server.start()
    log = _Log()
    source = PrometheusHistorySource(PrometheusHistory(server.url_for("/")), log=log, url="x")
    try:
        source.current(["alpha"], _own)
        assert source.refreshed.wait(10)
        shown, note = source.current(["alpha"], _own)
        assert shown == _own()
        assert note is not None and f": {reason}; showing this agent's own history" in note
    finally:
        source.close()
        server.stop()


class _Counting(httpx.HTTPTransport):
    """A real transport that notes the PromQL of every query it sends."""

    def __init__(self) -> None:
        super().__init__()
        self.queries: list[str] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.queries.append(httpx.QueryParams(request.content.decode()).get("query", ""))
        return super().handle_request(request)


def test_whole_days_and_closed_slots_are_read_once(planted: Planted, fetched: dict[str, Any]) -> None:
    """A reader keeps what can no longer change: its refreshes ask only for the current figures."""
    transport = _Counting()
    reader = PrometheusHistory(planted.url, transport=transport)
    names = ["alpha", "beta", "gamma", "nowhere"]
    try:
        first = reader.fetch(names, planted.now)
        assert len(transport.queries) >= 89 + 47  # every whole day and closed slot
        assert first == fetched
        transport.queries.clear()
        again = reader.fetch(names, planted.now + 60)
        # The buckets now; the probes, downtime, window rules and states now; the probes 1, 7 and 30 days
        # ago; today's state changes since those kept (beta was down today). Nothing of the days and slots kept.
        assert len(transport.queries) == 6, transport.queries
        fresh = PrometheusHistory(planted.url)
        try:
            assert again == fresh.fetch(names, planted.now + 60)  # what was kept and read since adds up
        finally:
            fresh.close()
        for name in names:
            assert again[name].days[:-1] == first[name].days[:-1]
            assert all(a is b for a, b in zip(again[name].days[:-1], first[name].days[:-1], strict=True))  # reused
            assert again[name].response_times[:-1] == first[name].response_times[:-1]
        transport.queries.clear()
        reader.fetch(["alpha"], planted.now)  # other endpoints: nothing kept is theirs
        assert len(transport.queries) >= 89 + 47
    finally:
        reader.close()


# The page itself, in a real browser, from this Prometheus's history

_READ_BARS = """() => {
  const out = {};
  for (const li of document.querySelectorAll("li.ep")) {
    const days = new Array(90).fill(null);
    const svg = li.querySelector("svg");
    for (const rect of svg.querySelectorAll("rect"))
      days[Number(rect.getAttribute("x")) / 5] = rect.getAttribute("class");
    for (const path of svg.querySelectorAll("path"))
      for (const m of path.getAttribute("d").matchAll(/M(\\d+) 0/g))
        days[Number(m[1]) / 5] = path.getAttribute("class");
    const uptimes = {};
    for (const div of li.querySelectorAll("dl.up > div"))
      uptimes[div.querySelector("dt").textContent.trim()] = div.querySelector("dd").textContent.trim();
    out[li.querySelector("h3").textContent.trim()] = { days, uptimes };
  }
  return {
    banner: document.querySelector("section[role=status]").textContent.trim(),
    endpoints: out,
    scrollWidth: document.documentElement.scrollWidth,
  };
}"""


def _classes(down: float, known: float) -> set[str]:
    """The bar classes a day down `down` of `known` seconds may have: the planted figure give or take SLACK."""
    out = set()
    for d in (max(down - SLACK, 0.0), down, down + SLACK):
        uptime = 1 - d / known
        out.add("d-ok" if d == 0 else "d-minor" if uptime >= 0.99 else "d-partial" if uptime >= 0.95 else "d-major")
    return out if down > 0 else {"d-ok"}


def test_the_page_from_prometheus_in_chromium(planted: Planted, fetched: dict[str, Any]) -> None:
    """Chromium shows the planted history: the banner, every uptime and the colour of every day's bar."""
    from browsing import ARTIFACTS, chromium

    from exporter.config import parse_config
    from exporter.results import ProbeResult
    from exporter.status.build import build_page
    from exporter.status.page import render_page
    from exporter.store import ResultStore

    names = ["alpha", "beta", "gamma"]
    config = parse_config(
        "status_page: {title: Known history}\nendpoints:\n"
        + "".join(f"  - {{name: {n}, url: 'http://127.0.0.1:9/{n}', failure_threshold: 1}}\n" for n in names)
    )
    store = ResultStore(clock=lambda: planted.now)
    store.sync(config.probed)
    for name in names:  # the agent's own states: beta down (its open outage), the others up
        down = name == "beta"
        reason = FailureReason.CONNECT if down else None
        store.record(ProbeResult(name, not down, planted.now - 1, 0.01, reason, "refused" if down else ""))
    view = build_page(config, store.snapshot(), fetched, planted.now, history_limit=10)
    with chromium() as browser:
        context = browser.new_context(viewport={"width": 375, "height": 800}, java_script_enabled=False)
        try:
            page = context.new_page()
            page.set_content(render_page(view))
            ARTIFACTS.mkdir(exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / "status-prometheus-known.png"), full_page=True)
            shown = page.evaluate(_READ_BARS)
        finally:
            context.close()

    assert shown["banner"] == "Partial outage" and shown["scrollWidth"] <= 375
    today = math.floor(planted.now / DAY) * DAY
    for name in names:
        views = planted.of(name)
        days = shown["endpoints"][name]["days"]
        for i, cls in enumerate(days):
            start = today - (89 - i) * DAY
            end = min(start + DAY, planted.now)
            if end <= planted.first:
                assert cls == "d-none", (name, i)
                continue
            down = min(s.down_seconds(start, end) for s in views)  # the vantage that saw the least
            assert cls in _classes(down, end - max(start, planted.first)), (name, i, cls, down)
        for label, seconds in (("24 h", DAY), ("7 days", 7 * DAY), ("30 days", 30 * DAY)):
            down = min(s.down_seconds(planted.now - seconds, planted.now) for s in views)
            text = shown["endpoints"][name]["uptimes"][label]
            assert text.endswith("%"), (name, label, text)
            assert float(text[:-1]) == pytest.approx(100 * (1 - down / seconds), abs=100 * SLACK / seconds + 0.01)
    assert sum(cls != "d-ok" for cls in shown["endpoints"]["alpha"]["days"] if cls != "d-none") == 0
    assert shown["endpoints"]["beta"]["days"][-41] == "d-major"  # 2 hours down: 91.7 %


def test_the_endpoint_matcher_is_a_set_of_literals() -> None:
    """Only RE2's meta characters are escaped (Prometheus then looks names up in a set); each matches itself alone."""
    from exporter.status.prometheus import endpoint_matcher

    names = ["service-0001", "a.b", "x|y", "q\\z", "m(n)", 'é ok/"quote"', "[x]", "^a$", "a+b*c?", "{1}"]
    promql = endpoint_matcher(names)
    assert promql.startswith('endpoint=~"') and "\\-" not in promql
    pattern = promql[len('endpoint=~"') : -1].replace('\\"', '"').replace("\\\\", "\\")  # the PromQL string's value
    for name in names:
        assert re.fullmatch(pattern, name), name
    for other in ["service-0002", "axb", "x", "qz", "mn", "x]", "a", "ab", "1"]:
        assert not re.fullmatch(pattern, other), other
