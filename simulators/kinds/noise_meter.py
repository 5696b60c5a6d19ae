"""Noise meters: A-weighted sound level that follows traffic, quieter at night."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, ClassVar

import numpy as np

from core.types import SensorKind
from simulators.models import SensorModel, register
from simulators.noise import FloatArray

if TYPE_CHECKING:
    from simulators.city import City


@register
class NoiseMeterModel(SensorModel):
    """LAeq over the interval: 45-50 dB(A) at night, 65-75 by a busy road at peak."""

    name = "noise"
    kind = SensorKind.NOISE
    metrics = ("noise",)
    interval_s = 60.0
    default_count = 60
    id_prefix = "nm"
    decimals: ClassVar[Mapping[str, int]] = {"noise": 1}

    def values(
        self, t: FloatArray, rng: np.random.Generator, city: City
    ) -> Mapping[str, FloatArray]:
        site = -3.0 + 8.0 * self.constant("site")  # quiet lane .. busy junction
        rain = np.minimum(city.rain(t, self.sensors), 9.0)
        level = 46.0 + 22.0 * city.demand(t) ** 0.6 + site + 3.0 * self.smooth("noise", t, 1800.0)
        level = level + 2.0 * np.sqrt(rain) + 1.5 * self.normal("noise", t)
        return {"noise": level}
