"""One generic contract test for every detector in analytics.detectors (river style)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from analytics.detectors import DETECTORS, make_detector
from analytics.engine.base import Detector

NAMES = sorted(DETECTORS)
STEP = 300.0  # five-minute readings


def series(seed: int, n: int = 400) -> tuple[np.ndarray, np.ndarray]:
    """A daily-seasonal noisy series with a spike and a level shift."""
    rng = np.random.default_rng(seed)
    t = 1.4e9 + STEP * np.arange(n)
    x = 50 + 10 * np.sin(2 * np.pi * t / 86400.0) + rng.normal(0, 1 + seed % 3, n)
    x[n // 2] += 40
    x[3 * n // 4 :] += 15
    return t, x


def run_alone(det: Detector, t: np.ndarray, x: np.ndarray, slot: int = 0) -> np.ndarray:
    return np.array(
        [det.score_learn_one(float(a), float(b), slot) for a, b in zip(t, x, strict=True)]
    )


def run_bank(
    det: Detector, data: list[tuple[np.ndarray, np.ndarray]], slots: list[int]
) -> list[np.ndarray]:
    """One call per step with every series in it (in a shuffled order)."""
    rng = np.random.default_rng(0)
    n = len(data[0][0])
    out = [np.zeros(n) for _ in data]
    for i in range(n):
        order = rng.permutation(len(data))
        got = det.score_learn(
            np.array([slots[k] for k in order], dtype=np.int64),
            np.array([data[k][0][i] for k in order]),
            np.array([data[k][1][i] for k in order]),
        )
        for pos, k in enumerate(order):
            out[k][i] = got[pos]
    return out


@pytest.fixture(params=NAMES)
def name(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def test_constructor_args_are_stored_under_their_own_names(name: str) -> None:
    det = make_detector(name, seed=7)
    assert det.seed == 7  # type: ignore[attr-defined]
    assert det.name == name


def test_scores_are_in_unit_interval_and_deterministic(name: str) -> None:
    t, x = series(1)
    a = run_alone(make_detector(name, seed=3), t, x)
    b = run_alone(make_detector(name, seed=3), t, x)
    assert np.all((a >= 0) & (a <= 1))
    np.testing.assert_array_equal(a, b)


def test_scores_use_only_the_past(name: str) -> None:
    """Two series equal up to row k get equal scores up to row k, whatever follows."""
    t, x = series(2)
    k = 250
    y = x.copy()
    y[k + 1 :] = -y[k + 1 :] * 3 + 1000
    a = run_alone(make_detector(name), t, x)
    b = run_alone(make_detector(name), t, y)
    np.testing.assert_array_equal(a[: k + 1], b[: k + 1])
    assert not np.array_equal(a, b)


def test_score_comes_before_learning(name: str) -> None:
    """The score of a reading is what a copy of the state before it gives, not after."""
    t, x = series(3)
    det = make_detector(name)
    run_alone(det, t[:300], x[:300])
    before = det.get_state()
    s1 = det.score_learn_one(float(t[300]), 500.0)
    twin = make_detector(name)
    twin.set_state(before)
    assert twin.score_learn_one(float(t[300]), 500.0) == s1
    # learning the outlier changed the state, so the same reading now scores differently
    after = make_detector(name)
    after.set_state(det.get_state())
    assert after.score_learn_one(float(t[300] + STEP), 500.0) != s1


def test_vectorised_bank_equals_one_series_at_a_time(name: str) -> None:
    data = [series(seed) for seed in range(5)]
    slots = [7, 0, 3, 42, 11]  # sparse, unordered slot numbers
    banked = run_bank(make_detector(name), data, slots)
    for (t, x), got in zip(data, banked, strict=True):
        alone = run_alone(make_detector(name), t, x)
        np.testing.assert_allclose(got, alone, rtol=0, atol=1e-12)


def test_state_round_trip_continues_identically(name: str) -> None:
    t, x = series(4)
    full = run_alone(make_detector(name), t, x)
    first = make_detector(name)
    run_alone(first, t[:200], x[:200])
    resumed = make_detector(name)
    resumed.set_state(first.get_state())
    np.testing.assert_array_equal(run_alone(resumed, t[200:], x[200:]), full[200:])


def test_non_finite_readings_score_zero_and_are_skipped(name: str) -> None:
    t, x = series(5)
    bad = x.copy()
    holes = [120, 121, 260, 301]
    bad[holes] = [np.nan, np.inf, -np.inf, np.nan]
    with_holes = run_alone(make_detector(name), t, bad)
    assert np.all(with_holes[holes] == 0.0)
    keep = np.setdiff1d(np.arange(t.size), holes)
    skipped = run_alone(make_detector(name), t[keep], x[keep])
    np.testing.assert_allclose(with_holes[keep], skipped, rtol=0, atol=1e-12)
    # a non-finite time is skipped the same way
    det = make_detector(name)
    assert det.score_learn_one(math.nan, 1.0) == 0.0


def test_empty_call(name: str) -> None:
    det = make_detector(name)
    empty = np.zeros(0)
    assert det.score_learn(np.zeros(0, dtype=np.int64), empty, empty).shape == (0,)


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    values=st.lists(
        st.floats(allow_nan=False, allow_infinity=False, width=64), min_size=1, max_size=80
    ),
    gaps=st.lists(st.floats(min_value=0.0, max_value=1e6), min_size=1, max_size=80),
)
def test_arbitrary_finite_values_never_break_a_detector(
    name: str, values: list[float], gaps: list[float]
) -> None:
    det = make_detector(name, warmup=0)
    t = 1.4e9 + np.cumsum(np.resize(np.array(gaps), len(values)))
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        for a, b in zip(t, values, strict=True):
            got = det.score_learn_one(float(a), b)
            assert 0.0 <= got <= 1.0


def test_ensemble_restores_a_checkpoint_without_a_newer_column() -> None:
    t, x = series(5)
    first = make_detector("ensemble")
    run_alone(first, t[:200], x[:200])
    state = first.get_state()
    del state["t_season"]  # as written before the column existed
    resumed = make_detector("ensemble")
    resumed.set_state(state)
    scores = run_alone(resumed, t[200:], x[200:])
    assert np.all(np.isfinite(scores)) and np.all((scores >= 0) & (scores <= 1))
