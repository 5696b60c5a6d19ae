"""The ensemble detector's compiled step: one reading at a time, any mix of slots, in order.

One loop over readings serves every caller: a live round (many slots, one reading
each), a batched evaluation, and ``ioc detect`` on one long series (one slot, every
reading in one call). Python's per-call cost is paid once per call, not once per
reading. The state lives in the detector's ``SlotArrays`` columns, updated in place.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from numba import njit

DAY = 86_400.0
WEEK = 7 * DAY
DAY_BINS = np.array([24, 48, 96, 144, 288], dtype=np.int64)
WEEK_BINS_PER_DAY = 48
INTERVAL_READINGS = 32

# positions in the parameter vector
(
    P_ALPHA_LEVEL,
    P_SEASON_RATE,
    P_ALPHA_SCALE,
    P_ALPHA_RUN,
    P_ALPHA_SLOW,
    P_RUN_CAP,
    P_SEASON_MARGIN,
    P_VIGILANCE,
    P_TIME_WEIGHT,
    P_FAMILIAR_DAMPING,
    P_RANGE_MEMORY,
    P_COMBINE,
    P_THRESHOLD,
    P_TRIGGER,
    P_REFRACTORY,
    P_QUIET,
    P_ESCALATE,
    P_DAMPING,
    P_WARMUP,
    P_LEARN_AFTER,
    P_TZ,
    P_TAIL_MEMORY,
    P_TAIL_PRIOR,
    P_RHO_FLOOR,
    P_MAX_EXCESS,
    P_EXCESS_MEMORY,
    P_PRIOR_K,
) = range(27)
N_PARAMS = 27


@njit(cache=True, error_model="numpy")
def _tail(
    r: float,
    u: float,
    rho_a: Any,
    mean_a: Any,
    sq_a: Any,
    k_a: Any,
    j: int,
    n: int,
    live: bool,
    p: Any,
) -> float:
    """Surprise ``-ln P(R >= r)`` under slot ``j``'s exponential tail above ``u``; then learn."""
    rho, mean, sq = rho_a[j], mean_a[j], sq_a[j]
    ratio = mean * mean / max(sq - mean * mean, 1e-12)
    scale = max(0.5 * mean * (ratio + 1.0), 1e-9)
    excess = max(r - u, 0.0)
    hit = r > u
    out = -math.log(max(rho, p[P_RHO_FLOOR])) + excess / scale if hit else 0.0
    if live:
        a = max(1.0 / p[P_TAIL_MEMORY], 1.0 / (n + p[P_TAIL_PRIOR]))
        rho_a[j] = rho + a * ((1.0 if hit else 0.0) - rho)
        if hit:
            k = k_a[j]
            ak = max(1.0 / p[P_EXCESS_MEMORY], 1.0 / (k + p[P_PRIOR_K]))
            clipped = min(excess, p[P_MAX_EXCESS])
            mean_a[j] = mean + ak * (clipped - mean)
            sq_a[j] = sq + ak * (clipped * clipped - sq)
            k_a[j] = k + 1.0
    return out


@njit(cache=True, error_model="numpy")
def ensemble_steps(
    slots: Any,
    times: Any,
    values: Any,
    out: Any,
    views: Any,
    p: Any,
    levels: Any,
    alphas: Any,
    ints: Any,
    f8: Any,
    avgs: Any,
    tails: Any,
    day: Any,
    day_n: Any,
    week: Any,
    week_n: Any,
    proto: Any,
    proto_n: Any,
    proto_t: Any,
) -> None:
    """Score then learn every reading ``i`` of slot ``slots[i]`` in order; scores into ``out``.

    ``ints`` = (n, refr, bins); ``f8`` = (peak, t_last, t_season, log_dt, level, off_d,
    off_w, err_l, err_d, err_w, run, slow, hi, lo, x_prev, vol); ``avgs`` one column per
    shape average; ``tails`` (rho, mean, sq, k) for the point, run, slow, novel views;
    ``levels`` the views' raw levels; ``views`` gets each reading's four surprises.
    """
    n_c, refr_c, bins_c = ints
    (
        peak_c,
        t_last_c,
        t_season_c,
        log_dt_c,
        level_c,
        off_d_c,
        off_w_c,
        err_l_c,
        err_d_c,
        err_w_c,
        run_c,
        slow_c,
        hi_c,
        lo_c,
        x_prev_c,
        vol_c,
    ) = f8
    n_avg = alphas.size
    dims = 1 + n_avg + 3
    n_proto = proto_n.shape[1]
    coords = np.empty(dims, dtype=np.float32)
    thr = p[P_THRESHOLD]
    vig = p[P_VIGILANCE]
    for i in range(slots.size):
        j = slots[i]
        t = times[i]
        x = values[i]
        n = n_c[j]
        first = n == 0
        a_n = 1.0 / (n + 1.0)
        live = n >= p[P_LEARN_AFTER]

        # sampling interval -> bins of the profiles
        dt = 0.0 if first else t - t_last_c[j]
        log_dt = log_dt_c[j]
        if n >= 1 and n <= INTERVAL_READINGS and dt > 0:
            log_dt = log_dt + (math.log(max(dt, 1e-3)) - log_dt) / max(n, 1)
        bins = bins_c[j]
        fix = n == INTERVAL_READINGS + 1
        if fix:
            per_day = DAY / max(math.exp(log_dt), 1.0)
            k = int(np.searchsorted(DAY_BINS, per_day, side="right")) - 1
            bins = DAY_BINS[min(max(k, 0), DAY_BINS.size - 1)]
        seasonal = bins > 0
        t_season = t if fix else t_season_c[j]
        watched = t - t_season
        nb = max(bins, 1)
        local = t + p[P_TZ]
        bd = int(math.floor((local % DAY) / DAY * nb)) % nb  # noqa: RUF046 (numba)
        nw = min(nb, WEEK_BINS_PER_DAY)
        bw = int(math.floor((local % WEEK) / DAY * nw)) % (7 * nw)  # noqa: RUF046 (numba)

        # three forecasts; the one with the smallest typical error is used
        pd = np.float64(day[j, bd])
        pd_n = day_n[j, bd]
        pw = np.float64(week[j, bw])
        pw_n = week_n[j, bw]
        level = x if first else level_c[j]
        off_d = off_d_c[j]
        off_w = off_w_c[j]
        has_d = seasonal and pd_n > 0 and watched >= DAY
        has_w = seasonal and pw_n > 0 and watched >= WEEK
        e_l = x - level
        e_d = x - pd - off_d if has_d else e_l
        e_w = x - pw - off_w if has_w else e_l
        err_l, err_d, err_w = err_l_c[j], err_d_c[j], err_w_c[j]
        use_d = seasonal and err_d < err_l * p[P_SEASON_MARGIN]
        use_w = seasonal and err_w < min(err_l, err_d) * p[P_SEASON_MARGIN]
        if use_w:
            err, typical = e_w, err_w
        elif use_d:
            err, typical = e_d, err_d
        else:
            err, typical = e_l, err_l
        floor = 0.05 * err_l + 1e-9 * abs(level) + 1e-12
        r_point = 0.0 if first else min(abs(err) / max(typical, floor), 1e6)
        run = run_c[j] + p[P_ALPHA_RUN] * (min(r_point, p[P_RUN_CAP]) - run_c[j])
        slow = slow_c[j] + p[P_ALPHA_SLOW] * (min(r_point, 10.0) - slow_c[j])

        # shape novelty against the prototypes of the slot
        hi = x if first else hi_c[j]
        lo = x if first else lo_c[j]
        span = max(hi - lo, 1e-9 * (abs(hi) + 1.0))
        x_prev = x if first else x_prev_c[j]
        coords[0] = min(max((x - lo) / span, -1e6), 1e6)
        for d in range(n_avg):
            avg = x if first else avgs[d][j]
            avg = avg + alphas[d] * (x - avg)
            avgs[d][j] = avg
            coords[1 + d] = min(max((avg - lo) / span, -1e6), 1e6)
        vol = 0.0 if first else vol_c[j]
        vol = vol + 0.1 * (abs(x - x_prev) - vol)
        vol_c[j] = vol
        x_prev_c[j] = x
        angle = 2.0 * math.pi * (local % DAY) / DAY
        coords[n_avg + 1] = min(max(vol / span, -1e6), 1e6)
        coords[n_avg + 2] = p[P_TIME_WEIGHT] * math.cos(angle)
        coords[n_avg + 3] = p[P_TIME_WEIGHT] * math.sin(angle)
        best = 0
        nearest = np.inf
        weakest = 0
        weakest_key = np.inf
        for q in range(n_proto):
            count = proto_n[j, q]
            key = np.float64(count * np.float32(1e9)) + proto_t[j, q] if count > 0 else -1.0
            if key < weakest_key:
                weakest_key = key
                weakest = q
            if count <= 0:
                continue
            dist = np.float32(0.0)
            for d in range(dims):
                dist = max(dist, abs(proto[j, d * n_proto + q] - coords[d]))
            if dist < nearest:
                nearest = np.float64(dist)
                best = q
        matched = nearest <= vig
        novel = live and not matched
        novelty = nearest / vig if live and math.isfinite(nearest) else 0.0
        q = best if matched else weakest
        seen = proto_n[j, q] if matched else np.float32(0.0)
        rate = np.float32(1.0 / min(seen + 1.0, 50.0))
        for d in range(dims):
            if matched:
                old = proto[j, d * n_proto + q]
                proto[j, d * n_proto + q] = old + rate * (coords[d] - old)
            else:
                proto[j, d * n_proto + q] = coords[d]
        proto_n[j, q] = seen + 1.0
        proto_t[j, q] = np.float64(n)

        # four views, each calibrated by its tail model
        s_point = _tail(r_point, levels[0], tails[0], tails[1], tails[2], tails[3], j, n, live, p)
        if not novel:
            s_point = s_point * p[P_FAMILIAR_DAMPING]
        s_run = _tail(run, levels[1], tails[4], tails[5], tails[6], tails[7], j, n, live, p)
        s_slow = _tail(slow, levels[2], tails[8], tails[9], tails[10], tails[11], j, n, live, p)
        s_novel = _tail(
            novelty, levels[3], tails[12], tails[13], tails[14], tails[15], j, n, live, p
        )
        views[0, i] = s_point
        views[1, i] = s_run
        views[2, i] = s_slow
        views[3, i] = s_novel
        top = max(max(s_point, s_run), max(s_slow, s_novel))
        surprise = top + p[P_COMBINE] * (s_point + s_run + s_slow + s_novel - top)

        # one incident, one alarm: the refractory period
        warm = n >= p[P_WARMUP]
        refr = refr_c[j]
        peak = peak_c[j]
        worse = refr > 0 and surprise > p[P_ESCALATE] * peak
        fire = warm and surprise >= thr * p[P_TRIGGER] and (refr == 0 or worse)
        damped = surprise * p[P_DAMPING] if refr > 0 and not worse else surprise
        score = damped / (damped + thr) if warm else 0.0
        if fire:
            peak_c[j] = surprise
        elif refr > 0:
            peak_c[j] = max(peak, surprise)
        else:
            peak_c[j] = 0.0
        if fire:
            refr_c[j] = int(p[P_REFRACTORY])
        elif surprise < thr * p[P_QUIET]:
            refr_c[j] = max(refr - 1, 0)
        out[i] = min(max(score, 0.0), 1.0) if math.isfinite(score) else 0.0

        # learn
        a = max(p[P_ALPHA_LEVEL], a_n)
        a_err = max(p[P_ALPHA_SCALE], a_n)
        level_c[j] = level + a * e_l
        off_d_c[j] = off_d + a * (x - pd - off_d) if has_d else 0.0
        off_w_c[j] = off_w + a * (x - pw - off_w) if has_w else 0.0
        err_l_c[j] = err_l + a_err * (abs(e_l) - err_l)
        err_d_c[j] = err_d + a_err * (abs(e_d) - err_d)
        err_w_c[j] = err_w + a_err * (abs(e_w) - err_w)
        if seasonal:
            g = max(p[P_SEASON_RATE], 1.0 / (pd_n + 1.0))
            day[j, bd] = pd + g * (x - pd)
            day_n[j, bd] = pd_n + 1
            g = max(p[P_SEASON_RATE], 1.0 / (pw_n + 1.0))
            week[j, bw] = pw + g * (x - pw)
            week_n[j, bw] = pw_n + 1
        forget = min(max(dt / p[P_RANGE_MEMORY], 0.0), 1.0)
        hi_c[j] = max(x, hi - forget * max(hi - level, 0.0))
        lo_c[j] = min(x, lo + forget * max(level - lo, 0.0))
        run_c[j] = run
        slow_c[j] = slow
        log_dt_c[j] = log_dt
        bins_c[j] = bins
        t_season_c[j] = t_season
        t_last_c[j] = t
        n_c[j] = n + 1
