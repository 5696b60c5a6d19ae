"""``ioc bench api-memory`` in short: one real API process under REST, 200 websockets and
CSV exports keeps its memory flat, and the same soak catches a leak of 64 KiB a request."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest

from benchmarks.api_memory import DEFAULT_BOUND, main

SHORT = ["--minutes", "0.5", "--warmup", "20"]


@pytest.mark.slow
@pytest.mark.e2e
def test_api_memory_stays_flat_under_a_short_soak(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(SHORT) == 0, capsys.readouterr().out
    doc = json.loads((Path(os.environ["IOC_BENCH_RESULTS"]) / "api_memory.json").read_text())
    assert doc["ratio"] <= DEFAULT_BOUND
    assert doc["counts"]["rest"] > 500
    assert doc["counts"]["csv"] >= 5
    assert doc["counts"]["ws_connects"] >= 200
    assert doc["counts"]["ws_messages"] > 200 * 20  # every client saw the alerts of the soak
    assert doc["counts"]["errors"] == 0
    assert "RSS start" in capsys.readouterr().out


@pytest.mark.slow
@pytest.mark.e2e
def test_the_soak_catches_a_leak_of_64_kib_a_request(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([*SHORT, "--leak-kib", "64"]) == 1
    out = capsys.readouterr().out
    ratio = float(re.search(r"end / after warm-up = ([0-9.]+)", out).group(1))  # type: ignore[union-attr]
    assert ratio > DEFAULT_BOUND * 1.2, out
