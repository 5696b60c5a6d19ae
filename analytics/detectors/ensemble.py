"""The ensemble detector: seasonal forecasts, calibrated tails and pattern novelty, many series at once.

Three complementary views of every series, each turned into a *surprise*
``-ln P`` by a per-series tail model (:mod:`analytics.detectors._tail`), so that one
threshold fits every series:

1. **point**: the one-step forecast error in units of the typical error.  Three
   forecasters run side by side and the one with the smallest recent error is used:
   an exponentially weighted level; a daily profile (bins sized to the sampling
   interval, up to 5 minutes) plus a fast offset; a weekly profile plus a fast offset.
   A profile forecasts only once it has learned for a whole day or week.
   The fast offset makes a new normal stop alarming within tens of readings.
2. **run**: moving averages of the same errors at two time scales (about 10 and
   about 100 readings): sustained shifts, bursts, drifts and changes of volatility
   that no single reading reveals.  Each scale has its own tail model; one reading
   adds at most ``run_cap`` typical errors to the short one (an extreme reading is
   the point view's evidence, not counted twice).
3. **novelty**: distance from a small memory of prototypes of the recent shape
   (value, short/medium/long averages, volatility, time of day) in units of the
   series' range (an online Adaptive-Resonance-style memory).  What has been seen
   before, such as a nightly batch spike, is not novel; the point view of a reading
   that is not novel is damped.

The surprises are added up (coinciding evidence counts) and mapped to a score in
[0, 1] by ``s / (s + threshold)``: 0.5 is the alarm level, the one operating point
that the live service alarms at and that ``ioc eval nab`` scores.  From the alarm
level on (``trigger`` times the threshold; below 1 a warning level would start it
earlier), later scores are damped until the series has been quiet (surprise below
``quiet`` times the threshold) for ``refractory`` readings: one incident, one alarm,
however long the incident lasts, and a quick re-arm once it is over; a reading more
than ``escalate`` times as surprising as the incident's peak so far still alarms.
Memory: about 6.6 KB per series (daily and weekly profiles, prototypes, a few dozen scalars).
Readings are scored against what was learned from earlier readings only, then
learned.  The first ``warmup`` readings of a series score 0.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np
import numpy.typing as npt

from analytics.detectors._ensemble_kernel import (
    DAY,
    DAY_BINS,
    N_PARAMS,
    P_ALPHA_LEVEL,
    P_ALPHA_RUN,
    P_ALPHA_SCALE,
    P_ALPHA_SLOW,
    P_COMBINE,
    P_DAMPING,
    P_ESCALATE,
    P_EXCESS_MEMORY,
    P_FAMILIAR_DAMPING,
    P_LEARN_AFTER,
    P_MAX_EXCESS,
    P_PRIOR_K,
    P_QUIET,
    P_RANGE_MEMORY,
    P_REFRACTORY,
    P_RHO_FLOOR,
    P_RUN_CAP,
    P_SEASON_MARGIN,
    P_SEASON_RATE,
    P_TAIL_MEMORY,
    P_TAIL_PRIOR,
    P_THRESHOLD,
    P_TIME_WEIGHT,
    P_TRIGGER,
    P_TZ,
    P_VIGILANCE,
    P_WARMUP,
    WEEK_BINS_PER_DAY,
    ensemble_steps,
)
from analytics.detectors._tail import TailModel
from analytics.engine.base import Detector, FloatArray, IntArray
from analytics.engine.slots import VALUE_LIMIT, SlotArrays

MAX_DAY_BINS = int(DAY_BINS[-1])
F8 = np.float64
F4 = np.float32
BoolArray = npt.NDArray[np.bool_]
VIEWS = ("point", "run", "slow", "novel")
# the float64 scalar columns, in the order the kernel unpacks them
F8_COLUMNS = (
    "peak",
    "t_last",
    "t_season",
    "log_dt",
    "level",
    "off_d",
    "off_w",
    "err_l",
    "err_d",
    "err_w",
    "run",
    "slow",
    "hi",
    "lo",
    "x_prev",
    "vol",
)


class EnsembleDetector(Detector):
    """Seasonal forecast errors, their recent average and shape novelty, calibrated per series.

    Parameters (all per reading unless a unit is given):

    - ``alpha_level``: weight of a new reading in the level and in the fast offsets.
    - ``season_rate``: smallest weight of a new reading in a profile bin (1/visits before).
    - ``alpha_scale``: weight in the typical absolute error of each forecaster.
    - ``alpha_run``, ``alpha_slow``: weights in the short and the long average of errors
      (the two *run* views).
    - ``run_cap``: largest error (in typical errors) one reading adds to the short run
      average: beyond it a reading is the point view's evidence, not also the run view's.
    - ``season_margin``: a seasonal forecaster is used only when its typical error is
      below this fraction of the simpler one's.
    - ``point_level``, ``run_level``, ``slow_level``: raw levels above which a view starts
      to be surprising.
    - ``tail_memory``: readings over which the tail models' exceedance rates are averaged;
      ``tail_prior``: readings' worth of prior belief (a 1 % exceedance rate) at the start.
    - ``rho_floor``: smallest exceedance rate a tail model believes (caps rarity alone);
      ``max_excess``: largest excess a tail model learns from (bounds one outlier's weight).
    - ``vigilance``: distance (fraction of the series' range) within which a shape
      matches a prototype; ``prototypes``: prototypes kept per series.
    - ``shape_alphas``: weights of the short, medium and long averages in a shape.
    - ``time_weight``: weight of the time of day in a shape (0: ignore it).
    - ``range_memory_s``: seconds over which the remembered range of the series fades.
    - ``familiar_damping``: factor on the point view when the shape is not novel.
    - ``threshold``: the surprise that maps to score 0.5; ``combine``: weight of the views
      other than the strongest in the total surprise (1: plain sum).
    - ``trigger``: fraction of ``threshold`` (the warning level) at which a refractory
      period starts.
    - ``refractory``: quiet readings after an alarm before the next alarm may start;
      until then surprises are multiplied by ``damping`` before they become scores (an
      alarm inside an incident needs ``1 / damping`` times the surprise).
    - ``quiet``: fraction of ``threshold`` below which a reading counts as quiet.
    - ``escalate``: a reading whose surprise exceeds this multiple of the incident's peak
      so far is not damped (a warning never hides a much worse alarm) and starts anew.
    - ``warmup``: readings that score 0 while the models settle; ``learn_after``: readings
      before the tail models and the shape memory start learning.
    - ``tz_offset_s``: offset of local time from UTC for the daily and weekly profiles.
    - ``seed``: kept for the common constructor signature (the detector is deterministic).
    """

    name: ClassVar[str] = "ensemble"
    # ``score_learn`` takes several readings of a slot in one call (in time order)
    sequential: ClassVar[bool] = True

    def __init__(
        self,
        alpha_level: float = 0.1,
        season_rate: float = 0.2,
        alpha_scale: float = 0.01,
        alpha_run: float = 0.1,
        alpha_slow: float = 0.01,
        run_cap: float = 3.0,
        season_margin: float = 0.9,
        point_level: float = 3.0,
        run_level: float = 1.5,
        slow_level: float = 1.2,
        tail_memory: float = 3000.0,
        tail_prior: float = 100.0,
        rho_floor: float = 1e-4,
        max_excess: float = 100.0,
        vigilance: float = 0.15,
        prototypes: int = 32,
        shape_alphas: tuple[float, ...] = (0.3, 0.05, 0.01),
        time_weight: float = 0.1,
        familiar_damping: float = 0.5,
        range_memory_s: float = 30 * DAY,
        combine: float = 1.0,
        threshold: float = 11.3,
        trigger: float = 1.0,
        refractory: int = 30,
        quiet: float = 0.5,
        escalate: float = 2.0,
        damping: float = 0.2,
        warmup: int = 100,
        learn_after: int = 20,
        tz_offset_s: float = 0.0,
        seed: int = 0,
    ) -> None:
        if (
            not 0.0 < alpha_level <= 1.0
            or not 0.0 < alpha_scale <= 1.0
            or not 0.0 < alpha_run <= 1.0
            or not 0.0 < alpha_slow <= 1.0
        ):
            raise ValueError("alpha_level, alpha_scale, alpha_run and alpha_slow must be in (0, 1]")
        if prototypes < 1 or vigilance <= 0.0 or threshold <= 0.0:
            raise ValueError("prototypes, vigilance and threshold must be positive")
        self.alpha_level = alpha_level
        self.season_rate = season_rate
        self.alpha_scale = alpha_scale
        self.alpha_run = alpha_run
        self.alpha_slow = alpha_slow
        self.run_cap = run_cap
        self.season_margin = season_margin
        self.point_level = point_level
        self.run_level = run_level
        self.slow_level = slow_level
        self.tail_memory = tail_memory
        self.tail_prior = tail_prior
        self.rho_floor = rho_floor
        self.max_excess = max_excess
        self.vigilance = vigilance
        self.prototypes = prototypes
        self.shape_alphas = tuple(shape_alphas)
        self.time_weight = time_weight
        self.familiar_damping = familiar_damping
        self.range_memory_s = range_memory_s
        self.combine = combine
        self.threshold = threshold
        self.trigger = trigger
        self.refractory = refractory
        self.quiet = quiet
        self.escalate = escalate
        self.damping = damping
        self.warmup = warmup
        self.learn_after = learn_after
        self.tz_offset_s = tz_offset_s
        self.seed = seed
        self._dims = 1 + len(self.shape_alphas) + 3
        self._tails = tuple(
            TailModel(
                key, u, tail_memory, prior_n=tail_prior, rho_floor=rho_floor, max_excess=max_excess
            )
            for key, u in (
                ("point", point_level),
                ("run", run_level),
                ("slow", slow_level),
                ("novel", 1.0),
            )
        )
        spec: dict[str, tuple[int, type, float]] = {
            "n": (0, np.int64, 0),
            "refr": (0, np.int64, 0),
            "peak": (0, F8, 0.0),
            "t_last": (0, F8, 0.0),
            "t_season": (0, F8, 0.0),
            "log_dt": (0, F8, 0.0),
            "bins": (0, np.int64, 0),
            "level": (0, F8, 0.0),
            "off_d": (0, F8, 0.0),
            "off_w": (0, F8, 0.0),
            "err_l": (0, F8, 0.0),
            "err_d": (0, F8, 0.0),
            "err_w": (0, F8, 0.0),
            "run": (0, F8, 1.0),
            "slow": (0, F8, 1.0),
            "hi": (0, F8, 0.0),
            "lo": (0, F8, 0.0),
            "x_prev": (0, F8, 0.0),
            "vol": (0, F8, 0.0),
            "day": (MAX_DAY_BINS, F4, 0.0),
            "day_n": (MAX_DAY_BINS, F4, 0.0),
            "week": (7 * WEEK_BINS_PER_DAY, F4, 0.0),
            "week_n": (7 * WEEK_BINS_PER_DAY, F4, 0.0),
            "proto": (prototypes * self._dims, F4, 0.0),
            "proto_n": (prototypes, F4, 0.0),
            "proto_t": (prototypes, F8, 0.0),
        }
        for k in range(len(self.shape_alphas)):
            spec[f"avg{k}"] = (0, F8, 0.0)
        for tail in self._tails:
            spec.update(tail.columns())
        self._s = SlotArrays(spec)
        params = np.zeros(N_PARAMS, dtype=F8)
        for pos, value in (
            (P_ALPHA_LEVEL, alpha_level),
            (P_SEASON_RATE, season_rate),
            (P_ALPHA_SCALE, alpha_scale),
            (P_ALPHA_RUN, alpha_run),
            (P_ALPHA_SLOW, alpha_slow),
            (P_RUN_CAP, run_cap),
            (P_SEASON_MARGIN, season_margin),
            (P_VIGILANCE, vigilance),
            (P_TIME_WEIGHT, time_weight),
            (P_FAMILIAR_DAMPING, familiar_damping),
            (P_RANGE_MEMORY, range_memory_s),
            (P_COMBINE, combine),
            (P_THRESHOLD, threshold),
            (P_TRIGGER, trigger),
            (P_REFRACTORY, refractory),
            (P_QUIET, quiet),
            (P_ESCALATE, escalate),
            (P_DAMPING, damping),
            (P_WARMUP, warmup),
            (P_LEARN_AFTER, learn_after),
            (P_TZ, tz_offset_s),
            (P_TAIL_MEMORY, tail_memory),
            (P_TAIL_PRIOR, tail_prior),
            (P_RHO_FLOOR, rho_floor),
            (P_MAX_EXCESS, max_excess),
            (P_EXCESS_MEMORY, self._tails[0].excess_memory),
            (P_PRIOR_K, self._tails[0].prior_k),
        ):
            params[pos] = value
        self._params = params
        self._levels = np.array([tail.u for tail in self._tails], dtype=F8)
        self._alphas = np.array(self.shape_alphas, dtype=F8)

    # -- the contract ---------------------------------------------------------------

    def score_learn(self, slots: IntArray, times: FloatArray, values: FloatArray) -> FloatArray:
        """Score then learn each reading in order; a slot may appear several times (its
        readings in time order): one call can carry a whole series."""
        slots = np.asarray(slots, dtype=np.int64)
        x_all = np.asarray(values, dtype=F8)
        t_all = np.asarray(times, dtype=F8)
        out = np.zeros(slots.size, dtype=F8)
        ok = np.isfinite(x_all) & np.isfinite(t_all)
        if not ok.any():
            return out
        every = bool(ok.all())
        idx = slots if every else slots[ok]
        if idx.min() < 0:
            raise ValueError("slots must be non-negative")
        self._s.ensure(int(idx.max()))
        t = t_all if every else t_all[ok]
        x = np.clip(x_all if every else x_all[ok], -VALUE_LIMIT, VALUE_LIMIT)
        got = np.empty(idx.size, dtype=F8)
        views = np.empty((4, idx.size), dtype=F8)
        c = self._s.cols
        ensemble_steps(
            idx,
            t,
            x,
            got,
            views,
            self._params,
            self._levels,
            self._alphas,
            (c["n"], c["refr"], c["bins"]),
            tuple(c[name] for name in F8_COLUMNS),
            tuple(c[f"avg{k}"] for k in range(len(self.shape_alphas))),
            tuple(c[f"{key}_{part}"] for key in VIEWS for part in ("rho", "mean", "sq", "k")),
            c["day"],
            c["day_n"],
            c["week"],
            c["week_n"],
            c["proto"],
            c["proto_n"],
            c["proto_t"],
        )
        self.last_views = (idx, views)  # diagnostics: which view spoke, for the last call
        if every:
            return got
        out[ok] = got
        return out

    def get_state(self) -> dict[str, Any]:
        return self._s.get_state()

    def set_state(self, state: Mapping[str, Any]) -> None:
        self._s.set_state(state)
