"""A plug-in sensor model: car-park occupancy sensors (the worked example in docs/simulators.md)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, ClassVar

import numpy as np

from core.types import SensorKind
from simulators import SensorModel, register

if TYPE_CHECKING:
    from simulators.city import City


@register
class CarParkModel(SensorModel):
    """How full a car park is: it fills half an hour behind the traffic peaks."""

    name = "car_park"
    kind = SensorKind.GENERIC
    metrics = ("occupancy", "battery")
    interval_s = 300.0
    default_count = 0  # only when asked for: --count car_park=25
    id_prefix = "park"
    decimals: ClassVar[Mapping[str, int]] = {"occupancy": 1, "battery": 1}

    def values(
        self, t: np.ndarray, rng: np.random.Generator, city: City
    ) -> Mapping[str, np.ndarray]:
        size = 0.6 + 0.4 * self.constant("size")  # each car park has its own catchment
        busy = city.demand(t - 1800.0)
        share = 0.1 + 0.85 * busy * size + 0.04 * self.smooth("occupancy", t, 3600.0)
        days = (t / 86_400.0) % 30.0  # the battery is swapped every 30 days
        return {
            "occupancy": 100.0 * np.clip(share, 0.0, 1.0),
            "battery": 100.0 - 2.5 * days + 0.1 * self.normal("battery", t),
        }
