"""Scoring of predictive warnings in a scenario run: lead time before the crossing, and precision.

``CrossingRecorder`` is a stage the evaluation adds at the end of the pipeline: it
keeps every reading of the forecast metrics (water level, PM2.5), so the crossings
are read from the data, not from the forecast stage or the threshold alerts (whose
minimum duration would delay them).

* **Lead time**, per injected flash flood and pollution episode (scored ones): the
  first crossing of the lowest forecast stage (the warning level, 20 cm on a street,
  PM2.5 150 µg/m³) on any of its sensors that was below it at the incident's start,
  minus the first predictive warning on any of its sensors between ``start - pre``
  and that crossing and no longer before it than its horizon (0 when none came). The median over the incidents
  whose sensors crossed.
* **Precision**: the share of predictive warnings (opened or reopened) after which the
  value reached the warned level within the warning's horizon.
"""

from __future__ import annotations

import math
import statistics
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import psycopg

from analytics.engine.base import Batch, Context, FloatArray, Stage, StageOutput
from analytics.eval.scoring import Truth

LEAD_KINDS = ("flash_flood", "pollution_episode")
_METRIC_OF = {"flash_flood": "water_level", "pollution_episode": "pm25"}


class CrossingRecorder(Stage):
    """Keeps the readings of some metrics, per series (evaluation only)."""

    name: ClassVar[str] = "crossing_recorder"

    def __init__(self, metrics: frozenset[str] = frozenset(_METRIC_OF.values())) -> None:
        self.metrics = metrics
        self._parts: dict[tuple[str, str], list[tuple[FloatArray, FloatArray]]] = defaultdict(list)

    def process(self, batch: Batch, ctx: Context) -> StageOutput:
        keep = [i for i, m in enumerate(batch.metric) if m in self.metrics]
        by_key: dict[tuple[str, str], list[int]] = defaultdict(list)
        for i in keep:
            by_key[(batch.sensor[i], batch.metric[i])].append(i)
        for key, idx in by_key.items():
            self._parts[key].append((batch.time[idx], batch.value[idx]))
        return StageOutput()

    def series(self, sensor: str, metric: str) -> tuple[FloatArray, FloatArray]:
        parts = self._parts.get((sensor, metric))
        if not parts:
            return np.empty(0), np.empty(0)
        t = np.concatenate([p[0] for p in parts])
        x = np.concatenate([p[1] for p in parts])
        order = np.argsort(t, kind="stable")
        return t[order], x[order]


@dataclass(slots=True)
class WarningEvent:
    time: float
    sensor: str
    metric: str
    level: float
    horizon_s: float


@dataclass(slots=True)
class ForecastScore:
    warnings: int = 0
    fulfilled: int = 0
    leads: dict[str, list[float]] = field(default_factory=lambda: {k: [] for k in LEAD_KINDS})
    warned: dict[str, int] = field(default_factory=lambda: dict.fromkeys(LEAD_KINDS, 0))
    false_warnings: int = 0  # warnings the general scoring counts as false (no incident)
    sensor_days: float = 0.0

    @property
    def precision(self) -> float:
        return self.fulfilled / self.warnings if self.warnings else math.nan

    def median_lead_s(self, kind: str) -> float:
        xs = self.leads[kind]
        return statistics.median(xs) if xs else math.nan

    def to_dict(self) -> dict[str, Any]:
        return {
            "warnings": self.warnings,
            "fulfilled": self.fulfilled,
            "precision": self.precision,
            "false_warnings": self.false_warnings,
            "false_per_100_sensor_days": self.false_per_100,
            "lead": {
                k: {
                    "crossed": len(self.leads[k]),
                    "warned_before": self.warned[k],
                    "median_lead_s": self.median_lead_s(k),
                }
                for k in LEAD_KINDS
            },
        }

    @property
    def false_per_100(self) -> float:
        return 100.0 * self.false_warnings / self.sensor_days if self.sensor_days else math.nan


def read_warnings(conn: psycopg.Connection[Any], since: float, until: float) -> list[WarningEvent]:
    rows = conn.execute(
        "SELECT extract(epoch FROM (e.snapshot->>'updated_at')::timestamptz)::float8,"
        " a.sensor, a.metric, (e.snapshot->'evidence'->>'level_value')::float8,"
        " (e.snapshot->'evidence'->>'horizon_s')::float8"
        " FROM alert_events e JOIN alerts a ON a.id = e.alert_id"
        " WHERE e.action IN ('opened', 'reopened') AND a.detector = 'forecast' ORDER BY e.seq"
    ).fetchall()
    return [WarningEvent(*r) for r in rows if since <= r[0] < until and r[3] is not None]


def score_forecasts(
    warnings: list[WarningEvent],
    truth: list[Truth],
    recorder: CrossingRecorder,
    first_level: Callable[[str, str], float | None],
    *,
    pre_s: float,
    post_s: float,
) -> ForecastScore:
    """Precision of ``warnings`` and lead times of the incidents of ``truth`` (see the module)."""
    out = ForecastScore(warnings=len(warnings))
    for w in warnings:
        t, x = recorder.series(w.sensor, w.metric)
        after = (t > w.time) & (t <= w.time + w.horizon_s)
        out.fulfilled += bool(np.any(x[after] >= w.level))
    by_sensor: dict[tuple[str, str], list[WarningEvent]] = defaultdict(list)
    for w in warnings:
        by_sensor[(w.sensor, w.metric)].append(w)
    for tr in truth:
        if tr.kind not in _METRIC_OF:
            continue
        metric = _METRIC_OF[tr.kind]
        crossings = []
        for sensor in tr.sensors:
            level = first_level(sensor, metric)
            if level is None:
                continue
            t, x = recorder.series(sensor, metric)
            before = x[t < tr.start]
            if before.size and before[-1] >= level:
                continue  # already at the level: nothing to foresee
            up = np.flatnonzero((t >= tr.start) & (t <= tr.end + post_s) & (x >= level))
            if up.size:
                crossings.append(float(t[up[0]]))
        if not crossings:
            continue
        tc = min(crossings)
        # warnings of this crossing: since the incident began, and within their horizon of it
        first = [
            w.time
            for sensor in tr.sensors
            for w in by_sensor.get((sensor, metric), [])
            if max(tr.start - pre_s, tc - w.horizon_s) <= w.time <= tc
        ]
        out.leads[tr.kind].append(tc - min(first) if first else 0.0)
        out.warned[tr.kind] += bool(first)
    return out


def format_forecasts(s: ForecastScore) -> str:
    lines = [
        f"predictive warnings: {s.warnings}, followed by the crossing within their horizon: "
        f"{s.fulfilled} (precision {100 * s.precision:.1f} %, goal >= 80 %); "
        f"false {s.false_warnings} = {s.false_per_100:.2f} per 100 sensor-days"
    ]
    for k in LEAD_KINDS:
        med = s.median_lead_s(k)
        lead = "-" if math.isnan(med) else f"{med / 60:.1f} min"
        lines.append(
            f"  {k}: {len(s.leads[k])} crossed the warning level, {s.warned[k]} warned before; "
            f"median lead {lead} (goal >= 30 min)"
        )
    return "\n".join(lines)
