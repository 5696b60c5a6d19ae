"""The series stage: one univariate detector over every (sensor, metric) series, thresholded into signals.

Each (sensor, metric) gets a slot; a micro-batch is split into rounds in which
each slot appears once (``analytics.base.rounds``) and each round is one
vectorised ``score_learn`` call of the detector for all series at once.  Scores
become signals with a threshold and a debounce: an episode opens after
``debounce`` anomalous readings, stays active while readings are anomalous or
outside the series' expected range (a robust running band frozen while the
episode lasts, for at most ``max_hold_s``), and clears after ``clear``
consecutive normal readings.  The detector is pluggable: ``auto`` is the
project's default detector from ``analytics.detectors``, ``robust_z`` the small
placeholder below.  Detectors of this project put their alarm level at score 0.5.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, ClassVar

import numpy as np

from analytics.base import (
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
from core.metrics import METRICS
from core.types import Severity

logger = logging.getLogger(__name__)

RULE = "series.anomaly"
HANOI_UTC_OFFSET_S = 7 * 3600.0


class Columns:
    """Per-slot numpy columns that grow (doubling) as new slots appear."""

    def __init__(self, spec: Mapping[str, tuple[type, float]]) -> None:
        self.spec = dict(spec)
        self.size = 0
        self.cols: dict[str, np.ndarray[Any, Any]] = {
            k: np.full(0, fill, dtype=dt) for k, (dt, fill) in self.spec.items()
        }

    def ensure(self, n: int) -> None:
        if n <= self.size:
            return
        cap = max(64, 2 * self.size, n)
        for k, (dt, fill) in self.spec.items():
            new: np.ndarray[Any, Any] = np.full(cap, fill, dtype=dt)
            new[: self.size] = self.cols[k][: self.size]
            self.cols[k] = new
        self.size = cap

    def __getitem__(self, key: str) -> np.ndarray[Any, Any]:
        return self.cols[key]

    def get_state(self) -> dict[str, Any]:
        return {k: v.copy() for k, v in self.cols.items()}

    def set_state(self, state: Mapping[str, Any]) -> None:
        sizes = {len(np.asarray(state[k])) for k in self.spec}
        if len(sizes) != 1:
            raise ValueError("checkpointed columns differ in length")
        self.size = sizes.pop()
        self.cols = {k: np.array(state[k], dtype=dt) for k, (dt, _) in self.spec.items()}


class SeriesIndex:
    """Maps (sensor, metric) to small integer slots, in order of first appearance.

    Stages of one pipeline may share an index (``Pipeline`` does so): the slots of a
    batch are then looked up once, the later lookups of the same batch are free.
    """

    def __init__(self, keys: Iterable[Sequence[str]] = ()) -> None:
        self.keys: list[tuple[str, str]] = []
        self._slots: dict[tuple[str, str], int] = {}
        self._memo: tuple[Sequence[str], Sequence[str], IntArray] | None = None
        for s, m in keys:
            self.slot(s, m)

    def __len__(self) -> int:
        return len(self.keys)

    def slot(self, sensor: str, metric: str) -> int:
        key = (sensor, metric)
        slot = self._slots.get(key)
        if slot is None:
            slot = self._slots[key] = len(self.keys)
            self.keys.append(key)
        return slot

    def lookup(self, sensors: Sequence[str], metrics: Sequence[str]) -> IntArray:
        memo = self._memo
        if memo is not None and memo[0] is sensors and memo[1] is metrics:
            return memo[2]
        get = self._slots.get
        found = [get(k, -1) for k in zip(sensors, metrics, strict=True)]
        if -1 in found:
            found = [
                f if f >= 0 else self.slot(s, m)
                for f, s, m in zip(found, sensors, metrics, strict=True)
            ]
        out = np.array(found, dtype=np.int64)
        self._memo = (sensors, metrics, out)
        return out

    def restore(self, keys: Iterable[Sequence[str]]) -> None:
        """Hold these keys first, in place (the index may be shared); they must agree."""
        wanted = [(str(s), str(m)) for s, m in keys]
        n = min(len(wanted), len(self.keys))
        if self.keys[:n] != wanted[:n]:
            raise ValueError("the checkpoint's series differ from this index")
        for s, m in wanted[n:]:
            self.slot(s, m)
        self._memo = None

    def get_state(self) -> list[list[str]]:
        return [[s, m] for s, m in self.keys]


class SensorIndex:
    """Maps sensor ids to small integer codes (shareable like ``SeriesIndex``)."""

    def __init__(self, names: Iterable[str] = ()) -> None:
        self.names: list[str] = []
        self.codes: dict[str, int] = {}
        self._memo: tuple[Sequence[str], IntArray] | None = None
        for n in names:
            self.code(n)

    def __len__(self) -> int:
        return len(self.names)

    def code(self, name: str) -> int:
        c = self.codes.get(name)
        if c is None:
            c = self.codes[name] = len(self.names)
            self.names.append(name)
        return c

    def lookup(self, sensors: Sequence[str]) -> IntArray:
        memo = self._memo
        if memo is not None and memo[0] is sensors:
            return memo[1]
        get = self.codes.get
        found = [get(s, -1) for s in sensors]
        if -1 in found:
            found = [f if f >= 0 else self.code(s) for f, s in zip(found, sensors, strict=True)]
        out = np.array(found, dtype=np.int64)
        self._memo = (sensors, out)
        return out

    def restore(self, names: Iterable[str]) -> None:
        wanted = [str(n) for n in names]
        n = min(len(wanted), len(self.names))
        if self.names[:n] != wanted[:n]:
            raise ValueError("the checkpoint's sensors differ from this index")
        for name in wanted[n:]:
            self.code(name)
        self._memo = None


class RobustZ(Detector):
    """Placeholder detector: distance from an exponentially weighted mean in robust deviations.

    Score ``z / (z + z_half)`` with ``z = |x - mean| / (1.4826 · MAD)``, so 0.5 (the
    project's alarm level) is ``z_half`` deviations; innovations are clipped at
    ``clip`` deviations so that an outlier barely moves the baseline.
    """

    name: ClassVar[str] = "robust_z"

    def __init__(
        self,
        alpha: float = 0.02,
        warmup: int = 30,
        clip: float = 4.0,
        z_half: float = 4.0,
        seed: int = 0,
    ) -> None:
        self.alpha = alpha
        self.warmup = warmup
        self.clip = clip
        self.z_half = z_half
        self.seed = seed
        self._c = Columns({"n": (np.int64, 0), "mean": (np.float64, 0.0), "mad": (np.float64, 0.0)})

    def score_learn(self, slots: IntArray, times: FloatArray, values: FloatArray) -> FloatArray:
        out = np.zeros(slots.size, dtype=np.float64)
        ok = np.isfinite(values)
        if not ok.any():
            return out
        s, x = slots[ok], values[ok]
        self._c.ensure(int(s.max()) + 1)
        n, mean, mad = self._c["n"][s], self._c["mean"][s], self._c["mad"][s]
        sigma = 1.4826 * mad + 1e-6 * (1.0 + np.abs(mean))
        d = x - mean
        z = np.abs(d) / sigma
        z = np.minimum(z, 1e9)
        out[ok] = np.where(n >= self.warmup, z / (z + self.z_half), 0.0)
        a = np.maximum(self.alpha, 1.0 / (n + 1.0))
        dc = np.where(n >= 3, np.clip(d, -self.clip * sigma, self.clip * sigma), d)
        self._c["mean"][s] = mean + a * dc
        self._c["mad"][s] = mad + a * (np.abs(dc) - mad)
        self._c["n"][s] = n + 1
        return out

    def get_state(self) -> dict[str, Any]:
        return self._c.get_state()

    def set_state(self, state: Mapping[str, Any]) -> None:
        self._c.set_state(state)


def make_series_detector(spec: str = "auto", seed: int = 0) -> Detector:
    """``auto``: the project's default detector (``analytics.detectors``) if present, else
    ``robust_z``; ``robust_z``; a name known to ``analytics.detectors``; or ``module:Class``."""
    if spec == RobustZ.name:
        return RobustZ(seed=seed)
    if ":" in spec:
        module, _, cls = spec.partition(":")
        factory = getattr(importlib.import_module(module), cls)
        det = factory()
        if not isinstance(det, Detector):
            raise TypeError(f"{spec} is not an analytics.base.Detector")
        return det
    try:
        detectors = importlib.import_module("analytics.detectors")
    except ImportError:
        if spec != "auto":
            raise
        logger.warning("analytics.detectors is missing: the series stage uses robust_z")
        return RobustZ(seed=seed)
    make = detectors.make_detector
    args = () if spec == "auto" else (spec,)
    try:  # daily and weekly profiles in Hanoi time, where the detector has them
        det = make(*args, tz_offset_s=HANOI_UTC_OFFSET_S, seed=seed)
    except TypeError:
        det = make(*args)
    if not isinstance(det, Detector):
        raise TypeError(f"detector {spec!r} is not an analytics.base.Detector")
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
        self.index = SeriesIndex()
        self._c = Columns(
            {
                "n": (np.int64, 0),
                "mean": (np.float64, 0.0),
                "mad": (np.float64, 0.0),
                "hits": (np.int64, 0),
                "calm": (np.int64, 0),
                "active": (np.bool_, False),
                "since": (np.float64, np.nan),
                "low": (np.float64, np.nan),
                "high": (np.float64, np.nan),
            }
        )
        self._watched = np.zeros(0, dtype=bool)

    def share(self, series: SeriesIndex, sensors: SensorIndex) -> None:
        """Use the pipeline's indexes (before any reading is processed)."""
        self.index = series

    # -- the robust running band (expected range) -------------------------------

    def _band(self, s: IntArray) -> tuple[FloatArray, FloatArray, np.ndarray[Any, Any]]:
        c = self._c
        spread = self.band_width * (1.4826 * c["mad"][s] + 1e-9 * (1.0 + np.abs(c["mean"][s])))
        ready = c["n"][s] >= self.band_warmup
        return c["mean"][s] - spread, c["mean"][s] + spread, ready

    def _learn_band(self, s: IntArray, x: FloatArray) -> None:
        c = self._c
        n, mean, mad = c["n"][s], c["mean"][s], c["mad"][s]
        a = np.maximum(self.band_alpha, 1.0 / (n + 1.0))
        sigma = 1.4826 * mad + 1e-9 * (1.0 + np.abs(mean))
        d = x - mean
        dc = np.where(n >= 3, np.clip(d, -4 * sigma, 4 * sigma), d)
        c["mean"][s] = mean + a * dc
        c["mad"][s] = mad + a * (np.abs(dc) - mad)
        c["n"][s] = n + 1

    def _expected(self, s: IntArray) -> tuple[FloatArray, FloatArray, np.ndarray[Any, Any]]:
        """The detector's expected range when it offers one, else the running band."""
        lo, hi, ready = self._band(s)
        offer = getattr(self.detector, "expected_range", None)
        if callable(offer):
            try:
                dlo, dhi = offer(s)
                dlo, dhi = np.asarray(dlo, dtype=np.float64), np.asarray(dhi, dtype=np.float64)
                ok = np.isfinite(dlo) & np.isfinite(dhi)
                lo, hi = np.where(ok, dlo, lo), np.where(ok, dhi, hi)
                ready = ready | ok
            except Exception:  # the detector's optional hook must not stop the stage
                logger.warning("detector %s: expected_range failed", self.detector.name)
        return lo, hi, ready

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
        self._c.ensure(len(self.index))
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
        c = self._c
        scores = np.clip(np.nan_to_num(self.detector.score_learn(s, t, x)), 0.0, 1.0)
        lo, hi, ready = self._expected(s)
        lo, hi = np.where(ready, lo, -np.inf), np.where(ready, hi, np.inf)
        active = c["active"][s]
        anom = scores >= self.threshold
        frozen_lo = np.where(active, c["low"][s], lo)
        frozen_hi = np.where(active, c["high"][s], hi)
        outside_frozen = active & ((x < frozen_lo) | (x > frozen_hi))
        bad = anom | outside_frozen
        calm = np.where(bad, 0, c["calm"][s] + 1)
        hits = np.where(anom, c["hits"][s] + 1, np.where(calm >= self.clear, 0, c["hits"][s]))
        opened = ~active & (hits >= self.debounce)
        cleared = active & (calm >= self.clear)
        now_active = (active | opened) & ~cleared
        c["calm"][s] = calm
        c["hits"][s] = np.where(cleared, 0, hits)
        c["active"][s] = now_active
        c["since"][s] = np.where(opened, t, np.where(now_active, c["since"][s], np.nan))
        # the expected range is frozen at the onset of an episode
        c["low"][s] = np.where(opened, lo, c["low"][s])
        c["high"][s] = np.where(opened, hi, c["high"][s])
        hold_over = now_active & (t - c["since"][s] > self.max_hold_s)
        learn = ~now_active | hold_over
        if learn.any():
            self._learn_band(s[learn], x[learn])
        c["low"][s] = np.where(hold_over, lo, c["low"][s])
        c["high"][s] = np.where(hold_over, hi, c["high"][s])
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
