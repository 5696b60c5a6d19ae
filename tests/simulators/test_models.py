"""The built-in models behave like Hanoi: daily peaks, seasons, flow-speed links, elevation."""

from __future__ import annotations

import numpy as np

from simulators.engine import Engine
from tests.simulators.util import engine, hanoi

RNG = np.random.default_rng(0)
MONDAY = "2026-11-23"
SATURDAY = "2026-11-28"


def _at(eng: Engine, model: str, when: str) -> dict[str, np.ndarray]:
    m = eng.models[model]
    t = np.full(len(m.sensors), hanoi(when))
    return {k: np.asarray(v) for k, v in m.values(t, RNG, eng.city).items()}


def _hourly(eng: Engine, model: str, metric: str, day: str) -> np.ndarray:
    """Mean over sensors and over each hour's 6 ten-minute samples, for hours 0..23."""
    return np.array(
        [
            np.mean(
                [
                    _at(eng, model, f"{day}T{h:02d}:{mi:02d}")[metric].mean()
                    for mi in range(0, 60, 10)
                ]
            )
            for h in range(24)
        ]
    )


def test_traffic_peaks_at_7_to_9_and_17_to_19_on_weekdays() -> None:
    eng = engine(hanoi(MONDAY + "T00:00"), counts={"traffic_camera": 200})
    counts = _hourly(eng, "traffic_camera", "vehicle_count", MONDAY)
    night = counts[0:5].mean()
    morning, evening, midday = counts[7:9].mean(), counts[17:19].mean(), counts[11:14].mean()
    assert morning > 5 * night and evening > 5 * night
    assert morning > 1.3 * midday and evening > 1.3 * midday
    assert int(np.argmax(counts)) in (7, 8, 17, 18)
    weekend = _hourly(eng, "traffic_camera", "vehicle_count", SATURDAY)
    assert weekend[7:9].mean() < 0.8 * morning  # a weekend morning is lighter


def test_motorbikes_dominate_and_classes_add_up() -> None:
    eng = engine(hanoi(MONDAY + "T00:00"), counts={"traffic_camera": 300})
    v = _at(eng, "traffic_camera", MONDAY + "T08:00")
    total = v["count_motorbike"] + v["count_car"] + v["count_bus"] + v["count_truck"]
    assert np.array_equal(total, v["vehicle_count"])
    assert v["count_motorbike"].sum() > 0.7 * v["vehicle_count"].sum()
    assert v["count_car"].sum() > v["count_bus"].sum()


def test_speed_falls_and_occupancy_rises_with_flow() -> None:
    eng = engine(hanoi(MONDAY + "T00:00"), counts={"traffic_camera": 300})
    night = _at(eng, "traffic_camera", MONDAY + "T03:00")
    peak = _at(eng, "traffic_camera", MONDAY + "T08:00")
    assert peak["speed"].mean() < 0.75 * night["speed"].mean()
    assert peak["occupancy"].mean() > 3 * night["occupancy"].mean()
    assert peak["queue_length"].mean() > 3 * night["queue_length"].mean()
    # across cameras at one instant too: the busiest quarter is slower than the quietest
    ratio = peak["vehicle_count"] / np.maximum(1, eng.models["traffic_camera"].capacity)  # type: ignore[attr-defined]
    order = np.argsort(ratio)
    assert peak["speed"][order[-75:]].mean() < peak["speed"][order[:75]].mean()


def test_pm25_winter_far_above_summer_and_linked_to_traffic() -> None:
    eng = engine(hanoi("2026-01-05T00:00"), counts={"air_quality": 14, "traffic_camera": 200})
    winter = np.mean(
        [_hourly(eng, "air_quality", "pm25", f"2026-01-{d:02d}").mean() for d in (5, 12, 19)]
    )
    summer = np.mean(
        [_hourly(eng, "air_quality", "pm25", f"2026-07-{d:02d}").mean() for d in (6, 13, 20)]
    )
    assert winter > 2 * summer
    no2 = _hourly(eng, "air_quality", "no2", MONDAY)
    assert no2[7:9].mean() > no2[2:4].mean()  # rush-hour exhaust
    o3 = _hourly(eng, "air_quality", "o3", "2026-07-06")
    assert o3[12:16].mean() > 3 * o3[0:4].mean()  # photochemistry in the afternoon


def test_hill_stations_are_cooler_at_altitude_and_follow_the_daily_cycle() -> None:
    eng = engine(hanoi(MONDAY + "T00:00"), counts={"weather": 10})
    temp = _hourly(eng, "weather", "temperature", "2026-05-04")
    assert temp[13:16].mean() > temp[4:7].mean() + 4
    hum = _hourly(eng, "weather", "humidity", "2026-05-04")
    assert hum[13:16].mean() < hum[4:7].mean()
    v = _at(eng, "weather", "2026-05-04T14:00")
    elev = eng.models["weather"].sensors.extra["elevation_m"]
    high, low = elev > np.median(elev), elev <= np.median(elev)
    assert v["pressure"][high].mean() < v["pressure"][low].mean()
    assert set(eng.models["weather"].sensors.areas) == {"Sóc Sơn", "Ba Vì"}


def test_rain_follows_the_season_and_rivers_answer_it() -> None:
    eng = engine(hanoi(MONDAY + "T00:00"), counts={"water_level": 19})
    m = eng.models["water_level"]
    river = m.river  # type: ignore[attr-defined]

    def month(first: str, last: str) -> tuple[np.ndarray, np.ndarray]:
        levels, rain = [], []
        for ti in np.arange(hanoi(first), hanoi(last), 1800.0):
            v = m.values(np.full(len(m.sensors), ti), RNG, eng.city)
            levels.append(np.asarray(v["water_level"]))
            rain.append(np.asarray(v["rainfall"]) * 3600 / m.interval)  # mm/h
        return np.array(levels), np.array(rain)

    jul_level, jul_rain = month("2026-07-01T00:00", "2026-07-31T00:00")
    jan_level, jan_rain = month("2026-01-01T00:00", "2026-01-31T00:00")
    jul_mm, jan_mm = jul_rain.mean() * 720, jan_rain.mean() * 720
    assert 150 < jul_mm < 450 and jan_mm < 60  # Hanoi: ~290 mm in July, ~20 in January
    assert jul_level[:, river].mean() > jan_level[:, river].mean() + 30  # the rainy season
    # natural showers stay within the street drains: street floods are injected, with ground truth
    assert jul_level[:, ~river].max() < 5.0
    # a river rises in the hours after rain
    city_rain = jul_rain.mean(axis=1)
    before = np.convolve(city_rain, np.ones(8), mode="full")[: len(city_rain)]  # last 4 h
    r = jul_level[:, river].mean(axis=1)
    rising = np.diff(r, prepend=r[0])
    assert rising[before > np.quantile(before, 0.9)].mean() > rising[before == 0].mean()


def test_layout_is_in_hanoi_and_stable() -> None:
    a = engine(hanoi(MONDAY + "T00:00"), seed=1, counts={"traffic_camera": 500, "air_quality": 20})
    b = engine(hanoi(MONDAY + "T00:00"), seed=2, counts={"traffic_camera": 1000, "air_quality": 20})
    ta, tb = a.models["traffic_camera"].sensors, b.models["traffic_camera"].sensors
    assert ta.ids == tb.ids[:500]
    assert np.array_equal(ta.lat, tb.lat[:500])  # the city does not move with the seed or size
    assert (
        ta.lat.min() > 20.9
        and ta.lat.max() < 21.25
        and ta.lon.min() > 105.7
        and ta.lon.max() < 106.0
    )
    areas = set(ta.areas)
    assert {"Hoàn Kiếm", "Đống Đa", "Cầu Giấy", "Hà Đông", "Long Biên"} <= areas
    junctions = sum(1 for x in ta.attrs if x["site_type"] == "junction")
    assert 0.25 * 500 < junctions < 0.55 * 500
