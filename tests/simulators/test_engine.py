"""The engine: deterministic byte streams, payloads the ingest codec accepts, formats, scheduling."""

from __future__ import annotations

import itertools
from collections import Counter

import pytest

from core.codecs import decode_meta, decode_readings, decode_status
from core.errors import ConfigError
from core.topics import Channel, parse_sensor_topic
from simulators.build import SimConfig, build_engine
from tests.simulators.util import NO_LIMITS, engine, hanoi, run

T0 = hanoi("2026-11-23T07:00")


def _bytes(msgs: list) -> list[tuple[str, bytes]]:
    return [(m.topic, m.payload) for m in msgs]


def test_same_seed_gives_byte_identical_streams_however_windows_are_cut() -> None:
    a = run(engine(T0, seed=11), T0, T0 + 1800, step=1800)
    b = run(engine(T0, seed=11), T0, T0 + 1800, step=7.3)
    assert len(a) > 1000
    assert _bytes(a) == _bytes(b)
    c = run(engine(T0, seed=12), T0, T0 + 1800)
    assert _bytes(a) != _bytes(c)


def test_readings_do_not_depend_on_the_start_of_the_run() -> None:
    """A reading is a function of (seed, sensor, time): starting earlier changes nothing later."""
    late = run(engine(T0 + 600, seed=3), T0 + 600, T0 + 1200)
    early = run(engine(T0, seed=3), T0, T0 + 1200)
    assert _bytes([m for m in early if m.t >= T0 + 600]) == _bytes(late)


def test_every_message_decodes_with_the_ingest_codec() -> None:
    eng = engine(T0, seed=5)
    msgs = eng.announce(T0) + run(eng, T0, T0 + 900) + eng.goodbye(T0 + 900)
    formats: Counter[str] = Counter()
    readings = 0
    for m in msgs:
        st = parse_sensor_topic(m.topic)
        if st.channel is Channel.DATA:
            dec = decode_readings(st.sensor, m.payload, now=m.t, limits=NO_LIMITS)
            assert not dec.rejections, (m.topic, m.payload, dec.rejections)
            assert len(dec.readings) == m.readings
            formats[dec.format] += 1
            readings += m.readings
        elif st.channel is Channel.META:
            assert m.retain
            sensor = decode_meta(st.kind, st.sensor, m.payload)
            assert sensor is not None and sensor.id == st.sensor
        else:
            assert m.retain
            decode_status(m.payload)
    assert set(formats) == {"native", "senml", "fiware"}
    assert formats["native"] > formats["senml"] and formats["native"] > formats["fiware"]
    assert readings > 5000


def test_reports_are_time_ordered_at_each_sensors_interval_with_jitter() -> None:
    eng = engine(T0, counts={"traffic_camera": 30, "air_quality": 4})
    msgs = run(eng, T0, T0 + 3600, step=250)
    times = [m.t for m in msgs]
    assert times == sorted(times)
    assert all(T0 <= t < T0 + 3600 for t in times)
    by_sensor: dict[str, list[float]] = {}
    for m in msgs:
        by_sensor.setdefault(m.topic, []).append(m.t)
    cams = [ts for topic, ts in by_sensor.items() if "/traffic_camera/" in topic]
    aq = [ts for topic, ts in by_sensor.items() if "/air_quality/" in topic]
    assert len(cams) == 30 and all(len(ts) in (59, 60, 61) for ts in cams)
    assert all(len(ts) in (29, 30, 31) for ts in aq)
    gaps = [b - a for ts in cams for a, b in itertools.pairwise(ts)]
    assert 54 <= min(gaps) < 60 < max(gaps) <= 66  # 60 s ± 5 % jitter


def test_only_one_format_when_asked_and_connections_split_devices() -> None:
    eng = engine(T0, formats={"senml": 1.0}, connections=3)
    msgs = run(eng, T0, T0 + 120)
    assert all(m.payload.startswith(b'[{"bn"') for m in msgs)
    assert {m.conn for m in msgs} == {0, 1, 2}
    assert len(eng.gateways) == 3


def test_scale_and_counts() -> None:
    cfg = SimConfig(start=T0, scale=0.1, counts={"noise": 0})
    eng = build_engine(cfg)
    assert eng.sensor_counts() == {
        "traffic_camera": 187,
        "air_quality": 4,
        "water_level": 3,
        "weather": 1,
    }
    with pytest.raises(ConfigError, match="unknown sensor model"):
        build_engine(SimConfig(start=T0, counts={"lamp_post": 3}))


def test_physical_ranges_are_never_exceeded() -> None:
    from core.metrics import METRICS
    from tests.simulators.util import series

    s = series(run(engine(T0), T0, T0 + 1200))
    for (_, metric), (_, v) in s.items():
        spec = METRICS[metric]
        assert spec.low <= v.min() and v.max() <= spec.high, metric
