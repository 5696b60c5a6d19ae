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
[0, 1] by ``s / (s + threshold)``: 0.5 is the alarm level.  From the warning level
(``trigger`` times the threshold, score 0.375) on, later scores are damped until the
series has been quiet (surprise below ``quiet`` times the threshold) for
``refractory`` readings: one incident, one alarm (or one warning), however long the
incident lasts, and a quick re-arm once it is over; a reading more than ``escalate``
times as surprising as the incident's peak so far still alarms.
Memory: about 6.6 KB per series (daily and weekly profiles, prototypes, a few dozen scalars).
Readings are scored against what was learned from earlier readings only, then
learned.  The first ``warmup`` readings of a series score 0.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np
import numpy.typing as npt

from analytics.detectors._slots import VALUE_LIMIT, SlotArrays
from analytics.detectors._tail import TailModel
from analytics.engine.base import Detector, FloatArray, IntArray

DAY = 86_400.0
WEEK = 7 * DAY
DAY_BINS = np.array([24, 48, 96, 144, 288], dtype=np.int64)  # bins of a daily profile
MAX_DAY_BINS = int(DAY_BINS[-1])
WEEK_BINS_PER_DAY = 48
INTERVAL_READINGS = 32  # readings used to learn the sampling interval
F8 = np.float64
F4 = np.float32
BoolArray = npt.NDArray[np.bool_]
Index = IntArray | slice


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
      until then scores are multiplied by ``damping``.
    - ``quiet``: fraction of ``threshold`` below which a reading counts as quiet.
    - ``escalate``: a reading whose surprise exceeds this multiple of the incident's peak
      so far is not damped (a warning never hides a much worse alarm) and starts anew.
    - ``warmup``: readings that score 0 while the models settle; ``learn_after``: readings
      before the tail models and the shape memory start learning.
    - ``tz_offset_s``: offset of local time from UTC for the daily and weekly profiles.
    - ``seed``: kept for the common constructor signature (the detector is deterministic).
    """

    name: ClassVar[str] = "ensemble"

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
        threshold: float = 19.0,
        trigger: float = 0.6,
        refractory: int = 30,
        quiet: float = 0.3,
        escalate: float = 2.0,
        damping: float = 0.5,
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

    # -- the contract ---------------------------------------------------------------

    def score_learn(self, slots: IntArray, times: FloatArray, values: FloatArray) -> FloatArray:
        slots = np.asarray(slots, dtype=np.int64)
        x_all = np.asarray(values, dtype=F8)
        t_all = np.asarray(times, dtype=F8)
        out = np.zeros(slots.size, dtype=F8)
        ok = np.isfinite(x_all) & np.isfinite(t_all)
        if not ok.any():
            return out
        idx = slots[ok]
        if idx.min() < 0:
            raise ValueError("slots must be non-negative")
        self._s.ensure(int(idx.max()))
        with np.errstate(all="ignore"):
            # a sorted run of consecutive slots (a full round of the bank) is read as views
            first_slot, last_slot = int(idx[0]), int(idx[-1])
            run = last_slot - first_slot + 1 == idx.size and bool(np.all(np.diff(idx) == 1))
            sel: Index = slice(first_slot, last_slot + 1) if run else idx
            score = self._step(idx, sel, t_all[ok], np.clip(x_all[ok], -VALUE_LIMIT, VALUE_LIMIT))
        out[ok] = np.nan_to_num(np.clip(score, 0.0, 1.0), nan=0.0)
        return out

    def get_state(self) -> dict[str, Any]:
        return self._s.get_state()

    def set_state(self, state: Mapping[str, Any]) -> None:
        self._s.set_state(state)

    # -- one round: every slot at most once -------------------------------------------

    def _step(self, idx: IntArray, sel: Index, t: FloatArray, x: FloatArray) -> FloatArray:
        c = self._s.cols
        n = c["n"][sel]
        first = n == 0
        a_n = 1.0 / (n + 1.0)
        live = (n >= self.learn_after).astype(F8)

        # sampling interval (geometric mean of the first gaps) -> bins of the profiles
        dt = np.where(first, 0.0, t - c["t_last"][sel])
        log_dt = c["log_dt"][sel]
        learn_dt = (n >= 1) & (n <= INTERVAL_READINGS) & (dt > 0)
        log_dt = np.where(
            learn_dt, log_dt + (np.log(np.maximum(dt, 1e-3)) - log_dt) / np.maximum(n, 1), log_dt
        )
        bins = c["bins"][sel]
        fix = n == INTERVAL_READINGS + 1
        if fix.any():
            per_day = DAY / np.maximum(np.exp(log_dt[fix]), 1.0)
            k = np.searchsorted(DAY_BINS, per_day, side="right") - 1
            bins[fix] = DAY_BINS[np.clip(k, 0, DAY_BINS.size - 1)]
        seasonal = bins > 0
        # a profile forecasts only once it has seen a whole period (a day, a week): before
        # that its bins hold only this period's earlier readings, a different forecaster
        t_season = np.where(fix, t, c["t_season"][sel])
        watched = t - t_season
        nb = np.maximum(bins, 1)
        local = t + self.tz_offset_s
        bd = (np.floor(np.mod(local, DAY) / DAY * nb).astype(np.int64)) % nb
        nw = np.minimum(nb, WEEK_BINS_PER_DAY)
        bw = (np.floor(np.mod(local, WEEK) / DAY * nw).astype(np.int64)) % (7 * nw)

        # three forecasts; the one with the smallest typical error is used
        day, day_n, week, week_n = c["day"], c["day_n"], c["week"], c["week_n"]
        pd, pd_n = day[idx, bd].astype(F8), day_n[idx, bd]
        pw, pw_n = week[idx, bw].astype(F8), week_n[idx, bw]
        level = np.where(first, x, c["level"][sel])
        off_d, off_w = c["off_d"][sel], c["off_w"][sel]
        has_d = seasonal & (pd_n > 0) & (watched >= DAY)
        has_w = seasonal & (pw_n > 0) & (watched >= WEEK)
        e_l = x - level
        e_d = np.where(has_d, x - pd - off_d, e_l)
        e_w = np.where(has_w, x - pw - off_w, e_l)
        err_l, err_d, err_w = c["err_l"][sel], c["err_d"][sel], c["err_w"][sel]
        use_d = seasonal & (err_d < err_l * self.season_margin)
        use_w = seasonal & (err_w < np.minimum(err_l, err_d) * self.season_margin)
        err = np.where(use_w, e_w, np.where(use_d, e_d, e_l))
        typical = np.where(use_w, err_w, np.where(use_d, err_d, err_l))
        floor = 0.05 * err_l + 1e-9 * np.abs(level) + 1e-12
        r_point = np.where(first, 0.0, np.minimum(np.abs(err) / np.maximum(typical, floor), 1e6))
        # the short run view sees a reading's error only up to ``run_cap``: a single
        # extreme reading is the point view's evidence, not also the run view's
        run = c["run"][sel] + self.alpha_run * (np.minimum(r_point, self.run_cap) - c["run"][sel])
        slow = c["slow"][sel] + self.alpha_slow * (np.minimum(r_point, 10.0) - c["slow"][sel])

        # the range of the series (slowly forgetting) for the shape memory
        hi = np.where(first, x, c["hi"][sel])
        lo = np.where(first, x, c["lo"][sel])
        novelty, novel = self._novelty(idx, sel, x, local, n, first, hi, lo, live)

        point_tail, run_tail, slow_tail, novel_tail = self._tails
        s_point = point_tail.surprise_learn(self._s, sel, r_point, n, live)
        s_point = np.where(novel, s_point, s_point * self.familiar_damping)
        s_run = run_tail.surprise_learn(self._s, sel, run, n, live)
        s_slow = slow_tail.surprise_learn(self._s, sel, slow, n, live)
        s_novel = novel_tail.surprise_learn(self._s, sel, novelty, n, live)
        views = np.stack([s_point, s_run, s_slow, s_novel])
        self.last_views = (idx, views)  # diagnostics: which view spoke, for the last round
        top = views.max(axis=0)
        surprise = top + self.combine * (views.sum(axis=0) - top)

        warm = n >= self.warmup
        score = np.where(warm, surprise / (surprise + self.threshold), 0.0)
        refr = c["refr"][sel]
        # ... unless the incident gets markedly worse than its peak so far
        peak = c["peak"][sel]
        worse = (refr > 0) & (surprise > self.escalate * peak)
        fire = warm & (surprise >= self.threshold * self.trigger) & ((refr == 0) | worse)
        score = np.where((refr > 0) & ~worse, score * self.damping, score)
        c["peak"][sel] = np.where(
            fire, surprise, np.where(refr > 0, np.maximum(peak, surprise), 0.0)
        )
        # the refractory period counts quiet readings only: it outlasts the incident
        calm = surprise < self.threshold * self.quiet
        c["refr"][sel] = np.where(
            fire, self.refractory, np.where(calm, np.maximum(refr - 1, 0), refr)
        )

        # learn
        a = np.maximum(self.alpha_level, a_n)
        a_err = np.maximum(self.alpha_scale, a_n)
        c["level"][sel] = level + a * e_l
        c["off_d"][sel] = np.where(has_d, off_d + a * (x - pd - off_d), 0.0)
        c["off_w"][sel] = np.where(has_w, off_w + a * (x - pw - off_w), 0.0)
        c["err_l"][sel] = err_l + a_err * (np.abs(e_l) - err_l)
        c["err_d"][sel] = err_d + a_err * (np.abs(e_d) - err_d)
        c["err_w"][sel] = err_w + a_err * (np.abs(e_w) - err_w)
        if seasonal.any():
            si, xs = idx[seasonal], x[seasonal]
            sbd, sbw = bd[seasonal], bw[seasonal]
            g = np.maximum(self.season_rate, 1.0 / (pd_n[seasonal] + 1.0))
            day[si, sbd] = pd[seasonal] + g * (xs - pd[seasonal])
            day_n[si, sbd] = pd_n[seasonal] + 1
            g = np.maximum(self.season_rate, 1.0 / (pw_n[seasonal] + 1.0))
            week[si, sbw] = pw[seasonal] + g * (xs - pw[seasonal])
            week_n[si, sbw] = pw_n[seasonal] + 1
        forget = np.clip(dt / self.range_memory_s, 0.0, 1.0)
        c["hi"][sel] = np.maximum(x, hi - forget * np.maximum(hi - level, 0.0))
        c["lo"][sel] = np.minimum(x, lo + forget * np.maximum(level - lo, 0.0))
        c["run"][sel] = run
        c["slow"][sel] = slow
        c["log_dt"][sel] = log_dt
        c["bins"][sel] = bins
        c["t_season"][sel] = t_season
        c["t_last"][sel] = t
        c["n"][sel] = n + 1
        return score

    def _novelty(
        self,
        idx: IntArray,
        sel: Index,
        x: FloatArray,
        local: FloatArray,
        n: IntArray,
        first: BoolArray,
        hi: FloatArray,
        lo: FloatArray,
        live: FloatArray,
    ) -> tuple[FloatArray, BoolArray]:
        """Distance of the current shape from the nearest prototype (in vigilances); learn it."""
        c = self._s.cols
        span = np.maximum(hi - lo, 1e-9 * (np.abs(hi) + 1.0))
        x_prev = np.where(first, x, c["x_prev"][sel])
        coords = [(x - lo) / span]
        for k, a in enumerate(self.shape_alphas):
            avg = np.where(first, x, c[f"avg{k}"][sel])
            avg = avg + a * (x - avg)
            c[f"avg{k}"][sel] = avg
            coords.append((avg - lo) / span)
        vol = np.where(first, 0.0, c["vol"][sel])
        vol = vol + 0.1 * (np.abs(x - x_prev) - vol)
        c["vol"][sel] = vol
        c["x_prev"][sel] = x
        angle = 2.0 * np.pi * np.mod(local, DAY) / DAY
        coords += [vol / span, self.time_weight * np.cos(angle), self.time_weight * np.sin(angle)]
        shape = np.clip(np.stack(coords), -1e6, 1e6).astype(F4)  # (dims, m)
        # prototypes are stored dimension-major, (slot, dim, prototype): the distance is
        # a running maximum over a few contiguous (m, prototypes) planes
        proto = c["proto"].reshape(c["proto"].shape[0], self._dims, self.prototypes)
        proto_n, proto_t = c["proto_n"], c["proto_t"]
        mine = proto[sel]
        count = proto_n[sel]
        dist = np.abs(mine[:, 0, :] - shape[0][:, None])
        plane = np.empty_like(dist)
        for d in range(1, self._dims):
            np.subtract(mine[:, d, :], shape[d][:, None], out=plane)
            np.abs(plane, out=plane)
            np.maximum(dist, plane, out=dist)
        dist = np.where(count > 0, dist, np.inf)
        best = np.argmin(dist, axis=1)
        rows = np.arange(idx.size)
        nearest = dist[rows, best].astype(F8)
        learning = live > 0
        matched = nearest <= self.vigilance
        novel = learning & ~matched
        novelty = np.where(learning & np.isfinite(nearest), nearest / self.vigilance, 0.0)
        # learn: move the matching prototype, or replace the least used (then oldest) one
        weakest = np.argmin(np.where(count > 0, count * 1e9 + proto_t[sel], -1.0), axis=1)
        k = np.where(matched, best, weakest)
        old = mine[rows, :, k]  # (m, dims)
        seen = np.where(matched, count[rows, k], 0.0)
        rate = (1.0 / np.minimum(seen + 1.0, 50.0)).astype(F4)
        now = shape.T
        proto[idx, :, k] = np.where(matched[:, None], old + rate[:, None] * (now - old), now)
        proto_n[idx, k] = seen + 1.0
        proto_t[idx, k] = n.astype(F8)
        return novelty, novel
