"""Failover between broker nodes, with real processes.

- ``ioc ingest`` given a dead node first and a live Mosquitto second stores what is
  published on the second.
- A three-node NATS cluster (MQTT on JetStream, three replicas): the node the
  ingestor is connected to is killed in the middle of a stream of readings; every
  reading is stored exactly once.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

import paho.mqtt.client as mqtt
import psycopg
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from core.codecs import encode_native
from tests.ingest.conftest import count, publish, wait_for
from tests.support.nats import NatsCluster, nats_binary
from tests.support.parts import PartProcess, ioc_env
from tests.support.servers import MosquittoServer, free_port

pytestmark = [pytest.mark.e2e, pytest.mark.mqtt, pytest.mark.db]


def register(dsn: str, ids: list[str]) -> None:
    with psycopg.connect(dsn) as conn, conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO sensors (id, kind, source) VALUES (%s, 'air_quality', 'api')",
            [(i,) for i in ids],
        )


def ingest_env(urls: str, dsn: str, client_id: str, **extra: str) -> dict[str, str]:
    return ioc_env(
        IOC_MQTT_URL=urls,
        IOC_DATABASE_URL=dsn,
        IOC_INGEST_CLIENT_ID=client_id,
        IOC_INGEST_METRICS_PORT="0",
        IOC_INGEST_RECONNECT_MAX_S="1",
        IOC_INGEST_BATCH_INTERVAL_MS="50",
        IOC_LOG_LEVEL="INFO",
        **extra,
    )


def test_ioc_ingest_skips_a_dead_first_node(
    make_broker: Callable[..., MosquittoServer], db_url: str, tmp_path: Path, prefix: str
) -> None:
    live = make_broker()
    urls = f"mqtt://127.0.0.1:{free_port()},{live.url}"  # nothing listens on the first
    sensor = f"{prefix}aq"
    register(db_url, [sensor])
    ingestor = PartProcess(
        ["ingest"], ingest_env(urls, db_url, f"{prefix}ingest"), tmp_path / "ingest.log"
    )
    ingestor.start()
    try:
        line = ingestor.wait_for_line("subscribing to", 30)
        assert f"127.0.0.1:{live.port} (node 2 of 2)" in line
        ingestor.wait_for_line("subscribed", 30)
        now = time.time()
        publish(
            live.url,
            [
                (f"ioc/v1/air_quality/{sensor}/data", encode_native([(now - i, {"pm25": i})]))
                for i in range(20)
            ],
        )
        sql = "SELECT count(*) FROM readings WHERE sensor = %s"
        wait_for(lambda: count(db_url, sql, sensor) == 20)
    finally:
        ingestor.stop()


class PacedPublisher311:
    """QoS 1 over MQTT 3.1.1 (what NATS speaks) at ``rate`` messages/s; counts the PUBACKs."""

    def __init__(self, port: int, client_id: str, msgs: list[tuple[str, bytes]], rate: float):
        self.msgs, self.rate = msgs, rate
        self.acked = 0
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv311
        )
        self.window = threading.BoundedSemaphore(500)
        self.client.max_inflight_messages_set(0)
        self.client.on_publish = self._on_publish
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _on_publish(self, *args: object) -> None:
        self.acked += 1
        self.window.release()

    def _run(self) -> None:
        t0 = time.monotonic()
        for i, (topic, payload) in enumerate(self.msgs):
            assert self.window.acquire(timeout=60)
            self.client.publish(topic, payload, qos=1)
            if i % 20 == 0:
                ahead = i / self.rate - (time.monotonic() - t0)
                if ahead > 0:
                    time.sleep(ahead)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def stream(sensors: list[str], packs: int, pack: int, base: float) -> list[tuple[str, bytes]]:
    """``packs`` rounds of one pack of ``pack`` readings per sensor."""
    out = []
    for j in range(packs):
        for k, sensor in enumerate(sensors):
            times = [base + (j * pack + i) * 60.0 for i in range(pack)]
            payload = encode_native([(t, {"pm25": float(k % 50 + i)}) for i, t in enumerate(times)])
            out.append((f"ioc/v1/air_quality/{sensor}/data", payload))
    return out


@pytest.mark.slow
@pytest.mark.skipif(nats_binary() is None, reason="nats-server is not installed")
def test_a_cluster_node_dies_mid_stream_and_nothing_is_lost_or_doubled(
    db_url: str, tmp_path: Path
) -> None:
    sensors = [f"nc-{k:04d}" for k in range(500)]
    packs, pack = 3, 10  # 500 x 3 x 10 = 15,000 readings in 1,500 messages, about 5 s
    register(db_url, sensors)
    with psycopg.connect(db_url) as conn:  # a street gauge, for an alert after the kill
        conn.execute(
            "INSERT INTO sensors (id, kind, source) VALUES ('nc-flood', 'water_level', 'api')"
        )
    cluster = NatsCluster(tmp_path / "nats")
    cluster.start()
    ingestor = PartProcess(
        ["ingest"],
        ingest_env(cluster.urls, db_url, "cluster-ingest", IOC_INGEST_MQTT_PROTOCOL="3.1.1"),
        tmp_path / "ingest.log",
    )
    analytics = PartProcess(
        ["analytics"],
        ioc_env(
            IOC_MQTT_URL=cluster.urls,
            IOC_DATABASE_URL=db_url,
            IOC_ANALYTICS_MQTT_PROTOCOL="3.1.1",
            IOC_ANALYTICS_CLIENT_ID="cluster-analytics",
            IOC_ANALYTICS_STAGES="rules",
            IOC_ANALYTICS_WARMUP_S="0",
            IOC_ANALYTICS_METRICS_PORT="0",
            IOC_LOG_LEVEL="INFO",
        ),
        tmp_path / "analytics.log",
    )
    pub: PacedPublisher311 | None = None
    try:
        ingestor.start()
        analytics.start()
        analytics.wait_for_line("MQTT connected", 40)
        first = ingestor.wait_for_line("subscribing to", 40)
        ingestor.wait_for_line("subscribed", 40)
        on = next(n for n in cluster.nodes if f":{n.mqtt_port} " in first)
        others = [n for n in cluster.nodes if n is not on]
        msgs = stream(sensors, packs, pack, time.time() - 86_400)
        pub = PacedPublisher311(others[-1].mqtt_port, "cluster-pub", msgs, 300.0)
        pub.thread.start()
        time.sleep(2.0)  # mid-stream
        seen, seen_analytics = len(ingestor.lines), len(analytics.lines)
        on.kill()
        killed_at = time.monotonic()
        line = ingestor.wait_for_line("subscribing to", 30, after=seen)
        resumed_s = time.monotonic() - killed_at
        assert "session resumed" in line, line
        assert f":{on.mqtt_port} " not in line
        pub.thread.join(60)
        wait_for(lambda: pub.acked == len(msgs), timeout=30)  # the cluster took every message
        print(f"published {time.monotonic() - killed_at:.1f} s after the kill")
        total = len(sensors) * packs * pack
        sql = "SELECT count(*) FROM readings"
        wait_for(lambda: count(db_url, sql) >= total, timeout=60)
        print(f"stored {time.monotonic() - killed_at:.1f} s after the kill")
        time.sleep(1.0)  # redeliveries still on their way would show now
        assert count(db_url, sql) == total
        distinct = "SELECT count(*) FROM (SELECT DISTINCT sensor, metric, time FROM readings) d"
        assert count(db_url, distinct) == total
        assert count(db_url, "SELECT count(*) FROM dead_letters") == 0
        print(f"ingest resumed {resumed_s:.1f} s after its node was killed")

        # analytics moved to another node with its session too, and still raises alerts
        analytics.wait_for_line("MQTT connected (session present: True)", 30, seen_analytics)
        now = time.time()
        flood = encode_native([(now - 120 + i * 60, {"water_level": 60.0}) for i in range(3)])
        assert pub.window.acquire(timeout=5)  # its PUBACK releases it
        pub.client.publish("ioc/v1/water_level/nc-flood/data", flood, qos=1)
        alerts = "SELECT count(*) FROM alerts WHERE sensor = 'nc-flood'"
        wait_for(lambda: count(db_url, alerts) == 1, timeout=30)
    finally:
        if pub is not None:
            pub.close()
        analytics.stop()
        ingestor.stop()
        cluster.kill()
