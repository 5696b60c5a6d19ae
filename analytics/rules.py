"""The rules stage: configured warning/critical levels with hysteresis and a minimum duration.

A rule watches one metric (optionally only some sensor kinds, some sensors, or
some local hours) and has up to three levels: ``info``, ``warning`` and
``critical``.  A level becomes active when the value has been at or beyond it
for ``min_duration_s`` and ``min_readings`` in a row, stays active until the
value falls back beyond ``level - hysteresis``, and the rule's signal carries
the highest active level as its severity.  Direction ``above``, ``below`` or
``outside`` (a plausible band ``low..high``: values outside it mean a broken
sensor).  Per-sensor levels may also come from the registry: a sensor whose
meta has ``{"levels": {"water_level": {"warning": 120, "critical": 150}}}``
uses them for the metric's ``above`` rules (or names a rule id instead of the metric).

Rules files are TOML (``[[rules]]`` tables, the built-in ``DEFAULT_RULES_TOML``
shows every field), JSON (``{"rules": [...]}``) or YAML when PyYAML is present.
The rules are evaluated with numpy over the whole micro-batch; only readings at
a level, or of a series already pending or active, go through the per-series
state machine.
"""

from __future__ import annotations

import json
import logging
import math
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np

from analytics.base import Batch, Context, FloatArray, IntArray, Signal, Stage, StageOutput
from analytics.series import SensorIndex, SeriesIndex
from core.errors import ConfigError
from core.metrics import METRICS
from core.types import AlertClass, Sensor, SensorKind, Severity

logger = logging.getLogger(__name__)

LEVELS: tuple[Severity, ...] = (Severity.INFO, Severity.WARNING, Severity.CRITICAL)
HANOI_UTC_OFFSET_S = 7 * 3600  # Asia/Ho_Chi_Minh has no daylight saving time

Direction = Literal["above", "below", "outside"]


@dataclass(frozen=True, slots=True)
class Rule:
    """One rule; several rules may share an ``id`` (the most specific one applies)."""

    id: str
    metric: str
    levels: Mapping[Severity, float]
    direction: Direction = "above"
    hysteresis: float = 0.0
    min_duration_s: float = 0.0
    min_readings: int = 1
    kinds: frozenset[SensorKind] = frozenset()
    sensors: frozenset[str] = frozenset()
    site_types: frozenset[str] = frozenset()  # the meta's site_type ("" = none announced)
    hours: tuple[int, int] | None = None  # local [start, end) hours, wrapping midnight
    alert_class: AlertClass = AlertClass.THRESHOLD
    title: str = ""
    low: float | None = None  # direction "outside"
    high: float | None = None

    @property
    def specificity(self) -> int:
        if self.sensors:
            return 3
        return (2 if self.site_types else 0) + (1 if self.kinds else 0)

    def applies_to(self, sensor: str, kind: SensorKind | None, site_type: str = "") -> bool:
        if self.sensors:
            return sensor in self.sensors
        if self.site_types and site_type not in self.site_types:
            return False
        if self.kinds:
            return kind in self.kinds
        return True


DEFAULT_RULES_TOML = """
# Built-in rules for Hanoi.  Levels are in the metric's catalogue unit.
# Fields: id, metric, direction (above|below|outside), info/warning/critical,
# hysteresis, min_duration_s, min_readings, kinds, sensors, hours = [start, end)
# in local time, alert_class (threshold|device|probable_fault|incident), title,
# low/high (direction outside).

# Street gauges (meta "site_type": "street", or none announced): depth of water
# on the road.  River gauges read their river's stage above the gauge datum
# (hundreds of cm on any day), so street levels mean nothing there: a river
# gauge is judged by the alarm stages it announces in its meta
# ({"levels": {"water_level": {...}}}), which apply to any gauge, and otherwise
# only by the series detector.
[[rules]]
id = "water_level.flood"
metric = "water_level"
site_types = ["street", ""]
title = "flooding"
info = 10.0
warning = 20.0
critical = 40.0
hysteresis = 3.0
min_readings = 2

# A street gauge measures depth: well below zero is a broken or shifted sensor.
[[rules]]
id = "water_level.implausible"
metric = "water_level"
direction = "outside"
site_types = ["street", ""]
title = "implausible street water depth"
alert_class = "probable_fault"
low = -5.0
high = 500.0
warning = 0.0
min_readings = 3

# Air quality, one-hour values: where VN_AQI (Decision 1459/QD-TCMT) passes
# 200 (very unhealthy) and 300 (hazardous).
[[rules]]
id = "pm25.level"
metric = "pm25"
title = "fine dust (PM2.5)"
warning = 150.0
critical = 250.0
hysteresis = 15.0
min_duration_s = 1800

[[rules]]
id = "pm10.level"
metric = "pm10"
title = "dust (PM10)"
warning = 350.0
critical = 420.0
hysteresis = 30.0
min_duration_s = 1800

[[rules]]
id = "no2.level"
metric = "no2"
title = "nitrogen dioxide"
warning = 1200.0
critical = 2350.0
hysteresis = 100.0
min_duration_s = 900

[[rules]]
id = "so2.level"
metric = "so2"
title = "sulphur dioxide"
warning = 800.0
critical = 1600.0
hysteresis = 50.0
min_duration_s = 900

[[rules]]
id = "co.level"
metric = "co"
title = "carbon monoxide"
warning = 60000.0
critical = 90000.0
hysteresis = 5000.0
min_duration_s = 900

[[rules]]
id = "o3.level"
metric = "o3"
title = "ozone"
warning = 400.0
critical = 800.0
hysteresis = 30.0
min_duration_s = 900

# Noise (QCVN 26:2010/BTNMT, ordinary areas: 70 dB(A) 6-21 h, 55 dB(A) 21-6 h);
# warnings sit well above the limits so that a busy street is not an alert.
[[rules]]
id = "noise.day"
metric = "noise"
title = "noise"
hours = [6, 21]
warning = 85.0
critical = 95.0
hysteresis = 3.0
min_duration_s = 900

[[rules]]
id = "noise.night"
metric = "noise"
title = "night-time noise"
hours = [21, 6]
warning = 75.0
critical = 85.0
hysteresis = 3.0
min_duration_s = 900

# Weather: heat ("especially severe heat" >= 39 degC), cold, gale and storm winds.
[[rules]]
id = "temperature.heat"
metric = "temperature"
title = "heat"
warning = 39.0
critical = 41.0
hysteresis = 1.0
min_duration_s = 1800

[[rules]]
id = "temperature.cold"
metric = "temperature"
direction = "below"
title = "severe cold"
warning = 10.0
critical = 5.0
hysteresis = 1.0
min_duration_s = 3600

[[rules]]
id = "wind_speed.gale"
metric = "wind_speed"
title = "strong wind"
warning = 17.2
critical = 24.5
hysteresis = 2.0
min_readings = 2

# Fire weather: air this dry (Hanoi's afternoons rarely fall below 45 %) dries
# out the fuel within hours, whatever the cumulative danger index says yet.
[[rules]]
id = "humidity.dry"
metric = "humidity"
direction = "below"
kinds = ["weather"]
title = "very dry air (fire weather)"
warning = 35.0
critical = 25.0
hysteresis = 5.0
min_duration_s = 900

# Traffic: a queue backing up far past the junction.
[[rules]]
id = "queue_length.level"
metric = "queue_length"
title = "traffic queue"
warning = 1000.0
critical = 2000.0
hysteresis = 100.0
min_duration_s = 600

# Devices
[[rules]]
id = "battery.low"
metric = "battery"
direction = "below"
title = "low battery"
alert_class = "device"
warning = 15.0
critical = 5.0
hysteresis = 3.0
min_readings = 2

# Plausibility in Hanoi's climate (narrower than the catalogue's physical range):
# a value outside means a broken sensor, not weather.
[[rules]]
id = "temperature.implausible"
metric = "temperature"
direction = "outside"
title = "implausible temperature"
alert_class = "probable_fault"
low = -5.0
high = 50.0
warning = 0.0
min_readings = 3

[[rules]]
id = "pressure.implausible"
metric = "pressure"
direction = "outside"
title = "implausible air pressure"
alert_class = "probable_fault"
low = 950.0
high = 1060.0
warning = 0.0
min_readings = 3
"""

_FIELDS = {
    "id",
    "metric",
    "direction",
    "info",
    "warning",
    "critical",
    "hysteresis",
    "min_duration_s",
    "min_readings",
    "kinds",
    "kind",
    "sensors",
    "site_types",
    "hours",
    "alert_class",
    "title",
    "low",
    "high",
}


def parse_rules(doc: Mapping[str, Any], source: str = "rules") -> list[Rule]:
    """Build rules from a parsed document ``{"rules": [...]}``; errors name the rule."""
    items = doc.get("rules", [])
    if not isinstance(items, list):
        raise ConfigError(f"{source}: 'rules' must be a list of tables")
    out = []
    for i, item in enumerate(items):
        where = f"{source}: rule {i + 1}"
        if not isinstance(item, Mapping):
            raise ConfigError(f"{where} is not a table")
        unknown = set(item) - _FIELDS
        if unknown:
            raise ConfigError(f"{where} has unknown fields: {', '.join(sorted(unknown))}")
        try:
            out.append(_rule(item))
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigError(f"{where} ({item.get('id', '?')}): {exc}") from None
    return out


def _rule(item: Mapping[str, Any]) -> Rule:
    metric = str(item["metric"])
    if metric not in METRICS:
        raise ValueError(f"unknown metric {metric!r}")
    rid = str(item.get("id") or f"{metric}.level")
    direction = str(item.get("direction", "above"))
    if direction not in ("above", "below", "outside"):
        raise ValueError("direction must be above, below or outside")
    levels = {s: float(item[s.value]) for s in LEVELS if item.get(s.value) is not None}
    if not levels:
        raise ValueError("needs at least one of info, warning, critical")
    if any(not math.isfinite(v) for v in levels.values()):
        raise ValueError("levels must be finite numbers")
    ordered = [levels[s] for s in LEVELS if s in levels]
    ascending = direction != "below"
    if ordered != sorted(ordered, reverse=not ascending):
        raise ValueError(f"levels must {'rise' if ascending else 'fall'} from info to critical")
    low = item.get("low")
    high = item.get("high")
    if direction == "outside" and (low is None or high is None or float(low) >= float(high)):
        raise ValueError("direction outside needs low < high")
    kinds_raw = item.get("kinds", item.get("kind", []))
    kinds = [kinds_raw] if isinstance(kinds_raw, str) else list(kinds_raw)
    hours = item.get("hours")
    if hours is not None:
        if len(hours) != 2 or not all(0 <= int(h) <= 24 for h in hours):
            raise ValueError("hours must be [start, end) with 0 <= hour <= 24")
        hours = (int(hours[0]), int(hours[1]))
    return Rule(
        id=rid,
        metric=metric,
        levels=levels,
        direction=direction,  # type: ignore[arg-type]
        hysteresis=float(item.get("hysteresis", 0.0)),
        min_duration_s=float(item.get("min_duration_s", 0.0)),
        min_readings=max(1, int(item.get("min_readings", 1))),
        kinds=frozenset(SensorKind(k) for k in kinds),
        sensors=frozenset(str(s) for s in item.get("sensors", [])),
        site_types=frozenset(
            str(t)
            for t in (
                [item["site_types"]]
                if isinstance(item.get("site_types"), str)
                else item.get("site_types", [])
            )
        ),
        hours=hours,
        alert_class=AlertClass(item.get("alert_class", "threshold")),
        title=str(item.get("title", "")),
        low=None if low is None else float(low),
        high=None if high is None else float(high),
    )


def load_rules(path: Path | None = None) -> list[Rule]:
    """Rules from a TOML, JSON or YAML file; the built-in Hanoi rules without a path."""
    if path is None:
        return parse_rules(tomllib.loads(DEFAULT_RULES_TOML), "built-in rules")
    text = path.read_text("utf-8")
    suffix = path.suffix.lower()
    try:
        if suffix == ".toml":
            doc = tomllib.loads(text)
        elif suffix == ".json":
            doc = json.loads(text)
        elif suffix in (".yaml", ".yml"):
            try:
                import yaml
            except ImportError:
                raise ConfigError("YAML rules need PyYAML; use TOML or JSON") from None
            doc = yaml.safe_load(text)
        else:
            raise ConfigError(f"{path}: rules files are .toml, .json or .yaml")
    except (tomllib.TOMLDecodeError, ValueError) as exc:
        raise ConfigError(f"{path}: {exc}") from None
    if not isinstance(doc, Mapping):
        raise ConfigError(f"{path}: expected a table with a 'rules' list")
    return parse_rules(doc, str(path))


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


class _Table:
    """One rule id resolved for every sensor code: thresholds, hysteresis, band, rule."""

    def __init__(self) -> None:
        self.done = np.zeros(0, dtype=bool)
        self.known = np.zeros(0, dtype=bool)
        self.thr = np.zeros((0, 3))
        self.hyst = np.zeros(0)
        self.low = np.zeros(0)
        self.high = np.zeros(0)
        self.resolved: list[_Resolved | None] = []

    def ensure(self, n: int) -> None:
        old = self.done.size
        if n <= old:
            return
        cap = max(64, 2 * old, n)
        grow = cap - old
        self.done = np.r_[self.done, np.zeros(grow, dtype=bool)]
        self.known = np.r_[self.known, np.zeros(grow, dtype=bool)]
        self.thr = np.vstack([self.thr, np.full((grow, 3), np.nan)])
        self.hyst = np.r_[self.hyst, np.zeros(grow)]
        self.low = np.r_[self.low, np.full(grow, -np.inf)]
        self.high = np.r_[self.high, np.full(grow, np.inf)]
        self.resolved.extend([None] * grow)


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
        table.ensure(len(self.sensor_index))
        fresh = codes[~table.done[codes]]
        if fresh.size:
            names = self.sensor_index.names
            for code in np.unique(fresh):
                r = self._resolve(group, names[code], ctx)
                table.done[code] = True
                table.resolved[code] = r
                if r is not None:
                    table.known[code] = True
                    table.thr[code] = r.thresholds
                    table.hyst[code] = r.rule.hysteresis
                    table.low[code] = -np.inf if r.rule.low is None else r.rule.low
                    table.high[code] = np.inf if r.rule.high is None else r.rule.high
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
        known = table.known[codes]
        if not known.any():
            return
        thr = table.thr[codes]
        hyst = table.hyst[codes]
        values = batch.value[pos]
        times = batch.time[pos]
        direction = group[0].direction
        if direction == "below":
            x, thr = -values, -thr
        elif direction == "outside":
            x = np.maximum(table.low[codes] - values, values - table.high[codes])
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
            lo, hi = _first_level(r), None
        else:
            limit = f"at or above the {sev} level {thr:g} {unit}"
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
    local = ((times + HANOI_UTC_OFFSET_S) // 3600) % 24
    start, end = hours
    if start <= end:
        return (local >= start) & (local < end)
    return (local >= start) | (local < end)
