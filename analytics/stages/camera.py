"""The traffic-camera multivariate model: history ring, per-camera daily profiles, IsolationForest.

Each camera's readings are averaged over fixed windows (5 minutes by default)
into a feature vector ``(vehicle_count, speed, occupancy, queue_length)``.

* ``History`` keeps the last ``days`` of those vectors for every camera in a
  ring buffer (``float32``, one slot per window, so the slot fixes the local
  time of day).
* ``fit_profile`` learns, per camera, per day type (weekday / weekend) and per
  local hour, the median and a robust spread (1.4826 × MAD, floored) of every
  feature (``bin_s``: 30-minute bins by default).  Morning and evening peaks are therefore *usual* for that camera at
  that hour: a jam at 08:00 on a weekday is expected, the same jam at 11:00 is
  not.  Where a (day type, hour) cell has too few windows, the camera's profile
  for the hour over all days is used, then the camera's overall profile.
* ``fit_model`` turns every window of history into robust z-scores against its
  profile (per-camera normalisation) and fits one ``IsolationForest`` on the
  pooled z-vectors of all cameras: it learns which joint deviations are
  ordinary.  A window is anomalous when its isolation score is above the
  ``quantile`` of the training scores *and* its z-vector is long enough
  (``‖z‖ ≥ z_min``, 16 by default), so ordinary deviations never alert however
  rare their mix: the quantile alone would flag 0.5 % of all windows.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from sklearn.ensemble import IsolationForest

from core.types import UTC_OFFSET_S

logger = logging.getLogger(__name__)

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
F32Array = npt.NDArray[np.float32]

FEATURES: tuple[str, ...] = ("vehicle_count", "speed", "occupancy", "queue_length")
UNITS: tuple[str, ...] = ("vehicles", "km/h", "%", "m")
VEHICLE_COUNT, SPEED, OCCUPANCY, QUEUE = range(4)
# the smallest spread we believe in, absolute and relative to the usual value.  A
# few days of history see little of the day-to-day variation (within one day a
# 30-minute bin's windows move together), so the spread learned from them is too
# narrow: traffic at a given hour varies by some 10 % from day to day, speed and
# occupancy near capacity by 15 %, queues by 30 %; and a queue 20 m (a few cars)
# or a speed 4 km/h away from usual is not unusual at all.
SCALE_FLOOR = np.array([3.0, 4.0, 4.0, 20.0])
SCALE_REL_FLOOR = np.array([0.10, 0.15, 0.15, 0.30])
PHYSICAL_HIGH = np.array([20_000.0, 250.0, 100.0, 5_000.0])
MAD_TO_SIGMA = 1.4826
Z_CLIP = 50.0

TZ_OFFSET_S = UTC_OFFSET_S
WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")


def local_parts(window: IntArray, window_s: int) -> tuple[IntArray, IntArray, IntArray]:
    """(weekday 0=Monday, hour, minute) in Hanoi time of window starts (Vietnam has no DST)."""
    t = np.asarray(window, dtype=np.int64) * window_s + TZ_OFFSET_S
    day = t // 86_400
    sec = t % 86_400
    return (day + 3) % 7, sec // 3600, (sec % 3600) // 60


def time_bin(window: IntArray, window_s: int, bin_s: int) -> tuple[IntArray, IntArray]:
    """(day type 0 weekday / 1 weekend, time-of-day bin) of window starts, Hanoi time."""
    t = np.asarray(window, dtype=np.int64) * window_s + TZ_OFFSET_S
    weekend = ((t // 86_400 + 3) % 7 >= 5).astype(np.int64)
    return weekend, (t % 86_400) // bin_s


class History:
    """Ring buffer of per-camera window vectors covering the last ``days`` days."""

    def __init__(self, window_s: int, days: int) -> None:
        if 3600 % window_s or (TZ_OFFSET_S % window_s):
            raise ValueError(f"window_s={window_s} must divide an hour")
        self.window_s = window_s
        self.days = days
        self.slots = days * 86_400 // window_s
        self.values: F32Array = np.full((0, self.slots, len(FEATURES)), np.nan, np.float32)
        self.windows = np.full((0, self.slots), -1, np.int64)
        self.first = -1  # earliest window ever written (warm-up measure)
        self.latest = -1

    @property
    def cameras(self) -> int:
        return int(self.values.shape[0])

    def grow(self, n: int) -> None:
        have = self.values.shape[0]
        if n <= have:
            return
        extra = n - have
        self.values = np.concatenate(
            [self.values, np.full((extra, self.slots, len(FEATURES)), np.nan, np.float32)]
        )
        self.windows = np.concatenate([self.windows, np.full((extra, self.slots), -1, np.int64)])

    def write(self, cams: IntArray, wins: IntArray, x: FloatArray) -> None:
        if cams.size == 0:
            return
        slot = wins % self.slots
        self.values[cams, slot] = x.astype(np.float32)
        self.windows[cams, slot] = wins
        lo, hi = int(wins.min()), int(wins.max())
        self.first = lo if self.first < 0 else min(self.first, lo)
        self.latest = max(self.latest, hi)

    @property
    def span_s(self) -> float:
        """How much history the ring holds (data time, seconds)."""
        if self.first < 0:
            return 0.0
        return float(min(self.latest - self.first + 1, self.slots) * self.window_s)

    def snapshot(self) -> Snapshot:
        return Snapshot(self.values.copy(), self.windows.copy(), self.latest, self.window_s)

    def get_state(self) -> dict[str, Any]:
        return {
            "window_s": self.window_s,
            "days": self.days,
            "values": self.values,
            "windows": self.windows,
            "first": self.first,
            "latest": self.latest,
        }

    def set_state(self, state: dict[str, Any]) -> None:
        if int(state["window_s"]) != self.window_s or int(state["days"]) != self.days:
            logger.warning(
                "camera history checkpoint has window %ss over %s days, the stage %ss over %s "
                "days: starting with an empty history",
                state["window_s"],
                state["days"],
                self.window_s,
                self.days,
            )
            return
        self.values = np.array(state["values"], dtype=np.float32)
        self.windows = np.array(state["windows"], dtype=np.int64)
        self.first = int(state["first"])
        self.latest = int(state["latest"])


@dataclass(frozen=True, slots=True)
class Snapshot:
    values: F32Array  # (cameras, slots, features)
    windows: IntArray  # (cameras, slots), -1 = empty
    latest: int
    window_s: int


def _masked_median(sorted_x: F32Array, count: IntArray) -> F32Array:
    """Median along axis -2 of arrays sorted with the invalid entries (+inf) last."""
    lo = np.maximum((count - 1) // 2, 0)[..., None, :]
    hi = np.maximum(count // 2, 0)[..., None, :]
    a = np.take_along_axis(sorted_x, lo, axis=-2)[..., 0, :]
    b = np.take_along_axis(sorted_x, hi, axis=-2)[..., 0, :]
    return np.where(count > 0, (a + b) / 2, np.nan).astype(np.float32)


def robust_location_scale(
    x: F32Array, mask: npt.NDArray[np.bool_]
) -> tuple[F32Array, F32Array, IntArray]:
    """Median, 1.4826 × MAD and count along axis -2 of ``x`` (..., n, F) where ``mask`` (..., n)."""
    y = np.where(mask[..., None] & np.isfinite(x), x, np.inf).astype(np.float32)
    y.sort(axis=-2)
    count = np.isfinite(y).sum(axis=-2)
    med = _masked_median(y, count)
    dev = np.abs(y - np.where(np.isnan(med), 0, med)[..., None, :])
    dev.sort(axis=-2)
    mad = _masked_median(dev, count)
    return med, (MAD_TO_SIGMA * mad).astype(np.float32), count


@dataclass(frozen=True, slots=True)
class Profile:
    """Per camera, day type (0 weekday, 1 weekend) and time-of-day bin: median and spread."""

    median: F32Array  # (cameras, 2, bins, F)
    scale: F32Array  # (cameras, 2, bins, F), floored
    window_s: int
    bin_s: int

    def lookup(self, cams: IntArray, wins: IntArray) -> tuple[FloatArray, FloatArray]:
        n = cams.size
        med = np.full((n, len(FEATURES)), np.nan)
        scale = np.full((n, len(FEATURES)), np.nan)
        known = cams < self.median.shape[0]
        if known.any():
            daytype, tbin = time_bin(wins[known], self.window_s, self.bin_s)
            med[known] = self.median[cams[known], daytype, tbin]
            scale[known] = self.scale[cams[known], daytype, tbin]
        return med, scale

    def z(
        self, cams: IntArray, wins: IntArray, x: FloatArray
    ) -> tuple[FloatArray, FloatArray, FloatArray]:
        """Robust z-scores (0 where the value or the profile is missing), medians and spreads."""
        med, scale = self.lookup(cams, wins)
        with np.errstate(invalid="ignore", divide="ignore"):
            z = (np.asarray(x, dtype=np.float64) - med) / scale
        return (
            np.clip(np.nan_to_num(z, nan=0.0, posinf=0.0, neginf=0.0), -Z_CLIP, Z_CLIP),
            med,
            scale,
        )


def fit_profile(snap: Snapshot, min_samples: int = 6, bin_s: int = 1800) -> Profile:
    """Robust per-camera (day type, time-of-day bin) profiles from a history snapshot."""
    c, s, f = snap.values.shape
    w = snap.window_s
    if bin_s % w or 86_400 % bin_s:
        raise ValueError(f"bin_s={bin_s} must be a multiple of the window and divide a day")
    bins = 86_400 // bin_s
    valid = (snap.windows >= 0) & (snap.windows > snap.latest - s)
    # the slot of a window fixes its local time of day (slots span whole days)
    slot_ids = np.arange(s)
    bin_of_slot = ((slot_ids + TZ_OFFSET_S // w) % (86_400 // w)) // (bin_s // w)
    order = np.argsort(bin_of_slot, kind="stable").reshape(bins, s // bins)
    x = snap.values[:, order, :]  # (c, bins, n, f)
    v = valid[:, order]
    weekend = time_bin(snap.windows, w, bin_s)[0].astype(bool)[:, order]

    med_all, sc_all, n_all = robust_location_scale(x, v)  # (c, bins, f)
    med_cam, sc_cam, _ = robust_location_scale(snap.values, valid)  # (c, f)
    med = np.empty((c, 2, bins, f), np.float32)
    scale = np.empty((c, 2, bins, f), np.float32)
    for d in (0, 1):
        m_d, s_d, n_d = robust_location_scale(x, v & (weekend == bool(d)))
        use_hour = n_d >= min_samples
        use_all = ~use_hour & (n_all >= min_samples)
        med[:, d] = np.where(use_hour, m_d, np.where(use_all, med_all, med_cam[:, None, :]))
        scale[:, d] = np.where(use_hour, s_d, np.where(use_all, sc_all, sc_cam[:, None, :]))
    floor = np.maximum(SCALE_FLOOR, SCALE_REL_FLOOR * np.abs(np.nan_to_num(med)))
    scale = np.where(np.isnan(scale), np.nan, np.maximum(scale, floor)).astype(np.float32)
    return Profile(med, scale, w, bin_s)


@dataclass(frozen=True, slots=True)
class Verdict:
    """The model's view of many windows."""

    score: FloatArray  # isolation score in [0, 1], higher = more anomalous
    z: FloatArray  # (n, F) robust z-scores
    norm: FloatArray  # ‖z‖
    median: FloatArray  # (n, F) usual value for that camera, day type and hour
    scale: FloatArray  # (n, F)
    anomalous: npt.NDArray[np.bool_]
    known: npt.NDArray[np.bool_]  # the camera had a profile for that hour


@dataclass(frozen=True, slots=True)
class CameraModel:
    profile: Profile
    forest: IsolationForest
    threshold: float
    z_min: float
    version: int
    fitted_through: int  # last window of the history it was fitted on
    n_train: int

    def judge(self, cams: IntArray, wins: IntArray, x: FloatArray) -> Verdict:
        z, med, scale = self.profile.z(cams, wins, x)
        known = ~np.isnan(med[:, SPEED]) | ~np.isnan(med[:, OCCUPANCY])
        score = np.zeros(cams.size)
        if cams.size:
            score = -self.forest.score_samples(z)
        norm = np.sqrt((z * z).sum(axis=1))
        anomalous = known & (score >= self.threshold) & (norm >= self.z_min)
        return Verdict(score, z, norm, med, scale, anomalous, known)


def fit_model(
    snap: Snapshot,
    *,
    version: int,
    seed: int = 0,
    quantile: float = 0.995,
    z_min: float = 16.0,
    n_estimators: int = 100,
    max_train: int = 50_000,
    min_samples: int = 6,
    bin_s: int = 1800,
) -> CameraModel | None:
    """Profiles plus an IsolationForest on the pooled z-vectors; None if history is too thin."""
    profile = fit_profile(snap, min_samples, bin_s)
    valid = (snap.windows >= 0) & (snap.windows > snap.latest - snap.windows.shape[1])
    cams, slots = np.nonzero(valid)
    if cams.size < 50:
        return None
    rng = np.random.default_rng(seed)
    if cams.size > max_train:
        pick = np.sort(rng.choice(cams.size, size=max_train, replace=False))
        cams, slots = cams[pick], slots[pick]
    wins = snap.windows[cams, slots]
    z, _, _ = profile.z(cams.astype(np.int64), wins, snap.values[cams, slots].astype(np.float64))
    forest = IsolationForest(
        n_estimators=n_estimators, max_samples=min(256, z.shape[0]), random_state=seed
    )
    forest.fit(z)
    calib = z if z.shape[0] <= 20_000 else z[rng.choice(z.shape[0], size=20_000, replace=False)]
    train_scores = -forest.score_samples(calib)
    threshold = float(np.quantile(train_scores, quantile))
    return CameraModel(profile, forest, threshold, z_min, version, snap.latest, int(z.shape[0]))
