"""Simulator -> real Mosquitto -> ``python -m ingest`` -> PostgreSQL: rows stored = readings sent."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import orjson
import psycopg
import pytest

pytestmark = [pytest.mark.e2e, pytest.mark.mqtt, pytest.mark.db, pytest.mark.slow]
ROOT = Path(__file__).resolve().parents[2]


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
    ingest_env = {
        **env,
        "IOC_INGEST_CLIENT_ID": f"ingest-{prefix}",
        "IOC_INGEST_METRICS_PORT": "0",
        "IOC_LOG_LEVEL": "INFO",
    }
    ingest = subprocess.Popen(
        [sys.executable, "-m", "ingest"], env=ingest_env, cwd=ROOT, stderr=subprocess.PIPE
    )
    log: list[bytes] = []
    reader = None
    try:
        reader = _wait_for_line(ingest, b"subscribed", 60, log)
        assert reader is not None, b"".join(log).decode()
        stats_file = tmp_path / "stats.json"
        counts = "traffic_camera=100,air_quality=6,water_level=6,weather=4,noise=6"
        cmd = [sys.executable, "-m", "simulators", "--count", counts, "--id-prefix", prefix]
        cmd += ["--fast", "--duration", "20m", "--stats-file", str(stats_file), "--progress", "0"]
        sim = subprocess.run(
            [*cmd, "--name", prefix.rstrip("-")],
            env={**env, "IOC_LOG_LEVEL": "WARNING"},
            cwd=ROOT,
            capture_output=True,
            timeout=300,
        )
        assert sim.returncode == 0, sim.stderr.decode()
        sent = orjson.loads(stats_file.read_bytes())["readings_sent"]
        assert sent > 10_000
        stored = -1
        with psycopg.connect(db_url, autocommit=True) as conn:
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                row = conn.execute(
                    "SELECT count(*) FROM readings WHERE sensor LIKE %s", (prefix + "%",)
                ).fetchone()
                stored = int(row[0]) if row else -1
                if stored >= sent:
                    break
                time.sleep(0.5)
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
