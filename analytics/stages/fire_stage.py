"""The forest-fire risk stage: a daily fire-weather index per area from the 13:00 weather and the dry spell."""

from __future__ import annotations

import logging
import unicodedata
from collections.abc import Iterable, Mapping
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
from analytics.stages import fire
from analytics.stages.common import TZ, place_name, rounded, utc_time
from core.types import AlertClass, Reading, SensorKind, Severity

logger = logging.getLogger(__name__)


_FIRE_CODE = {"rainfall": 0, "temperature": 1, "humidity": 2, "wind_speed": 3}
_RAIN, _T13, _RH13, _WIND13 = range(4)


def _fold(text: str) -> str:
    """Lower case without accents or spaces: 'Sóc Sơn' -> 'socson'."""
    decomposed = unicodedata.normalize("NFD", text.replace("đ", "d").replace("Đ", "D"))
    return "".join(c for c in decomposed if c.isalnum() and not unicodedata.combining(c)).lower()


class FireRiskStage(Stage):
    """Daily forest-fire danger (see ``analytics.stages.fire``) for the weather stations in the hills.

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
        self._reg = Registry()
        self._buckets = Buckets(4)
        self._cols = SlotArrays(
            {
                "p": (0, np.float64, 0.0),
                "dry": (0, np.int64, 0),
                "alert": (0, np.int64, 0),  # 0 none, 4 or 5: the level alerted
                "rain_gauge": (0, np.bool_, False),
            }
        )

    def _grow(self, n: int) -> None:
        self._buckets.ensure(n - 1)
        self._cols.ensure(n - 1)

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
        pos, code = select(batch, _FIRE_CODE)
        if pos.size == 0:
            return StageOutput()
        sensors = take(batch.sensor, pos)
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
        self._cols["rain_gauge"][st[ch == _RAIN]] = True
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
                self._cols["p"][st],
                self._cols["dry"][st],
                means[r, _T13],
                means[r, _RH13],
                rain[r],
                means[r, _WIND13],
                method=self.method,
                wind_boost_ms=self.wind_boost_ms,
            )
            self._cols["p"][st] = d.p
            self._cols["dry"][st] = d.dry_days
            observed = (~np.isnan(means[r, _T13]) & ~np.isnan(means[r, _RH13])) | fire.resets(
                rain[r], self.method
            )
            for jj in np.flatnonzero(observed):
                j = int(jj)
                i = int(r[j])
                t = float(closed.bucket[i] * 86_400 + 13 * 3600 - TZ)
                sensor = self._reg.names[st[j]]
                out.derived.append(
                    Reading(utc_time(t), sensor, "fire_risk", round(float(d.risk[j]), 1))
                )
                alert = int(d.level[j]) if d.level[j] >= 4 else 0
                if alert != self._cols["alert"][st[j]]:
                    self._cols["alert"][st[j]] = alert
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
        place = place_name(sensor, ctx)
        name = f"{fire.LEVEL_NAMES[lv - 1]} ({fire.LEVEL_MEANING[lv - 1]})"
        evidence = {
            "level": fire.LEVEL_NAMES[lv - 1],
            "level_vi": fire.LEVEL_MEANING_VI[lv - 1],
            "p": round(float(d.p[j]), 1),
            "method": self.method,
            "dry_days": int(d.dry_days[j]),
            "temperature_13h": rounded(m[_T13]),
            "humidity_13h": rounded(m[_RH13]),
            "wind_13h": rounded(m[_WIND13]),
            "rain_day_mm": round(rain, 1),
            "wind_raised_level": bool(d.wind_boost[j]),
            "rain_gauge": bool(self._cols["rain_gauge"][s]),
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
            **self._cols.head(n),
        }

    def set_state(self, state: Mapping[str, Any]) -> None:
        if not state:
            return
        self._reg.restore(list(state["names"]))
        self._buckets.set_state(state["buckets"])
        self._cols.set_state({k: state[k] for k in self._cols.spec})
