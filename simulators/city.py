"""The simulated city's shared state: clock, seasons, weather, traffic demand and incident effects.

Everything is a pure function of (seed, time, place): Hanoi local time
(Asia/Ho_Chi_Minh is UTC+7 all year, no daylight saving), monthly climate
normals, smooth city-wide and district-level weather noise, and the injected
incidents.  Sensor models read it; they never write it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping

import numpy as np

from core.types import UTC_OFFSET_S
from simulators import geo, noise
from simulators.incidents import Incident, IncidentKind
from simulators.models import SensorModel, SensorTable
from simulators.noise import FloatArray, UIntArray

TZ_OFFSET_S = UTC_OFFSET_S
DAY_S = 86_400.0
YEAR_DAYS = 365.2425

# monthly normals for Hanoi (January first)
PM25_MONTHLY = (85.0, 70.0, 62.0, 48.0, 38.0, 28.0, 25.0, 27.0, 36.0, 52.0, 68.0, 82.0)
TEMP_MONTHLY = (16.5, 17.5, 20.2, 24.0, 27.5, 29.0, 29.3, 28.7, 27.6, 25.0, 21.6, 18.2)
TEMP_HALF_RANGE = (3.0, 2.8, 2.8, 3.2, 3.6, 3.6, 3.4, 3.2, 3.4, 3.6, 3.8, 3.4)
HUMIDITY_MONTHLY = (78.0, 82.0, 85.0, 85.0, 80.0, 80.0, 82.0, 84.0, 81.0, 77.0, 75.0, 75.0)
RAIN_MONTHLY_MM = (18.0, 26.0, 44.0, 90.0, 188.0, 240.0, 288.0, 318.0, 265.0, 130.0, 43.0, 23.0)
WET_HOURS = (0.08, 0.12, 0.15, 0.12, 0.15, 0.18, 0.20, 0.22, 0.17, 0.10, 0.06, 0.05)
PRESSURE_MONTHLY = (
    1019.0,
    1017.0,
    1015.0,
    1012.0,
    1008.0,
    1005.0,
    1004.0,
    1005.0,
    1009.0,
    1014.0,
    1017.0,
    1019.0,
)

# traffic demand (share of a camera's capacity) by local hour, weekday and weekend
WEEKDAY_DEMAND = (0.12, 0.07, 0.05, 0.05, 0.08, 0.25, 0.60, 0.95, 1.00, 0.80, 0.62, 0.60,
                  0.58, 0.55, 0.58, 0.65, 0.80, 0.97, 1.00, 0.82, 0.62, 0.50, 0.35, 0.20)  # fmt: skip
WEEKEND_DEMAND = (0.18, 0.10, 0.07, 0.06, 0.07, 0.15, 0.30, 0.48, 0.60, 0.66, 0.68, 0.66,
                  0.62, 0.58, 0.60, 0.65, 0.72, 0.78, 0.80, 0.75, 0.65, 0.55, 0.42, 0.28)  # fmt: skip


def _inv_normal_tail(p: float) -> float:
    """z with P(Z > z) = p (bisection; used for 12 numbers at import)."""
    lo, hi = -8.0, 8.0
    for _ in range(80):
        mid = (lo + hi) / 2
        if 0.5 * math.erfc(mid / math.sqrt(2)) > p:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2


_RAIN_THRESHOLD = tuple(_inv_normal_tail(p) for p in WET_HOURS)
# mean excess of a standard normal above its threshold, to scale intensities
_RAIN_EXCESS = tuple(
    math.exp(-(z**2) / 2) / math.sqrt(2 * math.pi) / p - z
    for z, p in zip(_RAIN_THRESHOLD, WET_HOURS, strict=True)
)
_RAIN_WET_MEAN = tuple(
    mm / (p * 30.4 * 24) for mm, p in zip(RAIN_MONTHLY_MM, WET_HOURS, strict=True)
)


def local_hour(t: FloatArray) -> FloatArray:
    return np.asarray(((t + TZ_OFFSET_S) % DAY_S) / 3600.0, dtype=np.float64)


def local_weekday(t: FloatArray) -> FloatArray:
    """Monday = 0 ... Sunday = 6 (1970-01-01 was a Thursday)."""
    return np.asarray((np.floor((t + TZ_OFFSET_S) / DAY_S) + 3) % 7, dtype=np.float64)


def monthly(t: FloatArray, table: tuple[float, ...]) -> FloatArray:
    """A monthly normal, interpolated smoothly between mid-months."""
    doy = ((np.asarray(t, dtype=np.float64) + TZ_OFFSET_S) / DAY_S) % YEAR_DAYS
    x = doy / YEAR_DAYS * 12.0 - 0.5
    xp = np.arange(-1, 13, dtype=np.float64)
    fp = np.array((table[-1], *table, table[0]))
    return np.asarray(np.interp(x, xp, fp), dtype=np.float64)


def daily(hour: FloatArray, profile: tuple[float, ...]) -> FloatArray:
    xp = np.arange(25, dtype=np.float64)
    fp = np.array((*profile, profile[0]))
    return np.asarray(np.interp(hour, xp, fp), dtype=np.float64)


class City:
    """The shared state every sensor model reads (the ``city`` argument of ``values``)."""

    def __init__(self, seed: int, models: Mapping[str, SensorModel] | None = None) -> None:
        self.seed = seed
        self.models: dict[str, SensorModel] = dict(models or {})
        self.incidents: list[Incident] = []
        self._city_key = np.array([noise.key_of(seed, "city")], dtype=np.uint64)
        self._district_keys = np.array(
            [noise.key_of(seed, "district", d.name) for d in geo.DISTRICTS], dtype=np.uint64
        )
        self._idx_cache: dict[tuple[str, int], tuple[np.ndarray, np.ndarray]] = {}
        self._stream_keys: dict[tuple[str, str], UIntArray] = {}
        self._memo_key: tuple[object, object] | None = None  # (t, table) of the memo below
        self._memo: dict[str, FloatArray] = {}
        for model in self.models.values():
            self.locate(model.sensors)

    @property
    def tables(self) -> dict[str, SensorTable]:
        return {name: m.sensors for name, m in self.models.items()}

    @staticmethod
    def locate(table: SensorTable) -> None:
        """Give a table its district index and elevation columns (once)."""
        if "district" not in table.extra:
            pos = {d.name: i for i, d in enumerate(geo.DISTRICTS)}
            near = geo.nearest_districts(table.lat, table.lon)
            idx = [pos.get(a, int(nd)) for a, nd in zip(table.areas, near.tolist(), strict=True)]
            table.extra["district"] = np.array(idx, dtype=np.int64)
        if "elevation_m" not in table.extra:
            table.extra["elevation_m"] = np.full(len(table), 12.0)

    def add_incidents(self, incidents: Iterable[Incident]) -> None:
        self.incidents.extend(incidents)
        self._idx_cache.clear()

    # --- clock and calendar ------------------------------------------------------

    @staticmethod
    def hour(t: FloatArray) -> FloatArray:
        return local_hour(t)

    @staticmethod
    def weekend(t: FloatArray) -> FloatArray:
        return np.asarray(local_weekday(t) >= 5, dtype=np.float64)

    def demand(self, t: FloatArray) -> FloatArray:
        """Traffic demand 0..1 (Hanoi's morning 7-9 and evening 17-19 peaks on weekdays)."""
        h = local_hour(t)
        wk = daily(h, WEEKDAY_DEMAND)
        we = daily(h, WEEKEND_DEMAND)
        w = self.weekend(t)
        return wk * (1.0 - w) + we * w

    # --- weather -----------------------------------------------------------------

    def _keys(self, scope: str, stream: str) -> UIntArray:
        sk = self._stream_keys.get((scope, stream))
        if sk is None:
            base = self._city_key if scope == "city" else self._district_keys
            sk = self._stream_keys[(scope, stream)] = noise.stream_keys(
                base, noise.stream_id(stream)
            )
        return sk

    def _city(self, stream: str, t: FloatArray, scale_s: float) -> FloatArray:
        return noise.smooth_k(self._keys("city", stream), t, scale_s)

    def _district(
        self, table: SensorTable, stream: str, t: FloatArray, scale_s: float
    ) -> FloatArray:
        keys = self._keys("district", stream)[table.extra["district"]]
        return noise.smooth_k(keys, t, scale_s)

    def _memoised(
        self, name: str, t: FloatArray, table: SensorTable, fn: Callable[[], FloatArray]
    ) -> FloatArray:
        """Within one round (the same ``t`` and table objects) compute each field once."""
        key = self._memo_key
        if key is None or key[0] is not t or key[1] is not table:
            self._memo_key = (t, table)
            self._memo = {}
        v = self._memo.get(name)
        if v is None:
            v = self._memo[name] = fn()
        return v

    def rain(self, t: FloatArray, table: SensorTable) -> FloatArray:
        """Rain intensity in mm/h at each sensor (seasonal showers plus flash-flood storms)."""
        return self._memoised("rain", t, table, lambda: self._rain(t, table))

    def _rain(self, t: FloatArray, table: SensorTable) -> FloatArray:
        z = (
            0.7 * self._city("rain", t, 4 * 3600.0) + 0.5 * self._district(table, "rain", t, 5400.0)
        ) / 0.86
        month = self._month_index(t)
        thr = np.take(np.array(_RAIN_THRESHOLD), month)
        excess = np.take(np.array(_RAIN_EXCESS), month)
        wet_mean = np.take(np.array(_RAIN_WET_MEAN), month)
        r = wet_mean * np.clip(z - thr, 0.0, None) / excess
        for inc in self._active(IncidentKind.FLASH_FLOOD, t):
            r = r + inc.magnitude * inc.envelope(t) * self._spatial(inc, table)
        return np.asarray(r, dtype=np.float64)

    def temperature(self, t: FloatArray, table: SensorTable) -> FloatArray:
        h = local_hour(t)
        base = monthly(t, TEMP_MONTHLY)
        amp = monthly(t, TEMP_HALF_RANGE)
        synoptic = 2.0 * self._city("temp", t, 2.5 * DAY_S)
        local = 0.4 * self._district(table, "temp", t, 6 * 3600.0)
        lapse = -0.0065 * (table.extra["elevation_m"] - 12.0)
        rain_cool = -0.6 * np.minimum(self.rain(t, table), 6.0)
        out = (
            base + amp * np.cos(2 * np.pi * (h - 14.5) / 24) + synoptic + local + lapse + rain_cool
        )
        return np.asarray(out + 9.0 * self.fire_weather(t, table), dtype=np.float64)

    def humidity(self, t: FloatArray, table: SensorTable) -> FloatArray:
        h = local_hour(t)
        base = monthly(t, HUMIDITY_MONTHLY)
        out = (
            base
            - 10.0 * np.cos(2 * np.pi * (h - 14.5) / 24)
            + 5.0 * self._city("hum", t, 2 * DAY_S)
        )
        out = out + np.minimum(15.0, 4.0 * self.rain(t, table))
        out = out - 45.0 * self.fire_weather(t, table)
        return np.asarray(np.clip(out, 12.0, 100.0), dtype=np.float64)

    def wind_speed(self, t: FloatArray, table: SensorTable) -> FloatArray:
        h = local_hour(t)
        hills = np.clip((table.extra["elevation_m"] - 12.0) / 200.0, 0.0, 1.5)
        out = (
            2.2 + 0.8 * np.cos(2 * np.pi * (h - 15) / 24) + 0.9 * self._city("wind", t, 12 * 3600.0)
        )
        out = out + hills + 6.0 * self.fire_weather(t, table)
        return np.asarray(np.clip(out, 0.2, None), dtype=np.float64)

    def wind_direction(self, t: FloatArray, table: SensorTable) -> FloatArray:
        doy = ((t + TZ_OFFSET_S) / DAY_S) % YEAR_DAYS
        # north-east monsoon in winter, south-east in summer
        base = 90.0 - 45.0 * np.cos(2 * np.pi * (doy - 15) / YEAR_DAYS)
        out = (
            base
            + 40.0 * self._city("wdir", t, 8 * 3600.0)
            + 15.0 * self._district(table, "wdir", t, 3600.0)
        )
        return np.asarray(out % 360.0, dtype=np.float64)

    def pressure(self, t: FloatArray, table: SensorTable) -> FloatArray:
        h = local_hour(t)
        out = monthly(t, PRESSURE_MONTHLY) + 1.2 * np.cos(4 * np.pi * (h - 10) / 24)
        out = out + 4.0 * self._city("press", t, 3 * DAY_S)
        return np.asarray(out - table.extra["elevation_m"] / 8.3, dtype=np.float64)

    # --- air -----------------------------------------------------------------------

    def pm25_background(self, t: FloatArray, table: SensorTable) -> FloatArray:
        """Regional PM2.5 in µg/m³: season, night-time inversions, synoptic swings, washout."""
        h = local_hour(t)
        base = monthly(t, PM25_MONTHLY)
        diurnal = 1.0 + 0.25 * np.cos(2 * np.pi * (h - 3) / 24)
        synoptic = np.exp(0.35 * self._city("pm", t, 2 * DAY_S) - 0.06)
        local = np.exp(0.10 * self._district(table, "pm", t, 8 * 3600.0))
        washout = 1.0 / (1.0 + 0.15 * self.rain(t, table))
        return np.asarray(
            base * diurnal * synoptic * local * washout * self.pollution_factor(t, table),
            dtype=np.float64,
        )

    def pollution_factor(self, t: FloatArray, table: SensorTable) -> FloatArray:
        """>= 1: injected pollution episodes multiply the regional level."""
        f = np.ones_like(np.asarray(t, dtype=np.float64))
        for inc in self._active(IncidentKind.POLLUTION_EPISODE, t):
            f = f + (inc.magnitude - 1.0) * inc.envelope(t) * self._spatial(inc, table)
        return f

    # --- incidents -------------------------------------------------------------------

    def fire_weather(self, t: FloatArray, table: SensorTable) -> FloatArray:
        """0..1: how far an injected fire-weather day has pushed this station."""
        if not self.incidents:
            return np.zeros(len(t))
        return self._memoised("fire", t, table, lambda: self._fire_weather(t, table))

    def _fire_weather(self, t: FloatArray, table: SensorTable) -> FloatArray:
        out = np.zeros_like(np.asarray(t, dtype=np.float64))
        for inc in self._active(IncidentKind.FIRE_WEATHER, t):
            idx, w = self._targets(inc, table)
            if len(idx):
                out[idx] = np.maximum(out[idx], inc.magnitude * w * inc.envelope(t[idx]))
        return out

    def traffic_severity(self, t: FloatArray, table: SensorTable) -> FloatArray:
        """0..1: how blocked each camera's road is by injected traffic incidents."""
        out = np.zeros_like(np.asarray(t, dtype=np.float64))
        for inc in self._active(IncidentKind.TRAFFIC_INCIDENT, t):
            idx, w = self._targets(inc, table)
            if len(idx):
                onsets = np.array([inc.onsets.get(table.ids[i], inc.start) for i in idx])
                out[idx] = np.maximum(out[idx], inc.magnitude * w * inc.envelope(t[idx], onsets))
        return out

    def _active(self, kind: IncidentKind, t: FloatArray) -> list[Incident]:
        if not self.incidents or len(t) == 0:
            return []
        lo, hi = float(np.min(t)), float(np.max(t))
        return [i for i in self.incidents if i.kind is kind and i.active(lo, hi)]

    def _targets(self, inc: Incident, table: SensorTable) -> tuple[np.ndarray, np.ndarray]:
        """Indices in ``table`` of the incident's sensors, with their weights."""
        key = (inc.id, id(table))
        hit = self._idx_cache.get(key)
        if hit is None:
            pos = [
                (table.index[s], inc.weights.get(s, 1.0)) for s in inc.sensors if s in table.index
            ]
            hit = (
                np.array([p for p, _ in pos], dtype=np.int64),
                np.array([w for _, w in pos], dtype=np.float64),
            )
            self._idx_cache[key] = hit
        return hit

    @staticmethod
    def _spatial(inc: Incident, table: SensorTable) -> FloatArray:
        """1 inside the incident's radius, tapering to 0 at 1.5 radii."""
        if inc.lat is None or inc.lon is None or not inc.radius_km:
            return np.ones(len(table))
        d = geo.km_between(table.lat, table.lon, inc.lat, inc.lon) / inc.radius_km
        return np.asarray(np.clip(3.0 - 2.0 * d, 0.0, 1.0), dtype=np.float64)

    @staticmethod
    def _month_index(t: FloatArray) -> np.ndarray:
        doy = ((np.asarray(t, dtype=np.float64) + TZ_OFFSET_S) / DAY_S) % YEAR_DAYS
        return np.asarray(np.clip((doy / YEAR_DAYS * 12).astype(np.int64), 0, 11))
