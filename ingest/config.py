"""Ingestor settings: ``IOC_INGEST_*`` on top of the shared ``IOC_*`` settings."""

from __future__ import annotations

from enum import StrEnum
from typing import Literal

from pydantic import Field

from core.settings import Settings


class UnknownSensors(StrEnum):
    """What to do with readings from a sensor that is not in ``sensors``."""

    DEAD_LETTER = "dead_letter"  # reject them (code unknown_sensor); the default
    REGISTER = "register"  # register the sensor (source 'auto', kind from the topic)


class IngestSettings(Settings):
    """Everything ``ioc ingest`` reads from the environment."""

    ingest_client_id: str = Field(
        default="ioc-ingest",
        min_length=1,
        max_length=128,
        description="MQTT client id; fixed, so the broker keeps the session while the ingestor"
        " is down. Give every instance its own (ioc-ingest-1, ioc-ingest-2...).",
    )
    ingest_mqtt_protocol: Literal["5", "3.1.1"] = Field(
        default="5",
        description="MQTT version; 3.1.1 only for brokers without MQTT 5 (no receive maximum,"
        " session expiry or shared subscriptions)",
    )
    ingest_receive_path: Literal["lean", "paho"] = Field(
        default="lean",
        description="lean: paho with the fast receive path (large reads, PUBLISH parsed in place,"
        " PUBACKs of a batch in one write); paho: paho's own reader, one callback and one"
        " PUBACK per message (slower; for a paho release whose internals the lean path"
        " does not know, which it also falls back to by itself)",
    )
    ingest_shared_group: str = Field(
        default="",
        pattern=r"^[A-Za-z0-9_.\-]*$",
        description="MQTT 5 shared-subscription group; instances with the same group share the"
        " readings ($share/<group>/ioc/v1/+/+/data). Empty: this instance takes all.",
    )
    ingest_unknown_sensors: UnknownSensors = Field(
        default=UnknownSensors.DEAD_LETTER,
        description="readings from unregistered sensors: dead_letter or register",
    )
    ingest_writers: int = Field(
        default=2,
        ge=1,
        le=16,
        description="writer threads, each with its own database connection: one COPYs while"
        " the next batch is gathered, and the database can use more than one core",
    )
    ingest_batch_rows: int = Field(
        default=20_000, ge=1, le=1_000_000, description="commit when a batch holds this many rows"
    )
    ingest_batch_messages: int = Field(
        default=4_000, ge=1, le=65_535, description="... or this many messages"
    )
    ingest_batch_interval_ms: int = Field(
        default=250, ge=0, le=60_000, description="... or when its oldest message waited this long"
    )
    ingest_receive_maximum: int = Field(
        default=10_000,
        ge=1,
        le=65_535,
        description="MQTT 5 receive maximum: unacknowledged messages the broker may send us;"
        " bounds memory while the database is away",
    )
    ingest_session_expiry_s: int = Field(
        default=7 * 86_400,
        ge=0,
        le=4_294_967_294,
        description="how long the broker keeps our session (and queues readings) while we are down",
    )
    ingest_keepalive_s: int = Field(default=30, ge=5, le=3600)
    ingest_reconnect_max_s: float = Field(
        default=30.0, ge=1, le=600, description="upper bound of the broker and database backoff"
    )
    ingest_metrics_port: int = Field(
        default=9101, ge=0, le=65_535, description="Prometheus /metrics port; 0 disables it"
    )
    ingest_metrics_host: str = Field(default="0.0.0.0", description="address /metrics listens on")
    ingest_registry_refresh_s: float = Field(
        default=60.0, gt=0, description="reload the sensor registry from the database this often"
    )
    ingest_last_seen_interval_s: float = Field(
        default=5.0, ge=0, description="update sensors.last_seen_at at most this often"
    )
    ingest_maintain_interval_s: float = Field(
        default=3600.0, gt=0, description="run partition maintenance and retention this often"
    )
    ingest_partitions_ahead_days: float = Field(default=7.0, ge=1, le=366)
    ingest_dead_letter_max_bytes: int = Field(
        default=64 * 1024,
        ge=0,
        le=16 * 1024 * 1024,
        description="a dead letter keeps at most this many bytes of its payload (with the whole"
        " payload's size and SHA-256), so oversized input cannot fill the disk",
    )
    ingest_dead_letter_retention_days: float = Field(
        default=30.0,
        gt=0,
        le=36_500,
        description="dead letters older than this are deleted by maintenance",
    )
    ingest_sort_rows: bool = Field(
        default=True, description="sort each batch by (sensor, metric, time) before COPY"
    )
    ingest_shutdown_timeout_s: float = Field(
        default=15.0, ge=0, description="on SIGTERM, how long to try to commit what is pending"
    )
    ingest_migrate: bool = Field(default=True, description="apply migrations at start-up")

    @property
    def batch_interval_s(self) -> float:
        return self.ingest_batch_interval_ms / 1000.0
