"""``ioc detect`` throughput: one long series through the live engine, against a baseline.

Scores one series (a generated daily cycle with noise, or ``--input`` a
``timestamp,value`` CSV) with the default detector and the live alarm state, the way
``ioc detect`` does (one call for the whole series), and, in the same run, the way it
did before (one call per reading, as a live round of one series): the ratio is the
speed-up of the compiled step. Also prints the end-to-end time of the command
(reading the CSV, scoring, writing the result).

    python -m benchmarks.detect --rows 20000
    ioc bench detect --input nyc_taxi.csv
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from analytics.detectors import make_detector
from analytics.detectors.alarm import AlarmPolicy, alarm_columns
from analytics.engine.base import FloatArray
from analytics.eval.offline import Table, detect_main, read_table, score_table
from benchmarks import save_results


def generated(rows: int, seed: int = 0) -> Table:
    """A 5-minute series with a daily cycle, noise and a few spikes."""
    rng = np.random.default_rng(seed)
    t: FloatArray = 1.44e9 + 300.0 * np.arange(rows, dtype=np.float64)
    x = 50 + 20 * np.sin(2 * np.pi * t / 86_400.0) + rng.normal(0, 2, rows)
    x[rng.integers(rows // 3, rows, 5)] += 40
    stamps = [str(s).replace("T", " ") for s in t.astype("datetime64[s]")]
    return Table(stamps, t, ["value"], x[:, None])


def per_reading(table: Table, policy: AlarmPolicy) -> float:
    """Seconds to score ``table`` one reading per call (the baseline)."""
    detector = make_detector()
    columns = alarm_columns(1)
    slot = np.zeros(1, dtype=np.int64)
    x = table.values[:, 0]
    started = time.perf_counter()
    for i in range(len(table)):
        t, v = table.times[i : i + 1], x[i : i + 1]
        s = detector.score_learn(slot, t, v)
        policy.step(columns, slot, t, v, s, detector)
    return time.perf_counter() - started


def run(table: Table, repeat: int = 3) -> dict[str, float]:
    policy = AlarmPolicy()
    score_table(table, make_detector(), policy)  # load the compiled step
    best = min(_timed(lambda: score_table(table, make_detector(), policy)) for _ in range(repeat))
    base = per_reading(table, policy)
    with tempfile.TemporaryDirectory() as tmp:
        src, dst = Path(tmp) / "in.csv", Path(tmp) / "out.csv"
        src.write_text(
            "timestamp,value\n"
            + "".join(
                f"{s},{v!r}\n"
                for s, v in zip(table.timestamps, table.values[:, 0].tolist(), strict=True)
            )
        )
        started = time.perf_counter()
        detect_main(["--input", str(src), "--output", str(dst)])
        command = time.perf_counter() - started
    rows = len(table)
    result = {
        "rows": float(rows),
        "one_call_rows_per_s": rows / best,
        "per_reading_rows_per_s": rows / base,
        "ratio": base / best,
        "command_rows_per_s": rows / command,
        "cpus": float(os.cpu_count() or 1),
    }
    print(f"ioc detect throughput, one series of {rows:,} rows, {os.cpu_count()} CPUs")
    print(f"  one call per series (ioc detect)   {result['one_call_rows_per_s']:>14,.0f} rows/s")
    print(f"  one call per reading (baseline)    {result['per_reading_rows_per_s']:>14,.0f} rows/s")
    print(f"  ratio                              {result['ratio']:>14.1f}x")
    print(
        f"  the command end to end             {result['command_rows_per_s']:>14,.0f} rows/s "
        "(CSV in, CSV out, compiled step loaded from cache)"
    )
    return result


def _timed(fn: Callable[[], object]) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="ioc bench detect", description=__doc__)
    parser.add_argument("--rows", type=int, default=20_000, help="rows of the generated series")
    parser.add_argument("--input", type=Path, default=None, help="a timestamp,value CSV instead")
    args = parser.parse_args(argv)
    table = read_table(args.input) if args.input else generated(args.rows)
    result = run(table)
    save_results("detect", result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
