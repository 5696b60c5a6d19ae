"""The rules stage: levels, hysteresis, minimum duration, hours, per-sensor levels, rules files."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from analytics.engine.base import Batch, Context, Signal
from analytics.stages.rules import load_rules, parse_rules
from analytics.stages.rules_stage import RulesStage
from core.errors import ConfigError
from core.types import AlertClass, Sensor, SensorKind, Severity

T0 = 1_763_769_600.0  # 2025-11-22 00:00 UTC = 07:00 in Hanoi


def rules(*items: dict[str, object]) -> RulesStage:
    return RulesStage(parse_rules({"rules": list(items)}))


def feed(
    stage: RulesStage,
    values: list[float],
    *,
    sensor: str = "wl-1",
    metric: str = "water_level",
    step: float = 60.0,
    t0: float = T0,
    ctx: Context | None = None,
) -> list[list[Signal]]:
    """One reading per batch; the signals of each."""
    out = []
    for i, v in enumerate(values):
        b = Batch([sensor], [metric], np.array([t0 + i * step]), np.array([v]))
        out.append(stage.process(b, ctx or Context()).signals)
    return out


def states(sigs: list[list[Signal]]) -> list[str]:
    """Per reading: '-' nothing, 'c' cleared, else the active severity's initial."""
    res = []
    for s in sigs:
        if not s:
            res.append("-")
        else:
            assert len(s) == 1
            res.append(s[0].severity.value[0] if s[0].active else "c")
    return res


FLOOD = {
    "id": "water_level.flood",
    "metric": "water_level",
    "warning": 20.0,
    "critical": 40.0,
    "hysteresis": 5.0,
}


def test_levels_and_hysteresis() -> None:
    stage = rules(FLOOD)
    got = states(feed(stage, [10, 25, 18, 16, 14, 45, 38, 36, 34, 12]))
    # 18 and 16 stay warning (clear below 20 - 5 = 15); 38, 36 stay critical (above 35)
    assert got == ["-", "w", "w", "w", "c", "c", "c", "c", "w", "c"]


def test_a_signal_carries_evidence_and_class() -> None:
    stage = rules(FLOOD)
    sig = feed(stage, [42])[0][0]
    assert sig.rule == "water_level.flood" and sig.detector == "rules"
    assert sig.severity is Severity.CRITICAL and sig.alert_class is AlertClass.THRESHOLD
    assert sig.value == 42 and sig.expected_high == 20.0
    assert sig.evidence["threshold"] == 40.0
    assert "critical level 40 cm" in sig.message


def test_a_level_held_by_hysteresis_is_not_called_at_or_above() -> None:
    sigs = feed(rules(FLOOD), [42, 38, 18])
    assert "42 cm is at or above the critical level 40 cm" in sigs[0][0].message
    held = sigs[1][0]
    assert held.severity is Severity.CRITICAL
    assert "38 cm is below the critical level 40 cm" in held.message
    assert "holds until the value falls below 35 cm" in held.message
    assert "at or above" not in held.message
    assert "18 cm is below the warning level 20 cm" in sigs[2][0].message
    low = rules(
        {"id": "b", "metric": "battery", "direction": "below", "warning": 15, "hysteresis": 3}
    )
    sig = feed(low, [14, 16], metric="battery")[1][0]
    assert "16 % is above the warning level 15 %" in sig.message
    assert "rises above 18 %" in sig.message


def test_minimum_duration_in_seconds() -> None:
    stage = rules({**FLOOD, "min_duration_s": 180})
    # above 20 from t=60; active once it has held 180 s (t=240)
    got = states(feed(stage, [10, 25, 26, 27, 28, 29, 10]))
    assert got == ["-", "-", "-", "-", "w", "w", "c"]


def test_minimum_duration_restarts_after_an_interruption() -> None:
    stage = rules({**FLOOD, "min_readings": 3})
    got = states(feed(stage, [25, 25, 10, 25, 25, 25, 25]))
    assert got == ["-", "-", "-", "-", "-", "w", "w"]


def test_escalation_needs_its_own_duration_but_de_escalation_is_immediate() -> None:
    stage = rules({**FLOOD, "min_readings": 2})
    got = states(feed(stage, [25, 25, 45, 45, 30, 10]))
    assert got == ["-", "w", "w", "c", "w", "c"]


def test_direction_below() -> None:
    stage = rules(
        {
            "id": "battery.low",
            "metric": "battery",
            "direction": "below",
            "warning": 15,
            "critical": 5,
            "hysteresis": 3,
            "alert_class": "device",
        }
    )
    sigs = feed(stage, [50, 14, 16, 19, 4, 7, 30], metric="battery")
    assert states(sigs) == ["-", "w", "w", "c", "c", "c", "c"]
    assert sigs[1][0].alert_class is AlertClass.DEVICE


def test_plausible_band() -> None:
    stage = rules(
        {
            "id": "temperature.implausible",
            "metric": "temperature",
            "direction": "outside",
            "low": -5,
            "high": 50,
            "warning": 0,
            "alert_class": "probable_fault",
        }
    )
    sigs = feed(stage, [30, 50, 55, 20, -10, 0], metric="temperature")
    assert states(sigs) == ["-", "-", "w", "c", "w", "c"]
    assert "outside the plausible -5..50" in sigs[2][0].message


def test_hours_window_in_hanoi_time() -> None:
    stage = rules({"id": "noise.night", "metric": "noise", "hours": [21, 6], "warning": 70})
    hour = 3600.0
    # T0 is 07:00 local: 60 dB(A)... 80 dB(A) at 07:00 (day) is not a night alert
    day = feed(stage, [80], metric="noise", t0=T0)
    night = feed(stage, [80, 80], metric="noise", t0=T0 + 15 * hour, step=hour)  # 22:00, 23:00
    morning = feed(stage, [80], metric="noise", t0=T0 + 23 * hour)  # 06:00 next day
    assert states(day) == ["-"]
    assert states(night) == ["w", "w"]
    assert states(morning) == ["c"]


def test_per_sensor_rules_and_levels_from_the_registry() -> None:
    stage = rules(FLOOD, {**FLOOD, "sensors": ["river-1"], "warning": 900, "critical": 1000})
    ctx = Context(
        sensors={
            "gauge-2": Sensor(
                id="gauge-2",
                kind=SensorKind.WATER_LEVEL,
                attributes={"levels": {"water_level": {"warning": 100, "critical": 150}}},
            )
        }
    )
    assert states(feed(stage, [500, 950], sensor="river-1", ctx=ctx)) == ["-", "w"]
    assert states(feed(stage, [50, 120, 160], sensor="gauge-2", ctx=ctx)) == ["-", "w", "c"]
    assert states(feed(stage, [25], sensor="other", ctx=ctx)) == ["w"]


def test_kind_filter() -> None:
    stage = rules({**FLOOD, "kinds": ["water_level"]})
    ctx = Context(sensors={"g": Sensor(id="g", kind=SensorKind.WEATHER)})
    assert states(feed(stage, [50], sensor="g", ctx=ctx)) == ["-"]
    ctx2 = Context(sensors={"g": Sensor(id="g", kind=SensorKind.WATER_LEVEL)})
    assert states(feed(stage, [50], sensor="g", ctx=ctx2)) == ["c"]


def test_batch_equals_one_reading_at_a_time() -> None:
    rng = np.random.default_rng(3)
    n_sensors, steps = 40, 60
    values = np.clip(rng.normal(15, 10, size=(steps, n_sensors)), 0, 80)
    one = rules({**FLOOD, "min_readings": 2})
    many = rules({**FLOOD, "min_readings": 2})
    a: list[tuple[str, float, bool, str]] = []
    b: list[tuple[str, float, bool, str]] = []
    for k in range(steps):
        t = T0 + 60 * k
        for i in range(n_sensors):
            batch = Batch([f"s{i}"], ["water_level"], np.array([t]), np.array([values[k, i]]))
            a += [
                (s.sensor, s.time, s.active, s.severity)
                for s in one.process(batch, Context()).signals
            ]
    for k in range(0, steps, 5):  # five steps of every sensor per batch, time-ordered
        sensors, times, vals = [], [], []
        for kk in range(k, k + 5):
            for i in range(n_sensors):
                sensors.append(f"s{i}")
                times.append(T0 + 60 * kk)
                vals.append(values[kk, i])
        batch = Batch(sensors, ["water_level"] * len(sensors), np.array(times), np.array(vals))
        b += [
            (s.sensor, s.time, s.active, s.severity) for s in many.process(batch, Context()).signals
        ]
    assert len(a) > 100
    assert sorted(a) == sorted(b)


def test_state_round_trip_continues_identically() -> None:
    a = rules({**FLOOD, "min_readings": 3})
    feed(a, [25, 25])
    b = rules({**FLOOD, "min_readings": 3})
    b.set_state(json.loads(json.dumps(a.get_state())))
    assert states(feed(a, [25, 25], t0=T0 + 120)) == states(feed(b, [25, 25], t0=T0 + 120))
    assert states(feed(b, [25], t0=T0 + 300)) == ["w"]


def test_builtin_rules_load_and_cover_hanoi() -> None:
    ids = {r.id for r in load_rules()}
    assert {"water_level.flood", "pm25.level", "noise.night", "temperature.heat"} <= ids


def test_rules_files(tmp_path: Path) -> None:
    toml = tmp_path / "r.toml"
    toml.write_text('[[rules]]\nid = "pm25.x"\nmetric = "pm25"\nwarning = 100\n')
    assert [r.id for r in load_rules(toml)] == ["pm25.x"]
    js = tmp_path / "r.json"
    js.write_text(json.dumps({"rules": [{"metric": "noise", "warning": 80, "critical": 90}]}))
    assert load_rules(js)[0].id == "noise.level"
    bad = tmp_path / "bad.toml"
    bad.write_text('[[rules]]\nid = "x"\nmetric = "pm25"\nwarning = 100\ncritical = 50\n')
    with pytest.raises(ConfigError, match=r"rule 1 \(x\): levels must rise"):
        load_rules(bad)
    with pytest.raises(ConfigError, match="unknown metric"):
        parse_rules({"rules": [{"metric": "pm3", "warning": 1}]})
    with pytest.raises(ConfigError, match="unknown fields: warn"):
        parse_rules({"rules": [{"metric": "pm25", "warn": 1}]})


def test_water_level_rules_follow_the_gauge_type() -> None:
    """A river gauge reads its river's stage (hundreds of cm): never the street flooding levels."""
    stage = RulesStage()  # the built-in rules

    def gauge(site: str | None, **attrs: object) -> Sensor:
        extra = {"site_type": site} if site is not None else {}
        return Sensor(id="g", kind=SensorKind.WATER_LEVEL, attributes={**extra, **attrs})

    def run(sensor: str, meta: Sensor, values: list[float]) -> list[list[Signal]]:
        ctx = Context(sensors={sensor: meta.model_copy(update={"id": sensor})})
        return feed(stage, values, sensor=sensor, ctx=ctx)

    river = run("wl-red", gauge("river"), [620.0, 640.0, 660.0])
    assert [s for batch in river for s in batch] == []
    street = run("wl-street", gauge("street"), [5.0, 45.0, 45.0])
    assert [(s.rule, s.severity, s.alert_class) for s in street[2]] == [
        ("water_level.flood", Severity.CRITICAL, AlertClass.THRESHOLD)
    ]
    unknown = run("wl-legacy", gauge(None), [45.0, 45.0])  # no site_type: a street gauge
    assert [s.rule for s in unknown[1]] == ["water_level.flood"]
    # a river gauge's own alarm stages (Red River at Long Biên, stage I-III) apply
    staged = gauge(
        "river", levels={"water_level": {"info": 950, "warning": 1050, "critical": 1150}}
    )
    alarmed = run("wl-longbien", staged, [900.0, 1060.0, 1060.0])
    assert [(s.rule, s.severity) for s in alarmed[2]] == [("water_level.flood", Severity.WARNING)]
    # a street gauge well below zero is broken, not dry
    broken = run("wl-broken", gauge("street"), [-60.0, -60.0, -60.0])
    assert [(s.rule, s.alert_class) for s in broken[2]] == [
        ("water_level.implausible", AlertClass.PROBABLE_FAULT)
    ]


def test_site_types_in_a_rules_file() -> None:
    (rule,) = parse_rules(
        {"rules": [{**FLOOD, "site_types": "river", "warning": 900, "critical": 1000}]}
    )
    assert rule.site_types == {"river"} and rule.specificity == 2
    assert rule.applies_to("x", SensorKind.WATER_LEVEL, "river")
    assert not rule.applies_to("x", SensorKind.WATER_LEVEL, "street")
