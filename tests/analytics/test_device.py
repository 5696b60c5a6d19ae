"""The device stage: a water gauge whose level stops following the rain raises one alert."""

from __future__ import annotations

import numpy as np

from analytics.engine.base import Batch, Context
from analytics.service.checkpoint import decode_state, encode_state
from analytics.stages.device import RULE, DeviceStage
from core import alert_text
from core.types import Sensor, SensorKind

T0 = 1_763_769_600.0


def gauges(n: int, k: int, seed: int = 0, break_at: int | None = None) -> np.ndarray:
    """(n, k, 2): rainfall and a water level that follows it, for ``k`` gauges."""
    rng = np.random.default_rng(seed)
    rain = np.zeros((n, k))
    for i in range(1, n):
        rain[i] = 0.9 * rain[i - 1] + np.abs(rng.normal(0, 1, k))
    level = 20 + 4 * rain + rng.normal(0, 0.5, (n, k))
    if break_at is not None:
        level[break_at:, 0] -= 6  # gauge 0 stops following the rain: a blocked intake
    return np.stack([rain, level], axis=2)


def run(stage: DeviceStage, x: np.ndarray, ctx: Context, start: int = 0) -> list:
    signals = []
    n, k, _ = x.shape
    ids = [f"wl{j}" for j in range(k)]
    for i in range(n):
        batch = Batch(
            [*ids, *ids],
            ["rainfall"] * k + ["water_level"] * k,
            np.full(2 * k, T0 + 60.0 * (start + i)),
            np.concatenate([x[i, :, 0], x[i, :, 1]]),
        )
        signals += stage.process(batch, ctx).signals
    return signals


def context(k: int) -> Context:
    return Context(
        sensors={f"wl{j}": Sensor(id=f"wl{j}", kind=SensorKind.WATER_LEVEL) for j in range(k)}
    )


def test_a_gauge_that_stops_following_the_rain_alerts_and_the_others_stay_quiet() -> None:
    x = gauges(900, 4, break_at=700)
    ctx = context(4)
    stage = DeviceStage()
    assert set(stage.models) >= {SensorKind.WATER_LEVEL, SensorKind.AIR_QUALITY}
    assert SensorKind.TRAFFIC_CAMERA not in stage.models
    signals = run(stage, x, ctx)
    opened = [s for s in signals if s.active and s.rule == RULE]
    broken = [s for s in opened if s.sensor == "wl0" and s.time >= T0 + 60.0 * 700]
    assert broken and broken[0].time <= T0 + 60.0 * 703
    assert broken[0].metric == "water_level" and "q" in broken[0].evidence
    before = [s for s in opened if s.time < T0 + 60.0 * 700]
    # noise alone: at most about one alarm reading per 700 device readings
    assert len({(s.sensor, s.time) for s in before}) <= 4


def test_unknown_sensors_and_single_metric_kinds_are_ignored_and_state_round_trips() -> None:
    stage = DeviceStage()
    ctx = Context(sensors={"n1": Sensor(id="n1", kind=SensorKind.NOISE)})
    batch = Batch(["n1", "zz"], ["noise", "pm25"], np.full(2, T0), np.array([60.0, 10.0]))
    assert stage.process(batch, ctx).signals == []
    x = gauges(300, 2, seed=3)
    run(stage, x, context(2))
    copy = DeviceStage()
    copy.set_state(decode_state(encode_state(stage.get_state())))
    more = gauges(50, 2, seed=4)
    a = run(stage, more, context(2), start=300)
    b = run(copy, more, context(2), start=300)
    assert [(s.sensor, s.time, s.score) for s in a] == [(s.sensor, s.time, s.score) for s in b]


def test_a_device_alert_reads_well_in_both_languages() -> None:
    x = gauges(900, 2, break_at=700)
    signals = run(DeviceStage(), x, context(2))
    sig = next(s for s in signals if s.active and s.sensor == "wl0" and s.time >= T0 + 42_000)
    alert = {
        "rule": sig.rule,
        "sensor": sig.sensor,
        "area": "",
        "metric": sig.metric,
        "score": sig.score,
        "severity": str(sig.severity),
        "evidence": sig.evidence,
    }
    vi, en = alert_text.render(alert, "vi"), alert_text.render(alert, "en")
    assert "mực nước, lượng mưa" in vi and "không còn biến đổi cùng nhau" in vi
    assert "water level, rainfall" in en and "no longer move together" in en
