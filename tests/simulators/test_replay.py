"""Replaying a recorded timestamp,value series as one sensor."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from core.codecs import decode_meta, decode_readings
from core.errors import ConfigError
from core.topics import parse_sensor_topic
from core.types import SensorKind
from simulators.replay import Replay, read_series
from tests.simulators.util import NO_LIMITS

NAB = "timestamp,value\n2014-04-10 00:00:00,21.5\n2014-04-10 00:05:00,22.0\n2014-04-10 00:10:00,75.0\n2014-04-10 00:15:00,22.4\n"


def _csv(tmp_path: Path, text: str = NAB) -> Path:
    p = tmp_path / "series.csv"
    p.write_text(text)
    return p


def test_replay_shifts_the_series_to_start_now(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    r = Replay(
        _csv(tmp_path),
        sensor="nab-temp",
        metric="temperature",
        kind=SensorKind.WEATHER,
        start=1_800_000_000.0,
    )
    assert r.first == 1_800_000_000.0 and r.last == 1_800_000_900.0 and r.interval_max == 300.0
    assert "1 of 4 values are outside temperature's physical range" in caplog.text  # 75 °C
    msgs = r.window(r.first, r.first + 600) + r.window(r.first + 600, r.last + 1)
    assert [m.topic for m in msgs] == ["ioc/v1/weather/nab-temp/data"] * 4
    values = []
    for m in msgs:
        dec = decode_readings("nab-temp", m.payload, now=m.t, limits=NO_LIMITS)
        assert not dec.rejections
        values += [x.value for x in dec.readings]
    assert values == [21.5, 22.0, 60.0, 22.4]  # clamped into the physical range
    meta, status = r.announce(r.first)
    sensor = decode_meta(SensorKind.WEATHER, "nab-temp", meta.payload)
    assert sensor is not None and sensor.metrics == ("temperature",) and sensor.interval_s == 300.0
    assert orjson.loads(status.payload)["status"] == "online" and status.retain


def test_replay_can_keep_timestamps_and_skip_bad_values(tmp_path: Path) -> None:
    r = Replay(
        _csv(tmp_path), sensor="x", metric="temperature", keep_timestamps=True, out_of_range="skip"
    )
    msgs = r.window(0, 2e9)
    assert len(msgs) == 3
    assert orjson.loads(msgs[0].payload)["ts"] == 1397088000000  # 2014-04-10T00:00:00Z
    assert parse_sensor_topic(msgs[0].topic).kind is SensorKind.GENERIC


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("timestamp,value\n2014-04-10 00:00:00,abc\n", "line 2: value 'abc' is not a number"),
        ("timestamp,value\nyesterday,1\n", "line 2: timestamp 'yesterday' is not ISO 8601"),
        ("timestamp,value\n", "no timestamp,value rows"),
        ("2014-04-10 00:00:00\n", "line 1: expected timestamp,value"),
    ],
)
def test_bad_files_say_where(tmp_path: Path, text: str, problem: str) -> None:
    with pytest.raises(ConfigError, match=problem):
        read_series(_csv(tmp_path, text))


def test_bad_arguments(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not in the catalogue"):
        Replay(_csv(tmp_path), sensor="x", metric="cpu")
    with pytest.raises(ConfigError, match="invalid sensor id"):
        Replay(_csv(tmp_path), sensor="a b", metric="noise")
