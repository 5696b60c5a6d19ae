"""Simulator -> real Mosquitto -> ``python -m ingest`` -> PostgreSQL: rows stored = readings sent."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson
import psycopg
import pytest

from tests.support.servers import MosquittoServer

pytestmark = [pytest.mark.e2e, pytest.mark.mqtt, pytest.mark.db, pytest.mark.slow]
ROOT = Path(__file__).resolve().parents[2]
# the default city: `ioc simulate` with no --count or --scale
HANOI = {"traffic_camera": 1873, "air_quality": 40, "water_level": 30, "weather": 10, "noise": 60}


def _wait_for_line(
    proc: subprocess.Popen[bytes], needle: bytes, timeout: float, seen: list[bytes]
) -> threading.Thread | None:
    """Read the process's stderr in a thread; the thread once ``needle`` was seen, else None."""
    found = threading.Event()

    def pump() -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            seen.append(line)
            if needle in line:
                found.set()

    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    return reader if found.wait(timeout) else None


@contextmanager
def _ingestor(env: dict[str, str], client_id: str) -> Iterator[None]:
    """A real ``python -m ingest`` whose persistent session is subscribed before we return."""
    ingest = subprocess.Popen(
        [sys.executable, "-m", "ingest"],
        env={
            **env,
            "IOC_INGEST_CLIENT_ID": client_id,
            "IOC_INGEST_METRICS_PORT": "0",
            "IOC_LOG_LEVEL": "INFO",
        },
        cwd=ROOT,
        stderr=subprocess.PIPE,
    )
    log: list[bytes] = []
    reader = None
    try:
        reader = _wait_for_line(ingest, b"subscribed", 60, log)
        assert reader is not None, b"".join(log).decode()
        yield
        assert ingest.poll() is None, b"".join(log).decode()  # it did not die on the way
    finally:
        ingest.send_signal(signal.SIGTERM)
        try:
            ingest.wait(60)
        except subprocess.TimeoutExpired:
            ingest.kill()
            ingest.wait()
        if reader is not None:
            reader.join(10)
        assert ingest.stderr is not None
        ingest.stderr.close()


def _simulate(env: dict[str, str], stats_file: Path, *args: str) -> dict[str, Any]:
    """Run ``python -m simulators`` to the end; its ``--stats-file`` counts."""
    cmd = [sys.executable, "-m", "simulators", "--stats-file", str(stats_file), "--progress", "0"]
    sim = subprocess.run(
        [*cmd, *args],
        env={**env, "IOC_LOG_LEVEL": "WARNING"},
        cwd=ROOT,
        capture_output=True,
        timeout=300,
    )
    assert sim.returncode == 0, sim.stderr.decode()
    stats: dict[str, Any] = orjson.loads(stats_file.read_bytes())
    assert stats["unacked_at_exit"] == 0
    return stats


def _time(text: str) -> float:
    return datetime.fromisoformat(text).timestamp()


def _count_until(
    count: Callable[[], int], expected: int, deadline_s: float, settle_s: float
) -> tuple[int, int]:
    """Poll ``count`` until it reaches ``expected`` (or the deadline), then once more after
    ``settle_s``: (the count when it got there, the count after settling)."""
    deadline = time.monotonic() + deadline_s
    got = count()
    while got < expected and time.monotonic() < deadline:
        time.sleep(0.5)
        got = count()
    time.sleep(settle_s)  # nothing more may arrive: no duplicates, no stray readings
    return got, count()


def test_every_reading_the_simulator_sent_is_stored(
    db_url: str, mqtt_url: str, tmp_path: Path
) -> None:
    prefix = f"e{uuid.uuid4().hex[:6]}-"
    env = {
        **os.environ,
        "IOC_MQTT_URL": mqtt_url,
        "IOC_DATABASE_URL": db_url,
        "PYTHONPATH": str(ROOT),
    }
    with _ingestor(env, f"ingest-{prefix}"):
        counts = "traffic_camera=100,air_quality=6,water_level=6,weather=4,noise=6"
        stats = _simulate(
            env,
            tmp_path / "stats.json",
            *("--count", counts, "--id-prefix", prefix, "--name", prefix.rstrip("-")),
            *("--fast", "--duration", "20m"),
        )
        sent = stats["readings_sent"]
        assert sent > 10_000
        with psycopg.connect(db_url, autocommit=True) as conn:

            def count() -> int:
                row = conn.execute(
                    "SELECT count(*) FROM readings WHERE sensor LIKE %s", (prefix + "%",)
                ).fetchone()
                return int(row[0]) if row else -1

            stored, _ = _count_until(count, sent, 120, 0)
            dead = conn.execute(
                "SELECT code, reason FROM dead_letters WHERE topic LIKE %s LIMIT 5",
                (f"ioc/v1/%/{prefix}%",),
            ).fetchall()
            sensors = conn.execute(
                "SELECT count(*) FROM sensors WHERE id LIKE %s", (prefix + "%",)
            ).fetchone()
    assert dead == []
    assert stored == sent
    assert sensors is not None and sensors[0] == 122 + 2  # devices and the two gateways


@pytest.mark.timeout(600)  # about 35 s alone on 2 cores; generous for a loaded CI machine
def test_the_whole_default_hanoi_is_stored(
    db_url: str, make_broker: Callable[..., MosquittoServer], tmp_path: Path
) -> None:
    """`ioc simulate` with its defaults (2,013 sensors), an hour of city time as fast as it
    goes, through a private Mosquitto whose queues hold the whole run, into a fresh database."""
    broker = make_broker()  # max_queued_messages 2,000,000, max_inflight_messages 1,000
    env = {
        **os.environ,
        "IOC_MQTT_URL": broker.url,
        "IOC_DATABASE_URL": db_url,
        "PYTHONPATH": str(ROOT),
    }
    for name in [k for k in env if k.startswith("IOC_SIM_")]:
        del env[name]  # the defaults, whatever the caller's environment says
    t0 = time.monotonic()
    with _ingestor(env, "ingest-hanoi"):  # subscribed (persistent session) before any reading
        stats = _simulate(env, tmp_path / "stats.json", "--fast", "--duration", "1h")
        sent = stats["readings_sent"]
        assert stats["sensors"] == HANOI
        assert stats["sensors_total"] == sum(HANOI.values())
        span = _time(stats["sim_end"]) - _time(stats["sim_start"])
        assert span == pytest.approx(3600)
        # 1,873 cameras × 8 metrics × 60 rounds, + air 40×8×30, water 30×2×60,
        # weather 10×6×12, noise 60×60: 913,560 (give or take the rounds at the edges)
        assert 880_000 < sent < 950_000
        with psycopg.connect(db_url, autocommit=True) as conn:

            def count() -> int:
                row = conn.execute("SELECT count(*) FROM readings").fetchone()
                return int(row[0]) if row else -1

            stored, settled = _count_until(count, sent, 180, 3)
            total_wall = time.monotonic() - t0
            dead = conn.execute("SELECT code, reason, topic FROM dead_letters LIMIT 5").fetchall()
            registered = dict(
                conn.execute(
                    "SELECT kind, count(*) FROM sensors WHERE source = 'meta' GROUP BY kind"
                ).fetchall()
            )
            reporting = dict(
                conn.execute(
                    "SELECT s.kind, count(DISTINCT r.sensor) FROM readings r"
                    " JOIN sensors s ON s.id = r.sensor GROUP BY s.kind"
                ).fetchall()
            )
            strays = conn.execute(
                "SELECT count(DISTINCT sensor) FROM readings r"
                " WHERE NOT EXISTS (SELECT 1 FROM sensors s WHERE s.id = r.sensor)"
            ).fetchone()
    print(
        f"\nhanoi e2e: {stats['sensors_total']:,} sensors, {sent:,} readings sent,"
        f" {stored:,} stored, {span:.0f} s simulated;"
        f" simulator {stats['wall_s']:.1f} s ({stats['readings_per_s']:,.0f} readings/s),"
        f" all stored {total_wall:.1f} s after start ({sent / total_wall:,.0f} readings/s)"
    )
    assert dead == []
    assert stored == sent, f"{sent - stored:,} of {sent:,} readings missing"
    assert settled == stored, f"{settled - stored:,} more rows arrived after the count was reached"
    # every device registered through its meta (model names are the kinds), and the two gateways
    assert registered == {**HANOI, "generic": 2}
    assert reporting == HANOI  # every sensor of every kind has readings
    assert strays is not None and strays[0] == 0
