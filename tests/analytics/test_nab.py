"""NAB v1.1 scoring checked on hand-made cases whose scores are computed by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from analytics.eval import nab


def s(y: float) -> float:
    """NAB's scaled sigmoid, written out by hand."""
    return -1.0 if y >= 3.0 else 2.0 / (1.0 + math.exp(5.0 * y)) - 1.0


N = 1000  # probationary period: 150 rows
WINDOW = (500.0, 599.0)  # width 100


def one_window_file() -> nab.LabelledFile:
    return nab.label_file("cat/f.csv", np.arange(N, dtype=float), [WINDOW])


def scores_at(*rows: int, n: int = N) -> np.ndarray:
    out = np.zeros(n)
    out[list(rows)] = 1.0
    return out


def test_scaled_sigmoid_and_probation() -> None:
    got = nab.scaled_sigmoid(np.array([-1.0, -0.5, 0.0, 1.0, 2.99, 3.0, 10.0]))
    assert got == pytest.approx([0.98661, 0.84828, 0.0, -0.98661, s(2.99), -1.0, -1.0], abs=1e-5)
    assert nab.probationary_length(1000) == 150
    assert nab.probationary_length(4032) == 604
    assert nab.probationary_length(22695) == 750


def test_perfect_and_null_detectors_score_100_and_0() -> None:
    f = one_window_file()
    for profile in nab.PROFILES:
        perfect = nab.score_corpus([f], [scores_at(500)], profile)
        assert perfect.raw == pytest.approx(profile.a_tp)
        assert perfect.score == pytest.approx(100.0)
        null = nab.score_corpus([f], [np.zeros(N)], profile)
        assert null.raw == pytest.approx(-profile.a_fn)
        assert null.score == pytest.approx(0.0)
        assert null.threshold == math.inf  # detecting nothing beats detecting everything


def test_only_the_earliest_detection_in_a_window_counts() -> None:
    f = one_window_file()
    # row 550: position -(599 - 550 + 1)/100 = -0.5
    assert nab.file_score(f, scores_at(550), 0.5, nab.STANDARD) == pytest.approx(s(-0.5) / s(-1.0))
    assert nab.file_score(f, scores_at(550, 590, 599), 0.5, nab.STANDARD) == pytest.approx(
        s(-0.5) / s(-1.0)
    )
    # the last row of the window is worth almost nothing but still beats a miss
    assert nab.file_score(f, scores_at(599), 0.5, nab.STANDARD) == pytest.approx(s(-0.01) / s(-1.0))


def test_false_positive_costs() -> None:
    f = one_window_file()
    std, low_fp = nab.STANDARD, nab.REWARD_LOW_FP
    # before any window: the full A_FP (and the window is missed)
    assert nab.file_score(f, scores_at(200), 0.5, std) == pytest.approx(-0.11 - 1.0)
    assert nab.file_score(f, scores_at(200), 0.5, low_fp) == pytest.approx(-0.22 - 1.0)
    # just after the window: |599 - 600| / (100 - 1) past it, nearly free
    assert nab.file_score(f, scores_at(500, 600), 0.5, std) == pytest.approx(1.0 + 0.11 * s(1 / 99))
    assert 0.11 * s(1 / 99) == pytest.approx(-0.0028, abs=1e-4)
    # one window width later: s(1) = -0.98661 of A_FP; three widths and beyond: all of it
    assert nab.file_score(f, scores_at(500, 698), 0.5, std) == pytest.approx(1.0 + 0.11 * s(1.0))
    assert nab.file_score(f, scores_at(500, 900), 0.5, std) == pytest.approx(1.0 - 0.11)
    # a miss costs A_FN: 2 in reward_low_FN
    assert nab.file_score(f, np.zeros(N), 0.5, nab.REWARD_LOW_FN) == pytest.approx(-2.0)


def test_probationary_rows_are_not_scored() -> None:
    f = one_window_file()
    assert nab.file_score(f, scores_at(10, 149), 0.5, nab.STANDARD) == pytest.approx(-1.0)
    assert nab.file_score(f, scores_at(150), 0.5, nab.STANDARD) == pytest.approx(-1.11)
    # a window wholly inside the probationary period is neither hit nor missed
    g = nab.label_file("cat/g.csv", np.arange(N, dtype=float), [(10.0, 20.0), WINDOW])
    assert g.n_windows == 2 and g.scored_windows == 1
    assert nab.file_score(g, scores_at(500), 0.5, nab.STANDARD) == pytest.approx(1.0)


def test_fp_weight_uses_the_preceding_window() -> None:
    f = nab.label_file("c/two.csv", np.arange(N, dtype=float), [(200.0, 219.0), WINDOW])
    # row 250 is 31 rows after a window of width 20: position 31 / 19
    got = nab.file_score(f, scores_at(250, 500), 0.5, nab.STANDARD)
    assert got == pytest.approx(-1.0 + 0.11 * s(31 / 19) + 1.0)


def test_sweep_matches_brute_force_and_picks_the_best_shared_threshold() -> None:
    rng = np.random.default_rng(3)
    files, scores = [], []
    for k in range(4):
        n = int(rng.integers(600, 1500))
        starts = sorted(rng.choice(np.arange(200, n - 60), size=2, replace=False))
        windows = [(float(a), float(a + 30)) for a in starts if a + 30 < n]
        windows = [w for i, w in enumerate(windows) if i == 0 or w[0] > windows[i - 1][1]]
        files.append(nab.label_file(f"c/{k}.csv", np.arange(n, dtype=float), windows))
        scores.append(np.round(rng.random(n) ** 8, 3))  # many ties, like real detectors
    for profile in nab.PROFILES:
        sw = nab.sweep(files, scores, profile)
        assert np.all(np.diff(sw.thresholds) < 0)
        for thr, total in zip(sw.thresholds[::7], sw.totals[::7], strict=True):
            brute = sum(
                nab.file_score(f, sc, thr, profile) for f, sc in zip(files, scores, strict=True)
            )
            assert total == pytest.approx(brute, abs=1e-9)
        best_thr, best_total = sw.best()
        grid = np.unique(np.concatenate(scores))
        brute_best = max(
            sum(nab.file_score(f, sc, t, profile) for f, sc in zip(files, scores, strict=True))
            for t in grid
        )
        assert best_total == pytest.approx(max(brute_best, sw.totals[0]), abs=1e-9)
        assert sw.totals[0] == pytest.approx(-profile.a_fn * sum(f.scored_windows for f in files))
        assert nab.score_corpus(files, scores, profile).threshold == best_thr


def test_normalisation_and_group_scores() -> None:
    f = one_window_file()
    g = nab.label_file("other/g.csv", np.arange(N, dtype=float), [WINDOW])
    result = nab.score_corpus([f, g], [scores_at(500), np.zeros(N)], nab.STANDARD)
    assert result.score == pytest.approx(50.0)  # (0 - -2) / (2 - -2)
    assert result.group_score([f]) == pytest.approx(100.0)
    assert result.group_score([g]) == pytest.approx(0.0)


def test_bad_labels_and_scores_are_rejected() -> None:
    with pytest.raises(ValueError, match="does not start/end on a row"):
        nab.label_file("c/x.csv", np.arange(10, dtype=float), [(2.5, 5.0)])
    with pytest.raises(ValueError, match="overlaps"):
        nab.label_file("c/x.csv", np.arange(10, dtype=float), [(1.0, 5.0), (4.0, 6.0)])
    f = one_window_file()
    with pytest.raises(ValueError, match="finite"):
        nab.file_score(f, np.full(N, np.nan), 0.5, nab.STANDARD)
    with pytest.raises(ValueError, match="scores for"):
        nab.file_score(f, np.zeros(3), 0.5, nab.STANDARD)
