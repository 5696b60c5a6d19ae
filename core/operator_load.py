"""Operator load in ISA-18.2 terms, for alerts and for incidents, from the committed event log.

Shared by ``ioc eval scenario`` (event times: the readings') and the API's report
(event times: the commits').

* rate: new ones (opened or reopened) per hour on average, and the busiest hour;
* peak: the most new ones in any 10-minute period (fixed periods from the start);
* flood: the share of 10-minute periods with more than 10 new ones;
* chattering: the same alert opened or reopened 3 or more times within a minute;
* standing: open for more than 24 hours.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import psycopg

PERIOD_S = 600.0
FLOOD_ABOVE = 10
CHATTER_N = 3
CHATTER_S = 60.0
STANDING_S = 86_400.0


@dataclass(frozen=True, slots=True)
class Load:
    """The load of one kind of thing (alerts or incidents) over a time span."""

    what: str
    new: int
    hours: float
    per_hour: float
    busiest_hour: int
    peak_10min: int
    flood_share: float
    chattering: int
    standing: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "new": self.new,
            "per_hour": self.per_hour,
            "busiest_hour": self.busiest_hour,
            "peak_10min": self.peak_10min,
            "flood_share": self.flood_share,
            "chattering": self.chattering,
            "standing": self.standing,
        }


def measure(
    what: str,
    news: list[tuple[int, float]],
    spans: list[tuple[float, float]],
    start: float,
    end: float,
) -> Load:
    """``news``: (id, time) of every opening; ``spans``: (opened, resolved or inf)."""
    times = [t for _, t in news if start <= t < end]
    hours = max((end - start) / 3600.0, 1e-9)
    periods = max(1, math.ceil((end - start) / PERIOD_S))
    per_period = Counter(int((t - start) // PERIOD_S) for t in times)
    per_hour = Counter(int((t - start) // 3600.0) for t in times)
    by_id: dict[int, list[float]] = defaultdict(list)
    for i, t in news:
        if start <= t < end:
            by_id[i].append(t)
    chattering = 0
    for ts in by_id.values():
        ts.sort()
        if any(ts[k + CHATTER_N - 1] - ts[k] <= CHATTER_S for k in range(len(ts) - CHATTER_N + 1)):
            chattering += 1
    standing = sum(1 for a, b in spans if a < end and min(b, end) - max(a, start) > STANDING_S)
    return Load(
        what=what,
        new=len(times),
        hours=hours,
        per_hour=len(times) / hours,
        busiest_hour=max(per_hour.values(), default=0),
        peak_10min=max(per_period.values(), default=0),
        flood_share=sum(1 for n in per_period.values() if n > FLOOD_ABOVE) / periods,
        chattering=chattering,
        standing=standing,
    )


# (id, time) of every opening; the eval reads the readings' time from the snapshot
ALERT_NEWS = (
    "SELECT alert_id, extract(epoch FROM (snapshot->>'updated_at')::timestamptz)::float8"
    " FROM alert_events WHERE alert_id IS NOT NULL AND action IN ('opened', 'reopened')"
    " AND snapshot->>'suppressed_by' IS NULL ORDER BY seq"
)
INCIDENT_NEWS = (
    "SELECT incident_id, extract(epoch FROM (snapshot->>(CASE action WHEN 'opened'"
    " THEN 'opened_at' ELSE 'updated_at' END))::timestamptz)::float8"
    " FROM alert_events WHERE incident_id IS NOT NULL AND action IN ('opened', 'reopened')"
    " ORDER BY seq"
)
# live: commit times since a moment (alert_events_time_idx)
LIVE_NEWS = (
    "SELECT coalesce(alert_id, incident_id), alert_id IS NOT NULL,"
    " extract(epoch FROM time)::float8, snapshot->>'sensor', snapshot->>'rule',"
    " snapshot->>'severity' FROM alert_events WHERE time >= %s"
    " AND action IN ('opened', 'reopened') AND snapshot->>'suppressed_by' IS NULL ORDER BY seq"
)
ALERT_SPANS = (
    "SELECT extract(epoch FROM opened_at)::float8,"
    " coalesce(extract(epoch FROM resolved_at)::float8, 'infinity') FROM alerts"
    " WHERE suppressed_by IS NULL AND (resolved_at IS NULL OR resolved_at >= %s)"
)
INCIDENT_SPANS = (
    "SELECT extract(epoch FROM opened_at)::float8,"
    " coalesce(extract(epoch FROM resolved_at)::float8, 'infinity') FROM incidents"
    " WHERE resolved_at IS NULL OR resolved_at >= %s"
)


def operator_load(conn: psycopg.Connection[Any], start: float, end: float) -> list[Load]:
    """The load of alerts and of incidents between ``start`` and ``end`` (epoch seconds)."""
    since = datetime.fromtimestamp(start, UTC)
    alert_spans = conn.execute(ALERT_SPANS, (since,)).fetchall()
    incident_spans = conn.execute(INCIDENT_SPANS, (since,)).fetchall()
    return [
        measure("alerts", conn.execute(ALERT_NEWS).fetchall(), alert_spans, start, end),
        measure("incidents", conn.execute(INCIDENT_NEWS).fetchall(), incident_spans, start, end),
    ]


def format_load(loads: list[Load]) -> str:
    lines = [
        f"{'operator load':<14} {'new':>6} {'per hour':>9} {'busiest h':>10} {'peak/10 min':>12}"
        f" {'flood':>7} {'chattering':>11} {'standing':>9}"
    ]
    for x in loads:
        lines.append(
            f"{x.what:<14} {x.new:>6} {x.per_hour:>9.1f} {x.busiest_hour:>10} {x.peak_10min:>12}"
            f" {100 * x.flood_share:>6.1f}% {x.chattering:>11} {x.standing:>9}"
        )
    lines.append("(ISA-18.2: about 6 per hour, at most 10 in 10 minutes; flood = more than 10)")
    return "\n".join(lines)
