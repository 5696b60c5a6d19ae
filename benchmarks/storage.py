"""Disk per stored reading: plain PostgreSQL, and TimescaleDB before and after compression.

Writes one day of traffic cameras (``--cameras``, 8 metrics each minute, the simulator's
camera) into the project's own schema and measures the table with its indexes:

* plain PostgreSQL (the daily partitions of ``readings``), on a private server;
* TimescaleDB 2.23 (PGlite over pglite-socket, as in ``tests/ingest/test_timescale.py``;
  skipped without node/npm): the hypertable, then after ``compress_chunk`` (segmented by
  sensor and metric, the migration's settings).

The values are random within each metric's usual range, which compresses worse than a
real camera's smooth series: the compressed figure is an upper bound. Results go to
``benchmarks/results/storage.json``; docs/scaling.md sizes the city from them.

    python -m benchmarks.storage [--cameras 100]
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg

from benchmarks import save_results
from core.db import migrate
from tests.support.servers import PostgresServer, free_port

REPO = Path(__file__).resolve().parents[1]
METRICS = {  # metric -> SQL of a value in its usual range
    "vehicle_count": "floor(random() * 300)",
    "count_motorbike": "floor(random() * 220)",
    "count_car": "floor(random() * 60)",
    "count_bus": "floor(random() * 6)",
    "count_truck": "floor(random() * 10)",
    "speed": "round((random() * 50)::numeric, 1)",
    "occupancy": "round((random() * 100)::numeric, 1)",
    "queue_length": "floor(random() * 400)",
}


def _fill(conn: psycopg.Connection[Any], cameras: int, day: datetime) -> int:
    for metric, value in METRICS.items():
        conn.execute(
            "INSERT INTO readings (time, sensor, metric, value)"
            f" SELECT t, 'cam-' || lpad(s::text, 5, '0'), %s, {value}"
            " FROM generate_series(%s::timestamptz, %s::timestamptz, interval '1 minute') t,"
            " generate_series(1, %s) s",
            (metric, day, day + timedelta(days=1) - timedelta(minutes=1), cameras),
        )
    row = conn.execute("SELECT count(*) FROM readings").fetchone()
    return int(row[0]) if row else 0


def plain(cameras: int, day: datetime) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="ioc-bench-storage-") as tmp:
        pg = PostgresServer(Path(tmp) / "pg")
        pg.start()
        try:
            with psycopg.connect(pg.dsn(), autocommit=True) as conn:
                conn.execute("CREATE DATABASE s")
            migrate(pg.dsn("s"))
            with psycopg.connect(pg.dsn("s"), autocommit=True) as conn:
                conn.execute("SELECT ioc_ensure_partitions(%s, %s)", (day, day + timedelta(days=2)))
                rows = _fill(conn, cameras, day)
                conn.execute("VACUUM ANALYZE readings")
                size = conn.execute(
                    "SELECT sum(pg_total_relation_size(c.oid)) FROM pg_inherits i"
                    " JOIN pg_class c ON c.oid = i.inhrelid"
                    " WHERE i.inhparent = 'readings'::regclass"
                ).fetchone()
        finally:
            pg.stop()
    total = int(size[0]) if size and size[0] else 0
    return {"rows": rows, "bytes": total, "bytes_per_reading": round(total / rows, 1)}


@contextmanager
def _timescale() -> Iterator[psycopg.Connection[Any]]:
    from tests.ingest.test_timescale import CACHE, _install

    _install()
    port = free_port()
    proc = subprocess.Popen(
        ["node", "serve.mjs", str(port)],
        cwd=CACHE,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    ready = threading.Event()

    def pump() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            if "listening" in line:
                ready.set()

    threading.Thread(target=pump, daemon=True).start()
    try:
        if not ready.wait(120):
            raise RuntimeError("pglite-socket did not start")
        with psycopg.connect(
            f"postgresql://postgres:any@127.0.0.1:{port}/postgres",
            sslmode="disable",
            prepare_threshold=None,
            autocommit=True,
            connect_timeout=30,
        ) as conn:
            yield conn
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def timescale(cameras: int, day: datetime) -> dict[str, Any]:
    with _timescale() as conn:
        migrate(conn, use_timescale=True)
        rows = _fill(conn, cameras, day)
        size_sql = "SELECT hypertable_size('readings')"
        before = conn.execute(size_sql).fetchone()
        conn.execute("SELECT compress_chunk(c) FROM show_chunks('readings') c")
        after = conn.execute(size_sql).fetchone()
    b = int(before[0]) if before else 0
    a = int(after[0]) if after else 0
    return {
        "rows": rows,
        "bytes": b,
        "bytes_per_reading": round(b / rows, 1),
        "compressed_bytes": a,
        "compressed_bytes_per_reading": round(a / rows, 2),
        "compression_ratio": round(b / a, 1) if a else None,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cameras", type=int, default=100)
    args = parser.parse_args(argv)
    day = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(days=2)
    results: dict[str, Any] = {"cameras": args.cameras, "plain": plain(args.cameras, day)}
    p = results["plain"]
    print(f"plain PostgreSQL: {p['rows']:,} readings, {p['bytes_per_reading']} bytes per reading")
    if shutil.which("node") and shutil.which("npm"):
        results["timescale"] = t = timescale(args.cameras, day)
        print(
            f"TimescaleDB: {t['bytes_per_reading']} bytes per reading, compressed"
            f" {t['compressed_bytes_per_reading']} ({t['compression_ratio']}x smaller)"
        )
    else:
        print("TimescaleDB: skipped (node and npm are needed for PGlite)")
    save_results("storage", results)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
