"""The live service against real Mosquitto and PostgreSQL: readings in, alerts stored and published."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any, ClassVar

import orjson
import paho.mqtt.client as mqtt
import psycopg
import pytest
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

from analytics.config import AnalyticsSettings, Partition
from analytics.engine.base import Batch, Context, Stage, StageOutput
from analytics.service.runner import AnalyticsService
from analytics.stages.registry import build_pipeline
from core.codecs import encode_meta, encode_native
from core.topics import ALL_ALERTS, data_topic, meta_topic, status_topic
from core.types import Reading, Sensor, SensorKind

pytestmark = [pytest.mark.db, pytest.mark.mqtt]


def settings(db_url: str, mqtt_url: str, **kw: Any) -> AnalyticsSettings:
    base: dict[str, Any] = {
        "database_url": db_url,
        "mqtt_url": mqtt_url,
        "analytics_client_id": f"test-{uuid.uuid4().hex[:8]}",
        "analytics_metrics_port": 0,
        "analytics_batch_ms": 20,
        "analytics_warmup_s": 0,
        "analytics_detector": "robust_z",
        "analytics_stages": "rules,series,health",
        "analytics_resolve_after_s": 2,
        "analytics_offline_grace_s": 0,
    }
    base.update(kw)
    return AnalyticsSettings(**base)


class Publisher:
    def __init__(self, url: str) -> None:
        host, port = url.removeprefix("mqtt://").split(":")
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=MQTTProtocolVersion.MQTTv5)
        self.client.connect(host, int(port))
        self.client.loop_start()
        self.received: list[tuple[str, dict[str, Any]]] = []
        self.client.on_message = lambda c, u, m: self.received.append(
            (m.topic, orjson.loads(m.payload))
        )

    def subscribe_alerts(self) -> None:
        self.client.subscribe(ALL_ALERTS, qos=1)
        time.sleep(0.2)

    def send(self, topic: str, payload: bytes, retain: bool = False) -> None:
        self.client.publish(topic, payload, qos=1, retain=retain).wait_for_publish(5)

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


@pytest.fixture
def pub(mqtt_url: str) -> Iterator[Publisher]:
    p = Publisher(mqtt_url)
    yield p
    p.close()


@pytest.fixture
def start(db_url: str, mqtt_url: str) -> Iterator[Callable[..., AnalyticsService]]:
    running: list[AnalyticsService] = []

    def factory(**kw: Any) -> AnalyticsService:
        svc = AnalyticsService(settings(db_url, mqtt_url, **kw))
        svc.start()
        running.append(svc)
        assert svc.connected.wait(10)
        time.sleep(0.3)  # the subscription is acknowledged
        return svc

    yield factory
    for svc in running:
        if not svc._stopping.is_set():
            svc.stop()


def wait_for(fn: Callable[[], Any], timeout: float = 10.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = fn()
        if got:
            return got
        time.sleep(0.05)
    raise AssertionError(f"condition not met within {timeout} s")


def uid(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:6]}"


def now() -> float:
    return datetime.now(UTC).timestamp()


def test_a_reading_over_a_critical_level_becomes_an_alert_stored_with_its_event(
    start: Callable[..., AnalyticsService], pub: Publisher, db: psycopg.Connection[Any]
) -> None:
    gauge = uid("wl")
    pub.send(
        meta_topic("water_level", gauge),
        encode_meta(
            Sensor(id=gauge, kind=SensorKind.WATER_LEVEL, name="Phố Huế", area="Hai Bà Trưng",
                   lat=21.01, lon=105.85)
        ),
        retain=True,
    )  # fmt: skip
    svc = start()
    t = now() - 120
    pub.send(data_topic("water_level", gauge), encode_native([(t, {"water_level": 8.0})]))
    pub.send(data_topic("water_level", gauge), encode_native([(t + 60, {"water_level": 55.0})]))
    pub.send(data_topic("water_level", gauge), encode_native([(t + 61, {"water_level": 56.0})]))
    row = wait_for(
        lambda: db.execute(
            "SELECT id, status, severity, alert_class, message, area FROM alerts WHERE sensor = %s",
            (gauge,),
        ).fetchone()
    )
    assert row[1:4] == ("open", "critical", "threshold")
    assert row[4].startswith("Phố Huế (Hai Bà Trưng): flooding: water_level 56 cm")
    assert row[5] == "Hai Bà Trưng"
    events = db.execute("SELECT action FROM alert_events WHERE alert_id = %s", (row[0],))
    assert [e[0] for e in events] == ["opened"]  # the committed log that notify.relay publishes
    assert svc.counts["callback_errors"] == 0


def test_undecodable_messages_are_ignored(
    start: Callable[..., AnalyticsService], pub: Publisher
) -> None:
    svc = start()
    pub.send(data_topic("noise", uid("n")), b"{not json")
    pub.send("ioc/v1/unknown_kind/x/data", b"{}")
    wait_for(lambda: svc.counts["undecodable"] >= 2)
    assert svc.counts["callback_errors"] == 0


def test_offline_status_opens_a_device_alert_and_online_resolves_it(
    start: Callable[..., AnalyticsService], pub: Publisher, db: psycopg.Connection[Any]
) -> None:
    cam = uid("cam")
    start()
    pub.send(status_topic("traffic_camera", cam), b"offline")
    row = wait_for(
        lambda: db.execute(
            "SELECT rule, metric, alert_class, status FROM alerts WHERE sensor = %s", (cam,)
        ).fetchone()
    )
    assert row == ("health.offline", "device", "device", "open")
    pub.send(status_topic("traffic_camera", cam), b"online")
    wait_for(
        lambda: db.execute(
            "SELECT 1 FROM alerts WHERE sensor = %s AND status = 'resolved'", (cam,)
        ).fetchone(),
        timeout=15,
    )


def test_partition_takes_only_its_sensors(
    start: Callable[..., AnalyticsService], pub: Publisher, db: psycopg.Connection[Any]
) -> None:
    part = Partition(0, 2)
    mine = next(s for s in (uid("wl") for _ in range(100)) if part.owns(s))
    other = next(s for s in (uid("wl") for _ in range(100)) if not part.owns(s))
    svc = start(analytics_partition="0/2")
    assert svc.settings.client_id.endswith("-0of2")
    t = now() - 60
    for s in (mine, other):
        pub.send(
            data_topic("water_level", s),
            encode_native([(t, {"water_level": 60.0}), (t + 1, {"water_level": 61.0})]),
        )
    wait_for(lambda: db.execute("SELECT 1 FROM alerts WHERE sensor = %s", (mine,)).fetchone())
    time.sleep(0.5)
    assert db.execute("SELECT count(*) FROM alerts WHERE sensor = %s", (other,)).fetchone() == (0,)


def series_pack(t0: float, values: list[float], metric: str = "speed") -> bytes:
    return encode_native([(t0 + 60 * i, {metric: v}) for i, v in enumerate(values)])


def test_restart_keeps_the_learned_state(
    start: Callable[..., AnalyticsService], pub: Publisher, db: psycopg.Connection[Any]
) -> None:
    cam = uid("cam")
    client_id = uid("analytics")
    t0 = now() - 3 * 3600
    normal = [30.0 + (i % 5) * 0.5 for i in range(60)]
    svc = start(analytics_client_id=client_id)
    pub.send(data_topic("traffic_camera", cam), series_pack(t0, normal))
    wait_for(lambda: svc.counts["readings"] >= 60)
    svc.stop()  # writes the checkpoint
    names = [r[0] for r in db.execute("SELECT name FROM analytics_state ORDER BY name")]
    assert "analytics/0of1/stage.series" in names and "analytics/0of1/pipeline" in names
    again = start(analytics_client_id=client_id)
    series = next(s for s in again.pipeline.stages if s.name == "series")
    assert (cam, "speed") in series.index.keys  # type: ignore[attr-defined]
    # a learned series alerts on the first anomalous readings; a cold one would still be warming up
    pub.send(data_topic("traffic_camera", cam), series_pack(t0 + 3600, [5.0, 4.0, 4.5]))
    row = wait_for(
        lambda: db.execute(
            "SELECT rule, alert_class, evidence FROM alerts WHERE sensor = %s", (cam,)
        ).fetchone()
    )
    assert row[0] == "series.anomaly" and row[1] == "probable_fault"
    assert row[2]["direction"] == "below" and row[2]["expected_low"] > 20
    # duplicates (a redelivery) are not learned twice
    before = again.counts["dropped"]
    pub.send(data_topic("traffic_camera", cam), series_pack(t0 + 3600, [5.0, 4.0, 4.5]))
    wait_for(lambda: again.counts["dropped"] >= before + 3)


def test_after_a_crash_readings_stored_meanwhile_are_replayed(
    start: Callable[..., AnalyticsService], pub: Publisher, db: psycopg.Connection[Any]
) -> None:
    gauge = uid("wl")
    client_id = uid("analytics")
    t0 = now() - 600
    svc = start(analytics_client_id=client_id)
    pub.send(data_topic("water_level", gauge), encode_native([(t0, {"water_level": 5.0})]))
    wait_for(lambda: svc.counts["readings"] >= 1)
    svc.stop()
    # while analytics is away, ingest stores a flood
    db.execute(
        "INSERT INTO readings VALUES (to_timestamp(%s), %s, 'water_level', 50),"
        " (to_timestamp(%s), %s, 'water_level', 52)",
        (t0 + 60, gauge, t0 + 120, gauge),
    )
    again = start(analytics_client_id=client_id)
    assert again.counts["replayed"] == 2
    row = db.execute("SELECT rule, severity FROM alerts WHERE sensor = %s", (gauge,)).fetchone()
    assert row == ("water_level.flood", "critical")


class Doubler(Stage):
    """A stage with derived readings, like the AQI stage."""

    name: ClassVar[str] = "doubler"

    def process(self, batch: Batch, ctx: Context) -> StageOutput:
        out = StageOutput()
        for s, m, t, v in zip(batch.sensor, batch.metric, batch.time, batch.value, strict=True):
            if m == "pm25":
                out.derived.append(
                    Reading(datetime.fromtimestamp(float(t), UTC), s, "aqi_vn", 2 * float(v))
                )
        return out


def test_derived_readings_are_stored(
    db_url: str, mqtt_url: str, pub: Publisher, db: psycopg.Connection[Any]
) -> None:
    st = settings(db_url, mqtt_url)
    pipeline = build_pipeline(st, Context())
    pipeline.stages.append(Doubler())
    svc = AnalyticsService(st, pipeline=pipeline)
    svc.start()
    try:
        assert svc.connected.wait(10)
        time.sleep(0.3)
        aq = uid("aq")
        t = now() - 30
        pub.send(data_topic("air_quality", aq), encode_native([(t, {"pm25": 40.0, "pm10": 50})]))
        row = wait_for(
            lambda: db.execute(
                "SELECT metric, value FROM readings WHERE sensor = %s", (aq,)
            ).fetchall()
        )
        assert row == [("aqi_vn", 80.0)]
    finally:
        svc.stop()


def test_meta_updates_the_registry(
    start: Callable[..., AnalyticsService], pub: Publisher, db: psycopg.Connection[Any]
) -> None:
    svc = start()
    sensor = uid("aq")
    db.execute(
        "INSERT INTO sensors (id, kind, name, area) VALUES (%s, 'air_quality', 'from db', 'Ba Đình')",
        (sensor,),
    )
    pub.send(
        meta_topic("air_quality", sensor),
        encode_meta(Sensor(id=sensor, kind=SensorKind.AIR_QUALITY, name="from meta", lat=21.0,
                           lon=105.8)),
    )  # fmt: skip
    wait_for(lambda: svc.ctx.sensors.get(sensor) and svc.ctx.sensors[sensor].name == "from meta")


def test_mqtt_3_1_1_works_too(
    start: Callable[..., AnalyticsService], pub: Publisher, db: psycopg.Connection[Any]
) -> None:
    gauge = uid("wl")
    start(analytics_mqtt_protocol="3.1.1")
    t = now() - 60
    pub.send(
        data_topic("water_level", gauge),
        encode_native([(t, {"water_level": 60.0}), (t + 1, {"water_level": 61.0})]),
    )
    wait_for(lambda: db.execute("SELECT 1 FROM alerts WHERE sensor = %s", (gauge,)).fetchone())
