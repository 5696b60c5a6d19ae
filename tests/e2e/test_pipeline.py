"""The whole pipeline as real processes: simulator -> Mosquitto -> ingest -> PostgreSQL <- analytics,
API -> websocket.  Injected incidents arrive as alerts on the websocket, told apart from faults.

Every part is an ``ioc`` subcommand in a subprocess, against a PostgreSQL database of
its own (``db_url``) and a Mosquitto of its own (``make_broker``).  The simulator
replays eight hours of a small Hanoi at 600x with incidents and sensor faults from a
scenario, writing its ground truth; the test then compares the alerts a websocket
client received with that truth.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import httpx
import orjson
import paho.mqtt.client as mqtt
import psycopg
import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from tests.support.servers import MosquittoServer, free_port

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.db, pytest.mark.mqtt]

ROOT = Path(__file__).resolve().parents[2]
HISTORY = "8h"
SPEED = 600  # eight simulated hours in 48 s


def _yesterday_at_eight() -> str:
    """08:00 Hanoi time yesterday, RFC 3339."""
    hanoi = timezone(timedelta(hours=7))
    day = datetime.now(hanoi).date() - timedelta(days=1)
    return datetime(day.year, day.month, day.day, 8, tzinfo=hanoi).isoformat()


# A small Hanoi.  The first six hours are normal (the detectors learn); then a traffic
# jam spreads along a corridor and a pollution episode covers the city (incidents: many
# neighbouring sensors agree), while single devices fail (faults: a sensor alone).
SCENARIO = """\
version: 1
name: e2e
seed: 7
city:
  counts: {traffic_camera: 60, air_quality: 16, water_level: 10, weather: 4, noise: 10}
incidents:
  - {at: "+6h", kind: traffic_incident, duration: 60m, spread: 4, severity: 0.95, ramp: 5m}
  - {at: "+6h15m", kind: pollution_episode, duration: 100m, rise: 15m, factor: 4}
  - {at: "+6h10m", kind: flash_flood, duration: 80m, ramp: 10m, rain_mm_h: 100}
  - {at: "+6h5m", kind: sensor_fault, fault: stuck, sensor: cam-00011, metric: speed, duration: 110m}
  - {at: "+6h20m", kind: sensor_fault, fault: offset, sensor: nm-00004, metric: noise, duration: 90m}
  - {at: "+6h30m", kind: sensor_fault, fault: offline, sensor: nm-00007, duration: 60m}
"""


@dataclass
class Part:
    """One ``ioc <command>`` process with its log file."""

    name: str
    proc: subprocess.Popen[bytes]
    log: Path

    def tail(self, n: int = 40) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-n:])

    def stop(self, timeout: float = 20) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        return self.proc.wait()


@dataclass
class Stack:
    env: dict[str, str]
    api: str
    token: str
    tmp: Path
    parts: list[Part] = field(default_factory=list)

    def start(self, name: str, *args: str, env: dict[str, str] | None = None) -> Part:
        log = self.tmp / f"{name}.log"
        with open(log, "wb") as out:
            proc = subprocess.Popen(
                [sys.executable, "-m", "ioc", *args],
                cwd=ROOT,
                env={**self.env, **(env or {})},
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        part = Part(name, proc, log)
        self.parts.append(part)
        return part

    def check_alive(self) -> None:
        for p in self.parts:
            if p.name != "simulator" and p.proc.poll() is not None:
                pytest.fail(f"ioc {p.name} exited with {p.proc.returncode}:\n{p.tail()}")

    def logs(self) -> str:
        return "\n\n".join(f"== {p.name} (exit {p.proc.poll()})\n{p.tail()}" for p in self.parts)


class AlertFeed:
    """A websocket client of /ws/alerts that keeps every frame it receives."""

    def __init__(self, url: str) -> None:
        self.frames: list[dict[str, Any]] = []
        self.closed: str | None = None
        self._lock = threading.Lock()
        self._ws: ClientConnection = connect(url, open_timeout=10)
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            for text in self._ws:
                with self._lock:
                    self.frames.append(orjson.loads(text))
        except ConnectionClosed as exc:
            self.closed = str(exc)

    def alerts(self) -> dict[int, dict[str, Any]]:
        """The newest snapshot of every alert seen, by id."""
        with self._lock:
            return {f["alert"]["id"]: f["alert"] for f in self.frames if f.get("type") == "alert"}

    def seqs(self) -> list[int]:
        with self._lock:
            return [f["seq"] for f in self.frames if f.get("type") == "alert"]

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._ws.close()
        self._thread.join(5)


def _wait_http(url: str, part: Part, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if part.proc.poll() is not None:
            pytest.fail(f"ioc {part.name} exited with {part.proc.returncode}:\n{part.tail()}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url, timeout=2).status_code == 200:
                return
        time.sleep(0.2)
    pytest.fail(f"{url} did not answer within {timeout} s:\n{part.tail()}")


@pytest.fixture
def stack(
    db_url: str, make_broker: Callable[..., MosquittoServer], tmp_path: Path
) -> Iterator[Stack]:
    broker = make_broker()
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("IOC_")}
    env.update(
        IOC_DATABASE_URL=db_url,
        IOC_MQTT_URL=broker.url,
        IOC_INGEST_UNKNOWN_SENSORS="register",
        IOC_INGEST_METRICS_PORT=str(free_port()),
        IOC_INGEST_METRICS_HOST="127.0.0.1",
        IOC_ANALYTICS_METRICS_PORT=str(free_port()),
        IOC_API_HOST="127.0.0.1",
        IOC_API_PORT=str(port),
        PYTHONUNBUFFERED="1",
    )
    made = subprocess.run(
        [sys.executable, "-m", "ioc", "token", "create", "--role", "operator", "--name", "e2e"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert made.returncode == 0, made.stderr
    token = made.stdout.split()[-1]
    s = Stack(env=env, api=f"127.0.0.1:{port}", token=token, tmp=tmp_path)
    try:
        s.start("ingest", "ingest")
        s.start("analytics", "analytics")
        api = s.start("api", "api")
        _wait_http(f"http://{s.api}/healthz", api, 60)
        yield s
    finally:
        codes = {p.name: p.stop() for p in reversed(s.parts)}
        bad = {n: c for n, c in codes.items() if c not in (0, -signal.SIGINT, 130)}
        assert not bad, f"parts did not stop cleanly: {bad}\n{s.logs()}"


def _truth(path: Path) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in path.read_text().splitlines() if line.strip()]


@pytest.mark.timeout(480)
def test_incidents_arrive_on_the_websocket_and_faults_are_told_apart(
    stack: Stack, db_url: str, tmp_path: Path
) -> None:
    feed = AlertFeed(f"ws://{stack.api}/ws/alerts?token={stack.token}")
    published: list[str] = []
    sub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    sub.on_message = lambda c, u, m: published.append(m.topic)
    mqtt_port = int(stack.env["IOC_MQTT_URL"].rsplit(":", 1)[1])
    sub.connect("127.0.0.1", mqtt_port)
    sub.subscribe("ioc/v1/alerts/#", qos=1)
    sub.loop_start()
    try:
        scenario = tmp_path / "e2e.yaml"
        scenario.write_text(SCENARIO)
        truth_path = tmp_path / "truth.jsonl"
        sim = stack.start(
            "simulator",
            "simulate",
            "--scenario",
            str(scenario),
            # one fixed stretch of the day (Hanoi 08:00-16:00, yesterday): traffic and
            # weather follow the clock, so a window that moves with the wall clock would
            # make the verdict depend on when the test runs
            "--start",
            _yesterday_at_eight(),
            "--until",
            f"+{HISTORY}",
            "--speed",
            str(SPEED),
            "--truth",
            str(truth_path),
        )
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            stack.check_alive()
            if sim.proc.poll() is not None:
                break
            time.sleep(1)
        code = sim.proc.poll()
        assert code is not None, f"the simulator did not finish within 240 s:\n{stack.logs()}"
        assert code == 0, f"the simulator failed:\n{stack.logs()}"

        truth = _truth(truth_path)
        incidents = [t for t in truth if t["kind"] != "sensor_fault" and t["sensors"]]
        faults = [t for t in truth if t["kind"] == "sensor_fault" and t["id"].startswith("scn-")]
        assert len(incidents) == 3 and len(faults) == 3, truth
        in_incident = {s for t in incidents for s in t["sensors"]}
        faulty = {t["sensors"][0] for t in faults}

        # alerts keep coming for a while after the last reading (debounce, corroboration)
        def classes() -> tuple[set[str], set[str]]:
            alerts = feed.alerts().values()
            inc = {a["sensor"] for a in alerts if a["alert_class"] == "incident"}
            flt = {
                a["sensor"]
                for a in alerts
                if a["alert_class"] in ("probable_fault", "device") and a["sensor"] in faulty
            }
            return inc & in_incident, flt

        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not all(classes()):
            stack.check_alive()
            time.sleep(1)
        found_incidents, found_faults = classes()
        alerts = feed.alerts()
        summary = "\n".join(
            f"{a['id']:>4} {a['sensor']:<10} {a['metric']:<14} {a['rule']:<28} "
            f"{a['alert_class']:<15} {a['severity']}"
            for a in alerts.values()
        )
        wrongly = sorted(
            a["sensor"]
            for a in alerts.values()
            if a["sensor"] in faulty - in_incident and a["alert_class"] == "incident"
        )
        problems = []
        if not found_incidents:
            problems.append(
                f"no alert classed incident on the sensors of {[t['id'] for t in incidents]}"
            )
        if not found_faults:
            problems.append(
                f"no probable_fault/device alert on the faulty sensors {sorted(faulty)}"
            )
        if wrongly:
            problems.append(f"faulty devices alone classed as incidents: {wrongly}")
        # the data path: every reading stored, events in seq order once each, also on MQTT
        seqs = feed.seqs()
        assert seqs == sorted(set(seqs))
        assert feed.closed is None
        assert any(t.startswith("ioc/v1/alerts/") for t in published)
        with psycopg.connect(db_url) as conn:
            stored = conn.execute("SELECT count(*) FROM readings").fetchone()
            dead = conn.execute("SELECT code, count(*) FROM dead_letters GROUP BY code").fetchall()
        assert stored is not None and stored[0] > 50_000
        assert not dead, f"the simulated city sent data that ingest rejected: {dead}"
        assert not problems, "; ".join(problems) + f"\nalerts received on the websocket:\n{summary}"

    finally:
        sub.loop_stop()
        sub.disconnect()
        feed.close()
