"""Throughput benchmark of the detector bank: rounds of one reading for each of many series."""

from __future__ import annotations

import time

import numpy as np

from analytics.detectors import DETECTORS, make_detector
from benchmarks import save_results


def measure(name: str, n_series: int, n_steps: int, seed: int = 0) -> tuple[float, float]:
    """Readings per second of ``score_learn`` over ``n_steps`` rounds of ``n_series`` series.

    Returns (per wall-clock second, per CPU second of this process): on a shared machine
    the second is the one-core figure.
    """
    rng = np.random.default_rng(seed)
    detector = make_detector(name)
    slots = np.arange(n_series, dtype=np.int64)
    base = rng.normal(50.0, 10.0, n_series)
    t0 = 1.7e9
    warm = 3
    wall = cpu = 0.0
    for step in range(warm + n_steps):
        times = np.full(n_series, t0 + 60.0 * step)
        values = base + rng.normal(0.0, 1.0, n_series)
        w0, c0 = time.perf_counter(), time.process_time()
        detector.score_learn(slots, times, values)
        if step >= warm:
            wall += time.perf_counter() - w0
            cpu += time.process_time() - c0
    readings = n_series * n_steps
    return readings / wall, readings / max(cpu, 1e-9)


def run(n_series: int = 10_000, n_steps: int = 50) -> dict[str, float]:
    """Print and return readings per CPU second of every registered detector.

    The baseline measured in the same run is ``ewma_zscore`` (a handful of numpy
    operations per round); the target for ``ensemble`` is 200,000 readings/s.
    """
    results = {name: measure(name, n_series, n_steps) for name in sorted(DETECTORS)}
    base = results["ewma_zscore"][1] if "ewma_zscore" in results else None
    print(
        f"detector bank: {n_series:,} series x {n_steps} rounds, one reading per series per round"
    )
    print(f"  {'detector':<14} {'readings/CPU s':>16} {'readings/wall s':>16}  vs ewma_zscore")
    for name, (wall, cpu) in results.items():
        ratio = f"{cpu / base:.3f}" if base else "-"
        print(f"  {name:<14} {cpu:>16,.0f} {wall:>16,.0f}  {ratio}")
    return {name: cpu for name, (_, cpu) in results.items()}


def main(argv: list[str] | None = None) -> int:
    """``ioc bench detectors [--quick]``."""
    quick = "--quick" in (argv or [])
    n_series, n_steps = (1_000, 20) if quick else (10_000, 50)
    rates = run(n_series=n_series, n_steps=n_steps)
    save_results("detectors", {"series": n_series, "steps": n_steps, "readings_per_cpu_s": rates})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
