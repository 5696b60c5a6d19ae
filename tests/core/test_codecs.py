"""Payload codecs: each format decodes, every bad-input class is named, nothing escapes."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.codecs import (
    Limits,
    decode_meta,
    decode_readings,
    decode_status,
    encode_fiware,
    encode_native,
    encode_senml,
)
from core.errors import PayloadError
from core.types import DeviceStatus, SensorKind

NOW = datetime(2026, 11, 22, 7, 0, tzinfo=UTC).timestamp()
T = "2026-11-22T06:59:00Z"


def dec(payload: bytes | str, sensor: str = "aq-001"):
    raw = payload.encode() if isinstance(payload, str) else payload
    return decode_readings(sensor, raw, now=NOW)


def test_native_single_and_list() -> None:
    out = dec('{"ts": "2026-11-22T06:59:00Z", "values": {"pm25": 35.2, "no2": 20}}')
    assert out.format == "native"
    assert [(r.metric, r.value) for r in out.readings] == [("pm25", 35.2), ("no2", 20.0)]
    assert out.readings[0].time == datetime(2026, 11, 22, 6, 59, tzinfo=UTC)
    ms = int((NOW - 60) * 1000)
    out = dec(
        orjson.dumps([{"ts": ms, "values": {"pm25": 1}}, {"ts": ms + 1000, "values": {"pm25": 2}}])
    )
    assert [r.value for r in out.readings] == [1.0, 2.0]
    assert not out.rejections


def test_native_missing_ts_means_now() -> None:
    out = dec('{"values": {"pm25": 3}}')
    assert out.readings[0].time.timestamp() == pytest.approx(NOW)


def test_senml_pack_resolves_base_fields() -> None:
    pack = [
        {"bn": "urn:dev:ioc:cam-7:", "bt": NOW - 60, "n": "speed", "u": "km/h", "v": 42.5},
        {"n": "occupancy", "u": "%", "v": 12, "t": 1},
        {"n": "vehicle_count", "v": 80},
    ]
    out = dec(orjson.dumps(pack), "cam-7")
    assert out.format == "senml"
    assert [(r.metric, r.value) for r in out.readings] == [
        ("speed", 42.5),
        ("occupancy", 12.0),
        ("vehicle_count", 80.0),
    ]
    assert out.readings[1].time.timestamp() == pytest.approx(NOW - 59)


def test_senml_relative_time_and_unit_mismatch() -> None:
    pack = [
        {"n": "temperature", "u": "Cel", "v": 30, "t": -10},
        {"n": "humidity", "u": "Pa", "v": 1},
    ]
    out = dec(orjson.dumps(pack), "w-1")
    assert out.readings[0].time.timestamp() == pytest.approx(NOW - 10)
    assert [r.reason for r in out.rejections] == ["unit_mismatch"]


@pytest.mark.parametrize(
    ("ftype", "attrs", "expected"),
    [
        (
            "TrafficFlowObserved",
            {"intensity": 120, "averageVehicleSpeed": 31.5, "occupancy": 0.25},
            {"vehicle_count": 120, "speed": 31.5, "occupancy": 25},
        ),
        ("AirQualityObserved", {"pm25": 80, "relativeHumidity": 0.7}, {"pm25": 80, "humidity": 70}),
        ("WaterObserved", {"height": 1.25}, {"water_level": 125}),
        ("NoiseLevelObserved", {"LAeq": 68.2}, {"noise": 68.2}),
        (
            "WeatherObserved",
            {"temperature": 33, "windSpeed": 5.5, "precipitation": 2},
            {"temperature": 33, "wind_speed": 5.5, "rainfall": 2},
        ),
    ],
)
def test_fiware_key_values(ftype: str, attrs: dict[str, float], expected: dict[str, float]) -> None:
    doc = {"id": f"urn:ngsi-ld:{ftype}:s-1", "type": ftype, "dateObserved": T, **attrs}
    out = dec(orjson.dumps(doc), "s-1")
    assert out.format == "fiware"
    assert {r.metric: r.value for r in out.readings} == pytest.approx(expected)
    assert not out.rejections


def test_fiware_normalized_values_accepted() -> None:
    doc = {"id": "s-1", "type": "NoiseLevelObserved", "LAeq": {"type": "Number", "value": 55}}
    assert dec(orjson.dumps(doc), "s-1").readings[0].value == 55


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"{not json", "malformed_json"),
        (b"\xff\xfe\x00", "malformed_json"),
        (b"", "empty"),
        (b"[]", "empty"),
        (b"42", "bad_structure"),
        (b'{"ts": 1, "vals": {}}', "bad_structure"),
        (b'{"sensor": "other", "values": {"pm25": 1}}', "sensor_mismatch"),
        (b'[{"bn": "urn:dev:ioc:other:", "n": "pm25", "v": 1}]', "sensor_mismatch"),
        (
            b'{"id": "urn:ngsi-ld:AirQualityObserved:other", "type": "AirQualityObserved", "pm25": 1}',
            "sensor_mismatch",
        ),
        (b"x" * 300_000, "oversized"),
    ],
)
def test_message_level_rejections(payload: bytes, reason: str) -> None:
    with pytest.raises(PayloadError) as info:
        dec(payload)
    assert info.value.reason == reason
    assert info.value.detail


@pytest.mark.parametrize(
    ("values", "ts", "reason"),
    [
        ('{"pm25": "high"}', f'"{T}"', "wrong_type"),
        ('{"pm25": true}', f'"{T}"', "wrong_type"),
        ('{"pm25": NaN}', f'"{T}"', "not_finite"),
        ('{"pm25": Infinity}', f'"{T}"', "not_finite"),
        ('{"pm25": 5000}', f'"{T}"', "out_of_range"),
        ('{"humidity": -3}', f'"{T}"', "out_of_range"),
        ('{"colour": 3}', f'"{T}"', "unknown_metric"),
        ('{"aqi_vn": 3}', f'"{T}"', "unknown_metric"),
        ('{"pm25": 3}', '"2030-01-01T00:00:00Z"', "timestamp_future"),
        ('{"pm25": 3}', '"1999-01-01T00:00:00Z"', "timestamp_too_old"),
        ('{"pm25": 3}', "1763794800", "timestamp_too_old"),  # seconds where ms are expected
        ('{"pm25": 3}', '"yesterday"', "bad_timestamp"),
        ('{"pm25": 3}', '"2026-11-22T06:59:00"', "bad_timestamp"),
    ],
)
def test_entry_level_rejections(values: str, ts: str, reason: str) -> None:
    out = dec(f'{{"ts": {ts}, "values": {values}}}')
    assert not out.readings
    assert [r.reason for r in out.rejections] == [reason]
    assert out.rejections[0].detail


def test_pack_keeps_good_entries() -> None:
    out = dec(f'{{"ts": "{T}", "values": {{"pm25": 30, "pm10": -1, "no2": 15}}}}')
    assert [r.metric for r in out.readings] == ["pm25", "no2"]
    assert [(r.index, r.reason) for r in out.rejections] == [(1, "out_of_range")]


def test_limits_are_configurable() -> None:
    with pytest.raises(PayloadError, match="oversized"):
        decode_readings(
            "a", b'{"values": {"pm25": 1}}', now=NOW, limits=Limits(max_payload_bytes=10)
        )


def test_encoders_round_trip() -> None:
    t = datetime.fromtimestamp(NOW - 30, UTC)
    vals = {"temperature": 31.5, "humidity": 55.0, "wind_speed": 4.0}
    for payload in (
        encode_native([(t, vals)]),
        encode_senml("w-9", [(t, k, v) for k, v in vals.items()]),
        encode_fiware(SensorKind.WEATHER, "w-9", t, vals),
    ):
        out = decode_readings("w-9", payload, now=NOW)
        assert {r.metric: r.value for r in out.readings} == pytest.approx(vals), payload
        assert all(r.time == t for r in out.readings)


def test_meta_and_status() -> None:
    s = decode_meta(
        SensorKind.AIR_QUALITY,
        "aq-1",
        b'{"name": "Hoan Kiem", "lat": 21.03, "lon": 105.85, "area": "Hoan Kiem", "metrics": ["pm25"], "fw": "1.2"}',
    )
    assert (
        s is not None
        and s.lat == 21.03
        and s.metrics == ("pm25",)
        and s.attributes == {"fw": "1.2"}
    )
    assert decode_meta(SensorKind.AIR_QUALITY, "aq-1", b"") is None
    for bad, reason in [
        (b'{"lat": 200}', "bad_meta"),
        (b'{"id": "x"}', "sensor_mismatch"),
        (b'{"kind": "noise"}', "bad_meta"),
        (b'{"metrics": ["zz"]}', "unknown_metric"),
    ]:
        with pytest.raises(PayloadError) as info:
            decode_meta(SensorKind.AIR_QUALITY, "aq-1", bad)
        assert info.value.reason == reason
    assert decode_status(b"offline", now=NOW) == (DeviceStatus.OFFLINE, NOW)
    assert (
        decode_status(b'{"status": "online", "ts": 1763794740000}', now=NOW)[0]
        is DeviceStatus.ONLINE
    )
    with pytest.raises(PayloadError):
        decode_status(b"maybe")


json_values = st.recursive(
    st.none() | st.booleans() | st.floats(allow_nan=True) | st.integers() | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=10), children, max_size=5)
    ),
    max_leaves=30,
)


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=512))
def test_arbitrary_bytes_never_escape(payload: bytes) -> None:
    try:
        out = dec(payload)
    except PayloadError:
        return
    for r in out.readings:
        assert math.isfinite(r.value)


@settings(max_examples=400, deadline=None)
@given(json_values)
def test_arbitrary_json_never_escapes(doc: object) -> None:
    try:
        out = dec(json.dumps(doc).encode())
    except PayloadError:
        return
    for r in out.readings:
        assert math.isfinite(r.value)


metric_names = st.sampled_from(["pm25", "no2", "speed", "noise", "nope", "temperature", "n"])
entry = st.fixed_dictionaries(
    {
        "values": st.dictionaries(
            metric_names, st.floats() | st.integers() | st.text(max_size=3), min_size=1
        )
    },
    optional={
        "ts": st.integers(min_value=-(2**63), max_value=2**63) | st.text(max_size=30),
        "sensor": st.sampled_from(["aq-001", "x"]),
    },
)


@settings(max_examples=400, deadline=None)
@given(st.lists(entry, min_size=1, max_size=5))
def test_structured_native_packs_account_for_every_entry(docs: list[dict[str, object]]) -> None:
    try:
        out = dec(json.dumps(docs).encode())
    except PayloadError as exc:  # a property: refusing the whole pack is allowed, with a reason
        assert exc.reason in {"sensor_mismatch", "bad_structure"}  # noqa: PT017
        return
    total = sum(len(d["values"]) for d in docs)  # type: ignore[arg-type]
    assert len(out.readings) + len(out.rejections) == total


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.dictionaries(
            st.sampled_from(["bn", "bt", "n", "v", "t", "u", "vs", "bu", "bv"]),
            json_values,
            max_size=6,
        ),
        min_size=1,
        max_size=6,
    )
)
def test_arbitrary_senml_never_escapes(pack: list[dict[str, object]]) -> None:
    try:
        out = dec(json.dumps(pack).encode())
    except PayloadError as exc:  # a property: refusing the whole pack is allowed, with a reason
        assert exc.reason and exc.detail  # noqa: PT017
        return
    assert all(math.isfinite(r.value) for r in out.readings)


HUGE = "1" + "0" * 400  # an integer no float can hold
BT = int(NOW)


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (f'{{"ts": "{T}", "values": {{"pm25": {HUGE}, "no2": 20}}}}', "out_of_range"),
        (f'{{"ts": {HUGE}, "values": {{"pm25": 12, "no2": 20}}}}', "bad_timestamp"),
        (
            f'[{{"bn": "aq-001:", "bt": {BT}, "n": "pm25", "v": {HUGE}}}, {{"n": "no2", "v": 20}}]',
            "out_of_range",
        ),
        (
            f'[{{"bn": "aq-001:", "bt": {BT}, "n": "pm25", "v": 3, "t": {HUGE}}},'
            f' {{"n": "no2", "v": 20}}]',
            "bad_timestamp",
        ),
    ],
)
def test_integer_too_large_for_a_float_is_an_entry_rejection(payload: str, reason: str) -> None:
    out = dec(payload)
    assert [r.reason for r in out.rejections] == [reason] * len(out.rejections)
    assert out.rejections
    assert [r.metric for r in out.readings] == ["no2"] * len(out.readings)
