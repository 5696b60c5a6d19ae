"""The stage registry: which stages ``IOC_ANALYTICS_STAGES`` names, built from the settings.

A plain mapping from name to builder; the pipeline is built from it and the
spatial corroborator's settings.
"""

from __future__ import annotations

from collections.abc import Callable

from analytics.alerts.spatial import Corroborator, parse_radius
from analytics.config import AnalyticsSettings
from analytics.engine.base import Context, Stage
from analytics.engine.pipeline import Pipeline
from analytics.stages.device import DeviceStage
from analytics.stages.domain import build_domain_stages
from analytics.stages.forecast_stage import ForecastStage
from analytics.stages.health import HealthStage
from analytics.stages.rules import load_rules
from analytics.stages.rules_stage import RulesStage
from analytics.stages.series import SeriesStage, make_series_detector


def _rules(settings: AnalyticsSettings) -> list[Stage]:
    return [RulesStage(load_rules(settings.analytics_rules_file))]


def _series(settings: AnalyticsSettings) -> list[Stage]:
    return [
        SeriesStage(
            make_series_detector(settings.analytics_detector),
            threshold=settings.analytics_series_threshold,
            critical=settings.analytics_series_critical,
            debounce=settings.analytics_series_debounce,
            clear=settings.analytics_series_clear,
            exclude=settings.series_exclude,
        )
    ]


def _device(settings: AnalyticsSettings) -> list[Stage]:
    return [
        DeviceStage(
            threshold=settings.analytics_series_threshold,
            critical=settings.analytics_series_critical,
            debounce=settings.analytics_series_debounce,
            clear=settings.analytics_series_clear,
        )
    ]


def _forecast(settings: AnalyticsSettings) -> list[Stage]:
    return [
        ForecastStage(
            load_rules(settings.analytics_rules_file),
            horizon_s=settings.analytics_forecast_horizon_s,
            min_t=settings.analytics_forecast_min_t,
            confirm=settings.analytics_forecast_confirm,
            clear=settings.analytics_forecast_clear,
            rain_tau_s=settings.analytics_forecast_rain_tau_s,
            rain_capacity_mm=settings.analytics_forecast_rain_capacity_mm,
            rain_gain_cm_per_mm=settings.analytics_forecast_rain_gain,
        )
    ]


def _health(settings: AnalyticsSettings) -> list[Stage]:
    return [
        HealthStage(
            heartbeat_k=settings.analytics_heartbeat_k,
            min_gap_s=settings.analytics_heartbeat_min_s,
            stuck_factor=settings.analytics_stuck_factor,
            stuck_min_readings=settings.analytics_stuck_min_readings,
            stuck_min_s=settings.analytics_stuck_min_s,
            offline_grace_s=settings.analytics_offline_grace_s,
        )
    ]


def _domain(settings: AnalyticsSettings) -> list[Stage]:
    return domain_stages()


def _one_domain(name: str) -> Callable[[AnalyticsSettings], list[Stage]]:
    return lambda settings: [st for st in domain_stages() if st.name == name]


DOMAIN_NAMES = {"aqi": "aqi", "fire": "fire_risk", "camera": "camera"}


def domain_stages() -> list[Stage]:
    """AQI, fire-weather risk and the camera model (``IOC_AQI_*``, ``IOC_FIRE_*``, ``IOC_CAMERA_*``)."""
    return build_domain_stages()


# stage name in IOC_ANALYTICS_STAGES -> builder of its stages
STAGES: dict[str, Callable[[AnalyticsSettings], list[Stage]]] = {
    "rules": _rules,
    "series": _series,
    "device": _device,
    "forecast": _forecast,
    "health": _health,
    "domain": _domain,
    **{name: _one_domain(stage) for name, stage in DOMAIN_NAMES.items()},
}


def build_stages(settings: AnalyticsSettings) -> list[Stage]:
    """The stages ``IOC_ANALYTICS_STAGES`` names, configured from the settings."""
    stages: list[Stage] = []
    for name in settings.stage_names:
        build = STAGES.get(name)
        if build is None:
            raise ValueError(
                f"unknown stage {name!r}: use rules, series, device, forecast, health, domain "
                "(or aqi, fire, camera)"
            )
        stages.extend(build(settings))
    return stages


def build_pipeline(settings: AnalyticsSettings, ctx: Context | None = None) -> Pipeline:
    return Pipeline(
        build_stages(settings),
        corroborator=Corroborator(
            window_s=settings.analytics_spatial_window_s,
            min_agree=settings.analytics_spatial_min_agree,
            radius_km=parse_radius(settings.analytics_spatial_radius_km),
        ),
        ctx=ctx,
    )


def health_stage(pipeline: Pipeline) -> HealthStage | None:
    """The pipeline's health stage, if it runs one (device status goes to it)."""
    return next((s for s in pipeline.stages if isinstance(s, HealthStage)), None)
