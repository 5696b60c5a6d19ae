"""Air-quality indices: Vietnam's VN_AQI (Decision 1459/QĐ-TCMT, 2019) and the US EPA AQI (2024).

The scale's categories and breakpoint tables are in ``aqi_tables`` (re-exported here).

Everything here is vectorised over many stations at once: a breakpoint table
interpolates a whole array of concentrations with ``np.searchsorted``, and the
NowCast, hourly and daily indices take windows of hourly means shaped
``(stations, pollutants, hours)`` with the pollutant axis in ``POLLUTANTS``
order and **hour 0 the most recent** (hour ``i`` is ``i`` hours earlier).  A
missing hour is ``NaN``.  Concentrations are in µg/m³ throughout, as the metric
catalogue stores them; the US index converts gases to ppb/ppm at 25 °C.

VN_AQI (Decision 1459/QĐ-TCMT, section 2.2):

* hourly (AQI^h): PM2.5 and PM10 from the NowCast of the last 12 hourly means
  (w* = Cmin/Cmax, w = max(w*, 1/2), NowCast = Σ w^(i-1) c_i / Σ w^(i-1); only
  when at least 2 of the 3 most recent hours have data; a missing c_i gets weight
  0); O3 (1-h table), NO2, CO and SO2 from the current hourly mean;
* daily (AQI^d): PM from the 24-h mean, O3 from both the day's highest 1-h mean
  (1-h table) and highest 8-h mean (8-h table, not used above 400 µg/m³), NO2,
  CO and SO2 from the day's highest 1-h mean;
* the index is the highest sub-index, rounded to an integer (half up), and only
  exists when PM2.5 or PM10 is available.

The decision names no completeness rule for the 24-h and 8-h means; we require
``min_daily_hours`` (18 of 24, as the US and QCVN practice) and 6 of 8 hours.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from numpy.lib.stride_tricks import sliding_window_view

from analytics.stages.aqi_tables import CATEGORIES as CATEGORIES
from analytics.stages.aqi_tables import US_TABLES as US_TABLES
from analytics.stages.aqi_tables import VN_TABLES as VN_TABLES
from analytics.stages.aqi_tables import Breakpoints as Breakpoints
from analytics.stages.aqi_tables import Category as Category
from analytics.stages.aqi_tables import category_index as category_index
from analytics.stages.aqi_tables import round_half_up as round_half_up
from analytics.stages.aqi_tables import ugm3_to_ppb as ugm3_to_ppb

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

POLLUTANTS: tuple[str, ...] = ("pm25", "pm10", "o3", "no2", "co", "so2")
PM25, PM10, O3, NO2, CO, SO2 = range(6)
LABELS: tuple[str, ...] = ("PM2.5", "PM10", "O3", "NO2", "CO", "SO2")

# ---------------------------------------------------------------------------
# windows of hourly means


def _mean_valid(x: FloatArray, min_count: int) -> FloatArray:
    """Mean over the last axis ignoring NaN; NaN where fewer than ``min_count`` values."""
    valid = ~np.isnan(x)
    n = valid.sum(axis=-1)
    s = np.where(valid, x, 0.0).sum(axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n >= min_count, s / np.maximum(n, 1), np.nan)


def _max_valid(x: FloatArray, min_count: int = 1) -> FloatArray:
    valid = ~np.isnan(x)
    m = np.where(valid, x, -np.inf).max(axis=-1)
    return np.where(valid.sum(axis=-1) >= min_count, m, np.nan)


def nowcast(c: FloatArray) -> FloatArray:
    """NowCast of rows of hourly means, ``c[:, 0]`` the current hour, up to 12 hours used.

    NaN where fewer than 2 of the 3 most recent hours have data.
    """
    c = np.asarray(c, dtype=np.float64)[..., :12]
    valid = ~np.isnan(c)
    ok = valid[..., :3].sum(axis=-1) >= 2
    cmin = np.where(valid, c, np.inf).min(axis=-1)
    cmax = np.where(valid, c, -np.inf).max(axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        w_star = np.where(cmax > 0, cmin / np.where(cmax > 0, cmax, 1.0), 1.0)
    w = np.where(w_star <= 0.5, 0.5, w_star)
    weights = np.where(valid, w[..., None] ** np.arange(c.shape[-1]), 0.0)
    total = weights.sum(axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        value = (weights * np.where(valid, c, 0.0)).sum(axis=-1) / total
    return np.where(ok & (total > 0), value, np.nan)


def rolling_8h(c: FloatArray, hours: int, min_count: int = 6) -> FloatArray:
    """8-h means ending at each of the ``hours`` most recent hours (needs ``hours + 7`` columns)."""
    win = sliding_window_view(np.asarray(c, dtype=np.float64)[..., : hours + 7], 8, axis=-1)
    return _mean_valid(win, min_count)


@dataclass(frozen=True, slots=True)
class IndexResult:
    """Per station: the index (rounded, NaN if not computable) and what it is made of."""

    aqi: FloatArray  # (n,)
    sub: FloatArray  # (n, 6) unrounded sub-indices, NaN where not computable
    conc: FloatArray  # (n, 6) the concentration each sub-index used (µg/m³)

    @property
    def dominant(self) -> IntArray:
        """Pollutant index of the highest sub-index (``-1`` where there is none)."""
        s = np.where(np.isnan(self.sub), -np.inf, self.sub)
        return np.where(np.isnan(self.aqi), -1, s.argmax(axis=-1)).astype(np.int64)


def _finish(sub: FloatArray, conc: FloatArray, need_pm: bool) -> IndexResult:
    top = np.fmax.reduce(sub, axis=-1)
    if need_pm:
        top = np.where(np.isnan(sub[:, PM25]) & np.isnan(sub[:, PM10]), np.nan, top)
    return IndexResult(round_half_up(top), sub, conc)


def vn_hourly(win: FloatArray) -> IndexResult:
    """VN_AQI^h from windows of hourly means ``(n, 6, >=12)`` (hour 0 = the hour being rated)."""
    win = np.asarray(win, dtype=np.float64)
    conc = win[:, :, 0].copy()
    conc[:, PM25] = nowcast(win[:, PM25, :12])
    conc[:, PM10] = nowcast(win[:, PM10, :12])
    sub = np.stack(
        [
            VN_TABLES["pm25"].index(conc[:, PM25]),
            VN_TABLES["pm10"].index(conc[:, PM10]),
            VN_TABLES["o3_1h"].index(conc[:, O3]),
            VN_TABLES["no2"].index(conc[:, NO2]),
            VN_TABLES["co"].index(conc[:, CO]),
            VN_TABLES["so2"].index(conc[:, SO2]),
        ],
        axis=-1,
    )
    return _finish(sub, conc, need_pm=True)


@dataclass(frozen=True, slots=True)
class DailyInputs:
    """The day's statistics Decision 1459 section 2.2.2 rates (µg/m³), one row per station."""

    pm25_24h: FloatArray
    pm10_24h: FloatArray
    o3_max_1h: FloatArray
    o3_max_8h: FloatArray
    no2_max_1h: FloatArray
    co_max_1h: FloatArray
    so2_max_1h: FloatArray


def vn_daily_inputs(win: FloatArray, min_hours: int = 18) -> DailyInputs:
    """Daily statistics from ``(n, 6, 31)`` hourly means: hours 0-23 the day (0 = its last hour),
    24-30 the 7 hours before it (for the 8-h O3 means that end in the first hours of the day)."""
    win = np.asarray(win, dtype=np.float64)
    day = win[:, :, :24]
    return DailyInputs(
        pm25_24h=_mean_valid(day[:, PM25], min_hours),
        pm10_24h=_mean_valid(day[:, PM10], min_hours),
        o3_max_1h=_max_valid(day[:, O3], min_hours),
        o3_max_8h=_max_valid(rolling_8h(win[:, O3], 24), min_hours),
        no2_max_1h=_max_valid(day[:, NO2], min_hours),
        co_max_1h=_max_valid(day[:, CO], min_hours),
        so2_max_1h=_max_valid(day[:, SO2], min_hours),
    )


def vn_daily(d: DailyInputs) -> IndexResult:
    """VN_AQI^d (Decision 1459 section 2.2.2): the 8-h O3 table is not used above 400 µg/m³."""
    o3_8h = VN_TABLES["o3_8h"].index(d.o3_max_8h)  # NaN above 400 by the table
    o3_1h = VN_TABLES["o3_1h"].index(d.o3_max_1h)
    o3 = np.fmax(o3_8h, o3_1h)
    o3_conc = np.where(
        np.nan_to_num(o3_8h, nan=-1.0) >= np.nan_to_num(o3_1h, nan=-1.0), d.o3_max_8h, d.o3_max_1h
    )
    sub = np.stack(
        [
            VN_TABLES["pm25"].index(d.pm25_24h),
            VN_TABLES["pm10"].index(d.pm10_24h),
            o3,
            VN_TABLES["no2"].index(d.no2_max_1h),
            VN_TABLES["co"].index(d.co_max_1h),
            VN_TABLES["so2"].index(d.so2_max_1h),
        ],
        axis=-1,
    )
    conc = np.stack(
        [d.pm25_24h, d.pm10_24h, o3_conc, d.no2_max_1h, d.co_max_1h, d.so2_max_1h], axis=-1
    )
    return _finish(sub, conc, need_pm=True)


def us_hourly(win: FloatArray, min_24h: int = 18) -> IndexResult:
    """US AQI for the hour, as AirNow reports hourly: NowCast for PM, 8-h means for O3 and CO.

    ``win``: ``(n, 6, >=24)`` hourly means in µg/m³, hour 0 the hour being rated.
    O3: the 8-h table up to 0.200 ppm, the 1-h table from 0.125 ppm, the higher
    of the two.  SO2: the 1-h table up to 304 ppb; from 305 ppb the 24-h mean on
    the 24-h table (index 200 if that mean is lower or unknown).
    """
    win = np.asarray(win, dtype=np.float64)
    pm25 = nowcast(win[:, PM25, :12])
    pm10 = nowcast(win[:, PM10, :12])
    o3_8h = _mean_valid(win[:, O3, :8], 6)
    co_8h = _mean_valid(win[:, CO, :8], 6)
    so2_24h_ppb = ugm3_to_ppb(_mean_valid(win[:, SO2, :24], min_24h), "so2")
    so2_1h_ppb = ugm3_to_ppb(win[:, SO2, 0], "so2")
    o3_sub = np.fmax(
        US_TABLES["o3_8h"].index(ugm3_to_ppb(o3_8h, "o3") / 1000.0),
        US_TABLES["o3_1h"].index(ugm3_to_ppb(win[:, O3, 0], "o3") / 1000.0),
    )
    so2_sub = US_TABLES["so2_1h"].index(so2_1h_ppb)
    high_so2 = np.floor(np.nan_to_num(so2_1h_ppb, nan=0.0)) >= 305
    so2_sub = np.where(high_so2, np.fmax(US_TABLES["so2_24h"].index(so2_24h_ppb), 200.0), so2_sub)
    sub = np.stack(
        [
            US_TABLES["pm25"].index(pm25),
            US_TABLES["pm10"].index(pm10),
            o3_sub,
            US_TABLES["no2"].index(ugm3_to_ppb(win[:, NO2, 0], "no2")),
            US_TABLES["co_8h"].index(ugm3_to_ppb(co_8h, "co") / 1000.0),
            so2_sub,
        ],
        axis=-1,
    )
    conc = np.stack([pm25, pm10, o3_8h, win[:, NO2, 0], co_8h, win[:, SO2, 0]], axis=-1)
    res = _finish(sub, conc, need_pm=False)
    # a station that measured PM this hour but has no NowCast yet (fewer than 2 of the last
    # 3 hours) gets no index: the gases alone would rate pm25 87.5 as AQI 20
    pm_pending = (~np.isnan(win[:, PM25, 0]) & np.isnan(pm25)) | (
        ~np.isnan(win[:, PM10, 0]) & np.isnan(pm10)
    )
    return IndexResult(np.where(pm_pending, np.nan, res.aqi), res.sub, res.conc)
