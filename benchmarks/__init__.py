"""The benchmarks (``ioc bench NAME``); each keeps its last figures in ``results/<name>.json``."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

RESULTS_DIR = Path(__file__).with_name("results")


def save_results(name: str, figures: Mapping[str, Any]) -> Path:
    """Write a benchmark's figures to ``benchmarks/results/<name>.json`` (a regression shows in the diff).

    ``IOC_BENCH_RESULTS`` names another directory (the tests point it elsewhere, so that
    running them leaves the recorded figures alone).
    """
    where = Path(os.environ.get("IOC_BENCH_RESULTS") or RESULTS_DIR)
    where.mkdir(parents=True, exist_ok=True)
    path = where / f"{name}.json"
    path.write_text(json.dumps(figures, indent=2, default=str) + "\n")
    return path
