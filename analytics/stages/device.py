"""The device stage: the multivariate detector over each device's metrics together, live.

For every sensor kind that reports several metrics (air quality, weather, water level;
traffic cameras have their own model), the readings of one device at one time form a
row; each kind has one ``StreamingPCA`` whose slots are its devices, so a round of
rows is one vectorised call. Rows become signals through the same alarm state machine
as the series stage (``AlarmPolicy``: threshold, debounce, clearing), under the rule
``device.multivariate``: "the metrics of this device no longer move as they usually
do together".
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from typing import Any, ClassVar

import numpy as np
import numpy.typing as npt

from analytics.detectors.alarm import AlarmPolicy, alarm_columns
from analytics.detectors.pca import StreamingPCA
from analytics.engine.base import Batch, Context, IntArray, Signal, Stage, StageOutput, rounds
from core.metrics import KIND_METRICS, METRICS
from core.types import SensorKind, Severity

logger = logging.getLogger(__name__)

RULE = "device.multivariate"
# kinds with a model of their own, and metrics that are not a level (an angle)
SKIP_KINDS = frozenset({SensorKind.TRAFFIC_CAMERA})
SKIP_METRICS = frozenset({"wind_direction"})


class _KindModel:
    """One kind's detector, its devices' slots and their alarm state."""

    def __init__(self, metrics: tuple[str, ...], policy: AlarmPolicy) -> None:
        self.metrics = metrics
        self.column = {m: k for k, m in enumerate(metrics)}
        self.detector = StreamingPCA(len(metrics))
        self.slots: dict[str, int] = {}
        self.sensors: list[str] = []
        self.alarm = alarm_columns(0)
        self.policy = policy

    def slot(self, sensor: str) -> int:
        k = self.slots.get(sensor)
        if k is None:
            k = self.slots[sensor] = len(self.sensors)
            self.sensors.append(sensor)
            if k >= self.alarm["n"].size:
                grown = alarm_columns(max(16, 2 * self.alarm["n"].size))
                for name, col in self.alarm.items():
                    grown[name][: col.size] = col
                self.alarm = grown
        return k


class DeviceStage(Stage):
    """Scores each multi-metric device's readings together; see the module docstring."""

    name: ClassVar[str] = "device"

    def __init__(
        self,
        threshold: float = 0.5,
        critical: float = 0.8,
        debounce: int = 1,
        clear: int = 3,
        kinds: Mapping[SensorKind, Iterable[str]] | None = None,
    ) -> None:
        self.policy = AlarmPolicy(threshold, debounce, clear)
        self.critical = critical
        source = KIND_METRICS if kinds is None else kinds
        self.models: dict[SensorKind, _KindModel] = {}
        for kind, metrics in source.items():
            watched = tuple(
                m
                for m in metrics
                if m not in SKIP_METRICS and not (m in METRICS and METRICS[m].derived)
            )
            if kind not in SKIP_KINDS and len(watched) >= 2:
                self.models[kind] = _KindModel(watched, self.policy)

    def process(self, batch: Batch, ctx: Context) -> StageOutput:
        out = StageOutput()
        if len(batch) == 0 or not self.models:
            return out
        # one row per (device, time): the kind's metric columns, NaN where not reported
        rows: dict[tuple[SensorKind, str, float], int] = {}
        cells: list[tuple[int, int, float]] = []
        for sensor, metric, t, x in zip(
            batch.sensor, batch.metric, batch.time.tolist(), batch.value.tolist(), strict=True
        ):
            known = ctx.sensors.get(sensor)
            if known is None:
                continue
            model = self.models.get(known.kind)
            if model is None or metric not in model.column or x != x:
                continue
            r = rows.setdefault((known.kind, sensor, t), len(rows))
            cells.append((r, model.column[metric], x))
        if not rows:
            return out
        keys = list(rows)
        width = max(len(m.metrics) for m in self.models.values())
        values = np.full((len(keys), width), np.nan)
        for r, col, x in cells:
            values[r, col] = x
        for kind, model in self.models.items():
            mine = [r for r, k in enumerate(keys) if k[0] == kind]
            if not mine:
                continue
            slots = np.array([model.slot(keys[r][1]) for r in mine], dtype=np.int64)
            times = np.array([keys[r][2] for r in mine], dtype=np.float64)
            rows_of_kind = values[mine, : len(model.metrics)]
            for rnd in rounds(slots):
                self._round(model, slots[rnd], times[rnd], rows_of_kind[rnd], out)
        return out

    def _round(
        self,
        model: _KindModel,
        s: IntArray,
        t: npt.NDArray[np.float64],
        x: npt.NDArray[np.float64],
        out: StageOutput,
    ) -> None:
        scores = model.detector.score_learn(s, t, x)
        step = self.policy.step(model.alarm, s, t, np.zeros(s.size), scores)
        emit = np.flatnonzero(step.opened | (step.active & step.bad) | step.cleared)
        for j in emit:
            sensor = model.sensors[int(s[j])]
            active = not bool(step.cleared[j])
            score = float(scores[j])
            idx, views = model.detector.last_views
            where = np.flatnonzero(idx == s[j])
            evidence: dict[str, Any] = {"metrics": list(model.metrics)}
            if where.size:
                v = views[:, where[0]]
                evidence.update(
                    {
                        "t2": float(v[0]),
                        "q": float(v[1]),
                        "t2_run": float(v[2]),
                        "q_run": float(v[3]),
                    }
                )
            message = (
                f"the metrics of {sensor} no longer move together as usual (score {score:.3f})"
                if active
                else f"the metrics of {sensor} move together as usual again"
            )
            out.signals.append(
                Signal(
                    sensor=sensor,
                    metric=model.metrics[0],  # the kind's first metric stands for the device
                    rule=RULE,
                    detector=model.detector.name,
                    time=float(t[j]),
                    active=active,
                    severity=Severity.CRITICAL if score >= self.critical else Severity.WARNING,
                    score=score,
                    message=message,
                    evidence=evidence,
                    alert_class=None,
                )
            )

    def get_state(self) -> dict[str, Any]:
        return {
            str(kind): {
                "metrics": list(m.metrics),
                "sensors": list(m.sensors),
                "model": m.detector.get_state(),
                "alarm": {k: v.copy() for k, v in m.alarm.items()},
            }
            for kind, m in self.models.items()
        }

    def set_state(self, state: Mapping[str, Any]) -> None:
        for kind, model in self.models.items():
            saved = state.get(str(kind))
            if not saved or list(saved.get("metrics", [])) != list(model.metrics):
                continue  # a kind whose metrics changed starts cold
            model.sensors = list(saved["sensors"])
            model.slots = {s: k for k, s in enumerate(model.sensors)}
            model.detector.set_state(saved["model"])
            model.alarm = {k: np.asarray(v) for k, v in saved["alarm"].items()}
