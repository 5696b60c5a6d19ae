"""``ioc detect`` and ``ioc eval nab``: CSV in, NAB-format scores out, the live detector code."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from analytics.detectors import make_detector
from analytics.eval import cli as evaluation
from analytics.eval import scenario
from analytics.eval.offline import parse_time, parse_times, read_series, run_detector
from ioc.cli import main as ioc_main


def write_series(path: Path, n: int = 600, spike: int | None = 450, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    start = np.datetime64("2015-09-01T00:00:00")
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["timestamp", "value"])
        for i in range(n):
            value = 20 + rng.normal(0, 1) + (60 if i == spike else 0)
            w.writerow(
                [str(start + np.timedelta64(300 * i, "s")).replace("T", " "), f"{value:.3f}"]
            )


def test_parse_time_formats() -> None:
    assert parse_time("2015-09-01 00:05:00") == 1441065900.0
    assert parse_time("2015-09-01T07:05:00+07:00") == 1441065900.0
    assert parse_time("2015-09-01T00:05:00Z") == 1441065900.0
    assert parse_time("1441065900") == 1441065900.0
    assert parse_time("1441065900000") == 1441065900.0  # epoch milliseconds
    naive = parse_times(["2015-09-01 00:05:00", "2015-09-01 00:10:00.000000"])
    assert naive.tolist() == [1441065900.0, 1441066200.0]
    zoned = parse_times(["2015-09-01T07:05:00+07:00", "2015-09-01T00:10:00Z"])
    assert zoned.tolist() == [1441065900.0, 1441066200.0]


def test_detect_writes_one_scored_row_per_input_row(tmp_path: Path) -> None:
    src, dst = tmp_path / "in.csv", tmp_path / "out.csv"
    write_series(src)
    assert ioc_main(["detect", "--input", str(src), "--output", str(dst)]) == 0
    with dst.open() as fh:
        rows = list(csv.reader(fh))
    assert rows[0] == ["timestamp", "value", "anomaly_score", "alarm"]
    series = read_series(src)
    assert [r[0] for r in rows[1:]] == series.timestamps
    got = np.array([float(r[2]) for r in rows[1:]])
    assert np.all((got >= 0) & (got <= 1))
    # the same code as the live path: score_learn of the default detector
    (expected,) = run_detector(make_detector(), [(series.times, series.values)])
    np.testing.assert_allclose(got, expected, atol=5e-7)
    assert got.argmax() == 450


def test_detect_keeps_rows_with_missing_values(tmp_path: Path) -> None:
    src, dst = tmp_path / "in.csv", tmp_path / "out.csv"
    src.write_text(
        "timestamp,value\n2015-09-01 00:00:00,1\n2015-09-01 00:05:00,\n2015-09-01 00:10:00,nan\n"
    )
    assert ioc_main(["detect", "--input", str(src), "--output", str(dst)]) == 0
    with dst.open() as fh:
        rows = list(csv.reader(fh))
    assert [r[2] for r in rows[1:]] == ["0.000000", "0.000000", "0.000000"]
    assert rows[2][1] == ""


def test_detect_rejects_a_file_without_header(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src = tmp_path / "in.csv"
    src.write_text("2015-09-01 00:00:00,1\n")
    assert ioc_main(["detect", "--input", str(src)]) == 2
    assert "timestamp,value" in capsys.readouterr().err


def test_run_detector_handles_series_of_different_lengths() -> None:
    t = 1.4e9 + 300.0 * np.arange(300)
    x = np.sin(np.arange(300) / 10.0)
    together = run_detector(make_detector(), [(t, x), (t[:120], x[:120] * 2), (t[:1], x[:1])])
    assert [len(s) for s in together] == [300, 120, 1]
    alone = run_detector(make_detector(), [(t[:120], x[:120] * 2)])[0]
    np.testing.assert_array_equal(together[1], alone)


def make_corpus(root: Path) -> None:
    (root / "data" / "synthetic").mkdir(parents=True)
    windows: dict[str, list[list[str]]] = {}
    for k in range(2):
        path = root / "data" / "synthetic" / f"s{k}.csv"
        write_series(path, n=800, spike=500 + 50 * k, seed=k)
        stamps = read_series(path).timestamps
        windows[f"synthetic/s{k}.csv"] = [[stamps[470 + 50 * k], stamps[540 + 50 * k]]]
    (root / "data" / "quiet").mkdir()
    write_series(root / "data" / "quiet" / "q.csv", n=800, spike=None, seed=9)
    windows["quiet/q.csv"] = []
    (root / "labels").mkdir()
    (root / "labels" / "combined_windows.json").write_text(json.dumps(windows))


def test_eval_nab_prints_profiles_and_categories(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    make_corpus(tmp_path)
    assert ioc_main(["eval", "nab", str(tmp_path), "--per-file"]) == 0
    out = capsys.readouterr().out
    for word in (
        "standard",
        "reward_low_FP",
        "reward_low_FN",
        "synthetic",
        "quiet",
        "synthetic/s1.csv",
    ):
        assert word in out
    files = evaluation.load_corpus(tmp_path)
    ev = evaluation.evaluate(files)
    assert ev.results["standard"].score > 80  # two clear spikes, no false alarm
    assert ev.category_scores()["synthetic"] == pytest.approx(ev.results["standard"].score)
    assert ioc_main(["eval", "nab", str(tmp_path), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["profiles"]["standard"]["score"] == pytest.approx(ev.results["standard"].score)


def test_eval_nab_rejects_missing_labels(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    make_corpus(tmp_path)
    (tmp_path / "labels" / "combined_windows.json").write_text("{}")
    assert ioc_main(["eval", "nab", str(tmp_path)]) == 2
    assert "no entry" in capsys.readouterr().err


def test_eval_dispatches_scenario_and_rejects_unknown(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    seen: list[list[str]] = []
    monkeypatch.setattr(scenario, "main", lambda argv: seen.append(argv) or 0)
    assert ioc_main(["eval", "scenario", "--fast"]) == 0
    assert seen == [["--fast"]]
    assert ioc_main(["eval", "bogus"]) == 2
    assert "unknown subcommand" in capsys.readouterr().err
