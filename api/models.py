"""The API's request and response models, named by role (``SensorPublic``, ``AlertDetail``...)."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, Literal

import orjson
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
)
from pydantic.json_schema import SkipJsonSchema

from core.errors import InvalidValue
from core.metrics import METRICS
from core.topics import SENSOR_ID_RE
from core.types import Alert, SensorKind, UtcTime, to_utc


def _clean(v: str) -> str:
    """Text PostgreSQL can store: no NUL character, no lone surrogate."""
    if "\x00" in v:
        raise InvalidValue("text must not contain NUL characters", "api.invalid.text")
    try:
        v.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidValue(
            "text is not valid Unicode (lone surrogate)", "api.invalid.text"
        ) from None
    return v


def _clean_json(v: Any) -> Any:
    """Clean every string (keys too) of a JSON document."""
    if isinstance(v, str):
        return _clean(v)
    if isinstance(v, dict):
        return {_clean(str(k)): _clean_json(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_clean_json(x) for x in v]
    return v


CleanStr = Annotated[str, AfterValidator(_clean)]


def _rfc3339(v: object) -> object:
    """Accept only RFC 3339 text with a zone (no epoch numbers, no NaN, no free text)."""
    if isinstance(v, datetime):
        return v
    if not isinstance(v, str):
        raise InvalidValue(
            "time must be an RFC 3339 string such as 2026-11-22T07:00:00+07:00", "api.invalid.time"
        )
    if len(v) > 40:
        raise InvalidValue("time string is too long", "api.invalid.time")
    try:
        t = datetime.fromisoformat(v.replace("z", "Z"))
    except ValueError:
        raise InvalidValue(
            f"{v!r} is not an RFC 3339 time (e.g. 2026-11-22T00:00:00Z)", "api.invalid.time"
        ) from None
    if t.tzinfo is None:
        raise InvalidValue(f"{v!r} has no time zone (add Z or +07:00)", "api.invalid.time_zone")
    if not 1970 <= t.year <= 2200:  # the year as written (as the schema's pattern says)
        raise InvalidValue(f"{v!r} is outside the years 1970-2200", "api.invalid.time_years")
    return t


# Every time in and out is timezone-aware UTC, written as RFC 3339 with ``Z``.
UtcDateTime = UtcTime  # held in UTC (core.types)
# A time given by a client: RFC 3339 text with a zone, between 1970 and 2200.
TimeParam = Annotated[
    datetime,
    Field(json_schema_extra={"pattern": r"^(19[7-9][0-9]|2[01][0-9]{2}|2200)-", "maxLength": 40}),
    BeforeValidator(_rfc3339),
    AfterValidator(to_utc),
]

SensorId = Annotated[
    str,
    Field(
        min_length=1,
        max_length=64,
        pattern=SENSOR_ID_RE.pattern,
        description="1-64 characters of A-Z a-z 0-9 _ . - (as in the sensor's topics)",
        examples=["wl-td-03"],
    ),
]


class Role(StrEnum):
    OPERATOR = "operator"
    ANALYST = "analyst"
    ENGINEER = "engineer"
    ADMIN = "admin"


class ErrorPublic(BaseModel):
    """Every error response: one sentence a person can read."""

    detail: str = Field(examples=["alert 42 does not exist"])


# ---------------------------------------------------------------------------
# sensors


class SensorPublic(BaseModel):
    """A registered sensor with the state of its alerts."""

    id: str = Field(examples=["wl-td-03"])
    kind: str = Field(examples=["water_level"])
    name: str = Field(examples=["Trần Duy Hưng underpass"])
    lat: float | None = Field(examples=[21.0106])
    lon: float | None = Field(examples=[105.8003])
    area: str = Field(examples=["Cầu Giấy"])
    metrics: list[str] = Field(examples=[["water_level", "rainfall"]])
    status: str = Field(description="online, offline or unknown", examples=["online"])
    status_at: UtcDateTime | None
    last_seen_at: UtcDateTime | None = Field(description="time of the newest reading stored")
    source: str = Field(description="meta (self-registered), auto or api", examples=["meta"])
    open_alerts: int = Field(description="open or acknowledged alerts", examples=[1])
    worst_severity: str | None = Field(
        description="the highest severity of those alerts", examples=["critical"]
    )


class LatestReading(BaseModel):
    metric: str = Field(examples=["water_level"])
    time: UtcDateTime
    value: float = Field(examples=[42.0])
    unit: str = Field(examples=["cm"])


ALERT_EXAMPLE: dict[str, Any] = {
    "id": 42,
    "sensor": "wl-td-03",
    "metric": "water_level",
    "rule": "water_level.critical",
    "detector": "threshold",
    "kind": "water_level",
    "alert_class": "threshold",
    "severity": "critical",
    "status": "open",
    "message": "Water level 52 cm at Trần Duy Hưng underpass",
    "value": 52.0,
    "expected_low": None,
    "expected_high": 30.0,
    "score": None,
    "evidence": {"threshold": 50, "neighbours": []},
    "lat": 21.0106,
    "lon": 105.8003,
    "area": "Cầu Giấy",
    "opened_at": "2026-11-22T07:30:00Z",
    "updated_at": "2026-11-22T07:35:00Z",
    "acknowledged_at": None,
    "acknowledged_by": None,
    "resolved_at": None,
    "resolved_by": None,
    "occurrences": 3,
    "suppressed_by": None,
    "shelved_until": None,
    "shelved_by": None,
}


class AlertPublic(Alert):
    """One alert: a row of table ``alerts``, as ``core.types.Alert`` (the contract analytics
    writes and the MQTT publisher sends) plus the API's columns of maintenance and shelving."""

    model_config = ConfigDict(
        frozen=False,  # the message is rendered in the reader's language
        json_schema_serialization_defaults_required=True,  # every field is always sent
        json_schema_extra={"examples": [ALERT_EXAMPLE]},
    )

    suppressed_by: int | None = Field(
        default=None,
        description="the maintenance window it was raised under (neither shown nor notified)",
        examples=[None],
    )
    shelved_until: UtcDateTime | None = Field(
        default=None, description="an operator shelved it until then (it returns if worse)"
    )
    shelved_by: str | None = Field(default=None, examples=[None])


class AlertEvent(BaseModel):
    """One entry of an alert's audit trail (table ``alert_events``)."""

    seq: int = Field(examples=[1234])
    time: UtcDateTime
    action: str = Field(
        description="opened, updated, escalated, deescalated, acknowledged, resolved, "
        "reopened or commented",
        examples=["acknowledged"],
    )
    actor: str = Field(examples=["duty-operator"])
    note: str | None = Field(examples=["team dispatched"])
    reading_time: UtcDateTime | None = Field(
        default=None,
        description="for an event of the system: the time of the readings behind it (what "
        "opened_at shows), which a replay or simulation may set apart from `time`, the "
        "wall-clock time the event was recorded",
    )


class AlertDetail(AlertPublic):
    """An alert with its audit trail (oldest first; the newest 1,000 events)."""

    events: list[AlertEvent]


class SensorDetail(SensorPublic):
    """A sensor with its latest readings and its open or acknowledged alerts."""

    interval_s: float | None = Field(description="announced reporting interval")
    attributes: dict[str, Any]
    registered_at: UtcDateTime
    updated_at: UtcDateTime
    latest: list[LatestReading] = Field(
        description="the newest reading of each metric within 7 days of the last one seen"
    )
    alerts: list[AlertPublic] = Field(description="open and acknowledged alerts, newest first")


MetricName = Annotated[
    str, Field(json_schema_extra={"enum": list(METRICS)}, examples=["water_level"])
]


def _check_metrics(v: list[str] | None) -> list[str] | None:
    if v is None:
        return v
    unknown = [m for m in v if m not in METRICS]
    if unknown:
        raise InvalidValue(
            f"unknown metric(s) {', '.join(unknown[:5])}; see the metric catalogue",
            "api.invalid.metric",
            metric=", ".join(unknown[:5]),
        )
    if len(set(v)) != len(v):
        raise InvalidValue("metrics are listed twice", "api.invalid.metrics_twice")
    return v


def _check_attributes(v: dict[str, Any] | None) -> dict[str, Any] | None:
    if v is None:
        return v
    v = _clean_json(v)
    try:
        size = len(orjson.dumps(v))
    except orjson.JSONEncodeError:
        raise InvalidValue(
            "attributes must be plain JSON (integers within 64 bits)", "api.invalid.attributes"
        ) from None
    if size > 16_384:
        raise InvalidValue("attributes exceed 16 KiB of JSON", "api.invalid.attributes_size")
    return v


Text = Annotated[CleanStr, Field(max_length=200)]


def _no_bool(v: object) -> object:
    if isinstance(v, bool) or not isinstance(v, int | float):
        raise InvalidValue("must be a number", "api.invalid.number")
    return v


# (constraints before the validators, so that the schema states them as minimum and maximum)
Number = Annotated[float, BeforeValidator(_no_bool)]
Lat = Annotated[float, Field(ge=-90, le=90, allow_inf_nan=False), BeforeValidator(_no_bool)]
Lon = Annotated[float, Field(ge=-180, le=180, allow_inf_nan=False), BeforeValidator(_no_bool)]
Interval = Annotated[float, Field(gt=0, le=86_400, allow_inf_nan=False), BeforeValidator(_no_bool)]
MetricList = Annotated[
    list[MetricName],
    Field(max_length=64, json_schema_extra={"uniqueItems": True}),
    AfterValidator(_check_metrics),
]
Attributes = Annotated[dict[str, Any], AfterValidator(_check_attributes)]


class SensorCreate(BaseModel):
    """A sensor registered by an engineer (``source`` = ``api``)."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "id": "wl-td-03",
                    "kind": "water_level",
                    "name": "Trần Duy Hưng underpass",
                    "lat": 21.0106,
                    "lon": 105.8003,
                    "area": "Cầu Giấy",
                    "metrics": ["water_level", "rainfall"],
                    "interval_s": 60,
                }
            ]
        },
    )

    id: SensorId
    kind: SensorKind
    name: Text = ""
    lat: Lat | None = None
    lon: Lon | None = None
    area: Text = ""
    metrics: MetricList = Field(default_factory=list)
    interval_s: Interval | None = None
    attributes: Attributes = Field(default_factory=dict)


class SensorUpdate(BaseModel):
    """Fields to change; those left out keep their value (``null`` clears lat, lon, interval)."""

    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"name": "New name", "area": "Đống Đa"}]}
    )

    # (None hidden from the schema: these columns cannot be null; a null is refused with 422)
    kind: SensorKind | SkipJsonSchema[None] = None
    name: Text | SkipJsonSchema[None] = None
    lat: Lat | None = None
    lon: Lon | None = None
    area: Text | SkipJsonSchema[None] = None
    metrics: MetricList | SkipJsonSchema[None] = None
    interval_s: Interval | None = None
    attributes: Attributes | SkipJsonSchema[None] = None


class SensorPage(BaseModel):
    items: list[SensorPublic]
    total: int = Field(description="sensors matching the filters")
    limit: int
    offset: int


# ---------------------------------------------------------------------------
# readings


class ReadingPublic(BaseModel):
    time: UtcDateTime
    sensor: str = Field(examples=["wl-td-03"])
    metric: str = Field(examples=["water_level"])
    value: float = Field(examples=[42.0])


class ReadingBucket(BaseModel):
    """One time bucket of one series: only the aggregates asked for (``agg``; all by default)."""

    bucket: UtcDateTime = Field(description="start of the bucket")
    sensor: str = Field(examples=["wl-td-03"])
    metric: str = Field(examples=["water_level"])
    avg: float | None = Field(default=None, description="rounded to 0.001", examples=[40.5])
    min: float | None = Field(default=None, examples=[38.0])
    max: float | None = Field(default=None, examples=[44.0])
    count: int | None = Field(default=None, examples=[60])
    last: float | None = Field(default=None, examples=[43.0])


class ReadingsRaw(BaseModel):
    """Raw readings ordered by sensor, metric and time."""

    items: list[ReadingPublic]
    limit: int
    truncated: bool = Field(description="more rows matched than ``limit``")


class ReadingsBucketed(BaseModel):
    """Time buckets ordered by sensor, metric and bucket."""

    items: list[ReadingBucket]
    limit: int
    truncated: bool = Field(description="more rows matched than ``limit``")
    bucket_s: int = Field(description="bucket width in seconds", examples=[3600])


# ---------------------------------------------------------------------------
# alerts


def _preview(v: object) -> object:
    """The head of a raw payload as text (bytes that are not UTF-8 shown as U+FFFD)."""
    if isinstance(v, bytes | bytearray | memoryview):
        return bytes(v).decode("utf-8", errors="replace")
    return v


class DeadLetterPublic(BaseModel):
    """A rejected message: a row of table ``dead_letters``, with its payload's head only."""

    id: int = Field(examples=[1042])
    received_at: UtcDateTime
    topic: str = Field(examples=["ioc/v1/air_quality/aq-hk-01/data"])
    sensor: str | None = Field(description="the sensor the topic names", examples=["aq-hk-01"])
    code: str = Field(description="stable reason code", examples=["out_of_range"])
    reason: str = Field(examples=["pm25 -3 is below the physical range 0..1000"])
    accepted: int = Field(description="entries of the same message that were stored")
    rejected_count: int = Field(description="entries of a pack that were rejected")
    rejected: list[dict[str, Any]] | None = Field(
        description="the first 20 per-entry rejections of a pack: index, reason, detail"
    )
    payload_size: int = Field(description="bytes of the whole payload")
    payload_sha256: str | None = Field(description="hex SHA-256 of an oversized payload")
    payload_cut: bool = Field(description="true when the preview is only the payload's head")
    payload_preview: Annotated[str, BeforeValidator(_preview)] = Field(
        description="the first 512 bytes of the payload as UTF-8 text",
        examples=['{"values": {"pm25": -3}}'],
    )


class DeadLetterPage(BaseModel):
    items: list[DeadLetterPublic] = Field(description="newest first")
    limit: int
    next_before_id: int | None = Field(description="pass as before_id for the next page")


class AlertPage(BaseModel):
    items: list[AlertPublic] = Field(description="newest first")
    total: int = Field(description="alerts matching the filters (all pages)")
    limit: int
    next_before_id: int | None = Field(description="pass as before_id for the next page")


Note = Annotated[CleanStr, Field(max_length=2_000)]


class NoteIn(BaseModel):
    """An optional note kept in the audit trail."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"note": "on it"}]})

    note: Note | None = None


class CommentIn(BaseModel):
    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"note": "pump truck on site"}]}
    )

    note: Annotated[CleanStr, Field(min_length=1, max_length=2_000)]


# ---------------------------------------------------------------------------
# tokens and identity


class Me(BaseModel):
    name: str = Field(examples=["duty-operator"])
    role: Role


TokenName = Annotated[
    str,
    Field(min_length=1, max_length=100, pattern=r"^[^\x00-\x1f\x7f]+$", examples=["wall-1"]),
    AfterValidator(_clean),
]


class TokenCreate(BaseModel):
    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"name": "wall-1", "role": "operator"}]}
    )

    name: TokenName
    role: Role
    expires_in_days: int | None = Field(
        default=None,
        ge=1,
        le=3_650,
        description="lifetime in days; absent: the server's default (IOC_API_TOKEN_DAYS)",
    )


class TokenPublic(BaseModel):
    id: int = Field(examples=[3])
    name: str = Field(examples=["wall-1"])
    role: Role
    created_at: UtcDateTime
    created_by: str | None = Field(examples=["admin"])
    revoked_at: UtcDateTime | None
    last_used_at: UtcDateTime | None
    expires_at: UtcDateTime | None = Field(description="null: never (tokens older than expiry)")


class TokenCreated(TokenPublic):
    token: str = Field(description="the bearer token; shown once, only its hash is stored")


# ---------------------------------------------------------------------------
# health


class Health(BaseModel):
    status: Literal["ok"] = "ok"


class Readiness(BaseModel):
    status: Literal["ready", "not ready"]
    database: bool
    broker: bool
