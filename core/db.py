"""Schema migrations and database helpers shared by every part.

Migrations are SQL files in ``core/migrations``: ``NNNN_name.sql`` runs everywhere,
``NNNN_name.plain.sql`` / ``NNNN_name.timescale.sql`` run on plain PostgreSQL or
where the TimescaleDB extension is available.  A file whose first line is
``-- ioc:autocommit`` runs statement by statement outside a transaction
(TimescaleDB continuous aggregates require it; such files hold no ``$$`` bodies).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from importlib import resources
from typing import Any

import psycopg

from core.types import Reading

logger = logging.getLogger(__name__)

MIGRATION_LOCK = 727000
_NAME_RE = re.compile(r"^(\d{4})_([a-z0-9_]+?)(?:\.(plain|timescale))?\.sql$")


@dataclass(frozen=True, slots=True)
class Migration:
    version: str
    name: str
    variant: str | None  # None (both), "plain" or "timescale"
    sql: str

    @property
    def autocommit(self) -> bool:
        return self.sql.lstrip().startswith("-- ioc:autocommit")


def available_migrations() -> list[Migration]:
    out = []
    for entry in resources.files("core.migrations").iterdir():
        m = _NAME_RE.match(entry.name)
        if m:
            out.append(Migration(m.group(1), m.group(2), m.group(3), entry.read_text("utf-8")))
    return sorted(out, key=lambda x: (x.version, x.variant or ""))


def timescale_available(conn: psycopg.Connection[Any]) -> bool:
    row = conn.execute(
        "SELECT EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb')"
    ).fetchone()
    return bool(row and row[0])


def uses_timescale(conn: psycopg.Connection[Any]) -> bool:
    """True when the applied schema is the TimescaleDB variant."""
    row = conn.execute(
        "SELECT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'timescaledb')"
    ).fetchone()
    return bool(row and row[0])


def migrate(
    dsn_or_conn: str | psycopg.Connection[Any], *, use_timescale: bool | None = None
) -> list[str]:
    """Apply pending migrations; return the versions applied.  Safe to run concurrently."""
    if isinstance(dsn_or_conn, str):
        with psycopg.connect(dsn_or_conn, autocommit=True) as conn:
            return _migrate(conn, use_timescale)
    conn = dsn_or_conn
    conn.autocommit = True
    return _migrate(conn, use_timescale)


def _migrate(conn: psycopg.Connection[Any], use_timescale: bool | None) -> list[str]:
    conn.execute("SELECT pg_advisory_lock(%s)", (MIGRATION_LOCK,))
    try:
        conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            " version text PRIMARY KEY, name text NOT NULL, variant text,"
            " applied_at timestamptz NOT NULL DEFAULT now())"
        )
        applied = {r[0] for r in conn.execute("SELECT version FROM schema_migrations")}
        if use_timescale is None:
            use_timescale = uses_timescale(conn) if applied else timescale_available(conn)
        variant = "timescale" if use_timescale else "plain"
        if use_timescale and not applied:
            conn.execute("CREATE EXTENSION IF NOT EXISTS timescaledb")
        done: list[str] = []
        for mig in available_migrations():
            if mig.version in applied or (mig.variant and mig.variant != variant):
                continue
            logger.info("applying migration %s_%s (%s)", mig.version, mig.name, variant)
            if mig.autocommit:
                for stmt in _split(mig.sql):
                    conn.execute(stmt.encode())
                conn.execute(
                    "INSERT INTO schema_migrations (version, name, variant) VALUES (%s, %s, %s)",
                    (mig.version, mig.name, variant),
                )
            else:
                with conn.transaction():
                    conn.execute(mig.sql.encode())
                    conn.execute(
                        "INSERT INTO schema_migrations (version, name, variant) VALUES (%s, %s, %s)",
                        (mig.version, mig.name, variant),
                    )
            done.append(mig.version)
            applied.add(mig.version)
        return done
    finally:
        conn.execute("SELECT pg_advisory_unlock(%s)", (MIGRATION_LOCK,))


def _split(sql: str) -> list[str]:
    lines = [ln for ln in sql.splitlines() if not ln.strip().startswith("--")]
    return [s.strip() for s in "\n".join(lines).split(";") if s.strip()]


def maintain(
    conn: psycopg.Connection[Any],
    *,
    back_days: float,
    ahead_days: float,
    retention_days: float,
    dead_letter_retention_days: float | None = None,
) -> str:
    """Create partitions ahead, drop the ones past retention (no-op parts on TimescaleDB).

    With ``dead_letter_retention_days``, dead letters older than that are deleted too.
    """
    row = conn.execute(
        "SELECT ioc_maintain(make_interval(secs => %s), make_interval(secs => %s),"
        " make_interval(secs => %s))",
        (back_days * 86400 + 86400, ahead_days * 86400, retention_days * 86400),
    ).fetchone()
    result = str(row[0]) if row else ""
    if dead_letter_retention_days is not None:
        gone = conn.execute(
            "DELETE FROM dead_letters WHERE received_at < now() - make_interval(secs => %s)",
            (dead_letter_retention_days * 86400,),
        ).rowcount
        result += f", dead letters deleted {gone}"
    return result


def missing_partition(exc: psycopg.Error) -> bool:
    """True when a write failed because no partition of ``readings`` holds a row's time."""
    return isinstance(exc, psycopg.errors.CheckViolation) and "partition" in str(exc)


def ensure_partitions(conn: psycopg.Connection[Any], lo: datetime, hi: datetime) -> int:
    """Create the partitions of ``readings`` that ``[lo, hi]`` needs; return how many were made.

    Idempotent (none on TimescaleDB, whose chunks appear by themselves). The one way
    every writer of ``readings`` recovers from a ``missing_partition`` error.
    """
    row = conn.execute("SELECT ioc_ensure_partitions(%s, %s)", (lo, hi)).fetchone()
    made = int(row[0]) if row and row[0] is not None else 0
    logger.info("made %s partition(s) for readings from %s to %s", made, lo, hi)
    return made


def insert_readings(conn: psycopg.Connection[Any], rows: Sequence[Reading]) -> None:
    """Store a few readings (idempotent: a stored one is kept), making missing partitions once.

    For the readings a part derives (AQI, fire risk); ingest COPYs the measured ones.
    """
    if not rows:
        return
    sql = (
        "INSERT INTO readings (time, sensor, metric, value) VALUES (%s, %s, %s, %s)"
        " ON CONFLICT DO NOTHING"
    )
    params = [(r.time, r.sensor, r.metric, r.value) for r in rows]
    try:
        with conn.transaction(), conn.cursor() as cur:
            cur.executemany(sql, params)
    except psycopg.Error as exc:
        if not missing_partition(exc):
            raise
        ensure_partitions(conn, min(r.time for r in rows), max(r.time for r in rows))
        with conn.transaction(), conn.cursor() as cur:
            cur.executemany(sql, params)
