"""An hourly rollup of ``readings`` for long bucketed history queries on plain PostgreSQL.

On plain PostgreSQL ``readings_1h`` is a view computed on read, so a month of one sensor
in 1-hour buckets reads ~43,000 rows scattered over as many pages.  The API therefore
keeps ``api_readings_1h`` (sum, count, min, max, last per sensor, metric and hour),
filled by a background refresher: hours that ended ``settle`` ago are rolled up one step
at a time up to a watermark; every cycle the last ``trailing`` hours are rolled up again
for late readings, and a closed day whose partition changed since (a backfill) is rolled
up again whole.  One process refreshes at a time (an advisory lock).  A query
whose buckets are whole hours reads the rollup below the watermark and raw readings
above it (and for a partial first hour), then merges the hours into its buckets -- the
same answer as from raw readings.  TimescaleDB has its own continuous aggregate and
compressed chunks; there the API queries the hypertable directly.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
from psycopg import AsyncConnection, sql
from psycopg_pool import AsyncConnectionPool

logger = logging.getLogger(__name__)

ROLLUP_LOCK = 727100
STATE = "readings_1h"
ORIGIN = "TIMESTAMPTZ '2000-01-01 00:00:00+00'"
HOUR = timedelta(hours=1)
DAY = timedelta(days=1)
STALE_BATCH = 48  # late hours rolled again per step
MAX_STALE_RANGES = 32  # a query reads at most this many stretches of late hours raw

SCHEMA = """
CREATE TABLE IF NOT EXISTS api_readings_1h (
    bucket    timestamptz NOT NULL,
    sensor    text NOT NULL,
    metric    text NOT NULL,
    sum       double precision NOT NULL,
    count     bigint NOT NULL,
    min       double precision NOT NULL,
    max       double precision NOT NULL,
    last      double precision NOT NULL,
    last_time timestamptz NOT NULL,
    PRIMARY KEY (sensor, metric, bucket)
);
CREATE INDEX IF NOT EXISTS api_readings_1h_bucket ON api_readings_1h (bucket);
CREATE TABLE IF NOT EXISTS api_rollup_state (
    name       text PRIMARY KEY,
    watermark  timestamptz NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS api_rollup_partitions (
    name    text PRIMARY KEY,    -- readings_pYYYYMMDD
    changes bigint NOT NULL      -- its insert + update + delete counters when last rolled
);
"""

# hourly partial aggregates of raw readings (the same columns as the rollup table)
HOURLY = (
    f"SELECT date_bin('1 hour', time, {ORIGIN}) AS hour, sensor, metric, sum(value) AS sum,"
    " count(*) AS count, min(value) AS min, max(value) AS max,"
    " (max(ARRAY[extract(epoch FROM time)::float8, value]))[2] AS last, max(time) AS last_time"
    " FROM readings WHERE {where} GROUP BY 1, 2, 3"
)

_UPSERT = (
    "INSERT INTO api_readings_1h (bucket, sensor, metric, sum, count, min, max, last, last_time) "
    + HOURLY.format(where="time >= %(a)s AND time < %(b)s")
    + " ON CONFLICT (sensor, metric, bucket) DO UPDATE SET sum = excluded.sum,"
    " count = excluded.count, min = excluded.min, max = excluded.max, last = excluded.last,"
    " last_time = excluded.last_time"
)


def floor_hour(t: datetime) -> datetime:
    return t.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


def ceil_hour(t: datetime) -> datetime:
    f = floor_hour(t)
    return f if f == t else f + HOUR


@dataclass(frozen=True, slots=True)
class RollupConfig:
    interval_s: float = 60.0
    settle: timedelta = timedelta(minutes=2)
    trailing: timedelta = timedelta(hours=2)
    retention: timedelta = timedelta(days=365)


async def ensure_schema(conn: AsyncConnection[Any]) -> None:
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(%s)", (ROLLUP_LOCK,))
        await conn.execute(SCHEMA)


async def watermark(conn: AsyncConnection[Any]) -> datetime | None:
    """Hours before this are in the rollup (None: no rollup yet)."""
    try:
        cur = await conn.execute("SELECT watermark FROM api_rollup_state WHERE name = %s", (STATE,))
    except psycopg.errors.UndefinedTable:
        return None
    row = await cur.fetchone()
    return row[0] if row else None


@dataclass(frozen=True, slots=True)
class RollupView:
    """What a query may read from the rollup: hours before ``mark`` except ``stale`` ones."""

    mark: datetime
    stale: tuple[datetime, ...] = ()


async def rollup_view(
    conn: AsyncConnection[Any], start: datetime, end: datetime
) -> RollupView | None:
    """The watermark and the hours in [start, end) marked late and not yet rolled again."""
    mark = await watermark(conn)
    if mark is None:
        return None
    try:
        cur = await conn.execute(
            "SELECT bucket FROM readings_1h_stale WHERE bucket >= %s AND bucket < %s"
            " ORDER BY bucket",
            (floor_hour(start), min(end, mark)),
        )
    except psycopg.errors.UndefinedTable:  # a schema before migration 0009
        return RollupView(mark)
    return RollupView(mark, tuple(r[0] for r in await cur.fetchall()))


_CHANGES = """
SELECT c.relname, s.n_tup_ins + s.n_tup_upd + s.n_tup_del
FROM pg_inherits i
JOIN pg_class c ON c.oid = i.inhrelid
JOIN pg_stat_all_tables s ON s.relid = c.oid
WHERE i.inhparent = 'readings'::regclass AND c.relname ~ '^readings_p[0-9]{8}$'
"""


async def refresh_step(conn: AsyncConnection[Any], cfg: RollupConfig) -> bool:
    """One step of work; True when more is due right away.

    In order: move the watermark on (empty stretches in growing strides), roll the
    trailing hours again, roll again any closed day whose partition changed since it
    was last rolled (a backfill, a late batch), drop what retention dropped.
    """
    async with conn.transaction():
        cur = await conn.execute("SELECT pg_try_advisory_xact_lock(%s), now()", (ROLLUP_LOCK,))
        row = await cur.fetchone()
        if not row or not row[0]:
            return False  # another process is refreshing
        now: datetime = row[1]
        await conn.execute("SET LOCAL statement_timeout = 0")
        upto = floor_hour(now - cfg.settle)
        cur = await conn.execute(
            "SELECT watermark FROM api_rollup_state WHERE name = %s FOR UPDATE", (STATE,)
        )
        got = await cur.fetchone()
        mark: datetime = got[0] if got else floor_hour(now - cfg.retention)
        if mark < upto:
            counters = await _counters(conn)  # before the rolls: what they will include
            while mark < upto:  # a day at a time; empty days cost nothing, so go on
                day = mark.replace(hour=0)
                end = min(day + timedelta(days=1), upto)
                cur = await conn.execute(_UPSERT, {"a": mark, "b": end})
                name = f"readings_p{day:%Y%m%d}"
                if mark == day and end == day + DAY <= upto - cfg.trailing and name in counters:
                    await _remember(conn, name, counters[name])  # a whole closed day
                mark = end
                if cur.rowcount > 0:
                    break
            await conn.execute(
                "INSERT INTO api_rollup_state (name, watermark) VALUES (%s, %s)"
                " ON CONFLICT (name) DO UPDATE SET watermark = excluded.watermark,"
                " updated_at = now()",
                (STATE, mark),
            )
            if mark < upto:
                return True
        await conn.execute(_UPSERT, {"a": mark - cfg.trailing, "b": mark})
        if await _reroll_stale(conn, mark):
            return True
        if await _reroll_changed_day(conn, mark - cfg.trailing):
            return True
        await conn.execute("DELETE FROM api_readings_1h WHERE bucket < %s", (now - cfg.retention,))
    return False


async def _reroll_stale(conn: AsyncConnection[Any], mark: datetime) -> bool:
    """Roll again (delete, insert) the hours below ``mark`` that writers marked late
    (``ioc_mark_late``), at most ``STALE_BATCH`` of them; True if more are waiting.

    The marks are deleted first, in this transaction: a writer marking one of these hours
    meanwhile waits for the commit and marks it again, so nothing is lost between them.
    """
    cur = await conn.execute(
        "DELETE FROM readings_1h_stale WHERE bucket IN (SELECT bucket FROM readings_1h_stale"
        " WHERE bucket < %s ORDER BY bucket LIMIT %s FOR UPDATE) RETURNING bucket",
        (mark, STALE_BATCH + 1),
    )
    hours = sorted(r[0] for r in await cur.fetchall())
    more = len(hours) > STALE_BATCH
    if more:  # put the one past the batch back: it is rolled next step
        await conn.execute("INSERT INTO readings_1h_stale (bucket) VALUES (%s)", (hours.pop(),))
    for a, b in hour_ranges(hours):
        params = {"a": a, "b": b}
        await conn.execute(
            "DELETE FROM api_readings_1h WHERE bucket >= %(a)s AND bucket < %(b)s", params
        )
        await conn.execute(_UPSERT, params)
    if hours:
        logger.info("rolled %d late hour(s) again, %s to %s", len(hours), hours[0], hours[-1])
    return more


def hour_ranges(hours: list[datetime]) -> list[tuple[datetime, datetime]]:
    """Sorted hour starts as [start, end) ranges of consecutive hours."""
    out: list[tuple[datetime, datetime]] = []
    for h in hours:
        if out and out[-1][1] == h:
            out[-1] = (out[-1][0], h + HOUR)
        else:
            out.append((h, h + HOUR))
    return out


async def _reroll_changed_day(conn: AsyncConnection[Any], closed_before: datetime) -> bool:
    """Roll again (delete, insert) one closed day whose partition changed; True if one did.

    A day is closed once it ends before the trailing window.  The partition's insert,
    update and delete counters (pg_stat_all_tables) are kept with the rollup; any
    difference (stats reset included) marks the day for another roll.
    """
    counters = await _counters(conn)
    cur = await conn.execute("SELECT name, changes FROM api_rollup_partitions")
    seen = {name: int(n) for name, n in await cur.fetchall()}
    for name in sorted(counters):
        day = datetime.strptime(name[len("readings_p") :], "%Y%m%d").replace(tzinfo=UTC)
        if day + timedelta(days=1) > closed_before or seen.get(name) == counters[name]:
            continue
        params = {"a": day, "b": day + timedelta(days=1)}
        await conn.execute(
            "DELETE FROM api_readings_1h WHERE bucket >= %(a)s AND bucket < %(b)s", params
        )
        await conn.execute(_UPSERT, params)
        await _remember(conn, name, counters[name])
        return True
    return False


async def _counters(conn: AsyncConnection[Any]) -> dict[str, int]:
    cur = await conn.execute(_CHANGES)
    return {name: int(n) for name, n in await cur.fetchall()}


async def _remember(conn: AsyncConnection[Any], name: str, changes: int) -> None:
    await conn.execute(
        "INSERT INTO api_rollup_partitions (name, changes) VALUES (%s, %s)"
        " ON CONFLICT (name) DO UPDATE SET changes = excluded.changes",
        (name, changes),
    )


async def refresher(pool: AsyncConnectionPool[AsyncConnection[Any]], cfg: RollupConfig) -> None:
    """Keep the rollup up to date for as long as the API runs."""
    while True:
        try:
            more = True
            while more:  # a backfill goes on step by step, a connection checkout each
                async with pool.connection() as conn:
                    more = await refresh_step(conn, cfg)
        except asyncio.CancelledError:
            raise
        except (psycopg.Error, OSError) as exc:
            logger.warning("rollup refresh failed (%s); retrying in %.0f s", exc, cfg.interval_s)
        await asyncio.sleep(cfg.interval_s)


def bucketed_statement(
    *,
    where: str,
    params: dict[str, Any],
    start: datetime,
    end: datetime,
    mark: datetime,
    aggs: tuple[str, ...],
    limit: int,
    stale: tuple[datetime, ...] = (),
) -> tuple[sql.SQL, dict[str, Any]]:
    """Buckets of whole hours from the rollup below ``mark`` and raw readings elsewhere.

    ``where`` filters sensors and metrics (on columns sensor, metric) with ``params``;
    ``params["width"]`` is the bucket width (a multiple of one hour).  Hours in ``stale``
    (late readings the rollup has not rolled again yet) are read from raw readings.
    """
    h0 = min(ceil_hour(start), end)
    r1 = max(h0, min(floor_hour(end), mark))
    parts: list[str] = []
    p = dict(params, start=start, h0=h0, r1=r1, end=end, limit=limit)
    if start < h0:
        parts.append(HOURLY.format(where=f"{where} AND time >= %(start)s AND time < %(h0)s"))
    if h0 < r1:
        late = hour_ranges(sorted(h for h in stale if h0 <= h < r1))
        if len(late) > MAX_STALE_RANGES:  # many stretches: one raw stretch over them all
            late = [(late[0][0], late[-1][1])]
        skip = ""
        for i, (a, b) in enumerate(late):
            p[f"la{i}"], p[f"lb{i}"] = a, b
            skip += f" AND NOT (bucket >= %(la{i})s AND bucket < %(lb{i})s)"
            parts.append(HOURLY.format(where=f"{where} AND time >= %(la{i})s AND time < %(lb{i})s"))
        parts.append(
            "SELECT bucket AS hour, sensor, metric, sum, count, min, max, last, last_time"
            f" FROM api_readings_1h WHERE {where} AND bucket >= %(h0)s AND bucket < %(r1)s" + skip
        )
    if r1 < end:
        parts.append(HOURLY.format(where=f"{where} AND time >= %(r1)s AND time < %(end)s"))
    columns = {
        "avg": "sum(sum) / sum(count)",
        "min": "min(min)",
        "max": "max(max)",
        "count": "sum(count)::bigint",
        "last": "(max(ARRAY[extract(epoch FROM last_time)::float8, last]))[2]",
    }
    nulls = {"count": "NULL::bigint"}
    select = ", ".join(
        columns[a] if a in aggs else nulls.get(a, "NULL::float8")
        for a in ("avg", "min", "max", "count", "last")
    )
    text = (
        f"SELECT date_bin(%(width)s, hour, {ORIGIN}) AS bucket, sensor, metric, {select}"
        f" FROM ({' UNION ALL '.join(parts)}) p"
        " GROUP BY sensor, metric, 1 ORDER BY sensor, metric, 1 LIMIT %(limit)s"
    )
    return sql.SQL(text), p
