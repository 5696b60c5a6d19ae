"""The demo's replay progress: it follows the simulator's own progress lines in its log."""

from __future__ import annotations

import io
import time
from pathlib import Path

import pytest

from ioc import progress as progress_mod
from ioc.progress import ReplayProgress
from simulators.runner import Progress, format_progress, parse_progress


def _line(sim_time: float, readings: int) -> str:
    p = Progress(sim_time, 10.0, readings, readings // 4, 5000.0, 1250.0, 0.1, 3)
    return format_progress(p)


def test_progress_lines_parse_back() -> None:
    t = 1_764_900_000.0
    assert parse_progress("[w2] " + _line(t, 1_234_567)) == (t, 1_234_567)
    assert parse_progress("INFO something else") is None


def test_the_replay_reports_how_far_the_simulated_clock_is(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(progress_mod, "PLAIN_EVERY_S", 0.0)
    log = tmp_path / "simulator.log"
    log.write_text("an earlier run\n" + _line(1.0, 5) + "\n")  # before this run: ignored
    now = time.time()
    out = io.StringIO()
    bar = ReplayProgress(log, start=now - 3 * 3600, end=now + 180, out=out)
    bar.poll()
    assert bar.fraction == 0.0 and bar.readings == 0
    with open(log, "a") as f:
        f.write(_line(now - 3 * 3600 + 5490, 40_000) + "\n" + "half a li")
    bar.poll()
    assert bar.fraction == pytest.approx(0.5, abs=0.01)
    assert "  replay      50% (simulated " in out.getvalue()
    assert "40,000 readings" in out.getvalue()
    bar.finish()
    bar.poll()  # after the end: nothing more
    assert out.getvalue().count("replay") == 2
