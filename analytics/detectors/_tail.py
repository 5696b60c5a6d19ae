"""Peaks-over-threshold tail model: turns a raw score into a surprise ``-ln P(R >= r)`` per slot."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from analytics.engine.base import FloatArray, IntArray
from analytics.engine.slots import SlotArrays


@dataclass(frozen=True, slots=True)
class TailModel:
    """How one raw score of a detector is calibrated, the same way for every series.

    Above the level ``u`` the excesses follow an exponential tail (a generalised Pareto
    with shape 0, its scale from the first two moments of the excesses); the rate
    ``rho = P(R > u)`` is exponentially weighted over about ``memory`` readings with a
    prior worth ``prior_n`` readings, the excess moments over ``excess_memory`` exceedances.
    ``rho`` never goes below ``rho_floor``: a few thousand readings cannot tell a
    1-in-10,000 event from a 1-in-1,000 one, so rarity alone must not make an alarm.
    Readings at or below ``u`` are not surprising at all (surprise 0).
    """

    key: str
    u: float
    memory: float = 1000.0
    excess_memory: float = 100.0
    prior_n: float = 100.0
    prior_k: float = 5.0
    prior_rho: float = 0.01
    rho_floor: float = 0.002
    max_excess: float = 30.0

    def columns(self) -> dict[str, tuple[int, type, float]]:
        return {
            f"{self.key}_rho": (0, np.float64, self.prior_rho),
            f"{self.key}_mean": (0, np.float64, 1.0),
            f"{self.key}_sq": (0, np.float64, 2.0),
            f"{self.key}_k": (0, np.float64, 0.0),
        }

    def surprise_learn(
        self, s: SlotArrays, idx: IntArray | slice, r: FloatArray, n: IntArray, live: FloatArray
    ) -> FloatArray:
        """Surprise of ``r`` under the tail seen so far; then learn ``r`` where ``live``."""
        c = s.cols
        rho = c[f"{self.key}_rho"][idx]
        mean = c[f"{self.key}_mean"][idx]
        sq = c[f"{self.key}_sq"][idx]
        # generalised Pareto scale by the method of moments, shape held at 0
        ratio = mean * mean / np.maximum(sq - mean * mean, 1e-12)
        scale = np.maximum(0.5 * mean * (ratio + 1.0), 1e-9)
        excess = np.maximum(r - self.u, 0.0)
        hit = r > self.u
        out = np.where(hit, -np.log(np.maximum(rho, self.rho_floor)) + excess / scale, 0.0)
        learn = live > 0
        a = np.where(learn, np.maximum(1.0 / self.memory, 1.0 / (n + self.prior_n)), 0.0)
        c[f"{self.key}_rho"][idx] = rho + a * (hit - rho)
        k = c[f"{self.key}_k"][idx]
        learn_hit = learn & hit
        ak = np.where(
            learn_hit, np.maximum(1.0 / self.excess_memory, 1.0 / (k + self.prior_k)), 0.0
        )
        clipped = np.minimum(excess, self.max_excess)
        c[f"{self.key}_mean"][idx] = mean + ak * (clipped - mean)
        c[f"{self.key}_sq"][idx] = sq + ak * (clipped * clipped - sq)
        c[f"{self.key}_k"][idx] = k + learn_hit
        return out
