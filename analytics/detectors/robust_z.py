"""The robust-z detector: the small fallback of the series stage (distance from an EWMA in robust deviations)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np

from analytics.engine.base import (
    Detector,
    FloatArray,
    IntArray,
)
from analytics.engine.slots import SlotArrays


class RobustZ(Detector):
    """Placeholder detector: distance from an exponentially weighted mean in robust deviations.

    Score ``z / (z + z_half)`` with ``z = |x - mean| / (1.4826 · MAD)``, so 0.5 (the
    project's alarm level) is ``z_half`` deviations; innovations are clipped at
    ``clip`` deviations so that an outlier barely moves the baseline.
    """

    name: ClassVar[str] = "robust_z"

    def __init__(
        self,
        alpha: float = 0.02,
        warmup: int = 30,
        clip: float = 4.0,
        z_half: float = 4.0,
        seed: int = 0,
    ) -> None:
        self.alpha = alpha
        self.warmup = warmup
        self.clip = clip
        self.z_half = z_half
        self.seed = seed
        self._c = SlotArrays(
            {"n": (0, np.int64, 0), "mean": (0, np.float64, 0.0), "mad": (0, np.float64, 0.0)}
        )

    def score_learn(self, slots: IntArray, times: FloatArray, values: FloatArray) -> FloatArray:
        out = np.zeros(slots.size, dtype=np.float64)
        ok = np.isfinite(values)
        if not ok.any():
            return out
        s, x = slots[ok], values[ok]
        self._c.ensure(int(s.max()))
        n, mean, mad = self._c["n"][s], self._c["mean"][s], self._c["mad"][s]
        sigma = 1.4826 * mad + 1e-6 * (1.0 + np.abs(mean))
        d = x - mean
        z = np.abs(d) / sigma
        z = np.minimum(z, 1e9)
        out[ok] = np.where(n >= self.warmup, z / (z + self.z_half), 0.0)
        a = np.maximum(self.alpha, 1.0 / (n + 1.0))
        dc = np.where(n >= 3, np.clip(d, -self.clip * sigma, self.clip * sigma), d)
        self._c["mean"][s] = mean + a * dc
        self._c["mad"][s] = mad + a * (np.abs(dc) - mad)
        self._c["n"][s] = n + 1
        return out

    def get_state(self) -> dict[str, Any]:
        return self._c.get_state()

    def set_state(self, state: Mapping[str, Any]) -> None:
        self._c.set_state(state)
