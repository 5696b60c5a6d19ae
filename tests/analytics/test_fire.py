"""Forest-fire weather danger: Magnus formulas, the Nesterov index, levels and fire_risk."""

from __future__ import annotations

import numpy as np
import pytest

from analytics.stages import fire
from analytics.stages.fire import (
    daily_term,
    dew_point,
    level,
    resets,
    risk_score,
    saturation_deficit,
    saturation_vapour_pressure,
    step,
)


def test_magnus_saturation_pressure_and_dew_point() -> None:
    # saturation vapour pressure over water: 23.37 hPa at 20 °C, 42.43 hPa at 30 °C (WMO tables)
    assert saturation_vapour_pressure(np.array(20.0)) == pytest.approx(23.37, abs=0.05)
    assert saturation_vapour_pressure(np.array(30.0)) == pytest.approx(42.43, abs=0.1)
    assert dew_point(np.array(30.0), np.array(50.0)) == pytest.approx(18.4, abs=0.1)
    assert dew_point(np.array(20.0), np.array(100.0)) == pytest.approx(20.0, abs=1e-9)
    assert saturation_deficit(np.array(30.0), np.array(100.0)) == pytest.approx(0.0)
    assert saturation_deficit(np.array(30.0), np.array(40.0)) == pytest.approx(0.6 * 42.43, abs=0.1)


def test_daily_terms_of_both_formulations() -> None:
    t, rh = np.array([35.0]), np.array([35.0])
    vn = daily_term(t, rh, "vn")[0]
    assert vn == pytest.approx(35.0 * saturation_vapour_pressure(t)[0] * 0.65)
    nes = daily_term(t, rh, "nesterov")[0]
    assert nes == pytest.approx(35.0 * (35.0 - dew_point(t, rh)[0]))
    assert daily_term(np.array([-5.0]), np.array([30.0]))[0] == 0.0  # never negative
    assert np.isnan(daily_term(np.array([np.nan]), np.array([30.0]))[0])


@pytest.mark.parametrize(
    ("p", "lv", "risk"),
    [
        (0.0, 1, 0.0),
        (1_000.0, 1, 20.0),
        (1_000.5, 2, 20.0),
        (2_500.0, 2, 40.0),
        (3_750.0, 3, 50.0),
        (5_000.0, 3, 60.0),
        (10_000.0, 4, 80.0),
        (10_001.0, 5, 80.0),
        (20_000.0, 5, 100.0),
        (50_000.0, 5, 100.0),
    ],
)
def test_vn_levels_and_fire_risk_scale(p: float, lv: int, risk: float) -> None:
    assert level(np.array([p]))[0] == lv
    assert risk_score(np.array([p]))[0] == pytest.approx(risk, abs=0.01)


def test_rain_reset_thresholds() -> None:
    rain = np.array([2.0, 3.0, 3.1, 4.9, 5.0])
    assert resets(rain, "vn").tolist() == [False, False, False, False, True]  # >= 5 mm
    assert resets(rain, "nesterov").tolist() == [False, False, True, True, True]  # > 3 mm
    assert level(np.array([300.0, 301.0, 4_000.0, 4_001.0]), "nesterov").tolist() == [1, 2, 3, 4]


def _week(t13: float, rh13: float, rain: float, wind: float, days: int = 7) -> list[fire.Danger]:
    p, dry = np.zeros(1), np.zeros(1, np.int64)
    out = []
    for _ in range(days):
        d = step(p, dry, np.array([t13]), np.array([rh13]), np.array([rain]), np.array([wind]))
        p, dry = d.p, d.dry_days
        out.append(d)
    return out


def test_hot_dry_windy_week_climbs_to_extreme_and_a_rainy_week_stays_low() -> None:
    hot = _week(t13=35.0, rh13=35.0, rain=0.0, wind=6.0)
    calm = _week(t13=35.0, rh13=35.0, rain=0.0, wind=1.0)
    rainy = _week(t13=28.0, rh13=85.0, rain=12.0, wind=6.0)
    per_day = 35.0 * saturation_vapour_pressure(np.array(35.0)) * 0.65
    assert hot[-1].p[0] == pytest.approx(7 * per_day)
    assert [int(d.dry_days[0]) for d in hot] == [1, 2, 3, 4, 5, 6, 7]
    # levels rise with the dry spell; the wind raises each by one
    assert [int(d.level[0]) for d in calm] == [2, 3, 3, 4, 4, 4, 4]
    assert [int(d.level[0]) for d in hot] == [3, 4, 4, 5, 5, 5, 5]
    assert hot[-1].risk[0] > calm[-1].risk[0] >= 60.0
    assert all(d.p[0] == 0.0 and d.level[0] == 1 and d.risk[0] == 0.0 for d in rainy)
    assert not any(bool(d.wind_boost[0]) for d in rainy)  # no wind boost with P = 0


def test_one_rainy_day_resets_a_dry_spell() -> None:
    p, dry = np.array([8_000.0]), np.array([9])
    d = step(p, dry, np.array([33.0]), np.array([40.0]), np.array([6.0]), np.array([2.0]))
    assert d.p[0] == 0.0 and d.dry_days[0] == 0 and d.level[0] == 1
    d = step(p, dry, np.array([33.0]), np.array([40.0]), np.array([4.0]), np.array([2.0]))
    assert d.p[0] > 8_000.0 and d.dry_days[0] == 10


def test_missing_13h_observation_carries_the_index() -> None:
    p = np.array([3_000.0, 3_000.0])
    d = step(
        p,
        np.array([4, 4]),
        np.array([np.nan, 30.0]),
        np.array([40.0, np.nan]),
        np.zeros(2),
        np.zeros(2),
    )
    assert d.p.tolist() == [3_000.0, 3_000.0]
    assert d.level.tolist() == [3, 3]


def test_vectorised_over_stations() -> None:
    n = 500
    rng = np.random.default_rng(3)
    t, rh = rng.uniform(15, 40, n), rng.uniform(10, 100, n)
    rain, wind = rng.choice([0.0, 10.0], n), rng.uniform(0, 10, n)
    p0, dry0 = rng.uniform(0, 15_000, n), rng.integers(0, 20, n)
    d = step(p0, dry0, t, rh, rain, wind)
    for i in range(0, n, 37):
        one = step(
            p0[i : i + 1],
            dry0[i : i + 1],
            t[i : i + 1],
            rh[i : i + 1],
            rain[i : i + 1],
            wind[i : i + 1],
        )
        assert one.p[0] == d.p[i] and one.level[0] == d.level[i] and one.risk[0] == d.risk[i]
