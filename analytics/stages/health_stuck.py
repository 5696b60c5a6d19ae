"""Stuck values, a part of the health stage: a value repeated far longer than its series usually repeats one."""

from __future__ import annotations

from typing import Any

import numpy as np

from analytics.engine.base import (
    FloatArray,
    IntArray,
    Signal,
    StageOutput,
)
from analytics.engine.slots import SeriesIndex, SlotArrays
from core.metrics import METRICS
from core.types import AlertClass, Severity

DEVICE = "device"
# metrics that legitimately hold one value for long: rain (0 for days), wind direction in
# calm air, rare vehicle classes, queues (quantised, flat in light traffic), battery
STUCK_EXCLUDE = frozenset(
    {"rainfall", "wind_direction", "count_bus", "count_truck", "queue_length", "battery"}
)


class StuckValues:
    """The health stage's run-length tracking per series (``health.stuck``)."""

    _s: SlotArrays
    series: SeriesIndex
    floor_steps: float
    stuck_exclude: frozenset[str]
    stuck_factor: float
    stuck_min_readings: int
    stuck_min_s: float

    def _runs(self, s: IntArray, t: FloatArray, x: FloatArray, out: StageOutput) -> None:
        c = self._s
        prev_last = c["last"][s]
        gap = t - prev_last
        ok = np.isfinite(gap) & (gap > 0)
        if ok.any():
            so, g = s[ok], gap[ok]
            iv, ng = c["ivl"][so], c["gaps"][so]
            g = np.where(np.isfinite(iv), np.minimum(g, 3 * iv), g)
            a = np.maximum(0.1, 1.0 / (ng + 1.0))
            c["ivl"][so] = np.where(np.isfinite(iv), iv + a * (g - iv), g)
            c["gaps"][so] = ng + 1
        c["last"][s] = np.fmax(prev_last, t)
        c["n"][s] += 1
        back = c["dropped"][s]
        if back.any():
            for j in np.flatnonzero(back):
                sensor, metric = self.series.keys[int(s[j])]
                out.signals.append(
                    health_signal(
                        sensor,
                        metric,
                        "health.channel_dropout",
                        float(t[j]),
                        False,
                        f"{metric} readings resumed",
                    )
                )
            c["dropped"][s] = False
        same = x == c["value"][s]
        step_ = np.abs(x - c["value"][s])
        moved = np.isfinite(step_) & (step_ > 0)
        c["quantum"][s] = np.where(moved, np.fmin(c["quantum"][s], step_), c["quantum"][s])
        ended = ~same & (c["count"][s] > 0)
        if ended.any():
            e = s[ended]
            runs = c["runs"][e]
            a = np.maximum(0.05, 1.0 / (runs + 1.0))
            c["typical"][e] += a * (c["count"][e] - c["typical"][e])
            c["runs"][e] = runs + 1
        was_stuck = c["stuck"][s]
        c["count"][s] = np.where(same, c["count"][s] + 1, 1)
        c["start"][s] = np.where(same, c["start"][s], t)
        c["value"][s] = x
        # judged only once the series has shown how it usually repeats (5 runs)
        seasoned = c["runs"][s] >= 5
        need = np.where(
            seasoned,
            np.maximum(self.stuck_min_readings, self.stuck_factor * c["typical"][s]),
            np.inf,
        )
        excluded = self._excluded(s)
        # a run at or near the physical floor of a quantised series (0 vehicles, 0 mm of
        # rain, 1 µg/m³ of ozone at night) is normal: judged only from `floor_steps` steps up
        # likewise a run at the edge of the range the series has shown (a gas sensor at
        # its detection limit, occupancy pinned at 100 % in a jam)
        c["vmin"][s] = np.fmin(c["vmin"][s], x)
        c["vmax"][s] = np.fmax(c["vmax"][s], x)
        margin = self.floor_steps * c["quantum"][s]
        with np.errstate(invalid="ignore"):
            off_floor = (
                (np.abs(x - c["floor"][s]) >= margin)
                & (x > c["vmin"][s] + margin)
                & (x < c["vmax"][s] - margin)
            )
        stuck = (
            (c["count"][s] >= need)
            & (t - c["start"][s] >= self.stuck_min_s)
            & ~excluded
            & off_floor
        )
        c["stuck"][s] = stuck
        for j in np.flatnonzero(stuck | was_stuck):
            slot = int(s[j])
            sensor, metric = self.series.keys[slot]
            if stuck[j]:
                n = int(c["count"][slot])
                mins = (float(t[j]) - float(c["start"][slot])) / 60.0
                out.signals.append(
                    health_signal(
                        sensor,
                        metric,
                        "health.stuck",
                        float(t[j]),
                        True,
                        f"{metric} has repeated {x[j]:g} for {n} readings ({mins:.0f} min)",
                        value=float(x[j]),
                        evidence={"repeats": n, "typical_run": float(c["typical"][slot])},
                    )
                )
            else:
                out.signals.append(
                    health_signal(
                        sensor,
                        metric,
                        "health.stuck",
                        float(t[j]),
                        False,
                        f"{metric} is changing again",
                        value=float(x[j]),
                    )
                )

    def _excluded(self, s: IntArray) -> np.ndarray[Any, Any]:
        c = self._s
        fresh = np.isnan(c["floor"][s])
        if fresh.any():
            for j in np.flatnonzero(fresh):
                slot = int(s[j])
                metric = self.series.keys[slot][1]
                m = METRICS.get(metric)
                # a run at the physical floor (0 vehicles, 0 mm) is normal
                c["floor"][slot] = m.low if m is not None and m.low == 0.0 else np.inf
                if metric in self.stuck_exclude:
                    c["floor"][slot] = -np.inf  # marker: never judged
        return np.asarray(c["floor"][s] == -np.inf)

    # -- time-driven checks ------------------------------------------------------------


def health_signal(
    sensor: str,
    metric: str,
    rule: str,
    t: float,
    active: bool,
    message: str,
    severity: Severity = Severity.WARNING,
    value: float | None = None,
    evidence: dict[str, Any] | None = None,
) -> Signal:
    return Signal(
        sensor=sensor,
        metric=metric,
        rule=rule,
        detector="health",
        time=t,
        active=active,
        severity=severity,
        value=value,
        message=message,
        evidence=evidence or {},
        alert_class=AlertClass.DEVICE,
    )
