"""The time to the next stage: a trend over recent readings, a daily profile and rain, for many series at once.

Pure numpy over rows of series (one row per series, the newest reading of each):

* ``fit_trend``: least squares line through the last readings of each row (the
  deviations from the daily profile where one is known), its slope, the slope's
  standard error and the fitted value now. Robust enough for the purpose: a single
  spike moves the slope little against a window of 20 readings, and a warning also
  needs several readings in a row to agree (the stage's ``confirm``).
* ``profile_at``: a daily profile of 48 half-hour bins in local time, linearly
  interpolated between bin centres.
* ``rain_rise``: the street's drains as a linear reservoir: rain stored on the
  street (mm) fades with the drains' time constant; what is stored beyond their
  capacity stands on the road, ``gain`` cm per mm. The current intensity (plus its
  rise over the last minutes: a storm still building) is assumed to continue.
* ``crossing``: the first lead time on a grid at which the projection reaches the
  level, interpolated between grid points (``inf``: not within the grid).

The projection of a row: fitted value now + damped trend ``b·T·(1 − e^(−τ/T))`` +
the profile's change from now to ``now + τ`` (+ for water, the larger of the trend
and the rain's rise). Damping (the Holt damped trend in continuous time) keeps a
short burst from being extrapolated for hours.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from analytics.engine.base import FloatArray
from core.types import UTC_OFFSET_S

PROFILE_BINS = 48
BIN_S = 86_400.0 / PROFILE_BINS


@dataclass(frozen=True, slots=True)
class Trend:
    """Per row: slope (unit/s), its standard error, the fitted value now, and readings used."""

    slope: FloatArray
    se: FloatArray
    now: FloatArray
    n: FloatArray

    @property
    def t_stat(self) -> FloatArray:
        with np.errstate(divide="ignore", invalid="ignore"):
            t = self.slope / self.se
        return np.where(np.isfinite(t), t, np.where(self.slope > 0, np.inf, 0.0))


def fit_trend(times: FloatArray, values: FloatArray, now: FloatArray) -> Trend:
    """Least squares per row of ``(rows, k)`` arrays (NaN: no reading) about ``now`` (rows)."""
    ok = np.isfinite(values) & np.isfinite(times)
    n = ok.sum(axis=1).astype(np.float64)
    dt = np.where(ok, times - now[:, None], 0.0)
    x = np.where(ok, values, 0.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        mt = dt.sum(axis=1) / n
        mx = x.sum(axis=1) / n
        ct = np.where(ok, dt - mt[:, None], 0.0)
        cx = np.where(ok, x - mx[:, None], 0.0)
        stt = (ct * ct).sum(axis=1)
        slope = (ct * cx).sum(axis=1) / stt
        fitted_now = mx - slope * mt
        resid = np.where(ok, cx - slope[:, None] * ct, 0.0)
        s2 = (resid * resid).sum(axis=1) / (n - 2.0)
        se = np.sqrt(s2 / stt)
    bad = (n < 3) | ~np.isfinite(slope)
    return Trend(
        slope=np.where(bad, 0.0, slope),
        se=np.where(bad, np.inf, se),
        now=np.where(bad, np.nan, fitted_now),
        n=n,
    )


def profile_at(profile: FloatArray, times: FloatArray) -> FloatArray:
    """The daily profile ``(rows, 48)`` at ``times`` (``(rows,)`` or ``(rows, k)``), interpolated."""
    times = np.nan_to_num(times)  # a ring's empty places: any bin (their values are NaN)
    u = ((times + UTC_OFFSET_S) % 86_400.0) / BIN_S - 0.5
    lo = np.floor(u)
    w = u - lo
    i0 = lo.astype(np.int64) % PROFILE_BINS
    i1 = (i0 + 1) % PROFILE_BINS
    rows = np.arange(profile.shape[0]).reshape((-1,) + (1,) * (times.ndim - 1))
    return np.asarray(profile[rows, i0] * (1.0 - w) + profile[rows, i1] * w, dtype=np.float64)


def profile_bin(times: FloatArray) -> FloatArray:
    """The profile bin of each time (local half hours)."""
    return np.asarray(((times + UTC_OFFSET_S) % 86_400.0) // BIN_S, dtype=np.int64)


def damped(slope: FloatArray, damping_s: FloatArray, lead: FloatArray) -> FloatArray:
    """The rise ``(rows, grid)`` of a damped trend of ``slope`` (unit/s) after ``lead`` seconds.

    ``damping_s`` (per row) is the trend's time constant: the rise tends to ``slope × damping_s``.
    """
    d = damping_s[:, None]
    return np.asarray(slope[:, None] * d * -np.expm1(-lead[None, :] / d), dtype=np.float64)


def rain_rise(
    stored_mm: FloatArray,
    intensity_mm_h: FloatArray,
    lead: FloatArray,
    *,
    tau_s: float,
    capacity_mm: float,
    gain_cm_per_mm: float,
) -> FloatArray:
    """The rise ``(rows, grid)`` of standing water if the rain goes on at ``intensity_mm_h``."""
    decay = np.exp(-lead[None, :] / tau_s)
    inflow = intensity_mm_h[:, None] / 3600.0 * tau_s * (1.0 - decay)
    future = stored_mm[:, None] * decay + inflow
    standing_now = np.maximum(stored_mm - capacity_mm, 0.0)
    standing = np.maximum(future - capacity_mm, 0.0)
    return np.asarray(gain_cm_per_mm * (standing - standing_now[:, None]), dtype=np.float64)


def crossing(projection: FloatArray, level: FloatArray, lead: FloatArray) -> FloatArray:
    """The first lead (s) at which each row's projection reaches its level; ``inf`` if none.

    ``projection`` is ``(rows, grid)`` at the leads ``lead`` (ascending, from 0); the
    crossing between two grid points is interpolated linearly.
    """
    above = projection >= level[:, None]
    first = np.argmax(above, axis=1)
    hit = above.any(axis=1)
    rows = np.arange(projection.shape[0])
    before = np.maximum(first - 1, 0)
    prev_val = projection[rows, before]
    cur_val = projection[rows, first]
    with np.errstate(divide="ignore", invalid="ignore"):
        frac = np.clip((level - prev_val) / (cur_val - prev_val), 0.0, 1.0)
    frac = np.where(np.isfinite(frac) & (first > 0), frac, 1.0)
    eta = lead[before] + frac * (lead[first] - lead[before])
    return np.where(hit, eta, np.inf)
