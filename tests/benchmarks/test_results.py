"""Benchmarks keep their last figures as JSON: where, and that a run writes them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks import detectors as bench_detectors
from benchmarks import save_results


def test_figures_go_where_the_environment_says(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("IOC_BENCH_RESULTS", str(tmp_path / "elsewhere"))
    path = save_results("probe", {"rate": 1.5, "when": Path("x")})
    assert path == tmp_path / "elsewhere" / "probe.json"
    assert json.loads(path.read_text()) == {"rate": 1.5, "when": "x"}


def test_a_benchmark_run_records_its_figures(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("IOC_BENCH_RESULTS", str(tmp_path))
    assert bench_detectors.main(["--quick"]) == 0
    doc = json.loads((tmp_path / "detectors.json").read_text())
    assert (doc["series"], doc["steps"]) == (1_000, 20)
    assert set(doc["readings_per_cpu_s"]) >= {"ensemble", "ewma_zscore"}
    assert all(rate > 0 for rate in doc["readings_per_cpu_s"].values())
