"""Forest-fire weather danger: the Nesterov index as Vietnam's Forest Protection Department uses it.

The index is cumulative over the dry spell:

    P = Σ over the days since the last rain of k · T13 · D13

``T13`` is the air temperature (°C) at 13:00 local time and ``D13`` the
*saturation deficit* (hPa) at 13:00, ``E(T13) − e`` with ``E`` the saturation
vapour pressure (Magnus formula) and ``e = E · RH / 100``.  A day with at least
5 mm of rain has ``k = 0``: the sum starts again from zero.  The Forest
Protection Department (Cục Kiểm lâm) reads five danger levels from ``P``:

=====  ===============  ======================  ================
level  P                meaning                 ``fire_risk``
=====  ===============  ======================  ================
I      ≤ 1 000          fire unlikely           0-20
II     1 001-2 500      low danger              20-40
III    2 501-5 000      medium danger           40-60
IV     5 001-10 000     high danger             60-80
V      > 10 000         extreme danger          80-100
=====  ===============  ======================  ================

``fire_risk`` (0-100 in the metric catalogue) interpolates ``P`` linearly
inside each level (P = 20 000 and beyond is 100).  ``method="nesterov"`` gives
the original Soviet formulation instead: ``T13 · (T13 − Td13)`` with the dew
point ``Td``, reset by more than 3 mm of rain, levels at 300 / 1 000 / 4 000 /
10 000.

Nesterov's index has no wind term.  Wind fans a fire that starts, so we add one
adjustment of our own (not part of the Forest Protection Department method):
when the 13:00 wind is at least ``wind_boost_ms`` the level goes up by one (and
``fire_risk`` by 20), up to level V.  Set ``wind_boost_ms=None`` to turn it off.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

Method = Literal["vn", "nesterov"]

LEVEL_NAMES: tuple[str, ...] = ("I", "II", "III", "IV", "V")
LEVEL_MEANING: tuple[str, ...] = ("fire unlikely", "low", "medium", "high", "extreme")
LEVEL_MEANING_VI: tuple[str, ...] = (
    "ít có khả năng cháy",
    "nguy cơ cháy thấp",
    "nguy cơ cháy trung bình",
    "nguy cơ cháy cao",
    "nguy cơ cháy rất cao",
)

# Magnus formula over water (Sonntag 1990 / WMO constants): E in hPa, T in °C
MAGNUS_A = 17.62
MAGNUS_B = 243.12
MAGNUS_E0 = 6.112


@dataclass(frozen=True, slots=True)
class MethodSpec:
    thresholds: tuple[float, float, float, float]  # upper bounds of levels I-IV
    rain_reset_mm: float  # a day with at least this much rain resets the sum
    reset_inclusive: bool  # True: rain >= threshold resets; False: rain > threshold


METHODS: dict[str, MethodSpec] = {
    "vn": MethodSpec((1_000.0, 2_500.0, 5_000.0, 10_000.0), 5.0, True),
    "nesterov": MethodSpec((300.0, 1_000.0, 4_000.0, 10_000.0), 3.0, False),
}


def saturation_vapour_pressure(t: FloatArray) -> FloatArray:
    """Saturation vapour pressure over water (hPa) at ``t`` °C (Magnus)."""
    t = np.asarray(t, dtype=np.float64)
    return MAGNUS_E0 * np.exp(MAGNUS_A * t / (MAGNUS_B + t))


def dew_point(t: FloatArray, rh: FloatArray) -> FloatArray:
    """Dew point (°C) from temperature (°C) and relative humidity (%), Magnus formula."""
    t = np.asarray(t, dtype=np.float64)
    rh = np.clip(np.asarray(rh, dtype=np.float64), 0.1, 100.0)
    g = np.log(rh / 100.0) + MAGNUS_A * t / (MAGNUS_B + t)
    return MAGNUS_B * g / (MAGNUS_A - g)


def saturation_deficit(t: FloatArray, rh: FloatArray) -> FloatArray:
    """``E(T) − e`` in hPa: how much more water vapour the air could hold."""
    rh = np.clip(np.asarray(rh, dtype=np.float64), 0.0, 100.0)
    return saturation_vapour_pressure(t) * (1.0 - rh / 100.0)


def daily_term(t13: FloatArray, rh13: FloatArray, method: Method = "vn") -> FloatArray:
    """One dry day's contribution to P (never negative; NaN where T or RH is missing)."""
    t = np.asarray(t13, dtype=np.float64)
    deficit = saturation_deficit(t, rh13) if method == "vn" else t - dew_point(t, rh13)
    term = t * deficit
    return np.where(np.isnan(term), np.nan, np.maximum(term, 0.0))


def resets(rain_mm: FloatArray, method: Method = "vn") -> npt.NDArray[np.bool_]:
    """True where a day's rain ends the dry spell."""
    spec = METHODS[method]
    r = np.asarray(rain_mm, dtype=np.float64)
    return r >= spec.rain_reset_mm if spec.reset_inclusive else r > spec.rain_reset_mm


def level(p: FloatArray, method: Method = "vn") -> IntArray:
    """Danger level 1-5 (I-V) of index values ``p``."""
    edges = np.asarray(METHODS[method].thresholds)
    return (np.searchsorted(edges, np.asarray(p, dtype=np.float64), side="left") + 1).astype(
        np.int64
    )


def risk_score(p: FloatArray, method: Method = "vn") -> FloatArray:
    """``fire_risk`` 0-100: P interpolated inside its level (level L spans 20(L-1)..20L)."""
    t = METHODS[method].thresholds
    xs = np.array([0.0, *t, 2.0 * t[-1]])
    ys = np.array([0.0, 20.0, 40.0, 60.0, 80.0, 100.0])
    return np.asarray(np.interp(np.asarray(p, dtype=np.float64), xs, ys), dtype=np.float64)


@dataclass(frozen=True, slots=True)
class Danger:
    """The rating of one day at many stations."""

    p: FloatArray  # the index after this day
    level: IntArray  # 1-5 after the wind adjustment
    risk: FloatArray  # fire_risk 0-100 after the wind adjustment
    dry_days: IntArray  # days since the last rain that reset the index
    wind_boost: npt.NDArray[np.bool_]


def step(
    p_before: FloatArray,
    dry_before: IntArray,
    t13: FloatArray,
    rh13: FloatArray,
    rain_mm: FloatArray,
    wind13: FloatArray,
    *,
    method: Method = "vn",
    wind_boost_ms: float | None = 5.0,
) -> Danger:
    """Advance the index by one day for many stations.

    A rainy day resets P to 0.  A dry day adds its term; when T or RH at 13:00
    is missing the day adds nothing (P is carried).
    """
    reset = resets(rain_mm, method)
    term = np.nan_to_num(daily_term(t13, rh13, method), nan=0.0)
    p = np.where(reset, 0.0, np.asarray(p_before, dtype=np.float64) + term)
    dry = np.where(reset, 0, np.asarray(dry_before, dtype=np.int64) + 1)
    lv = level(p, method)
    risk = risk_score(p, method)
    boost = np.zeros(p.shape, dtype=bool)
    if wind_boost_ms is not None:
        w = np.nan_to_num(np.asarray(wind13, dtype=np.float64), nan=0.0)
        boost = (w >= wind_boost_ms) & (p > 0)
        lv = np.where(boost, np.minimum(lv + 1, 5), lv)
        risk = np.where(boost, np.minimum(risk + 20.0, 100.0), risk)
    return Danger(p, lv.astype(np.int64), risk, dry.astype(np.int64), boost)
