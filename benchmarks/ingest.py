"""``ioc bench ingest``: end-to-end ingest throughput against its two ceilings, in one run.

For (a) packs of 50 readings and (b) single-reading QoS 1 messages it measures:

* the broker-path ceiling: the same messages, from the same publisher processes,
  to a bare paho subscriber that only counts them;
* the database-path ceiling: binary COPY of the same rows, batched as the
  ingestor batches them;
* end to end: from the first publish to the last row committed by a real
  ``python -m ingest`` process, whose RSS is sampled throughout.

``--soak SECONDS`` adds a steady-rate run to show that memory stays flat.
A private Mosquitto is started when the binary is there (so the bench never
loads a production broker); the database is a scratch one created on the
``IOC_DATABASE_URL`` server and dropped afterwards.
"""

from __future__ import annotations

import argparse
import contextlib
import multiprocessing as mp
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from multiprocessing.synchronize import Event as MpEvent
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import orjson
import psycopg

from benchmarks import save_results
from core.codecs import DEFAULT_LIMITS, encode_senml
from core.db import migrate
from core.settings import Settings, parse_mqtt_url
from tests.support.servers import free_port, private_mosquitto

METRICS = ("pm25", "pm10", "no2", "o3", "co")
_MPCTX = mp.get_context("spawn")


@dataclass(frozen=True, slots=True)
class Scenario:
    name: str
    sensors: int
    per_message: int  # readings per message: 1, or a pack (a multiple of 5)
    messages: int
    senml: bool = False

    @property
    def readings(self) -> int:
        return self.messages * self.per_message


def payloads(sc: Scenario, part: int, parts: int, base_ms: int) -> Iterator[tuple[str, bytes]]:
    """Messages of one publisher; every (sensor, metric, time) is distinct across all parts."""
    for m in range(part, sc.messages, parts):
        k = m % sc.sensors
        seq = m // sc.sensors
        sensor = f"bench-{k:05d}"
        topic = f"ioc/v1/air_quality/{sensor}/data"
        if sc.per_message == 1:
            doc: Any = {"ts": base_ms + seq * 1000, "values": {"pm25": float(seq % 500)}}
            yield topic, orjson.dumps(doc)
            continue
        steps = sc.per_message // len(METRICS)
        times = [base_ms + (seq * steps + j) * 1000 for j in range(steps)]
        if sc.senml:
            recs = [
                (t / 1000, metric, float((t // 1000) % 300)) for t in times for metric in METRICS
            ]
            yield topic, encode_senml(sensor, recs)
        else:
            doc = [
                {"ts": t, "values": {metric: float((t // 1000) % 300) for metric in METRICS}}
                for t in times
            ]
            yield topic, orjson.dumps(doc)


# -- worker processes ---------------------------------------------------------------


def _client(client_id: str, receive_maximum: int = 0) -> Any:
    import paho.mqtt.client as paho
    from paho.mqtt.enums import CallbackAPIVersion

    return paho.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=paho.MQTTv5)


def _publisher(
    url: str,
    sc: Scenario,
    part: int,
    parts: int,
    base_ms: int,
    rate: float,
    ready: MpEvent,
    go: MpEvent,
    out: Any,
) -> None:
    """Publish one share with a window of 1000 unacknowledged messages; report start/end."""
    addr = parse_mqtt_url(url)
    msgs = list(payloads(sc, part, parts, base_ms))
    window = threading.BoundedSemaphore(1000)  # our own flow control: paho's (a limit set
    client = _client(f"bench-pub-{os.getpid()}")  # with max_inflight_messages_set) costs
    client.max_inflight_messages_set(0)  # O(in flight) per acknowledgement
    client.on_publish = lambda *args: window.release()
    client.connect(addr.host, addr.port)
    client.loop_start()
    ready.set()
    go.wait()
    start = time.time()
    for i, (topic, payload) in enumerate(msgs):
        window.acquire()
        client.publish(topic, payload, qos=1)
        if rate and i % 50 == 0:
            ahead = i / rate - (time.time() - start)
            if ahead > 0:
                time.sleep(ahead)
    for _ in range(1000):  # every publish acknowledged by the broker
        window.acquire()
    out.put(("published", part, start, time.time()))
    client.disconnect()
    client.loop_stop()


def _bare_subscriber(
    url: str, expected: int, receive_maximum: int, ready: MpEvent, out: Any
) -> None:
    """Count messages (QoS 1, auto-ack) and report when all arrived: the broker-path ceiling."""
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.properties import Properties

    addr = parse_mqtt_url(url)
    done = threading.Event()
    state = {"n": 0, "first": 0.0, "last": 0.0, "cpu0": 0.0}

    def on_message(client: Any, userdata: Any, message: Any) -> None:
        state["n"] += 1
        if state["n"] == 1:
            state["first"] = time.time()
            state["cpu0"] = time.process_time()
        if state["n"] >= expected:
            state["last"] = time.time()
            done.set()

    client = _client(f"bench-bare-{os.getpid()}")
    client.on_message = on_message
    client.on_subscribe = lambda *args: ready.set()
    props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
    props.ReceiveMaximum = receive_maximum
    client.connect(addr.host, addr.port, properties=props)
    client.subscribe("ioc/v1/+/+/data", qos=1)
    client.loop_start()
    done.wait(3600)
    out.put(("received", 0, state["last"], time.process_time() - state["cpu0"]))
    client.disconnect()
    client.loop_stop()


# -- helpers ----------------------------------------------------------------------------------


@contextlib.contextmanager
def private_broker() -> Iterator[str]:
    """A throw-away Mosquitto with room for a backlog; yields its URL."""
    with private_mosquitto(max_queued=4_000_000) as server:
        yield server.url


@contextlib.contextmanager
def scratch_database(server_dsn: str) -> Iterator[str]:
    """A migrated database of its own on the server ``server_dsn`` points at."""
    name = f"ioc_bench_{os.getpid()}"
    parts = urlsplit(server_dsn)
    admin = urlunsplit(parts._replace(path="/postgres"))
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name}")
        conn.execute(f"CREATE DATABASE {name}")
    dsn = urlunsplit(parts._replace(path=f"/{name}"))
    try:
        migrate(dsn)
        yield dsn
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def _cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process so far."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return 0.0


def _rss_mib(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def _register(dsn: str, sensors: int) -> None:
    with psycopg.connect(dsn) as conn, conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO sensors (id, kind, source) VALUES (%s, 'air_quality', 'api')"
            " ON CONFLICT DO NOTHING",
            [(f"bench-{k:05d}",) for k in range(sensors)],
        )


def _truncate(dsn: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("TRUNCATE readings")
        conn.execute("TRUNCATE dead_letters")


def _run_publishers(
    url: str, sc: Scenario, publishers: int, base_ms: int, rate: float = 0.0
) -> tuple[list[Any], Any]:
    out = _MPCTX.Queue()
    go = _MPCTX.Event()
    procs, readies = [], []
    for part in range(publishers):
        ready = _MPCTX.Event()
        p = _MPCTX.Process(
            target=_publisher,
            args=(url, sc, part, publishers, base_ms, rate / publishers, ready, go, out),
            daemon=True,
        )
        p.start()
        procs.append(p)
        readies.append(ready)
    for ready in readies:
        if not ready.wait(120):
            raise RuntimeError("a publisher did not connect")
    go.set()
    return procs, out


def _collect(
    out: Any, kinds: dict[str, int], timeout: float
) -> dict[str, list[tuple[float, float]]]:
    got: dict[str, list[tuple[float, float]]] = {k: [] for k in kinds}
    deadline = time.monotonic() + timeout
    while any(len(got[k]) < n for k, n in kinds.items()):
        kind, _, a, b = out.get(timeout=max(1.0, deadline - time.monotonic()))
        got[kind].append((a, b))
    return got


# -- the three measurements ---------------------------------------------------------------


@dataclass(slots=True)
class Result:
    broker_s: float = 0.0
    publish_s: float = 0.0
    bare_cpu_s: float = 0.0
    ingest_cpu_s: float = 0.0
    db_s: float = 0.0
    e2e_s: float = 0.0
    e2e_ok: bool = False
    rss: tuple[float, float, float] = (0.0, 0.0, 0.0)  # start, max, end (MiB)


def broker_ceiling(
    url: str, sc: Scenario, publishers: int, base_ms: int
) -> tuple[float, float, float]:
    """Seconds until the bare subscriber had everything, until publishers were done; its CPU s."""
    out = _MPCTX.Queue()
    ready = _MPCTX.Event()
    sub = _MPCTX.Process(
        target=_bare_subscriber, args=(url, sc.messages, 10_000, ready, out), daemon=True
    )
    sub.start()
    if not ready.wait(60):
        raise RuntimeError("the bare subscriber did not subscribe")
    procs, pub_out = _run_publishers(url, sc, publishers, base_ms)
    pubs = _collect(pub_out, {"published": publishers}, 600)["published"]
    last, cpu = _collect(out, {"received": 1}, 600)["received"][0]
    for p in [*procs, sub]:
        p.join(30)
    start = min(a for a, _ in pubs)
    return last - start, max(b for _, b in pubs) - start, cpu


def db_ceiling(dsn: str, sc: Scenario, base_ms: int, batch_rows: int, batch_messages: int) -> float:
    """COPY of the same rows, in the batches the ingestor would make, one commit each."""
    from core.columnar import fast_decode
    from ingest.rows import RowBuffer, SeriesTable
    from ingest.store import ReadingsWriter

    now = time.time()
    table = SeriesTable()
    batches: list[RowBuffer] = []
    buf = RowBuffer()
    msgs = 0
    for topic, payload in payloads(sc, 0, 1, base_ms):
        sensor = topic.split("/")[3]
        cols = fast_decode(sensor, payload, now, DEFAULT_LIMITS)
        assert cols is not None
        buf.add(cols.us, cols.values, table.ids(sensor, cols.metrics))
        msgs += 1
        if len(buf) >= batch_rows or msgs >= batch_messages:
            batches.append(buf)
            buf, msgs = RowBuffer(), 0
    if len(buf):
        batches.append(buf)
    writer = ReadingsWriter()
    _truncate(dsn)
    with psycopg.connect(dsn) as conn:
        t0 = time.perf_counter()
        for b in batches:
            with conn.transaction():
                writer.write(conn, b, table, sort=True)
        elapsed = time.perf_counter() - t0
        row = conn.execute("SELECT count(*) FROM readings").fetchone()
    if not row or row[0] != sc.readings:
        raise RuntimeError(f"COPY stored {row} rows, expected {sc.readings}")
    return elapsed


class IngestorProcess:
    """``python -m ingest`` with its metrics scraped and its RSS sampled."""

    def __init__(self, url: str, dsn: str, extra_env: dict[str, str]) -> None:
        self.port = free_port()
        env = {
            **os.environ,
            "IOC_MQTT_URL": url,
            "IOC_DATABASE_URL": dsn,
            "IOC_INGEST_CLIENT_ID": f"bench-ingest-{os.getpid()}",
            "IOC_INGEST_METRICS_PORT": str(self.port),
            "IOC_INGEST_METRICS_HOST": "127.0.0.1",
            "IOC_INGEST_SESSION_EXPIRY_S": "60",
            "IOC_LOG_LEVEL": "WARNING",
            **extra_env,
        }
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "ingest"], env=env, stdout=subprocess.DEVNULL
        )
        self.rss: list[float] = []
        self._stop = threading.Event()
        self._sampler = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.wait(0.5):
            self.rss.append(_rss_mib(self.proc.pid))

    def stored(self) -> float:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=5) as r:
                text = r.read().decode()
        except OSError:
            return -1.0
        connected = False
        stored = 0.0
        for line in text.splitlines():
            if line.startswith("ioc_ingest_readings_stored_total "):
                stored = float(line.split()[1])
            elif line.startswith("ioc_ingest_mqtt_connected "):
                connected = float(line.split()[1]) == 1.0
        return stored if connected else -1.0

    def wait_ready(self, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while self.stored() < 0:
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the ingestor did not start")
            time.sleep(0.2)
        time.sleep(0.5)  # subscriptions follow the connection
        self._sampler.start()

    def stop(self) -> int:
        self._stop.set()
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait()


def end_to_end(
    url: str, dsn: str, sc: Scenario, publishers: int, base_ms: int, env: dict[str, str]
) -> tuple[float, bool, IngestorProcess, float]:
    """Seconds from the first publish to the last row stored; the ingestor's CPU seconds."""
    _truncate(dsn)
    ing = IngestorProcess(url, dsn, env)
    try:
        ing.wait_ready()
        rss_start = _rss_mib(ing.proc.pid)
        ing.rss.append(rss_start)
        cpu0 = _cpu_s(ing.proc.pid)
        procs, out = _run_publishers(url, sc, publishers, base_ms)
        pubs = _collect(out, {"published": publishers}, 600)["published"]
        start = min(a for a, _ in pubs)
        deadline = time.monotonic() + 600
        while ing.stored() < sc.readings and time.monotonic() < deadline:
            time.sleep(0.1)  # a scrape costs the ingestor CPU: not too often
        end = time.time()
        cpu = _cpu_s(ing.proc.pid) - cpu0
        for p in procs:
            p.join(30)
    finally:
        ing.rss.append(_rss_mib(ing.proc.pid))
        ing.stop()
    with psycopg.connect(dsn) as conn:
        row = conn.execute("SELECT count(*) FROM readings").fetchone()
    return end - start, bool(row and row[0] == sc.readings), ing, cpu


def soak(
    url: str, dsn: str, seconds: float, rate: float, publishers: int, env: dict[str, str]
) -> tuple[list[float], float, int]:
    """Single readings at a steady rate: RSS every 5 s, seconds until all stored, rows stored."""
    sc = Scenario("soak", sensors=2000, per_message=1, messages=int(seconds * rate))
    _truncate(dsn)
    ing = IngestorProcess(url, dsn, env)
    samples: list[float] = []
    try:
        ing.wait_ready()
        base_ms = (int(time.time()) - 86_400) * 1000
        procs, out = _run_publishers(url, sc, publishers, base_ms, rate=rate)
        t0 = next_sample = time.monotonic()
        while any(p.is_alive() for p in procs):
            if time.monotonic() >= next_sample:
                next_sample += 5
                samples.append(_rss_mib(ing.proc.pid))
                elapsed = time.monotonic() - t0
                print(f"  soak {elapsed:5.0f} s: RSS {samples[-1]:.1f} MiB", flush=True)
            time.sleep(0.1)
        pubs = _collect(out, {"published": publishers}, 60)["published"]
        deadline = time.monotonic() + 300
        while ing.stored() < sc.readings and time.monotonic() < deadline:
            time.sleep(0.2)
        took = time.time() - min(a for a, _ in pubs)
    finally:
        samples.append(_rss_mib(ing.proc.pid))
        ing.stop()
    with psycopg.connect(dsn) as conn:
        row = conn.execute("SELECT count(*) FROM readings").fetchone()
    return samples, took, int(row[0]) if row else 0


# -- the report -----------------------------------------------------------------------------


def _rate(n: float, seconds: float) -> str:
    return f"{n / seconds:>10,.0f}" if seconds > 0 else "         -"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="ioc bench ingest", description=__doc__.split("\n\n")[0])
    parser.add_argument("--pack-messages", type=int, default=4000, help="packs of 50 (a)")
    parser.add_argument("--single-messages", type=int, default=40_000, help="single readings (b)")
    parser.add_argument("--sensors", type=int, default=2000)
    parser.add_argument("--publishers", type=int, default=2, help="publisher processes")
    parser.add_argument("--senml", action="store_true", help="packs as SenML instead of native")
    parser.add_argument("--mqtt-url", help="use this broker instead of a private Mosquitto")
    parser.add_argument("--database-url", help="server for the scratch database (IOC_DATABASE_URL)")
    parser.add_argument("--soak", type=float, default=0.0, help="seconds of steady load for RSS")
    parser.add_argument("--soak-rate", type=float, default=5000.0, help="messages/s during --soak")
    parser.add_argument(
        "--only", choices=["packs", "singles", "none"], help="run one scenario (none: --soak only)"
    )
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    server = args.database_url or Settings().dsn
    scenarios = [
        Scenario("(a) packs of 50", args.sensors, 50, args.pack_messages, senml=args.senml),
        Scenario("(b) single, QoS 1", args.sensors, 1, args.single_messages),
    ]
    if args.only:
        scenarios = {"packs": scenarios[:1], "singles": scenarios[1:], "none": []}[args.only]
    env: dict[str, str] = {}
    ncpu = os.cpu_count() or 1
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    print(f"ingest benchmark on {ncpu} cores, {mem:.0f} GiB; {args.publishers} publisher processes")
    broker_cm = contextlib.nullcontext(args.mqtt_url) if args.mqtt_url else private_broker()
    results: list[tuple[Scenario, Result]] = []
    with broker_cm as url, scratch_database(server) as dsn:
        assert url is not None
        _register(dsn, args.sensors)
        for sc in scenarios:
            print(f"{sc.name}: {sc.messages:,} messages, {sc.readings:,} readings ...", flush=True)
            r = Result()
            base_ms = (int(time.time()) - 7200) * 1000
            r.broker_s, r.publish_s, r.bare_cpu_s = broker_ceiling(
                url, sc, args.publishers, base_ms
            )
            r.db_s = db_ceiling(dsn, sc, base_ms, 20_000, 4_000)
            r.e2e_s, r.e2e_ok, ing, r.ingest_cpu_s = end_to_end(
                url, dsn, sc, args.publishers, base_ms, env
            )
            r.rss = (ing.rss[0], max(ing.rss), ing.rss[-1])
            results.append((sc, r))
        soaked = (
            soak(url, dsn, args.soak, args.soak_rate, args.publishers, env) if args.soak else None
        )
    if results:
        _report(results)
        save_results(
            "ingest",
            {
                "publishers": args.publishers,
                "sensors": args.sensors,
                "scenarios": {
                    sc.name: asdict(r)
                    | {"messages": sc.messages, "readings": sc.readings}
                    | {"e2e_readings_per_s": sc.readings / r.e2e_s if r.e2e_s else 0.0}
                    for sc, r in results
                },
            },
        )
    if soaked is not None:
        rss, took, stored = soaked
        expected = int(args.soak * args.soak_rate)
        print(
            f"soak {args.soak:.0f} s at {args.soak_rate:,.0f} msg/s: {stored:,} of {expected:,}"
            f" readings stored {took:.0f} s after the first publish; ingestor RSS start"
            f" {rss[0]:.1f}, max {max(rss):.1f}, end {rss[-1]:.1f} MiB"
        )
    ok = all(r.e2e_ok for _, r in results)
    return 0 if ok and (soaked is None or soaked[2] == int(args.soak * args.soak_rate)) else 1


def _report(results: list[tuple[Scenario, Result]]) -> None:
    print()
    head = (
        f"{'scenario':<20}{'msgs':>8}{'readings':>10} | {'publish':>10}{'bare sub':>10}"
        f" {'COPY':>10} | {'e2e rd/s':>10}{'e2e/bare':>9}{'e2e/COPY':>9} | RSS MiB start/max/end"
    )
    print(head)
    print("-" * len(head))
    for sc, r in results:
        ratio_b = r.broker_s / r.e2e_s if r.e2e_s else 0
        ratio_d = r.db_s / r.e2e_s if r.e2e_s else 0
        print(
            f"{sc.name:<20}{sc.messages:>8,}{sc.readings:>10,} |"
            f" {_rate(sc.readings, r.publish_s)}{_rate(sc.readings, r.broker_s)}"
            f" {_rate(sc.readings, r.db_s)} | {_rate(sc.readings, r.e2e_s)}"
            f"{ratio_b:>9.2f}{ratio_d:>9.2f} | {r.rss[0]:.0f}/{r.rss[1]:.0f}/{r.rss[2]:.0f}"
            + ("" if r.e2e_ok else "  ROW COUNT WRONG")
        )
    print("(rates in readings/s; 'publish' = publishers alone, 'bare sub' = broker-path ceiling,")
    print(" 'COPY' = database-path ceiling; for (b) readings/s = messages/s)")
    for sc, r in results:
        print(
            f"{sc.name}: CPU per message: bare subscriber {r.bare_cpu_s / sc.messages * 1e6:.0f} us,"
            f" ingestor {r.ingest_cpu_s / sc.messages * 1e6:.0f} us"
            f" ({r.ingest_cpu_s / sc.readings * 1e6:.1f} us per reading, database excluded)"
        )
    for sc, r in results:
        rate = sc.readings / r.e2e_s if r.e2e_s else 0
        if sc.per_message >= 50:
            verdict = "met" if rate >= 100_000 else "NOT met"
            print(f"goal (a) >= 100,000 readings/s end to end: {rate:,.0f} -> {verdict}")
        else:
            share = r.broker_s / r.e2e_s if r.e2e_s else 0
            verdict = "met" if share >= 0.6 else "NOT met"
            print(f"goal (b) >= 60% of the bare subscriber: {share:.0%} -> {verdict}")


if __name__ == "__main__":
    sys.exit(main())
