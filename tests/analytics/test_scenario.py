"""``ioc eval scenario``: scoring against ground truth, and a small simulated city end to end."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import orjson
import pytest

from analytics.scenario_eval import (
    AlertEvent,
    Truth,
    evaluate,
    format_report,
    parse_duration,
    read_truth,
    score,
)

H = 3600.0


def ev(t: float, sensor: str, cls: str = "incident", rule: str = "series.anomaly") -> AlertEvent:
    return AlertEvent(t, sensor, "speed", rule, cls, "opened")


def test_score_counts_detections_delays_classes_and_false_alerts() -> None:
    truth = [
        Truth("a", "traffic_incident", frozenset({"c1", "c2"}), 10 * H, 11 * H),
        Truth("b", "traffic_incident", frozenset({"c3"}), 20 * H, 21 * H),
        Truth("c", "sensor_fault.stuck", frozenset({"c4"}), 5 * H, 6 * H),
        Truth("d", "flash_flood", frozenset({"w1"}), 30 * H, 31 * H),
    ]
    events = [
        ev(10 * H + 600, "c2"),  # a: 10 min late, right class
        ev(10 * H + 300, "c1", "probable_fault"),  # a: first, 5 min, wrong class
        ev(20 * H - 60, "c3", "device", "health.dropout"),  # b: a device alert does not count
        ev(5 * H + 1200, "c4", "device", "health.stuck"),  # c: 20 min
        ev(40 * H, "c4", "probable_fault"),  # false: no fault then
        ev(12 * H, "x9", "incident"),  # false: nothing on x9
    ]
    r = score(truth, events, sensors=50, days=2.0, pre_s=120, post_s=900)
    a = r.kinds["traffic_incident"]
    assert (a.injected, a.detected, a.median_delay_s) == (2, 1, 300.0)
    assert (a.right_class, a.matched_alerts) == (1, 2)
    stuck = r.kinds["sensor_fault.stuck"]
    assert (stuck.detected, stuck.median_delay_s, stuck.right_class) == (1, 1200.0, 1)
    assert r.kinds["flash_flood"].detected == 0
    assert r.detection_rate == pytest.approx(2 / 4)
    # the device alert on c3 during incident b is not false: something did happen there
    assert r.false_alerts == 2
    assert r.false_per_100_sensor_days == pytest.approx(100 * 2 / 100)
    text = format_report(r)
    assert "traffic_incident" in text and "per 100 sensor-days" in text


def test_truth_file_and_durations(tmp_path: Path) -> None:
    p = tmp_path / "truth.jsonl"
    p.write_text(
        orjson.dumps(
            {
                "schema": "ioc.sim.truth/1",
                "id": "rnd-1",
                "kind": "sensor_fault",
                "fault": "dropout",
                "sensors": ["cam-1"],
                "start": "2026-11-21T16:38:15Z",
                "end": "2026-11-21T19:26:19.234927Z",
            }
        ).decode()
        + "\n\n"
    )
    (t,) = read_truth(p)
    assert t.kind == "sensor_fault.dropout" and t.is_fault and t.sensors == {"cam-1"}
    assert t.end - t.start == pytest.approx(2 * H + 48 * 60 + 4.234927)
    assert parse_duration("90m") == 5400 and parse_duration("2d") == 172_800
    with pytest.raises(ValueError):
        parse_duration("-1h")


@pytest.mark.slow
@pytest.mark.db
@pytest.mark.e2e
def test_a_small_city_end_to_end(pg_server: Any, tmp_path: Path) -> None:
    """The simulator (a subprocess) → the service's code → alerts → scores."""
    if shutil.which("ioc") is None and not Path(".venv/bin/ioc").exists():
        pytest.skip("the ioc command is not installed")
    scenario = tmp_path / "small.json"
    scenario.write_text(
        orjson.dumps(
            {
                "version": 1,
                "name": "small",
                "incidents": [
                    {"kind": "sensor_fault", "fault": "offline", "at": "+3h", "duration": "1h",
                     "area": "Cầu Giấy"},
                    {"kind": "sensor_fault", "fault": "dropout", "at": "+4h", "duration": "1h",
                     "area": "Đống Đa"},
                ],
            }
        ).decode()
    )  # fmt: skip
    report = evaluate(
        pg_server.dsn("postgres"),
        duration_s=6 * H,
        learn_s=2 * H,
        sim_args=[
            "--scenario", str(scenario), "--seed", "3",
            "--count", "traffic_camera=40", "--count", "air_quality=4",
            "--count", "water_level=4", "--count", "weather=2", "--count", "noise=4",
        ],
        settings_overrides={"analytics_stages": "rules,series,health"},
    )  # fmt: skip
    assert report.readings > 50_000
    assert report.sensors >= 50
    assert report.kinds["sensor_fault.offline"].detected == 1
    assert report.kinds["sensor_fault.dropout"].detected == 1
    assert report.kinds["sensor_fault.offline"].median_delay_s < 300
    assert report.kinds["sensor_fault.dropout"].median_delay_s < 600
