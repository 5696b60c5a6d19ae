"""The alarm state of many series: threshold, debounce, hold on a frozen expected range, clear.

Thresholding is not a detector's business (river's ``ThresholdFilter`` is a wrapper
too): this module turns scores into the alarm state that the live series stage
keeps, and ``ioc detect`` writes as its ``alarm`` column, with the very same code.

An episode opens after ``debounce`` readings scored at or above ``threshold``. It
stays open while readings are anomalous or lie outside the expected range frozen at
its onset (for at most ``max_hold_s``, after which the range is learned anew), and
clears after ``clear`` consecutive normal readings. The expected range is the
detector's own (``expected_range(slots)``) where it offers one, else a robust
running band: a mean and mean absolute deviation learned while no episode is open,
``band_width`` scaled deviations wide.
"""

from __future__ import annotations

import logging
import math
from collections.abc import MutableMapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from numba import njit

from analytics.engine.base import Detector, FloatArray, IntArray

logger = logging.getLogger(__name__)

BoolArray = npt.NDArray[np.bool_]
Columns = MutableMapping[str, npt.NDArray[Any]]

# the per-series columns the alarm state needs: (dtype, fill value)
ALARM_COLUMNS: dict[str, tuple[type, float]] = {
    "n": (np.int64, 0),
    "mean": (np.float64, 0.0),
    "mad": (np.float64, 0.0),
    "hits": (np.int64, 0),
    "calm": (np.int64, 0),
    "active": (np.bool_, False),
    "since": (np.float64, np.nan),
    "low": (np.float64, np.nan),
    "high": (np.float64, np.nan),
}


@dataclass(frozen=True, slots=True)
class AlarmStep:
    """What one round did to each series' alarm state."""

    anomalous: BoolArray  # score at or above the threshold
    bad: BoolArray  # anomalous, or outside the frozen range of an open episode
    opened: BoolArray
    cleared: BoolArray
    active: BoolArray  # the alarm state after this reading


@dataclass(frozen=True, slots=True)
class AlarmPolicy:
    """How scores become an alarm state (the live hysteresis); see the module docstring."""

    threshold: float = 0.5
    debounce: int = 1
    clear: int = 3
    band_alpha: float = 0.05
    band_width: float = 4.0
    band_warmup: int = 10
    max_hold_s: float = 6 * 3600.0

    def band(self, c: Columns, s: IntArray) -> tuple[FloatArray, FloatArray, BoolArray]:
        """The running band of the slots ``s``: (low, high, learned long enough)."""
        spread = self.band_width * (1.4826 * c["mad"][s] + 1e-9 * (1.0 + np.abs(c["mean"][s])))
        ready = c["n"][s] >= self.band_warmup
        return c["mean"][s] - spread, c["mean"][s] + spread, ready

    def offered(
        self, s: IntArray, detector: Detector | None
    ) -> tuple[FloatArray, FloatArray] | None:
        """The detector's own expected range of the slots ``s`` (NaN where it has none), or
        None when the detector offers no ``expected_range``."""
        offer = getattr(detector, "expected_range", None)
        if not callable(offer):
            return None
        try:
            dlo, dhi = offer(s)
            return np.asarray(dlo, dtype=np.float64), np.asarray(dhi, dtype=np.float64)
        except Exception:  # the detector's optional hook must not stop the alarms
            logger.warning("detector %s: expected_range failed", getattr(detector, "name", "?"))
            nan = np.full(s.size, np.nan)
            return nan, nan

    def step(
        self,
        c: Columns,
        s: IntArray,
        t: FloatArray,
        x: FloatArray,
        scores: FloatArray,
        detector: Detector | None = None,
        offered: tuple[FloatArray, FloatArray] | None = None,
    ) -> AlarmStep:
        """Advance the alarm state of the slots ``s`` reading by reading, in order.

        A slot may appear several times (its readings in time order) unless the
        detector offers an expected range, which is asked once per call before any
        reading: then each slot at most once per call (a live round).
        """
        s = np.asarray(s, dtype=np.int64)
        m = s.size
        if offered is None:
            offered = self.offered(s, detector)
        if offered is None:
            nan = np.full(m, np.nan)
            offered = (nan, nan)
        flags = np.zeros((5, m), dtype=np.bool_)
        alarm_steps(
            s,
            np.asarray(t, dtype=np.float64),
            np.asarray(x, dtype=np.float64),
            np.asarray(scores, dtype=np.float64),
            offered[0],
            offered[1],
            np.array(
                [
                    self.threshold,
                    self.debounce,
                    self.clear,
                    self.band_alpha,
                    self.band_width,
                    self.band_warmup,
                    self.max_hold_s,
                ],
                dtype=np.float64,
            ),
            c["n"],
            c["mean"],
            c["mad"],
            c["hits"],
            c["calm"],
            c["active"],
            c["since"],
            c["low"],
            c["high"],
            flags,
        )
        return AlarmStep(flags[0], flags[1], flags[2], flags[3], flags[4])


@njit(cache=True, error_model="numpy")
def alarm_steps(
    slots: Any,
    times: Any,
    values: Any,
    scores: Any,
    offered_lo: Any,
    offered_hi: Any,
    p: Any,
    n_c: Any,
    mean_c: Any,
    mad_c: Any,
    hits_c: Any,
    calm_c: Any,
    active_c: Any,
    since_c: Any,
    low_c: Any,
    high_c: Any,
    flags: Any,
) -> None:
    """The alarm state machine, one reading at a time (``flags``: anomalous, bad, opened,
    cleared, active per reading)."""
    threshold, debounce, clear = p[0], p[1], p[2]
    band_alpha, band_width, band_warmup, max_hold_s = p[3], p[4], p[5], p[6]
    for i in range(slots.size):
        j = slots[i]
        t = times[i]
        x = values[i]
        n, mean, mad = n_c[j], mean_c[j], mad_c[j]
        spread = band_width * (1.4826 * mad + 1e-9 * (1.0 + abs(mean)))
        lo, hi = mean - spread, mean + spread
        ready = n >= band_warmup
        if math.isfinite(offered_lo[i]) and math.isfinite(offered_hi[i]):
            lo, hi, ready = offered_lo[i], offered_hi[i], True
        if not ready:
            lo, hi = -np.inf, np.inf
        active = active_c[j]
        anom = scores[i] >= threshold
        outside = active and (x < low_c[j] or x > high_c[j])
        bad = anom or outside
        calm = 0 if bad else calm_c[j] + 1
        hits = hits_c[j]
        if anom:
            hits += 1
        elif calm >= clear:
            hits = 0
        opened = not active and hits >= debounce
        cleared = active and calm >= clear
        now = (active or opened) and not cleared
        calm_c[j] = calm
        hits_c[j] = 0 if cleared else hits
        active_c[j] = now
        if opened:
            since_c[j] = t
            low_c[j] = lo
            high_c[j] = hi
        elif not now:
            since_c[j] = np.nan
        hold_over = now and t - since_c[j] > max_hold_s
        if not now or hold_over:  # learn the band
            a = max(band_alpha, 1.0 / (n + 1.0))
            sigma = 1.4826 * mad + 1e-9 * (1.0 + abs(mean))
            d = x - mean
            if n >= 3:
                d = min(max(d, -4 * sigma), 4 * sigma)
            mean_c[j] = mean + a * d
            mad_c[j] = mad + a * (abs(d) - mad)
            n_c[j] = n + 1
        if hold_over:
            low_c[j] = lo
            high_c[j] = hi
        flags[0, i] = anom
        flags[1, i] = bad
        flags[2, i] = opened
        flags[3, i] = cleared
        flags[4, i] = now


def alarm_columns(size: int) -> dict[str, npt.NDArray[Any]]:
    """Fresh alarm columns for ``size`` series (offline use; the live stage grows its own)."""
    return {k: np.full(size, fill, dtype=dt) for k, (dt, fill) in ALARM_COLUMNS.items()}
