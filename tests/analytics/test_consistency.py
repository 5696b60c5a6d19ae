"""Redundant channels: a camera's vehicle count against the sum of its per-class counts."""

from __future__ import annotations

import numpy as np

from analytics.engine.base import Batch, Context
from analytics.stages.consistency import ConsistencyCheck
from analytics.stages.health import HealthStage
from core.types import AlertClass

PARTS = ("count_motorbike", "count_car", "count_bus", "count_truck")


def reading(t: float, total: float, parts: tuple[float, ...], sensor: str = "cam-1") -> Batch:
    metrics = ["vehicle_count", *PARTS, "speed"]
    values = [total, *parts, 30.0]
    return Batch([sensor] * len(metrics), metrics, np.full(len(metrics), t), np.array(values))


def test_a_total_off_its_parts_alerts_after_three_readings_and_clears() -> None:
    check = ConsistencyCheck()
    parts = (40.0, 8.0, 1.0, 1.0)
    seen = [check.process(reading(60.0 * i, 50.0 + 1.0, parts)) for i in range(5)]
    assert all(s == [] for s in seen)  # within tolerance (rounding, unclassified)
    off = [check.process(reading(600 + 60.0 * i, 125.0, parts)) for i in range(4)]
    assert [len(s) for s in off] == [0, 0, 1, 0]
    (sig,) = off[2]
    assert sig.active and sig.rule == "health.inconsistent" and sig.metric == "vehicle_count"
    assert sig.alert_class is AlertClass.DEVICE and sig.expected_low == 50.0
    back = [check.process(reading(900 + 60.0 * i, 50.0, parts)) for i in range(3)]
    assert [len(s) for s in back] == [0, 0, 1] and not back[2][0].active


def test_missing_parts_are_not_judged_and_state_survives_a_restart() -> None:
    check = ConsistencyCheck()
    partial = Batch(
        ["cam-2"] * 2, ["vehicle_count", "count_car"], np.zeros(2), np.array([90.0, 3.0])
    )
    assert check.process(partial) == []
    for i in range(2):
        check.process(reading(60.0 * i, 0.0, (20.0, 5.0, 0.0, 1.0), sensor="cam-3"))
    health = HealthStage()
    health.consistency = check
    again = HealthStage()
    again.set_state(health.get_state())
    out = again.process(reading(180.0, 0.0, (20.0, 5.0, 0.0, 1.0), sensor="cam-3"), Context())
    assert [s.rule for s in out.signals] == ["health.inconsistent"]
