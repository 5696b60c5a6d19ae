"""The forecast stage: predictive warnings on generated series, and through the engine."""

from __future__ import annotations

import math

import numpy as np
import pytest

from analytics.alerts.hazards import hazard_of
from analytics.engine.base import Batch, Context, Signal
from analytics.engine.pipeline import Pipeline
from analytics.stages import forecast as fc
from analytics.stages.forecast_stage import ForecastStage, minutes_text
from analytics.stages.rules_stage import RulesStage
from core import alert_text
from core.types import AlertClass, Sensor, SensorKind, Severity

T0 = 1_796_256_000.0  # 2026-12-03 00:00 UTC, 07:00 in Hanoi
AQ = Sensor(id="aq-1", kind=SensorKind.AIR_QUALITY, name="Trạm Láng", area="Đống Đa")
WL = Sensor(
    id="wl-1", kind=SensorKind.WATER_LEVEL, name="Trần Duy Hưng", attributes={"site_type": "street"}
)


def _ctx() -> Context:
    return Context(sensors={"aq-1": AQ, "wl-1": WL})


def run(
    stages: list[object],
    sensor: str,
    metric: str,
    times: np.ndarray,
    values: np.ndarray,
    rain: np.ndarray | None = None,
) -> list[Signal]:
    """Feed a series through a pipeline of ``stages``, one reading (and its rain) per batch."""
    pipe = Pipeline(stages, ctx=_ctx())  # type: ignore[arg-type]
    out: list[Signal] = []
    for i, (t, x) in enumerate(zip(times, values, strict=True)):
        sensors, metrics, ts, xs = [sensor], [metric], [t], [x]
        if rain is not None:
            sensors.append(sensor)
            metrics.append("rainfall")
            ts.append(t)
            xs.append(rain[i])
        out.extend(pipe.process(Batch(sensors, metrics, np.array(ts), np.array(xs))).signals)
    return out


def forecasts(signals: list[Signal]) -> list[Signal]:
    return [s for s in signals if s.detector == "forecast"]


def first_on(signals: list[Signal]) -> Signal | None:
    return next((s for s in forecasts(signals) if s.active), None)


def pm25_ramp(rate_per_h: float, *, start: float = 100.0, hours: float = 4.0, seed: int = 1):
    rng = np.random.default_rng(seed)
    t = T0 + np.arange(0.0, hours * 3600.0, 120.0)
    x = start + rate_per_h * np.maximum(t - T0 - 1800.0, 0.0) / 3600.0 + rng.normal(0, 1.5, t.size)
    return t, x


def test_a_rising_series_warns_ahead_with_the_right_estimate() -> None:
    t, x = pm25_ramp(30.0)  # 100 → 150 µg/m³ at 30 µg/m³ per hour: crosses 2 h after the rise
    signals = run([ForecastStage()], "aq-1", "pm25", t, x)
    on = first_on(signals)
    assert on is not None
    crossing = t[np.argmax(x >= 150.0)]
    lead_min = (crossing - on.time) / 60.0
    assert 30.0 <= lead_min <= 90.0, lead_min
    assert on.rule == "forecast.pm25.warning" and on.severity is Severity.WARNING
    assert on.alert_class is AlertClass.THRESHOLD
    # the estimate agrees with the actual crossing within 15 minutes
    assert abs(on.evidence["eta_s"] / 60.0 - lead_min) <= 15.0, (on.evidence, lead_min)
    assert on.evidence["level_value"] == 150.0 and on.evidence["slope_per_h"] > 20.0
    assert "expected to reach the warning level 150" in on.message
    # it clears once the crossing has happened (the threshold alert takes over)
    off = [s for s in forecasts(signals) if not s.active and s.rule == on.rule]
    assert off and off[0].time >= crossing
    assert off[0].time - crossing <= 600.0


@pytest.mark.parametrize("seed", range(5))
def test_noise_does_not_warn(seed: int) -> None:
    rng = np.random.default_rng(seed)
    t = T0 + np.arange(0.0, 12 * 3600.0, 120.0)
    x = 130.0 + rng.normal(0, 4.0, t.size)  # close to the level, noisy, no trend
    assert first_on(run([ForecastStage()], "aq-1", "pm25", t, x)) is None


def test_a_falling_series_and_a_value_already_above_do_not_warn() -> None:
    t, x = pm25_ramp(-30.0, start=149.0)
    assert first_on(run([ForecastStage()], "aq-1", "pm25", t, x)) is None
    t, x = pm25_ramp(30.0, start=160.0, hours=2.0)  # above warning; critical 250 is far
    assert first_on(run([ForecastStage()], "aq-1", "pm25", t, x)) is None


def daily_rhythm(days: int) -> tuple[np.ndarray, np.ndarray]:
    """PM2.5 with an evening rise of 60 µg/m³ (17-19 h in Hanoi) that goes back down by 23 h."""
    t = T0 + np.arange(0.0, days * 86_400.0, 120.0)
    h = ((t + 7 * 3600) % 86_400) / 3600.0
    bump = np.interp(h, [0, 17, 19, 21, 23, 24], [0, 0, 60, 60, 0, 0])
    x = 95.0 + bump + np.random.default_rng(3).normal(0, 1.5, t.size)
    return t, x


def test_a_rise_the_daily_profile_explains_does_not_warn() -> None:
    t, x = daily_rhythm(5)
    signals = run([ForecastStage()], "aq-1", "pm25", t, x)
    last_days = [s for s in forecasts(signals) if s.active and s.time >= T0 + 3 * 86_400]
    assert last_days == []
    # the same evening seen without a profile looks like a rise towards 150 (the check can fail)
    evening = t >= t[-1] - 86_400
    assert first_on(run([ForecastStage()], "aq-1", "pm25", t[evening], x[evening])) is not None


def test_a_reversing_trend_clears_the_warning() -> None:
    t = T0 + np.arange(0.0, 4 * 3600.0, 120.0)
    rise = np.minimum(t - T0, 5400.0) / 3600.0 * 30.0  # rises for 90 min to 145, then falls
    fall = np.maximum(t - T0 - 5400.0, 0.0) / 3600.0 * 40.0
    x = 100.0 + rise - fall + np.random.default_rng(2).normal(0, 1.0, t.size)
    signals = forecasts(run([ForecastStage()], "aq-1", "pm25", t, x))
    assert signals and signals[0].active
    assert not signals[-1].active and signals[-1].time < T0 + 5400.0 + 1800.0
    assert (x < 150.0).all()


def test_rain_on_a_street_warns_before_the_water_rises() -> None:
    """A storm of 70 mm/h: the street fills about 25 minutes after it begins."""
    t = T0 + np.arange(0.0, 3 * 3600.0, 60.0)
    intensity = np.clip((t - T0 - 3600.0) / 900.0, 0.0, 1.0) * 70.0  # mm/h, from 1 h
    rain_mm = intensity / 60.0
    stored = np.zeros(t.size)
    for i in range(1, t.size):
        stored[i] = stored[i - 1] * math.exp(-60.0 / 2700.0) + rain_mm[i]
    level = np.maximum(1.3 * (stored - 16.0), 0.0) + np.random.default_rng(4).normal(0, 0.3, t.size)
    level = np.maximum(level, 0.0)
    signals = run([RulesStage(), ForecastStage()], "wl-1", "water_level", t, level, rain_mm)
    on = first_on(signals)
    crossing = t[np.argmax(level >= 20.0)]
    assert on is not None and on.time < crossing
    assert level[t == on.time][0] < 5.0  # before the water showed it
    assert on.evidence["rain_mm_h"] > 20.0
    threshold = next(s for s in signals if s.detector == "rules" and s.severity is Severity.WARNING)
    assert threshold.time >= crossing
    # the same hazard: the correlator groups the forecast with the threshold alert
    assert hazard_of({"metric": on.metric, "rule": on.rule, "alert_class": "threshold"}) == (
        hazard_of({"metric": threshold.metric, "rule": threshold.rule})
    )
    assert hazard_of({"metric": on.metric, "rule": on.rule}) == "flooding"
    alert = {
        "sensor": "wl-1",
        "metric": on.metric,
        "rule": on.rule,
        "detector": on.detector,
        "value": on.value,
        "severity": "warning",
        "evidence": on.evidence,
    }
    vi = alert_text.render(alert, "vi", WL.name)
    en = alert_text.render(alert, "en", WL.name)
    assert "dự kiến đạt ngưỡng cảnh báo 20 cm trong khoảng" in vi and "phút" in vi
    assert "expected to reach the warning level 20 cm in about" in en


def test_dry_weather_on_a_street_does_not_warn() -> None:
    t = T0 + np.arange(0.0, 6 * 3600.0, 60.0)
    level = np.maximum(np.random.default_rng(5).normal(0.3, 0.3, t.size), 0.0)
    assert first_on(run([ForecastStage()], "wl-1", "water_level", t, level, 0 * t)) is None


def test_state_survives_a_checkpoint() -> None:
    t, x = pm25_ramp(30.0)
    half = t.size // 2
    a = ForecastStage()
    run([a], "aq-1", "pm25", t[:half], x[:half])
    b = ForecastStage()
    b.set_state(a.get_state())
    late = forecasts(run([b], "aq-1", "pm25", t[half:], x[half:]))
    whole = forecasts(run([ForecastStage()], "aq-1", "pm25", t, x))
    key = [(s.time, s.rule, s.active, s.evidence.get("eta_s")) for s in late]
    assert key and key == [
        (s.time, s.rule, s.active, s.evidence.get("eta_s")) for s in whole if s.time >= t[half]
    ]


def test_crossing_and_trend_helpers() -> None:
    lead = np.arange(0.0, 5401.0, 300.0)
    proj = np.array([10.0 + lead / 60.0, 10.0 + 0 * lead])  # 1 unit a minute; flat
    eta = fc.crossing(proj, np.array([20.0, 20.0]), lead)
    assert eta[0] == pytest.approx(600.0) and math.isinf(eta[1])
    tt = T0 + np.arange(20.0) * 60.0
    tr = fc.fit_trend(tt[None, :], (5.0 + 0.1 * np.arange(20.0))[None, :], tt[-1:])
    assert tr.slope[0] == pytest.approx(0.1 / 60.0) and tr.now[0] == pytest.approx(6.9)
    assert minutes_text(1000.0) == 15 and minutes_text(10.0) == 5
