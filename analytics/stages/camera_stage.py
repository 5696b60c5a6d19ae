"""The camera stage: a multivariate model of each camera's traffic windows against its weekly profile."""

from __future__ import annotations

import logging
import threading
import time as _time
from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np

from analytics.engine.base import (
    Batch,
    Context,
    FloatArray,
    Signal,
    Stage,
    StageOutput,
    rounds,
)
from analytics.engine.buckets import Buckets, Closed, Registry, select, take
from analytics.engine.slots import SlotArrays
from analytics.stages import camera
from analytics.stages.common import local_time, place_name, rounded
from core.types import Severity

logger = logging.getLogger(__name__)


_CAMERA_CODE = {f: i for i, f in enumerate(camera.FEATURES)}
_LABEL = ("vehicles", "speed", "occupancy", "queue")
# how traffic differs from usual, for a feature below / above its usual range
_WORDS = (
    ("lighter", "heavier"),
    ("slower", "faster"),
    ("sparser", "denser"),
    ("shorter", "longer"),
)
_MENTION_ORDER = (camera.SPEED, camera.OCCUPANCY, camera.VEHICLE_COUNT, camera.QUEUE)


def _fmt(j: int, x: float) -> str:
    return f"{x:.0f}" if j == camera.VEHICLE_COUNT else f"{x:.0f} {camera.UNITS[j]}"


def _range(j: int, lo: float, hi: float) -> str:
    unit = "" if j == camera.VEHICLE_COUNT else f" {camera.UNITS[j]}"
    return f"{lo:.0f}–{hi:.0f}{unit}"


def _join(words: list[str]) -> str:
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " and " + words[-1]


def describe_traffic(
    x: FloatArray, z: FloatArray, lo: FloatArray, hi: FloatArray, place: str, when: str
) -> str:
    """An operator's sentence: what the camera sees, how that differs from usual, the usual range."""
    picked = [j for j in _MENTION_ORDER if abs(z[j]) >= 2.0 and np.isfinite(x[j])][:3]
    if not picked:
        return f"unusual mix of traffic readings at {place} for {when}"
    seen = _join([f"{_LABEL[j]} {_fmt(j, x[j])}" for j in picked])
    far = "far " if max(abs(z[j]) for j in picked) >= 6.0 else ""
    adjectives = [_WORDS[j][int(z[j] > 0)] for j in picked if j != camera.QUEUE]
    queue = [_WORDS[j][int(z[j] > 0)] for j in picked if j == camera.QUEUE]
    if adjectives:
        how = f"traffic {far}{_join(adjectives)} than usual for {when}"
        if queue:
            how += f", with {queue[0]} queues"
    else:
        how = f"queues {far}{queue[0]} than usual for {when}"
    usual = ", ".join(f"{_LABEL[j]} {_range(j, lo[j], hi[j])}" for j in picked)
    return f"{seen} at {place}: {how} (usual {usual})"


class CameraStage(Stage):
    """Multivariate anomalies per traffic camera (see ``analytics.stages.camera``).

    Readings are averaged per camera over ``window_s`` windows; a complete
    window is written to the history ring and, once a model exists, scored
    together with every other camera's window completed in the same batch.  A
    camera alerts (``camera.multivariate``, warning) after ``confirm_windows``
    anomalous windows in a row and clears after ``clear_windows`` normal ones.

    The model is refitted in a background thread once ``warmup_s`` of history
    is in the ring, then every ``refit_every_s`` of data time; scoring goes on
    with the current model meanwhile and the new one replaces it atomically.
    Checkpoints keep the history ring, the open windows and the alert states,
    not the fitted model: after a restart the model is refitted from the
    restored history in the background and scoring resumes when it is ready.
    """

    name: ClassVar[str] = "camera"
    rule: ClassVar[str] = "camera.multivariate"
    detector: ClassVar[str] = "isolation_forest"

    def __init__(
        self,
        *,
        window_s: int = 300,
        history_days: int = 7,
        warmup_s: float = 86_400.0,
        refit_every_s: float = 6 * 3600.0,
        confirm_windows: int = 2,
        clear_windows: int = 3,
        z_min: float = 16.0,
        quantile: float = 0.995,
        n_estimators: int = 100,
        max_train: int = 50_000,
        min_samples: int = 6,
        bin_s: int = 1800,
        grace_s: float | None = None,
        auto_refit: bool = True,
        seed: int = 0,
    ) -> None:
        self.window_s = window_s
        self.history_days = history_days
        self.warmup_s = warmup_s
        self.refit_every_s = refit_every_s
        self.confirm_windows = confirm_windows
        self.clear_windows = clear_windows
        self.z_min = z_min
        self.quantile = quantile
        self.n_estimators = n_estimators
        self.max_train = max_train
        self.min_samples = min_samples
        self.bin_s = bin_s
        self.grace_s = float(window_s if grace_s is None else grace_s)
        self.auto_refit = auto_refit
        self.seed = seed
        self.late_readings = 0
        self.fit_failures = 0
        self._reg = Registry()
        self._buckets = Buckets(len(camera.FEATURES))
        self._history = camera.History(window_s, history_days)
        self._cols = SlotArrays(
            {"streak": (0, np.int64, 0), "calm": (0, np.int64, 0), "active": (0, np.bool_, False)}
        )
        self._lock = threading.Lock()
        self._model: camera.CameraModel | None = None
        self._thread: threading.Thread | None = None
        self._fit_requested_through = -1

    # -- model management ---------------------------------------------------

    @property
    def model(self) -> camera.CameraModel | None:
        with self._lock:
            return self._model

    @property
    def model_version(self) -> int:
        m = self.model
        return 0 if m is None else m.version

    @property
    def refitting(self) -> bool:
        t = self._thread
        return t is not None and t.is_alive()

    def refit(self, *, block: bool = False) -> bool:
        """Fit a new model on a snapshot of the history in a background thread.

        Returns False (and does nothing) if a fit is already running.
        """
        if self.refitting:
            return False
        snap = self._history.snapshot()
        self._fit_requested_through = snap.latest
        thread = threading.Thread(
            target=self._run_fit, args=(snap,), name="camera-refit", daemon=True
        )
        self._thread = thread
        thread.start()
        if block:
            thread.join()
        return True

    def wait_refit(self, timeout: float | None = None) -> bool:
        """Wait for a running refit; True if none is running any more."""
        t = self._thread
        if t is not None:
            t.join(timeout)
        return not self.refitting

    def _fit(self, snap: camera.Snapshot) -> camera.CameraModel | None:
        """Fit a model (runs in the refit thread; override to instrument)."""
        return camera.fit_model(
            snap,
            version=self.model_version + 1,
            seed=self.seed,
            quantile=self.quantile,
            z_min=self.z_min,
            n_estimators=self.n_estimators,
            max_train=self.max_train,
            min_samples=self.min_samples,
            bin_s=self.bin_s,
        )

    def _run_fit(self, snap: camera.Snapshot) -> None:
        started = _time.perf_counter()
        try:
            model = self._fit(snap)
        except Exception:
            self.fit_failures += 1
            logger.exception("camera model refit failed; scoring goes on with the current model")
            return
        if model is None:
            logger.info("camera model not fitted yet: too little history")
            return
        with self._lock:
            self._model = model
        logger.info(
            "camera model v%d fitted on %d windows of %d cameras in %.1f s",
            model.version,
            model.n_train,
            snap.values.shape[0],
            _time.perf_counter() - started,
        )

    def _maybe_refit(self) -> None:
        if not self.auto_refit or self.refitting or self._history.span_s < self.warmup_s:
            return
        due = self._fit_requested_through < 0 or (
            (self._history.latest - self._fit_requested_through) * self.window_s
            >= self.refit_every_s
        )
        if due:
            self.refit()

    # -- streaming -----------------------------------------------------------

    def _grow(self, n: int) -> None:
        self._buckets.ensure(n - 1)
        self._cols.ensure(n - 1)
        self._history.grow(n)

    def process(self, batch: Batch, ctx: Context) -> StageOutput:
        pos, code = select(batch, _CAMERA_CODE)
        if pos.size == 0:
            return StageOutput()
        st = self._reg.codes(take(batch.sensor, pos))
        self._grow(len(self._reg))
        win = np.floor(batch.time[pos] / self.window_s).astype(np.int64)
        closed, late = self._buckets.add(st, win, code, batch.value[pos])
        self.late_readings += late
        out = self._on_closed(closed, ctx)
        self._maybe_refit()
        return out

    def tick(self, now: float, ctx: Context) -> StageOutput:
        limit = int(np.floor((now - self.grace_s) / self.window_s))
        return self._on_closed(self._buckets.close_before(limit), ctx)

    def _on_closed(self, closed: Closed, ctx: Context) -> StageOutput:
        out = StageOutput()
        if closed.size == 0:
            return out
        x = closed.means()
        self._history.write(closed.station, closed.bucket, x)
        model = self.model
        if model is None:
            return out
        v = model.judge(closed.station, closed.bucket, x)
        for r in rounds(closed.station):
            r = r[v.known[r]]
            st = closed.station[r]
            bad = v.anomalous[r]
            self._cols["streak"][st] = np.where(bad, self._cols["streak"][st] + 1, 0)
            self._cols["calm"][st] = np.where(bad, 0, self._cols["calm"][st] + 1)
            start = ~self._cols["active"][st] & (self._cols["streak"][st] >= self.confirm_windows)
            stop = self._cols["active"][st] & (self._cols["calm"][st] >= self.clear_windows)
            self._cols["active"][st[start]] = True
            self._cols["active"][st[stop]] = False
            for j in np.flatnonzero(start | stop):
                i = int(r[j])
                out.signals.append(self._signal(i, bool(start[j]), closed, x, v, model, ctx))
        return out

    def _signal(
        self,
        i: int,
        active: bool,
        closed: Closed,
        x: FloatArray,
        v: camera.Verdict,
        model: camera.CameraModel,
        ctx: Context,
    ) -> Signal:
        s = int(closed.station[i])
        w = int(closed.bucket[i])
        sensor = self._reg.names[s]
        lo = np.clip(v.median[i] - 2.0 * v.scale[i], 0.0, camera.PHYSICAL_HIGH)
        hi = np.clip(v.median[i] + 2.0 * v.scale[i], 0.0, camera.PHYSICAL_HIGH)
        wd, hh, mm = (int(a[0]) for a in camera.local_parts(np.array([w]), self.window_s))
        when = f"{camera.WEEKDAYS[wd]} {hh:02d}:{mm:02d}"
        place = place_name(sensor, ctx)
        z = v.z[i]
        if active:
            message = describe_traffic(x[i], z, lo, hi, place, when)
        else:
            message = f"traffic back to usual at {place} ({when})"
        evidence = {
            "features": {f: rounded(x[i, j]) for j, f in enumerate(camera.FEATURES)},
            "expected": {
                f: [rounded(lo[j]), rounded(hi[j])]
                for j, f in enumerate(camera.FEATURES)
                if np.isfinite(lo[j])
            },
            "z": {f: round(float(z[j]), 2) for j, f in enumerate(camera.FEATURES)},
            "z_norm": round(float(v.norm[i]), 2),
            "score": round(float(v.score[i]), 4),
            "threshold": round(model.threshold, 4),
            "model_version": model.version,
            "window_start": local_time(w * self.window_s).isoformat(),
            "window_s": self.window_s,
        }
        speed = x[i, camera.SPEED]
        return Signal(
            sensor=sensor,
            metric="speed",
            rule=self.rule,
            detector=self.detector,
            time=float((w + 1) * self.window_s),
            active=active,
            severity=Severity.WARNING,
            score=float(v.score[i]),
            value=float(speed) if np.isfinite(speed) else None,
            expected_low=rounded(lo[camera.SPEED]),
            expected_high=rounded(hi[camera.SPEED]),
            message=message,
            evidence=evidence,
        )

    def get_state(self) -> dict[str, Any]:
        n = len(self._reg)
        hist = self._history.get_state()
        hist["values"] = hist["values"][:n].copy()
        hist["windows"] = hist["windows"][:n].copy()
        return {
            "v": 1,
            "names": list(self._reg.names),
            "buckets": self._buckets.get_state(n),
            "history": hist,
            **self._cols.head(n),
        }

    def set_state(self, state: Mapping[str, Any]) -> None:
        """Restore history and alert states; refit the model from the history in the background."""
        if not state:
            return
        self._reg.restore(list(state["names"]))
        self._buckets.set_state(state["buckets"])
        self._history.set_state(dict(state["history"]))
        self._cols.set_state({k: state[k] for k in self._cols.spec})
        self._grow(len(self._reg))
        if self._history.span_s >= self.warmup_s:
            self.refit()
