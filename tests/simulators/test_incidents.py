"""Each injected incident moves the right sensors the right way, and is in the ground truth."""

from __future__ import annotations

import numpy as np
import pytest

from simulators.engine import Engine
from tests.simulators.util import Series, engine, hanoi, run, series

T0 = hanoi("2026-11-23T08:00")  # a Monday morning
COUNTS = {"traffic_camera": 20, "air_quality": 14, "water_level": 19, "weather": 10, "noise": 0}
CAMERAS = {**COUNTS, "traffic_camera": 300}


def _pair(
    scenario: str, until: float = T0 + 5400, counts: dict[str, int] = COUNTS
) -> tuple[Series, Series, Engine]:
    """Readings with the scenario, the same city without it, and the scenario's engine."""
    eng = engine(T0, seed=21, counts=counts, scenario=scenario)
    with_ = series(run(eng, T0, until))
    without = series(run(engine(T0, seed=21, counts=counts), T0, until))
    return with_, without, eng


def _mean(s: Series, sensor: str, metric: str, t0: float, t1: float) -> float:
    t, v = s[(sensor, metric)]
    return float(v[(t >= t0) & (t < t1)].mean())


def _camera_with_upstream(hops: int) -> str:
    eng = engine(T0, counts=CAMERAS)
    cams = eng.models["traffic_camera"]
    for i in range(len(cams.sensors)):
        if len(cams.upstream(i, hops)) == hops:  # type: ignore[attr-defined]
            return cams.sensors.ids[i]
    raise AssertionError("no camera with upstream neighbours")


def test_traffic_incident_slows_the_camera_and_spreads_upstream() -> None:
    cam = _camera_with_upstream(2)
    with_, without, eng = _pair(
        f"""
incidents:
  - kind: traffic_incident
    sensor: {cam}
    at: +20m
    duration: 40m
    severity: 0.9
    spread: 2
    spread_delay: 5m
""",
        until=T0 + 3600,
        counts=CAMERAS,
    )
    [inc] = eng.new_incidents(T0 + 3600)
    truth = inc.truth(eng.seed)
    assert truth["kind"] == "traffic_incident" and truth["sensors"][0] == cam
    assert len(truth["sensors"]) == 3
    assert truth["expected"] == {"occupancy": "up", "queue_length": "up", "speed": "down"}
    a, b = T0 + 30 * 60, T0 + 55 * 60  # full effect
    assert _mean(with_, cam, "speed", a, b) < 0.4 * _mean(without, cam, "speed", a, b)
    assert _mean(with_, cam, "occupancy", a, b) > _mean(without, cam, "occupancy", a, b) + 20
    assert _mean(with_, cam, "queue_length", a, b) > _mean(without, cam, "queue_length", a, b) + 300
    up1 = truth["sensors"][1]
    assert truth["onsets"][up1] > truth["onsets"][cam]  # the queue reaches it later
    assert _mean(with_, up1, "speed", a + 600, b) < 0.6 * _mean(without, up1, "speed", a + 600, b)
    # before the incident and for cameras it does not touch, nothing changes
    assert np.array_equal(with_[(cam, "speed")][1][:15], without[(cam, "speed")][1][:15])
    other = next(
        s for (s, m) in with_ if m == "speed" and s.startswith("cam") and s not in truth["sensors"]
    )
    assert np.array_equal(with_[(other, "speed")][1], without[(other, "speed")][1])


def test_pollution_episode_raises_pm25_at_several_stations_over_hours() -> None:
    with_, without, eng = _pair(
        """
incidents:
  - kind: pollution_episode
    near: [21.0285, 105.8542]
    radius_km: 5
    at: +10m
    duration: 6h
    rise: 1h
    factor: 3
"""
    )
    [inc] = eng.new_incidents(T0 + 5400)
    assert len(inc.sensors) >= 4 and inc.metrics == {"pm25": "up", "pm10": "up"}
    a, b = T0 + 75 * 60, T0 + 90 * 60
    for s in inc.sensors:
        assert _mean(with_, s, "pm25", a, b) > 1.8 * _mean(without, s, "pm25", a, b), s
    # it rises over the hour, not at once
    first = inc.sensors[0]
    assert _mean(with_, first, "pm25", T0 + 15 * 60, T0 + 25 * 60) < _mean(
        with_, first, "pm25", a, b
    )
    far = [s for (s, m) in with_ if m == "pm25" and s not in inc.sensors]
    assert far and all(np.array_equal(with_[(s, "pm25")][1], without[(s, "pm25")][1]) for s in far)


def test_flash_flood_raises_water_fast_after_heavy_rain() -> None:
    with_, without, eng = _pair(
        """
incidents:
  - kind: flash_flood
    near: [21.0275, 105.8420]
    radius_km: 1.5
    at: +15m
    duration: 60m
    rain_mm_h: 80
"""
    )
    [inc] = eng.new_incidents(T0 + 5400)
    gauges = inc.sensors
    assert gauges and inc.metrics == {"rainfall": "up", "water_level": "up"}
    truth = inc.truth(eng.seed)
    assert truth["end"] > truth["full_effect_from"]
    a, b = T0 + 35 * 60, T0 + 60 * 60  # full storm
    for g in gauges:  # the edge of the storm gets less rain
        assert _mean(with_, g, "rainfall", a, b) > 0.4  # mm per minute
        assert _mean(with_, g, "water_level", a, b) > _mean(without, g, "water_level", a, b) + 10
    assert "wl-00001" in gauges  # Nguyễn Khuyến, at the storm's centre
    assert _mean(with_, "wl-00001", "rainfall", a, b) > 1.2  # 80 mm/h = 1.33 mm a minute
    t, v = with_[("wl-00001", "water_level")]
    rise = v[(t >= T0 + 15 * 60) & (t < T0 + 60 * 60)]
    assert rise[-1] - rise[0] > 20  # tens of cm within the storm's first three quarters of an hour


def test_fire_weather_makes_the_hills_hot_dry_and_windy() -> None:
    with_, without, eng = _pair(
        """
incidents:
  - kind: fire_weather
    area: Sóc Sơn
    at: +0m
    duration: 3h
    ramp: 30m
"""
    )
    [inc] = eng.new_incidents(T0 + 5400)
    table = eng.models["weather"].sensors
    soc_son = [s for s, a in zip(table.ids, table.areas, strict=True) if a == "Sóc Sơn"]
    ba_vi = [s for s, a in zip(table.ids, table.areas, strict=True) if a == "Ba Vì"]
    assert sorted(inc.sensors) == sorted(soc_son)
    a, b = T0 + 40 * 60, T0 + 90 * 60
    for s in soc_son:
        assert _mean(with_, s, "temperature", a, b) > _mean(without, s, "temperature", a, b) + 6
        assert _mean(with_, s, "humidity", a, b) < _mean(without, s, "humidity", a, b) - 25
        assert _mean(with_, s, "wind_speed", a, b) > _mean(without, s, "wind_speed", a, b) + 3
    for s in ba_vi:
        assert np.array_equal(with_[(s, "temperature")][1], without[(s, "temperature")][1])


FAULTS = """
incidents:
  - {kind: sensor_fault, fault: stuck, sensor: aq-00002, metric: pm25, at: +10m, duration: 30m}
  - {kind: sensor_fault, fault: spike, sensor: aq-00003, metric: pm25, at: +10m, duration: 2m, magnitude: 700}
  - {kind: sensor_fault, fault: drift, sensor: aq-00004, metric: no2, at: +10m, duration: 60m, magnitude: 30}
  - {kind: sensor_fault, fault: offset, sensor: wl-00013, metric: water_level, at: +10m, duration: 60m, magnitude: -50}
  - {kind: sensor_fault, fault: dropout, sensor: cam-00005, at: +10m, duration: 20m}
  - {kind: sensor_fault, fault: offline, sensor: cam-00006, at: +10m, duration: 20m}
"""


def test_sensor_faults() -> None:
    eng = engine(T0, seed=21, counts=COUNTS, scenario=FAULTS)
    msgs = run(eng, T0, T0 + 5400)
    with_ = series(msgs)
    without = series(run(engine(T0, seed=21, counts=COUNTS), T0, T0 + 5400))
    truth = {i.sensors[0]: i.truth(eng.seed) for i in eng.new_incidents(T0 + 5400)}
    assert all(t["scenario_line"] > 2 for t in truth.values())
    assert {t["fault"] for t in truth.values()} == {
        "stuck",
        "spike",
        "drift",
        "offset",
        "dropout",
        "offline",
    }
    in_fault = (T0 + 600, T0 + 1800)

    t, v = with_[("aq-00002", "pm25")]
    stuck = v[(t >= in_fault[0]) & (t < in_fault[1])]
    assert len(stuck) >= 9 and len(set(stuck.tolist())) == 1
    assert truth["aq-00002"]["expected"] == {"pm25": "flat"}

    t, v = with_[("aq-00003", "pm25")]
    _, v0 = without[("aq-00003", "pm25")]
    spiked = v - v0
    assert np.count_nonzero(spiked) == 1 and spiked.max() > 500  # one reading, clamped in range
    assert v.max() <= 1000

    t, v = with_[("aq-00004", "no2")]
    _, v0 = without[("aq-00004", "no2")]
    d = (v - v0)[(t >= T0 + 600) & (t < T0 + 4200)]
    assert d[-1] > 25 and np.all(np.diff(d) >= -0.2)  # growing to ~30 µg/m³ after an hour
    assert truth["aq-00004"]["expected"] == {"no2": "up"}

    t, v = with_[("wl-00013", "water_level")]
    _, v0 = without[("wl-00013", "water_level")]
    inside = (t >= T0 + 600) & (t < T0 + 4200)
    assert np.allclose((v - v0)[inside], -50, atol=0.11) and np.allclose((v - v0)[~inside], 0)
    assert truth["wl-00013"]["expected"] == {"water_level": "down"}

    for cam in ("cam-00005", "cam-00006"):
        t, _ = with_[(cam, "speed")]
        t0, _ = without[(cam, "speed")]
        assert len(t0) - len(t) == 20  # twenty minutes of silence
        assert not np.any((t >= in_fault[0]) & (t < T0 + 1800))
    status = [m for m in msgs if m.topic.endswith("cam-00006/status")]
    assert [b'"offline"' in m.payload for m in status] == [True, False]
    assert [m.t for m in status] == [T0 + 600, T0 + 1800]
    assert truth["cam-00006"]["expected"]["speed"] == "offline"


def test_random_incidents_are_drawn_from_the_seed_and_recorded() -> None:
    rnd = "random: {traffic_incident: 6, sensor_fault: 8, pollution_episode: 1, flash_flood: 1, fire_weather: 1}\n"

    def drawn(seed: int) -> list[dict[str, object]]:
        eng = engine(T0, seed=seed, counts=COUNTS, scenario=rnd)
        assert eng.planner is not None
        found = eng.planner.until(T0 + 3 * 86400)
        return [i.truth(seed) for i in sorted(found, key=lambda i: i.id)]

    a, b, c = drawn(5), drawn(5), drawn(6)
    assert a == b and a != c
    kinds = {x["kind"] for x in a}
    assert {"traffic_incident", "sensor_fault"} <= kinds
    assert len([x for x in a if x["kind"] == "traffic_incident"]) >= 6
    for x in a:
        assert x["sensors"] and x["expected"] and x["start"] < x["end"]
        assert x["source"] == "random" and x["schema"] == "ioc.sim.truth/1"


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ("{kind: traffic_incident, sensor: aq-00001, at: +1h, duration: 1h}", "is a air_quality"),
        (
            "{kind: sensor_fault, fault: stuck, sensor: cam-99999, at: +1h, duration: 1h}",
            "does not exist",
        ),
        (
            "{kind: sensor_fault, fault: stuck, sensor: cam-00001, metric: pm25, at: +1h, duration: 1h}",
            "does not report pm25",
        ),
        (
            "{kind: flash_flood, near: [21.25, 105.4], radius_km: 1, at: +1h, duration: 1h}",
            "no water_level sensor within",
        ),
    ],
)
def test_an_incident_on_the_wrong_sensors_names_its_line(entry: str, message: str) -> None:
    from core.errors import ScenarioError

    text = f"seed: 1\nincidents:\n  - {entry}\n"
    with pytest.raises(ScenarioError, match=message) as err:
        engine(T0, counts=COUNTS, scenario=text)
    assert "line 3" in str(err.value)


def test_the_worst_episode_stays_within_what_hanoi_has_measured() -> None:
    """A winter night's inversion with the strongest random episode (factor 3.5): PM2.5 and
    PM10 rise far, yet stay below 300 and 450 µg/m³ (Hanoi's worst hours: ~200-260 PM2.5)."""
    night = hanoi("2026-01-12T20:00")
    scenario = """
incidents:
  - kind: pollution_episode
    near: [21.0285, 105.8542]
    radius_km: 8
    at: +10m
    duration: 8h
    rise: 1h
    factor: 3.5
"""
    eng = engine(night, seed=21, counts=COUNTS, scenario=scenario)
    got = series(run(eng, night, night + 6 * 3600))
    pm25 = np.concatenate([v for (_, m), (_, v) in got.items() if m == "pm25"])
    pm10 = np.concatenate([v for (_, m), (_, v) in got.items() if m == "pm10"])
    assert pm25.max() < 300 and pm10.max() < 450
    assert pm25.max() > 200  # still a severe episode
    assert np.all(pm10 >= pm25)
