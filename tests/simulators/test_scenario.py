"""Scenario files: shipped ones load; every mistake is a ScenarioError naming the line and the problem."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.errors import ScenarioError
from simulators.incidents import FaultKind, IncidentKind
from simulators.scenario import (
    load_scenario,
    parse_duration,
    parse_scenario,
    parse_text,
    parse_time,
    shipped_scenarios,
)
from tests.simulators.util import engine, hanoi

GOOD = """\
version: 1
seed: 3
start: 2026-11-23T06:00:00+07:00
duration: 2h
city:
  counts: {traffic_camera: 50}
  formats: {native: 1}
incidents:
  - kind: traffic_incident
    area: Đống Đa
    at: +30m
    duration: 20m
  - {kind: sensor_fault, fault: offline, sensor: aq-00001, at: 2026-11-23T07:00:00+07:00, duration: 1h}
random:
  sensor_fault: 2
"""


def _load(text: str, tmp_path: Path, name: str = "s.yaml") -> object:
    p = tmp_path / name
    p.write_text(text, encoding="utf-8")
    return load_scenario(p)


def test_a_good_scenario(tmp_path: Path) -> None:
    sc = _load(GOOD, tmp_path)
    assert sc.seed == 3 and sc.duration_s == 7200 and sc.counts == {"traffic_camera": 50}  # type: ignore[attr-defined]
    first, second = sc.incidents  # type: ignore[attr-defined]
    assert (
        first.kind is IncidentKind.TRAFFIC_INCIDENT and first.area == "Đống Đa" and first.line == 9
    )
    assert first.start(hanoi("2026-11-23T06:00")) == hanoi("2026-11-23T06:30")
    assert second.fault is FaultKind.OFFLINE and second.start(0.0) == hanoi("2026-11-23T07:00")
    assert sc.random == {IncidentKind.SENSOR_FAULT: 2.0}  # type: ignore[attr-defined]


def test_shipped_scenarios_load_and_resolve() -> None:
    shipped = shipped_scenarios()
    assert {"hanoi", "incidents", "small", "pump-stations"} <= set(shipped)
    for path in shipped.values():
        sc = load_scenario(path)
        start = hanoi("2026-11-23T06:00")
        city = {
            "traffic_camera": 200,
            "air_quality": 40,
            "water_level": 30,
            "weather": 10,
            "noise": 60,
        }
        eng = engine(start, counts=sc.counts or city, scenario=path.read_text())
        assert eng.sensor_counts()


@pytest.mark.parametrize(
    ("text", "line", "problem"),
    [
        ("version: 1\nseeed: 4\n", 2, "unknown key 'seeed'"),
        ("version: 2\n", 1, "version 2 is not supported"),
        (
            "incidents:\n  - kind: meteor_strike\n    at: +1h\n    duration: 1h\n",
            2,
            "kind 'meteor_strike' is unknown",
        ),
        (
            "incidents:\n  - kind: flash_flood\n    at: +1h\n    duration: 4x\n",
            4,
            "'4x' is not a duration",
        ),
        (
            "incidents:\n  - kind: flash_flood\n    at: tomorrow\n    duration: 1h\n",
            3,
            "'tomorrow' is not a time",
        ),
        ("incidents:\n  - kind: flash_flood\n    at: +1h\n", 2, "needs duration"),
        (
            "incidents:\n  - kind: flash_flood\n    near: [48.85, 2.35]\n    at: +1h\n    duration: 1h\n",
            3,
            "is not in Hanoi",
        ),
        (
            "incidents:\n  - kind: flash_flood\n    at: +1h\n    duration: 1h\n    severity: 2\n",
            5,
            "unknown key 'severity'",
        ),
        (
            "incidents:\n  - {kind: traffic_incident, at: +1h, duration: 1h,\n     severity: 3}\n",
            3,
            "severity must be in 0..1",
        ),
        (
            "incidents:\n  - {kind: sensor_fault, fault: melted, sensor: x, at: +1h, duration: 1h}\n",
            2,
            "fault 'melted' is unknown",
        ),
        (
            "incidents:\n  - {kind: sensor_fault, fault: stuck, sensor: x, metric: pm1, at: +1h, duration: 1h}\n",
            2,
            "metric 'pm1' is not in the catalogue",
        ),
        (
            "incidents:\n  - {kind: sensor_fault, fault: stuck, at: +1h, duration: 1h}\n",
            2,
            "needs sensor, near or area",
        ),
        (
            "incidents:\n  - {kind: fire_weather, area: Paris, at: +1h, duration: 1h}\n",
            2,
            "'Paris' is not a district",
        ),
        (
            "incidents:\n  - {kind: flash_flood, sensor: wl-1, near: [21, 105.8], at: 0, duration: 1}\n",
            2,
            "give one of sensor, near or area",
        ),
        ("city:\n  counts: {traffic_camera: -1}\n", 2, "must be >= 0"),
        ("city:\n  formats: {xml: 1}\n", 2, "unknown format 'xml'"),
        ("city:\n  scale: 1\n  scale: 2\n", 3, "duplicate key 'scale' (first on line 2)"),
        ("random:\n  traffic_incident: lots\n", 2, "must be a number"),
        ("city: [1, 2]\n", 1, "city must be a mapping"),
        ("incidents:\n  - kind: flash_flood\n   at: +1h\n", 3, "invalid YAML"),
        (
            "sensor_types:\n  - name: lamp\n    metrics:\n      aqi_vn: {base: 1}\n",
            4,
            "derived by analytics",
        ),
        (
            "sensor_types:\n  - name: lamp\n    metrics:\n      brightness: {base: 1}\n",
            4,
            "unknown key 'brightness'",
        ),
        (
            "sensor_types:\n  - name: lamp\n    metrics:\n      battery: {bsae: 1}\n",
            4,
            "unknown key 'bsae'",
        ),
    ],
)
def test_mistakes_name_the_line_and_the_problem(
    tmp_path: Path, text: str, line: int, problem: str
) -> None:
    with pytest.raises(ScenarioError) as err:
        _load(text, tmp_path)
    msg = str(err.value)
    assert f"s.yaml: line {line}: " in msg, msg
    assert problem in msg, msg


def test_json_scenarios_report_lines_too(tmp_path: Path) -> None:
    with pytest.raises(ScenarioError, match=r"s.json: line 3: invalid JSON"):
        _load('{\n  "seed": 1,\n  "city": {,}\n}\n', tmp_path, "s.json")
    with pytest.raises(ScenarioError, match=r"s.json: line 4: .*unknown key 'colour'"):
        _load('{\n  "seed": 1,\n  "city": {\n    "colour": "red"\n  }\n}\n', tmp_path, "s.json")
    sc = _load(
        '{"seed": 1, "incidents": [{"kind": "flash_flood", "area": "Hoàng Mai", "at": "+1h", "duration": "1h"}]}',
        tmp_path,
        "s.json",
    )
    assert sc.incidents[0].area == "Hoàng Mai"  # type: ignore[attr-defined]


def test_an_unreadable_file_is_a_scenario_error(tmp_path: Path) -> None:
    with pytest.raises(ScenarioError, match="cannot read"):
        load_scenario(tmp_path / "missing.yaml")


def test_durations_and_times() -> None:
    assert (
        parse_duration("90s") == 90
        and parse_duration("45m") == 2700
        and parse_duration("1h30m") == 5400
    )
    assert parse_duration("1d6h") == 108_000 and parse_duration(12) == 12.0
    for bad in ("", "h", "1y", -3, True, "5 minutes"):
        with pytest.raises(ValueError, match="duration"):
            parse_duration(bad)
    assert parse_time("2026-11-23T07:00:00+07:00") == hanoi("2026-11-23T07:00")
    assert parse_time("2026-11-23T07:00") == hanoi("2026-11-23T07:00")  # no zone: Hanoi time
    assert parse_time("2026-11-23T00:00:00Z") == hanoi("2026-11-23T07:00")
    assert parse_time("+2h", base=100.0) == 7300.0 and parse_time("-1h", base=7200.0) == 3600.0
    assert parse_time("now-1d", now=100_000.0) == 13_600.0
    with pytest.raises(ValueError, match="not a time"):
        parse_time("+2h")  # relative needs a base


def test_parse_text_keeps_line_numbers() -> None:
    doc = parse_text("a: 1\nb:\n  - x\n  - y\n")
    assert doc.lines == {"a": 1, "b": 2}
    assert doc["b"].lines == [3, 4]
    assert parse_scenario(None).incidents == []
