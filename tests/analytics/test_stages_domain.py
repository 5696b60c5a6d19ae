"""The domain stages in a stream: buckets, AQI and fire-risk stages, settings."""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from analytics.engine.base import Batch, Context, Signal, StageOutput
from analytics.engine.buckets import Buckets
from analytics.service.checkpoint import decode_state, encode_state
from analytics.stages import aqi
from analytics.stages.aqi_stage import AqiStage
from analytics.stages.camera_stage import CameraStage
from analytics.stages.domain import DomainSettings, build_domain_stages
from analytics.stages.fire_stage import FireRiskStage
from core.types import DISPLAY_TZ, AlertClass, Sensor, SensorKind, Severity

H = 3600.0
DAY = 86_400.0
# Sunday 22 November 2026, 00:00 in Hanoi
T0 = datetime(2026, 11, 22, tzinfo=DISPLAY_TZ).timestamp()

Row = tuple[float, str, str, float]


def batch(rows: Iterable[Row]) -> Batch:
    rows = sorted(rows)
    return Batch(
        sensor=[r[1] for r in rows],
        metric=[r[2] for r in rows],
        time=np.array([r[0] for r in rows], dtype=np.float64),
        value=np.array([r[3] for r in rows], dtype=np.float64),
    )


def derived(out: StageOutput, metric: str) -> list[tuple[float, str, float]]:
    return [(r.time.timestamp(), r.sensor, r.value) for r in out.derived if r.metric == metric]


# ---------------------------------------------------------------------------
# buckets


def test_buckets_close_when_a_later_bucket_starts_and_drop_late_readings() -> None:
    b = Buckets(2)
    st = np.array([0, 0, 1, 0], dtype=np.int64)
    closed, late = b.add(
        st, np.array([5, 5, 7, 6]), np.array([0, 1, 0, 0]), np.array([1.0, 2.0, 3.0, 4.0])
    )
    assert late == 0
    assert closed.station.tolist() == [0] and closed.bucket.tolist() == [5]
    np.testing.assert_allclose(closed.means(), [[1.0, 2.0]])
    # the open buckets carry over: station 0 bucket 6 gets another reading, station 1 moves on
    closed, late = b.add(
        np.array([0, 1, 0], dtype=np.int64),
        np.array([6, 9, 4]),
        np.array([0, 1, 0]),
        np.array([6.0, 9.0, 0.0]),
    )
    assert late == 1  # bucket 4 of station 0 is behind its open bucket 6
    assert closed.station.tolist() == [1] and closed.bucket.tolist() == [7]
    closed = b.close_before(100)
    assert closed.station.tolist() == [0, 1] and closed.bucket.tolist() == [6, 9]
    np.testing.assert_allclose(closed.means()[0], [5.0, np.nan])
    _, late = b.add(np.array([0], dtype=np.int64), np.array([6]), np.array([1]), np.array([1.0]))
    assert late == 1  # bucket 6 was closed by the clock


def test_buckets_spanning_several_buckets_in_one_batch() -> None:
    b = Buckets(1)
    st = np.zeros(6, dtype=np.int64)
    closed, _ = b.add(st, np.array([1, 1, 2, 3, 3, 4]), np.zeros(6, np.int64), np.arange(6.0))
    assert closed.bucket.tolist() == [1, 2, 3]
    assert closed.means()[:, 0].tolist() == [0.5, 2.0, 3.5]
    assert b.open[0] == 4


# ---------------------------------------------------------------------------
# AQI stage


def hourly(sensor: str, start: float, hours: int, **values: float | list[float]) -> list[Row]:
    """Two readings per hour (at :10 and :40) of each pollutant."""
    rows = []
    for k in range(hours):
        for name, v in values.items():
            x = v[k] if isinstance(v, list) else v
            rows += [
                (start + k * H + 600, sensor, name, x),
                (start + k * H + 2400, sensor, name, x),
            ]
    return rows


def test_hourly_indices_are_emitted_when_the_hour_completes() -> None:
    stage = AqiStage()
    ctx = Context()
    out = stage.process(batch(hourly("aq-1", T0, 3, pm25=30.0, no2=50.0)), ctx)
    # hours 0 and 1 are complete (a later hour started), hour 2 is still open; hour 0
    # has no NowCast (it needs 2 of the 3 latest hours), hour 1 has: 30 µg/m³ -> 60
    assert derived(out, "aqi_vn") == [(T0 + H, "aq-1", 60.0)]
    us_pm = float(aqi.round_half_up(aqi.US_TABLES["pm25"].index(30.0)))
    # neither has the US index for hour 0: NO2 alone would understate a station measuring PM
    assert derived(out, "aqi_us") == [(T0 + H, "aq-1", us_pm)]
    # a quiet station's hour closes on the clock after the grace period
    assert stage.tick(T0 + 3 * H + 899, ctx).derived == []
    assert derived(stage.tick(T0 + 3 * H + 900, ctx), "aqi_vn") == [(T0 + 2 * H, "aq-1", 60.0)]
    assert stage.process(batch([(T0 + 2 * H + 5, "aq-1", "pm25", 99.0)]), ctx).derived == []
    assert stage.late_readings == 1


def test_streamed_nowcast_with_missing_hours_matches_the_formula() -> None:
    stage = AqiStage()
    values = [20.0, 35.0, 50.0, 80.0, 60.0, 40.0, 55.0, 70.0, 90.0, 65.0, 45.0, 30.0, 25.0]
    rows = [
        r
        for k, v in enumerate(values)
        if k not in (9, 10)
        for r in hourly("aq-1", T0 + k * H, 1, pm25=v)
    ]
    out = stage.process(batch(rows), Context())
    got = dict((t, v) for t, _, v in derived(out, "aqi_vn"))
    # hour 11: c1 = 30, c2 and c3 missing -> no NowCast, so no VN_AQI that hour
    assert T0 + 11 * H not in got
    window = np.array([[values[k] if k not in (9, 10) else np.nan for k in range(11, -1, -1)]])
    assert np.isnan(aqi.nowcast(window)[0])
    # hour 8 (c1 = 90, complete history) matches the NowCast formula
    w8 = np.array([values[8::-1] + [np.nan] * 3])
    expected = aqi.round_half_up(aqi.VN_TABLES["pm25"].index(aqi.nowcast(w8)))[0]
    assert got[T0 + 8 * H] == expected
    assert sorted(got) == [T0 + k * H for k in range(1, 9)]  # hour 0: 1 of 3; 9-10: no data


def test_daily_index_at_the_end_of_the_local_day() -> None:
    stage = AqiStage()
    ctx = Context()
    rows = hourly("aq-1", T0, 24, pm25=55.7, no2=[130.8] + [60.0] * 23)
    out = stage.process(batch(rows), ctx)
    assert derived(out, "aqi_vn_daily") == []  # 23:00-24:00 is still open
    out = stage.tick(T0 + DAY + 900, ctx)
    assert derived(out, "aqi_vn_daily") == [(T0, "aq-1", 110.0)]  # decision example 2.3.c values
    assert datetime.fromtimestamp(T0, UTC).hour == 17  # local midnight is 17:00 UTC
    # a station that stops before 23:00 gets its daily index when its next day starts
    stage2 = AqiStage()
    stage2.process(batch(hourly("aq-2", T0, 20, pm25=30.0)), ctx)
    out = stage2.process(batch(hourly("aq-2", T0 + DAY + 5 * H, 2, pm25=30.0)), ctx)
    assert derived(out, "aqi_vn_daily") == [(T0, "aq-2", 60.0)]
    # too few hours (fewer than 18) -> no daily index
    stage3 = AqiStage()
    out = stage3.process(batch(hourly("aq-3", T0 + 8 * H, 17, pm25=30.0)), ctx)
    out.extend(stage3.tick(T0 + 2 * DAY, ctx))
    assert derived(out, "aqi_vn_daily") == []


def run_aqi(
    stage: AqiStage, pm25: list[float], sensor: str = "aq-1", ctx: Context | None = None
) -> list[Signal]:
    """Feed one PM2.5 value per hour, steady over each hour; return the signals."""
    rows = hourly(sensor, T0, len(pm25), pm25=pm25)
    out = stage.process(batch(rows), ctx or Context())
    out.extend(stage.tick(T0 + len(pm25) * H + 3600, ctx or Context()))
    return out.signals


def aqi_series(stage: AqiStage, pm25: list[float]) -> tuple[list[int], list[tuple[bool, str, int]]]:
    """Hourly VN_AQI values and (active, severity, hour) of the signals for hourly PM2.5 means."""
    ctx = Context()
    out = stage.process(batch(hourly("aq-1", T0, len(pm25), pm25=pm25)), ctx)
    out.extend(stage.tick(T0 + len(pm25) * H + 3600, ctx))
    values = [int(v) for _, _, v in derived(out, "aqi_vn")]
    return values, [(s.active, s.severity.value, round((s.time - T0) / H)) for s in out.signals]


def test_category_signals_escalate_at_once_and_clear_with_hysteresis() -> None:
    conc = [40.0] * 3 + [85.0] * 4 + [220.0] * 4 + [85.0] * 8 + [30.0] * 12
    values, seen = aqi_series(AqiStage(), conc)
    # hour by hour from hour 1 (NowCast): 80 80 123 141 150 152 202 236 253 261 199 176 165 ...
    assert values[5:13] == [152, 202, 236, 253, 261, 199, 176, 165]
    assert seen == [
        (True, "warning", 6),  # 152: Unhealthy, at once
        (True, "critical", 7),  # 202: Very unhealthy, at once
        (True, "warning", 13),  # 199 is not 10 below 201; 176 and 165 are: two calm hours
        (False, "info", 20),  # 113 and 88 are at least 10 below 151: cleared
    ]
    signals = run_aqi(AqiStage(), conc)
    first = signals[0]
    assert first.rule == "aqi_vn.category" and first.metric == "aqi_vn"
    assert first.alert_class == AlertClass.THRESHOLD and first.value == 152
    assert first.expected_high == 150
    assert "Unhealthy (Xấu)" in first.message and "PM2.5" in first.message, first.message
    assert "NowCast" in first.message
    assert first.evidence["colour"] == "#ff0000" and first.evidence["dominant"] == "pm25"
    assert "aqi_us" in first.evidence


def test_an_index_hovering_at_the_band_edge_does_not_flap() -> None:
    hover = [80.0] * 12 + [74.0, 90.0] * 6
    values, seen = aqi_series(AqiStage(), hover + [80.0] * 4)
    after_open = values[12:]
    assert after_open.count(149) + after_open.count(150) >= 3  # it dips below 151 again and again
    assert seen == [(True, "warning", 13)]  # one alert, no flapping
    values, seen = aqi_series(AqiStage(), hover + [55.0] * 10)
    assert values[22:25] == [152, 138, 126]
    assert seen == [(True, "warning", 13), (False, "info", 25)]  # two hours at or below 141


def test_info_level_when_configured() -> None:
    signals = run_aqi(AqiStage(alert_from=101), [40.0] * 2 + [65.0] * 6 + [20.0] * 12)
    assert [(s.active, s.severity) for s in signals] == [
        (True, Severity.INFO),
        (False, Severity.INFO),
    ]
    with pytest.raises(ValueError, match="alert_from"):
        AqiStage(alert_from=120)


def test_aqi_checkpoint_round_trip() -> None:
    conc = [40.0] * 3 + [85.0] * 6 + [30.0] * 8
    a = AqiStage()
    ctx = Context()
    rows = hourly("aq-1", T0, len(conc), pm25=conc)
    half = [r for r in rows if r[0] < T0 + 8 * H + 1200]
    rest = [r for r in rows if r[0] >= T0 + 8 * H + 1200]
    a.process(batch(half), ctx)
    b = AqiStage()
    b.set_state(decode_state(encode_state(a.get_state())))
    oa, ob = a.process(batch(rest), ctx), b.process(batch(rest), ctx)
    assert [(r.time, r.sensor, r.metric, r.value) for r in oa.derived] == [
        (r.time, r.sensor, r.metric, r.value) for r in ob.derived
    ]
    assert [(s.active, s.severity, s.time) for s in oa.signals] == [
        (s.active, s.severity, s.time) for s in ob.signals
    ]
    assert [s.active for s in ob.signals] == [False]  # the alert opened before the checkpoint


# ---------------------------------------------------------------------------
# fire-risk stage


def weather(
    sensor: str, day0: float, days: int, *, t: float, rh: float, wind: float, rain: float
) -> list[Row]:
    """Hourly weather for ``days`` days; rain falls at 03:00 local."""
    rows: list[Row] = []
    for k in range(days * 24):
        ts = day0 + k * H
        hour = k % 24
        warm = t if hour == 13 else t - 8
        rows += [
            (ts, sensor, "temperature", warm),
            (ts, sensor, "humidity", rh if hour == 13 else min(rh + 30, 100)),
            (ts, sensor, "wind_speed", wind),
            (ts, sensor, "rainfall", rain if hour == 3 else 0.0),
        ]
    return rows


HILLS = Context(
    sensors={
        "ws-socson-1": Sensor(
            id="ws-socson-1", kind=SensorKind.WEATHER, name="Sóc Sơn forest", area="Sóc Sơn"
        ),
        "ws-bavi-1": Sensor(id="ws-bavi-1", kind=SensorKind.WEATHER, area="Huyện Ba Vì"),
        "ws-hk-1": Sensor(id="ws-hk-1", kind=SensorKind.WEATHER, area="Hoàn Kiếm"),
        "aq-socson": Sensor(id="aq-socson", kind=SensorKind.AIR_QUALITY, area="Sóc Sơn"),
        "ws-park": Sensor(
            id="ws-park", kind=SensorKind.WEATHER, area="Tây Hồ", attributes={"fire_watch": True}
        ),
    }
)


def test_only_the_hill_stations_are_rated() -> None:
    stage = FireRiskStage()
    assert [stage.watches(s, HILLS) for s in HILLS.sensors] == [True, True, False, False, True]
    assert not stage.watches("unknown", HILLS)
    rows = [
        r for s in HILLS.sensors for r in weather(s, T0, 3, t=34.0, rh=35.0, wind=2.0, rain=0.0)
    ]
    out = stage.process(batch(rows), HILLS)
    assert sorted({s for _, s, _ in derived(out, "fire_risk")}) == [
        "ws-bavi-1",
        "ws-park",
        "ws-socson-1",
    ]
    assert FireRiskStage(areas=None).watches("ws-hk-1", HILLS)
    assert FireRiskStage(stations=["ws-hk-1"]).watches("ws-hk-1", Context())


def test_a_hot_dry_windy_week_raises_warnings_then_a_critical_and_rain_clears_them() -> None:
    stage = FireRiskStage()
    dry = weather("ws-socson-1", T0, 8, t=35.0, rh=35.0, wind=6.0, rain=0.0)
    out = stage.process(batch(dry), HILLS)
    risks = derived(out, "fire_risk")
    # one value per fire-weather day (13:30 to 13:30), stamped 13:00 local; day 8 is still open
    assert [datetime.fromtimestamp(t, DISPLAY_TZ).hour for t, _, _ in risks] == [13] * 8
    values = [v for _, _, v in risks]
    assert values == sorted(values) and values[-1] > 80
    assert [(s.active, s.severity) for s in out.signals] == [
        (True, Severity.WARNING),
        (True, Severity.CRITICAL),
    ]
    warn, crit = out.signals
    assert warn.rule == "fire_risk.level" and warn.metric == "fire_risk"
    assert (
        "level IV (high)" in warn.message and "dry days" in warn.message and "wind" in warn.message
    )
    assert crit.evidence["level"] == "V" and crit.evidence["wind_raised_level"] is True
    assert crit.evidence["dry_days"] >= 4 and crit.evidence["p"] > 5000
    rain = weather("ws-socson-1", T0 + 8 * DAY, 2, t=27.0, rh=85.0, wind=3.0, rain=15.0)
    out = stage.process(batch(rain), HILLS)
    assert [s.active for s in out.signals] == [False]
    assert "down to level I" in out.signals[0].message
    assert all(v == 0.0 for _, _, v in derived(out, "fire_risk"))


def test_a_rainy_week_stays_at_level_one() -> None:
    stage = FireRiskStage()
    out = stage.process(
        batch(weather("ws-bavi-1", T0, 7, t=28.0, rh=80.0, wind=8.0, rain=12.0)), HILLS
    )
    out.extend(stage.tick(T0 + 10 * DAY, HILLS))
    assert [v for _, _, v in derived(out, "fire_risk")] == [0.0] * 7
    assert out.signals == []


def test_fire_checkpoint_round_trip_and_tick() -> None:
    a = FireRiskStage(method="nesterov", wind_boost_ms=None)
    a.process(batch(weather("ws-bavi-1", T0, 3, t=33.0, rh=30.0, wind=1.0, rain=0.0)), HILLS)
    b = FireRiskStage(method="nesterov", wind_boost_ms=None)
    b.set_state(decode_state(encode_state(a.get_state())))
    noon = T0 + 5 * DAY + 13 * H  # the 13:00 observation of the day still open
    more = batch(
        [
            *weather("ws-bavi-1", T0 + 3 * DAY, 2, t=33.0, rh=30.0, wind=1.0, rain=0.0),
            (noon, "ws-bavi-1", "temperature", 33.0),
            (noon, "ws-bavi-1", "humidity", 30.0),
        ]
    )
    oa, ob = a.process(more, HILLS), b.process(more, HILLS)
    assert derived(oa, "fire_risk") == derived(ob, "fire_risk") != []
    # the open day closes on the clock an hour (grace) after 13:30
    last_day_end = T0 + 5 * DAY + 13.5 * H
    assert a.tick(last_day_end + 3599, HILLS).derived == []
    assert len(a.tick(last_day_end + 3600, HILLS).derived) == 1


# ---------------------------------------------------------------------------
# settings


def test_settings_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IOC_AQI_ALERT_FROM", "101")
    monkeypatch.setenv("IOC_FIRE_AREAS", "*")
    monkeypatch.setenv("IOC_FIRE_WIND_BOOST_MS", "0")
    monkeypatch.setenv("IOC_CAMERA_WINDOW_S", "600")
    monkeypatch.setenv("IOC_CAMERA_SEED", "7")
    s = DomainSettings()
    aqi_stage, fire_stage, camera_stage = build_domain_stages(s)
    assert isinstance(aqi_stage, AqiStage) and aqi_stage.alert_from == 101
    assert isinstance(fire_stage, FireRiskStage) and fire_stage.areas is None
    assert fire_stage.wind_boost_ms is None
    assert isinstance(camera_stage, CameraStage)
    assert camera_stage.window_s == 600 and camera_stage.seed == 7
    monkeypatch.setenv("IOC_CAMERA_WINDOW_S", "420")
    with pytest.raises(ValueError, match="CAMERA_WINDOW_S"):
        DomainSettings()


def test_stages_ignore_what_is_not_theirs() -> None:
    rows: list[Any] = [(T0, "x", "water_level", 10.0), (T0, "x", "noise", 60.0)]
    for stage in build_domain_stages(DomainSettings()):
        out = stage.process(batch(rows), Context())
        assert out.derived == [] and out.signals == []
        assert stage.get_state()["names"] == []


def _stream_rows() -> Batch:
    rng = np.random.default_rng(4)
    rows = [
        (T0 + k * 600.0 + rng.uniform(0, 500), f"aq-{s}", p, float(rng.uniform(5, 150)))
        for k in range(6 * 14)
        for s in range(3)
        for p in ("pm25", "pm10", "no2")
        if rng.random() > 0.1
    ]
    return batch(rows)


STREAM = _stream_rows()
STREAM_OUT = AqiStage().process(STREAM, Context())


@settings(max_examples=15, deadline=None)
@given(st.lists(st.integers(min_value=1, max_value=250), min_size=1, max_size=10))
def test_micro_batch_boundaries_do_not_change_the_aqi_output(cuts: list[int]) -> None:
    whole, one = STREAM, STREAM_OUT
    ctx = Context()
    split, stage = StageOutput(), AqiStage()
    edges = sorted({min(c * 3, len(whole)) for c in cuts} | {0, len(whole)})
    for a, b in itertools.pairwise(edges):
        part = Batch(whole.sensor[a:b], whole.metric[a:b], whole.time[a:b], whole.value[a:b])
        split.extend(stage.process(part, ctx))
    key = [(r.time, r.sensor, r.metric, r.value) for r in one.derived]
    assert sorted(key) == sorted((r.time, r.sensor, r.metric, r.value) for r in split.derived)
    assert sorted((s.sensor, s.time, s.active, s.severity) for s in one.signals) == sorted(
        (s.sensor, s.time, s.active, s.severity) for s in split.signals
    )
    assert len(key) > 50 and len(one.signals) > 3
