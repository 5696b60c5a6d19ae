"""Air-quality indices: Vietnam's VN_AQI (Decision 1459/QĐ-TCMT, 2019) and the US EPA AQI (2024).

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

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from numpy.lib.stride_tricks import sliding_window_view

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

POLLUTANTS: tuple[str, ...] = ("pm25", "pm10", "o3", "no2", "co", "so2")
PM25, PM10, O3, NO2, CO, SO2 = range(6)
LABELS: tuple[str, ...] = ("PM2.5", "PM10", "O3", "NO2", "CO", "SO2")

# molar masses (g/mol) for µg/m³ -> ppb at 25 °C and 1 atm: ppb = µg/m³ × 24.45 / M
MOLAR_VOLUME_25C = 24.45
MOLAR_MASS = {"o3": 48.00, "no2": 46.0055, "co": 28.010, "so2": 64.066}


@dataclass(frozen=True, slots=True)
class Category:
    """One band of the 0-500 scale (the same six bands and colours for VN_AQI and the US AQI)."""

    index: int
    low: int
    high: int
    name: str  # English
    name_vi: str  # Vietnamese, as Decision 1459 table 1 names it
    rgb: tuple[int, int, int]
    health: str  # what it means for people (Decision 1459 table 4, in English)

    @property
    def colour(self) -> str:
        return "#{:02x}{:02x}{:02x}".format(*self.rgb)


CATEGORIES: tuple[Category, ...] = (
    Category(0, 0, 50, "Good", "Tốt", (0, 228, 0), "good air, no effect on health"),
    Category(
        1,
        51,
        100,
        "Moderate",
        "Trung bình",
        (255, 255, 0),
        "acceptable; sensitive people (elderly, children, heart or lung disease) may feel effects",
    ),
    Category(
        2,
        101,
        150,
        "Unhealthy for sensitive groups",
        "Kém",
        (255, 126, 0),
        "sensitive people have health problems; others are little affected",
    ),
    Category(
        3,
        151,
        200,
        "Unhealthy",
        "Xấu",
        (255, 0, 0),
        "everyone starts to feel effects; sensitive people may have serious problems",
    ),
    Category(
        4,
        201,
        300,
        "Very unhealthy",
        "Rất xấu",
        (143, 63, 151),
        "health alert: everyone may have more serious effects",
    ),
    Category(
        5,
        301,
        500,
        "Hazardous",
        "Nguy hại",
        (126, 0, 35),
        "health emergency: the whole population is seriously affected",
    ),
)
_CATEGORY_LOWS = np.array([c.low for c in CATEGORIES[1:]], dtype=np.float64)


def category_index(aqi: FloatArray | float) -> IntArray:
    """Band index 0-5 of rounded AQI values (``-1`` where the AQI is NaN)."""
    a = np.asarray(aqi, dtype=np.float64)
    idx = np.searchsorted(_CATEGORY_LOWS, a, side="right").astype(np.int64)
    return np.where(np.isnan(a), -1, idx)


def round_half_up(x: FloatArray) -> FloatArray:
    """Round to an integer, halves up (Decision 1459: 'làm tròn thành số nguyên')."""
    return np.floor(np.asarray(x, dtype=np.float64) + 0.5)


@dataclass(frozen=True, slots=True)
class Breakpoints:
    """A breakpoint table: segment k maps [c_lo[k], c_hi[k]] linearly onto [i_lo[k], i_hi[k]].

    ``decimals``: concentrations are truncated to this many decimals first (EPA);
    ``above``: the index for concentrations past the last segment (500, or NaN
    where the table does not apply); below the first segment the index is NaN
    unless the table starts at 0.
    """

    c_lo: FloatArray
    c_hi: FloatArray
    i_lo: FloatArray
    i_hi: FloatArray
    decimals: int | None = None
    above: float = 500.0

    @classmethod
    def continuous(
        cls, bp: Sequence[float], index: Sequence[float], above: float = 500.0
    ) -> Breakpoints:
        """A Decision 1459 table: BP_i with I_i, consecutive levels sharing their edge."""
        b = np.asarray(bp, dtype=np.float64)
        i = np.asarray(index, dtype=np.float64)
        return cls(b[:-1], b[1:], i[:-1], i[1:], None, above)

    @classmethod
    def segments(
        cls, rows: Sequence[tuple[float, float, float, float]], decimals: int, above: float = 500.0
    ) -> Breakpoints:
        """An EPA table: rows of (C_lo, C_hi, I_lo, I_hi)."""
        a = np.asarray(rows, dtype=np.float64)
        return cls(a[:, 0], a[:, 1], a[:, 2], a[:, 3], decimals, above)

    def index(self, conc: FloatArray | float) -> FloatArray:
        """Sub-index of each concentration (NaN stays NaN), unrounded."""
        c = np.maximum(np.asarray(conc, dtype=np.float64), 0.0)
        if self.decimals is not None:
            scale = 10.0**self.decimals
            c = np.floor(np.round(c * scale, 6)) / scale
        k = np.clip(np.searchsorted(self.c_lo, c, side="right") - 1, 0, self.c_lo.size - 1)
        lo, hi = self.c_lo[k], self.c_hi[k]
        out = self.i_lo[k] + (self.i_hi[k] - self.i_lo[k]) / (hi - lo) * (c - lo)
        out = np.where(c > self.c_hi[-1], self.above, out)
        out = np.where(c < self.c_lo[0], np.nan, out)
        return np.where(np.isnan(c), np.nan, out)


_I = [0, 50, 100, 150, 200, 300, 400, 500]
# Decision 1459/QĐ-TCMT, table 2 (µg/m³); the last column of each row is "≥" (index 500)
VN_TABLES: dict[str, Breakpoints] = {
    "o3_1h": Breakpoints.continuous([0, 160, 200, 300, 400, 800, 1000, 1200], _I),
    "o3_8h": Breakpoints.continuous([0, 100, 120, 170, 210, 400], _I[:6], above=np.nan),
    "co": Breakpoints.continuous([0, 10_000, 30_000, 45_000, 60_000, 90_000, 120_000, 150_000], _I),
    "so2": Breakpoints.continuous([0, 125, 350, 550, 800, 1600, 2100, 2630], _I),
    "no2": Breakpoints.continuous([0, 100, 200, 700, 1200, 2350, 3100, 3850], _I),
    "pm10": Breakpoints.continuous([0, 50, 150, 250, 350, 420, 500, 600], _I),
    "pm25": Breakpoints.continuous([0, 25, 50, 80, 150, 250, 350, 500], _I),
}

_BANDS = [(0, 50), (51, 100), (101, 150), (151, 200), (201, 300), (301, 500)]


def _epa(
    edges: list[tuple[float, float]], decimals: int, bands: list[tuple[int, int]] = _BANDS
) -> Breakpoints:
    rows = [(lo, hi, ilo, ihi) for (lo, hi), (ilo, ihi) in zip(edges, bands, strict=True)]
    return Breakpoints.segments(rows, decimals)


# US EPA Technical Assistance Document, May 2024 (PM2.5 NAAQS revision of 7 Feb 2024):
# PM in µg/m³, O3 and CO in ppm, NO2 and SO2 in ppb.
US_TABLES: dict[str, Breakpoints] = {
    "pm25": _epa(
        [(0.0, 9.0), (9.1, 35.4), (35.5, 55.4), (55.5, 125.4), (125.5, 225.4), (225.5, 325.4)], 1
    ),
    "pm10": _epa([(0, 54), (55, 154), (155, 254), (255, 354), (355, 424), (425, 604)], 0),
    "o3_8h": Breakpoints.segments(
        [
            (0.000, 0.054, 0, 50),
            (0.055, 0.070, 51, 100),
            (0.071, 0.085, 101, 150),
            (0.086, 0.105, 151, 200),
            (0.106, 0.200, 201, 300),
        ],
        3,
        above=np.nan,  # above 0.200 ppm the 1-hour table is used
    ),
    "o3_1h": Breakpoints.segments(
        [
            (0.125, 0.164, 101, 150),
            (0.165, 0.204, 151, 200),
            (0.205, 0.404, 201, 300),
            (0.405, 0.604, 301, 500),
        ],
        3,
    ),
    "co_8h": _epa(
        [(0.0, 4.4), (4.5, 9.4), (9.5, 12.4), (12.5, 15.4), (15.5, 30.4), (30.5, 50.4)], 1
    ),
    "so2_1h": Breakpoints.segments(
        [(0, 35, 0, 50), (36, 75, 51, 100), (76, 185, 101, 150), (186, 304, 151, 200)],
        0,
        above=np.nan,  # from 305 ppb the 24-hour table is used
    ),
    "so2_24h": Breakpoints.segments([(305, 604, 201, 300), (605, 1004, 301, 500)], 0),
    "no2": _epa([(0, 53), (54, 100), (101, 360), (361, 649), (650, 1249), (1250, 2049)], 0),
}


def ugm3_to_ppb(conc: FloatArray, pollutant: str) -> FloatArray:
    """µg/m³ -> ppb at 25 °C and 1 atm (divide by 1000 for ppm)."""
    return np.asarray(conc, dtype=np.float64) * (MOLAR_VOLUME_25C / MOLAR_MASS[pollutant])


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
