"""Weather stations in the forested hills of Sóc Sơn and Ba Vì, for forest-fire weather."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, ClassVar

import numpy as np

from core.metrics import KIND_METRICS
from core.types import SensorKind
from simulators import geo, noise
from simulators.models import LAYOUT_SEED, SensorModel, SensorTable, register, sensor_id
from simulators.noise import FloatArray

if TYPE_CHECKING:
    from simulators.city import City


@register
class WeatherStationModel(SensorModel):
    """Temperature, humidity, wind, rain and pressure from the city's weather,
    corrected for the station's elevation; a fire-weather day makes it hot, dry
    and windy."""

    name = "weather"
    kind = SensorKind.WEATHER
    metrics = KIND_METRICS[SensorKind.WEATHER]
    interval_s = 300.0
    default_count = 10
    id_prefix = "ws"
    decimals: ClassVar[Mapping[str, int]] = {
        "temperature": 1,
        "humidity": 1,
        "wind_speed": 1,
        "wind_direction": 0,
        "rainfall": 1,
        "pressure": 1,
    }

    @classmethod
    def place(cls, n: int, prefix: str = "") -> SensorTable:
        hills = [d for d in geo.DISTRICTS if not d.urban]
        lat = np.empty(n)
        lon = np.empty(n)
        names: list[str] = []
        areas: list[str] = []
        elev = np.empty(n)
        for i in range(n):
            key = np.array([noise.key_of(LAYOUT_SEED, cls.name, i)], dtype=np.uint64)
            u = [float(noise.uniform(key, s, 0)[0]) for s in range(1, 5)]
            if i < len(geo.HILL_SITES):
                site = geo.HILL_SITES[i]
                lat[i], lon[i], area, name = site.lat, site.lon, site.area, site.name
            else:
                d = hills[i % len(hills)]
                r = np.sqrt(u[0]) * d.radius_km * 0.6
                lat[i] = d.lat + r * np.sin(2 * np.pi * u[1]) / geo.KM_PER_DEG_LAT
                lon[i] = d.lon + r * np.cos(2 * np.pi * u[1]) / 103.9
                area, name = d.name, f"{d.name} station {i + 1}"
            elev[i] = (80.0 + 400.0 * u[2]) if area == "Ba Vì" else (50.0 + 150.0 * u[2])
            names.append(name)
            areas.append(area)
        ids = [sensor_id(prefix, cls.id_prefix, i) for i in range(n)]
        table = SensorTable(cls.kind, ids, names, lat.round(5), lon.round(5), areas)
        table.extra["elevation_m"] = elev.round(0)
        for a, e in zip(table.attrs, elev, strict=True):
            a["elevation_m"] = round(float(e))
            a["site_type"] = "forest"
        return table

    def values(
        self, t: FloatArray, rng: np.random.Generator, city: City
    ) -> Mapping[str, FloatArray]:
        table = self.sensors
        rain = city.rain(t, table) * (1.0 - city.fire_weather(t, table))
        wind = city.wind_speed(t, table) * (1.0 + 0.15 * self.normal("wind", t))
        return {
            "temperature": city.temperature(t, table) + 0.2 * self.normal("temp", t),
            "humidity": city.humidity(t, table) + 1.5 * self.normal("hum", t),
            "wind_speed": np.maximum(0.0, wind),
            "wind_direction": (city.wind_direction(t, table) + 8.0 * self.normal("wdir", t))
            % 360.0,
            "rainfall": rain * self.interval / 3600.0,
            "pressure": city.pressure(t, table) + 0.2 * self.normal("press", t),
        }
