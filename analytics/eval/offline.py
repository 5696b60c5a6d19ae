"""Offline scoring: read ``timestamp,value`` CSVs, run a detector over them, ``ioc detect``.

The offline path runs the very code of the live path: the detector's
``score_learn``, one step of many series at a time (each file is a slot).
"""

from __future__ import annotations

import argparse
import csv
import logging
import math
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from analytics.detectors import DETECTORS, make_detector
from analytics.detectors.alarm import AlarmPolicy, BoolArray, alarm_columns
from analytics.detectors.pca import StreamingPCA
from analytics.engine.base import Detector, FloatArray

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Series:
    """One ``timestamp,value`` file: the timestamps as written, epoch seconds, values."""

    timestamps: list[str]
    times: FloatArray
    values: FloatArray

    def __len__(self) -> int:
        return len(self.timestamps)


def parse_time(text: str) -> float:
    """Epoch seconds of an ISO 8601 timestamp (naive = UTC) or an epoch number (s or ms)."""
    text = text.strip()
    try:
        number = float(text)
    except ValueError:
        pass
    else:
        return number / 1000.0 if abs(number) > 1e11 else number
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def parse_times(texts: Sequence[str]) -> FloatArray:
    """Vectorised ``parse_time`` for the common case of naive ISO timestamps."""
    if not texts:
        return np.zeros(0, dtype=np.float64)
    sample = texts[0].strip()
    naive_iso = len(sample) >= 10 and sample[4] == "-" and not _has_zone(sample)
    if naive_iso:
        try:
            stamps = np.array([t.strip() for t in texts], dtype="datetime64[us]")
            return stamps.astype(np.int64).astype(np.float64) / 1e6
        except ValueError:
            pass
    return np.array([parse_time(t) for t in texts], dtype=np.float64)


def _has_zone(text: str) -> bool:
    tail = text[10:]
    return tail.endswith("Z") or "+" in tail or (tail.count("-") > 0)


def _parse_value(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        return math.nan


TIME_COLUMNS = ("timestamp", "datetime")
# columns of labelled benchmark files that are answers, not metrics
LABEL_COLUMNS = frozenset({"anomaly", "changepoint", "label", "is_anomaly"})


@dataclass(frozen=True, slots=True)
class Table:
    """A CSV of readings: the time column as written, epoch seconds, one column per metric."""

    timestamps: list[str]
    times: FloatArray
    names: list[str]  # metric columns, in file order
    values: FloatArray  # (rows, metrics), NaN where unparsable or missing

    def __len__(self) -> int:
        return len(self.timestamps)

    @property
    def univariate(self) -> bool:
        return self.names == ["value"]


def read_table(path: Path) -> Table:
    """Read ``timestamp,<m1>,<m2>,...`` (``,`` or ``;`` separated, ``timestamp`` or ``datetime``).

    Label columns (``anomaly``, ``changepoint``, ...) are not metrics and are skipped.
    """
    with path.open(newline="") as fh:
        first = fh.readline()
        delimiter = ";" if first.count(";") > first.count(",") else ","
        header = [h.strip() for h in next(csv.reader([first], delimiter=delimiter), [])]
        lower = [h.lower() for h in header]
        time_col = next((lower.index(c) for c in TIME_COLUMNS if c in lower), None)
        if time_col is None:
            raise ValueError(
                f"{path}: expected a header with a 'timestamp' (or 'datetime') column and "
                f"value columns, e.g. 'timestamp,value'; got {header!r}"
            )
        cols = [
            k
            for k, h in enumerate(lower)
            if k != time_col and h and h not in LABEL_COLUMNS and not h.startswith("unnamed")
        ]
        if not cols:
            raise ValueError(f"{path}: no value column beside {header[time_col]!r}")
        stamps: list[str] = []
        rows: list[list[float]] = []
        for row in csv.reader(fh, delimiter=delimiter):
            if len(row) <= time_col or not row[time_col].strip():
                continue
            stamps.append(row[time_col])
            rows.append([_parse_value(row[k]) if k < len(row) else math.nan for k in cols])
    values = np.array(rows, dtype=np.float64).reshape(len(rows), len(cols))
    return Table(stamps, parse_times(stamps), [header[k] for k in cols], values)


def read_series(path: Path) -> Series:
    """Read a ``timestamp,value`` CSV (header required; unparsable values become NaN)."""
    table = read_table(path)
    if not table.univariate:
        raise ValueError(f"{path}: expected a 'timestamp,value' header, got {table.names!r}")
    return Series(table.timestamps, table.times, table.values[:, 0].copy())


def run_detector(
    detector: Detector, series: Sequence[tuple[FloatArray, FloatArray]]
) -> list[FloatArray]:
    """Score several series at once, each in its own slot, one reading per series per step.

    Step ``k`` hands the detector the k-th reading of every series that is that long,
    exactly as the live bank does with a round of readings.
    """
    return run_bank(detector, series)[0]


def run_bank(
    detector: Detector,
    series: Sequence[tuple[FloatArray, FloatArray]],
    policy: AlarmPolicy | None = None,
) -> tuple[list[FloatArray], list[BoolArray]]:
    """``run_detector`` plus the live alarm state of every reading under ``policy``.

    The scores and the alarm state come from the live code: the detector's
    ``score_learn`` and ``AlarmPolicy.step``, one round of all series per step.
    Readings that are not finite are neither scored nor alarmed (as in the live stage).
    """
    lengths = np.array([len(v) for _, v in series], dtype=np.int64)
    if lengths.size == 0:
        return [], []
    longest = int(lengths.max())
    times = np.zeros((len(series), longest), dtype=np.float64)
    values = np.full((len(series), longest), np.nan, dtype=np.float64)
    for k, (t, v) in enumerate(series):
        times[k, : len(t)] = t
        values[k, : len(v)] = v
    scores = np.zeros((len(series), longest), dtype=np.float64)
    alarms = np.zeros((len(series), longest), dtype=bool)
    columns = alarm_columns(len(series)) if policy is not None else {}
    all_slots = np.arange(len(series), dtype=np.int64)
    finite = np.isfinite(values) & np.isfinite(times)
    offers = policy is not None and callable(getattr(detector, "expected_range", None))
    if getattr(detector, "sequential", False) and not offers:
        # the detector takes a slot's readings in order within one call: every round of
        # the bank in one call, round after round (the order a live feed would bring)
        step, slot = np.nonzero(finite.T)
        t, x = times[slot, step], values[slot, step]
        got = np.clip(np.nan_to_num(detector.score_learn(slot, t, x)), 0.0, 1.0)
        scores[slot, step] = got
        if policy is not None:
            alarms[slot, step] = policy.step(columns, slot, t, x, got, detector).active
    else:
        for k in range(longest):
            slots = all_slots[finite[:, k]]
            if slots.size == 0:
                continue
            t, x = times[slots, k], values[slots, k]
            got = np.clip(np.nan_to_num(detector.score_learn(slots, t, x)), 0.0, 1.0)
            scores[slots, k] = got
            if policy is not None:
                alarms[slots, k] = policy.step(columns, slots, t, x, got, detector).active
    # an unscored reading keeps the alarm state of the reading before it
    if policy is not None:
        held = np.where(finite, np.arange(longest), -1)
        held = np.maximum.accumulate(held, axis=1)
        alarms = np.where(held >= 0, np.take_along_axis(alarms, np.maximum(held, 0), 1), False)
    return (
        [scores[k, :n].copy() for k, n in enumerate(lengths)],
        [alarms[k, :n].copy() for k, n in enumerate(lengths)],
    )


def score_table(
    table: Table, detector: Detector | StreamingPCA, policy: AlarmPolicy
) -> tuple[FloatArray, BoolArray]:
    """Anomaly score and live alarm state of every row of ``table``.

    One metric: the detector's score and the series' alarm state. Several metrics with
    a univariate detector: each metric is a series of the bank (as the live series
    stage watches a device's metrics), the row's score is the highest of its metrics'
    and the device is alarming while any of its metrics is. Several metrics with the
    multivariate detector: one score per row for the device's metrics together, and its
    alarm state under the same policy (a device has no expected range to hold on).
    """
    if len(table) == 0:
        return np.zeros(0, dtype=np.float64), np.zeros(0, dtype=bool)
    if isinstance(detector, StreamingPCA):
        return _score_device(table, detector, policy)
    series = [(table.times, table.values[:, k]) for k in range(len(table.names))]
    scores, alarms = run_bank(detector, series, policy)
    return np.max(np.stack(scores), axis=0), np.any(np.stack(alarms), axis=0)


def _score_device(
    table: Table, detector: StreamingPCA, policy: AlarmPolicy
) -> tuple[FloatArray, BoolArray]:
    slot = np.zeros(1, dtype=np.int64)
    rows = len(table)
    scores = np.zeros(rows, dtype=np.float64)
    for i in range(rows):
        scores[i] = detector.score_learn(slot, table.times[i : i + 1], table.values[i : i + 1])[0]
    scored = np.isfinite(table.times) & np.isfinite(table.values).any(axis=1)
    alarms = np.zeros(rows, dtype=bool)
    pos = np.flatnonzero(scored)
    step = policy.step(
        alarm_columns(1),
        np.zeros(pos.size, dtype=np.int64),
        table.times[pos],
        np.zeros(pos.size),
        scores[pos],
    )
    alarms[pos] = step.active
    held = np.maximum.accumulate(np.where(scored, np.arange(rows), -1))
    return scores, np.where(held >= 0, alarms[np.maximum(held, 0)], False)


def write_scores(
    path: Path | None, table: Table, scores: FloatArray, alarms: BoolArray | None = None
) -> None:
    """Write ``timestamp,value,anomaly_score[,alarm]`` for one series (NAB's result format
    plus the alarm state), ``timestamp,anomaly_score,alarm`` for several metrics; to
    stdout when no path."""
    fh = sys.stdout if path is None else path.open("w", newline="")
    try:
        score_text = [f"{v:.6f}" for v in scores.tolist()]
        flags = ["1" if a else "0" for a in alarms.tolist()] if alarms is not None else None
        if table.univariate:
            value_text = [repr(v) if math.isfinite(v) else "" for v in table.values[:, 0].tolist()]
            head = ["timestamp", "value", "anomaly_score"]
            cols: list[list[str]] = [table.timestamps, value_text, score_text]
        else:
            head = ["timestamp", "anomaly_score"]
            cols = [table.timestamps, score_text]
        if flags is not None:
            head.append("alarm")
            cols.append(flags)
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(head)
        writer.writerows(zip(*cols, strict=True))
    finally:
        if path is not None:
            fh.close()


def live_policy() -> AlarmPolicy:
    """The alarm policy of the live series stage, from ``IOC_ANALYTICS_SERIES_*``."""
    from analytics.config import AnalyticsSettings  # settings are read only when asked for

    settings = AnalyticsSettings()
    return AlarmPolicy(
        threshold=settings.analytics_series_threshold,
        debounce=settings.analytics_series_debounce,
        clear=settings.analytics_series_clear,
    )


def detect_main(argv: list[str]) -> int:
    """``ioc detect --input FILE.csv --output FILE.csv``: scores and the live alarm state."""
    parser = argparse.ArgumentParser(
        prog="ioc detect",
        description="Score a CSV of readings with the live streaming detector. "
        "'timestamp,value' in: 'timestamp,value,anomaly_score,alarm' out. Several value "
        "columns ('timestamp,<m1>,<m2>,...', or ';'-separated with a 'datetime' column) "
        "in: 'timestamp,anomaly_score,alarm' out. alarm is 1 while the live service "
        "would be alarming (IOC_ANALYTICS_SERIES_THRESHOLD, _DEBOUNCE, _CLEAR).",
    )
    parser.add_argument(
        "--input", required=True, type=Path, help="CSV with a timestamp (or datetime) column"
    )
    parser.add_argument("--output", type=Path, default=None, help="result CSV (default: stdout)")
    parser.add_argument(
        "--detector",
        default=None,
        choices=sorted([*DETECTORS, StreamingPCA.name]),
        help=f"detector (default: ensemble for one value column, {StreamingPCA.name} for "
        "several; ensemble on several scores each metric alone)",
    )
    args = parser.parse_args(argv)
    try:
        table = read_table(args.input)
        policy = live_policy()
    except (OSError, ValueError) as exc:
        print(f"ioc detect: {exc}", file=sys.stderr)
        return 2
    name = args.detector or ("ensemble" if len(table.names) == 1 else StreamingPCA.name)
    detector: Detector | StreamingPCA = (
        StreamingPCA(len(table.names)) if name == StreamingPCA.name else make_detector(name)
    )
    started = time.perf_counter()
    scores, alarms = score_table(table, detector, policy)
    seconds = time.perf_counter() - started
    write_scores(args.output, table, scores, alarms)
    if args.output is not None:
        episodes = int(np.count_nonzero(np.diff(alarms.astype(np.int8), prepend=0) == 1))
        print(
            f"scored {len(table)} rows x {len(table.names)} metrics in {seconds:.2f} s, "
            f"{episodes} alarm episodes at threshold {policy.threshold:g} -> {args.output}",
            file=sys.stderr,
        )
    return 0
