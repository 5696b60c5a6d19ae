"""The sensor health stage: stuck values, dropouts, channel dropouts, offline devices, invalid values."""

from __future__ import annotations

import numpy as np

from analytics.engine.base import Batch, Context, Signal
from analytics.service.checkpoint import decode_state, encode_state
from analytics.stages.health import HealthStage
from analytics.stages.health_stuck import DEVICE
from core.types import AlertClass, Sensor, SensorKind

T0 = 1_763_769_600.0


def step(stage: HealthStage, t: float, readings: dict[tuple[str, str], float]) -> list[Signal]:
    b = Batch(
        [s for s, _ in readings],
        [m for _, m in readings],
        np.full(len(readings), t),
        np.array(list(readings.values()), dtype=np.float64),
    )
    return stage.process(b, Context()).signals


def by_rule(sigs: list[Signal], rule: str) -> list[Signal]:
    return [s for s in sigs if s.rule == rule]


def test_a_stuck_value_is_told_from_normal_repeats() -> None:
    rng = np.random.default_rng(0)
    stage = HealthStage(stuck_factor=10, stuck_min_readings=10, stuck_min_s=600)
    sigs: list[Signal] = []
    for k in range(300):
        t = T0 + 60 * k
        pm = round(float(rng.normal(40, 5)))  # integer values repeat now and then
        stuck = 42.0 if k >= 200 else pm
        sigs += step(stage, t, {("aq-1", "pm25"): pm, ("aq-2", "pm25"): stuck})
    stuck_sigs = by_rule(sigs, "health.stuck")
    assert stuck_sigs and {s.sensor for s in stuck_sigs} == {"aq-2"}
    first = stuck_sigs[0]
    assert first.active and first.alert_class is AlertClass.DEVICE and first.metric == "pm25"
    # it holds at least max(10 readings, 10 x the usual run) and 10 minutes
    assert T0 + 60 * 209 <= first.time <= T0 + 60 * 230
    assert "repeated 42" in first.message
    # the value moves again: cleared
    more = step(stage, T0 + 60 * 300, {("aq-2", "pm25"): 50.0})
    assert [(s.rule, s.active) for s in more] == [("health.stuck", False)]


def test_a_run_at_the_physical_floor_is_normal() -> None:
    stage = HealthStage()
    sigs: list[Signal] = []
    for k in range(200):
        sigs += step(stage, T0 + 60 * k, {("wl-1", "rainfall"): 0.0, ("cam", "count_car"): 0.0})
    assert by_rule(sigs, "health.stuck") == []


def test_missed_heartbeat_with_a_learned_interval_and_resumption() -> None:
    stage = HealthStage(heartbeat_k=3, min_gap_s=120)
    for k in range(20):
        t = T0 + 60 * k
        step(stage, t, {("a", "noise"): 60.0 + k % 3, ("b", "noise"): 55.0 + k % 2})
    last = T0 + 60 * 19
    ctx = Context()
    assert stage.tick(last + 170, ctx).signals == []  # under 3 x 60 s
    sigs = stage.tick(last + 200, ctx).signals
    assert {(s.sensor, s.rule, s.metric, s.active) for s in sigs} == {
        ("a", "health.dropout", DEVICE, True),
        ("b", "health.dropout", DEVICE, True),
    }
    assert "no readings for 3 min" in sigs[0].message
    assert stage.tick(last + 260, ctx).signals == []  # said once
    back = step(stage, last + 300, {("a", "noise"): 61.0})
    assert [(s.sensor, s.rule, s.active) for s in back] == [("a", "health.dropout", False)]


def test_an_announced_interval_wins_over_the_learned_one() -> None:
    stage = HealthStage(heartbeat_k=3, min_gap_s=0)
    for k in range(10):
        step(stage, T0 + 10 * k, {("a", "noise"): 50.0 + k})
    ctx = Context(sensors={"a": Sensor(id="a", kind=SensorKind.NOISE, interval_s=300)})
    last = T0 + 90
    assert stage.tick(last + 100, ctx).signals == []  # learned 10 s would say missing
    assert len(stage.tick(last + 901, ctx).signals) == 1


def test_when_most_sensors_fall_silent_at_once_it_is_the_feed() -> None:
    stage = HealthStage()
    for k in range(10):
        step(stage, T0 + 60 * k, {(f"s{i}", "noise"): 50.0 + k for i in range(20)})
    assert stage.tick(T0 + 60 * 9 + 3600, Context()).signals == []


def test_a_channel_that_stops_while_the_device_reports() -> None:
    stage = HealthStage(heartbeat_k=3, min_gap_s=60)
    for k in range(30):
        readings = {("ws", "temperature"): 30.0 + k % 4 * 0.1}
        if k < 15:
            readings[("ws", "humidity")] = 60.0 + k % 5
        step(stage, T0 + 60 * k, readings)
    sigs = stage.tick(T0 + 60 * 29 + 1, Context()).signals
    assert [(s.rule, s.metric, s.active) for s in sigs] == [
        ("health.channel_dropout", "humidity", True)
    ]
    back = step(stage, T0 + 60 * 30, {("ws", "humidity"): 61.0, ("ws", "temperature"): 30.0})
    assert [(s.rule, s.active) for s in back] == [("health.channel_dropout", False)]


def test_offline_and_online_from_the_status_topic() -> None:
    stage = HealthStage(offline_grace_s=30)
    stage.on_status("cam-9", "offline", T0)
    stage.on_status("cam-9", "offline", T0 + 5)  # said once
    assert stage.tick(T0 + 29, Context()).signals == []
    sigs = stage.tick(T0 + 30, Context()).signals
    assert [(s.sensor, s.rule, s.metric, s.active) for s in sigs] == [
        ("cam-9", "health.offline", DEVICE, True)
    ]
    assert sigs[0].alert_class is AlertClass.DEVICE
    stage.on_status("cam-9", "online", T0 + 40)
    assert [s.active for s in stage.tick(T0 + 41, Context()).signals] == [False]
    # a blip shorter than the grace period is no alert
    stage.on_status("cam-9", "offline", T0 + 50)
    stage.on_status("cam-9", "online", T0 + 60)
    assert stage.tick(T0 + 100, Context()).signals == []


def test_when_most_devices_go_offline_at_once_there_is_no_storm() -> None:
    stage = HealthStage()
    for k in range(5):
        step(stage, T0 + k, {(f"d{i}", "noise"): 50.0 + k for i in range(40)})
    for i in range(15):
        stage.on_status(f"d{i}", "offline", T0 + 10)
    assert stage.tick(T0 + 11, Context()).signals == []  # within the grace period
    for i in range(15, 30):
        stage.on_status(f"d{i}", "offline", T0 + 12)
    assert stage.tick(T0 + 100, Context()).signals == []
    assert len(stage.offline) == 30
    stage.on_status("d0", "online", T0 + 105)
    assert [s.active for s in stage.tick(T0 + 106, Context()).signals] == [False]


def test_repeated_impossible_values() -> None:
    stage = HealthStage(invalid_count=3, invalid_window_s=600)
    stage.on_invalid("aq", "pm25", T0)
    stage.on_invalid("aq", "pm25", T0 + 1000)  # too far apart
    stage.on_invalid("aq", "pm25", T0 + 1100)
    assert stage.tick(T0 + 1101, Context()).signals == []
    stage.on_invalid("aq", "pm25", T0 + 1200)
    sigs = stage.tick(T0 + 1201, Context()).signals
    assert [(s.rule, s.active) for s in sigs] == [("health.invalid_values", True)]
    later = stage.tick(T0 + 2000, Context()).signals
    assert [(s.rule, s.active) for s in later] == [("health.invalid_values", False)]


def test_state_round_trip() -> None:
    a = HealthStage()
    for k in range(10):
        step(a, T0 + 60 * k, {("x", "noise"): 50.0 + k})
    a.on_status("y", "offline", T0 + 500)
    assert [s.rule for s in a.tick(T0 + 600, Context()).signals] == ["health.offline"]
    b = HealthStage()
    b.set_state(decode_state(encode_state(a.get_state())))
    assert b.offline == {"y": T0 + 500}
    sa = [(s.rule, s.sensor) for s in a.tick(T0 + 60 * 9 + 400, Context()).signals]
    sb = [(s.rule, s.sensor) for s in b.tick(T0 + 60 * 9 + 400, Context()).signals]
    assert sa == sb == [("health.dropout", "x")]
