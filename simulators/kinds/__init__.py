"""The built-in Hanoi sensor models; importing this package registers them."""

from simulators.kinds.air import AirQualityModel
from simulators.kinds.noise_meter import NoiseMeterModel
from simulators.kinds.traffic import TrafficCameraModel
from simulators.kinds.water import WaterLevelModel
from simulators.kinds.weather import WeatherStationModel

__all__ = [
    "AirQualityModel",
    "NoiseMeterModel",
    "TrafficCameraModel",
    "WaterLevelModel",
    "WeatherStationModel",
]
