"""The forecast stage: warn before a water level or PM2.5 reaches its next stage, from trend, rain and daily profile.

For every street water-level gauge (``water_level``, the stages of the rule
``water_level.flood`` or the gauge's own) and every PM2.5 series (``pm25``, the
stages of ``pm25.level``, where the hourly VN_AQI turns "very unhealthy" and
"hazardous"), each reading: the next stage above the value (from ``min_level``,
the warning stage by default), a projection of the value over the horizon (see
``analytics.stages.forecast``) and the time it reaches that stage. A warning
(rule ``forecast.<metric>.<level>``, class threshold, severity warning) opens when
the crossing is within ``horizon_s`` for ``confirm`` readings in a row and the
evidence is strong: a rise unexplained by the daily profile whose slope is at
least ``min_t`` standard errors, or, for water, rain heavy enough to flood the
street within the horizon. It clears when the crossing happens (the threshold alert
takes over) or after ``clear`` readings in a row without a crossing in sight.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
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
from analytics.engine.slots import SensorIndex, SeriesIndex, SlotArrays
from analytics.stages import forecast as fc
from analytics.stages.rules import LEVELS, Rule, load_rules
from analytics.stages.rules_stage import resolve_levels
from core.metrics import METRICS
from core.types import AlertClass, Severity


@dataclass(frozen=True, slots=True)
class Watched:
    """A forecast metric: whose stages, how fast its trends fade, daily profile, rain."""

    rule: str
    title: str
    damping_s: float
    profile: bool
    rain: bool


# streets flood and drain within the hour; a pollution episode builds over hours
WATCHED: dict[str, Watched] = {
    "water_level": Watched("water_level.flood", "flooding", 2700.0, profile=False, rain=True),
    "pm25": Watched("pm25.level", "fine dust (PM2.5)", 10_800.0, profile=True, rain=False),
}
_METRICS = list(WATCHED)
_CODE = {m: i for i, m in enumerate(_METRICS)}
_RAIN_CODE = len(_METRICS)
_CODE_OR_RAIN = {**_CODE, "rainfall": _RAIN_CODE}
_DAMPING = np.array([WATCHED[m].damping_s for m in _METRICS])
_PROFILE = np.array([WATCHED[m].profile for m in _METRICS])
_RAIN = np.array([WATCHED[m].rain for m in _METRICS])
_RAIN_FAST_S, _RAIN_SLOW_S, _RAIN_STALE_S = 120.0, 600.0, 900.0
_USUAL_S = 1800.0  # the profile's rise over this long is what it explains
_PROFILE_MIN = 10  # readings in every bin before the profile is used (about a day)
_PROFILE_RATE = 0.01  # per reading: about a week of 2-minute readings per bin


class ForecastStage(Stage):
    """Predictive warnings for water level and PM2.5 (see the module's docstring)."""

    name: ClassVar[str] = "forecast"

    def __init__(
        self,
        rules: Iterable[Rule] | None = None,
        *,
        horizon_s: float = 5400.0,
        window: int = 20,
        min_t: float = 4.0,
        confirm: int = 3,
        clear: int = 5,
        min_level: Severity = Severity.WARNING,
        rain_tau_s: float = 2700.0,
        rain_capacity_mm: float = 16.0,
        rain_gain_cm_per_mm: float = 1.3,
    ) -> None:
        self.rules = list(load_rules() if rules is None else rules)
        self.horizon_s = horizon_s
        self.window = window
        self.min_t = min_t
        self.confirm = confirm
        self.clear = clear
        self.min_index = LEVELS.index(min_level)
        self.rain_tau_s = rain_tau_s
        self.rain_capacity_mm = rain_capacity_mm
        self.rain_gain = rain_gain_cm_per_mm
        self.lead = np.arange(0.0, horizon_s + 1.0, 300.0)
        if self.lead[-1] < horizon_s:
            self.lead = np.append(self.lead, horizon_s)
        self.series = SeriesIndex()
        self.sensors = SensorIndex()
        self._registry = 0
        self._generation = 1
        self._s = SlotArrays(
            {
                "t": (window, np.float64, np.nan),
                "x": (window, np.float64, np.nan),
                "next": (0, np.int64, 0),
                "prof": (fc.PROFILE_BINS, np.float64, 0.0),
                "prof_n": (fc.PROFILE_BINS, np.int64, 0),
                "streak": (0, np.int64, 0),
                "calm": (0, np.int64, 0),
                "active": (0, np.int64, -1),  # the level index warned of, -1: none
                "levels": (3, np.float64, np.nan),
                "resolved": (0, np.int64, 0),  # the registry generation resolved for
            }
        )
        self._rain = SlotArrays(
            {
                "t": (0, np.float64, -np.inf),
                "stored": (0, np.float64, 0.0),
                "fast": (0, np.float64, 0.0),
                "slow": (0, np.float64, 0.0),
            }
        )

    def share(self, series: SeriesIndex, sensors: SensorIndex) -> None:
        """Use the pipeline's indexes (before any reading is processed)."""
        self.series = series
        self.sensors = sensors

    # -- readings --------------------------------------------------------------------------

    def process(self, batch: Batch, ctx: Context) -> StageOutput:
        out = StageOutput()
        if len(batch) == 0:
            return out
        if id(ctx.sensors) != self._registry:  # a new registry: resolve the levels again
            self._registry = id(ctx.sensors)
            self._generation += 1
        metrics = batch.metric
        get = _CODE_OR_RAIN.get  # one lookup per reading: a watched metric's code, rain, or -1
        code = np.array([get(m, -1) for m in metrics], dtype=np.int64)
        rain = code == _RAIN_CODE
        pos = np.flatnonzero(code >= 0)
        if pos.size == 0:
            return out
        slots = self.series.lookup(batch.sensor, batch.metric)[pos]
        self._s.ensure(int(slots.max()))
        self._rain.ensure(len(self.sensors) - 1)
        # round k holds every series' k-th reading: a gauge's rain is learned before its
        # level of the same message is forecast
        for r in rounds(slots):
            p = pos[r]
            wet = rain[p]
            if wet.any():
                self._learn_rain(batch, p[wet])
            if not wet.all():
                self._step(p[~wet], slots[r][~wet], code[p[~wet]], batch, ctx, out)
        return out

    def _learn_rain(self, batch: Batch, pos: IntArray) -> None:
        codes = self.sensors.lookup(batch.sensor)[pos]
        self._rain.ensure(len(self.sensors) - 1)
        rs = self._rain
        for r in rounds(codes):  # one rain channel per sensor: one round, unless two gauges share
            c, t, mm = codes[r], batch.time[pos[r]], np.maximum(batch.value[pos[r]], 0.0)
            dt = np.clip(t - rs["t"][c], 30.0, _RAIN_STALE_S)
            fresh = np.isfinite(rs["t"][c]) & (t > rs["t"][c])
            intensity = np.where(fresh, mm / dt * 3600.0, 0.0)
            for col, tau in (("fast", _RAIN_FAST_S), ("slow", _RAIN_SLOW_S)):
                a = -np.expm1(-dt / tau)
                rs[col][c] = np.where(fresh, rs[col][c] + a * (intensity - rs[col][c]), 0.0)
            decay = np.where(fresh, np.exp(-dt / self.rain_tau_s), 0.0)
            rs["stored"][c] = rs["stored"][c] * decay + np.where(fresh, mm, 0.0)
            rs["t"][c] = np.maximum(rs["t"][c], t)

    def _resolve(self, slots: IntArray, ctx: Context) -> None:
        s = self._s
        stale = slots[s["resolved"][slots] != self._generation]
        for slot in np.unique(stale):
            sensor, metric = self.series.keys[int(slot)]
            found = resolve_levels(self.rules, WATCHED[metric].rule, sensor, ctx)
            s["levels"][slot] = found[1] if found is not None else (np.nan,) * 3
            s["resolved"][slot] = self._generation

    def _step(
        self,
        pos: IntArray,
        slots: IntArray,
        code: IntArray,
        batch: Batch,
        ctx: Context,
        out: StageOutput,
    ) -> None:
        s = self._s
        self._resolve(slots, ctx)
        t, x = batch.time[pos], batch.value[pos]
        col = s["next"][slots] % self.window
        s["t"][slots, col] = t
        s["x"][slots, col] = x
        s["next"][slots] += 1
        rt, rx = s["t"][slots], s["x"][slots]
        ready = _PROFILE[code] & (s["prof_n"][slots] >= _PROFILE_MIN).all(axis=1)
        prof = np.where(ready[:, None], s["prof"][slots], 0.0)
        trend = fc.fit_trend(rt, rx, t)
        # the newer half of the window: a rise that is levelling off is not extrapolated
        with np.errstate(invalid="ignore"):
            newer = rt >= np.nanmedian(rt, axis=1)[:, None]
        recent = fc.fit_trend(rt, np.where(newer, rx, np.nan), t).slope
        # what the daily profile explains: its own rise over the last half hour
        p_now = fc.profile_at(prof, t)
        usual = (p_now - fc.profile_at(prof, t - _USUAL_S)) / _USUAL_S
        now = np.where(np.isfinite(trend.now), trend.now, x)
        sig = (
            (trend.slope > 0)
            & (recent > 0)
            & (trend.slope > usual)
            & (trend.t_stat >= self.min_t)
            & (trend.n >= self.window // 2)
        )
        slope = np.where(sig, np.minimum(np.minimum(trend.slope, recent), trend.slope - usual), 0.0)
        rise = fc.damped(slope, _DAMPING[code], self.lead)
        rain_mm_h = np.zeros(slots.size)
        wet = _RAIN[code]
        if wet.any():
            rain_mm_h, stored = self._rain_at(slots, t)
            by_rain = fc.rain_rise(
                stored,
                rain_mm_h,
                self.lead,
                tau_s=self.rain_tau_s,
                capacity_mm=self.rain_capacity_mm,
                gain_cm_per_mm=self.rain_gain,
            )
            rise = np.where(wet[:, None], np.maximum(rise, by_rain), rise)
        t_lead = t[:, None] + self.lead[None, :]
        # a usual fall ahead (after the evening peak) lowers the forecast; a usual rise
        # does not raise it (the profile mixes days with and without episodes)
        drift = np.minimum(fc.profile_at(prof, t_lead) - p_now[:, None], 0.0)
        projection = now[:, None] + rise + drift
        # the next stage above the value (and above the fitted value), from min_level on
        levels = s["levels"][slots]
        top = np.maximum(x, np.where(np.isfinite(now), now, x))
        with np.errstate(invalid="ignore"):
            candidate = (levels > top[:, None]) & (np.arange(3) >= self.min_index)
        target = np.where(candidate.any(axis=1), np.argmax(candidate, axis=1), -1)
        level = np.where(target >= 0, levels[np.arange(slots.size), np.maximum(target, 0)], np.inf)
        eta = fc.crossing(projection, level, self.lead)
        rained = wet & (rain_mm_h > 0) & np.isfinite(eta)
        cond = (target >= 0) & (eta <= self.horizon_s) & (sig | rained)
        streak = np.where(cond, s["streak"][slots] + 1, 0)
        s["streak"][slots] = streak
        active = s["active"][slots]
        was_level = np.where(
            active >= 0, levels[np.arange(slots.size), np.maximum(active, 0)], np.inf
        )
        calm = np.where((active >= 0) & ~cond, s["calm"][slots] + 1, 0)
        s["calm"][slots] = calm
        crossed = (active >= 0) & (x >= was_level)
        new = np.where(cond & (streak >= self.confirm), target, active)
        new = np.where(crossed | (calm >= self.clear), -1, new)
        s["active"][slots] = new
        self._learn_profile(slots, t, x, code)
        for j in np.flatnonzero((active >= 0) & (new != active)):
            out.signals.append(self._signal(int(j), slots, t, x, active, levels, None))
        for j in np.flatnonzero((new >= 0) & cond):
            ev = {
                "slope_per_h": round(float(trend.slope[j]) * 3600.0, 3),
                "t_stat": round(float(min(trend.t_stat[j], 1e6)), 2),
                "fitted": round(float(now[j]), 2),
                "eta_s": round(float(eta[j])),
                "rain_mm_h": round(float(rain_mm_h[j]), 1),
                "profile": bool(ready[j]),
                "profile_change": round(float(drift[j, -1]), 2),
            }
            out.signals.append(self._signal(int(j), slots, t, x, new, levels, ev))

    def _rain_at(self, slots: IntArray, t: FloatArray) -> tuple[FloatArray, FloatArray]:
        """Intensity (mm/h; a building storm's rise counted again) and storage of each gauge."""
        names = [self.series.keys[int(sl)][0] for sl in slots]
        codes = self.sensors.lookup(names)
        self._rain.ensure(len(self.sensors) - 1)
        rs = self._rain
        fresh = t - rs["t"][codes] <= _RAIN_STALE_S
        fast, slow = rs["fast"][codes], rs["slow"][codes]
        intensity = np.where(fresh, fast + np.maximum(fast - slow, 0.0), 0.0)
        age = np.maximum(t - rs["t"][codes], 0.0)
        stored = np.where(fresh, rs["stored"][codes] * np.exp(-age / self.rain_tau_s), 0.0)
        return intensity, stored

    def _learn_profile(self, slots: IntArray, t: FloatArray, x: FloatArray, code: IntArray) -> None:
        keep = _PROFILE[code]
        if not keep.any():
            return
        sl, b = slots[keep], fc.profile_bin(t[keep])
        n = self._s["prof_n"][sl, b]
        a = np.maximum(1.0 / (n + 1.0), _PROFILE_RATE)
        self._s["prof"][sl, b] += a * (x[keep] - self._s["prof"][sl, b])
        self._s["prof_n"][sl, b] = n + 1

    def _signal(
        self,
        j: int,
        slots: IntArray,
        t: FloatArray,
        x: FloatArray,
        level_index: IntArray,
        levels: FloatArray,
        ev: dict[str, Any] | None,
    ) -> Signal:
        sensor, metric = self.series.keys[int(slots[j])]
        li = int(level_index[j])
        sev = LEVELS[li]
        thr = float(levels[j, li])
        unit = METRICS[metric].unit
        value = float(x[j])
        rule = f"forecast.{metric}.{sev.value}"
        what = f"{WATCHED[metric].title}: {metric} {value:g} {unit}"
        if ev is None:
            message = f"{what}: the forecast of the {sev.value} level has ended"
            evidence: dict[str, Any] = {"level": sev.value, "level_value": thr}
        else:
            minutes = minutes_text(float(ev["eta_s"]))
            rate = float(ev["slope_per_h"])
            why = (
                f"under rain of {ev['rain_mm_h']:.0f} mm/h"
                if ev["rain_mm_h"] >= 1.0 and rate <= 0.0
                else f"rising {rate:.1f} {unit}/h"
            )
            message = (
                f"{what}, {why}: expected to reach the {sev.value} level {thr:g} {unit} "
                f"in about {minutes} minutes"
            )
            evidence = {
                "level": sev.value,
                "level_value": thr,
                "minutes": minutes,
                "horizon_s": self.horizon_s,
                "rule": WATCHED[metric].rule,
                **ev,
            }
        return Signal(
            sensor=sensor,
            metric=metric,
            rule=rule,
            detector="forecast",
            time=float(t[j]),
            active=ev is not None,
            severity=Severity.WARNING,
            value=value,
            expected_high=thr,
            message=message,
            evidence=evidence,
            alert_class=AlertClass.THRESHOLD,
        )

    def first_level(self, sensor: str, metric: str, ctx: Context) -> float | None:
        """The lowest stage this stage warns of for a series (None: not watched)."""
        if metric not in WATCHED:
            return None
        found = resolve_levels(self.rules, WATCHED[metric].rule, sensor, ctx)
        if found is None:
            return None
        return next((v for v in found[1][self.min_index :] if not math.isnan(v)), None)

    # -- checkpoints -----------------------------------------------------------------------

    def get_state(self) -> dict[str, Any]:
        n = len(self.series)
        return {
            "v": 1,
            "series": self.series.get_state(),
            "sensors": list(self.sensors.names),
            "slots": {k: v for k, v in self._s.head(n).items() if k != "resolved"},
            "rain": self._rain.head(len(self.sensors)),
        }

    def set_state(self, state: Mapping[str, Any]) -> None:
        if not state:
            return
        self.series.restore(state["series"])
        self.sensors.restore(state["sensors"])
        self._s.set_state(state["slots"])
        self._s["resolved"][:] = 0
        self._rain.set_state(state["rain"])


def minutes_text(eta_s: float) -> int:
    """The lead in whole minutes as a person says it: to the nearest 5, at least 5."""
    return max(5, int(5 * math.floor(eta_s / 300.0 + 0.5)))
