"""The agent's own bounded probe history of every endpoint, for the public status page.

Kept in memory per endpoint, in rings indexed by period number (``floor(t / period)``), the
oldest row reused for the newest, and moved on by the latest probe start recorded:

  - per UTC day, the last 90 (today included): probes and failed probes;
  - per 30-minute slot, the last 48 (24 h): probes, failed probes, and the p50 and p95 of their
    durations, fixed when the slot closes (when a probe of a later slot is recorded); until then
    the latest slot's durations are counted in the store's buckets (``DEFAULT_BUCKETS`` and +Inf),
    failed probes included, as in ``upwatch_probe_duration_seconds``;
  - the incidents: start and end in whole milliseconds, reason and message; at most
    ``MAX_INCIDENTS``, none that ended before the oldest of those 90 days. The down milliseconds of
    an incident dropped beyond the bound are added, per day and per slot, to counts kept from then on.

A probe counts in the slot and day in which it started (``ProbeResult.started_at``), the time
``EndpointState`` uses for everything.

Down
  An endpoint is down from ``Transition.at`` of its transition into ``down`` (the first failed
  probe of the streak that opened the incident) to ``Transition.at`` of its transition out of
  ``down`` (the first good probe of the streak that closed it): the interval whose length
  ``upwatch_endpoint_downtime_seconds_total`` counts. Its ends are kept rounded to the millisecond
  (and an incident never starts before the previous one ended, even if a clock stepped back). The
  down seconds of a day or window are the milliseconds of these intervals inside it, computed at
  summary time from the intervals themselves: day, window and incident figures agree to the
  millisecond. An interval still open counts up to ``now``, the clock at summary time.

Known
  An endpoint is known from the start of its first recorded probe (``known_since``). The known
  seconds of a window are ``now - max(window start, known_since)``; of a day,
  ``min(day end, now) - max(day start, known_since)``; never below 0.

Uptime of a window or a day
  ``1 - down seconds / known seconds``, clamped to [0, 1]; None when none of it is known, and, for
  a day, when it had no probes.

Windows (``EndpointHistory.last_24h`` ... ``last_90d``)
  Every window ends at ``now`` and starts on a period boundary; its probes, failures and down
  seconds are those from its start to ``now``:
  - 24 h: the current 30-minute slot, partial up to ``now``, and the 47 slots before it: between
    23 h 30 min and 24 h long.
  - 7 d, 30 d, 90 d: the current UTC day, partial up to ``now``, and the 6, 29 or 89 whole UTC days
    before it: between N - 1 and N days long. The N-day window is exactly the last N day bars, and
    its uptime is theirs taken together (down over known, not a mean of ratios). Its probes and
    failures are those started in it (``increase(upwatch_probes_total)`` by ``result``).

Day bars (``EndpointHistory.days``)
  90, oldest first, today (partial up to ``now``) last: probes, failed probes, down seconds and
  uptime of the day, and the incidents of the history that overlap it (``[start, end)``, or
  ``[start, now)`` while open). An incident dropped by the bound is missing from its days' bars,
  though its seconds still count in them.

Response times (``EndpointHistory.response_times``)
  48 slots of 30 minutes, oldest first, the current (partial) slot last: p50 and p95 of the
  durations of the probes started in the slot, interpolated inside a bucket exactly as
  Prometheus's ``histogram_quantile`` does for a classic histogram (the first bucket starts at 0;
  a quantile that falls in the +Inf bucket is the highest finite bound), rounded to the
  microsecond; None without probes. A slot's quantiles are fixed when it closes: a result of an
  earlier slot recorded after that counts in the slot's probes but not in its quantiles. (One probe
  of an endpoint runs at a time, so its results come in the order they started, unless the wall
  clock steps back.)

Incidents (``EndpointHistory.incidents``)
  Oldest first: start, end (None while open) and duration (up to ``now`` while open), in seconds to
  the millisecond, and the ``reason`` and ``message`` of the failed probe whose result caused the
  transition into ``down``, a message longer than ``MAX_MESSAGE`` characters cut to its first
  ``MAX_MESSAGE - 1`` and "…". The oldest are dropped first beyond ``MAX_INCIDENTS``.

Compared with the recording rules ``endpoint:upwatch_endpoint_uptime:ratio1h/1d/7d/30d``
(``clamp(1 - increase(upwatch_endpoint_downtime_seconds_total[w]) / w, 0, 1)``), which these
figures should match:
  1. Prometheus's windows slide (``[now - w, now)``); these start on a 30-minute slot or a UTC
     midnight, so they are shorter by up to 30 minutes (24 h) or a day (7 d, 30 d, 90 d). Down
     seconds agree when the endpoint was not down in that difference.
  2. The rules divide by the whole window; these divide by the known seconds. They agree once the
     endpoint has been probed for the whole window; before that the rules count the time before
     its first probe as up. On a whole window the ratios differ by the lengths in 1 even at equal
     down seconds: compare down seconds, or uptime over the same known seconds.
  3. The agent's counter grows when results arrive: confirming an incident adds the failures
     before it at once, and between two results of an open incident it stands still;
     ``increase()`` places the seconds where the counter grew and extrapolates to the window's
     edges. Here each down second is placed where it was, and an open incident counts up to
     ``now``. Near a window's edges the two differ by up to ``failure_threshold`` probe intervals
     plus a scrape interval.
  4. While a recovery is being confirmed (``success_threshold`` > 1) the counter stops at its first
     good probe; here the endpoint is still down until the transition. Once it comes, both end the
     incident at that first good probe; if the recovery fails, both count it as down.
  5. Seconds are whole milliseconds here, floats there.
  6. There is no 90-day rule. This history lives in memory: it starts empty when the agent starts.

Costs (bench/history_memory.py measures them)
  ``record`` is O(1): a lock, a row of each ring, a few increments (2 to 6 us); a ring moving to a
  later period clears the rows it skips (at most its length), and closing a slot computes its two
  quantiles. ``summary`` copies one endpoint's arrays under the lock (some 2 KB) and computes
  outside it: the down milliseconds of any interval come from the incidents' ends by bisection and
  running sums. It builds a record per incident, per day bar an incident overlaps (those of plain
  days are shared by the endpoints alike in one ``summaries``), per response slot and per window:
  most of its time goes there and to the bars of days with incidents. ``summaries`` of 500
  endpoints with 90 days of probes took 118 to 129 ms with some 43 incidents each, 55 to 62 ms
  with some 4.
  Memory per endpoint: 1,568 B of counts (one array of uint32: 720 for the days, 768 for the
  slots, 80 for the latest slot and its histogram) and 18 B per incident (two int64, two bytes),
  each distinct message once, plus headers: tracemalloc counts 1,736 B for an endpoint without
  incidents, 3,972 B with the full 100 sharing one message. With some 43 incidents each, RSS grew
  by 1.15 MiB for 500 endpoints (tracemalloc: 3,185 B each, the benchmark's names of endpoints
  included) and by 14.98 MiB for 5,000 (3,142 B each).
"""

from exporter.history.records import (
    DAY,
    DAYS_KEPT,
    MAX_INCIDENTS,
    MAX_MESSAGE,
    SLOT,
    SLOTS_KEPT,
    DayBar,
    EndpointHistory,
    Incident,
    ResponseSlot,
    Window,
    histogram_quantile,
)
from exporter.history.store import History

__all__ = [
    "DAY",
    "DAYS_KEPT",
    "MAX_INCIDENTS",
    "MAX_MESSAGE",
    "SLOT",
    "SLOTS_KEPT",
    "DayBar",
    "EndpointHistory",
    "History",
    "Incident",
    "ResponseSlot",
    "Window",
    "histogram_quantile",
]
