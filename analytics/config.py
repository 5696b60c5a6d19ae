"""Settings of ``ioc analytics`` (``IOC_ANALYTICS_*``), on top of the shared ``core`` settings."""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator

from analytics.alerts.correlator import CorrelatorConfig, parse_radii
from core.errors import ConfigError
from core.settings import Settings


@dataclass(frozen=True, slots=True)
class Partition:
    """This instance's share of the sensors: those whose ``crc32(id) % count == index``."""

    index: int = 0
    count: int = 1

    @classmethod
    def parse(cls, text: str) -> Partition:
        try:
            i, n = (int(x) for x in text.strip().split("/"))
        except ValueError:
            raise ConfigError(
                f"IOC_ANALYTICS_PARTITION must look like i/n (e.g. 0/3), got {text!r}"
            ) from None
        if n < 1 or not 0 <= i < n:
            raise ConfigError(f"IOC_ANALYTICS_PARTITION {text!r}: need 0 <= i < n")
        return cls(i, n)

    def owns(self, sensor: str) -> bool:
        return self.count == 1 or zlib.crc32(sensor.encode()) % self.count == self.index

    @property
    def label(self) -> str:
        return f"{self.index}/{self.count}"


class AnalyticsSettings(Settings):
    """Everything ``ioc analytics`` reads from ``IOC_ANALYTICS_*`` (defaults suit Hanoi's load)."""

    analytics_client_id: str = Field(
        default="ioc-analytics",
        description="MQTT client id prefix; the partition is appended, the session is persistent",
    )
    analytics_partition: str = Field(
        default="0/1", description="i/n: handle the sensors with crc32(id) % n == i"
    )
    analytics_mqtt_protocol: Literal["5", "3.1.1"] = Field(
        default="5", description="MQTT protocol version to speak to the broker"
    )
    analytics_session_expiry_s: int = Field(
        default=86_400, ge=0, description="how long the broker keeps our session while we are away"
    )
    analytics_batch_ms: float = Field(
        default=50.0,
        gt=0,
        le=5_000,
        description="micro-batch period: the queue is drained this often",
    )
    analytics_batch_max: int = Field(
        default=50_000, ge=1, description="readings per micro-batch at most"
    )
    analytics_queue_max: int = Field(
        default=2_000_000, ge=1_000, description="readings waiting at most before on_message waits"
    )
    analytics_checkpoint_s: float = Field(
        default=60.0, gt=0, description="state is checkpointed into analytics_state this often"
    )
    analytics_registry_refresh_s: float = Field(
        default=30.0, gt=0, description="the sensor registry is reloaded from `sensors` this often"
    )
    analytics_warmup_s: float = Field(
        default=3_600.0,
        ge=0,
        description="on a start without checkpoint, learn from this much readings history first",
    )
    analytics_replay_max_s: float = Field(
        default=6 * 3_600.0,
        ge=0,
        description="after a restart, replay readings since the checkpoint, at most this far back",
    )
    analytics_rules_file: Path | None = Field(
        default=None, description="rules file (TOML, JSON or YAML); default: built-in Hanoi rules"
    )
    analytics_stages: str = Field(
        default="rules,series,health,domain",
        description="stages to run: rules, series, device (several metrics of a device "
        "together), health, domain (= aqi, fire, camera)",
    )
    analytics_detector: str = Field(
        default="auto",
        description="series detector: auto (the project's default), robust_z, a name from "
        "analytics.detectors",
    )
    analytics_series_threshold: float = Field(
        default=0.7,
        gt=0,
        lt=1,
        description="detector score at or above which a reading is anomalous: the one "
        "operating point, also the threshold `ioc eval nab` scores and `ioc detect` alarms at "
        "(0.5 is NAB's best, but a simulated city then gets 300 false alerts per 100 "
        "sensor-days; 0.7 gets none from the series stage)",
    )
    analytics_series_critical: float = Field(
        default=0.8, gt=0, le=1, description="score that makes a series anomaly critical"
    )
    analytics_series_debounce: int = Field(
        default=1, ge=1, description="anomalous readings in an episode before its alert opens"
    )
    analytics_series_clear: int = Field(
        default=3, ge=1, description="consecutive normal readings before a series alert clears"
    )
    analytics_series_exclude: str = Field(
        default="wind_direction,count_motorbike,count_car,count_bus,count_truck,battery",
        description="metrics the series detector does not watch (comma separated)",
    )
    analytics_update_throttle_s: float = Field(
        default=60.0, ge=0, description="at most one 'updated' event per alert this often"
    )
    analytics_resolve_after_s: float = Field(
        default=300.0, ge=0, description="an alert resolves after its condition cleared this long"
    )
    analytics_cooldown_s: float = Field(
        default=1_800.0,
        ge=0,
        description="a condition returning this soon after resolution reopens the same alert",
    )
    analytics_stale_resolve_s: float = Field(
        default=0.0,
        ge=0,
        description="resolve an alert with no signal for this long (0: never)",
    )
    analytics_heartbeat_k: float = Field(
        default=3.0, gt=1, description="a sensor is missing after k x its reporting interval"
    )
    analytics_heartbeat_min_s: float = Field(
        default=120.0, ge=0, description="never call a sensor missing sooner than this"
    )
    analytics_offline_grace_s: float = Field(
        default=30.0, ge=0, description="a device must stay offline this long for an alert"
    )
    analytics_stuck_factor: float = Field(
        default=10.0, gt=1, description="stuck: a value repeats this many times longer than usual"
    )
    analytics_stuck_min_readings: int = Field(
        default=10, ge=2, description="stuck: never with fewer identical readings than this"
    )
    analytics_stuck_min_s: float = Field(
        default=600.0, ge=0, description="stuck: never for a shorter time than this"
    )
    analytics_spatial_window_s: float = Field(
        default=1_800.0, gt=0, description="neighbours' anomalies this close in time corroborate"
    )
    analytics_spatial_radius_km: str = Field(
        default="",
        description="neighbour radius per kind over the defaults, e.g. traffic_camera=1.5,air_quality=10",
    )
    analytics_spatial_min_agree: int = Field(
        default=1, ge=1, description="neighbours that must agree for an incident"
    )
    analytics_publish_alerts: bool = Field(
        default=True,
        description="deprecated, ignored: alert events reach MQTT through the notify relay",
    )
    analytics_incidents: bool = Field(
        default=True,
        description="run the incident correlator (one leader among all analytics processes)",
    )
    analytics_incident_radius_km: float = Field(
        default=3.0, gt=0, le=100, description="alerts of sensors this close join one incident"
    )
    analytics_incident_radii: str = Field(
        default="air_pollution=15,fire_weather=20,severe_weather=15",
        description="a larger radius for regional hazards, e.g. air_pollution=15,fire_weather=20",
    )
    analytics_incident_window_s: float = Field(
        default=1_800.0,
        gt=0,
        description="an alert joins an incident active this recently (seconds), else opens one",
    )
    analytics_forecast_horizon_s: float = Field(
        default=5400.0,
        gt=0,
        le=6 * 3600,
        description="forecast stage: warn when the next stage is expected within this (seconds)",
    )
    analytics_forecast_min_t: float = Field(
        default=4.0, gt=0, description="forecast stage: a trend's slope in standard errors"
    )
    analytics_forecast_confirm: int = Field(
        default=3, ge=1, description="forecast stage: readings in a row that agree before a warning"
    )
    analytics_forecast_clear: int = Field(
        default=5, ge=1, description="forecast stage: readings in a row without a crossing to clear"
    )
    analytics_forecast_rain_capacity_mm: float = Field(
        default=16.0, ge=0, description="forecast stage: rain a street's drains hold (mm)"
    )
    analytics_forecast_rain_gain: float = Field(
        default=1.3, ge=0, description="forecast stage: cm of water per mm of rain beyond them"
    )
    analytics_forecast_rain_tau_s: float = Field(
        default=2700.0, gt=0, description="forecast stage: the drains' time constant (seconds)"
    )
    analytics_metrics_port: int = Field(
        default=9102, ge=0, le=65_535, description="Prometheus metrics port (0: off)"
    )

    @field_validator("analytics_incident_radii")
    @classmethod
    def _check_radii(cls, v: str) -> str:
        parse_radii(v)
        return v

    @property
    def incident_config(self) -> CorrelatorConfig:
        return CorrelatorConfig(
            radius_km=self.analytics_incident_radius_km,
            window_s=self.analytics_incident_window_s,
            radii=parse_radii(self.analytics_incident_radii),
        )

    @field_validator("analytics_partition")
    @classmethod
    def _check_partition(cls, v: str) -> str:
        Partition.parse(v)
        return v

    @property
    def partition(self) -> Partition:
        return Partition.parse(self.analytics_partition)

    @property
    def client_id(self) -> str:
        p = self.partition
        return f"{self.analytics_client_id}-{p.index}of{p.count}"

    @property
    def stage_names(self) -> list[str]:
        return [s.strip() for s in self.analytics_stages.split(",") if s.strip()]

    @property
    def series_exclude(self) -> frozenset[str]:
        return frozenset(s.strip() for s in self.analytics_series_exclude.split(",") if s.strip())
