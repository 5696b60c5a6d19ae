"""The streaming PCA (T² + Q) detector: vectorised over devices, sees broken relations."""

from __future__ import annotations

import numpy as np

from analytics.detectors.pca import StreamingPCA

T0 = 1.5e9


def coupled(n: int, seed: int, break_at: int | None = None) -> np.ndarray:
    """Two metrics that move together (flow and pump current, say) and a third alone."""
    rng = np.random.default_rng(seed)
    drive = np.zeros(n)
    shocks = rng.normal(0, 1, n)
    for i in range(1, n):
        drive[i] = 0.95 * drive[i - 1] + shocks[i]
    x = np.stack(
        [10 + 3 * drive + rng.normal(0, 0.2, n), 5 + drive + rng.normal(0, 0.07, n)], axis=1
    )
    x = np.concatenate([x, rng.normal(0, 1, (n, 1))], axis=1)
    if break_at is not None:
        x[break_at:, 1] -= 1.5  # the current no longer follows the flow (within its range)
    return x


def run(det: StreamingPCA, x: np.ndarray, slot: int = 0) -> np.ndarray:
    slots = np.array([slot], dtype=np.int64)
    return np.array(
        [det.score_learn(slots, np.array([T0 + i]), x[i : i + 1])[0] for i in range(len(x))]
    )


def test_a_broken_relation_alarms_while_each_metric_stays_in_its_range() -> None:
    x = coupled(1500, seed=1, break_at=1000)
    assert x[1000:, 1].min() > x[:1000, 1].min()  # no metric leaves its own range
    scores = run(StreamingPCA(3), x)
    assert np.count_nonzero(scores[:1000] >= 0.5) <= 2
    assert np.flatnonzero(scores[1000:] >= 0.5)[0] <= 3
    # learned slowly while anomalous: the fault keeps alarming for a while
    assert np.count_nonzero(scores[1000:1050] >= 0.5) >= 10


def test_devices_are_scored_together_as_alone_and_state_round_trips() -> None:
    xs = [coupled(400, seed=s, break_at=300 if s == 2 else None) for s in range(3)]
    together = StreamingPCA(3)
    slots = np.arange(3, dtype=np.int64)
    got = np.array(
        [
            together.score_learn(slots, np.full(3, T0 + i), np.stack([x[i] for x in xs]))
            for i in range(400)
        ]
    )
    for k, x in enumerate(xs):
        np.testing.assert_allclose(got[:, k], run(StreamingPCA(3), x), atol=1e-12)
    assert np.all((got >= 0) & (got <= 1))
    copy = StreamingPCA(3)
    copy.set_state(together.get_state())
    row = np.stack([x[-1] for x in xs])
    np.testing.assert_array_equal(
        copy.score_learn(slots, np.full(3, T0 + 500), row),
        together.score_learn(slots, np.full(3, T0 + 500), row),
    )


def test_missing_metrics_and_rows_are_handled() -> None:
    det = StreamingPCA(3)
    x = coupled(300, seed=4)
    x[50, 0] = np.nan
    x[60] = np.nan
    scores = run(det, x)
    assert scores[60] == 0.0
    assert np.all(np.isfinite(scores))
