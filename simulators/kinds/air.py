"""Air-quality stations: PM2.5, PM10, NO2, O3, CO, SO2 with Hanoi's seasons, linked to nearby traffic."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, ClassVar

import numpy as np

from core.metrics import KIND_METRICS
from core.types import SensorKind
from simulators import geo
from simulators.models import SensorModel, SensorTable, register, table_from_sites
from simulators.noise import FloatArray

if TYPE_CHECKING:
    from simulators.city import City


# µg/m³: values above the knee bend smoothly towards the ceiling (never reached)
PM25_KNEE, PM25_CEILING = 150.0, 300.0
PM10_KNEE, PM10_CEILING = 250.0, 450.0


def soft_ceiling(x: FloatArray, knee: float, ceiling: float) -> FloatArray:
    """``x`` unchanged up to ``knee``; above it, ``knee + span * tanh((x - knee) / span)``
    with ``span = ceiling - knee``: continuous, rising, and always below ``ceiling``."""
    span = ceiling - knee
    bent = knee + span * np.tanh((x - knee) / span)
    return np.where(x > knee, bent, x)


@register
class AirQualityModel(SensorModel):
    """A monitoring station: the regional background (season, night inversions,
    synoptic swings, rain washout, injected episodes) plus traffic exhaust in
    proportion to the cameras within a kilometre and the hour's demand."""

    name = "air_quality"
    kind = SensorKind.AIR_QUALITY
    metrics = KIND_METRICS[SensorKind.AIR_QUALITY]
    interval_s = 120.0
    default_count = 40
    id_prefix = "aq"
    decimals: ClassVar[Mapping[str, int]] = {
        "pm25": 1,
        "pm10": 1,
        "no2": 1,
        "o3": 1,
        "co": 0,
        "so2": 1,
        "temperature": 1,
        "humidity": 1,
    }

    @classmethod
    def place(cls, n: int, prefix: str = "") -> SensorTable:
        return table_from_sites(cls, geo.AIR_SITES, n, prefix)

    def __init__(self, sensors: SensorTable, seed: int, interval_s: float | None = None) -> None:
        super().__init__(sensors, seed, interval_s)
        self.exposure = np.full(len(sensors), 0.6)

    def prepare(self, city: City) -> None:
        cams = city.tables.get("traffic_camera")
        if cams is None or not len(cams):
            return
        t = self.sensors
        near = np.array(
            [
                int(np.sum(geo.km_between(cams.lat, cams.lon, la, lo) < 1.0))
                for la, lo in zip(t.lat, t.lon, strict=True)
            ]
        )
        # a dense camera count means a busy neighbourhood; scale to the default city's density
        self.exposure = np.clip(near / max(1.0, 8.0 * len(cams) / 1873), 0.2, 1.6)

    def values(
        self, t: FloatArray, rng: np.random.Generator, city: City
    ) -> Mapping[str, FloatArray]:
        table = self.sensors
        bg = city.pm25_background(t, table)
        traffic = self.exposure * city.demand(t)
        hour = city.hour(t)
        pm25 = bg * (0.85 + 0.3 * traffic) * (1.0 + 0.06 * self.smooth("pm25", t, 7200.0))
        pm25 = np.maximum(1.0, pm25 + 1.5 * self.normal("pm25", t))
        pm10 = (
            pm25 * (1.45 + 0.25 * self.constant("coarse"))
            + 10.0 * traffic
            + 2.5 * self.normal("pm10", t)
        )
        no2 = (12.0 + 45.0 * traffic + 0.25 * bg) * (1.0 + 0.08 * self.smooth("no2", t, 3600.0))
        no2 = no2 + 2.0 * self.normal("no2", t)
        temp = city.temperature(t, table) + 0.5
        sun = np.clip(np.cos(2 * np.pi * (hour - 14.0) / 24), 0.0, None) ** 1.5
        warmth = np.clip((temp - 12.0) / 18.0, 0.1, 1.3)
        o3 = 15.0 + 95.0 * sun * warmth - 0.25 * no2 + 3.0 * self.normal("o3", t)
        co = 600.0 + 1400.0 * traffic + 6.0 * bg + 60.0 * self.normal("co", t)
        so2 = 6.0 + 0.08 * bg + 3.0 * traffic + 0.8 * self.normal("so2", t)
        # Hanoi's worst measured episodes: hourly PM2.5 of about 200-260 µg/m³ (VN_AQI 341 at
        # Nguyễn Văn Cừ in 2019); stacked seasons, inversions and an episode must not
        # reach 500-900 µg/m³, so the highest values bend towards a ceiling
        pm25 = soft_ceiling(pm25, PM25_KNEE, PM25_CEILING)
        pm10 = soft_ceiling(np.maximum(pm10, pm25), PM10_KNEE, PM10_CEILING)
        return {
            "pm25": pm25,
            "pm10": np.maximum(pm10, pm25),
            "no2": np.maximum(0.5, no2),
            "o3": np.maximum(1.0, o3),
            "co": np.maximum(100.0, co),
            "so2": np.maximum(0.5, so2),
            "temperature": temp + 0.2 * self.normal("temp", t),
            "humidity": city.humidity(t, table) + 1.5 * self.normal("hum", t),
        }
