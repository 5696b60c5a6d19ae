"""Throughput of the domain stages (AQI, fire risk, cameras) against plain per-reading Python.

``run()`` builds a synthetic city, streams it through each stage in
micro-batches and prints readings per second, next to a baseline measured in
the same run: the same computation written the obvious way, one reading and
one station at a time (dicts, loops, one ``score_samples`` call per window).
"""

from __future__ import annotations

import argparse
import math
import time
from collections import defaultdict
from collections.abc import Callable, Iterator

import numpy as np

from analytics.engine.base import Batch, Context
from analytics.stages import aqi, camera, fire
from analytics.stages.aqi_stage import AqiStage
from analytics.stages.camera_stage import CameraStage
from analytics.stages.fire_stage import FireRiskStage
from benchmarks import save_results

_CAMERA_METRICS = list(camera.FEATURES)


def _city(
    sensors: int,
    metrics: list[str],
    start: float,
    seconds: float,
    step: float,
    seed: int,
    per_batch: int = 1,
) -> Iterator[Batch]:
    """Every sensor reports every metric every ``step`` seconds; ``per_batch`` steps a batch."""
    rng = np.random.default_rng(seed)
    names = [f"s{i:05d}" for i in range(sensors)]
    level = np.random.default_rng(0).uniform(10, 80, (sensors, len(metrics)))  # fixed per sensor
    per = sensors * len(metrics)
    sensor_col = [names[i] for i in np.repeat(np.arange(sensors), len(metrics))]
    metric_col = metrics * sensors
    steps = np.arange(start, start + seconds, step)
    for k in range(0, steps.size, per_batch):
        ts = steps[k : k + per_batch]
        h = ((ts + camera.TZ_OFFSET_S) % 86_400) / 3600
        wave = 1 + 0.5 * np.sin(2 * np.pi * h / 24)
        values = level[None] * wave[:, None, None] * rng.lognormal(0, 0.1, (ts.size, *level.shape))
        yield Batch(
            sensor_col * ts.size, metric_col * ts.size, np.repeat(ts, per), values.reshape(-1)
        )


# readings/s of each measurement of the current run, by its label (saved as the results)
RATES: dict[str, float] = {}


def _rate(name: str, n: int, seconds: float, base: float | None = None) -> float:
    rate = n / seconds if seconds > 0 else float("inf")
    RATES[name] = rate
    ratio = f"  x{rate / base:,.1f} vs baseline" if base else ""
    print(f"  {name:<44} {rate:>14,.0f} readings/s{ratio}")
    return rate


def _stream(
    stage: AqiStage | FireRiskStage | CameraStage, batches: list[Batch]
) -> tuple[int, float, int]:
    ctx = Context()
    n = out = 0
    t0 = time.perf_counter()
    for b in batches:
        o = stage.process(b, ctx)
        n += len(b)
        out += len(o.derived) + len(o.signals)
    return n, time.perf_counter() - t0, out


# ---------------------------------------------------------------------------
# baselines: one reading at a time


class _NaiveAqi:
    """Hourly means in dicts, NowCast and breakpoints in Python loops, station by station."""

    def __init__(self) -> None:
        self.open: dict[str, int] = {}
        self.acc: dict[str, dict[str, list[float]]] = defaultdict(dict)
        self.hours: dict[str, dict[int, dict[str, float]]] = defaultdict(dict)
        self.edges: dict[str, tuple[list[float], list[float]]] = {
            p: ([*t.c_lo.tolist(), float(t.c_hi[-1])], [*t.i_lo.tolist(), float(t.i_hi[-1])])
            for p, t in aqi.VN_TABLES.items()
        }
        self.emitted = 0

    def _index(self, table: str, c: float) -> float:
        bp, ii = self.edges[table]
        if c >= bp[-1]:
            return 500.0
        for i in range(len(bp) - 1):
            if bp[i] <= c < bp[i + 1]:
                return (ii[i + 1] - ii[i]) / (bp[i + 1] - bp[i]) * (c - bp[i]) + ii[i]
        return math.nan

    def _nowcast(self, c: list[float | None]) -> float | None:
        if sum(x is not None for x in c[:3]) < 2:
            return None
        vals = [x for x in c if x is not None]
        hi = max(vals)
        w = max(min(vals) / hi, 0.5) if hi > 0 else 1.0
        num = den = 0.0
        for i, x in enumerate(c):
            if x is not None:
                num += w**i * x
                den += w**i
        return num / den

    def _close(self, s: str, h: int) -> None:
        self.hours[s][h] = {p: v[0] / v[1] for p, v in self.acc[s].items()}
        self.acc[s] = {}
        hist = self.hours[s]
        subs = []
        for p in ("pm25", "pm10"):
            nc = self._nowcast([hist.get(h - i, {}).get(p) for i in range(12)])
            if nc is not None:
                subs.append(self._index(p, nc))
        if not subs:
            return
        for p, table in (("o3", "o3_1h"), ("no2", "no2"), ("co", "co"), ("so2", "so2")):
            if p in hist[h]:
                subs.append(self._index(table, hist[h][p]))
        self.emitted += int(max(subs) >= 0)
        for old in [k for k in hist if k < h - 24]:
            del hist[old]

    def process(self, b: Batch) -> None:
        for s, m, t, v in zip(b.sensor, b.metric, b.time.tolist(), b.value.tolist(), strict=True):
            h = int(t // 3600)
            cur = self.open.get(s)
            if cur is not None and h > cur:
                self._close(s, cur)
            self.open[s] = h if cur is None else max(cur, h)
            a = self.acc[s].setdefault(m, [0.0, 0.0])
            a[0] += v
            a[1] += 1


def _time_naive(process: Callable[[Batch], None], batches: list[Batch]) -> tuple[int, float]:
    n = 0
    t0 = time.perf_counter()
    for b in batches:
        process(b)
        n += len(b)
    return n, time.perf_counter() - t0


# ---------------------------------------------------------------------------


def bench_aqi(stations: int, hours: int) -> None:
    print(f"AQI: {stations} stations x 6 pollutants every minute, {hours} h")
    for per_batch in (1, 10):
        batches = list(
            _city(
                stations, list(aqi.POLLUTANTS), 1_790_000_000.0, hours * 3600.0, 60.0, 1, per_batch
            )
        )
        size = len(batches[0])
        naive = _NaiveAqi()
        n, dt = _time_naive(naive.process, batches)
        base = _rate(f"baseline (per reading), batches of {size}", n, dt)
        n, dt, out = _stream(AqiStage(), batches)
        _rate(f"AqiStage, batches of {size} ({out} out)", n, dt, base)


def bench_fire(stations: int, days: int) -> None:
    print(
        f"fire risk: {stations} weather stations x 4 metrics every 10 min, {days} days, hourly batches"
    )
    metrics = ["temperature", "humidity", "wind_speed", "rainfall"]
    batches = list(_city(stations, metrics, 1_790_000_000.0, days * 86_400.0, 600.0, 2, 6))

    p: dict[str, float] = defaultdict(float)

    def naive(b: Batch) -> None:  # per reading: the same windows, then one station-day at a time
        day: dict[tuple[str, int], dict[str, float]] = {}
        for s, m, t, v in zip(b.sensor, b.metric, b.time.tolist(), b.value.tolist(), strict=True):
            local = t + camera.TZ_OFFSET_S
            d = int((local - 48_600) // 86_400) + 1
            if m == "rainfall" or 45_000 <= local % 86_400 < 48_600:
                day.setdefault((s, d), {})[m] = v
        for (s, _), obs in day.items():
            if "temperature" in obs and "humidity" in obs:
                t13, rh = obs["temperature"], obs["humidity"]
                e = fire.MAGNUS_E0 * math.exp(fire.MAGNUS_A * t13 / (fire.MAGNUS_B + t13))
                p[s] = (
                    0.0
                    if obs.get("rainfall", 0.0) >= 5
                    else p[s] + max(t13 * e * (1 - rh / 100), 0)
                )

    n, dt = _time_naive(naive, batches)
    base = _rate("baseline (per reading, per station)", n, dt)
    n, dt, out = _stream(
        FireRiskStage(areas=None, stations=[f"s{i:05d}" for i in range(stations)]), batches
    )
    _rate(f"FireRiskStage ({out} derived readings/signals)", n, dt, base)


def bench_camera(cams: int, days: int) -> None:
    print(
        f"cameras: {cams} cameras x 4 metrics every minute; {days} day(s) of history, then 2 h scored"
    )
    start = 1_790_000_000.0 - 1_790_000_000.0 % 86_400
    stage = CameraStage(auto_refit=False, history_days=max(days, 1), seed=0)
    history = list(_city(cams, _CAMERA_METRICS, start, days * 86_400.0, 60.0, 3, 5))
    n, dt, _ = _stream(stage, history)
    _rate("CameraStage, warm-up (no model yet)", n, dt)
    t0 = time.perf_counter()
    stage.refit(block=True)
    model = stage.model
    assert model is not None
    print(
        f"  fit: {time.perf_counter() - t0:.1f} s for {cams} cameras x {days} day(s) ({model.n_train} windows used)"
    )
    scored = list(_city(cams, _CAMERA_METRICS, start + days * 86_400.0, 2 * 3600.0, 60.0, 4))
    # baseline: score each completed window on its own, as a per-camera loop would
    cams_idx = np.arange(min(cams, 300), dtype=np.int64)
    w = np.full(cams_idx.size, int((start + days * 86_400.0) // stage.window_s))
    x = np.random.default_rng(5).uniform(10, 60, (cams_idx.size, 4))
    t0 = time.perf_counter()
    for i in range(cams_idx.size):
        model.judge(cams_idx[i : i + 1], w[i : i + 1], x[i : i + 1])
    per_window = (time.perf_counter() - t0) / cams_idx.size
    readings_per_window = 4 * stage.window_s / 60  # 4 metrics each minute
    base = _rate(
        "baseline (one score_samples call per window)", int(readings_per_window), per_window
    )
    n, dt, out = _stream(stage, scored)
    _rate(f"CameraStage, scoring, 1-minute batches ({out} signals)", n, dt, base)


def run(argv: list[str] | None = None) -> int:
    """Print the domain stages' throughput; ``--quick`` for a smaller city."""
    ap = argparse.ArgumentParser(prog="analytics_domain", description=__doc__)
    ap.add_argument("--quick", action="store_true", help="a small city, a few seconds")
    args = ap.parse_args(argv)
    RATES.clear()
    if args.quick:
        bench_aqi(50, 6)
        bench_fire(20, 7)
        bench_camera(200, 1)
    else:
        bench_aqi(200, 24)
        bench_fire(50, 30)
        bench_camera(1873, 1)
    save_results("analytics_domain", {"quick": args.quick, "readings_per_s": RATES})
    return 0


main = run

if __name__ == "__main__":
    raise SystemExit(run())
