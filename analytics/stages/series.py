"""The series stage: one univariate detector over every (sensor, metric) series, thresholded into signals.

Each (sensor, metric) gets a slot; a micro-batch is split into rounds in which
each slot appears once (``analytics.engine.base.rounds``) and each round is one
vectorised ``score_learn`` call of the detector for all series at once.  Scores
become signals with a threshold and a debounce: an episode opens after
``debounce`` anomalous readings, stays active while readings are anomalous or
outside the series' expected range (a robust running band frozen while the
episode lasts, for at most ``max_hold_s``), and clears after ``clear``
consecutive normal readings.  The detector is pluggable: ``auto`` is the
project's default detector from ``analytics.detectors``, ``robust_z`` the small
fallback in ``analytics.detectors.robust_z``.  Detectors of this project put their alarm level at score 0.5.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from typing import Any, ClassVar

import numpy as np

from analytics.detectors import make_detector
from analytics.detectors.alarm import ALARM_COLUMNS, AlarmPolicy
from analytics.detectors.robust_z import RobustZ
from analytics.engine.base import (
    Batch,
    Context,
    Detector,
    FloatArray,
    IntArray,
    Signal,
    Stage,
    StageOutput,
    rounds,
)
from analytics.engine.slots import SensorIndex, SeriesIndex, SlotArrays
from core.metrics import METRICS
from core.types import UTC_OFFSET_S, Severity

logger = logging.getLogger(__name__)

RULE = "series.anomaly"


def make_series_detector(spec: str = "auto", seed: int = 0) -> Detector:
    """``auto``: the project's default detector (``analytics.detectors``); ``robust_z``; or
    a name in the ``analytics.detectors.DETECTORS`` registry."""
    if spec == RobustZ.name:
        return RobustZ(seed=seed)
    args = () if spec == "auto" else (spec,)
    try:  # daily and weekly profiles in Hanoi time, where the detector has them
        det = make_detector(*args, tz_offset_s=float(UTC_OFFSET_S), seed=seed)
    except TypeError:
        det = make_detector(*args)
    if not isinstance(det, Detector):
        raise TypeError(f"detector {spec!r} is not an analytics.engine.base.Detector")
    return det


class SeriesStage(Stage):
    """Runs a ``Detector`` over all watched series of the batch; thresholds and debounces scores."""

    name: ClassVar[str] = "series"

    def __init__(
        self,
        detector: Detector | None = None,
        *,
        threshold: float = 0.5,
        critical: float = 0.8,
        debounce: int = 1,
        clear: int = 3,
        exclude: Iterable[str] = (),
        band_alpha: float = 0.05,
        band_width: float = 4.0,
        band_warmup: int = 10,
        max_hold_s: float = 6 * 3600.0,
    ) -> None:
        self.detector = detector if detector is not None else make_series_detector()
        self.threshold = threshold
        self.critical = critical
        self.debounce = debounce
        self.clear = clear
        self.exclude = frozenset(exclude) | {m.name for m in METRICS.values() if m.derived}
        self.band_alpha = band_alpha
        self.band_width = band_width
        self.band_warmup = band_warmup
        self.max_hold_s = max_hold_s
        self.policy = AlarmPolicy(
            threshold, debounce, clear, band_alpha, band_width, band_warmup, max_hold_s
        )
        self.index = SeriesIndex()
        self._c = SlotArrays({k: (0, dt, fill) for k, (dt, fill) in ALARM_COLUMNS.items()})
        self._watched = np.zeros(0, dtype=bool)

    def share(self, series: SeriesIndex, sensors: SensorIndex) -> None:
        """Use the pipeline's indexes (before any reading is processed)."""
        self.index = series

    # -- processing -------------------------------------------------------------------

    def _watch(self) -> None:
        n = len(self.index)
        old = self._watched.size
        if n > old:
            extra = np.array([m not in self.exclude for _, m in self.index.keys[old:]], dtype=bool)
            self._watched = np.concatenate([self._watched, extra])

    def process(self, batch: Batch, ctx: Context) -> StageOutput:
        out = StageOutput()
        if len(batch) == 0:
            return out
        slots = self.index.lookup(batch.sensor, batch.metric)
        self._watch()
        self._c.ensure(len(self.index) - 1)
        keep = self._watched[slots] & np.isfinite(batch.value)
        pos = np.flatnonzero(keep)
        if pos.size == 0:
            return out
        for r in rounds(slots[pos]):
            p = pos[r]
            self._round(p, slots[p], batch.time[p], batch.value[p], out)
        return out

    def _round(
        self, p: IntArray, s: IntArray, t: FloatArray, x: FloatArray, out: StageOutput
    ) -> None:
        scores = np.clip(np.nan_to_num(self.detector.score_learn(s, t, x)), 0.0, 1.0)
        step = self.policy.step(self._c.cols, s, t, x, scores, self.detector)
        bad, opened, cleared, now_active = step.bad, step.opened, step.cleared, step.active
        emit = np.flatnonzero((opened | (now_active & bad)) | cleared)
        for j in emit:
            slot = int(s[j])
            self._emit(out, slot, float(t[j]), float(x[j]), float(scores[j]), not bool(cleared[j]))

    def _emit(
        self, out: StageOutput, slot: int, t: float, x: float, score: float, active: bool
    ) -> None:
        sensor, metric = self.index.keys[slot]
        lo = float(self._c["low"][slot])
        hi = float(self._c["high"][slot])
        lo_ = None if np.isnan(lo) else lo
        hi_ = None if np.isnan(hi) else hi
        unit = METRICS[metric].unit if metric in METRICS else ""
        if x > (hi_ if hi_ is not None else np.inf):
            direction = "above"
        elif x < (lo_ if lo_ is not None else -np.inf):
            direction = "below"
        else:
            direction = "within"
        rng = f"{lo:.4g}..{hi:.4g} {unit}" if lo_ is not None and hi_ is not None else "its usual"
        if active:
            if direction == "within":
                message = f"{metric} {x:.4g} {unit} behaves unusually (score {score:.4f})"
            else:
                message = f"{metric} {x:.4g} {unit} is far {direction} the expected {rng}"
        else:
            message = f"{metric} {x:.4g} {unit} is back to normal"
        sev = Severity.CRITICAL if score >= self.critical else Severity.WARNING
        out.signals.append(
            Signal(
                sensor=sensor,
                metric=metric,
                rule=RULE,
                detector=self.detector.name,
                time=t,
                active=active,
                severity=sev,
                score=score,
                value=x,
                expected_low=lo_,
                expected_high=hi_,
                message=message,
                evidence={"direction": direction, "threshold": self.threshold},
                alert_class=None,
            )
        )

    # -- checkpoints ------------------------------------------------------------------

    def get_state(self) -> dict[str, Any]:
        return {
            "detector": self.detector.name,
            "keys": self.index.get_state(),
            "columns": self._c.get_state(),
            "model": self.detector.get_state(),
        }

    def set_state(self, state: Mapping[str, Any]) -> None:
        if state.get("detector") != self.detector.name:
            logger.warning(
                "series checkpoint is for detector %s, not %s: starting cold",
                state.get("detector"),
                self.detector.name,
            )
            return
        self.index.restore(state["keys"])
        self._watched = np.zeros(0, dtype=bool)
        self._watch()
        self._c.set_state(state["columns"])
        self.detector.set_state(state["model"])
