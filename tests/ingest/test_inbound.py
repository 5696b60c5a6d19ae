"""Classifying messages and the dead letters they leave (no servers)."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

from core.codecs import DEFAULT_LIMITS, encode_fiware, encode_native, encode_senml
from core.i18n import message
from core.types import DeviceStatus, SensorKind
from ingest.inbound import Inbound, dead_letter_of, decode_message

NOW = time.time()
PG_EPOCH = datetime(2000, 1, 1, tzinfo=UTC)


def decode(topic: str, payload: bytes) -> Inbound:
    return decode_message(topic, payload, mid=7, qos=1, gen=3, now=NOW, limits=DEFAULT_LIMITS)


def test_each_format_becomes_columns() -> None:
    t = NOW - 60
    native = decode("ioc/v1/air_quality/aq-1/data", encode_native([(t, {"pm25": 8, "pm10": 9})]))
    senml = decode(
        "ioc/v1/traffic_camera/cam-1/data",
        encode_senml("cam-1", [(t, "speed", 31.5), (t + 1, "occupancy", 12)]),
    )
    fiware = decode(
        "ioc/v1/weather/ws-1/data",
        encode_fiware(SensorKind.WEATHER, "ws-1", t, {"temperature": 30.5, "humidity": 40}),
    )
    assert native.cols is not None and native.cols.format == "native"
    assert sorted(zip(native.cols.metrics, native.cols.values, strict=True)) == [
        ("pm10", 9.0),
        ("pm25", 8.0),
    ]
    assert senml.cols is not None and senml.cols.format == "senml"
    assert senml.cols.metrics == ["speed", "occupancy"]
    assert fiware.cols is not None and fiware.cols.format == "fiware"
    assert dict(zip(fiware.cols.metrics, fiware.cols.values, strict=True)) == {
        "temperature": 30.5,
        "humidity": 40.0,
    }
    want = (datetime.fromtimestamp(round(t * 1000) / 1000, UTC) - PG_EPOCH) // timedelta(
        microseconds=1
    )
    assert native.cols.us == [want, want]
    for msg in (native, senml, fiware):
        assert (msg.mid, msg.qos, msg.gen, msg.channel) == (7, 1, 3, "data")
        assert msg.error is None and not msg.rejections
        assert dead_letter_of(msg) is None


def test_bad_topic_and_whole_message_errors() -> None:
    bad = decode("ioc/v1/spaceship/x-1/data", b"{}")
    assert bad.channel == "bad" and bad.error is not None and bad.error.reason == "bad_topic"
    dl = dead_letter_of(bad)
    assert dl is not None and dl.code == "bad_topic" and "spaceship" in dl.reason
    assert dl.payload == b"{}" and dl.accepted == 0 and dl.rejected is None
    for payload, code in [
        (b"{nope", "malformed_json"),
        (b"", "empty"),
        (b'"x"', "bad_structure"),
        (b'{"sensor": "aq-9", "values": {"pm25": 1}}', "sensor_mismatch"),
    ]:
        msg = decode("ioc/v1/air_quality/aq-1/data", payload)
        assert msg.error is not None and msg.error.reason == code, payload
        assert msg.cols is None


def test_partly_bad_pack_keeps_the_good_entries() -> None:
    t = int((NOW - 30) * 1000)
    payload = (
        b'[{"ts": %d, "values": {"pm25": 10, "pm10": 5000, "no2": "high"}},'
        b' {"ts": %d, "values": {"pm25": 11}}]' % (t, t + 1000)
    )
    msg = decode("ioc/v1/air_quality/aq-1/data", payload)
    assert msg.cols is not None and msg.cols.values == [10.0, 11.0]
    dl = dead_letter_of(msg)
    assert dl is not None and dl.rejected is not None
    assert dl.code == "out_of_range" and dl.accepted == 2
    assert [(e["index"], e["reason"], e["key"]) for e in dl.rejected] == [
        (1, "out_of_range", "payload.value.out_of_range"),
        (2, "wrong_type", "payload.value.type"),
    ]
    assert dl.rejected[0]["fields"] == {
        "metric": "pm10",
        "value": 5000.0,
        "unit": "µg/m³",
        "low": 0,
        "high": 2000,
    }
    assert "2 of 4 entries rejected" in dl.reason
    assert dl.counted == ("out_of_range", "wrong_type")
    # the reason is kept as a message id and fields too, and reads in either language
    assert dl.detail_key == "deadletter.pack" and dl.detail_fields is not None
    assert message("en", dl.detail_key, dl.detail_fields) == dl.reason
    assert message("vi", dl.detail_key, dl.detail_fields) == (
        "2 trên 4 mục bị từ chối: out_of_range (1), wrong_type (1); mục đầu: pm10 = 5.000 µg/m³"
        " nằm ngoài khoảng vật lý 0..2.000"
    )


def test_dead_letter_fields_are_plain_json() -> None:
    """NaN, infinity and NUL cannot be stored in jsonb: the fields hold them as text."""
    msg = decode("ioc/v1/air_quality/aq-1/data", b'{"values": {"pm25": NaN, "pm10": 5}}')
    dl = dead_letter_of(msg)
    assert dl is not None and dl.rejected is not None and dl.detail_fields is not None
    assert dl.rejected[0]["fields"] == {"metric": "pm25", "value": "nan"}
    bad = decode("ioc/v1/air_quality/aq-1/data", rb'{"sensor": "x\u0000", "values": {"pm25": 5}}')
    dl = dead_letter_of(bad)
    assert dl is not None and dl.detail_key == "payload.sensor_mismatch"
    assert dl.detail_fields is not None and "\x00" not in str(dl.detail_fields)
    assert "\x00" not in message("vi", dl.detail_key, dl.detail_fields)


def test_unknown_sensor_dead_letter_says_what_to_do() -> None:
    msg = decode("ioc/v1/noise/nm-7/data", encode_native([(NOW, {"noise": 55})]))
    dl = dead_letter_of(msg, unknown_sensor=True)
    assert dl is not None and dl.code == "unknown_sensor" and dl.accepted == 0
    assert "ioc/v1/noise/nm-7/meta" in dl.reason and "IOC_INGEST_UNKNOWN_SENSORS" in dl.reason


def test_meta_and_status() -> None:
    meta = decode(
        "ioc/v1/air_quality/aq-1/meta",
        b'{"name": "Ho\\u00e0n Ki\\u1ebfm", "lat": 21.03, "lon": 105.85, "metrics": ["pm25"]}',
    )
    assert meta.meta is not None and meta.meta.name == "Hoàn Kiếm" and meta.channel == "meta"
    assert dead_letter_of(meta) is None
    cleared = decode("ioc/v1/air_quality/aq-1/meta", b"")
    assert cleared.meta is None and cleared.error is None
    for payload, code in [
        (b'{"lat": 123}', "bad_meta"),
        (b'{"name": "a\\u0000b"}', "bad_meta"),
        (b'{"metrics": ["warp"]}', "unknown_metric"),
    ]:
        msg = decode("ioc/v1/air_quality/aq-1/meta", payload)
        assert msg.error is not None and msg.error.reason == code, payload
    online = decode("ioc/v1/air_quality/aq-1/status", b"online")
    assert online.status == (DeviceStatus.ONLINE, NOW)
    for payload, code in [
        (b"maybe", "malformed_json"),
        (b'{"status": "asleep"}', "bad_status"),
        (b'{"status": "offline", "ts": %d}' % ((NOW + 3600) * 1000), "timestamp_future"),
        (b'{"status": "offline", "ts": 1000}', "timestamp_too_old"),
    ]:
        msg = decode("ioc/v1/air_quality/aq-1/status", payload)
        assert msg.error is not None and msg.error.reason == code, payload


def test_nul_characters_never_reach_text_columns() -> None:
    msg = decode("ioc/v1/air_quality/aq-1/data", b'{"values": {"pm\\u0000": 1}}')
    dl = dead_letter_of(msg)
    assert dl is not None and "\x00" not in dl.reason
    assert all("\x00" not in r["detail"] for r in dl.rejected or [])
