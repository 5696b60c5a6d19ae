"""The analytics contracts: detectors score many series at once; stages turn batches into signals.

Detector (river-style, vectorised): ``score_learn(slots, times, values)`` first
scores each reading against what the detector knew *before* it, then learns it.
Scores are in [0, 1]; higher is more anomalous.  ``slots`` are small integers
naming series (the bank maps ``(sensor, metric)`` to slots); within one call a
slot appears at most once, so a call is one step of many series in parallel.
Thresholding is not the detector's business: a stage or wrapper does it.

Stage: one part of the live pipeline (rules, series detectors, AQI, fire risk,
camera model, sensor health...).  ``process`` gets a micro-batch of readings in
columns and returns derived readings (stored like any reading) and ``Signal``s:
statements that a condition on (sensor, metric, rule) is active or has cleared.
The alert lifecycle turns signals into alerts (one open alert per key, updates,
resolution with hysteresis); spatial corroboration fills ``alert_class`` when a
stage leaves it ``None``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import numpy.typing as npt

from core.types import AlertClass, Reading, Sensor, Severity

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]


class Detector(ABC):
    """Scores and learns many univariate series at once (one reading per series per call)."""

    name: ClassVar[str]

    @abstractmethod
    def score_learn(self, slots: IntArray, times: FloatArray, values: FloatArray) -> FloatArray:
        """Score each (slot, time, value) against the past, then learn it; return scores in [0, 1]."""

    def get_state(self) -> dict[str, Any]:
        """Everything needed to resume after a restart (numpy arrays allowed)."""
        return {}

    def set_state(self, state: Mapping[str, Any]) -> None:  # noqa: B027 (optional hook)
        """Restore what ``get_state`` returned."""

    def score_learn_one(self, t: float, x: float, slot: int = 0) -> float:
        """Convenience for a single reading (offline evaluation, tests)."""
        out = self.score_learn(
            np.array([slot], dtype=np.int64),
            np.array([t], dtype=np.float64),
            np.array([x], dtype=np.float64),
        )
        return float(out[0])


def rounds(slots: IntArray) -> list[IntArray]:
    """Split positions of a time-ordered batch into rounds in which each slot appears once.

    Round k holds the k-th occurrence of every slot, so order within a series is kept.
    """
    if slots.size == 0:
        return []
    order = np.argsort(slots, kind="stable")
    sorted_slots = slots[order]
    starts = np.r_[0, np.flatnonzero(np.diff(sorted_slots)) + 1]
    occurrence = np.arange(slots.size) - np.repeat(starts, np.diff(np.r_[starts, slots.size]))
    out = []
    for k in range(int(occurrence.max()) + 1):
        out.append(np.sort(order[occurrence == k]))
    return out


@dataclass(frozen=True, slots=True)
class Batch:
    """A time-ordered micro-batch of readings in columns (epoch seconds, UTC)."""

    sensor: list[str]
    metric: list[str]
    time: FloatArray
    value: FloatArray

    def __len__(self) -> int:
        return len(self.sensor)

    @classmethod
    def from_readings(cls, readings: list[Reading]) -> Batch:
        return cls(
            sensor=[r.sensor for r in readings],
            metric=[r.metric for r in readings],
            time=np.array([r.time.timestamp() for r in readings], dtype=np.float64),
            value=np.array([r.value for r in readings], dtype=np.float64),
        )


@dataclass(frozen=True, slots=True)
class Signal:
    """A stage's finding: the condition ``rule`` on (sensor, metric) is active, or has cleared."""

    sensor: str
    metric: str
    rule: str  # stable id, e.g. "water_level.critical", "seasonal", "camera.multivariate"
    detector: str
    time: float  # epoch seconds of the reading that produced it
    active: bool
    severity: Severity = Severity.WARNING
    score: float | None = None
    value: float | None = None
    expected_low: float | None = None
    expected_high: float | None = None
    message: str = ""
    evidence: dict[str, Any] = field(default_factory=dict)
    alert_class: AlertClass | None = None  # None: spatial corroboration decides


@dataclass(slots=True)
class StageOutput:
    derived: list[Reading] = field(default_factory=list)
    signals: list[Signal] = field(default_factory=list)

    def extend(self, other: StageOutput) -> None:
        self.derived.extend(other.derived)
        self.signals.extend(other.signals)


@dataclass(slots=True)
class Context:
    """What stages may know about the city: the sensor registry (kept fresh by the service)."""

    sensors: dict[str, Sensor] = field(default_factory=dict)


class Stage(ABC):
    """One part of the live pipeline."""

    name: ClassVar[str]

    @abstractmethod
    def process(self, batch: Batch, ctx: Context) -> StageOutput:
        """Handle a micro-batch; must be vectorised over readings where the work is per reading."""

    def tick(self, now: float, ctx: Context) -> StageOutput:
        """Time-driven checks (missed heartbeats, dropouts); called about once a second."""
        return StageOutput()

    def get_state(self) -> dict[str, Any]:
        return {}

    def set_state(self, state: Mapping[str, Any]) -> None:  # noqa: B027 (optional hook)
        """Restore what ``get_state`` returned."""
