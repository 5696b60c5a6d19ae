"""The series stage: slots, the placeholder detector, thresholds, debounce, expected range, state."""

from __future__ import annotations

import numpy as np
import pytest

from analytics.detectors.robust_z import RobustZ
from analytics.engine.base import Batch, Context, Detector, FloatArray, IntArray, Signal
from analytics.engine.slots import SeriesIndex
from analytics.service.checkpoint import decode_state, encode_state
from analytics.stages.series import RULE, SeriesStage, make_series_detector

T0 = 1_763_769_600.0


def test_series_index_is_stable() -> None:
    idx = SeriesIndex()
    a = idx.lookup(["s1", "s2", "s1"], ["pm25", "pm25", "pm10"])
    b = idx.lookup(["s1", "s3"], ["pm10", "pm25"])
    assert a.tolist() == [0, 1, 2] and b.tolist() == [2, 3]
    again = SeriesIndex(idx.get_state())
    assert again.lookup(["s3"], ["pm25"]).tolist() == [3]


def test_robust_z_scores_before_learning_and_is_vectorised() -> None:
    rng = np.random.default_rng(1)
    x = rng.normal(10, 1, size=(200, 5))
    x[150, 2] = 30
    together = RobustZ()
    alone = [RobustZ() for _ in range(5)]
    slots = np.arange(5)
    got = np.array([together.score_learn(slots, np.full(5, T0 + k), x[k]) for k in range(200)])
    want = np.array(
        [[alone[i].score_learn_one(T0 + k, x[k, i]) for i in range(5)] for k in range(200)]
    )
    assert np.allclose(got, want)
    assert got[150, 2] > 0.75 and got[140:149].max() < 0.5
    assert np.all((got >= 0) & (got <= 1))
    # the score of a reading does not depend on having learned it first
    probe = RobustZ()
    for k in range(100):
        probe.score_learn_one(T0 + k, x[k, 0])
    s1 = probe.score_learn_one(T0 + 100, 1e6)
    assert s1 > 0.99
    assert probe.score_learn(np.array([0]), np.array([T0]), np.array([np.nan]))[0] == 0.0


def run(
    stage: SeriesStage, series: np.ndarray, sensors: list[str], metric: str = "speed"
) -> list[Signal]:
    out: list[Signal] = []
    for k in range(series.shape[0]):
        b = Batch(sensors, [metric] * len(sensors), np.full(len(sensors), T0 + 60 * k), series[k])
        out += stage.process(b, Context()).signals
    return out


def normal(steps: int, n: int, seed: int = 2) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.normal(30, 2, size=(steps, n))


def test_a_level_drop_opens_one_episode_with_an_expected_range_and_clears() -> None:
    x = normal(300, 3)
    x[200:230, 1] = 5.0  # a jam: speed collapses for half an hour
    stage = SeriesStage(RobustZ(), threshold=0.5, debounce=2, clear=3)
    sigs = run(stage, x, ["c0", "c1", "c2"])
    assert {s.sensor for s in sigs} == {"c1"}
    active = [s for s in sigs if s.active]
    cleared = [s for s in sigs if not s.active]
    assert active[0].time == T0 + 60 * 201  # the second anomalous reading (debounce 2)
    assert active[0].rule == RULE and active[0].alert_class is None
    assert active[0].detector == "robust_z"
    assert active[0].expected_low is not None and active[0].expected_high is not None
    assert active[0].expected_low < 30 < active[0].expected_high
    assert active[0].evidence["direction"] == "below"
    assert "far below the expected" in active[0].message
    # the episode holds while the value stays outside the range frozen at its onset
    assert all(s.time < T0 + 60 * 230 for s in active)
    assert len(active) >= 25
    assert len(cleared) == 1 and T0 + 60 * 230 <= cleared[0].time <= T0 + 60 * 235


def test_noise_alone_stays_quiet() -> None:
    stage = SeriesStage(RobustZ(), threshold=0.55, debounce=2)
    assert run(stage, normal(500, 20, seed=5), [f"s{i}" for i in range(20)]) == []


def test_excluded_and_derived_metrics_are_not_watched() -> None:
    x = normal(100, 1)
    x[80:, 0] = 500
    stage = SeriesStage(RobustZ(), exclude=["wind_direction"])
    assert run(stage, x, ["w"], metric="wind_direction") == []
    assert run(stage, x, ["a"], metric="aqi_vn") == []
    assert run(stage, x, ["p"], metric="pm25") != []


def test_batches_of_many_steps_equal_one_step_at_a_time() -> None:
    x = normal(240, 4, seed=7)
    x[150:170, 0] += 25
    x[100, 3] = 80
    one = SeriesStage(RobustZ(), debounce=2)
    a = [(s.sensor, s.time, s.active) for s in run(one, x, ["a", "b", "c", "d"])]
    many = SeriesStage(RobustZ(), debounce=2)
    b: list[tuple[str, float, bool]] = []
    for k in range(0, 240, 12):
        sensors, times, vals = [], [], []
        for kk in range(k, k + 12):
            for i, s in enumerate("abcd"):
                sensors.append(s)
                times.append(T0 + 60 * kk)
                vals.append(x[kk, i])
        batch = Batch(sensors, ["speed"] * len(sensors), np.array(times), np.array(vals))
        b += [(s.sensor, s.time, s.active) for s in many.process(batch, Context()).signals]
    assert a and sorted(a) == sorted(b)


def test_state_round_trip_through_a_checkpoint_continues_identically() -> None:
    x = normal(300, 3, seed=9)
    x[220:240, 2] = 60
    a = SeriesStage(RobustZ())
    run(a, x[:200], ["a", "b", "c"])
    b = SeriesStage(RobustZ())
    b.set_state(decode_state(encode_state(a.get_state())))
    rest_a = [(s.sensor, s.time, s.active, s.score) for s in run_from(a, x, 200)]
    rest_b = [(s.sensor, s.time, s.active, s.score) for s in run_from(b, x, 200)]
    assert rest_a and rest_a == rest_b


def run_from(stage: SeriesStage, x: np.ndarray, start: int) -> list[Signal]:
    out: list[Signal] = []
    for k in range(start, x.shape[0]):
        b = Batch(["a", "b", "c"], ["speed"] * 3, np.full(3, T0 + 60 * k), x[k])
        out += stage.process(b, Context()).signals
    return out


def test_a_checkpoint_of_another_detector_is_not_applied(caplog: pytest.LogCaptureFixture) -> None:
    a = SeriesStage(RobustZ())
    run(a, normal(50, 1), ["a"])

    class Other(RobustZ):
        name = "other"

    b = SeriesStage(Other())
    b.set_state(a.get_state())
    assert len(b.index) == 0
    assert "starting cold" in caplog.text


class Constant(Detector):
    """A detector that offers its own expected range."""

    name = "constant"

    def score_learn(self, slots: IntArray, times: FloatArray, values: FloatArray) -> FloatArray:
        return np.where(values > 100, 1.0, 0.0)

    def expected_range(self, slots: IntArray) -> tuple[FloatArray, FloatArray]:
        return np.full(slots.size, 0.0), np.full(slots.size, 100.0)


def test_the_detector_is_pluggable_and_its_expected_range_is_used() -> None:
    stage = SeriesStage(Constant(), debounce=1, critical=0.5)
    sigs = run(stage, np.array([[50.0], [150.0], [50.0], [50.0], [50.0]]), ["x"])
    assert [s.active for s in sigs] == [True, False]
    assert (sigs[0].expected_low, sigs[0].expected_high) == (0.0, 100.0)
    assert sigs[0].severity == "critical" and sigs[0].detector == "constant"


def test_detector_choice_by_name() -> None:
    assert isinstance(make_series_detector("robust_z"), RobustZ)
    assert isinstance(make_series_detector("auto"), Detector)
    with pytest.raises(ValueError, match="unknown detector 'no-such-detector'"):
        make_series_detector("no-such-detector")
