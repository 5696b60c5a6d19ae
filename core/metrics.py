"""The metric catalogue: every metric's name, unit and physical range.

A value outside ``[low, high]`` cannot be a real measurement (the sensor or the
payload is broken) and is dead-lettered.  Warning and critical *levels* are a
different thing: they belong to the analytics rules.
"""

from __future__ import annotations

from dataclasses import dataclass

from core.types import SensorKind


@dataclass(frozen=True, slots=True)
class Metric:
    name: str
    unit: str
    low: float
    high: float
    description: str
    senml_units: tuple[str, ...] = ()  # SenML ``u`` values accepted for this metric
    derived: bool = False  # computed by analytics, never sent by devices


_K = SensorKind

METRICS: dict[str, Metric] = {
    m.name: m
    for m in [
        # traffic cameras (per reporting interval)
        Metric(
            "vehicle_count",
            "vehicles",
            0,
            20_000,
            "vehicles counted in the interval",
            ("count", "1"),
        ),
        Metric(
            "count_motorbike",
            "vehicles",
            0,
            20_000,
            "motorbikes counted in the interval",
            ("count", "1"),
        ),
        Metric("count_car", "vehicles", 0, 20_000, "cars counted in the interval", ("count", "1")),
        Metric("count_bus", "vehicles", 0, 5_000, "buses counted in the interval", ("count", "1")),
        Metric(
            "count_truck", "vehicles", 0, 5_000, "trucks counted in the interval", ("count", "1")
        ),
        Metric("speed", "km/h", 0, 250, "average vehicle speed", ("km/h",)),
        Metric("occupancy", "%", 0, 100, "share of time the detection zone is occupied", ("%",)),
        Metric("queue_length", "m", 0, 5_000, "queue length at the stop line", ("m",)),
        # air quality (concentrations in µg/m³ as VN_AQI uses them)
        Metric("pm25", "µg/m³", 0, 1_000, "fine particulate matter PM2.5", ("ug/m3",)),
        Metric("pm10", "µg/m³", 0, 2_000, "particulate matter PM10", ("ug/m3",)),
        Metric("no2", "µg/m³", 0, 4_000, "nitrogen dioxide", ("ug/m3",)),
        Metric("o3", "µg/m³", 0, 2_000, "ozone", ("ug/m3",)),
        Metric("co", "µg/m³", 0, 200_000, "carbon monoxide", ("ug/m3",)),
        Metric("so2", "µg/m³", 0, 4_000, "sulphur dioxide", ("ug/m3",)),
        # weather
        Metric("temperature", "°C", -40, 60, "air temperature", ("Cel",)),
        Metric("humidity", "%", 0, 100, "relative humidity", ("%RH", "%")),
        Metric("wind_speed", "m/s", 0, 75, "wind speed", ("m/s",)),
        Metric("wind_direction", "°", 0, 360, "direction the wind comes from", ("deg", "rad")),
        Metric("rainfall", "mm", 0, 500, "rain fallen in the reporting interval", ("mm",)),
        Metric("pressure", "hPa", 850, 1_100, "atmospheric pressure", ("hPa",)),
        # water
        Metric("water_level", "cm", -500, 3_000, "water level above the gauge datum", ("cm",)),
        # noise
        Metric("noise", "dB(A)", 20, 140, "A-weighted equivalent sound level", ("dB", "dBA")),
        # device health
        Metric("battery", "%", 0, 100, "battery charge", ("%EL", "%")),
        # derived by analytics
        Metric("aqi_vn", "index", 0, 1_000, "Vietnam VN_AQI (hourly, NowCast)", derived=True),
        Metric("aqi_vn_daily", "index", 0, 1_000, "Vietnam VN_AQI (daily)", derived=True),
        Metric("aqi_us", "index", 0, 1_000, "US EPA AQI (2024 breakpoints)", derived=True),
        Metric("fire_risk", "index", 0, 100, "forest-fire weather risk", derived=True),
    ]
}

# The metrics each kind of sensor normally reports (used by the simulator,
# self-registration defaults and the dashboard).
KIND_METRICS: dict[SensorKind, tuple[str, ...]] = {
    _K.TRAFFIC_CAMERA: (
        "vehicle_count",
        "count_motorbike",
        "count_car",
        "count_bus",
        "count_truck",
        "speed",
        "occupancy",
        "queue_length",
    ),
    _K.AIR_QUALITY: ("pm25", "pm10", "no2", "o3", "co", "so2", "temperature", "humidity"),
    _K.WATER_LEVEL: ("water_level", "rainfall"),
    _K.WEATHER: ("temperature", "humidity", "wind_speed", "wind_direction", "rainfall", "pressure"),
    _K.NOISE: ("noise",),
    _K.GENERIC: (),
}


def get_metric(name: str) -> Metric | None:
    return METRICS.get(name)
