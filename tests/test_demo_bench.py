"""``ioc bench``: dispatches to each ``benchmarks.<name>.main`` and summarises ``ioc bench all``."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from ioc import bench

ROOT = Path(__file__).resolve().parents[1]
CALLS: list[list[str]] = []


def main(argv: list[str]) -> int:
    """A stand-in benchmark: records its arguments."""
    CALLS.append(argv)
    return 0 if argv != ["--fail"] else 3


def test_one_benchmark_gets_its_arguments(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(bench.BENCHES, "ingest", __name__)
    CALLS.clear()
    assert bench.main(["ingest", "--seconds", "5", "--quick"]) == 0
    assert CALLS == [["--seconds", "5", "--quick"]]
    assert bench.main(["ingest", "--fail"]) == 3


def test_a_missing_benchmark_is_reported(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(bench.BENCHES, "api", "api.no_such_bench_module")
    assert bench.main(["api"]) == 2
    assert "api.no_such_bench_module:main does not exist" in capsys.readouterr().err


def test_unknown_benchmark_is_a_usage_error() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "ioc", "bench", "nonsense"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert "invalid choice" in proc.stderr


def test_every_part_has_a_benchmark_entry_point() -> None:
    missing = [name for name in bench.BENCHES if bench._load(name) is None]
    assert not missing, f"benchmarks without main: {missing}"
