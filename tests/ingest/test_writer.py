"""The writer against a real PostgreSQL: one transaction per batch, acks after commit, retries."""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest

from core.codecs import DEFAULT_LIMITS, encode_native
from core.types import Sensor, SensorKind
from ingest.config import IngestSettings
from ingest.inbound import Inbound, decode_message
from ingest.metrics import IngestMetrics
from ingest.registry import Registry
from ingest.writer import AckSequencer, Batcher, Writer
from tests.support.servers import PostgresServer

pytestmark = pytest.mark.db

NOW = time.time()


class FakeAcker:
    def __init__(self) -> None:
        self.acked: list[int] = []
        self.forgotten: list[int] = []

    def ack(self, msgs: list[Inbound]) -> None:
        self.acked += [m.mid for m in msgs]

    def forget(self, msgs: list[Inbound]) -> None:
        self.forgotten += [m.mid for m in msgs]


_mid = iter(range(1, 1_000_000))


def msg(topic: str, payload: bytes, received: float | None = None) -> Inbound:
    return decode_message(
        topic,
        payload,
        mid=next(_mid),
        qos=1,
        gen=1,
        now=received or time.time(),
        limits=DEFAULT_LIMITS,
    )


def data(sensor: str, values: dict[str, float], t: float, kind: str = "air_quality") -> Inbound:
    return msg(f"ioc/v1/{kind}/{sensor}/data", encode_native([(t, values)]))


MakeWriter = Callable[..., tuple[Writer, FakeAcker]]


@pytest.fixture
def make_writer(db_url: str) -> Iterator[MakeWriter]:
    made: list[Writer] = []

    def factory(dsn: str = db_url, **overrides: Any) -> tuple[Writer, FakeAcker]:
        settings = IngestSettings(database_url=dsn, ingest_last_seen_interval_s=0, **overrides)
        acker = FakeAcker()
        inbox: queue.SimpleQueue[Inbound] = queue.SimpleQueue()
        writer = Writer(settings, inbox, acker, IngestMetrics(), Registry())
        made.append(writer)
        writer.refresh_registry()
        return writer, acker

    yield factory
    for writer in made:
        writer.close()


def register(db: psycopg.Connection[Any], *ids: str, kind: str = "air_quality") -> None:
    for i in ids:
        db.execute("INSERT INTO sensors (id, kind, source) VALUES (%s, %s, 'api')", (i, kind))


def test_a_batch_is_written_whole_and_acked_after_commit(
    db: psycopg.Connection[Any], make_writer: MakeWriter
) -> None:
    writer, acker = make_writer()
    t = int(NOW) - 120
    batch = [
        msg(
            "ioc/v1/air_quality/aq-1/meta",
            b'{"name": "Hoan Kiem", "lat": 21.03, "lon": 105.85, "metrics": ["pm25", "pm10"],'
            b' "vendor": "acme"}',
        ),
        data("aq-1", {"pm25": 35.5, "pm10": 50}, t),
        msg("ioc/v1/air_quality/aq-1/status", b"online"),
        msg("ioc/v1/spaceship/x/data", b"{}"),
        msg(
            "ioc/v1/air_quality/aq-1/data",
            b'[{"ts": %d, "values": {"pm25": 36, "pm10": -1}}]' % ((t + 60) * 1000),
        ),
    ]
    assert writer.commit(batch)
    assert acker.acked == [m.mid for m in batch]
    rows = db.execute("SELECT sensor, metric, value FROM readings ORDER BY time, metric").fetchall()
    assert rows == [("aq-1", "pm10", 50.0), ("aq-1", "pm25", 35.5), ("aq-1", "pm25", 36.0)]
    sensor = db.execute(
        "SELECT kind, name, metrics, attributes, source, status, last_seen_at FROM sensors"
    ).fetchone()
    assert sensor is not None
    assert sensor[:6] == (
        "air_quality",
        "Hoan Kiem",
        ["pm25", "pm10"],
        {"vendor": "acme"},
        "meta",
        "online",
    )
    assert sensor[6] == datetime.fromtimestamp(t + 60, UTC)
    dead = db.execute(
        "SELECT topic, code, accepted, rejected FROM dead_letters ORDER BY id"
    ).fetchall()
    assert [(d[0], d[1], d[2]) for d in dead] == [
        ("ioc/v1/spaceship/x/data", "bad_topic", 0),
        ("ioc/v1/air_quality/aq-1/data", "out_of_range", 1),
    ]
    assert dead[1][3][0]["index"] == 1 and dead[1][3][0]["reason"] == "out_of_range"
    assert "aq-1" in writer.registry
    m = writer.metrics
    assert m.value("ioc_ingest_readings_stored_total") == 3
    assert m.value("ioc_ingest_rejections_total", {"reason": "out_of_range"}) == 1
    assert m.value("ioc_ingest_rejections_total", {"reason": "bad_topic"}) == 1
    assert m.value("ioc_ingest_dead_letters_total") == 2


def test_duplicates_are_stored_once(db: psycopg.Connection[Any], make_writer: MakeWriter) -> None:
    register(db, "aq-1", "aq-2")
    writer, acker = make_writer()
    t = NOW - 300
    first = [data(s, {"pm25": float(i)}, t + i) for i in range(50) for s in ("aq-1", "aq-2")]
    assert writer.commit(first)
    again = [data("aq-1", {"pm25": 1.0}, t + 100), *first[:10]]  # a redelivery plus new data
    assert writer.commit(again)
    assert db.execute("SELECT count(*) FROM readings").fetchone() == (101,)
    assert writer.metrics.value("ioc_ingest_duplicates_total") == 10
    assert writer.metrics.value("ioc_ingest_readings_stored_total") == 101
    assert len(acker.acked) == 111
    # the same reading twice within one message is stored once too
    dup = msg(
        "ioc/v1/air_quality/aq-2/data",
        b'[{"ts": %d, "values": {"pm25": 1}}, {"ts": %d, "values": {"pm25": 2}}]'
        % ((t + 200) * 1000, (t + 200) * 1000),
    )
    assert writer.commit([dup])
    assert db.execute("SELECT count(*) FROM readings").fetchone() == (102,)


def test_a_missing_partition_is_made_and_nothing_is_lost(
    db: psycopg.Connection[Any], make_writer: MakeWriter
) -> None:
    register(db, "wl-1")
    day = (datetime.now(UTC) - timedelta(days=12)).date()
    db.execute(f"DROP TABLE readings_p{day:%Y%m%d}")
    writer, _ = make_writer()
    t = datetime(day.year, day.month, day.day, 6, tzinfo=UTC).timestamp()
    assert writer.commit([data("wl-1", {"water_level": 42}, t, "water_level")])
    assert db.execute("SELECT value FROM readings").fetchall() == [(42.0,)]
    assert db.execute(
        "SELECT to_regclass(%s) IS NOT NULL", (f"readings_p{day:%Y%m%d}",)
    ).fetchone() == (True,)


def test_unknown_sensors_are_dead_lettered_by_default(
    db: psycopg.Connection[Any], make_writer: MakeWriter
) -> None:
    writer, acker = make_writer()
    batch = [data("ghost-1", {"pm25": 5}, NOW - 10)]
    assert writer.commit(batch)
    assert acker.acked == [batch[0].mid]
    assert db.execute("SELECT count(*) FROM readings").fetchone() == (0,)
    assert db.execute("SELECT code FROM dead_letters").fetchall() == [("unknown_sensor",)]
    assert writer.metrics.value("ioc_ingest_rejections_total", {"reason": "unknown_sensor"}) == 1
    # registered through the API a moment later: seen at once, no refresh needed
    register(db, "ghost-1")
    assert writer.commit([data("ghost-1", {"pm25": 6}, NOW - 5)])
    assert db.execute("SELECT value FROM readings").fetchall() == [(6.0,)]


def test_unknown_sensors_can_register_themselves(
    db: psycopg.Connection[Any], make_writer: MakeWriter
) -> None:
    writer, _ = make_writer(ingest_unknown_sensors="register")
    assert writer.commit(
        [
            data("cam-9", {"speed": 30, "occupancy": 10}, NOW - 10, "traffic_camera"),
            data("cam-9", {"speed": 31}, NOW - 5, "traffic_camera"),
        ]
    )
    assert db.execute("SELECT id, kind, source, metrics FROM sensors").fetchall() == [
        ("cam-9", "traffic_camera", "auto", ["occupancy", "speed"])
    ]
    assert db.execute("SELECT count(*) FROM readings").fetchone() == (3,)
    assert db.execute("SELECT count(*) FROM dead_letters").fetchone() == (0,)


def test_meta_and_first_readings_in_one_batch(
    db: psycopg.Connection[Any], make_writer: MakeWriter
) -> None:
    writer, _ = make_writer()
    assert writer.commit(
        [
            msg("ioc/v1/noise/nm-1/meta", b'{"name": "Old Quarter", "metrics": ["noise"]}'),
            data("nm-1", {"noise": 71}, NOW - 1, "noise"),
        ]
    )
    assert db.execute("SELECT count(*) FROM readings").fetchone() == (1,)
    assert db.execute("SELECT source FROM sensors").fetchall() == [("meta",)]


def test_readings_cut_after_a_meta_are_kept_while_the_meta_commits_elsewhere(
    db: psycopg.Connection[Any], db_url: str
) -> None:
    """With several writers, the meta's batch may commit after the batch of first readings."""
    settings = IngestSettings(database_url=db_url, ingest_last_seen_interval_s=0)
    inbox: queue.SimpleQueue[Inbound] = queue.SimpleQueue()
    registry = Registry()
    batcher = Batcher(settings, inbox, registry)
    acker = FakeAcker()
    writer = Writer(settings, inbox, acker, IngestMetrics(), registry, batcher=batcher)
    try:
        writer.refresh_registry()
        inbox.put(msg("ioc/v1/noise/nm-7/meta", b'{"name": "Hang Bac", "metrics": ["noise"]}'))
        _, meta_batch = batcher.collect(stopping=True)  # taken by another writer, not committed
        inbox.put(data("nm-7", {"noise": 64}, NOW - 1, "noise"))
        _, first_readings = batcher.collect(stopping=True)
        assert writer.commit(first_readings)  # commits first: the readings are not dead-lettered
        assert db.execute("SELECT count(*) FROM dead_letters").fetchone() == (0,)
        assert db.execute("SELECT value FROM readings").fetchall() == [(64.0,)]
        assert writer.commit(meta_batch)
        assert db.execute("SELECT id, source FROM sensors").fetchall() == [("nm-7", "meta")]
        # a sensor without a meta is still refused
        inbox.put(data("nm-8", {"noise": 60}, NOW - 1, "noise"))
        _, stranger = batcher.collect(stopping=True)
        assert writer.commit(stranger)
        assert db.execute("SELECT code FROM dead_letters").fetchall() == [("unknown_sensor",)]
    finally:
        writer.close()


def test_only_status_changes_are_recorded(
    db: psycopg.Connection[Any], make_writer: MakeWriter
) -> None:
    register(db, "ws-1", kind="weather")
    writer, _ = make_writer()
    t = NOW - 100
    for payload in [b"online", b"online", b"offline", b"offline", b"online"]:
        t += 10
        assert writer.commit([msg("ioc/v1/weather/ws-1/status", payload, received=t)])
    assert [r[0] for r in db.execute("SELECT status FROM sensor_status ORDER BY time")] == [
        "online",
        "offline",
        "online",
    ]
    assert db.execute("SELECT status, status_at FROM sensors").fetchone() == (
        "online",
        datetime.fromtimestamp(t, UTC),
    )
    # a late message with an older time does not overwrite the newer status
    late = b'{"status": "offline", "ts": %d}' % ((t - 5) * 1000)
    assert writer.commit([msg("ioc/v1/weather/ws-1/status", late)])
    assert db.execute("SELECT status FROM sensors").fetchone() == ("online",)


@pytest.mark.allow_error_logs
def test_a_message_the_database_refuses_is_isolated(
    db: psycopg.Connection[Any], make_writer: MakeWriter
) -> None:
    register(db, "aq-1")
    writer, acker = make_writer()
    poison = msg("ioc/v1/air_quality/aq-2/meta", b'{"name": "x"}')
    poison.meta = Sensor(id="aq-2", kind=SensorKind.AIR_QUALITY, name="nul \x00 inside")
    batch = [data("aq-1", {"pm25": 1}, NOW - 3), poison, data("aq-1", {"pm25": 2}, NOW - 2)]
    assert writer.commit(batch)
    assert sorted(acker.acked) == sorted(m.mid for m in batch)
    assert db.execute("SELECT count(*) FROM readings").fetchone() == (2,)
    assert db.execute("SELECT code, topic FROM dead_letters").fetchall() == [
        ("db_rejected", "ioc/v1/air_quality/aq-2/meta")
    ]


@pytest.mark.slow
def test_database_outage_holds_the_batch_until_it_commits(
    make_pg: Callable[[], PostgresServer], make_writer: MakeWriter
) -> None:
    pg = make_pg()
    with psycopg.connect(pg.dsn(), autocommit=True) as conn:
        conn.execute("CREATE DATABASE ioc")
    from core.db import migrate

    migrate(pg.dsn("ioc"))
    writer, acker = make_writer(
        pg.dsn("ioc"), ingest_unknown_sensors="register", ingest_reconnect_max_s=1
    )
    pg.stop()
    batch = [data("aq-1", {"pm25": float(i)}, NOW - 100 + i) for i in range(20)]
    done = threading.Event()

    def commit() -> None:
        writer.commit(batch)
        done.set()

    thread = threading.Thread(target=commit)
    thread.start()
    time.sleep(2.0)
    assert not done.is_set() and acker.acked == []
    assert writer.metrics.value("ioc_ingest_db_retries_total") >= 2
    pg.start()
    assert done.wait(30)
    thread.join()
    assert len(acker.acked) == 20
    with psycopg.connect(pg.dsn("ioc")) as conn:
        assert conn.execute("SELECT count(*) FROM readings").fetchone() == (20,)


@pytest.mark.slow
def test_shutdown_with_the_database_away_leaves_messages_unacknowledged(
    make_pg: Callable[[], PostgresServer], make_writer: MakeWriter
) -> None:
    pg = make_pg()
    with psycopg.connect(pg.dsn(), autocommit=True) as conn:
        conn.execute("CREATE DATABASE ioc")
    from core.db import migrate

    migrate(pg.dsn("ioc"))
    writer, acker = make_writer(
        pg.dsn("ioc"), ingest_unknown_sensors="register", ingest_shutdown_timeout_s=1.5
    )
    pg.stop()
    batch = [data("aq-1", {"pm25": float(i)}, NOW - 100 + i) for i in range(5)]
    for m in batch:
        writer.inbox.put(m)
    stop = threading.Event()
    thread = threading.Thread(target=writer.run, args=(stop,))
    thread.start()
    time.sleep(1.0)
    stop.set()
    t0 = time.monotonic()
    thread.join(10)
    assert not thread.is_alive()
    assert time.monotonic() - t0 < 5
    assert acker.acked == [] and acker.forgotten == [m.mid for m in batch]


def test_acks_go_out_in_arrival_order_whatever_order_batches_commit_in() -> None:
    acker = FakeAcker()
    seq = AckSequencer(acker)
    a, b, c = (msg("ioc/v1/noise/n/data", b"{}") for _ in range(3))
    seq.done(3, [c], [])
    seq.done(2, [], [b])
    assert acker.acked == [] and acker.forgotten == []
    seq.done(1, [a], [])
    assert acker.acked == [a.mid, c.mid] and acker.forgotten == [b.mid]


def test_parallel_writers_store_everything_and_ack_in_order(
    db: psycopg.Connection[Any], db_url: str
) -> None:
    register(db, *(f"aq-{i}" for i in range(50)))
    settings = IngestSettings(
        database_url=db_url, ingest_writers=3, ingest_batch_messages=40, ingest_batch_interval_ms=5
    )
    inbox: queue.SimpleQueue[Inbound] = queue.SimpleQueue()
    acker, registry, metrics = FakeAcker(), Registry(), IngestMetrics()
    batcher, sequencer = Batcher(settings, inbox), AckSequencer(acker)
    writers = [
        Writer(
            settings, inbox, acker, metrics, registry, batcher=batcher, sequencer=sequencer, index=i
        )
        for i in range(3)
    ]
    msgs = [
        data(f"aq-{i % 50}", {"pm25": float(i % 500)}, NOW - 200 + i // 50) for i in range(2000)
    ]
    for m in msgs:
        inbox.put(m)
    stop = threading.Event()
    threads = [threading.Thread(target=w.run, args=(stop,)) for w in writers]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 60
    while len(acker.acked) < len(msgs) and time.monotonic() < deadline:
        time.sleep(0.05)
    stop.set()
    for t in threads:
        t.join(30)
    assert acker.acked == [m.mid for m in msgs]  # every one, in arrival order
    assert db.execute("SELECT count(*) FROM readings").fetchone() == (2000,)
    assert metrics.value("ioc_ingest_batch_messages_count") >= 2000 / 40


def test_collect_closes_a_batch_by_size_or_age(make_writer: MakeWriter) -> None:
    writer, _ = make_writer(ingest_batch_rows=5, ingest_batch_interval_ms=100)
    for i in range(12):
        writer.inbox.put(data("aq-1", {"pm25": float(i)}, NOW))
    assert [len(writer.collect()) for _ in range(3)] == [5, 5, 2]  # the last one by age
    writer.inbox.put(data("aq-1", {"pm25": 1.0}, NOW))
    t0 = time.monotonic()
    assert len(writer.collect()) == 1
    assert 0.05 <= time.monotonic() - t0 < 1.0


def test_maintenance_and_registry_refresh(
    db: psycopg.Connection[Any], make_writer: MakeWriter
) -> None:
    writer, _ = make_writer()
    assert len(writer.registry) == 0
    register(db, "aq-5")
    writer.refresh_registry()
    assert "aq-5" in writer.registry
    writer.run_maintenance()
    assert writer.metrics.value("ioc_ingest_maintenance_total", {"result": "ok"}) == 1
