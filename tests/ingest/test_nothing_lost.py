"""Nothing is lost: 100,000 readings survive a kill -9 of the ingestor, a database outage and a
broker restart."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import orjson
import paho.mqtt.client as mqtt
import psycopg
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from core.codecs import encode_native, encode_senml
from core.db import migrate
from tests.ingest.conftest import count
from tests.support.servers import MosquittoServer, PostgresServer

pytestmark = [pytest.mark.slow, pytest.mark.e2e, pytest.mark.mqtt, pytest.mark.db]

REPO = Path(__file__).resolve().parents[2]
SENSORS = 2000
PER_SENSOR = 50  # readings per sensor: 2,000 x 50 = 100,000
SINGLES = 600  # sensors 0..599 send one reading per message, the others packs of 10
PACK = 10
RATE = 2500  # messages per second: the stream lasts about 15 s


class IngestorProcess:
    """``python -m ingest`` as a real process, its log kept and watched."""

    def __init__(self, env: dict[str, str], log: Path, prefix: list[str] | None = None) -> None:
        self.env = env
        self.log = log
        self.prefix = prefix or []  # e.g. ``ip netns exec <name>``
        self.lines: list[str] = []
        self.proc: subprocess.Popen[str] | None = None
        self._pump_thread: threading.Thread | None = None

    def start(self) -> None:
        if self._pump_thread is not None:
            self._pump_thread.join(10)
        self.lines = []
        self.proc = subprocess.Popen(
            [*self.prefix, sys.executable, "-m", "ingest"],
            cwd=REPO,
            env=self.env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        self._pump_thread = threading.Thread(target=self._pump, args=(self.proc,), daemon=True)
        self._pump_thread.start()

    def _pump(self, proc: subprocess.Popen[str]) -> None:
        assert proc.stderr is not None
        with proc.stderr, self.log.open("a") as out:
            for line in proc.stderr:
                self.lines.append(line)
                out.write(line)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        if self._pump_thread is not None:
            self._pump_thread.join(10)

    def wait_for_line(self, text: str, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while not any(text in line for line in self.lines):
            assert self.proc is not None and self.proc.poll() is None, self.tail()
            assert time.monotonic() < deadline, f"no {text!r} in the log:\n{self.tail()}"
            time.sleep(0.05)

    def tail(self) -> str:
        return "".join(self.lines[-30:])


class PacedPublisher:
    """Publishes ``msgs`` at QoS 1 at ``rate`` messages/s, with a window of its own."""

    def __init__(self, port: int, client_id: str, msgs: list[tuple[str, bytes]], rate: float):
        self.msgs, self.rate = msgs, rate
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5
        )
        self.window = threading.BoundedSemaphore(1000)  # flow control of our own: paho's limit
        self.client.max_inflight_messages_set(0)  # (max_inflight_messages_set) costs O(n)/ack
        self.client.on_publish = lambda *args: self.window.release()
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        self.infos: list[mqtt.MQTTMessageInfo] = []

    def publish_all(self) -> None:
        t0 = time.monotonic()
        for i, (topic, payload) in enumerate(self.msgs):
            self.window.acquire()
            self.infos.append(self.client.publish(topic, payload, qos=1))
            if i % 100 == 0:
                ahead = i / self.rate - (time.monotonic() - t0)
                if ahead > 0:
                    time.sleep(ahead)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def messages(base_ms: int) -> list[tuple[str, bytes]]:
    """Rounds of one reading per single-reading sensor, a pack every tenth round for the rest."""
    out: list[tuple[str, bytes]] = []
    for j in range(PER_SENSOR):
        for k in range(SINGLES):
            sensor = f"aq-{k:04d}"
            out.append(
                (
                    f"ioc/v1/air_quality/{sensor}/data",
                    orjson.dumps({"ts": base_ms + j * 60_000, "values": {"pm25": j + k % 7}}),
                )
            )
        if j % PACK == PACK - 1:
            for k in range(SINGLES, SENSORS):
                sensor = f"aq-{k:04d}"
                times = [(base_ms + i * 60_000) / 1000 for i in range(j - PACK + 1, j + 1)]
                if k % 2:
                    payload = encode_native([(t, {"pm25": 10.0 + t % 9}) for t in times])
                else:
                    payload = encode_senml(sensor, [(t, "pm25", 10.0 + t % 9) for t in times])
                out.append((f"ioc/v1/air_quality/{sensor}/data", payload))
    return out


def test_nothing_is_lost(
    make_broker: Callable[..., MosquittoServer],
    make_pg: Callable[[], PostgresServer],
    tmp_path: Path,
) -> None:
    broker = make_broker()
    pg = make_pg()
    with psycopg.connect(pg.dsn(), autocommit=True) as conn:
        conn.execute("CREATE DATABASE ioc")
    dsn = pg.dsn("ioc")
    migrate(dsn)
    with psycopg.connect(dsn) as conn, conn.cursor() as cur:  # registered through the API, say
        cur.executemany(
            "INSERT INTO sensors (id, kind, source) VALUES (%s, 'air_quality', 'api')",
            [(f"aq-{k:04d}",) for k in range(SENSORS)],
        )
    env = {
        **os.environ,
        "IOC_MQTT_URL": broker.url,
        "IOC_DATABASE_URL": dsn,
        "IOC_INGEST_CLIENT_ID": "nothing-lost",
        "IOC_INGEST_METRICS_PORT": "0",
        "IOC_INGEST_RECONNECT_MAX_S": "2",
        "IOC_LOG_LEVEL": "INFO",
    }
    ingestor = IngestorProcess(env, tmp_path / "ingest.log")
    ingestor.start()
    ingestor.wait_for_line("subscribed")

    base_ms = (int(time.time()) - 3600) * 1000
    msgs = messages(base_ms)
    assert sum(1 for _ in msgs) == SINGLES * PER_SENSOR + (SENSORS - SINGLES) * PER_SENSOR // PACK
    pub = PacedPublisher(broker.port, "nl-pub", msgs, RATE)
    infos = pub.infos

    rng = random.Random()
    kill_at = rng.uniform(2.0, 5.0)
    outage_at = 7.0
    started = time.monotonic()
    pub_thread = threading.Thread(target=pub.publish_all)
    pub_thread.start()
    try:
        # kill -9 at a random moment, then start it again (same client id: same session)
        time.sleep(kill_at)
        assert ingestor.proc is not None
        ingestor.proc.send_signal(signal.SIGKILL)
        ingestor.proc.wait()
        stored_at_kill = count(dsn, "SELECT count(*) FROM readings")
        ingestor.start()
        ingestor.wait_for_line("session resumed")
        # the database goes away for 10 s mid-stream
        time.sleep(max(0.0, outage_at - (time.monotonic() - started)))
        pg.stop()
        time.sleep(10)
        pg.start()
        # and the broker restarts while the backlog drains (its sessions and queues persist)
        time.sleep(1.0)
        stored_at_restart = count(dsn, "SELECT count(*) FROM readings")
        broker.stop()
        broker.start()
        pub_thread.join(120)
        for info in infos:
            info.wait_for_publish(60)
        published_for = time.monotonic() - started
        deadline = time.monotonic() + 120
        while count(dsn, "SELECT count(*) FROM readings") < SENSORS * PER_SENSOR:
            assert time.monotonic() < deadline, ingestor.tail()
            assert ingestor.proc.poll() is None, ingestor.tail()
            time.sleep(0.5)
        caught_up = time.monotonic() - started
        time.sleep(1.0)
        total = count(dsn, "SELECT count(*) FROM readings")
        distinct = count(dsn, "SELECT count(DISTINCT (sensor, metric, time)) FROM readings")
        rejected = count(dsn, "SELECT count(*) FROM dead_letters")
        print(
            f"killed at {kill_at:.1f} s ({stored_at_kill} stored), database down from"
            f" {outage_at:.0f} to {outage_at + 10:.0f} s, broker restarted with"
            f" {stored_at_restart} stored, publishing done at {published_for:.1f} s,"
            f" all {total} readings stored at {caught_up:.1f} s"
        )
        assert (total, distinct, rejected) == (100_000, 100_000, 0)
        log = "".join(ingestor.lines)
        assert "holding" in log and "database back" in log, ingestor.tail()  # the outage was felt
        assert ingestor.proc.poll() is None
        ingestor.proc.send_signal(signal.SIGTERM)  # and a clean shutdown
        assert ingestor.proc.wait(30) == 0, ingestor.tail()
        ingestor.stop()
        assert "ingestor stopped" in "".join(ingestor.lines)
    finally:
        pub.close()
        ingestor.stop()
