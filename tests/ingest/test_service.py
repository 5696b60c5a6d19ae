"""The ingestor end to end: real publishes through a real Mosquitto into a real PostgreSQL."""

from __future__ import annotations

import time
import urllib.request
from collections.abc import Callable
from typing import Any

import orjson
import paho.mqtt.client as mqtt
import psycopg
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.reasoncodes import ReasonCode

from core.codecs import encode_fiware, encode_native, encode_senml
from core.types import SensorKind
from ingest.config import IngestSettings
from ingest.service import Ingestor
from tests.ingest.conftest import count, publish, running, wait_for
from tests.support.servers import MosquittoServer, free_port

pytestmark = [pytest.mark.mqtt, pytest.mark.db]

Settings = Callable[..., IngestSettings]


def rows(dsn: str, prefix: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(dsn) as conn:
        return conn.execute(
            "SELECT sensor, metric, value FROM readings WHERE sensor LIKE %s"
            " ORDER BY sensor, metric, time",
            (prefix + "%",),
        ).fetchall()


def dead(dsn: str, prefix: str) -> dict[str, tuple[Any, ...]]:
    """topic -> (code, reason, accepted, rejected) of this test's dead letters."""
    with psycopg.connect(dsn) as conn:
        found = conn.execute(
            "SELECT topic, code, reason, accepted, rejected, payload FROM dead_letters"
            " WHERE topic LIKE %s",
            (f"%{prefix}%",),
        ).fetchall()
    return {r[0]: r[1:] for r in found}


def register(dsn: str, *sensors: tuple[str, str]) -> None:
    with psycopg.connect(dsn) as conn:
        for sensor, kind in sensors:
            conn.execute(
                "INSERT INTO sensors (id, kind, source) VALUES (%s, %s, 'api')", (sensor, kind)
            )


def test_every_payload_format_reaches_the_readings_table(
    make_settings: Settings, mqtt_url: str, db_url: str, prefix: str
) -> None:
    cam, aq, ws, wl = (prefix + s for s in ("cam", "aq", "ws", "wl"))
    register(
        db_url,
        (cam, "traffic_camera"),
        (aq, "air_quality"),
        (ws, "weather"),
        (wl, "water_level"),
    )
    t = time.time() - 600
    with running(make_settings()):
        publish(
            mqtt_url,
            [
                (f"ioc/v1/air_quality/{aq}/data", encode_native([(t, {"pm25": 87.5, "no2": 41})])),
                (
                    f"ioc/v1/air_quality/{aq}/data",
                    encode_native([(t + 60, {"pm25": 80.0}), (t + 120, {"pm25": 75.0})]),
                ),
                (
                    f"ioc/v1/traffic_camera/{cam}/data",
                    encode_senml(cam, [(t, "speed", 23.5), (t, "occupancy", 41.0)]),
                ),
                (
                    f"ioc/v1/weather/{ws}/data",
                    encode_fiware(SensorKind.WEATHER, ws, t, {"temperature": 34.5, "humidity": 32}),
                ),
                (  # normalized NGSI attributes
                    f"ioc/v1/water_level/{wl}/data",
                    orjson.dumps(
                        {
                            "id": f"urn:ngsi-ld:WaterObserved:{wl}",
                            "type": "WaterObserved",
                            "dateObserved": {"value": "2026-11-22T07:00:00+07:00"},
                            "height": {"type": "Number", "value": 0.42},
                        }
                    ),
                ),
            ],
        )
        wait_for(lambda: len(rows(db_url, prefix)) == 9)
    assert rows(db_url, prefix) == [
        (aq, "no2", 41.0),
        (aq, "pm25", 87.5),
        (aq, "pm25", 80.0),
        (aq, "pm25", 75.0),
        (cam, "occupancy", 41.0),
        (cam, "speed", 23.5),
        (wl, "water_level", 42.0),
        (ws, "humidity", 32.0),
        (ws, "temperature", 34.5),
    ]
    assert dead(db_url, prefix) == {}


def test_every_kind_of_bad_input_becomes_a_dead_letter(
    make_settings: Settings, mqtt_url: str, db_url: str, prefix: str
) -> None:
    now_ms = int(time.time() * 1000)
    # code -> (channel, payload); SENSOR stands for the case's own sensor id
    cases: dict[str, tuple[str, bytes]] = {
        "malformed_json": ("data", b"{pm25: 3"),
        "empty": ("data", b"   "),
        "bad_structure": ("data", b'{"values": [1, 2]}'),
        "oversized": ("data", b'{"values": {"pm25": 1}, "pad": "' + b"x" * 2000 + b'"}'),
        "sensor_mismatch": ("data", b'{"sensor": "someone-else", "values": {"pm25": 1}}'),
        "bad_topic": ("data", b'{"values": {"pm25": 1}}'),
        "unknown_sensor": ("data", b'{"values": {"pm25": 1}}'),
        "bad_meta": ("meta", b'{"lat": 500}'),
        "bad_status": ("status", b'{"status": "sleepy"}'),
        "wrong_type": ("data", orjson.dumps({"ts": now_ms, "values": {"pm25": "high"}})),
        "not_finite": ("data", b'{"values": {"pm25": NaN}}'),
        "out_of_range": ("data", orjson.dumps({"ts": now_ms, "values": {"pm25": -5}})),
        "unknown_metric": ("data", orjson.dumps({"ts": now_ms, "values": {"radon": 5}})),
        "unit_mismatch": ("data", b'[{"bn": "SENSOR:", "n": "pm25", "u": "ppm", "v": 3}]'),
        "bad_timestamp": ("data", b'{"ts": "tuesday", "values": {"pm25": 1}}'),
        "timestamp_future": (
            "data",
            orjson.dumps({"ts": now_ms + 86_400_000, "values": {"pm25": 1}}),
        ),
        "timestamp_too_old": (
            "data",
            orjson.dumps({"ts": now_ms - 90 * 86_400_000, "values": {"pm25": 1}}),
        ),
    }
    messages: dict[str, bytes] = {}
    expected: dict[str, str] = {}
    for code, (channel, payload) in cases.items():
        sensor = prefix + code.replace("_", "-")
        kind = "spaceship" if code == "bad_topic" else "air_quality"
        if code != "unknown_sensor":
            register(db_url, (sensor, "air_quality"))
        topic = f"ioc/v1/{kind}/{sensor}/{channel}"
        messages[topic] = payload.replace(b"SENSOR", sensor.encode())
        expected[topic] = code
    with running(make_settings(max_payload_bytes=1024)) as ingestor:
        publish(mqtt_url, list(messages.items()))
        wait_for(lambda: len(dead(db_url, prefix)) == len(cases))
        found = dead(db_url, prefix)
        for topic, code in expected.items():
            got = found[topic]
            assert got[0] == code, (topic, got)
            assert len(got[1]) > 10 and " " in got[1], got  # a sentence, not just the code
            assert bytes(got[4]) == messages[topic]  # the raw bytes are kept
            assert ingestor.metrics.value("ioc_ingest_rejections_total", {"reason": code}) >= 1
    assert rows(db_url, prefix) == []


def test_a_pack_with_bad_entries_keeps_the_good_ones(
    make_settings: Settings, mqtt_url: str, db_url: str, prefix: str
) -> None:
    s = prefix + "cam"
    register(db_url, (s, "traffic_camera"))
    t = time.time() - 60
    pack = [{"bn": f"urn:dev:ioc:{s}:", "bt": t, "n": "speed", "u": "km/h", "v": 23.5}]
    pack += [{"n": "count_car", "v": float(i), "t": i} for i in range(47)]
    pack += [
        {"n": "occupancy", "v": 140},
        {"n": "speed", "v": "fast", "t": 50},
        {"n": "teleports", "v": 1},
    ]
    payload = orjson.dumps(pack)
    with running(make_settings()):
        publish(mqtt_url, [(f"ioc/v1/traffic_camera/{s}/data", payload)])
        wait_for(lambda: dead(db_url, prefix))
        assert len(rows(db_url, prefix)) == 48
    code, reason, accepted, rejected, raw = dead(db_url, prefix)[f"ioc/v1/traffic_camera/{s}/data"]
    assert (code, accepted, bytes(raw)) == ("out_of_range", 48, payload)
    assert [(r["index"], r["reason"]) for r in rejected] == [
        (48, "out_of_range"),
        (49, "wrong_type"),
        (50, "unknown_metric"),
    ]
    assert reason.startswith("3 of 51 entries rejected")


def test_meta_registers_and_status_follows_the_last_will(
    make_settings: Settings, mqtt_url: str, db_url: str, prefix: str
) -> None:
    s = prefix + "aq"
    meta = b'{"name": "Hoan Kiem Lake", "lat": 21.0287, "lon": 105.8524, "area": "Hoan Kiem",'
    meta += b' "metrics": ["pm25", "pm10"]}'
    with running(make_settings()):
        # a device: retained meta and online, a reading right behind them, offline as its will
        device = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=s, protocol=mqtt.MQTTv5)
        device.will_set(f"ioc/v1/air_quality/{s}/status", b"offline", qos=1, retain=True)
        host, port = mqtt_url.removeprefix("mqtt://").split(":")
        device.connect(host, int(port))
        device.loop_start()
        infos = [
            device.publish(f"ioc/v1/air_quality/{s}/meta", meta, qos=1, retain=True),
            device.publish(f"ioc/v1/air_quality/{s}/status", b"online", qos=1, retain=True),
            device.publish(
                f"ioc/v1/air_quality/{s}/data", encode_native([(time.time(), {"pm25": 12})]), qos=1
            ),
        ]
        for info in infos:
            info.wait_for_publish(10)
        wait_for(lambda: len(rows(db_url, prefix)) == 1)
        with psycopg.connect(db_url) as conn:
            sensor = conn.execute(
                "SELECT kind, name, lat, lon, area, metrics, source, status, last_seen_at"
                " FROM sensors WHERE id = %s",
                (s,),
            ).fetchone()
        assert sensor is not None
        assert sensor[:8] == (
            "air_quality",
            "Hoan Kiem Lake",
            21.0287,
            105.8524,
            "Hoan Kiem",
            ["pm25", "pm10"],
            "meta",
            "online",
        )
        assert sensor[8] is not None
        # the device dies: the broker publishes its will
        device.disconnect(
            reasoncode=ReasonCode(PacketTypes.DISCONNECT, "Disconnect with will message")
        )
        device.loop_stop()
        wait_for(
            lambda: count(
                db_url, "SELECT count(*) FROM sensors WHERE id = %s AND status = 'offline'", s
            )
        )
    with psycopg.connect(db_url) as conn:
        history = conn.execute(
            "SELECT status FROM sensor_status WHERE sensor = %s ORDER BY time", (s,)
        ).fetchall()
    assert history == [("online",), ("offline",)]
    publish(mqtt_url, [(f"ioc/v1/air_quality/{s}/meta", b"", True)])  # clear the retained ones
    publish(mqtt_url, [(f"ioc/v1/air_quality/{s}/status", b"", True)])


def test_unknown_sensors_in_both_modes(
    make_settings: Settings, mqtt_url: str, db_url: str, prefix: str
) -> None:
    a, b = prefix + "a", prefix + "b"
    reading = encode_native([(time.time() - 5, {"noise": 61})])
    with running(make_settings()):
        publish(mqtt_url, [(f"ioc/v1/noise/{a}/data", reading)])
        wait_for(lambda: dead(db_url, prefix))
    assert [v[0] for v in dead(db_url, prefix).values()] == ["unknown_sensor"]
    with running(make_settings(ingest_unknown_sensors="register")):
        publish(mqtt_url, [(f"ioc/v1/noise/{b}/data", reading)])
        wait_for(lambda: rows(db_url, prefix))
    with psycopg.connect(db_url) as conn:
        assert conn.execute(
            "SELECT id, kind, source FROM sensors WHERE id LIKE %s", (prefix + "%",)
        ).fetchall() == [(b, "noise", "auto")]
    assert rows(db_url, prefix) == [(b, "noise", 61.0)]


def test_duplicates_are_stored_once(
    make_settings: Settings, mqtt_url: str, db_url: str, prefix: str
) -> None:
    s = prefix + "wl"
    register(db_url, (s, "water_level"))
    t = time.time() - 100
    msgs = [
        (f"ioc/v1/water_level/{s}/data", encode_native([(t + i, {"water_level": i})]))
        for i in range(20)
    ]
    with running(make_settings()) as ingestor:
        publish(mqtt_url, msgs + msgs[:5])
        wait_for(
            lambda: ingestor.metrics.value("ioc_ingest_messages_total", {"channel": "data"}) == 25
        )
        wait_for(lambda: ingestor.consumer.pending == 0)
        assert ingestor.metrics.value("ioc_ingest_duplicates_total") == 5
    assert len(rows(db_url, prefix)) == 20


@pytest.mark.slow
def test_shared_subscription_spreads_the_load_and_an_instance_can_leave(
    make_settings: Settings, mqtt_url: str, db_url: str, prefix: str
) -> None:
    sensors = [f"{prefix}n{i}" for i in range(20)]
    register(db_url, *((s, "noise") for s in sensors))
    t = time.time() - 1000
    msgs = [
        (f"ioc/v1/noise/{s}/data", encode_native([(t + i, {"noise": 40 + i % 50})]))
        for i in range(200)
        for s in sensors
    ]
    group = prefix.strip("-")
    stored = "SELECT count(*) FROM readings"
    with running(make_settings(ingest_shared_group=group)) as one:
        two = Ingestor(make_settings(ingest_shared_group=group))
        two.start()
        try:
            assert two.wait_ready(30)
            publish(mqtt_url, msgs[:2000])
            wait_for(lambda: count(db_url, stored) == 2000)
            got = [i.metrics.value("ioc_ingest_readings_stored_total") for i in (one, two)]
            assert sum(got) == 2000
            assert min(got) > 0.2 * 2000, got  # both took a real share
            # scaling in: two hands its share back and ends its session
            publish(mqtt_url, msgs[2000:3000])
        finally:
            two.stop(30, leave=True)
        publish(mqtt_url, msgs[3000:])  # nothing of this may wait for the departed instance
        wait_for(lambda: count(db_url, stored) == 4000, timeout=30)
    assert count(db_url, "SELECT count(DISTINCT (sensor, metric, time)) FROM readings") == 4000


def test_metrics_are_served(
    make_settings: Settings, mqtt_url: str, db_url: str, prefix: str
) -> None:
    port = free_port()
    with running(make_settings(ingest_metrics_port=port, ingest_metrics_host="127.0.0.1")):
        publish(mqtt_url, [(f"ioc/v1/noise/{prefix}x/data", b"{}")])

        def scraped() -> str:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
                text: str = r.read().decode()
            return text if 'ioc_ingest_rejections_total{reason="' in text else ""

        text = wait_for(scraped)
    for name in (
        "ioc_ingest_messages_total",
        "ioc_ingest_readings_stored_total",
        "ioc_ingest_batch_commit_seconds_bucket",
        "ioc_ingest_batch_rows_bucket",
        "ioc_ingest_lag_seconds",
        "ioc_ingest_queue_depth",
        "ioc_ingest_db_errors_total",
        "ioc_ingest_db_retries_total",
        "ioc_ingest_mqtt_connected 1.0",
    ):
        assert name in text, name


@pytest.mark.slow
def test_broker_restart_is_survived(
    make_settings: Settings,
    make_broker: Callable[..., MosquittoServer],
    db_url: str,
    prefix: str,
) -> None:
    broker = make_broker()
    s = prefix + "wl"
    register(db_url, (s, "water_level"))
    t = time.time() - 200
    batch = [
        (f"ioc/v1/water_level/{s}/data", encode_native([(t + i, {"water_level": i})]))
        for i in range(100)
    ]
    with running(make_settings(mqtt_url=broker.url, ingest_reconnect_max_s=2)) as ingestor:
        publish(broker.url, batch[:50])
        wait_for(lambda: len(rows(db_url, prefix)) == 50)
        broker.stop()  # persistence: the ingestor's session survives the restart
        broker.start()
        publish(broker.url, batch[50:])  # likely before the ingestor is back: queued for it
        wait_for(lambda: len(rows(db_url, prefix)) == 100, timeout=30)
        assert ingestor.metrics.value("ioc_ingest_mqtt_connects_total") >= 2


@pytest.mark.parametrize(
    ("protocol", "path"), [("3.1.1", "lean"), ("5", "paho"), ("3.1.1", "paho")]
)
def test_persistent_session_by_protocol_and_receive_path(
    make_settings: Settings, mqtt_url: str, db_url: str, prefix: str, protocol: str, path: str
) -> None:
    s = prefix + "nm"
    register(db_url, (s, "noise"))
    t = time.time() - 100
    msgs = [
        (f"ioc/v1/noise/{s}/data", encode_native([(t + i, {"noise": 50 + i})])) for i in range(20)
    ]
    settings = make_settings(ingest_mqtt_protocol=protocol, ingest_receive_path=path)
    with running(settings):
        publish(mqtt_url, msgs[:10])
        wait_for(lambda: len(rows(db_url, prefix)) == 10)
    publish(mqtt_url, msgs[10:])  # while it is away: the broker keeps them for its session
    with running(settings):
        wait_for(lambda: len(rows(db_url, prefix)) == 20)


def test_an_oversized_payload_keeps_its_head_size_and_digest_only(
    make_settings: Settings, mqtt_url: str, db_url: str, prefix: str
) -> None:
    import hashlib

    s = prefix + "big"
    register(db_url, (s, "air_quality"))
    topic = f"ioc/v1/air_quality/{s}/data"
    payload = b'{"values": {"pm25": 1}, "pad": "' + b"x" * 3_000_000 + b'"}'
    with running(make_settings(ingest_dead_letter_max_bytes=4096)):
        publish(mqtt_url, [(topic, payload)])
        wait_for(lambda: dead(db_url, prefix))
    with psycopg.connect(db_url) as conn:
        row = conn.execute(
            "SELECT code, payload, payload_size, payload_sha256 FROM dead_letters WHERE topic = %s",
            (topic,),
        ).fetchone()
    assert row is not None
    code, head, size, digest = row
    assert code == "oversized"
    assert bytes(head) == payload[:4096]
    assert size == len(payload)
    assert digest == hashlib.sha256(payload).hexdigest()
