"""The 0-500 air-quality scale: its six categories and the VN_AQI and US EPA breakpoint tables.

The sources are named beside each table: Decision 1459/QĐ-TCMT (2019) for VN_AQI,
the US EPA Technical Assistance Document (May 2024) for the US AQI.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from analytics.engine.base import FloatArray, IntArray

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
