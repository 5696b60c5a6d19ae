"""Ingest memory under oversized messages: RSS after N x 10 MB messages against idle.

Starts a private PostgreSQL and Mosquitto, runs ``python -m ingest``, warms it up with
ordinary readings, notes its idle RSS, publishes ``--count`` messages of ``--mib`` MiB
(each is over IOC_MAX_PAYLOAD_BYTES, so each becomes an ``oversized`` dead letter), waits
until every one is dead-lettered and prints the RSS after, as a ratio of the idle RSS.

    python -m benchmarks.ingest_memory --count 100 --mib 10
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import paho.mqtt.client as mqtt
import psycopg
from paho.mqtt.enums import CallbackAPIVersion

from benchmarks import save_results
from core.codecs import encode_native
from core.db import migrate
from tests.support.servers import MosquittoServer, PostgresServer, free_port


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _count(dsn: str, sql: str) -> int:
    with psycopg.connect(dsn) as conn:
        row = conn.execute(sql).fetchone()
    return int(row[0]) if row else 0


def _wait(predicate: object, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise TimeoutError("the ingestor did not catch up")
        time.sleep(0.2)


def _publish(port: int, messages: list[tuple[str, bytes]]) -> None:
    client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    client.connect("127.0.0.1", port)
    client.loop_start()
    try:
        infos = [client.publish(topic, payload, qos=1) for topic, payload in messages]
        for info in infos:
            info.wait_for_publish(120)
    finally:
        client.disconnect()
        client.loop_stop()


def run(count: int, mib: float) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        pg = PostgresServer(Path(tmp) / "pg")
        broker = MosquittoServer(Path(tmp) / "mq")
        pg.start()
        broker.start()
        try:
            dsn = pg.dsn()
            migrate(dsn)
            with psycopg.connect(dsn) as conn:
                conn.execute("INSERT INTO sensors (id, kind) VALUES ('mem-1', 'air_quality')")
            env = {
                **os.environ,
                "IOC_MQTT_URL": broker.url,
                "IOC_DATABASE_URL": dsn,
                "IOC_INGEST_CLIENT_ID": "bench-memory",
                "IOC_INGEST_METRICS_PORT": str(free_port()),
                "IOC_LOG_LEVEL": "WARNING",
            }
            proc = subprocess.Popen([sys.executable, "-m", "ingest"], env=env)
            try:
                topic = "ioc/v1/air_quality/mem-1/data"
                now = time.time()
                warm = [
                    (topic, encode_native([(now - 3000 + i, {"pm25": 10.0 + i % 7})]))
                    for i in range(3000)
                ]
                time.sleep(2)
                _publish(broker.port, warm)
                _wait(lambda: _count(dsn, "SELECT count(*) FROM readings") >= 3000, 300)
                time.sleep(2)
                idle = rss_mib(proc.pid)
                big = b'{"values": {"pm25": 1}, "pad": "' + b"x" * int(mib * 2**20) + b'"}'
                t0 = time.perf_counter()
                for _ in range(count):
                    _publish(broker.port, [(topic, big)])
                _wait(lambda: _count(dsn, "SELECT count(*) FROM dead_letters") >= count, 600)
                elapsed = time.perf_counter() - t0
                time.sleep(3)
                after = rss_mib(proc.pid)
                stored = _count(dsn, "SELECT coalesce(sum(length(payload)), 0) FROM dead_letters")
            finally:
                proc.terminate()
                proc.wait(60)
        finally:
            broker.stop()
            pg.stop()
    return {
        "messages": count,
        "mib_each": mib,
        "idle_rss_mib": round(idle, 1),
        "after_rss_mib": round(after, 1),
        "ratio": round(after / idle, 3),
        "seconds": round(elapsed, 1),
        "dead_letter_bytes_stored": stored,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=100)
    parser.add_argument("--mib", type=float, default=10.0)
    args = parser.parse_args(argv)
    result = run(args.count, args.mib)
    save_results("ingest_memory", result)
    sys.stdout.write(
        f"idle RSS {result['idle_rss_mib']} MiB, after {args.count} x {args.mib:g} MiB messages"
        f" {result['after_rss_mib']} MiB: {result['ratio']:.2f} x idle (goal <= 1.2 x);"
        f" dead-letter bytes stored {result['dead_letter_bytes_stored']:,}\n"
    )
    return 0 if result["ratio"] <= 1.2 else 1


if __name__ == "__main__":
    sys.exit(main())
