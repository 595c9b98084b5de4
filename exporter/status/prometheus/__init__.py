"""The status page's history read from Prometheus: the same records as the agent's own history, from the bundle's rules.

`PrometheusHistory.fetch` asks Prometheus's HTTP API for all the endpoints on the page at once (each
selector filtered by one `endpoint=~"a|b|..."` matcher, a set of literals to Prometheus) and builds an
`EndpointHistory` for each. What can no longer change is read once and kept by the reader: each whole
UTC day (one query of its downtime rule and probes at the next midnight, and one of the state changes
of the endpoints down that day) and each closed 30-minute slot (one query), once it ended SETTLE ago.
A first read therefore asks some 230 queries, PARALLEL_QUERIES at a time. A refresh asks 5, each of
plain selectors or recorded series: the duration buckets now; the probes and downtime counters,
the window rules and the state gauges now, in one; the probes 1, 7 and 30 days ago; and, while an
endpoint has been down today, today's state changes since those that have settled (kept). Counters
are read as they stand at the moments needed (the buckets now and at the current slot's start, the
counters at midnight, kept) and subtracted here, since PromQL's arithmetic on thousands of series
costs Prometheus far more than handing them over. bench/status_prometheus.py measures it all.
`api.py` is the client, `figures.py` turns answers into records, `reader.py` decides what to read.

Figures (`exporter.history` defines the in-memory ones these stand for):

- Windows 24 h, 7 d, 30 d: the recording rules at `now`. Down seconds are
  `endpoint:upwatch_endpoint_downtime_seconds:increase1d`, `increase7d`, `increase30d`; the uptime
  is `clamp(1 - down / w, 0, 1)`, the expression of `endpoint:upwatch_endpoint_uptime:ratio1d` ...;
  the window is the rules' sliding one, `[now - w, now]`, and its known seconds all of `w`.
  Probes and failures are differences of `upwatch_probes_total` between `now - w` and `now`.
- Day bars: whole days from `endpoint:upwatch_endpoint_downtime_seconds:increase1d` at each UTC
  midnight (the sample the rule recorded last before it, up to its 2-minute interval early);
  today from the growth of `upwatch_endpoint_downtime_seconds_total` from midnight to now (each
  read as of its last scrape). Probes and failures are differences of `upwatch_probes_total` at
  the midnights. A day without probes has no uptime.
- 90 d: the 90 bars taken together, down over known (there is no 90-day rule).
- Response times: p50 and p95 per 30-minute slot, `histogram_quantile` of the differences of
  `upwatch_probe_duration_seconds_bucket` between the slot's ends (every probe whose result was
  scraped in the slot, from every vantage); the p50/p95 rules are 5-minute figures and their
  quantiles do not add up to a slot's.
- Incidents: from the state gauges. A day whose downtime rule is above 0 is read at
  `INCIDENT_STEP` for the endpoints down that day: the values of
  `upwatch_endpoint_state_since_timestamp_seconds` where they change, with the state they began,
  are the incidents' starts (into `down`) and ends (out of it); the reason is that of the
  `upwatch_probe_failures_total` counter that grew at the step the state turned `down`. An incident
  that opened and closed between two scrapes is counted by the rules but not listed. Messages are
  not in Prometheus: they are empty.

Vantages: series are summed per `vantage` (the agents and shards of a vantage together), and the
down seconds of an endpoint are those of the vantage that saw the least of them: one vantage
that reached it while another did not shows it up, as `endpoint_vantages:upwatch_endpoint_uptime`
does. Probes, failures and response times are those of all vantages; incidents are listed per
vantage and say which. Without a `vantage` label all agents are one vantage.
"""

from .api import DEFAULT_TIMEOUT, PrometheusAPI, PrometheusError, endpoint_matcher
from .reader import INCIDENT_STEP, PARALLEL_QUERIES, SETTLE, PrometheusHistory

__all__ = [
    "DEFAULT_TIMEOUT",
    "INCIDENT_STEP",
    "PARALLEL_QUERIES",
    "SETTLE",
    "PrometheusAPI",
    "PrometheusError",
    "PrometheusHistory",
    "endpoint_matcher",
]
