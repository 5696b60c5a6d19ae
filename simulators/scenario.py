"""Scenario files (YAML or JSON): the city's size, extra sensor types, incidents in time and space.

``load_scenario(path)`` returns a validated ``Scenario`` or raises
``core.errors.ScenarioError`` whose message names the file, the line and the
problem.  The format is documented (and versioned by ``version: 1``) in
docs/simulators.md; ``ioc eval scenario`` reads the same files.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import yaml

from core.errors import ScenarioError
from core.metrics import METRICS
from core.types import DISPLAY_TZ, SensorKind
from simulators import geo
from simulators.incidents import FaultKind, IncidentKind

SCENARIO_VERSION = 1
_DURATION_RE = re.compile(
    r"^\s*(?:(\d+(?:\.\d+)?)\s*d)?\s*(?:(\d+(?:\.\d+)?)\s*h)?\s*(?:(\d+(?:\.\d+)?)\s*m)?\s*(?:(\d+(?:\.\d+)?)\s*s)?\s*$"
)


# --- YAML with line numbers ------------------------------------------------------------


class LDict(dict[str, Any]):
    """A mapping that remembers the line of itself and of each key."""

    line: int = 0
    lines: dict[str, int]


class LList(list[Any]):
    """A sequence that remembers the line of itself and of each item."""

    line: int = 0
    lines: list[int]


class _Loader(yaml.SafeLoader):
    pass


def _mapping(loader: _Loader, node: yaml.MappingNode) -> LDict:
    loader.flatten_mapping(node)
    out = LDict()
    out.line = node.start_mark.line + 1
    out.lines = {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        line = key_node.start_mark.line + 1
        if not isinstance(key, str | int | float | bool):
            raise ScenarioError(f"line {line}: a key must be a plain word, got {key!r}")
        key = str(key)
        if key in out:
            raise ScenarioError(
                f"line {line}: duplicate key {key!r} (first on line {out.lines[key]})"
            )
        out[key] = loader.construct_object(value_node, deep=True)
        out.lines[key] = line
    return out


def _sequence(loader: _Loader, node: yaml.SequenceNode) -> LList:
    out = LList(loader.construct_object(child, deep=True) for child in node.value)
    out.line = node.start_mark.line + 1
    out.lines = [child.start_mark.line + 1 for child in node.value]
    return out


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping)
_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_SEQUENCE_TAG, _sequence)


def parse_text(text: str, name: str = "scenario") -> Any:
    """YAML or JSON text to Python values with line numbers; errors name the line."""
    stripped = text.lstrip()
    if stripped.startswith(("{", "[")):
        try:
            json.loads(text)
        except json.JSONDecodeError as exc:
            raise ScenarioError(f"{name}: line {exc.lineno}: invalid JSON: {exc.msg}") from None
    try:
        return yaml.load(text, Loader=_Loader)
    except ScenarioError as exc:
        raise ScenarioError(f"{name}: {exc}") from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else 0
        raise ScenarioError(
            f"{name}: line {line}: invalid YAML: {exc.problem or exc.context}"
        ) from None
    except yaml.YAMLError as exc:
        raise ScenarioError(f"{name}: invalid YAML: {exc}") from None


# --- values -------------------------------------------------------------------------------


def parse_duration(value: Any) -> float:
    """``90`` (seconds), ``"90s"``, ``"45m"``, ``"2h"``, ``"1d6h"``, ``"1h30m"`` -> seconds."""
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is not a duration")
    if isinstance(value, int | float):
        if value < 0:
            raise ValueError(f"duration {value} is negative")
        return float(value)
    if isinstance(value, str):
        m = _DURATION_RE.match(value)
        if m and any(m.groups()):
            d, h, mi, s = (float(g) if g else 0.0 for g in m.groups())
            return d * 86_400 + h * 3600 + mi * 60 + s
    raise ValueError(f"{value!r} is not a duration (use e.g. 90s, 45m, 2h, 1d, 1h30m)")


def parse_time(value: Any, *, base: float | None = None, now: float | None = None) -> float:
    """An instant: RFC 3339 (no zone = Hanoi time), ``now``, or ``+2h`` / ``-1d`` / seconds from ``base``."""
    if isinstance(value, int | float) and not isinstance(value, bool) and base is not None:
        return base + float(value)
    if isinstance(value, datetime):
        dt = value if value.tzinfo else value.replace(tzinfo=DISPLAY_TZ)
        return dt.timestamp()
    if isinstance(value, date):
        return datetime(value.year, value.month, value.day, tzinfo=DISPLAY_TZ).timestamp()
    if isinstance(value, str):
        text = value.strip()
        if text == "now":
            return datetime.now(UTC).timestamp() if now is None else now
        for prefix in ("now+", "now-"):
            if text.startswith(prefix):
                ref = datetime.now(UTC).timestamp() if now is None else now
                sign = 1.0 if prefix == "now+" else -1.0
                return ref + sign * parse_duration(text[4:])
        if text[:1] in "+-" and base is not None:
            sign = 1.0 if text[0] == "+" else -1.0
            return base + sign * parse_duration(text[1:])
        try:
            dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            pass
        else:
            return (dt if dt.tzinfo else dt.replace(tzinfo=DISPLAY_TZ)).timestamp()
    hint = "+2h from the start, " if base is not None else ""
    raise ValueError(
        f"{value!r} is not a time (use {hint}now, now-1d or 2026-11-23T07:00:00+07:00)"
    )


# --- the scenario --------------------------------------------------------------------------


@dataclass(slots=True)
class IncidentSpec:
    """One ``incidents:`` entry, validated but not yet resolved to sensors."""

    kind: IncidentKind
    at: Any  # absolute epoch, or a relative string resolved against the run's start
    duration_s: float
    line: int
    sensor: str | None = None
    near: tuple[float, float] | None = None
    area: str | None = None
    fault: FaultKind | None = None
    metrics: tuple[str, ...] = ()
    params: dict[str, float] = field(default_factory=dict)

    def start(self, sim_start: float) -> float:
        return parse_time(self.at, base=sim_start)


@dataclass(slots=True)
class MetricSpec:
    """How a declarative sensor type makes one metric (see docs)."""

    base: float = 0.0
    daily_amplitude: float = 0.0
    peak_hour: float = 14.0
    noise: float = 0.0
    smooth: float = 0.0
    smooth_hours: float = 6.0
    traffic_gain: float = 0.0
    rain_gain: float = 0.0
    decimals: int = 2


@dataclass(slots=True)
class SensorTypeSpec:
    name: str
    kind: SensorKind
    id_prefix: str
    count: int
    interval_s: float
    metrics: dict[str, MetricSpec]
    area: str | None
    line: int


@dataclass(slots=True)
class Scenario:
    name: str = "default"
    path: str = ""
    seed: int | None = None
    start: Any = None
    duration_s: float | None = None
    scale: float | None = None
    counts: dict[str, int] = field(default_factory=dict)
    intervals: dict[str, float] = field(default_factory=dict)
    formats: dict[str, float] = field(default_factory=dict)
    plugins: list[str] = field(default_factory=list)
    sensor_types: list[SensorTypeSpec] = field(default_factory=list)
    incidents: list[IncidentSpec] = field(default_factory=list)
    random: dict[IncidentKind, float] = field(default_factory=dict)
    lines: dict[str, int] = field(default_factory=dict)  # where top-level keys are


FORMATS = ("native", "senml", "fiware")
_TOP = {
    "version",
    "name",
    "seed",
    "start",
    "duration",
    "city",
    "plugins",
    "sensor_types",
    "incidents",
    "random",
}
_CITY = {"scale", "counts", "intervals", "formats"}
_COMMON = {"kind", "at", "duration", "sensor", "near", "area", "radius_km"}
_INCIDENT_KEYS: dict[IncidentKind, set[str]] = {
    IncidentKind.TRAFFIC_INCIDENT: _COMMON | {"severity", "spread", "spread_delay", "ramp"},
    IncidentKind.POLLUTION_EPISODE: _COMMON | {"factor", "rise"},
    IncidentKind.FLASH_FLOOD: _COMMON | {"rain_mm_h", "ramp"},
    IncidentKind.FIRE_WEATHER: _COMMON | {"intensity", "ramp"},
    IncidentKind.SENSOR_FAULT: _COMMON | {"fault", "metric", "metrics", "magnitude"},
}
_NUMBER_PARAMS = {
    "severity",
    "spread",
    "radius_km",
    "factor",
    "rain_mm_h",
    "intensity",
    "magnitude",
}
_DURATION_PARAMS = {"spread_delay", "rise", "ramp"}
_METRIC_SPEC_KEYS = set(MetricSpec.__dataclass_fields__)
_AREAS = {d.name for d in geo.DISTRICTS}


class _Ctx:
    def __init__(self, name: str) -> None:
        self.name = name

    def fail(self, line: int, problem: str) -> ScenarioError:
        return ScenarioError(f"{self.name}: line {line}: {problem}")


def _line(doc: Any, key: str | int, default: int = 0) -> int:
    if isinstance(doc, LDict) and isinstance(key, str):
        return doc.lines.get(key, doc.line)
    if isinstance(doc, LList) and isinstance(key, int) and key < len(doc.lines):
        return doc.lines[key]
    return getattr(doc, "line", default)


def _mapping_of(ctx: _Ctx, doc: Any, where: str, line: int, allowed: set[str] | None) -> LDict:
    if not isinstance(doc, dict):
        raise ctx.fail(line, f"{where} must be a mapping of key: value, got {type(doc).__name__}")
    d = doc if isinstance(doc, LDict) else LDict(doc)
    if not isinstance(doc, LDict):
        d.line, d.lines = line, {}
    for key in d:
        if allowed is not None and key not in allowed:
            raise ctx.fail(
                _line(d, key),
                f"{where}: unknown key {key!r} (allowed: {', '.join(sorted(allowed))})",
            )
    return d


def _number(
    ctx: _Ctx, doc: LDict, key: str, where: str, lo: float | None = None, hi: float | None = None
) -> float:
    v = doc[key]
    if isinstance(v, bool) or not isinstance(v, int | float):
        raise ctx.fail(_line(doc, key), f"{where}.{key} must be a number, got {v!r}")
    if (lo is not None and v < lo) or (hi is not None and v > hi):
        bounds = (
            f"{lo:g}..{hi:g}"
            if lo is not None and hi is not None
            else (f">= {lo:g}" if lo is not None else f"<= {hi:g}")
        )
        raise ctx.fail(_line(doc, key), f"{where}.{key} = {v} must be {bounds}")
    return float(v)


def _duration(ctx: _Ctx, doc: LDict, key: str, where: str) -> float:
    try:
        return parse_duration(doc[key])
    except ValueError as exc:
        raise ctx.fail(_line(doc, key), f"{where}.{key}: {exc}") from None


def _near(ctx: _Ctx, doc: LDict, where: str) -> tuple[float, float]:
    v = doc["near"]
    ok = (
        isinstance(v, list | tuple)
        and len(v) == 2
        and all(isinstance(x, int | float) and not isinstance(x, bool) for x in v)
    )
    if not ok:
        raise ctx.fail(_line(doc, "near"), f"{where}.near must be [lat, lon], got {v!r}")
    lat, lon = float(v[0]), float(v[1])
    if not (20.5 <= lat <= 21.5 and 105.2 <= lon <= 106.1):
        raise ctx.fail(
            _line(doc, "near"),
            f"{where}.near [{lat}, {lon}] is not in Hanoi (lat 20.5..21.5, lon 105.2..106.1)",
        )
    return lat, lon


def _area(ctx: _Ctx, doc: LDict, where: str) -> str:
    v = doc["area"]
    if v not in _AREAS:
        raise ctx.fail(
            _line(doc, "area"),
            f"{where}.area {v!r} is not a district; known: {', '.join(sorted(_AREAS))}",
        )
    return str(v)


def _incident(ctx: _Ctx, raw: Any, line: int, where: str) -> IncidentSpec:
    if not isinstance(raw, dict) or "kind" not in raw:
        raise ctx.fail(
            line,
            f"{where} must be a mapping with a kind ({', '.join(k.value for k in IncidentKind)})",
        )
    try:
        kind = IncidentKind(raw["kind"])
    except ValueError:
        known = ", ".join(k.value for k in IncidentKind)
        raise ctx.fail(
            _line(raw, "kind", line), f"{where}.kind {raw['kind']!r} is unknown; known: {known}"
        ) from None
    doc = _mapping_of(ctx, raw, f"{where} ({kind.value})", line, _INCIDENT_KEYS[kind])
    for key in ("at", "duration"):
        if key not in doc:
            raise ctx.fail(doc.line, f"{where} ({kind.value}) needs {key}")
    at = doc["at"]
    try:
        parse_time(at, base=0.0)
    except ValueError as exc:
        raise ctx.fail(_line(doc, "at"), f"{where}.at: {exc}") from None
    spec = IncidentSpec(
        kind=kind, at=at, duration_s=_duration(ctx, doc, "duration", where), line=doc.line
    )
    if spec.duration_s <= 0:
        raise ctx.fail(_line(doc, "duration"), f"{where}.duration must be more than 0")
    places = [k for k in ("sensor", "near", "area") if k in doc]
    if len(places) > 1:
        raise ctx.fail(
            _line(doc, places[1]),
            f"{where}: give one of sensor, near or area, not {' and '.join(places)}",
        )
    if "sensor" in doc:
        if not isinstance(doc["sensor"], str):
            raise ctx.fail(_line(doc, "sensor"), f"{where}.sensor must be a sensor id")
        spec.sensor = doc["sensor"]
    if "near" in doc:
        spec.near = _near(ctx, doc, where)
    if "area" in doc:
        spec.area = _area(ctx, doc, where)
    if kind is IncidentKind.SENSOR_FAULT:
        if "fault" not in doc:
            raise ctx.fail(
                doc.line,
                f"{where} (sensor_fault) needs fault: one of {', '.join(f.value for f in FaultKind)}",
            )
        try:
            spec.fault = FaultKind(doc["fault"])
        except ValueError:
            known = ", ".join(f.value for f in FaultKind)
            raise ctx.fail(
                _line(doc, "fault"), f"{where}.fault {doc['fault']!r} is unknown; known: {known}"
            ) from None
        if not places:
            raise ctx.fail(doc.line, f"{where} (sensor_fault) needs sensor, near or area")
        metrics = doc.get("metrics", [doc["metric"]] if "metric" in doc else [])
        if "metric" in doc and "metrics" in doc:
            raise ctx.fail(_line(doc, "metrics"), f"{where}: give metric or metrics, not both")
        if not isinstance(metrics, list) or not all(isinstance(m, str) for m in metrics):
            raise ctx.fail(
                _line(doc, "metrics" if "metrics" in doc else "metric"),
                f"{where}.metrics must be a list of metric names",
            )
        for m in metrics:
            if m not in METRICS or METRICS[m].derived:
                key = "metrics" if "metrics" in doc else "metric"
                raise ctx.fail(_line(doc, key), f"{where}: metric {m!r} is not in the catalogue")
        spec.metrics = tuple(metrics)
    for key in _NUMBER_PARAMS & set(doc):
        spec.params[key] = _number(ctx, doc, key, where, lo=None if key == "magnitude" else 0.0)
    for key in _DURATION_PARAMS & set(doc):
        spec.params[key] = _duration(ctx, doc, key, where)
    if "factor" in spec.params and spec.params["factor"] < 1.0:
        raise ctx.fail(
            _line(doc, "factor"),
            f"{where}.factor must be at least 1 (a rise), got {spec.params['factor']}",
        )
    if "severity" in spec.params and spec.params["severity"] > 1.0:
        raise ctx.fail(_line(doc, "severity"), f"{where}.severity must be in 0..1")
    return spec


def _sensor_type(ctx: _Ctx, raw: Any, line: int, where: str) -> SensorTypeSpec:
    allowed = {"name", "kind", "id_prefix", "count", "interval_s", "metrics", "area"}
    doc = _mapping_of(ctx, raw, where, line, allowed)
    for key in ("name", "metrics"):
        if key not in doc:
            raise ctx.fail(doc.line, f"{where} needs {key}")
    name = doc["name"]
    if not isinstance(name, str) or not re.match(r"^[a-z][a-z0-9_]{0,31}$", name):
        raise ctx.fail(_line(doc, "name"), f"{where}.name {name!r} must be lower_snake_case")
    try:
        kind = SensorKind(doc.get("kind", "generic"))
    except ValueError:
        raise ctx.fail(
            _line(doc, "kind"),
            f"{where}.kind {doc['kind']!r} is not one of {', '.join(k.value for k in SensorKind)}",
        ) from None
    id_prefix = str(doc.get("id_prefix", name.replace("_", "-")))
    if not re.match(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,40}$", id_prefix):
        raise ctx.fail(
            _line(doc, "id_prefix"),
            f"{where}.id_prefix {id_prefix!r} would make invalid sensor ids",
        )
    count = doc.get("count", 1)
    if isinstance(count, bool) or not isinstance(count, int) or count < 0:
        raise ctx.fail(_line(doc, "count"), f"{where}.count must be a whole number >= 0")
    interval = _number(ctx, doc, "interval_s", where, 0.01, 86_400) if "interval_s" in doc else 60.0
    area = _area(ctx, doc, where) if "area" in doc else None
    mdoc = _mapping_of(ctx, doc["metrics"], f"{where}.metrics", _line(doc, "metrics"), set(METRICS))
    metrics: dict[str, MetricSpec] = {}
    for metric, raw_spec in mdoc.items():
        mline = _line(mdoc, metric)
        if METRICS[metric].derived:
            raise ctx.fail(
                mline, f"{where}.metrics: {metric} is derived by analytics, devices cannot send it"
            )
        sdoc = _mapping_of(
            ctx,
            raw_spec if raw_spec is not None else {},
            f"{where}.metrics.{metric}",
            mline,
            _METRIC_SPEC_KEYS,
        )
        values = {k: _number(ctx, sdoc, k, f"{where}.metrics.{metric}") for k in sdoc}
        spec = MetricSpec(**{k: (int(v) if k == "decimals" else v) for k, v in values.items()})  # type: ignore[arg-type]
        metrics[metric] = spec
    if not metrics:
        raise ctx.fail(_line(doc, "metrics"), f"{where}.metrics lists no metric")
    return SensorTypeSpec(name, kind, id_prefix, int(count), interval, metrics, area, doc.line)


def parse_scenario(doc: Any, name: str = "scenario") -> Scenario:
    """Validate a parsed scenario document (see ``parse_text``)."""
    ctx = _Ctx(name)
    if doc is None:
        doc = LDict()
        doc.line, doc.lines = 1, {}
    top = _mapping_of(ctx, doc, "the scenario", 1, _TOP)
    out = Scenario(name=str(top.get("name", Path(name).stem)), path=name, lines=dict(top.lines))
    version = top.get("version", SCENARIO_VERSION)
    if version != SCENARIO_VERSION:
        raise ctx.fail(
            _line(top, "version"),
            f"version {version!r} is not supported (this simulator reads version {SCENARIO_VERSION})",
        )
    if "seed" in top:
        seed = top["seed"]
        if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            raise ctx.fail(_line(top, "seed"), f"seed must be a whole number >= 0, got {seed!r}")
        out.seed = seed
    if "start" in top:
        try:
            parse_time(top["start"])
        except ValueError as exc:
            raise ctx.fail(_line(top, "start"), f"start: {exc}") from None
        out.start = top["start"]
    if "duration" in top:
        out.duration_s = _duration(ctx, top, "duration", "the scenario")
    if "plugins" in top:
        plugins = top["plugins"]
        if not isinstance(plugins, list) or not all(isinstance(p, str) for p in plugins):
            raise ctx.fail(_line(top, "plugins"), "plugins must be a list of module names")
        out.plugins = list(plugins)
    if "city" in top:
        city = _mapping_of(ctx, top["city"], "city", _line(top, "city"), _CITY)
        if "scale" in city:
            out.scale = _number(ctx, city, "scale", "city", 0.0, 100.0)
        for key, target in (
            ("counts", out.counts),
            ("intervals", out.intervals),
            ("formats", out.formats),
        ):
            if key not in city:
                continue
            sub = _mapping_of(ctx, city[key], f"city.{key}", _line(city, key), None)
            for k in sub:
                v = _number(ctx, sub, k, f"city.{key}", 0.01 if key == "intervals" else 0.0)
                if key == "counts" and v != int(v):
                    raise ctx.fail(_line(sub, k), f"city.counts.{k} must be a whole number")
                if key == "formats" and k not in FORMATS:
                    raise ctx.fail(
                        _line(sub, k),
                        f"city.formats: unknown format {k!r}; known: {', '.join(FORMATS)}",
                    )
                target[k] = int(v) if key == "counts" else v  # type: ignore[assignment]
        if out.formats and sum(out.formats.values()) <= 0:
            raise ctx.fail(_line(city, "formats"), "city.formats: the shares add up to 0")
    if "sensor_types" in top:
        items = top["sensor_types"]
        if not isinstance(items, list):
            raise ctx.fail(_line(top, "sensor_types"), "sensor_types must be a list")
        for i, raw in enumerate(items):
            out.sensor_types.append(_sensor_type(ctx, raw, _line(items, i), f"sensor_types[{i}]"))
        names = [s.name for s in out.sensor_types]
        for i, n in enumerate(names):
            if names.index(n) != i:
                raise ctx.fail(
                    out.sensor_types[i].line, f"sensor_types[{i}]: name {n!r} is used twice"
                )
    if "incidents" in top:
        items = top["incidents"]
        if not isinstance(items, list):
            raise ctx.fail(_line(top, "incidents"), "incidents must be a list")
        for i, raw in enumerate(items):
            out.incidents.append(_incident(ctx, raw, _line(items, i), f"incidents[{i}]"))
    if "random" in top:
        rnd = _mapping_of(
            ctx, top["random"], "random", _line(top, "random"), {k.value for k in IncidentKind}
        )
        for k in rnd:
            out.random[IncidentKind(k)] = _number(ctx, rnd, k, "random", 0.0, 10_000.0)
    return out


def load_scenario(path: str | Path) -> Scenario:
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ScenarioError(f"{p}: cannot read the scenario: {exc}") from None
    return parse_scenario(parse_text(text, str(p)), str(p))


def shipped_scenarios() -> dict[str, Path]:
    """Scenario files shipped in ``simulators/scenarios`` by name (``ioc simulate --scenario NAME``)."""
    here = Path(__file__).parent / "scenarios"
    return {p.stem: p for p in sorted(here.glob("*.y*ml")) + sorted(here.glob("*.json"))}


def resolve_scenario_path(name: str) -> Path:
    p = Path(name)
    if p.exists():
        return p
    shipped = shipped_scenarios()
    if name in shipped:
        return shipped[name]
    raise ScenarioError(
        f"{name}: no such file, and no shipped scenario of that name ({', '.join(shipped) or 'none'})"
    )
