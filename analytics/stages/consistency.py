"""Consistency of redundant channels: a total that no longer equals the sum of its parts.

A traffic camera reports ``vehicle_count`` and the counts per class
(motorbike, car, bus, truck) of the same interval, so the total must be their
sum.  When one channel is miscalibrated, drifting, stuck or spiking, the two
disagree at once, however ordinary each value looks on its own: a drifting
total is hard for a detector that adapts to the series, and easy here.  The
check is a part of the health stage (``health.inconsistent``, class device).

Only readings of one sensor with the same timestamp are compared, and only when
the total and every part are present.  A disagreement counts when it exceeds
``abs_tol`` and ``rel_tol`` × the sum (devices may round, or count a few
unclassified vehicles); it alerts after ``min_readings`` such readings in a row
and clears after ``clear_readings`` agreeing ones.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from analytics.engine.base import Batch, Signal
from core.types import AlertClass, Severity

RULE = "health.inconsistent"
# total -> the parts it is the sum of
TOTALS: dict[str, tuple[str, ...]] = {
    "vehicle_count": ("count_motorbike", "count_car", "count_bus", "count_truck"),
}


class ConsistencyCheck:
    """Per sensor and total: the run of disagreeing readings and whether an alert is active."""

    def __init__(
        self,
        totals: Mapping[str, tuple[str, ...]] | None = None,
        *,
        abs_tol: float = 2.0,
        rel_tol: float = 0.10,
        min_readings: int = 3,
        clear_readings: int = 3,
    ) -> None:
        self.totals = dict(TOTALS if totals is None else totals)
        self.abs_tol = abs_tol
        self.rel_tol = rel_tol
        self.min_readings = min_readings
        self.clear_readings = clear_readings
        # metric -> (total index, 0 for the total itself or 1 for a part)
        self._role: dict[str, tuple[int, int]] = {}
        self._names = list(self.totals)
        for i, (total, parts) in enumerate(self.totals.items()):
            self._role[total] = (i, 0)
            for p in parts:
                self._role[p] = (i, 1)
        self._bad: dict[tuple[str, int], int] = {}  # (sensor, total) -> disagreeing in a row
        self._good: dict[tuple[str, int], int] = {}
        self.active: set[tuple[str, int]] = set()

    def process(self, batch: Batch) -> list[Signal]:
        role = self._role
        pos = [i for i, m in enumerate(batch.metric) if m in role]
        if not pos:
            return []
        groups: dict[tuple[str, int, float], list[float]] = {}
        for i in pos:
            total, part = role[batch.metric[i]]
            at = (batch.sensor[i], total, float(batch.time[i]))
            acc = groups.get(at)
            if acc is None:
                acc = groups[at] = [np.nan, 0.0, 0.0]  # total, sum of parts, parts seen
            v = float(batch.value[i])
            if part:
                acc[1] += v
                acc[2] += 1
            else:
                acc[0] = v
        out: list[Signal] = []
        for (sensor, total, t), (value, parts_sum, seen) in sorted(
            groups.items(), key=lambda kv: kv[0][2]
        ):
            if np.isnan(value) or seen < len(self.totals[self._names[total]]):
                continue
            key = (sensor, total)
            gap = abs(value - parts_sum)
            if gap > max(self.abs_tol, self.rel_tol * abs(parts_sum)):
                self._bad[key] = self._bad.get(key, 0) + 1
                self._good.pop(key, None)
                if key not in self.active and self._bad[key] >= self.min_readings:
                    self.active.add(key)
                    out.append(self._signal(sensor, total, t, True, value, parts_sum))
            else:
                self._good[key] = self._good.get(key, 0) + 1
                self._bad.pop(key, None)
                if key in self.active and self._good[key] >= self.clear_readings:
                    self.active.discard(key)
                    self._good.pop(key, None)
                    out.append(self._signal(sensor, total, t, False, value, parts_sum))
        return out

    def _signal(
        self, sensor: str, total: int, t: float, active: bool, value: float, parts_sum: float
    ) -> Signal:
        name = self._names[total]
        parts = self.totals[name]
        if active:
            message = (
                f"{name} {value:g} disagrees with the sum of {', '.join(parts)} ({parts_sum:g}) "
                f"for {self._bad.get((sensor, total), 0)} readings in a row: a miscounting channel"
            )
        else:
            message = f"{name} agrees with the sum of its parts again"
        return Signal(
            sensor=sensor,
            metric=name,
            rule=RULE,
            detector="health",
            time=t,
            active=active,
            severity=Severity.WARNING,
            value=value,
            expected_low=parts_sum,
            expected_high=parts_sum,
            message=message,
            evidence={"total": value, "sum_of_parts": parts_sum, "parts": list(parts)},
            alert_class=AlertClass.DEVICE,
        )

    def get_state(self) -> dict[str, Any]:
        return {
            "bad": [[s, i, n] for (s, i), n in self._bad.items()],
            "good": [[s, i, n] for (s, i), n in self._good.items()],
            "active": [[s, i] for s, i in self.active],
        }

    def set_state(self, state: Mapping[str, Any]) -> None:
        self._bad = {(str(s), int(i)): int(n) for s, i, n in state.get("bad", [])}
        self._good = {(str(s), int(i)): int(n) for s, i, n in state.get("good", [])}
        self.active = {(str(s), int(i)) for s, i in state.get("active", [])}
