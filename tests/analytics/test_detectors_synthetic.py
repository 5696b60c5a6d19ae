"""The default detector on generated series: quiet on normal behaviour, alarms on anomalies."""

from __future__ import annotations

import numpy as np
import pytest

from analytics.detectors import make_detector
from analytics.eval.offline import run_detector

N = 4000
STEP = 300.0
ALARM = 0.5  # the documented alarm level of the ensemble's scores
T = 1.4e9 + STEP * np.arange(N)
DAILY = np.sin(2 * np.pi * T / 86400.0)


def generated() -> dict[str, tuple[np.ndarray, int | None]]:
    """name -> (values, index of the anomaly or None)."""
    rng = np.random.default_rng(42)
    noise = rng.normal(0, 1, N)
    out: dict[str, tuple[np.ndarray, int | None]] = {
        "gaussian noise": (10 + noise, None),
        "uniform noise": (rng.uniform(0, 10, N), None),
        "seasonal": (50 + 20 * DAILY + noise, None),
        "seasonal counts": (rng.poisson(30 + 25 * np.clip(DAILY, 0, None)).astype(float), None),
        "slow trend": (np.linspace(0, 30, N) + noise, None),
        "constant": (np.full(N, 7.0), None),
    }
    spike = 10 + noise
    spike[3000] += 12
    out["spike"] = (spike, 3000)
    shift = 10 + noise
    shift[2500:] += 8
    out["level shift"] = (shift, 2500)
    season = 50 + 20 * DAILY + noise
    day = slice(3000, 3288)
    season[day] = 50 + noise[day]  # one day without its daily cycle
    out["missing daily cycle"] = (season, 3000)
    noisier = 10 + noise
    noisier[2600:] = 10 + 5 * noise[2600:]  # volatility jumps fivefold
    out["volatility"] = (noisier, 2600)
    return out


@pytest.fixture(scope="module")
def scored() -> dict[str, tuple[np.ndarray, int | None]]:
    data = generated()
    names = list(data)
    scores = run_detector(make_detector(), [(T, data[k][0]) for k in names])
    return {k: (s, data[k][1]) for k, s in zip(names, scores, strict=True)}


@pytest.mark.parametrize(
    "name",
    ["gaussian noise", "uniform noise", "seasonal", "seasonal counts", "slow trend", "constant"],
)
def test_normal_behaviour_rarely_alarms(
    scored: dict[str, tuple[np.ndarray, int | None]], name: str
) -> None:
    # at the live threshold (the one NAB scores) the largest of 4,000 readings of plain
    # noise may alarm once: it is a 1-in-several-thousand reading
    scores, _ = scored[name]
    alarms = np.flatnonzero(scores >= ALARM)
    assert alarms.size <= 3, f"{name}: alarms at rows {alarms.tolist()}"


def test_normal_behaviour_alarms_at_most_five_times_in_24000_readings(
    scored: dict[str, tuple[np.ndarray, int | None]],
) -> None:
    normal = [s for s, at in scored.values() if at is None]
    assert len(normal) == 6
    assert sum(int(np.count_nonzero(s >= ALARM)) for s in normal) <= 5


@pytest.mark.parametrize("name", ["spike", "level shift", "missing daily cycle", "volatility"])
def test_anomalies_alarm_early_and_once(
    scored: dict[str, tuple[np.ndarray, int | None]], name: str
) -> None:
    scores, at = scored[name]
    assert at is not None
    every = np.flatnonzero(scores >= ALARM)
    # before the anomaly these series are the normal ones above (their noise alarms)
    assert np.count_nonzero(every < at) <= 3, f"{name}: alarms before the anomaly {every}"
    alarms = every[every >= at]
    assert alarms.size >= 1, f"{name}: no alarm (max {scores.max():.3f} at {int(scores.argmax())})"
    assert alarms[0] <= at + 24, f"{name}: first alarm at {alarms[0]}, anomaly at {at}"
    # one incident, one alarm: the new normal stops alarming
    assert np.all(alarms < at + 300), f"{name}: still alarming at {alarms[alarms >= at + 300][:5]}"


def noise_of_many_kinds(seed: int = 7) -> list[np.ndarray]:
    """32 more normal series: Gaussian noise, AR(1) noise, a random walk, small Poisson
    counts with a daily cycle; 8 seeds each."""
    rng = np.random.default_rng(seed)
    series = []
    for _ in range(8):
        series.append(10 + rng.normal(0, 1, N))
        shocks = rng.normal(0, 1, N)
        ar = np.zeros(N)
        for i in range(1, N):
            ar[i] = 0.9 * ar[i - 1] + shocks[i]
        series.append(ar)
        series.append(np.cumsum(rng.normal(0, 1, N)))
        series.append(rng.poisson(5 + 5 * np.clip(DAILY, 0, None)).astype(float))
    return series


def test_noise_of_many_kinds_rarely_alarms() -> None:
    # every alarm on these is a false alarm. At the live threshold (the one NAB scores)
    # the measured rate is 84 in 128,000 readings (0.7 per 1,000), none in the warm-up;
    # a stricter threshold trades NAB score for fewer (see docs/detectors.md)
    series = noise_of_many_kinds()
    scores = run_detector(make_detector(), [(T, v) for v in series])
    counts = [int(np.count_nonzero(s >= ALARM)) for s in scores]
    assert sum(counts) <= 90, f"false alarms per series {counts}"
    assert max(counts) <= 6, f"false alarms per series {counts}"
    assert all(int(np.count_nonzero(s[:100] > 0)) == 0 for s in scores)
    strict = run_detector(make_detector(threshold=19.0), [(T, v) for v in series])
    assert sum(int(np.count_nonzero(s >= ALARM)) for s in strict) <= 3
