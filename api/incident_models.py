"""The API's models for incidents (grouped alerts) and maintenance windows."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from api.models import AlertEvent, AlertPublic, CleanStr, SensorId, TimeParam, UtcDateTime
from core.errors import InvalidValue
from core.types import SensorKind

INCIDENT_COLUMNS = (
    "id, hazard, group_key, status, severity, title, title_vi, sensors, areas, kinds, polygon,"
    " peak, alert_count, active_alerts, first_seen, last_seen, opened_at, updated_at,"
    " acknowledged_at, acknowledged_by, resolved_at, resolved_by, shelved_until, shelved_by,"
    " merged_into"
)
MAINTENANCE_COLUMNS = (
    "id, sensors, areas, kinds, starts_at, ends_at, reason, created_by, created_at,"
    " cancelled_at, cancelled_by"
)


class IncidentPublic(BaseModel):
    """One incident: related alerts (one hazard, neighbouring sensors, one time window)."""

    id: int = Field(examples=[7])
    hazard: str = Field(
        description="air_pollution, flooding, traffic, fire_weather, severe_weather, noise, "
        "device_fault or other",
        examples=["air_pollution"],
    )
    group_key: str = Field(description="the device of a device fault", examples=[""])
    status: str = Field(description="open, acknowledged or resolved", examples=["open"])
    severity: str = Field(description="the highest of its alerts", examples=["critical"])
    title: str = Field(
        examples=["Air pollution episode: 25 stations in 7 areas, PM2.5 up to 301 µg/m³"]
    )
    title_vi: str = Field(
        examples=["Đợt ô nhiễm không khí: 25 trạm tại 7 khu vực, bụi mịn PM2.5 lên tới 301 µg/m³"]
    )
    sensors: list[str] = Field(description="the ids of its sensors", examples=[["aq-001"]])
    areas: list[str] = Field(examples=[["Cầu Giấy", "Đống Đa"]])
    kinds: list[str] = Field(examples=[["air_quality"]])
    polygon: dict[str, Any] | None = Field(
        description="GeoJSON Polygon (lon, lat) around all its sensors, 300 m clear of each"
    )
    peak: dict[str, Any] = Field(
        description="metric and value of its worst alert",
        examples=[{"metric": "pm25", "value": 301}],
    )
    alert_count: int = Field(description="its alerts, all states", examples=[27])
    active_alerts: int = Field(description="its open or acknowledged alerts", examples=[25])
    first_seen: UtcDateTime
    last_seen: UtcDateTime
    opened_at: UtcDateTime
    updated_at: UtcDateTime
    acknowledged_at: UtcDateTime | None
    acknowledged_by: str | None = Field(examples=[None])
    resolved_at: UtcDateTime | None
    resolved_by: str | None = Field(examples=[None])
    shelved_until: UtcDateTime | None = Field(
        default=None, description="an operator shelved it until then (it returns if worse)"
    )
    shelved_by: str | None = Field(default=None, examples=[None])
    merged_into: int | None = Field(
        default=None,
        description="closed because it was merged into this incident, which holds its alerts",
        examples=[None],
    )


class IncidentDetail(IncidentPublic):
    """An incident with its alerts (newest first) and its audit trail (oldest first)."""

    alerts: list[AlertPublic]
    events: list[AlertEvent]
    merged_from: list[int] = Field(
        default_factory=list, description="the incidents merged into this one", examples=[[9]]
    )


class IncidentPage(BaseModel):
    items: list[IncidentPublic] = Field(description="newest first")
    total: int = Field(description="incidents matching the filters (all pages)")
    limit: int
    next_before_id: int | None = Field(description="pass as before_id for the next page")


Words = Annotated[CleanStr, Field(min_length=1, max_length=200)]


class MaintenanceCreate(BaseModel):
    """Sensors, areas or sensor kinds out of service from ``start`` to ``end``."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "sensors": ["aq-hk-01"],
                    "start": "2026-11-22T08:00:00+07:00",
                    "end": "2026-11-22T12:00:00+07:00",
                    "reason": "filter replacement",
                }
            ],
            # at least one of the three, not empty (the schema states it; the check below
            # enforces it)
            "anyOf": [
                {"required": [field], "properties": {field: {"minItems": 1}}}
                for field in ("sensors", "areas", "kinds")
            ],
        },
    )

    sensors: list[SensorId] = Field(default_factory=list, max_length=1_000)
    areas: list[Words] = Field(default_factory=list, max_length=100)
    kinds: list[SensorKind] = Field(default_factory=list, max_length=10)
    start: TimeParam
    end: TimeParam
    reason: Annotated[CleanStr, Field(min_length=1, max_length=500)]

    @model_validator(mode="after")
    def _check(self) -> MaintenanceCreate:
        if not (self.sensors or self.areas or self.kinds):
            raise InvalidValue(
                "name at least one of sensors, areas or kinds", "api.invalid.maintenance_scope"
            )
        if self.end <= self.start:
            raise InvalidValue("end must be after start", "api.invalid.end")
        return self


class MaintenancePublic(BaseModel):
    """A maintenance window; alerts raised under it are recorded as suppressed."""

    id: int = Field(examples=[3])
    sensors: list[str]
    areas: list[str]
    kinds: list[str]
    starts_at: UtcDateTime
    ends_at: UtcDateTime
    reason: str
    created_by: str
    created_at: UtcDateTime
    cancelled_at: UtcDateTime | None
    cancelled_by: str | None


class ShelveIn(BaseModel):
    """Shelve for a bounded time: hidden from the main view until then, or until it gets worse."""

    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"minutes": 60, "note": "crew on site"}]}
    )

    minutes: int = Field(ge=1, le=1_440, description="how long, 1 minute to 24 hours")
    note: Annotated[CleanStr, Field(max_length=2_000)] | None = None


class MaintenancePage(BaseModel):
    items: list[MaintenancePublic] = Field(description="newest first")
