"""The SQL of the ingestor: one transaction per batch, readings by binary COPY.

Readings are COPYed straight into ``readings``; if that hits a duplicate (a
redelivered message), the batch goes through a temporary staging table and
``INSERT ... ON CONFLICT DO NOTHING`` instead, and keeps doing so for a while
(redeliveries come in bursts).  A reading outside the existing partitions makes
the partitions (``ioc_ensure_partitions``) and the COPY is retried.  Registry
upserts, status changes, dead letters and ``last_seen_at`` ride in the same
transaction, so a batch is stored whole or not at all.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import psycopg
from psycopg import errors as pgerr
from psycopg.types.json import Jsonb

from core.columnar import PG_EPOCH, PG_EPOCH_S
from core.db import ensure_partitions, missing_partition
from core.registry import read_sensors
from core.types import Sensor
from ingest.inbound import DeadLetter
from ingest.rows import COPY_COLUMNS, RowBuffer, Scratch, SeriesTable

logger = logging.getLogger(__name__)

Conn = psycopg.Connection[Any]

STAGING = "ioc_ingest_staging"

_UPSERT_META = """
INSERT INTO sensors (id, kind, name, lat, lon, area, metrics, interval_s, attributes, source)
VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, 'meta')
ON CONFLICT (id) DO UPDATE SET
    kind = EXCLUDED.kind, name = EXCLUDED.name, lat = EXCLUDED.lat, lon = EXCLUDED.lon,
    area = EXCLUDED.area, metrics = EXCLUDED.metrics, interval_s = EXCLUDED.interval_s,
    attributes = EXCLUDED.attributes, source = 'meta', updated_at = now()
"""

_INSERT_AUTO = """
INSERT INTO sensors (id, kind, metrics, source)
SELECT u.id, u.kind, string_to_array(u.metrics, ','), 'auto'
FROM unnest(%s::text[], %s::text[], %s::text[]) AS u(id, kind, metrics)
ON CONFLICT (id) DO NOTHING
"""

# a status row only when it changes what the sensor was last known to be
# (a retained status is delivered again on every new subscription)
_INSERT_STATUS = """
INSERT INTO sensor_status (sensor, time, status)
SELECT %(sensor)s, %(time)s, %(status)s
WHERE %(status)s IS DISTINCT FROM (
    SELECT status FROM sensor_status
    WHERE sensor = %(sensor)s AND time <= %(time)s ORDER BY time DESC LIMIT 1)
ON CONFLICT DO NOTHING
"""

_UPDATE_STATUS = """
UPDATE sensors SET status = %(status)s, status_at = %(time)s
WHERE id = %(sensor)s AND (status_at IS NULL OR status_at <= %(time)s)
"""

_UPDATE_LAST_SEEN = """
UPDATE sensors AS s SET last_seen_at = u.t
FROM unnest(%s::text[], %s::timestamptz[]) AS u(id, t)
WHERE s.id = u.id AND (s.last_seen_at IS NULL OR s.last_seen_at < u.t)
"""


def pg_time(us: int) -> datetime:
    return PG_EPOCH + timedelta(microseconds=us)


@dataclass(slots=True)
class Work:
    """What one batch writes."""

    metas: list[Sensor] = field(default_factory=list)
    auto: list[tuple[str, str, list[str]]] = field(default_factory=list)
    statuses: list[tuple[str, datetime, str]] = field(default_factory=list)
    rows: RowBuffer = field(default_factory=RowBuffer)
    dead: list[DeadLetter] = field(default_factory=list)
    last_seen: dict[str, int] = field(default_factory=dict)  # sensor -> newest time (PG us)


@dataclass(slots=True)
class Outcome:
    inserted: int = 0
    duplicates: int = 0
    statuses: int = 0
    partitions_made: int = 0
    staged: bool = False
    late_hours: int = 0  # hours newly marked for the hourly rollup to roll again


class ReadingsWriter:
    """Writes readings of a batch: direct COPY, or staging + ON CONFLICT after duplicates."""

    def __init__(self, *, staging_hold_s: float = 10.0) -> None:
        self.staging_hold_s = staging_hold_s
        self._staging_until = 0.0
        self._scratch = Scratch()

    def write(self, conn: Conn, rows: RowBuffer, table: SeriesTable, *, sort: bool) -> Outcome:
        out = Outcome()
        if not rows:
            return out
        data = rows.encode(table, sort=sort, scratch=self._scratch)
        n = len(rows)
        for attempt in range(3):
            try:
                if time.monotonic() < self._staging_until:
                    out.inserted = self._staged(conn, data)
                    out.staged = True
                else:
                    try:
                        with conn.transaction():  # a savepoint
                            _copy(conn, "readings", data)
                        out.inserted = n
                    except pgerr.UniqueViolation:
                        self._staging_until = time.monotonic() + self.staging_hold_s
                        out.inserted = self._staged(conn, data)
                        out.staged = True
                out.duplicates = n - out.inserted
                out.late_hours = mark_late(conn, rows.us)
                return out
            except pgerr.CheckViolation as exc:
                if attempt == 2 or not missing_partition(exc):
                    raise
                lo, hi = rows.span_us()
                out.partitions_made += ensure_partitions(conn, pg_time(lo), pg_time(hi))
        raise AssertionError("unreachable")

    def _staged(self, conn: Conn, data: memoryview) -> int:
        with conn.transaction():  # a savepoint: a partition error leaves the batch intact
            conn.execute(
                f"CREATE TEMP TABLE IF NOT EXISTS {STAGING} (time timestamptz,"
                " value double precision, sensor text, metric text) ON COMMIT DELETE ROWS"
            )
            _copy(conn, STAGING, data)
            cur = conn.execute(
                f"INSERT INTO readings (time, sensor, metric, value)"
                f" SELECT time, sensor, metric, value FROM {STAGING} ON CONFLICT DO NOTHING"
            )
            return cur.rowcount


_HOUR_US = 3_600_000_000


def mark_late(conn: Conn, us: list[int], now: float | None = None) -> int:
    """Mark the hours of readings older than the current hour (late, replayed, backfilled)
    for the hourly rollup; in the batch's transaction.  A live batch costs one ``min``."""
    if not us:
        return 0
    hour_now = int(((time.time() if now is None else now) - PG_EPOCH_S) * 1e6)
    hour_now -= hour_now % _HOUR_US
    if min(us) >= hour_now:
        return 0
    arr = np.fromiter(us, np.int64, len(us))
    late = arr[arr < hour_now]
    hours = [int(h) for h in np.unique(late - late % _HOUR_US)]
    try:
        with conn.transaction():  # a savepoint: a schema before 0009 must not fail the batch
            row = conn.execute(
                "SELECT ioc_mark_late(%s)", ([pg_time(h) for h in hours],)
            ).fetchone()
    except pgerr.UndefinedFunction:
        logger.warning("ioc_mark_late() is missing (migration 0009): late hours not marked")
        return 0
    return int(row[0]) if row else 0


def _copy(conn: Conn, table: str, data: memoryview) -> None:
    with conn.cursor().copy(f"COPY {table} {COPY_COLUMNS} FROM STDIN (FORMAT BINARY)") as cp:
        cp.write(data)


def upsert_metas(conn: Conn, metas: list[Sensor]) -> None:
    if not metas:
        return
    with conn.cursor() as cur:
        cur.executemany(
            _UPSERT_META,
            [
                (
                    s.id,
                    s.kind.value,
                    s.name,
                    s.lat,
                    s.lon,
                    s.area,
                    list(s.metrics),
                    s.interval_s,
                    Jsonb(s.attributes),
                )
                for s in metas
            ],
        )


def insert_auto(conn: Conn, sensors: list[tuple[str, str, list[str]]]) -> None:
    """Register sensors (id, kind, metrics seen) in one statement; existing ones are kept."""
    if sensors:
        conn.execute(
            _INSERT_AUTO,
            (
                [s[0] for s in sensors],
                [s[1] for s in sensors],
                [",".join(s[2]) for s in sensors],  # metric names hold no commas
            ),
        )


def store_statuses(conn: Conn, statuses: list[tuple[str, datetime, str]]) -> int:
    changed = 0
    for sensor, t, status in statuses:
        p = {"sensor": sensor, "time": t, "status": status}
        changed += conn.execute(_INSERT_STATUS, p).rowcount
        conn.execute(_UPDATE_STATUS, p)
    return changed


def store_dead_letters(conn: Conn, dead: list[DeadLetter], max_bytes: int) -> None:
    """COPY dead letters; a payload over ``max_bytes`` keeps its head, its size and SHA-256."""
    if not dead:
        return
    with conn.cursor().copy(
        "COPY dead_letters (received_at, topic, payload, code, reason, rejected, accepted,"
        " payload_size, payload_sha256, reason_key, reason_fields) FROM STDIN"
    ) as cp:
        for d in dead:
            payload = d.payload
            cp.write_row(
                (
                    d.received_at,
                    d.topic,
                    payload[:max_bytes],
                    d.code,
                    d.reason,
                    Jsonb(d.rejected) if d.rejected is not None else None,
                    d.accepted,
                    len(payload),
                    hashlib.sha256(payload).hexdigest(),
                    d.detail_key,
                    Jsonb(d.detail_fields) if d.detail_fields is not None else None,
                )
            )


def update_last_seen(conn: Conn, last_seen: dict[str, int]) -> None:
    if not last_seen:
        return
    ids = sorted(last_seen)  # one lock order for every ingestor: no deadlocks
    conn.execute(_UPDATE_LAST_SEEN, (ids, [pg_time(last_seen[i]) for i in ids]))


def load_sensors(conn: Conn, ids: Iterable[str] | None = None) -> dict[str, str]:
    """Registered sensors (id -> kind), all of them or those among ``ids``."""
    return {r.id: r.kind for r in read_sensors(conn, ids)}
