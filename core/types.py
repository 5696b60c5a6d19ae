"""Domain types shared by every part: sensors, readings, alerts, incidents and their enums."""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any, NamedTuple
from zoneinfo import ZoneInfo

import orjson
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator

from core.errors import InvalidValue

DISPLAY_TZ = ZoneInfo("Asia/Ho_Chi_Minh")
# Asia/Ho_Chi_Minh is UTC+7 all year (no daylight saving time): local hours with numpy
UTC_OFFSET_S = 7 * 3600


class SensorKind(StrEnum):
    """What a sensor is; the second level of the topic tree."""

    TRAFFIC_CAMERA = "traffic_camera"
    AIR_QUALITY = "air_quality"
    WATER_LEVEL = "water_level"
    WEATHER = "weather"
    NOISE = "noise"
    GENERIC = "generic"


class Severity(StrEnum):
    INFO = "info"
    WARNING = "warning"
    CRITICAL = "critical"

    @property
    def rank(self) -> int:
        return _SEVERITY_RANK[self]


_SEVERITY_RANK = {Severity.INFO: 0, Severity.WARNING: 1, Severity.CRITICAL: 2}


class AlertStatus(StrEnum):
    OPEN = "open"
    ACKNOWLEDGED = "acknowledged"
    RESOLVED = "resolved"


class AlertClass(StrEnum):
    """What the evidence says an alert is (spatial corroboration)."""

    INCIDENT = "incident"  # neighbouring sensors agree: something is happening in the city
    PROBABLE_FAULT = "probable_fault"  # this sensor alone: likely the device
    THRESHOLD = "threshold"  # a configured level was crossed; no corroboration needed
    DEVICE = "device"  # sensor health: offline, stuck, dropout


class DeviceStatus(StrEnum):
    ONLINE = "online"
    OFFLINE = "offline"


class Reading(NamedTuple):
    """One measured value. ``time`` is timezone-aware UTC."""

    time: datetime
    sensor: str
    metric: str
    value: float


class Sensor(BaseModel):
    """A registered device, as announced on its retained ``.../meta`` topic."""

    model_config = ConfigDict(frozen=True)

    id: str
    kind: SensorKind
    name: str = ""
    lat: float | None = Field(default=None, ge=-90, le=90)
    lon: float | None = Field(default=None, ge=-180, le=180)
    area: str = ""
    metrics: tuple[str, ...] = ()
    interval_s: float | None = Field(default=None, gt=0, le=86_400)
    attributes: dict[str, Any] = Field(default_factory=dict)


def to_utc(v: datetime) -> datetime:
    """``v`` in UTC; a time with no zone is refused (``InvalidValue``)."""
    if v.tzinfo is None:
        raise InvalidValue("time has no time zone (add Z or +07:00)", "api.invalid.time_zone")
    return v.astimezone(UTC)


# A moment in time, held in UTC (one with no time zone is refused).
UtcTime = Annotated[datetime, AfterValidator(to_utc)]


class Alert(BaseModel):
    """An early warning as stored in ``alerts``, published on MQTT and shown by the API
    (``api.models.AlertPublic`` adds the API's columns to it): the one alert contract."""

    model_config = ConfigDict(frozen=True)

    id: int
    sensor: str
    metric: str
    rule: str
    detector: str
    kind: SensorKind
    alert_class: AlertClass
    severity: Severity
    status: AlertStatus
    message: str
    value: float | None = None
    expected_low: float | None = None
    expected_high: float | None = None
    score: float | None = None
    evidence: dict[str, Any] = Field(default_factory=dict)
    lat: float | None = None
    lon: float | None = None
    area: str = ""
    opened_at: UtcTime
    updated_at: UtcTime
    acknowledged_at: UtcTime | None = None
    acknowledged_by: str | None = None
    resolved_at: UtcTime | None = None
    resolved_by: str | None = None
    occurrences: int = 1

    @field_validator("evidence", mode="before")
    @classmethod
    def _decode_evidence(cls, v: object) -> object:
        if isinstance(v, str | bytes):  # a snapshot decoded without the jsonb loader
            return orjson.loads(v)
        return v


class Incident(BaseModel):
    """Related alerts grouped by the correlator (one hazard, neighbouring sensors, one time window)."""

    model_config = ConfigDict(frozen=True)

    id: int
    hazard: str
    group_key: str = ""
    status: AlertStatus
    severity: Severity
    title: str
    title_vi: str
    sensors: tuple[str, ...] = ()
    areas: tuple[str, ...] = ()
    kinds: tuple[str, ...] = ()
    polygon: dict[str, Any] | None = None
    peak: dict[str, Any] = Field(default_factory=dict)
    alert_count: int = 0
    active_alerts: int = 0
    first_seen: datetime
    last_seen: datetime
    opened_at: datetime
    updated_at: datetime
    acknowledged_at: datetime | None = None
    acknowledged_by: str | None = None
    resolved_at: datetime | None = None
    resolved_by: str | None = None
    shelved_until: datetime | None = None
    shelved_by: str | None = None
    merged_into: int | None = None  # closed: merged into this incident


def utcnow() -> datetime:
    return datetime.now(UTC)


def to_display(t: datetime) -> datetime:
    """Convert a UTC instant to Hanoi local time for people."""
    return t.astimezone(DISPLAY_TZ)
