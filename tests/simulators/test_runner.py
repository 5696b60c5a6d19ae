"""The runner: pacing, rate limit, the "cannot keep up" warning, clean stop, truth and stats files."""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path

import orjson
import pytest

from simulators.publisher import FileSink
from simulators.runner import Runner, RunOptions, TokenBucket
from tests.simulators.util import engine, hanoi

T0 = hanoi("2026-11-23T08:00")
TINY = {"traffic_camera": 20, "air_quality": 2, "water_level": 2, "weather": 2, "noise": 2}
SCENARIO = """
incidents:
  - {kind: traffic_incident, sensor: cam-00003, at: +5m, duration: 10m, spread: 0}
  - {kind: sensor_fault, fault: offline, sensor: cam-00004, at: +50m, duration: 30m}
"""


def _lines(path: Path) -> list[tuple[str, bool, bytes]]:
    out = []
    for line in path.read_bytes().splitlines():
        topic, retain, payload = line.split(b"\t", 2)
        out.append((topic.decode(), retain == b"1", payload))
    return out


def test_fast_run_writes_truth_stats_and_marks_devices_offline(tmp_path: Path) -> None:
    out, truth, stats_path = tmp_path / "out.tsv", tmp_path / "truth.jsonl", tmp_path / "stats.json"
    eng = engine(T0, counts=TINY, scenario=SCENARIO)
    opts = RunOptions(
        start=T0,
        until=T0 + 3600,
        speed=float("inf"),
        progress_s=0,
        truth_path=str(truth),
        stats_path=str(stats_path),
    )
    stats = Runner(eng, FileSink(str(out)), opts).run()
    lines = _lines(out)
    data = [x for x in lines if x[0].endswith("/data")]
    assert stats.messages_sent == len(lines) and stats.messages_by_channel["data"] == len(data)
    assert stats.readings_sent == sum(
        len(orjson.loads(p)["values"]) for t, _, p in data if p.startswith(b'{"ts"')
    ) + sum(len(orjson.loads(p)) for t, _, p in data if p.startswith(b"[")) + sum(
        len(orjson.loads(p)) - 3 for t, _, p in data if p.startswith(b'{"id"')
    )
    assert stats.stopped_by == "until" and stats.unacked_at_exit == 0
    saved = orjson.loads(stats_path.read_bytes())
    assert saved["readings_sent"] == stats.readings_sent and saved["schema"] == "ioc.sim.stats/1"
    assert (
        saved["sim_start"] == "2026-11-23T01:00:00Z" and saved["sim_end"] == "2026-11-23T02:00:00Z"
    )
    records = [orjson.loads(x) for x in truth.read_text().splitlines()]
    assert [r["kind"] for r in records] == ["traffic_incident", "sensor_fault"]
    assert records[1]["fault"] == "offline" and records[1]["sensors"] == ["cam-00004"]
    # registration first, goodbye last: every device ends retained "offline"
    n = sum(TINY.values()) + len(eng.gateways)
    assert all(x[1] for x in lines[: 2 * n]) and not lines[2 * n][1]
    tail = lines[-n:]
    assert all(t.endswith("/status") and r and b'"offline"' in p for t, r, p in tail)


def test_paced_run_follows_the_clock(tmp_path: Path) -> None:
    eng = engine(T0, counts={"traffic_camera": 5})
    opts = RunOptions(start=T0, until=T0 + 7200, speed=3600.0, progress_s=0)
    began = time.monotonic()
    stats = Runner(eng, FileSink(str(tmp_path / "o")), opts).run()
    assert time.monotonic() - began >= 1.9  # two simulated hours at an hour per second
    assert stats.messages_by_channel["data"] in range(595, 606) and not stats.fell_behind


def test_it_says_when_it_cannot_keep_up(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    eng = engine(T0, counts={"traffic_camera": 200})
    opts = RunOptions(
        start=T0, until=T0 + 86400, speed=20_000.0, max_rate=20_000.0, progress_s=0, lag_warn_s=0.3
    )
    runner = Runner(eng, FileSink(str(tmp_path / "o")), opts)
    threading.Timer(2.0, runner.stop).start()
    stats = runner.run()
    assert stats.fell_behind and stats.max_lag_s > 0.3
    assert "cannot keep up" in stats.warnings[0] and "--max-rate 20000" in stats.warnings[0]
    assert any(
        "cannot keep up" in r.getMessage() and r.levelno == logging.WARNING for r in caplog.records
    )
    assert stats.stopped_by == "stopped"
    assert stats.readings_per_s <= 20_000 * 1.2  # the limit holds, bursts aside


def test_stop_ends_a_real_time_run_cleanly(tmp_path: Path) -> None:
    eng = engine(time.time(), counts={"traffic_camera": 3})
    out = tmp_path / "o"
    runner = Runner(
        eng, FileSink(str(out)), RunOptions(start=time.time(), speed=1.0, progress_s=0.2)
    )
    threading.Timer(0.8, runner.stop, args=("SIGTERM",)).start()
    stats = runner.run()
    assert stats.stopped_by == "SIGTERM"
    assert _lines(out)[-1][0].endswith("/status")


def test_token_bucket() -> None:
    now = [0.0]
    b = TokenBucket(1000.0, clock=lambda: now[0])  # bursts of 100
    assert b.wait_time(60) == 0.0 and b.wait_time(60) == pytest.approx(0.02)
    now[0] += 0.05
    assert b.wait_time(60) == 0.0  # 40 + 50 = 90 tokens
    now[0] += 1.0
    assert b.wait_time(500) == 0.0  # bigger than a burst: goes when the bucket is full ...
    assert b.tokens == -400.0 and b.wait_time(1) == pytest.approx(0.401)  # ... and is paid back
