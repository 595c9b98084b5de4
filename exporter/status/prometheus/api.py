"""Prometheus's HTTP query API as the status page uses it: a small client, the answers' records, PromQL pieces."""

from __future__ import annotations

import re
import time
from collections.abc import Iterable
from dataclasses import dataclass

import httpx
import msgspec

DEFAULT_TIMEOUT = 2.0  # seconds, per query


class PrometheusError(Exception):
    """Prometheus did not give a usable answer; the message is short and safe to show on the page."""


# Not tracked by the garbage collector (gc=False: they hold no cycles): the 9,500 series of one answer
# would otherwise set off collections that scan the agent's whole heap, which cost more than decoding.
class _Item(msgspec.Struct, gc=False):
    """One series of an answer: its labels, and its value (an instant query's) or values (a range query's)."""

    metric: dict[str, str]
    value: tuple[float, str] | None = None
    values: list[tuple[float, str]] | None = None


class _Data(msgspec.Struct, gc=False):
    result: list[_Item]


class _Answer(msgspec.Struct, gc=False):
    status: str
    data: _Data | None = None
    error: str | None = None


_decode = msgspec.json.Decoder(_Answer).decode


def point(value: tuple[float, str] | None) -> tuple[float, float]:
    """A sample of an answer: its time, and its value as a number (Prometheus writes values as strings)."""
    if value is None:
        raise PrometheusError("not a Prometheus answer: a series without its value")
    try:
        return value[0], float(value[1])
    except ValueError:
        raise PrometheusError(f"not a Prometheus answer: the value {short(value[1], 40)!r}") from None


@dataclass(frozen=True, slots=True)
class Series:
    labels: dict[str, str]
    points: list[tuple[float, float]]


class PrometheusAPI:
    """A client of Prometheus's HTTP query API: instant and range queries, their answers checked."""

    def __init__(
        self,
        url: str,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        transport: httpx.BaseTransport | None = None,
        connections: int = 1,
    ):
        parsed = httpx.URL(url)
        auth = None
        if parsed.username or parsed.password:
            auth = httpx.BasicAuth(parsed.username, parsed.password)
            parsed = parsed.copy_with(username=None, password=None)
        self._client = httpx.Client(
            base_url=str(parsed).rstrip("/"),
            auth=auth,
            timeout=timeout,
            transport=transport,
            limits=httpx.Limits(max_connections=connections),
        )
        # Seconds each query took (its expression, cut), for bench/status_prometheus.py; kept while `timings` is set.
        self.timings: list[tuple[float, str]] | None = None

    def close(self) -> None:
        """Close the connections."""
        self._client.close()

    def _query(self, path: str, params: dict[str, str]) -> list[_Item]:
        began = time.perf_counter()
        try:
            response = self._client.post(f"/api/v1/{path}", data=params)
            if self.timings is not None:
                self.timings.append((time.perf_counter() - began, f"{path} {params['query'][:160]}"))
        except httpx.TimeoutException:
            raise PrometheusError(f"no answer within {self._client.timeout.read:g} s") from None
        except httpx.HTTPError as exc:
            raise PrometheusError(short(str(exc) or type(exc).__name__)) from None
        try:
            body = _decode(response.content)
        except msgspec.ValidationError:  # JSON, but not of an answer's shape
            raise PrometheusError("not a Prometheus answer: unexpected JSON") from None
        except msgspec.DecodeError:
            raise PrometheusError(f"HTTP {response.status_code}, not a Prometheus answer") from None
        if body.status != "success" or body.data is None:
            raise PrometheusError(f"HTTP {response.status_code}: {short(body.error or 'not a Prometheus answer')}")
        return body.data.result

    def instant(self, expr: str, at: float) -> list[Series]:
        """`/api/v1/query` at `at`."""
        return [Series(item.metric, [point(item.value)]) for item in self._instant(expr, at)]

    def _instant(self, expr: str, at: float) -> list[_Item]:
        items = self._query("query", {"query": expr, "time": f"{at:.3f}"})
        if any(item.value is None for item in items):
            raise PrometheusError("not a Prometheus answer: a series without its value")
        return items

    def range(self, expr: str, start: float, end: float, step: float) -> list[Series]:
        """`/api/v1/query_range` from `start` to `end` every `step` seconds."""
        items = self._query(
            "query_range", {"query": expr, "start": f"{start:.3f}", "end": f"{end:.3f}", "step": f"{step:g}"}
        )
        if any(item.values is None for item in items):
            raise PrometheusError("not a Prometheus answer: a series without its values")
        return [Series(item.metric, [point(value) for value in item.values or ()]) for item in items]


def _promql_string(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


# The characters RE2 gives a meaning to outside a class: escaped, and nothing else. Prometheus matches a
# regex that is an alternation of literals with only these escaped through a set of strings (a lookup
# per label value); any other escape, such as Python's re.escape gives '-', makes it run the regex
# itself on every value: with 500 names, some 100 ms per selector and block (bench/status_prometheus.py).
_RE2_META = re.compile(r"([\\.+*?()|\[\]{}^$])")


def endpoint_matcher(names: Iterable[str]) -> str:
    """The label matcher of these endpoints, for a PromQL selector's braces."""
    return "endpoint=~" + _promql_string("|".join(_RE2_META.sub(r"\\\1", name) for name in sorted(names)))


def duration(seconds: float) -> str:
    """A PromQL duration of whole milliseconds (at least 1 ms)."""
    return f"{max(1, round(seconds * 1000))}ms"


def difference(metric: str, sel: str, seconds: float) -> str:
    """The growth of a counter over the last `seconds`, from two samples: a reset counts from 0."""
    d = duration(seconds)
    return f"(({metric}{{{sel}}} - {metric}{{{sel}}} offset {d}) >= 0 or {metric}{{{sel}}})"


def tagged(expr: str, label: str, value: str) -> str:
    """The expression's series with one more label, to tell the parts of one query apart."""
    return f'label_replace({expr}, "{label}", "{value}", "", "")'


def state_expr(sel: str, state: str | None) -> str:
    """When the current state began, labelled with that state (`state` alone, when given)."""
    only = f', state="{state}"' if state else ""
    return (
        f"upwatch_endpoint_state_since_timestamp_seconds{{{sel}}}"
        f" * ignoring (state) group_left (state) (upwatch_endpoint_state{{{sel}{only}}} == 1)"
    )


def short(text: str, limit: int = 120) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"
