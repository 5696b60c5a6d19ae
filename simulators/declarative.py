"""Sensor types declared in a scenario file (no Python): each metric is base + daily cycle + links + noise."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, ClassVar

import numpy as np

from core.errors import ConfigError, ScenarioError
from simulators import geo
from simulators.models import SensorModel, SensorTable, spread_over_districts, validate_model
from simulators.noise import FloatArray
from simulators.scenario import MetricSpec, SensorTypeSpec

if TYPE_CHECKING:
    from simulators.city import City


class DeclarativeModel(SensorModel):
    """value = base + daily_amplitude·cos(2π(hour − peak_hour)/24) + traffic_gain·demand
    + rain_gain·rain(mm/h) + smooth·(noise over smooth_hours) + noise·N(0, 1)."""

    specs: ClassVar[Mapping[str, MetricSpec]] = {}
    area: ClassVar[str | None] = None

    @classmethod
    def place(cls, n: int, prefix: str = "") -> SensorTable:
        districts = [d for d in geo.DISTRICTS if d.name == cls.area] if cls.area else None
        return spread_over_districts(cls, n, prefix, districts)

    def values(
        self, t: FloatArray, rng: np.random.Generator, city: City
    ) -> Mapping[str, FloatArray]:
        hour = city.hour(t)
        needs_demand = any(s.traffic_gain for s in self.specs.values())
        needs_rain = any(s.rain_gain for s in self.specs.values())
        demand = city.demand(t) if needs_demand else 0.0
        rain = city.rain(t, self.sensors) if needs_rain else 0.0
        out: dict[str, FloatArray] = {}
        for metric, s in self.specs.items():
            v = s.base + s.daily_amplitude * np.cos(2 * np.pi * (hour - s.peak_hour) / 24)
            v = v + s.traffic_gain * demand + s.rain_gain * rain
            if s.smooth:
                v = v + s.smooth * self.smooth(metric, t, max(s.smooth_hours, 0.01) * 3600.0)
            if s.noise:
                v = v + s.noise * self.normal(metric, t)
            out[metric] = np.asarray(v, dtype=np.float64) + np.zeros(len(t))
        return out


def declarative_model(spec: SensorTypeSpec, where: str = "scenario") -> type[DeclarativeModel]:
    """A ``SensorModel`` class for a ``sensor_types:`` entry of a scenario."""
    attrs = {
        "name": spec.name,
        "kind": spec.kind,
        "metrics": tuple(spec.metrics),
        "interval_s": spec.interval_s,
        "default_count": spec.count,
        "id_prefix": spec.id_prefix,
        "decimals": {m: s.decimals for m, s in spec.metrics.items()},
        "specs": dict(spec.metrics),
        "area": spec.area,
        "__doc__": f"Declared in {where} line {spec.line}.",
    }
    cls = type(f"Declared_{spec.name}", (DeclarativeModel,), attrs)
    try:
        validate_model(cls)
    except ConfigError as exc:
        raise ScenarioError(f"{where}: line {spec.line}: {exc}") from None
    return cls
