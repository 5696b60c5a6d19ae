"""Helpers for the ingest tests: settings, a running ingestor, a publisher, polling."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import paho.mqtt.client as mqtt
import psycopg
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from core.settings import parse_mqtt_url
from ingest.config import IngestSettings
from ingest.service import Ingestor

Message = tuple[str, bytes] | tuple[str, bytes, bool]


def wait_for(predicate: Callable[[], Any], timeout: float = 20.0, every: float = 0.05) -> Any:
    """Poll until ``predicate()`` is truthy; return its value or fail the test."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"condition not met within {timeout} s (last value {value!r})")
        time.sleep(every)


def count(dsn: str, sql: str, *args: object) -> int:
    with psycopg.connect(dsn) as conn:
        row = conn.execute(sql, args).fetchone()
    return int(row[0]) if row else 0


def publish(url: str, messages: Sequence[Message], *, qos: int = 1, client_id: str = "") -> None:
    """Publish and wait until the broker has acknowledged every message."""
    addr = parse_mqtt_url(url)
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
    window = threading.BoundedSemaphore(500)  # flow control of our own: paho's limit
    client.max_inflight_messages_set(0)  # (max_inflight_messages_set) costs O(n) per ack
    client.on_publish = lambda *args: window.release()
    client.connect(addr.host, addr.port)
    client.loop_start()
    try:
        infos = []
        for m in messages:
            assert window.acquire(timeout=30)
            retain = bool(m[2]) if len(m) > 2 else False
            infos.append(client.publish(m[0], m[1], qos=qos, retain=retain))
        for info in infos:
            info.wait_for_publish(30)
            assert info.is_published()
    finally:
        client.disconnect()
        client.loop_stop()


@pytest.fixture
def prefix() -> str:
    """A sensor id prefix of this test's own (the session broker is shared)."""
    return f"t{uuid.uuid4().hex[:8]}-"


@pytest.fixture
def make_settings(mqtt_url: str, db_url: str) -> Callable[..., IngestSettings]:
    def factory(**overrides: Any) -> IngestSettings:
        values: dict[str, Any] = {
            "mqtt_url": mqtt_url,
            "database_url": db_url,
            "ingest_metrics_port": 0,
            "ingest_client_id": f"ingest-test-{uuid.uuid4().hex[:8]}",
            "ingest_batch_interval_ms": 50,
            "ingest_session_expiry_s": 60,
        }
        values.update(overrides)
        return IngestSettings(**values)

    return factory


@contextmanager
def running(settings: IngestSettings) -> Iterator[Ingestor]:
    ingestor = Ingestor(settings)
    ingestor.start()
    try:
        assert ingestor.wait_ready(30), "the ingestor did not subscribe"
        yield ingestor
    finally:
        ingestor.stop(30)
