"""Domain stages of the live pipeline: VN/US air-quality indices, forest-fire danger, camera model.

``AqiStage``, ``FireRiskStage`` and ``CameraStage`` know nothing of MQTT or the
database: they take micro-batches of readings in columns and return derived
readings (``aqi_vn``, ``aqi_vn_daily``, ``aqi_us``, ``fire_risk``) and
``Signal``s.  Each aggregates readings per sensor into buckets (an hour, a
fire-weather day, a camera window) and acts when a bucket is complete: when the
sensor's first reading of a later bucket arrives, or, for a sensor that went
quiet, when ``tick`` finds the bucket's end plus a grace period in the past.
Readings for a bucket already closed are counted (``late_readings``) and
dropped.  All the arithmetic is vectorised over the sensors of a batch.

``DomainSettings`` holds their ``IOC_AQI_*``, ``IOC_FIRE_*`` and
``IOC_CAMERA_*`` settings; ``build_domain_stages`` makes the three stages.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from analytics.engine.base import (
    Stage,
)
from analytics.stages.aqi_stage import AqiStage
from analytics.stages.camera_stage import CameraStage
from analytics.stages.fire_stage import FireRiskStage


class DomainSettings(BaseSettings):
    """Settings of the domain stages (``IOC_AQI_*``, ``IOC_FIRE_*``, ``IOC_CAMERA_*``).

    A service's settings class can inherit it beside ``core.settings.Settings``.
    """

    model_config = SettingsConfigDict(env_prefix="IOC_", extra="ignore")

    aqi_alert_from: int = Field(
        default=201,
        description="lowest hourly VN_AQI that alerts: 101 info, 151 warning, 201 critical",
    )
    aqi_clear_margin: float = Field(
        default=10.0, ge=0, description="points below the band to clear"
    )
    aqi_clear_hours: int = Field(
        default=2, ge=1, description="hours below the band before clearing"
    )
    aqi_grace_s: float = Field(
        default=900.0, ge=0, description="a quiet station's hour closes this late"
    )
    aqi_us: bool = Field(default=True, description="also derive the US EPA AQI (aqi_us)")
    fire_areas: str = Field(
        default="Sóc Sơn,Ba Vì",
        description="weather stations in these areas are rated (comma separated, * = all)",
    )
    fire_method: Literal["vn", "nesterov"] = Field(
        default="vn", description="vn: Forest Protection Department P"
    )
    fire_wind_boost_ms: float = Field(
        default=5.0, ge=0, description="13:00 wind raising the level by one (0: off)"
    )
    camera_window_s: int = Field(
        default=300, description="camera feature window (60, 120, 300, 600 or 900 s)"
    )
    camera_history_days: int = Field(
        default=7, ge=1, le=28, description="history ring the model learns from"
    )
    camera_warmup_h: float = Field(
        default=24.0, gt=0, description="history needed before the first fit"
    )
    camera_refit_h: float = Field(default=6.0, gt=0, description="refit after this much new data")
    camera_confirm_windows: int = Field(
        default=2, ge=1, description="anomalous windows before an alert"
    )
    camera_clear_windows: int = Field(
        default=3, ge=1, description="normal windows before it clears"
    )
    camera_z_min: float = Field(
        default=16.0, gt=0, description="smallest deviation (‖z‖) that can alert"
    )
    camera_quantile: float = Field(
        default=0.995, gt=0.5, lt=1, description="isolation score quantile"
    )
    camera_seed: int = Field(default=0, description="random seed of the camera model")

    @field_validator("aqi_alert_from")
    @classmethod
    def _check_alert_from(cls, v: int) -> int:
        if v not in (101, 151, 201):
            raise ValueError("IOC_AQI_ALERT_FROM must be 101, 151 or 201")
        return v

    @field_validator("camera_window_s")
    @classmethod
    def _check_window(cls, v: int) -> int:
        if v not in (60, 120, 300, 600, 900):
            raise ValueError("IOC_CAMERA_WINDOW_S must be 60, 120, 300, 600 or 900")
        return v


def build_domain_stages(settings: DomainSettings | None = None) -> list[Stage]:
    """The three domain stages configured from ``settings`` (defaults: the environment)."""
    s = settings if settings is not None else DomainSettings()
    areas = [a.strip() for a in s.fire_areas.split(",") if a.strip()]
    return [
        AqiStage(
            alert_from=s.aqi_alert_from,
            clear_margin=s.aqi_clear_margin,
            clear_hours=s.aqi_clear_hours,
            grace_s=s.aqi_grace_s,
            us_index=s.aqi_us,
        ),
        FireRiskStage(
            areas=None if "*" in areas else areas,
            method=s.fire_method,
            wind_boost_ms=s.fire_wind_boost_ms or None,
        ),
        CameraStage(
            window_s=s.camera_window_s,
            history_days=s.camera_history_days,
            warmup_s=s.camera_warmup_h * 3600.0,
            refit_every_s=s.camera_refit_h * 3600.0,
            confirm_windows=s.camera_confirm_windows,
            clear_windows=s.camera_clear_windows,
            z_min=s.camera_z_min,
            quantile=s.camera_quantile,
            seed=s.camera_seed,
        ),
    ]


__all__ = ["AqiStage", "CameraStage", "DomainSettings", "FireRiskStage", "build_domain_stages"]
