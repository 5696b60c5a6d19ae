"""The benchmark runs end to end (its figures are printed, not asserted: see docs/simulators.md)."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from benchmarks import simulators as bench

pytestmark = [pytest.mark.slow, pytest.mark.mqtt]


def test_quick_benchmark_prints_rates_and_ratios(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "bench.json"
    assert bench.main(["--quick", "--json", str(out)]) == 0
    text = capsys.readouterr().out
    assert "readings/s" in text and "× baseline" in text and "50,000 readings/s goal" in text
    doc = orjson.loads(out.read_bytes())
    names = [r["name"] for r in doc["results"]]
    assert names[0].startswith("baseline") and len(names) == 4
    gen, sim = doc["results"][1], doc["results"][2]
    assert gen["readings"] == sim["readings"] > 10_000  # the same city was generated and sent
    assert all(r["readings_per_s"] > 0 for r in doc["results"])
