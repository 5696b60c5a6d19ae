"""Assembles a simulated city from settings, a scenario and plug-ins: models, planner, engine."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from core.errors import ConfigError
from simulators.declarative import declarative_model
from simulators.engine import DEFAULT_FORMATS, Engine
from simulators.models import SensorModel, builtin_models, load_entry_points, load_plugin
from simulators.planner import Planner
from simulators.scenario import Scenario

logger = logging.getLogger(__name__)


@dataclass(slots=True)
class SimConfig:
    """Everything that decides what the simulated city sends (the same config = the same bytes)."""

    start: float
    seed: int = 42
    scale: float = 1.0
    counts: dict[str, int] = field(default_factory=dict)
    intervals: dict[str, float] = field(default_factory=dict)
    formats: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_FORMATS))
    connections: int = 1
    name: str = "hanoi"
    id_prefix: str = ""
    plugins: list[str] = field(default_factory=list)
    scenario: Scenario = field(default_factory=Scenario)
    jitter: float = 0.05
    entry_points: bool = True
    part: tuple[int, int] = (0, 1)  # (worker, workers): this process's share of the devices


def model_classes(cfg: SimConfig) -> dict[str, type[SensorModel]]:
    """Built-in, entry-point, ``--plugin`` and scenario-declared sensor models by name."""
    classes = dict(builtin_models())
    if cfg.entry_points:
        load_entry_points()
    for spec in [*cfg.plugins, *cfg.scenario.plugins]:
        load_plugin(spec)
    classes.update(builtin_models())
    for st in cfg.scenario.sensor_types:
        classes[st.name] = declarative_model(st, cfg.scenario.path or "scenario")
    return classes


def build_models(cfg: SimConfig) -> dict[str, SensorModel]:
    classes = model_classes(cfg)
    unknown = sorted(set(cfg.counts) - set(classes))
    if unknown:
        raise ConfigError(
            f"unknown sensor model(s) {', '.join(unknown)}; known: {', '.join(sorted(classes))}"
        )
    bad_iv = sorted(set(cfg.intervals) - set(classes))
    if bad_iv:
        raise ConfigError(f"interval for unknown sensor model(s) {', '.join(bad_iv)}")
    declared = {st.name for st in cfg.scenario.sensor_types}
    models: dict[str, SensorModel] = {}
    for name, cls in classes.items():
        default = cls.default_count if name in declared else round(cls.default_count * cfg.scale)
        n = int(cfg.counts.get(name, default))
        if n <= 0:
            continue
        if n > 99_999:
            raise ConfigError(f"{name}: {n} sensors is more than the id scheme holds (99,999)")
        table = cls.place(n, cfg.id_prefix)
        models[name] = cls(table, cfg.seed, cfg.intervals.get(name))
    if not models:
        raise ConfigError("the city has no sensors (all counts are 0)")
    return models


def build_engine(cfg: SimConfig) -> Engine:
    models = build_models(cfg)
    planner = Planner(models, cfg.scenario, cfg.seed, cfg.start)
    return Engine(
        models,
        seed=cfg.seed,
        start=cfg.start,
        planner=planner,
        formats=cfg.formats,
        connections=cfg.connections,
        gateway=f"{cfg.id_prefix}gw-{cfg.name}",
        jitter=cfg.jitter,
        part=cfg.part,
    )
