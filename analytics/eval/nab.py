"""NAB v1.1 scoring: label windows, the scaled sigmoid, the exact threshold sweep, normalised scores.

A faithful, vectorised re-implementation of the Numenta Anomaly Benchmark's sweeper:

- the first ``min(floor(0.15 N), 750)`` rows of a file are a probationary period and are
  not scored (windows that lie wholly inside it are ignored);
- a detection is a row whose anomaly score is ``>= threshold``;
- a window ``[l, r]`` (width ``w``) is worth its best (earliest) detection, a row ``i``
  earning ``A_TP * s(-(r - i + 1) / w) / s(-1)`` with ``s(y) = 2 / (1 + e^(5y)) - 1``;
  a window without a detection costs ``A_FN``;
- a detection outside every window costs ``A_FP * s(|i - r'| / (w' - 1))`` relative to the
  preceding window ``[l', r']`` (``-A_FP`` with no preceding window or three widths on);
- one threshold per profile, shared by all files, the one maximising the total;
- normalised score ``100 * (S - S_null) / (S_perfect - S_null)``.

The sweep is exact: it evaluates the total at every distinct score value, like NAB's
``calcScoreByThreshold``, but with a sort and a cumulative sum instead of a Python loop.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]

PROBATION_PERCENT = 0.15


@dataclass(frozen=True, slots=True)
class Profile:
    """A NAB application profile: the weights of true positives, false positives, misses."""

    name: str
    a_tp: float
    a_fp: float
    a_fn: float


STANDARD = Profile("standard", 1.0, 0.11, 1.0)
REWARD_LOW_FP = Profile("reward_low_FP", 1.0, 0.22, 1.0)
REWARD_LOW_FN = Profile("reward_low_FN", 1.0, 0.11, 2.0)
PROFILES: tuple[Profile, ...] = (STANDARD, REWARD_LOW_FP, REWARD_LOW_FN)


def probationary_length(n_rows: int, percent: float = PROBATION_PERCENT) -> int:
    """Rows at the start of a file that NAB does not score: ``min(floor(0.15 N), 750)``."""
    return int(min(math.floor(percent * n_rows), percent * 5000))


def scaled_sigmoid(y: FloatArray) -> FloatArray:
    """NAB's ``scaledSigmoid``: ``2 / (1 + e^(5y)) - 1``, and exactly -1 from ``y >= 3`` on."""
    y = np.asarray(y, dtype=np.float64)
    with np.errstate(over="ignore"):
        out = 2.0 / (1.0 + np.exp(5.0 * y)) - 1.0
    return np.where(y >= 3.0, -1.0, out)


_MAX_TP = float(scaled_sigmoid(np.array([-1.0]))[0])


@dataclass(frozen=True, slots=True)
class LabelledFile:
    """One file's rows as the sweep sees them (what NAB's ``calcSweepScore`` computes)."""

    name: str
    window: IntArray  # per row: window number in this file, -1 outside every window
    scored: BoolArray  # per row: past the probationary period
    tp_weight: FloatArray  # per row in a window: s(position) / s(-1), in (0, 1]
    fp_weight: FloatArray  # per row outside windows: s(position past previous window), in [-1, 0]
    n_windows: int  # every labelled window (for the perfect score)

    @property
    def n_rows(self) -> int:
        return int(self.window.size)

    @property
    def scored_windows(self) -> int:
        """Windows with at least one scored row: the ones a detector can hit or miss."""
        inside = self.window[self.scored & (self.window >= 0)]
        return int(np.unique(inside).size)


def label_file(
    name: str, times: npt.ArrayLike, windows: Sequence[tuple[float, float]]
) -> LabelledFile:
    """Turn a file's row times and its ``[start, end]`` windows (same clock) into sweep weights.

    Window limits must be row times, as in NAB's label files; a limit that matches no row
    is an error in the labels (NAB would silently ignore the window).
    """
    t = np.asarray(times, dtype=np.float64)
    n = t.size
    window = np.full(n, -1, dtype=np.int64)
    tp_weight = np.zeros(n, dtype=np.float64)
    fp_weight = np.full(n, -1.0, dtype=np.float64)  # no preceding window: full cost
    idx = np.arange(n, dtype=np.float64)
    bounds: list[tuple[int, int]] = []
    for k, (start, end) in enumerate(sorted(windows)):
        hits_l = np.flatnonzero(t == start)
        hits_r = np.flatnonzero(t == end)
        if hits_l.size == 0 or hits_r.size == 0:
            raise ValueError(f"{name}: window {k} [{start}, {end}] does not start/end on a row")
        left, right = int(hits_l[0]), int(hits_r[0])
        if right < left:
            raise ValueError(f"{name}: window {k} ends before it starts")
        if bounds and left <= bounds[-1][1]:
            raise ValueError(f"{name}: window {k} overlaps the previous window")
        bounds.append((left, right))
        width = float(right - left + 1)
        rows = slice(left, right + 1)
        window[rows] = k
        tp_weight[rows] = scaled_sigmoid(-(right - idx[rows] + 1.0) / width) / _MAX_TP
    # false-positive weights relative to the preceding window
    for k, (left, right) in enumerate(bounds):
        nxt = bounds[k + 1][0] if k + 1 < len(bounds) else n
        rows = slice(right + 1, nxt)
        width = float(right - left + 1)
        with np.errstate(divide="ignore", invalid="ignore"):
            pos = np.abs(right - idx[rows]) / (width - 1.0)
        fp_weight[rows] = scaled_sigmoid(pos)
    fp_weight[window >= 0] = 0.0
    scored = np.arange(n) >= probationary_length(n)
    return LabelledFile(name, window, scored, tp_weight, fp_weight, len(bounds))


@dataclass(frozen=True, slots=True)
class Sweep:
    """Raw NAB totals at every candidate threshold (descending thresholds)."""

    thresholds: FloatArray  # the first is +inf: nothing detected
    totals: FloatArray

    def best(self) -> tuple[float, float]:
        """(threshold, total) maximising the total; the highest threshold among ties."""
        k = int(np.argmax(self.totals))
        return float(self.thresholds[k]), float(self.totals[k])


def sweep(files: Sequence[LabelledFile], scores: Sequence[FloatArray], profile: Profile) -> Sweep:
    """Total raw score of all files at every distinct score value used as the threshold."""
    ev_score: list[FloatArray] = []
    ev_delta: list[FloatArray] = []
    base = 0.0
    offset = 0
    win_score: list[FloatArray] = []
    win_id: list[IntArray] = []
    win_weight: list[FloatArray] = []
    for f, s in zip(files, scores, strict=True):
        s = _check_scores(f, s)
        outside = f.scored & (f.window < 0)
        ev_score.append(s[outside])
        ev_delta.append(profile.a_fp * f.fp_weight[outside])
        inside = f.scored & (f.window >= 0)
        ids = f.window[inside]
        if ids.size:
            uniq, dense = np.unique(ids, return_inverse=True)
            win_score.append(s[inside])
            win_id.append(dense.astype(np.int64) + offset)
            win_weight.append(profile.a_tp * f.tp_weight[inside])
            offset += int(uniq.size)
            base -= profile.a_fn * uniq.size
    if win_id:
        ws, wi, ww = np.concatenate(win_score), np.concatenate(win_id), np.concatenate(win_weight)
        order = np.lexsort((-ws, wi))  # by window, then score descending
        ws, wi, ww = ws[order], wi[order], ww[order]
        # running best weight per window as the threshold falls: weights are in (0, 1],
        # so shifting window k by 2k keeps one global cumulative maximum per window
        shifted = ww + 2.0 * wi
        best = np.maximum.accumulate(shifted) - 2.0 * wi
        first = np.r_[True, wi[1:] != wi[:-1]]
        prev = np.where(first, -profile.a_fn, np.r_[0.0, best[:-1]])
        ev_score.append(ws)
        ev_delta.append(best - prev)
    all_s = np.concatenate(ev_score) if ev_score else np.zeros(0)
    all_d = np.concatenate(ev_delta) if ev_delta else np.zeros(0)
    order = np.argsort(-all_s, kind="stable")
    all_s, all_d = all_s[order], all_d[order]
    running = base + np.cumsum(all_d)
    last_of_value = np.r_[all_s[1:] != all_s[:-1], True] if all_s.size else np.zeros(0, bool)
    thresholds = np.r_[np.inf, all_s[last_of_value]]
    totals = np.r_[base, running[last_of_value]]
    return Sweep(thresholds.astype(np.float64), totals.astype(np.float64))


def file_score(f: LabelledFile, scores: FloatArray, threshold: float, profile: Profile) -> float:
    """Raw NAB score of one file at ``threshold`` (direct, unvectorised definition)."""
    s = _check_scores(f, scores)
    detected = f.scored & (s >= threshold)
    total = float(np.sum(profile.a_fp * f.fp_weight[detected & (f.window < 0)]))
    for k in np.unique(f.window[f.scored & (f.window >= 0)]):
        hits = detected & (f.window == k)
        total += float(profile.a_tp * f.tp_weight[hits].max()) if hits.any() else -profile.a_fn
    return total


def normalise(raw: float, files: Sequence[LabelledFile], profile: Profile) -> float:
    """``100 * (S - S_null) / (S_perfect - S_null)``; files without windows only lose points."""
    perfect = profile.a_tp * sum(f.n_windows for f in files)
    null = -profile.a_fn * sum(f.scored_windows for f in files)
    if perfect == null:
        return 0.0
    return 100.0 * (raw - null) / (perfect - null)


@dataclass(frozen=True, slots=True)
class ProfileResult:
    """One profile's outcome over a corpus: shared threshold, totals, per-file raw scores."""

    profile: Profile
    threshold: float
    raw: float
    score: float  # normalised
    per_file: dict[str, float]
    detections: dict[str, int]  # detections (rows at or above the threshold, scored) per file

    def group_score(self, files: Sequence[LabelledFile]) -> float:
        """Normalised score of a subset of files (e.g. one category) at the shared threshold."""
        raw = sum(self.per_file[f.name] for f in files)
        return normalise(raw, files, self.profile)


def score_corpus(
    files: Sequence[LabelledFile],
    scores: Sequence[FloatArray],
    profile: Profile,
    threshold: float | None = None,
) -> ProfileResult:
    """Score every file at ``threshold``; without one, at the profile's best shared threshold
    (NAB's own rule, which lets every detector choose its threshold after the fact)."""
    if threshold is None:
        threshold = sweep(files, scores, profile).best()[0]
    per_file = {
        f.name: file_score(f, s, threshold, profile) for f, s in zip(files, scores, strict=True)
    }
    raw = sum(per_file.values())
    detections = {
        f.name: int(np.count_nonzero(f.scored & (np.asarray(s) >= threshold)))
        for f, s in zip(files, scores, strict=True)
    }
    return ProfileResult(
        profile, threshold, raw, normalise(raw, files, profile), per_file, detections
    )


def _check_scores(f: LabelledFile, scores: npt.ArrayLike) -> FloatArray:
    s = np.asarray(scores, dtype=np.float64)
    if s.shape != (f.n_rows,):
        raise ValueError(f"{f.name}: {s.size} scores for {f.n_rows} rows")
    if not np.all(np.isfinite(s)):
        raise ValueError(f"{f.name}: anomaly scores must be finite")
    return s
