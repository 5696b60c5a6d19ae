"""``ioc detect`` as seen from outside: the alarm column is the live alarm state, several
value columns give one device score, through the real command."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from analytics.detectors import make_detector
from analytics.engine.base import Batch, Context
from analytics.eval.offline import live_policy, read_table
from analytics.stages.series import SeriesStage
from ioc.cli import main as ioc_main

T0 = 1_441_065_600.0  # 2015-09-01 00:00 UTC
STEP = 300.0


def stamp(i: int) -> str:
    return str(np.datetime64(int(T0 + STEP * i), "s")).replace("T", " ")


def level_drop(n: int = 1500, at: int = 1000, seed: int = 3) -> np.ndarray:
    """Noise around 20, then a drop to 5 that lasts 40 readings, then back to 20."""
    rng = np.random.default_rng(seed)
    x = 20 + rng.normal(0, 1, n)
    x[at : at + 40] -= 15
    return x


def read_rows(path: Path, delimiter: str = ",") -> list[list[str]]:
    with path.open(newline="") as fh:
        return list(csv.reader(fh, delimiter=delimiter))


def test_the_alarm_column_is_the_live_series_alarm(tmp_path: Path) -> None:
    x = level_drop()
    src, dst = tmp_path / "in.csv", tmp_path / "out.csv"
    src.write_text(
        "timestamp,value\n" + "".join(f"{stamp(i)},{float(v)!r}\n" for i, v in enumerate(x))
    )
    assert ioc_main(["detect", "--input", str(src), "--output", str(dst)]) == 0
    rows = read_rows(dst)
    assert rows[0] == ["timestamp", "value", "anomaly_score", "alarm"]
    assert [r[0] for r in rows[1:]] == [stamp(i) for i in range(x.size)]
    alarm = np.array([int(r[3]) for r in rows[1:]])
    assert set(alarm.tolist()) <= {0, 1}
    # the live series stage on the same readings, with the live settings
    policy = live_policy()
    stage = SeriesStage(make_detector(), threshold=policy.threshold, clear=policy.clear, exclude=())
    live = np.zeros(x.size, dtype=int)
    state = 0
    for i, v in enumerate(x):
        batch = Batch(["s1"], ["pm25"], np.array([T0 + STEP * i]), np.array([v]))
        for sig in stage.process(batch, Context()).signals:
            state = int(sig.active)
        live[i] = state
    np.testing.assert_array_equal(alarm, live)
    # it alarms at the drop and holds while the level stays outside the frozen range
    starts = np.flatnonzero(np.diff(alarm, prepend=0) == 1)
    assert np.count_nonzero(starts < 1000) <= 1  # noise may alarm once in 1,000 readings
    on = np.flatnonzero(alarm[1000:]) + 1000
    assert on[0] <= 1003
    assert alarm[on[0] : 1040].all()
    assert not alarm[1060:].any()


def test_a_stricter_live_threshold_is_the_one_detect_uses(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    x = level_drop()
    src = tmp_path / "in.csv"
    src.write_text(
        "timestamp,value\n" + "".join(f"{stamp(i)},{float(v)!r}\n" for i, v in enumerate(x))
    )
    monkeypatch.setenv("IOC_ANALYTICS_SERIES_THRESHOLD", "0.999")
    assert ioc_main(["detect", "--input", str(src), "--output", str(tmp_path / "o.csv")]) == 0
    assert {r[3] for r in read_rows(tmp_path / "o.csv")[1:]} == {"0"}


def device_rows(n: int = 1200, at: int = 900, seed: int = 5) -> np.ndarray:
    """Three metrics of one device; the second jumps at ``at`` for 30 readings."""
    rng = np.random.default_rng(seed)
    base = rng.normal(0, 1, (n, 3)) + np.array([50.0, 10.0, 3.0])
    base[at : at + 30, 1] += 12
    return base


def test_several_value_columns_give_one_device_row(tmp_path: Path) -> None:
    x = device_rows()
    src, dst = tmp_path / "device.csv", tmp_path / "out.csv"
    lines = ["timestamp,temperature,vibration,current"]
    lines += [f"{stamp(i)},{a:.4f},{b:.4f},{c:.4f}" for i, (a, b, c) in enumerate(x)]
    src.write_text("\n".join(lines) + "\n")
    assert ioc_main(["detect", "--input", str(src), "--output", str(dst)]) == 0
    rows = read_rows(dst)
    assert rows[0] == ["timestamp", "anomaly_score", "alarm"]
    assert len(rows) == x.shape[0] + 1
    score = np.array([float(r[1]) for r in rows[1:]])
    alarm = np.array([int(r[2]) for r in rows[1:]])
    assert np.all((score >= 0) & (score <= 1))
    assert np.count_nonzero(np.diff(alarm[:900], prepend=0) == 1) <= 2
    assert 900 <= np.flatnonzero(alarm[900:])[0] + 900 <= 903
    assert alarm[900:930].mean() > 0.9


def test_semicolon_files_with_a_datetime_column_and_label_columns(tmp_path: Path) -> None:
    x = device_rows()
    src, dst = tmp_path / "bench.csv", tmp_path / "out.csv"
    lines = ["datetime;Accelerometer1RMS;Pressure;Temperature;anomaly;changepoint"]
    for i, (a, b, c) in enumerate(x):
        label = int(900 <= i < 930)
        lines.append(f"{stamp(i)};{a:.4f};{b:.4f};{c:.4f};{label}.0;{int(i == 900)}.0")
    src.write_text("\n".join(lines) + "\n")
    table = read_table(src)
    assert table.names == ["Accelerometer1RMS", "Pressure", "Temperature"]  # not the labels
    assert ioc_main(["detect", "--input", str(src), "--output", str(dst)]) == 0
    rows = read_rows(dst)
    assert rows[0] == ["timestamp", "anomaly_score", "alarm"]
    assert [r[0] for r in rows[1:]] == [stamp(i) for i in range(x.shape[0])]


def test_the_installed_command_and_bad_input(tmp_path: Path) -> None:
    src, dst = tmp_path / "in.csv", tmp_path / "out.csv"
    src.write_text("timestamp,value\n" + "".join(f"{stamp(i)},{i % 7}\n" for i in range(400)))
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    done = subprocess.run(
        [sys.executable, "-m", "ioc", "detect", "--input", str(src), "--output", str(dst)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert read_rows(dst)[0] == ["timestamp", "value", "anomaly_score", "alarm"]
    assert len(read_rows(dst)) == 401
    bad = tmp_path / "bad.csv"
    bad.write_text("when,value\n1,2\n")
    done = subprocess.run(
        [sys.executable, "-m", "ioc", "detect", "--input", str(bad)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert done.returncode == 2
    assert "timestamp" in done.stderr
