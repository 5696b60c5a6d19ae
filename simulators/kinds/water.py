"""Water-level gauges on flood-prone streets and rivers: level and rain, responding to storms."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, ClassVar

import numpy as np

from core.metrics import KIND_METRICS
from core.types import SensorKind
from simulators import geo
from simulators.city import monthly
from simulators.models import SensorModel, SensorTable, register, table_from_sites
from simulators.noise import FloatArray

if TYPE_CHECKING:
    from simulators.city import City

# Red River seasonal swing at Hanoi (cm around its mean), January first
RIVER_SEASON = (-80.0, -90.0, -90.0, -70.0, -10.0, 80.0, 180.0, 220.0, 150.0, 40.0, -30.0, -60.0)
LAG_STEP_S = 900.0  # rain history is sampled every 15 minutes ...
LAGS = 24  # ... over the last 6 hours


@register
class WaterLevelModel(SensorModel):
    """A street gauge reads 0 cm when dry and rises once rain outruns the drains;
    a river gauge sits at its seasonal level and answers rain more slowly."""

    name = "water_level"
    kind = SensorKind.WATER_LEVEL
    metrics = KIND_METRICS[SensorKind.WATER_LEVEL]
    interval_s = 60.0
    default_count = 30
    id_prefix = "wl"
    decimals: ClassVar[Mapping[str, int]] = {"water_level": 1, "rainfall": 1}

    @classmethod
    def place(cls, n: int, prefix: str = "") -> SensorTable:
        table = table_from_sites(cls, geo.WATER_SITES, n, prefix)
        bases = {s.name: s.base for s in geo.WATER_SITES}
        river = np.array([a.get("site_type") == "river" for a in table.attrs])
        table.extra["river"] = river
        table.extra["base"] = np.array(
            [bases.get(nm, 0.0) if r else 0.0 for nm, r in zip(table.names, river, strict=True)]
        )
        for a in table.attrs:
            a.setdefault("site_type", "street")
        return table

    def __init__(self, sensors: SensorTable, seed: int, interval_s: float | None = None) -> None:
        super().__init__(sensors, seed, interval_s)
        n = len(sensors)
        self.river = np.asarray(sensors.extra.get("river", np.zeros(n, dtype=bool)), dtype=bool)
        self.base = np.asarray(sensors.extra.get("base", np.zeros(n)), dtype=np.float64)
        # street: fast drains (45 min); river: slow catchment (4 h)
        self.tau_s = np.where(self.river, 4 * 3600.0, 2700.0)
        self.gain = np.where(self.river, 0.8, 1.3) * (0.8 + 0.4 * self.constant("gain"))
        self.drain_mm = np.where(self.river, 0.0, 12.0 + 8.0 * self.constant("drain"))
        self.season_w = np.where(self.river, np.where(self.base > 400, 1.0, 0.3), 0.0)
        self._lagged: SensorTable | None = None

    def values(
        self, t: FloatArray, rng: np.random.Generator, city: City
    ) -> Mapping[str, FloatArray]:
        table = self.sensors
        n = len(table)
        if self._lagged is None:
            self._lagged = table.take(np.repeat(np.arange(n), LAGS))
        lags = np.arange(LAGS) * LAG_STEP_S
        tl = (t[:, None] - lags[None, :]).ravel()
        rain_hist = city.rain(tl, self._lagged).reshape(n, LAGS)  # mm/h
        kernel = np.exp(-lags[None, :] / self.tau_s[:, None])
        stored_mm = (rain_hist * kernel).sum(axis=1) * LAG_STEP_S / 3600.0
        rise = self.gain * np.clip(stored_mm - self.drain_mm, 0.0, None)
        season = self.season_w * monthly(t, RIVER_SEASON)
        level = (
            self.base
            + season
            + rise
            + np.where(self.river, 4.0 * self.smooth("level", t, 6 * 3600.0), 0.0)
        )
        level = level + np.where(self.river, 0.5, 0.3) * self.normal("level", t)
        level = np.where(self.river, level, np.maximum(0.0, level))
        rain_now = rain_hist[:, 0] * self.interval / 3600.0
        return {"water_level": level, "rainfall": rain_now}
