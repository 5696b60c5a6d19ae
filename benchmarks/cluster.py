"""Ingest through a three-node broker cluster against Mosquitto, and through the loss of a node.

Starts a private PostgreSQL, a Mosquitto and a three-node NATS cluster (MQTT on
JetStream, three replicas) and runs ``ioc ingest`` (MQTT 3.1.1, what NATS speaks) three
times, each with a fresh database:

1. Mosquitto: ``--readings`` readings in messages of ``--pack``, published as fast as the
   broker acknowledges them; the time until every reading is stored;
2. the cluster, the same;
3. the cluster at ``--rate`` messages/s, with the node the ingestor is connected to
   killed in the middle of the stream: readings lost and doubled, and the time from the
   kill until ingest is subscribed again on another node.

Also the CPU seconds of the ingestor and of the broker per 100,000 readings (the
per-unit costs that docs/scaling.md sizes the city with). Results go to
``benchmarks/results/cluster.json``.

    python -m benchmarks.cluster [--readings 100000] [--pack 10] [--rate 1000]
"""

from __future__ import annotations

import argparse
import contextlib
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import psutil
import psycopg
from paho.mqtt.enums import CallbackAPIVersion

from benchmarks import save_results
from core.codecs import encode_native
from core.db import migrate
from tests.support.nats import NatsCluster
from tests.support.parts import PartProcess, ioc_env
from tests.support.servers import MosquittoServer, PostgresServer

SENSORS = 1000


def _count(dsn: str, sql: str) -> int:
    with psycopg.connect(dsn) as conn:
        row = conn.execute(sql).fetchone()
    return int(row[0]) if row else 0


def _database(pg: PostgresServer, name: str) -> str:
    with psycopg.connect(pg.dsn(), autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    dsn = pg.dsn(name)
    migrate(dsn)
    with psycopg.connect(dsn) as conn, conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO sensors (id, kind, source) VALUES (%s, 'air_quality', 'api')",
            [(f"bc-{k:04d}",) for k in range(SENSORS)],
        )
    return dsn


def _messages(readings: int, pack: int) -> list[tuple[str, bytes]]:
    base = time.time() - 2 * 86_400
    out = []
    for i in range(readings // pack):
        k = i % SENSORS
        j = i // SENSORS
        times = [base + (j * pack + n) * 60.0 for n in range(pack)]
        payload = encode_native([(t, {"pm25": float(n + k % 40)}) for n, t in enumerate(times)])
        out.append((f"ioc/v1/air_quality/bc-{k:04d}/data", payload))
    return out


class Publisher:
    """QoS 1, MQTT 3.1.1, a window of ``window`` unacknowledged messages; paced if ``rate``."""

    def __init__(self, port: int, msgs: list[tuple[str, bytes]], rate: float | None) -> None:
        self.msgs, self.rate = msgs, rate
        self.acked = 0
        self.window = threading.BoundedSemaphore(1000)
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=f"bench-pub-{port}", protocol=mqtt.MQTTv311
        )
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
            if not self.window.acquire(timeout=120):
                return
            self.client.publish(topic, payload, qos=1)
            if self.rate and i % 20 == 0:
                ahead = i / self.rate - (time.monotonic() - t0)
                if ahead > 0:
                    time.sleep(ahead)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def _wait(pred: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.1)
    return False


def _cpu(pids: list[int]) -> float:
    """CPU seconds of these processes, their live children and the children they reaped."""
    total = 0.0
    for pid in pids:
        try:
            proc = psutil.Process(pid)
            t = proc.cpu_times()
            total += t.user + t.system + t.children_user + t.children_system
            for child in proc.children(recursive=True):
                with contextlib.suppress(psutil.NoSuchProcess):
                    c = child.cpu_times()
                    total += c.user + c.system
        except psutil.NoSuchProcess:
            pass
    return total


def run_phase(
    name: str,
    work: Path,
    dsn: str,
    urls: str,
    pub_port: int,
    broker_pids: Callable[[], list[int]],
    db_pids: list[int],
    msgs: list[tuple[str, bytes]],
    total: int,
    rate: float | None = None,
    kill: Callable[[str], Any] | None = None,
) -> dict[str, Any]:
    ingestor = PartProcess(
        ["ingest"],
        ioc_env(
            IOC_MQTT_URL=urls,
            IOC_DATABASE_URL=dsn,
            IOC_INGEST_CLIENT_ID=f"bench-{name}",
            IOC_INGEST_MQTT_PROTOCOL="3.1.1",
            IOC_INGEST_METRICS_PORT="0",
            IOC_INGEST_RECONNECT_MAX_S="1",
            IOC_MAX_AGE_DAYS="60",
        ),
        work / f"ingest-{name}.log",
    )
    out: dict[str, Any] = {"readings": total, "messages": len(msgs)}
    pub: Publisher | None = None
    try:
        ingestor.start()
        first = ingestor.wait_for_line("subscribing to", 60)
        ingestor.wait_for_line("subscribed", 60)
        assert ingestor.proc is not None
        cpu0 = _cpu([ingestor.proc.pid]), _cpu(broker_pids()), _cpu(db_pids)
        pub = Publisher(pub_port, msgs, rate)
        t0 = time.monotonic()
        pub.thread.start()
        if kill is not None:
            time.sleep(len(msgs) / (rate or 1000) / 2)  # the middle of the stream
            seen = len(ingestor.lines)
            kill(first)
            killed = time.monotonic()
            ingestor.wait_for_line("subscribing to", 60, after=seen)
            ingestor.wait_for_line("subscribed", 60, after=seen)
            out["resume_s"] = round(time.monotonic() - killed, 2)
        stored = "SELECT count(*) FROM readings"
        done = _wait(lambda: _count(dsn, stored) >= total, 600)
        took = time.monotonic() - t0
        time.sleep(1.0)
        cpu1 = _cpu([ingestor.proc.pid]), _cpu(broker_pids()), _cpu(db_pids)
        n = _count(dsn, stored)
        distinct = _count(
            dsn, "SELECT count(*) FROM (SELECT DISTINCT sensor, metric, time FROM readings) d"
        )
        out.update(
            complete=done,
            seconds=round(took, 2),
            readings_per_s=round(n / took),
            messages_per_s=round(len(msgs) / took),
            lost=total - distinct,
            doubled=n - distinct,
            dead_letters=_count(dsn, "SELECT count(*) FROM dead_letters"),
            acked_by_broker=pub.acked,
            ingest_cpu_s_per_100k=round((cpu1[0] - cpu0[0]) * 100_000 / total, 2),
            broker_cpu_s_per_100k=round((cpu1[1] - cpu0[1]) * 100_000 / total, 2),
            database_cpu_s_per_100k=round((cpu1[2] - cpu0[2]) * 100_000 / total, 2),
        )
        return out
    finally:
        if pub is not None:
            pub.close()
        ingestor.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--readings", type=int, default=100_000)
    parser.add_argument("--pack", type=int, default=10, help="readings per message")
    parser.add_argument("--rate", type=float, default=1000.0, help="messages/s with the kill")
    args = parser.parse_args(argv)
    msgs = _messages(args.readings, args.pack)
    total = len(msgs) * args.pack
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="ioc-bench-cluster-") as tmp:
        work = Path(tmp)
        pg = PostgresServer(work / "pg")
        pg.start()
        mosq = MosquittoServer(work / "mosquitto")
        mosq.start()
        cluster = NatsCluster(work / "nats")
        try:
            cluster.start()
            mosq_pid = [mosq.proc.pid] if mosq.proc else []
            pg_pid = [pg.proc.pid] if pg.proc else []

            def nats_pids() -> list[int]:
                return [n.proc.pid for n in cluster.nodes if n.proc is not None]

            results["mosquitto"] = run_phase(
                "mosquitto",
                work,
                _database(pg, "b_mosquitto"),
                mosq.url,
                mosq.port,
                lambda: mosq_pid,
                pg_pid,
                msgs,
                total,
            )
            last = cluster.nodes[-1]
            results["cluster"] = run_phase(
                "cluster", work, _database(pg, "b_cluster"), cluster.urls, last.mqtt_port,
                nats_pids, pg_pid, msgs, total,
            )  # fmt: skip

            def kill_ingestors_node(line: str) -> None:
                node = next(n for n in cluster.nodes if f":{n.mqtt_port} " in line)
                assert node is not last, "the publisher's node"
                node.kill()

            results["cluster, node killed"] = run_phase(
                "cluster_kill", work, _database(pg, "b_cluster_kill"), cluster.urls,
                last.mqtt_port, nats_pids, pg_pid, msgs, total, rate=args.rate,
                kill=kill_ingestors_node,
            )  # fmt: skip
        finally:
            cluster.kill()
            mosq.stop()
            pg.stop()
    base = results["mosquitto"]["readings_per_s"]
    for name, r in results.items():
        ratio = r["readings_per_s"] / base if base else 0.0
        extra = f", resumed {r['resume_s']} s after the kill" if "resume_s" in r else ""
        print(
            f"{name:22s} {r['readings_per_s']:>8,} readings/s ({r['messages_per_s']:,} msg/s,"
            f" {ratio:.2f}x Mosquitto); lost {r['lost']}, doubled {r['doubled']}{extra};"
            f" CPU per 100k readings: ingest {r['ingest_cpu_s_per_100k']} s,"
            f" broker {r['broker_cpu_s_per_100k']} s, database {r['database_cpu_s_per_100k']} s"
        )
    save_results("cluster", results)
    ok = all(r["complete"] and r["lost"] == 0 and r["doubled"] == 0 for r in results.values())
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
