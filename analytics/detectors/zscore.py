"""EWMA z-score: the simplest streaming baseline (distance from an exponentially weighted mean)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np

from analytics.engine.base import Detector, FloatArray, IntArray
from analytics.engine.slots import VALUE_LIMIT, SlotArrays


class EwmaZScore(Detector):
    """Score ``|x - mean| / std`` against exponentially weighted moments, squashed into [0, 1].

    ``alpha`` is the weight of a new reading (with ``1/n`` during the first readings),
    ``z_half`` the z-score that maps to 0.5, ``warmup`` the readings scored 0 while the
    moments settle.  Non-finite readings score 0 and are not learned.
    """

    name: ClassVar[str] = "ewma_zscore"

    def __init__(
        self, alpha: float = 0.01, z_half: float = 4.0, warmup: int = 30, seed: int = 0
    ) -> None:
        if not 0.0 < alpha <= 1.0:
            raise ValueError("alpha must be in (0, 1]")
        if z_half <= 0.0:
            raise ValueError("z_half must be positive")
        self.alpha = alpha
        self.z_half = z_half
        self.warmup = warmup
        self.seed = seed  # deterministic already; kept for the common constructor signature
        self._s = SlotArrays(
            {"n": (0, np.int64, 0), "mean": (0, np.float64, 0.0), "var": (0, np.float64, 0.0)}
        )

    def score_learn(self, slots: IntArray, times: FloatArray, values: FloatArray) -> FloatArray:
        slots = np.asarray(slots, dtype=np.int64)
        x = np.asarray(values, dtype=np.float64)
        out = np.zeros(slots.size, dtype=np.float64)
        ok = np.isfinite(x) & np.isfinite(np.asarray(times, dtype=np.float64))
        if not ok.any():
            return out
        idx, x = slots[ok], np.clip(x[ok], -VALUE_LIMIT, VALUE_LIMIT)
        self._s.ensure(int(idx.max()))
        c = self._s.cols
        n, mean, var = c["n"][idx], c["mean"][idx], c["var"][idx]
        std = np.sqrt(var)
        with np.errstate(divide="ignore", invalid="ignore"):
            z = np.abs(x - mean) / std
        z = np.where(
            std > 1e-12 * (1.0 + np.abs(mean)), z, np.where(x == mean, 0.0, 8.0 * self.z_half)
        )
        z = np.minimum(z, 1e6)
        out[ok] = np.where(n >= self.warmup, z / (z + self.z_half), 0.0)
        a = np.maximum(self.alpha, 1.0 / (n + 1.0))
        d = x - mean
        c["mean"][idx] = mean + a * d
        c["var"][idx] = (1.0 - a) * (var + a * d * d)
        c["n"][idx] = n + 1
        return out

    def get_state(self) -> dict[str, Any]:
        return self._s.get_state()

    def set_state(self, state: Mapping[str, Any]) -> None:
        self._s.set_state(state)
