"""Streaming PCA (T² + Q) over a device's metrics together, with forgetting, many devices at once.

A device's readings at one time are a vector ``x`` of ``n_metrics`` values. Per device
the detector keeps an exponentially weighted mean and covariance (forgetting over
about ``1 / alpha`` readings) and, at every reading, the principal components of the
correlation matrix:

- **T²**, Hotelling's statistic in the components that hold ``variance`` of the
  variance: how far the device is from its usual operating point along the directions
  its metrics usually move together;
- **Q** (squared prediction error) in the remaining components: how far the metrics
  have left their usual relation to one another, the classic sign of a fault that no
  single metric shows.

Both are computed for the reading and for its running average (a multivariate EWMA
over about ``1 / run_alpha`` readings, scaled to the reading's variance), which shows a
sustained small shift that no single reading does.

Each statistic becomes ``-ln p`` under its textbook reference (chi-square with the
number of components; Box's scaled chi-square for Q), and each is then calibrated per
device by the same peaks-over-threshold tail model as the univariate ensemble, since
real data are heavier-tailed than the references. The four surprises are added and
mapped to ``s / (s + threshold)``: 0.5 is the alarm level, as for every detector here.

A reading at or above the alarm level is learned at ``anomalous_rate`` times the usual
weight (and the next reading's surprise is not learned by the tail models), so a sustained fault keeps alarming instead of becoming the new normal at once,
while a lasting change of regime is still learned within about ``1 / (alpha *
anomalous_rate)`` readings. Metrics missing from a reading are taken at their mean.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np
from scipy.special import chdtrc

from analytics.detectors._tail import TailModel
from analytics.engine.base import FloatArray, IntArray
from analytics.engine.slots import VALUE_LIMIT, SlotArrays

F8 = np.float64


class StreamingPCA:
    """T² and Q of a device's metric vector under a forgetting PCA; see the module docstring.

    ``score_learn(slots, times, values)`` takes ``values`` of shape ``(m, n_metrics)``:
    one row per device (slot), each slot at most once per call.
    """

    name: ClassVar[str] = "pca_t2q"

    def __init__(
        self,
        n_metrics: int,
        alpha: float = 0.01,
        variance: float = 0.9,
        threshold: float = 11.3,
        run_alpha: float = 0.1,
        anomalous_rate: float = 0.1,
        ridge: float = 1e-3,
        level: float = 3.0,
        warmup: int = 100,
        learn_after: int = 20,
        tail_memory: float = 3000.0,
        seed: int = 0,
    ) -> None:
        if n_metrics < 1:
            raise ValueError("n_metrics must be at least 1")
        if not 0.0 < alpha <= 1.0 or not 0.0 < variance <= 1.0 or threshold <= 0.0:
            raise ValueError("alpha and variance must be in (0, 1], threshold positive")
        self.n_metrics = n_metrics
        self.alpha = alpha
        self.variance = variance
        self.threshold = threshold
        self.run_alpha = run_alpha
        self.anomalous_rate = anomalous_rate
        self.ridge = ridge
        self.level = level
        self.warmup = warmup
        self.learn_after = learn_after
        self.tail_memory = tail_memory
        self.seed = seed
        d = n_metrics
        self._tails = tuple(
            TailModel(key, level, tail_memory) for key in ("t2", "q", "t2_run", "q_run")
        )
        spec: dict[str, tuple[int, type, float]] = {
            "n": (0, np.int64, 0),
            "mean": (d, F8, 0.0),
            "cov": (d * d, F8, 0.0),
            "z_run": (d, F8, 0.0),
            "hot": (0, np.int64, 0),
        }
        for tail in self._tails:
            spec.update(tail.columns())
        self._s = SlotArrays(spec)

    def score_learn(self, slots: IntArray, times: FloatArray, values: FloatArray) -> FloatArray:
        """Score each device's row against its past, then learn it; scores in [0, 1]."""
        idx = np.asarray(slots, dtype=np.int64)
        x = np.asarray(values, dtype=F8).reshape(idx.size, self.n_metrics)
        out = np.zeros(idx.size, dtype=F8)
        present = np.isfinite(x)
        ok = present.any(axis=1) & np.isfinite(np.asarray(times, dtype=F8))
        if not ok.any():
            return out
        if idx[ok].min() < 0:
            raise ValueError("slots must be non-negative")
        idx, x, present = idx[ok], np.clip(x[ok], -VALUE_LIMIT, VALUE_LIMIT), present[ok]
        self._s.ensure(int(idx.max()))
        with np.errstate(all="ignore"):
            score = self._step(idx, x, present)
        out[ok] = np.nan_to_num(np.clip(score, 0.0, 1.0), nan=0.0)
        return out

    def _step(self, idx: IntArray, x: FloatArray, present: np.ndarray[Any, Any]) -> FloatArray:
        c = self._s.cols
        m, d = x.shape
        n = c["n"][idx]
        first = n == 0
        mean = np.where(first[:, None], np.where(present, x, 0.0), c["mean"][idx])
        cov = c["cov"][idx].reshape(m, d, d)
        x = np.where(present, x, mean)  # a missing metric is taken at its mean
        var = np.diagonal(cov, axis1=1, axis2=2)
        sd = np.sqrt(np.maximum(var, 0.0)) + 1e-9 * (1.0 + np.abs(mean))
        z = (x - mean) / sd
        corr = cov / (sd[:, :, None] * sd[:, None, :]) + self.ridge * np.eye(d)
        w, v = np.linalg.eigh(corr)  # ascending eigenvalues
        w, v = np.maximum(w[:, ::-1], self.ridge), v[:, :, ::-1]
        share = np.cumsum(w, axis=1) / np.sum(w, axis=1, keepdims=True)
        k = np.minimum(np.sum(share < self.variance, axis=1) + 1, max(d - 1, 1))
        in_model = np.arange(d)[None, :] < k[:, None]
        theta1 = np.sum(np.where(in_model, 0.0, w), axis=1)
        theta2 = np.sum(np.where(in_model, 0.0, w * w), axis=1)
        g = theta2 / np.maximum(theta1, 1e-12)
        h = np.maximum(theta1 * theta1 / np.maximum(theta2, 1e-24), 1e-3)
        # the reading, and its running average (MEWMA, scaled to the reading's variance)
        lam = self.run_alpha
        z_run = np.where(first[:, None], 0.0, c["z_run"][idx])
        z_run = z_run + lam * (z - z_run)
        c["z_run"][idx] = z_run
        raw = []
        for vec in (z, z_run * np.sqrt((2.0 - lam) / lam)):
            t = np.einsum("mij,mi->mj", v, vec)  # in the components' coordinates
            t2 = np.sum(np.where(in_model, t * t / w, 0.0), axis=1)
            q = np.sum(np.where(in_model, 0.0, t * t), axis=1)
            r_t2 = -np.log(np.maximum(chdtrc(k.astype(F8), t2), 1e-300))
            r_q = np.where(theta1 > 0, -np.log(np.maximum(chdtrc(h, q / g), 1e-300)), 0.0)
            raw += [np.where(first, 0.0, r_t2), np.where(first, 0.0, r_q)]
        # the tails do not learn while the device is anomalous (a fault is not a new tail)
        hot = c["hot"][idx] > 0
        live = ((n >= self.learn_after) & ~hot).astype(F8)
        views = np.stack(
            [
                tail.surprise_learn(self._s, idx, r, n, live)
                for tail, r in zip(self._tails, raw, strict=True)
            ]
        )
        surprise = views.sum(axis=0)
        score = np.where(n >= self.warmup, surprise / (surprise + self.threshold), 0.0)
        # learn: slowly while the device looks anomalous
        a = np.maximum(self.alpha, 1.0 / (n + 1.0))
        anomalous = score >= 0.5
        a = np.where(anomalous, a * self.anomalous_rate, a)
        c["hot"][idx] = anomalous
        delta = x - mean
        c["mean"][idx] = mean + a[:, None] * delta
        outer = delta[:, :, None] * delta[:, None, :]
        new_cov = (1.0 - a)[:, None, None] * (cov + a[:, None, None] * outer)
        c["cov"][idx] = new_cov.reshape(m, d * d)
        c["n"][idx] = n + 1
        self.last_views = (idx, views)
        return score

    def get_state(self) -> dict[str, Any]:
        return self._s.get_state()

    def set_state(self, state: Mapping[str, Any]) -> None:
        self._s.set_state(state)
