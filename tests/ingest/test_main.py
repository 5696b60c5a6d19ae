"""``ioc ingest``: help, bad settings, and a clean stop even when nothing is reachable."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ingest.__main__ import main
from tests.support.servers import free_port

REPO = Path(__file__).resolve().parents[2]


def test_help_lists_the_settings(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    for name in (
        "IOC_INGEST_SHARED_GROUP",
        "IOC_INGEST_UNKNOWN_SENSORS",
        "IOC_INGEST_METRICS_PORT",
        "IOC_INGEST_BATCH_INTERVAL_MS",
        "IOC_INGEST_RECEIVE_MAXIMUM",
    ):
        assert name in out


def test_bad_settings_exit_with_2(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("IOC_INGEST_UNKNOWN_SENSORS", "maybe")
    assert main([]) == 2
    assert "ingest_unknown_sensors" in capsys.readouterr().err


@pytest.mark.slow
def test_sigterm_stops_it_cleanly_while_nothing_is_reachable() -> None:
    env = {
        **os.environ,
        "IOC_MQTT_URL": f"mqtt://127.0.0.1:{free_port()}",
        "IOC_DATABASE_URL": f"postgresql://postgres@127.0.0.1:{free_port()}/ioc",
        "IOC_INGEST_METRICS_PORT": "0",
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "ingest"],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        time.sleep(3)
        assert proc.poll() is None  # it waits for the database, it does not crash
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=20)
        assert proc.returncode == 0, err
        assert "database not ready" in err and "ingestor stopped" in err
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
