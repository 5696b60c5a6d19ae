"""The AQI stage: hourly and daily VN_AQI (and US AQI) per station, alerts by AQI level."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np

from analytics.engine.base import (
    Batch,
    Context,
    FloatArray,
    IntArray,
    Signal,
    Stage,
    StageOutput,
    rounds,
)
from analytics.engine.buckets import Buckets, Closed, Registry, select, take
from analytics.engine.slots import SlotArrays
from analytics.stages import aqi
from analytics.stages.common import TZ, local_time, place_name, rounded, utc_time
from core.types import AlertClass, Reading, Severity

logger = logging.getLogger(__name__)


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
        self._reg = Registry()
        self._buckets = Buckets(len(aqi.POLLUTANTS))
        h = self.RING_HOURS
        self._cols = SlotArrays(
            {
                "ring": ((len(aqi.POLLUTANTS), h), np.float64, np.nan),
                "ring_hour": (h, np.int64, -1),
                "level": (0, np.int64, -1),
                "below": (0, np.int64, 0),
                "last_day": (0, np.int64, -1),
                "day_done": (0, np.int64, -1),
            }
        )

    def _grow(self, n: int) -> None:
        self._buckets.ensure(n - 1)
        self._cols.ensure(n - 1)

    def process(self, batch: Batch, ctx: Context) -> StageOutput:
        pos, code = select(batch, _POLLUTANT_CODE)
        if pos.size == 0:
            return StageOutput()
        st = self._reg.codes(take(batch.sensor, pos))
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
        vals = self._cols["ring"][st[:, None], :, slot]  # (n, hours, 6)
        ok = self._cols["ring_hour"][st[:, None], slot] == hrs
        return np.where(ok[:, :, None], vals, np.nan).transpose(0, 2, 1)

    def _on_closed(self, closed: Closed, ctx: Context) -> StageOutput:
        out = StageOutput()
        if closed.size == 0:
            return out
        st, hour = closed.station, closed.bucket
        slot = hour % self.RING_HOURS
        self._cols["ring"][st, :, slot] = closed.means()
        self._cols["ring_hour"][st, slot] = hour
        win = self._window(st, hour, 24)
        vn = aqi.vn_hourly(win)
        us = aqi.us_hourly(win) if self.us_index else None
        names = self._reg.names
        for i in np.flatnonzero(~np.isnan(vn.aqi)):
            out.derived.append(
                Reading(utc_time(hour[i] * 3600.0), names[st[i]], "aqi_vn", float(vn.aqi[i]))
            )
        if us is not None:
            for i in np.flatnonzero(~np.isnan(us.aqi)):
                out.derived.append(
                    Reading(utc_time(hour[i] * 3600.0), names[st[i]], "aqi_us", float(us.aqi[i]))
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
        prev = self._cols["last_day"][st]
        rate_prev = (prev >= 0) & (day > prev) & (prev > self._cols["day_done"][st])
        self._cols["day_done"][st[rate_prev]] = prev[rate_prev]
        rate_now = (lh == 23) & (day > self._cols["day_done"][st])
        self._cols["day_done"][st[rate_now]] = day[rate_now]
        self._cols["last_day"][st] = np.maximum(prev, day)
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
                Reading(utc_time(t), self._reg.names[st[i]], "aqi_vn_daily", float(res.aqi[i]))
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
        cur = self._cols["level"][st]
        low = _AQI_LEVEL_LOW[np.maximum(cur, 0)]
        calm = (cur >= 0) & (target < cur) & (value <= low - self.clear_margin)
        below = np.where(calm, self._cols["below"][st] + 1, 0)
        new = np.where(
            target > cur, target, np.where(calm & (below >= self.clear_hours), target, cur)
        )
        self._cols["below"][st] = np.where(new != cur, 0, below)
        self._cols["level"][st] = new
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
        place = place_name(sensor, ctx)
        dom = int(dominant[i])
        conc = float(vn.conc[i, dom])
        how = " (NowCast)" if dom in (aqi.PM25, aqi.PM10) else ""
        local = local_time(t)
        evidence: dict[str, Any] = {
            "aqi": int(value),
            "category": cat.name,
            "category_vi": cat.name_vi,
            "colour": cat.colour,
            "dominant": aqi.POLLUTANTS[dom],
            "sub_indices": {p: rounded(vn.sub[i, k]) for k, p in enumerate(aqi.POLLUTANTS)},
            "concentrations": {p: rounded(vn.conc[i, k]) for k, p in enumerate(aqi.POLLUTANTS)},
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
            **self._cols.head(n),
        }

    def set_state(self, state: Mapping[str, Any]) -> None:
        if not state:
            return
        self._reg.restore(list(state["names"]))
        self._buckets.set_state(state["buckets"])
        self._cols.set_state({k: state[k] for k in self._cols.spec})
