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
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from analytics.detectors import DETECTORS, make_detector
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


def read_series(path: Path) -> Series:
    """Read a ``timestamp,value`` CSV (header required; unparsable values become NaN)."""
    with path.open(newline="") as fh:
        reader = csv.reader(fh)
        header = next(reader, None)
        if header is None or [h.strip().lower() for h in header[:2]] != ["timestamp", "value"]:
            raise ValueError(f"{path}: expected a 'timestamp,value' header, got {header!r}")
        stamps: list[str] = []
        values: list[float] = []
        for row in reader:
            if not row or not row[0].strip():
                continue
            stamps.append(row[0])
            values.append(_parse_value(row[1]) if len(row) > 1 else math.nan)
    return Series(stamps, parse_times(stamps), np.array(values, dtype=np.float64))


def run_detector(
    detector: Detector, series: Sequence[tuple[FloatArray, FloatArray]]
) -> list[FloatArray]:
    """Score several series at once, each in its own slot, one reading per series per step.

    Step ``k`` hands the detector the k-th reading of every series that is that long,
    exactly as the live bank does with a round of readings.
    """
    lengths = np.array([len(v) for _, v in series], dtype=np.int64)
    out = [np.zeros(n, dtype=np.float64) for n in lengths]
    if lengths.size == 0:
        return out
    longest = int(lengths.max())
    times = np.zeros((len(series), longest), dtype=np.float64)
    values = np.zeros((len(series), longest), dtype=np.float64)
    for k, (t, v) in enumerate(series):
        times[k, : len(t)] = t
        values[k, : len(v)] = v
    scores = np.zeros((len(series), longest), dtype=np.float64)
    all_slots = np.arange(len(series), dtype=np.int64)
    for step in range(longest):
        slots = all_slots[lengths > step] if step >= lengths.min() else all_slots
        scores[slots, step] = detector.score_learn(slots, times[slots, step], values[slots, step])
    for k, n in enumerate(lengths):
        out[k] = scores[k, :n].copy()
    return out


def write_scores(path: Path | None, series: Series, scores: FloatArray) -> None:
    """Write ``timestamp,value,anomaly_score`` (NAB's result format), to stdout when no path."""
    fh = sys.stdout if path is None else path.open("w", newline="")
    try:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(["timestamp", "value", "anomaly_score"])
        for stamp, value, score in zip(series.timestamps, series.values, scores, strict=True):
            writer.writerow(
                [stamp, repr(float(value)) if math.isfinite(value) else "", f"{score:.6f}"]
            )
    finally:
        if path is not None:
            fh.close()


def detect_main(argv: list[str]) -> int:
    """``ioc detect --input FILE.csv --output FILE.csv``: score one series, NAB format."""
    parser = argparse.ArgumentParser(
        prog="ioc detect",
        description="Score a timestamp,value CSV with a streaming detector; writes "
        "timestamp,value,anomaly_score (one row per input row).",
    )
    parser.add_argument(
        "--input", required=True, type=Path, help="CSV with a timestamp,value header"
    )
    parser.add_argument("--output", type=Path, default=None, help="result CSV (default: stdout)")
    parser.add_argument(
        "--detector",
        default="ensemble",
        choices=sorted(DETECTORS),
        help="detector (default: ensemble)",
    )
    args = parser.parse_args(argv)
    try:
        series = read_series(args.input)
    except (OSError, ValueError) as exc:
        print(f"ioc detect: {exc}", file=sys.stderr)
        return 2
    (scores,) = run_detector(make_detector(args.detector), [(series.times, series.values)])
    write_scores(args.output, series, scores)
    if args.output is not None:
        print(f"scored {len(series)} rows -> {args.output}", file=sys.stderr)
    return 0
