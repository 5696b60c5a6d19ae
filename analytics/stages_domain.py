"""Domain stages of the live pipeline: VN/US air-quality indices, forest-fire danger, camera model.

``AqiStage``, ``FireRiskStage`` and ``CameraStage`` know nothing of MQTT or the
database: they take micro-batches of readings in columns and return derived
readings (``aqi_vn``, ``aqi_vn_daily``, ``aqi_us``, ``fire_risk``) and
``Signal``s.  Each aggregates readings per sensor into buckets (an hour, a
fire-weather day, a camera window) and acts when a bucket is complete: when the
sensor's first reading of a later bucket arrives, or, for a sensor that went
quiet, when ``tick`` finds the bucket's end plus a grace period in the past.
Readings for a bucket already closed are counted (``late_readings``) and
dropped.  All the arithmetic is vectorised over the sensors of a batch.

``DomainSettings`` holds their ``IOC_AQI_*``, ``IOC_FIRE_*`` and
``IOC_CAMERA_*`` settings; ``build_domain_stages`` makes the three stages.
"""

from __future__ import annotations

import logging
import threading
import time as _time
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from itertools import repeat
from typing import Any, ClassVar, Literal

import numpy as np
import numpy.typing as npt
from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from analytics import aqi, camera, fire
from analytics.base import Batch, Context, FloatArray, IntArray, Signal, Stage, StageOutput, rounds
from core.types import DISPLAY_TZ, AlertClass, Reading, SensorKind, Severity

logger = logging.getLogger(__name__)

TZ = camera.TZ_OFFSET_S  # Hanoi: UTC+7 all year


def _utc(t: float) -> datetime:
    return datetime.fromtimestamp(t, UTC)


def _local(t: float) -> datetime:
    return datetime.fromtimestamp(t, DISPLAY_TZ)


# ---------------------------------------------------------------------------
# shared plumbing


class _Registry:
    """Sensor id <-> dense index, growing as sensors appear."""

    def __init__(self) -> None:
        self.names: list[str] = []
        self.index: dict[str, int] = {}

    def __len__(self) -> int:
        return len(self.names)

    def codes(self, names: list[str]) -> IntArray:
        out = np.fromiter(map(self.index.get, names, repeat(-1)), dtype=np.int64, count=len(names))
        if (out < 0).any():
            for i in np.flatnonzero(out < 0):
                name = names[i]
                code = self.index.get(name)
                if code is None:
                    code = len(self.names)
                    self.index[name] = code
                    self.names.append(name)
                out[i] = code
        return out

    def restore(self, names: list[str]) -> None:
        self.names = [str(n) for n in names]
        self.index = {n: i for i, n in enumerate(self.names)}


def _select(batch: Batch, table: Mapping[str, int]) -> tuple[IntArray, IntArray]:
    """Positions of the batch rows whose metric is in ``table`` (finite values), and their codes."""
    codes = np.fromiter(map(table.get, batch.metric, repeat(-1)), dtype=np.int64, count=len(batch))
    pos = np.flatnonzero((codes >= 0) & np.isfinite(batch.value))
    return pos, codes[pos]


def _take(items: list[str], pos: IntArray) -> list[str]:
    """``[items[i] for i in pos]`` at C speed."""
    return list(map(items.__getitem__, pos.tolist()))


def _grow(a: npt.NDArray[Any], n: int, fill: Any) -> npt.NDArray[Any]:
    if a.shape[0] >= n:
        return a
    cap = max(n, 2 * a.shape[0], 16)
    extra = np.full((cap - a.shape[0], *a.shape[1:]), fill, dtype=a.dtype)
    return np.concatenate([a, extra])


@dataclass(frozen=True, slots=True)
class Closed:
    """Buckets that are complete, sorted by (station, bucket)."""

    station: IntArray
    bucket: IntArray
    sums: FloatArray  # (n, channels)
    counts: IntArray  # (n, channels)

    @property
    def size(self) -> int:
        return int(self.station.size)

    def means(self) -> FloatArray:
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(self.counts > 0, self.sums / np.maximum(self.counts, 1), np.nan)


def _empty_closed(channels: int) -> Closed:
    e = np.zeros(0, np.int64)
    return Closed(e, e, np.zeros((0, channels)), np.zeros((0, channels), np.int64))


_NEVER = int(np.iinfo(np.int64).min)


class Buckets:
    """Per station, the one open bucket's per-channel sums and counts; closes it when a later one starts."""

    def __init__(self, channels: int) -> None:
        self.channels = channels
        self.open = np.full(0, -1, np.int64)
        self.closed_upto = np.full(0, _NEVER, np.int64)
        self.sums = np.zeros((0, channels))
        self.counts = np.zeros((0, channels), np.int64)

    def grow(self, n: int) -> None:
        self.open = _grow(self.open, n, -1)
        self.closed_upto = _grow(self.closed_upto, n, _NEVER)
        self.sums = _grow(self.sums, n, 0.0)
        self.counts = _grow(self.counts, n, 0)

    def add(
        self, st: IntArray, bucket: IntArray, ch: IntArray, val: FloatArray
    ) -> tuple[Closed, int]:
        """Add readings; return the buckets they completed and how many readings came too late."""
        self.grow(int(st.max()) + 1 if st.size else 0)
        opened = self.open[st]
        late = (bucket <= self.closed_upto[st]) | ((opened >= 0) & (bucket < opened))
        n_late = int(late.sum())
        if n_late:
            keep = ~late
            st, bucket, ch, val = st[keep], bucket[keep], ch[keep], val[keep]
        if st.size == 0:
            return _empty_closed(self.channels), n_late
        c = self.channels
        if (bucket == self.open[st]).all():  # the usual case: nothing completes
            n = self.open.size
            flat = st * c + ch
            self.sums += np.bincount(flat, weights=val, minlength=n * c).reshape(n, c)
            self.counts += np.bincount(flat, minlength=n * c).reshape(n, c)
            return _empty_closed(c), n_late
        newest = self.open.copy()
        np.maximum.at(newest, st, bucket)
        touched = np.unique(st)
        carry = touched[self.open[touched] >= 0]
        g_st = np.concatenate([st, carry])
        g_b = np.concatenate([bucket, self.open[carry]])
        base = int(g_b.min())
        key = g_st * (1 << 32) + (g_b - base)
        uk, inv = np.unique(key, return_inverse=True)
        g = uk.size
        flat = inv[: st.size] * c + ch
        sums: FloatArray = np.asarray(
            np.bincount(flat, weights=val, minlength=g * c), dtype=np.float64
        ).reshape(g, c)
        counts: IntArray = np.bincount(flat, minlength=g * c).reshape(g, c).astype(np.int64)
        inv_carry = inv[st.size :]
        sums[inv_carry] += self.sums[carry]
        counts[inv_carry] += self.counts[carry]
        gs = uk >> 32
        gb = (uk & ((1 << 32) - 1)) + base
        is_open = gb == newest[gs]
        self.open[gs[is_open]] = gb[is_open]
        self.sums[gs[is_open]] = sums[is_open]
        self.counts[gs[is_open]] = counts[is_open]
        done = ~is_open
        np.maximum.at(self.closed_upto, gs[done], gb[done])
        return Closed(gs[done], gb[done], sums[done], counts[done]), n_late

    def close_before(self, limit: int) -> Closed:
        """Close the open buckets numbered below ``limit`` (their sensor went quiet)."""
        st = np.flatnonzero((self.open >= 0) & (self.open < limit)).astype(np.int64)
        if st.size == 0:
            return _empty_closed(self.channels)
        out = Closed(st, self.open[st].copy(), self.sums[st].copy(), self.counts[st].copy())
        self.closed_upto[st] = np.maximum(self.closed_upto[st], self.open[st])
        self.open[st] = -1
        self.sums[st] = 0.0
        self.counts[st] = 0
        return out

    def get_state(self, n: int) -> dict[str, Any]:
        return {
            "open": self.open[:n].copy(),
            "closed_upto": self.closed_upto[:n].copy(),
            "sums": self.sums[:n].copy(),
            "counts": self.counts[:n].copy(),
        }

    def set_state(self, state: Mapping[str, Any]) -> None:
        self.open = np.asarray(state["open"], np.int64).copy()
        self.closed_upto = np.asarray(state["closed_upto"], np.int64).copy()
        self.sums = np.asarray(state["sums"], np.float64).reshape(-1, self.channels).copy()
        self.counts = np.asarray(state["counts"], np.int64).reshape(-1, self.channels).copy()


def _place(sensor: str, ctx: Context) -> str:
    meta = ctx.sensors.get(sensor)
    if meta is None:
        return sensor
    label = meta.name or meta.area
    return f"{label} ({sensor})" if label else sensor


def _num(x: float) -> float | None:
    return None if not np.isfinite(x) else round(float(x), 2)


# ---------------------------------------------------------------------------
# air quality


_POLLUTANT_CODE = {p: i for i, p in enumerate(aqi.POLLUTANTS)}
_AQI_LEVEL_LOW = np.array([101, 151, 201], dtype=np.float64)  # info, warning, critical
_AQI_SEVERITY = (Severity.INFO, Severity.WARNING, Severity.CRITICAL)


class AqiStage(Stage):
    """Hourly VN_AQI (NowCast) and US AQI, daily VN_AQI, and category signals per station.

    Alert levels on the hourly VN_AQI: info from 101 (unhealthy for sensitive
    groups), warning from 151 (unhealthy), critical from 201 (very unhealthy and
    hazardous); levels below ``alert_from`` do not alert.  A worse level alerts
    at once; a better one only after ``clear_hours`` consecutive hours at least
    ``clear_margin`` below the current level's band, so an index hovering at 150
    does not flap.
    """

    name: ClassVar[str] = "aqi"
    RING_HOURS: ClassVar[int] = 72

    def __init__(
        self,
        *,
        alert_from: int = 151,
        clear_margin: float = 10.0,
        clear_hours: int = 2,
        grace_s: float = 900.0,
        min_daily_hours: int = 18,
        us_index: bool = True,
    ) -> None:
        if alert_from not in (101, 151, 201):
            raise ValueError("alert_from must be 101, 151 or 201")
        self.alert_from = alert_from
        self.clear_margin = clear_margin
        self.clear_hours = clear_hours
        self.grace_s = grace_s
        self.min_daily_hours = min_daily_hours
        self.us_index = us_index
        self.late_readings = 0
        self._reg = _Registry()
        self._buckets = Buckets(len(aqi.POLLUTANTS))
        h = self.RING_HOURS
        self._ring = np.full((0, len(aqi.POLLUTANTS), h), np.nan)
        self._ring_hour = np.full((0, h), -1, np.int64)
        self._level = np.full(0, -1, np.int64)
        self._below = np.zeros(0, np.int64)
        self._last_day = np.full(0, -1, np.int64)
        self._day_done = np.full(0, -1, np.int64)

    def _grow(self, n: int) -> None:
        self._buckets.grow(n)
        self._ring = _grow(self._ring, n, np.nan)
        self._ring_hour = _grow(self._ring_hour, n, -1)
        self._level = _grow(self._level, n, -1)
        self._below = _grow(self._below, n, 0)
        self._last_day = _grow(self._last_day, n, -1)
        self._day_done = _grow(self._day_done, n, -1)

    def process(self, batch: Batch, ctx: Context) -> StageOutput:
        pos, code = _select(batch, _POLLUTANT_CODE)
        if pos.size == 0:
            return StageOutput()
        st = self._reg.codes(_take(batch.sensor, pos))
        self._grow(len(self._reg))
        hour = np.floor(batch.time[pos] / 3600.0).astype(np.int64)
        closed, late = self._buckets.add(st, hour, code, batch.value[pos])
        self.late_readings += late
        return self._on_closed(closed, ctx)

    def tick(self, now: float, ctx: Context) -> StageOutput:
        limit = int(np.floor((now - self.grace_s) / 3600.0))
        return self._on_closed(self._buckets.close_before(limit), ctx)

    def _window(self, st: IntArray, last_hour: IntArray, hours: int) -> FloatArray:
        """Hourly means ``(n, 6, hours)``, column 0 = ``last_hour``, NaN where unknown."""
        hrs = last_hour[:, None] - np.arange(hours)
        slot = hrs % self.RING_HOURS
        vals = self._ring[st[:, None], :, slot]  # (n, hours, 6)
        ok = self._ring_hour[st[:, None], slot] == hrs
        return np.where(ok[:, :, None], vals, np.nan).transpose(0, 2, 1)

    def _on_closed(self, closed: Closed, ctx: Context) -> StageOutput:
        out = StageOutput()
        if closed.size == 0:
            return out
        st, hour = closed.station, closed.bucket
        slot = hour % self.RING_HOURS
        self._ring[st, :, slot] = closed.means()
        self._ring_hour[st, slot] = hour
        win = self._window(st, hour, 24)
        vn = aqi.vn_hourly(win)
        us = aqi.us_hourly(win) if self.us_index else None
        names = self._reg.names
        for i in np.flatnonzero(~np.isnan(vn.aqi)):
            out.derived.append(
                Reading(_utc(hour[i] * 3600.0), names[st[i]], "aqi_vn", float(vn.aqi[i]))
            )
        if us is not None:
            for i in np.flatnonzero(~np.isnan(us.aqi)):
                out.derived.append(
                    Reading(_utc(hour[i] * 3600.0), names[st[i]], "aqi_us", float(us.aqi[i]))
                )
        day_st: list[IntArray] = []
        day_d: list[IntArray] = []
        for r in rounds(st):
            day_st_r, day_d_r = self._days_to_rate(st[r], hour[r])
            day_st.append(day_st_r)
            day_d.append(day_d_r)
            self._signals(r, st, hour, vn, us, ctx, out)
        if day_st:
            self._daily(np.concatenate(day_st), np.concatenate(day_d), out)
        return out

    def _days_to_rate(self, st: IntArray, hour: IntArray) -> tuple[IntArray, IntArray]:
        """Local days completed by closing these hours (one hour per station)."""
        local = hour * 3600 + TZ
        day = local // 86_400
        lh = (local % 86_400) // 3600
        prev = self._last_day[st]
        rate_prev = (prev >= 0) & (day > prev) & (prev > self._day_done[st])
        self._day_done[st[rate_prev]] = prev[rate_prev]
        rate_now = (lh == 23) & (day > self._day_done[st])
        self._day_done[st[rate_now]] = day[rate_now]
        self._last_day[st] = np.maximum(prev, day)
        return (
            np.concatenate([st[rate_prev], st[rate_now]]),
            np.concatenate([prev[rate_prev], day[rate_now]]),
        )

    def _daily(self, st: IntArray, day: IntArray, out: StageOutput) -> None:
        if st.size == 0:
            return
        last_hour = ((day + 1) * 86_400 - TZ) // 3600 - 1
        res = aqi.vn_daily(
            aqi.vn_daily_inputs(self._window(st, last_hour, 31), self.min_daily_hours)
        )
        for i in np.flatnonzero(~np.isnan(res.aqi)):
            t = float(day[i] * 86_400 - TZ)
            out.derived.append(
                Reading(_utc(t), self._reg.names[st[i]], "aqi_vn_daily", float(res.aqi[i]))
            )

    def _target_level(self, value: FloatArray) -> IntArray:
        lv = np.searchsorted(_AQI_LEVEL_LOW, value, side="right").astype(np.int64) - 1
        floor = int(np.searchsorted(_AQI_LEVEL_LOW, self.alert_from))
        return np.where(lv >= floor, lv, -1)

    def _signals(
        self,
        r: IntArray,
        st_all: IntArray,
        hour_all: IntArray,
        vn: aqi.IndexResult,
        us: aqi.IndexResult | None,
        ctx: Context,
        out: StageOutput,
    ) -> None:
        r = r[~np.isnan(vn.aqi[r])]
        if r.size == 0:
            return
        st = st_all[r]
        value = vn.aqi[r]
        target = self._target_level(value)
        cur = self._level[st]
        low = _AQI_LEVEL_LOW[np.maximum(cur, 0)]
        calm = (cur >= 0) & (target < cur) & (value <= low - self.clear_margin)
        below = np.where(calm, self._below[st] + 1, 0)
        new = np.where(
            target > cur, target, np.where(calm & (below >= self.clear_hours), target, cur)
        )
        self._below[st] = np.where(new != cur, 0, below)
        self._level[st] = new
        dominant = vn.dominant
        for j in np.flatnonzero(new != cur):
            i = int(r[j])
            out.signals.append(
                self._signal(i, int(new[j]), st_all, hour_all, vn, us, dominant, ctx)
            )

    def _signal(
        self,
        i: int,
        level: int,
        st: IntArray,
        hour: IntArray,
        vn: aqi.IndexResult,
        us: aqi.IndexResult | None,
        dominant: IntArray,
        ctx: Context,
    ) -> Signal:
        sensor = self._reg.names[st[i]]
        t = float(hour[i] * 3600)
        value = float(vn.aqi[i])
        cat = aqi.CATEGORIES[int(aqi.category_index(value))]
        place = _place(sensor, ctx)
        dom = int(dominant[i])
        conc = float(vn.conc[i, dom])
        how = " (NowCast)" if dom in (aqi.PM25, aqi.PM10) else ""
        local = _local(t)
        evidence: dict[str, Any] = {
            "aqi": int(value),
            "category": cat.name,
            "category_vi": cat.name_vi,
            "colour": cat.colour,
            "dominant": aqi.POLLUTANTS[dom],
            "sub_indices": {p: _num(vn.sub[i, k]) for k, p in enumerate(aqi.POLLUTANTS)},
            "concentrations": {p: _num(vn.conc[i, k]) for k, p in enumerate(aqi.POLLUTANTS)},
            "hour_start": local.isoformat(),
        }
        if us is not None and np.isfinite(us.aqi[i]):
            evidence["aqi_us"] = int(us.aqi[i])
        if level >= 0:
            message = (
                f"VN_AQI {value:.0f} – {cat.name} ({cat.name_vi}) at {place} for the hour from "
                f"{local:%H:00}: {aqi.LABELS[dom]} {conc:.0f} µg/m³{how}; {cat.health}"
            )
        else:
            message = f"VN_AQI back to {value:.0f} – {cat.name} ({cat.name_vi}) at {place}"
        return Signal(
            sensor=sensor,
            metric="aqi_vn",
            rule="aqi_vn.category",
            detector="vn_aqi",
            time=t,
            active=level >= 0,
            severity=_AQI_SEVERITY[max(level, 0)],
            value=value,
            expected_high=float(self.alert_from - 1),
            message=message,
            evidence=evidence,
            alert_class=AlertClass.THRESHOLD,
        )

    def get_state(self) -> dict[str, Any]:
        n = len(self._reg)
        return {
            "v": 1,
            "names": list(self._reg.names),
            "buckets": self._buckets.get_state(n),
            "ring": self._ring[:n].copy(),
            "ring_hour": self._ring_hour[:n].copy(),
            "level": self._level[:n].copy(),
            "below": self._below[:n].copy(),
            "last_day": self._last_day[:n].copy(),
            "day_done": self._day_done[:n].copy(),
        }

    def set_state(self, state: Mapping[str, Any]) -> None:
        if not state:
            return
        self._reg.restore(list(state["names"]))
        self._buckets.set_state(state["buckets"])
        self._ring = np.asarray(state["ring"], np.float64).copy()
        self._ring_hour = np.asarray(state["ring_hour"], np.int64).copy()
        self._level = np.asarray(state["level"], np.int64).copy()
        self._below = np.asarray(state["below"], np.int64).copy()
        self._last_day = np.asarray(state["last_day"], np.int64).copy()
        self._day_done = np.asarray(state["day_done"], np.int64).copy()


# ---------------------------------------------------------------------------
# forest-fire weather


_FIRE_CODE = {"rainfall": 0, "temperature": 1, "humidity": 2, "wind_speed": 3}
_RAIN, _T13, _RH13, _WIND13 = range(4)


def _fold(text: str) -> str:
    """Lower case without accents or spaces: 'Sóc Sơn' -> 'socson'."""
    decomposed = unicodedata.normalize("NFD", text.replace("đ", "d").replace("Đ", "D"))
    return "".join(c for c in decomposed if c.isalnum() and not unicodedata.combining(c)).lower()


class FireRiskStage(Stage):
    """Daily forest-fire danger (see ``analytics.fire``) for the weather stations in the hills.

    A fire-weather day runs from 13:30 to 13:30 local time: its rain is the total
    of that day, its temperature, humidity and wind the means of the readings
    between 12:30 and 13:30.  When the day is complete the index advances and the
    stage emits ``fire_risk`` (0-100) stamped 13:00 local, and a ``fire_risk.level``
    signal when the level reaches IV (warning) or V (critical), or falls back
    below IV.  Stations: those named in ``stations``; else the weather stations
    whose area (or name) contains one of ``areas`` (accents and case ignored),
    every weather station if ``areas`` is None, plus any sensor registered with
    the attribute ``fire_watch: true``.
    """

    name: ClassVar[str] = "fire_risk"

    def __init__(
        self,
        *,
        stations: Iterable[str] | None = None,
        areas: Iterable[str] | None = ("Sóc Sơn", "Ba Vì"),
        method: fire.Method = "vn",
        wind_boost_ms: float | None = 5.0,
        grace_s: float = 3600.0,
    ) -> None:
        self.stations = frozenset(stations) if stations is not None else None
        self.areas = tuple(areas) if areas is not None else None
        self._areas_folded = tuple(_fold(a) for a in self.areas) if self.areas is not None else None
        self.method: fire.Method = method
        self.wind_boost_ms = wind_boost_ms
        self.grace_s = grace_s
        self.late_readings = 0
        self._eligible: dict[str, tuple[object, bool]] = {}
        self._reg = _Registry()
        self._buckets = Buckets(4)
        self._p = np.zeros(0)
        self._dry = np.zeros(0, np.int64)
        self._alert = np.zeros(0, np.int64)  # 0 none, 4 or 5: the level alerted
        self._rain_gauge = np.zeros(0, bool)

    def _grow(self, n: int) -> None:
        self._buckets.grow(n)
        self._p = _grow(self._p, n, 0.0)
        self._dry = _grow(self._dry, n, 0)
        self._alert = _grow(self._alert, n, 0)
        self._rain_gauge = _grow(self._rain_gauge, n, False)

    def watches(self, sensor: str, ctx: Context) -> bool:
        if self.stations is not None:
            return sensor in self.stations
        meta = ctx.sensors.get(sensor)
        cached = self._eligible.get(sensor)
        if cached is not None and cached[0] is meta:
            return cached[1]
        if meta is None:
            return False
        ok = meta.attributes.get("fire_watch") is True or (
            meta.kind == SensorKind.WEATHER
            and (
                self._areas_folded is None
                or any(a in _fold(meta.area) or a in _fold(meta.name) for a in self._areas_folded)
            )
        )
        self._eligible[sensor] = (meta, ok)
        return ok

    def process(self, batch: Batch, ctx: Context) -> StageOutput:
        pos, code = _select(batch, _FIRE_CODE)
        if pos.size == 0:
            return StageOutput()
        sensors = _take(batch.sensor, pos)
        watched = {s: self.watches(s, ctx) for s in set(sensors)}
        keep = np.fromiter(map(watched.__getitem__, sensors), dtype=bool, count=len(sensors))
        local = batch.time[pos] + TZ
        tod = np.mod(local, 86_400.0)
        in_obs = (tod >= 12.5 * 3600) & (tod < 13.5 * 3600)
        keep &= (code == _RAIN) | in_obs
        if not keep.any():
            return StageOutput()
        idx = np.flatnonzero(keep)
        st = self._reg.codes([sensors[i] for i in idx])
        self._grow(len(self._reg))
        day = (np.floor((local[idx] - 13.5 * 3600) / 86_400.0) + 1).astype(np.int64)
        ch = code[idx]
        self._rain_gauge[st[ch == _RAIN]] = True
        closed, late = self._buckets.add(st, day, ch, batch.value[pos][idx])
        self.late_readings += late
        return self._on_closed(closed, ctx)

    def tick(self, now: float, ctx: Context) -> StageOutput:
        limit = int(np.floor((now - self.grace_s - 13.5 * 3600 + TZ) / 86_400.0)) + 1
        return self._on_closed(self._buckets.close_before(limit), ctx)

    def _on_closed(self, closed: Closed, ctx: Context) -> StageOutput:
        out = StageOutput()
        if closed.size == 0:
            return out
        means = closed.means()
        rain = closed.sums[:, _RAIN]
        for r in rounds(closed.station):
            st = closed.station[r]
            d = fire.step(
                self._p[st],
                self._dry[st],
                means[r, _T13],
                means[r, _RH13],
                rain[r],
                means[r, _WIND13],
                method=self.method,
                wind_boost_ms=self.wind_boost_ms,
            )
            self._p[st] = d.p
            self._dry[st] = d.dry_days
            observed = (~np.isnan(means[r, _T13]) & ~np.isnan(means[r, _RH13])) | fire.resets(
                rain[r], self.method
            )
            for jj in np.flatnonzero(observed):
                j = int(jj)
                i = int(r[j])
                t = float(closed.bucket[i] * 86_400 + 13 * 3600 - TZ)
                sensor = self._reg.names[st[j]]
                out.derived.append(
                    Reading(_utc(t), sensor, "fire_risk", round(float(d.risk[j]), 1))
                )
                alert = int(d.level[j]) if d.level[j] >= 4 else 0
                if alert != self._alert[st[j]]:
                    self._alert[st[j]] = alert
                    out.signals.append(
                        self._signal(sensor, t, d, j, means[i], float(rain[i]), int(st[j]), ctx)
                    )
        return out

    def _signal(
        self,
        sensor: str,
        t: float,
        d: fire.Danger,
        j: int,
        m: FloatArray,
        rain: float,
        s: int,
        ctx: Context,
    ) -> Signal:
        lv = int(d.level[j])
        place = _place(sensor, ctx)
        name = f"{fire.LEVEL_NAMES[lv - 1]} ({fire.LEVEL_MEANING[lv - 1]})"
        evidence = {
            "level": fire.LEVEL_NAMES[lv - 1],
            "level_vi": fire.LEVEL_MEANING_VI[lv - 1],
            "p": round(float(d.p[j]), 1),
            "method": self.method,
            "dry_days": int(d.dry_days[j]),
            "temperature_13h": _num(m[_T13]),
            "humidity_13h": _num(m[_RH13]),
            "wind_13h": _num(m[_WIND13]),
            "rain_day_mm": round(rain, 1),
            "wind_raised_level": bool(d.wind_boost[j]),
            "rain_gauge": bool(self._rain_gauge[s]),
        }
        if lv >= 4:
            wind = " (raised one level for the wind)" if d.wind_boost[j] else ""
            message = (
                f"Forest-fire danger level {name} at {place}: {int(d.dry_days[j])} dry days, "
                f"13:00 temperature {m[_T13]:.1f} °C, humidity {m[_RH13]:.0f} %, wind "
                f"{np.nan_to_num(m[_WIND13]):.1f} m/s; index P = {d.p[j]:,.0f}{wind}"
            )
        else:
            message = f"Forest-fire danger down to level {name} at {place} (P = {d.p[j]:,.0f})"
        return Signal(
            sensor=sensor,
            metric="fire_risk",
            rule="fire_risk.level",
            detector=f"nesterov_{self.method}",
            time=t,
            active=lv >= 4,
            severity=Severity.CRITICAL if lv >= 5 else Severity.WARNING,
            score=float(d.risk[j]) / 100.0,
            value=float(d.risk[j]),
            expected_high=60.0,
            message=message,
            evidence=evidence,
            alert_class=AlertClass.THRESHOLD,
        )

    def get_state(self) -> dict[str, Any]:
        n = len(self._reg)
        return {
            "v": 1,
            "names": list(self._reg.names),
            "buckets": self._buckets.get_state(n),
            "p": self._p[:n].copy(),
            "dry": self._dry[:n].copy(),
            "alert": self._alert[:n].copy(),
            "rain_gauge": self._rain_gauge[:n].copy(),
        }

    def set_state(self, state: Mapping[str, Any]) -> None:
        if not state:
            return
        self._reg.restore(list(state["names"]))
        self._buckets.set_state(state["buckets"])
        self._p = np.asarray(state["p"], np.float64).copy()
        self._dry = np.asarray(state["dry"], np.int64).copy()
        self._alert = np.asarray(state["alert"], np.int64).copy()
        self._rain_gauge = np.asarray(state["rain_gauge"], bool).copy()


# ---------------------------------------------------------------------------
# traffic cameras


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
    """Multivariate anomalies per traffic camera (see ``analytics.camera``).

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
        self._reg = _Registry()
        self._buckets = Buckets(len(camera.FEATURES))
        self._history = camera.History(window_s, history_days)
        self._streak = np.zeros(0, np.int64)
        self._calm = np.zeros(0, np.int64)
        self._active = np.zeros(0, bool)
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
        self._buckets.grow(n)
        self._history.grow(n)
        self._streak = _grow(self._streak, n, 0)
        self._calm = _grow(self._calm, n, 0)
        self._active = _grow(self._active, n, False)

    def process(self, batch: Batch, ctx: Context) -> StageOutput:
        pos, code = _select(batch, _CAMERA_CODE)
        if pos.size == 0:
            return StageOutput()
        st = self._reg.codes(_take(batch.sensor, pos))
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
            self._streak[st] = np.where(bad, self._streak[st] + 1, 0)
            self._calm[st] = np.where(bad, 0, self._calm[st] + 1)
            start = ~self._active[st] & (self._streak[st] >= self.confirm_windows)
            stop = self._active[st] & (self._calm[st] >= self.clear_windows)
            self._active[st[start]] = True
            self._active[st[stop]] = False
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
        place = _place(sensor, ctx)
        z = v.z[i]
        if active:
            message = describe_traffic(x[i], z, lo, hi, place, when)
        else:
            message = f"traffic back to usual at {place} ({when})"
        evidence = {
            "features": {f: _num(x[i, j]) for j, f in enumerate(camera.FEATURES)},
            "expected": {
                f: [_num(lo[j]), _num(hi[j])]
                for j, f in enumerate(camera.FEATURES)
                if np.isfinite(lo[j])
            },
            "z": {f: round(float(z[j]), 2) for j, f in enumerate(camera.FEATURES)},
            "z_norm": round(float(v.norm[i]), 2),
            "score": round(float(v.score[i]), 4),
            "threshold": round(model.threshold, 4),
            "model_version": model.version,
            "window_start": _local(w * self.window_s).isoformat(),
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
            expected_low=_num(lo[camera.SPEED]),
            expected_high=_num(hi[camera.SPEED]),
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
            "streak": self._streak[:n].copy(),
            "calm": self._calm[:n].copy(),
            "active": self._active[:n].copy(),
        }

    def set_state(self, state: Mapping[str, Any]) -> None:
        """Restore history and alert states; refit the model from the history in the background."""
        if not state:
            return
        self._reg.restore(list(state["names"]))
        self._buckets.set_state(state["buckets"])
        self._history.set_state(dict(state["history"]))
        self._streak = np.asarray(state["streak"], np.int64).copy()
        self._calm = np.asarray(state["calm"], np.int64).copy()
        self._active = np.asarray(state["active"], bool).copy()
        self._grow(len(self._reg))
        if self._history.span_s >= self.warmup_s:
            self.refit()


# ---------------------------------------------------------------------------
# settings


class DomainSettings(BaseSettings):
    """Settings of the domain stages (``IOC_AQI_*``, ``IOC_FIRE_*``, ``IOC_CAMERA_*``).

    A service's settings class can inherit it beside ``core.settings.Settings``.
    """

    model_config = SettingsConfigDict(env_prefix="IOC_", extra="ignore")

    aqi_alert_from: int = Field(
        default=201,
        description="lowest hourly VN_AQI that alerts: 101 info, 151 warning, 201 critical",
    )
    aqi_clear_margin: float = Field(
        default=10.0, ge=0, description="points below the band to clear"
    )
    aqi_clear_hours: int = Field(
        default=2, ge=1, description="hours below the band before clearing"
    )
    aqi_grace_s: float = Field(
        default=900.0, ge=0, description="a quiet station's hour closes this late"
    )
    aqi_us: bool = Field(default=True, description="also derive the US EPA AQI (aqi_us)")
    fire_areas: str = Field(
        default="Sóc Sơn,Ba Vì",
        description="weather stations in these areas are rated (comma separated, * = all)",
    )
    fire_method: Literal["vn", "nesterov"] = Field(
        default="vn", description="vn: Forest Protection Department P"
    )
    fire_wind_boost_ms: float = Field(
        default=5.0, ge=0, description="13:00 wind raising the level by one (0: off)"
    )
    camera_window_s: int = Field(
        default=300, description="camera feature window (60, 120, 300, 600 or 900 s)"
    )
    camera_history_days: int = Field(
        default=7, ge=1, le=28, description="history ring the model learns from"
    )
    camera_warmup_h: float = Field(
        default=24.0, gt=0, description="history needed before the first fit"
    )
    camera_refit_h: float = Field(default=6.0, gt=0, description="refit after this much new data")
    camera_confirm_windows: int = Field(
        default=2, ge=1, description="anomalous windows before an alert"
    )
    camera_clear_windows: int = Field(
        default=3, ge=1, description="normal windows before it clears"
    )
    camera_z_min: float = Field(
        default=16.0, gt=0, description="smallest deviation (‖z‖) that can alert"
    )
    camera_quantile: float = Field(
        default=0.995, gt=0.5, lt=1, description="isolation score quantile"
    )
    camera_seed: int = Field(default=0, description="random seed of the camera model")

    @field_validator("aqi_alert_from")
    @classmethod
    def _check_alert_from(cls, v: int) -> int:
        if v not in (101, 151, 201):
            raise ValueError("IOC_AQI_ALERT_FROM must be 101, 151 or 201")
        return v

    @field_validator("camera_window_s")
    @classmethod
    def _check_window(cls, v: int) -> int:
        if v not in (60, 120, 300, 600, 900):
            raise ValueError("IOC_CAMERA_WINDOW_S must be 60, 120, 300, 600 or 900")
        return v


def build_domain_stages(settings: DomainSettings | None = None) -> list[Stage]:
    """The three domain stages configured from ``settings`` (defaults: the environment)."""
    s = settings if settings is not None else DomainSettings()
    areas = [a.strip() for a in s.fire_areas.split(",") if a.strip()]
    return [
        AqiStage(
            alert_from=s.aqi_alert_from,
            clear_margin=s.aqi_clear_margin,
            clear_hours=s.aqi_clear_hours,
            grace_s=s.aqi_grace_s,
            us_index=s.aqi_us,
        ),
        FireRiskStage(
            areas=None if "*" in areas else areas,
            method=s.fire_method,
            wind_boost_ms=s.fire_wind_boost_ms or None,
        ),
        CameraStage(
            window_s=s.camera_window_s,
            history_days=s.camera_history_days,
            warmup_s=s.camera_warmup_h * 3600.0,
            refit_every_s=s.camera_refit_h * 3600.0,
            confirm_windows=s.camera_confirm_windows,
            clear_windows=s.camera_clear_windows,
            z_min=s.camera_z_min,
            quantile=s.camera_quantile,
            seed=s.camera_seed,
        ),
    ]


__all__ = [
    "AqiStage",
    "Buckets",
    "CameraStage",
    "DomainSettings",
    "FireRiskStage",
    "build_domain_stages",
]
