"""The rules stage: configured levels over every reading of a batch, with hysteresis and minimum duration."""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from analytics.engine.base import Batch, Context, FloatArray, IntArray, Signal, Stage, StageOutput
from analytics.engine.slots import SensorIndex, SeriesIndex, SlotArrays
from analytics.stages.rules import LEVELS, Rule, load_rules
from core.errors import ConfigError
from core.metrics import METRICS
from core.types import UTC_OFFSET_S, Sensor, Severity

logger = logging.getLogger(__name__)


@dataclass(slots=True)
class _Key:
    """State of one (sensor, rule id): the active level and how long each level has held."""

    active: int = 0  # 0 none, 1 info, 2 warning, 3 critical
    since: list[float] = field(default_factory=lambda: [math.nan] * 3)
    count: list[int] = field(default_factory=lambda: [0] * 3)


@dataclass(frozen=True, slots=True)
class _Resolved:
    """A rule resolved for one sensor: ±1 sign, thresholds per level (NaN: none), hysteresis."""

    rule: Rule
    thresholds: tuple[float, float, float]


class _Table(SlotArrays):
    """One rule id resolved for every sensor code: thresholds, hysteresis, band, rule."""

    def __init__(self) -> None:
        super().__init__(
            {
                "done": (0, np.bool_, False),
                "known": (0, np.bool_, False),
                "thr": (3, np.float64, np.nan),
                "hyst": (0, np.float64, 0.0),
                "low": (0, np.float64, -np.inf),
                "high": (0, np.float64, np.inf),
            }
        )
        self.resolved: list[_Resolved | None] = []

    def ensure(self, max_slot: int) -> None:
        super().ensure(max_slot)
        self.resolved.extend([None] * (self.capacity - len(self.resolved)))


class RulesStage(Stage):
    """Configured levels over every reading of the batch, as THRESHOLD (or the rule's class) signals."""

    name: ClassVar[str] = "rules"

    def __init__(self, rules: Iterable[Rule] | None = None) -> None:
        self.rules = list(load_rules() if rules is None else rules)
        self._by_metric: dict[str, dict[str, list[Rule]]] = {}
        for r in self.rules:
            group = self._by_metric.setdefault(r.metric, {}).setdefault(r.id, [])
            group.append(r)
        for groups in self._by_metric.values():
            for rid, group in groups.items():
                group.sort(key=lambda r: -r.specificity)
                if len({(r.direction, r.hours) for r in group}) > 1:
                    raise ConfigError(f"rules with id {rid!r} must share direction and hours")
        self._metric_ids = {m: i for i, m in enumerate(self._by_metric)}
        self._metric_memo: tuple[list[str], np.ndarray[Any, Any]] | None = None
        self.sensor_index = SensorIndex()
        self._keys: dict[str, dict[int, _Key]] = {}  # rule id -> sensor code -> state
        self._tables: dict[str, _Table] = {}
        self._registry_id = 0

    def share(self, series: SeriesIndex, sensors: SensorIndex) -> None:
        """Use the pipeline's sensor index (before any reading is processed)."""
        self.sensor_index = sensors

    # -- resolution of the rule that applies to each sensor ---------------------------

    def _table(self, rid: str, group: list[Rule], codes: IntArray, ctx: Context) -> _Table:
        table = self._tables.get(rid)
        if table is None:
            table = self._tables[rid] = _Table()
        table.ensure(len(self.sensor_index) - 1)
        fresh = codes[~table["done"][codes]]
        if fresh.size:
            names = self.sensor_index.names
            for code in np.unique(fresh):
                r = self._resolve(group, names[code], ctx)
                table["done"][code] = True
                table.resolved[code] = r
                if r is not None:
                    table["known"][code] = True
                    table["thr"][code] = r.thresholds
                    table["hyst"][code] = r.rule.hysteresis
                    table["low"][code] = -np.inf if r.rule.low is None else r.rule.low
                    table["high"][code] = np.inf if r.rule.high is None else r.rule.high
        return table

    @staticmethod
    def _resolve(group: list[Rule], sensor: str, ctx: Context) -> _Resolved | None:
        meta: Sensor | None = ctx.sensors.get(sensor)
        kind = meta.kind if meta else None
        site = meta.attributes.get("site_type", "") if meta else ""
        site = site if isinstance(site, str) else ""
        rule = next((r for r in group if r.applies_to(sensor, kind, site)), None)
        if rule is None:
            # the sensor's own alarm stages apply even where no configured rule does
            # (a river gauge and the street flooding rule)
            rule = next((r for r in reversed(group) if _sensor_levels(meta, r)), None)
            if rule is None:
                return None
        levels = dict(rule.levels)
        custom = _sensor_levels(meta, rule)
        if custom:
            levels = custom
        thr = tuple(levels.get(s, math.nan) for s in LEVELS)
        return _Resolved(rule, (thr[0], thr[1], thr[2]))

    # -- processing -----------------------------------------------------------------------

    def _metric_codes(self, metrics: list[str]) -> np.ndarray[Any, Any]:
        memo = self._metric_memo
        if memo is not None and memo[0] is metrics:
            return memo[1]
        get = self._metric_ids.get
        out = np.array([get(m, -1) for m in metrics], dtype=np.int64)
        self._metric_memo = (metrics, out)
        return out

    def process(self, batch: Batch, ctx: Context) -> StageOutput:
        out = StageOutput()
        if len(batch) == 0 or not self._by_metric:
            return out
        if id(ctx.sensors) != self._registry_id:  # a new registry: resolve again, lazily
            self._registry_id = id(ctx.sensors)
            self._tables.clear()
        mids = self._metric_codes(batch.metric)
        if (mids < 0).all():
            return out
        codes = self.sensor_index.lookup(batch.sensor)
        for metric, groups in self._by_metric.items():
            pos = np.flatnonzero(mids == self._metric_ids[metric])
            if pos.size == 0:
                continue
            for rid, group in groups.items():
                self._evaluate(rid, group, pos, codes[pos], batch, ctx, out)
        return out

    def _evaluate(
        self,
        rid: str,
        group: list[Rule],
        pos: IntArray,
        codes: IntArray,
        batch: Batch,
        ctx: Context,
        out: StageOutput,
    ) -> None:
        table = self._table(rid, group, codes, ctx)
        known = table["known"][codes]
        if not known.any():
            return
        thr = table["thr"][codes]
        hyst = table["hyst"][codes]
        values = batch.value[pos]
        times = batch.time[pos]
        direction = group[0].direction
        if direction == "below":
            x, thr = -values, -thr
        elif direction == "outside":
            x = np.maximum(table["low"][codes] - values, values - table["high"][codes])
            # a value exactly on the band's edge is still plausible
            thr = np.where(np.isnan(thr), np.nan, np.maximum(thr, np.nextafter(0.0, 1.0)))
        else:
            x = values
        with np.errstate(invalid="ignore"):
            at = x[:, None] >= thr  # NaN thresholds compare False
            hold = x[:, None] >= thr - hyst[:, None]
        applicable = known & _in_hours(group, times)
        levels = np.where(at & applicable[:, None], np.arange(1, 4), 0).max(axis=1)
        holds = np.where(hold & applicable[:, None], np.arange(1, 4), 0).max(axis=1)
        state = self._keys.setdefault(rid, {})
        # every reading of a series that is at a level in this batch, or already pending
        # or active, goes through the state machine (in time order)
        watch = np.unique(codes[levels > 0])
        if state:
            watch = np.union1d(watch, np.fromiter(state, dtype=np.int64, count=len(state)))
        if watch.size == 0:
            return
        names = self.sensor_index.names
        for j in np.flatnonzero(np.isin(codes, watch)):
            code = int(codes[j])
            r = table.resolved[code]
            if r is None:
                continue
            self._step(
                rid,
                r,
                code,
                names[code],
                float(times[j]),
                float(values[j]),
                int(levels[j]),
                int(holds[j]),
                state,
                out,
            )

    def _step(
        self,
        rid: str,
        r: _Resolved,
        code: int,
        sensor: str,
        t: float,
        value: float,
        level: int,
        hold: int,
        state: dict[int, _Key],
        out: StageOutput,
    ) -> None:
        k = state.get(code)
        if k is None:
            k = state[code] = _Key()
        target = max(level, min(k.active, hold))
        rule = r.rule
        new = 0
        for i in range(3):
            lv = i + 1
            if target >= lv:
                if math.isnan(k.since[i]):
                    k.since[i] = t
                k.count[i] += 1
                if lv <= k.active or (
                    t - k.since[i] >= rule.min_duration_s and k.count[i] >= rule.min_readings
                ):
                    new = lv
            else:
                k.since[i] = math.nan
                k.count[i] = 0
        was = k.active
        k.active = new
        if new > 0:
            out.signals.append(self._signal(rid, r, sensor, t, value, new, True))
        elif was > 0:
            out.signals.append(self._signal(rid, r, sensor, t, value, was, False))
        if new == 0 and target == 0:
            del state[code]

    def _signal(
        self, rid: str, r: _Resolved, sensor: str, t: float, value: float, level: int, active: bool
    ) -> Signal:
        rule = r.rule
        sev = LEVELS[level - 1]
        thr = r.thresholds[level - 1]
        unit = METRICS[rule.metric].unit
        what = rule.title or rule.metric
        if rule.direction == "outside":
            limit = f"outside the plausible {rule.low:g}..{rule.high:g} {unit}"
            lo, hi = rule.low, rule.high
        elif rule.direction == "below":
            limit = f"at or below the {sev} level {thr:g} {unit}"
            if value > thr:  # held there by the hysteresis
                limit = (
                    f"above the {sev} level {thr:g} {unit}, which holds until the value "
                    f"rises above {thr + rule.hysteresis:g} {unit}"
                )
            lo, hi = _first_level(r), None
        else:
            limit = f"at or above the {sev} level {thr:g} {unit}"
            if value < thr:  # held there by the hysteresis
                limit = (
                    f"below the {sev} level {thr:g} {unit}, which holds until the value "
                    f"falls below {thr - rule.hysteresis:g} {unit}"
                )
            lo, hi = None, _first_level(r)
        if active:
            message = f"{what}: {rule.metric} {value:g} {unit} is {limit}"
        else:
            message = f"{what}: {rule.metric} {value:g} {unit} is back within limits"
        return Signal(
            sensor=sensor,
            metric=rule.metric,
            rule=rid,
            detector="rules",
            time=t,
            active=active,
            severity=sev,
            value=value,
            expected_low=lo,
            expected_high=hi,
            message=message,
            evidence={
                "level": sev.value,
                "threshold": thr,
                "direction": rule.direction,
                "hysteresis": rule.hysteresis,
                "min_duration_s": rule.min_duration_s,
            },
            alert_class=rule.alert_class,
        )

    # -- checkpoints ----------------------------------------------------------------

    def get_state(self) -> dict[str, Any]:
        names = self.sensor_index.names
        return {
            rid: {names[c]: [k.active, *k.since, *k.count] for c, k in keys.items()}
            for rid, keys in self._keys.items()
            if keys
        }

    def set_state(self, state: Mapping[str, Any]) -> None:
        self._keys = {}
        for rid, keys in state.items():
            self._keys[rid] = {
                self.sensor_index.code(s): _Key(
                    int(v[0]), [float(x) for x in v[1:4]], [int(x) for x in v[4:7]]
                )
                for s, v in keys.items()
            }


def resolve_levels(
    rules: Iterable[Rule], rule_id: str, sensor: str, ctx: Context
) -> tuple[Rule, tuple[float, float, float]] | None:
    """The rule ``rule_id`` as it applies to ``sensor`` and its info/warning/critical levels (NaN: none).

    The same resolution as the stage's: the most specific rule, else the sensor's own stages.
    """
    group = sorted((r for r in rules if r.id == rule_id), key=lambda r: -r.specificity)
    resolved = RulesStage._resolve(group, sensor, ctx) if group else None
    return None if resolved is None else (resolved.rule, resolved.thresholds)


def _first_level(r: _Resolved) -> float | None:
    return next((v for v in r.thresholds if not math.isnan(v)), None)


def _sensor_levels(meta: Sensor | None, rule: Rule) -> dict[Severity, float] | None:
    """Levels a sensor announces for this rule id, or for its metric (rules of direction above)."""
    if meta is None:
        return None
    levels = meta.attributes.get("levels")
    if not isinstance(levels, Mapping):
        return None
    mine = levels.get(rule.id)
    if mine is None and rule.direction == "above":
        mine = levels.get(rule.metric)
    if not isinstance(mine, Mapping):
        return None
    out = {}
    for s in LEVELS:
        v = mine.get(s.value)
        if isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v):
            out[s] = float(v)
    return out or None


def _in_hours(group: list[Rule], times: FloatArray) -> np.ndarray[Any, Any]:
    hours = group[0].hours
    if hours is None:
        return np.ones(times.shape, dtype=bool)
    local = ((times + UTC_OFFSET_S) // 3600) % 24
    start, end = hours
    if start <= end:
        return (local >= start) & (local < end)
    return (local >= start) | (local < end)
