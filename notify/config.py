"""Settings of the notification relay and dispatcher (``IOC_NOTIFY_*``)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr

from core.settings import Settings


class NotifySettings(Settings):
    notify_routes: Path | None = Field(
        default=None, description="YAML file of routes and escalation policies"
    )
    notify_webhook_secret: SecretStr = Field(
        default=SecretStr(""), description="key of the webhooks' X-IOC-Signature (HMAC-SHA256)"
    )
    notify_enabled: bool = Field(
        default=True,
        description="run the relay and dispatcher inside ioc api and ioc analytics too",
    )
    notify_mqtt_relay: bool = Field(
        default=True,
        description="publish the event log on ioc/v1/alerts/<severity>/<kind> and"
        " ioc/v1/incidents/<severity>/<hazard>",
    )
    notify_group_wait_s: float = Field(
        default=10.0,
        ge=0,
        le=600,
        description="how long an alert event waits for the correlator to place its alert in an"
        " incident, when a route notifies incidents instead of their alerts",
    )
    notify_poll_s: float = Field(default=0.2, gt=0, le=60, description="idle poll interval")
    notify_workers: int = Field(
        default=2, ge=1, le=64, description="sending threads (one database connection each)"
    )
    notify_max_attempts: int = Field(
        default=8, ge=1, le=100, description="attempts before a notification is marked dead"
    )
    notify_backoff_s: float = Field(
        default=2.0, gt=0, le=3600, description="first retry delay; doubles per attempt"
    )
    notify_backoff_max_s: float = Field(default=600.0, gt=0, le=86_400)
    notify_timeout_s: float = Field(default=10.0, gt=0, le=120, description="per send")
    notify_routes_reload_s: float = Field(
        default=5.0, gt=0, le=3600, description="how often routes kept in the database are read"
    )
