"""Rules of the rules stage: configured warning/critical levels with hysteresis and a minimum duration.

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

Rules files are TOML (``[[rules]]`` tables, the built-in
``default_rules.toml`` beside this module shows every field), JSON (``{"rules": [...]}``) or YAML when PyYAML is present.
The rules are evaluated with numpy over the whole micro-batch; only readings at
a level, or of a series already pending or active, go through the per-series
state machine.
"""

from __future__ import annotations

import json
import logging
import math
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from core.errors import ConfigError
from core.metrics import METRICS
from core.types import AlertClass, SensorKind, Severity

logger = logging.getLogger(__name__)

LEVELS: tuple[Severity, ...] = (Severity.INFO, Severity.WARNING, Severity.CRITICAL)

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


DEFAULT_RULES_FILE = Path(__file__).with_name("default_rules.toml")

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
        return parse_rules(tomllib.loads(DEFAULT_RULES_FILE.read_text("utf-8")), "built-in rules")
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
