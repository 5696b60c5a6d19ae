"""The alert lifecycle's statements: an alert's columns from a signal, and each write to ``alerts``.

Every write returns the alert's row after it (``RETURNING``), or None when the alert was
not in the state the write expects (an operator resolved it meanwhile, or the key is
active elsewhere); the triggers in ``core/migrations`` turn each committed change into an
``alert_events`` row.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from analytics.alerts.records import clean_json, finite
from analytics.engine.base import Signal
from core.metrics import METRICS
from core.types import AlertClass, Sensor, SensorKind, Severity

Key = tuple[str, str, str]  # sensor, metric, rule
Conn = psycopg.Connection[Any]
Row = dict[str, Any]

COLUMNS = (
    "id, sensor, metric, rule, detector, kind, alert_class, severity, status, message, value,"
    " expected_low, expected_high, score, evidence, lat, lon, area, opened_at, updated_at,"
    " acknowledged_at, acknowledged_by, resolved_at, resolved_by, occurrences, suppressed_by,"
    " shelved_until, shelved_by"
)


def ts(t: float) -> datetime:
    return datetime.fromtimestamp(t, UTC)


def signal_fields(
    sig: Signal,
    sensors: Callable[[str], Sensor | None],
    kinds: Callable[[str], SensorKind | None],
) -> dict[str, Any]:
    """The columns of an alert that ``sig`` opens or updates (its place from the sensor)."""
    meta = sensors(sig.sensor)
    kind = meta.kind if meta else (kinds(sig.sensor) or SensorKind.GENERIC)
    unit = METRICS[sig.metric].unit if sig.metric in METRICS else ""
    place = ""
    if meta is not None:
        name = meta.name or meta.id
        place = f"{name} ({meta.area})" if meta.area and meta.area not in name else name
    else:
        place = sig.sensor
    message = f"{place}: {sig.message}" if sig.message else f"{place}: {sig.metric} {sig.rule}"
    evidence = {
        **sig.evidence,
        "value": sig.value,
        "unit": unit,
        "expected_low": sig.expected_low,
        "expected_high": sig.expected_high,
        "score": sig.score,
        "detector": sig.detector,
        "reading_time": ts(sig.time).isoformat(),
    }
    return {
        "detector": sig.detector,
        "kind": str(kind),
        "alert_class": str(sig.alert_class or AlertClass.PROBABLE_FAULT),
        "severity": str(sig.severity),
        "message": message,
        "value": finite(sig.value),
        "expected_low": finite(sig.expected_low),
        "expected_high": finite(sig.expected_high),
        "score": finite(sig.score),
        "evidence": Jsonb(clean_json(evidence)),
        "lat": meta.lat if meta else None,
        "lon": meta.lon if meta else None,
        "area": meta.area if meta else "",
    }


def returning(conn: Conn, sql: str, params: tuple[Any, ...]) -> Row | None:
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(sql.encode(), params)
        return cur.fetchone()


def active_rows(conn: Conn) -> Iterator[Row]:
    """Every alert that is not resolved, with its last change as epoch seconds (``t``)."""
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(
            "SELECT id, sensor, metric, rule, status, severity, alert_class, evidence,"
            " extract(epoch FROM updated_at) AS t FROM alerts WHERE status <> 'resolved'"
        )
        yield from cur


def resolved_rows(conn: Conn, since: float) -> Iterator[Row]:
    """The latest resolution of each key resolved after ``since`` (``t``: when)."""
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(
            "SELECT DISTINCT ON (sensor, metric, rule) id, sensor, metric, rule,"
            " extract(epoch FROM resolved_at) AS t FROM alerts"
            " WHERE status = 'resolved' AND resolved_at > %s"
            " ORDER BY sensor, metric, rule, resolved_at DESC",
            (ts(since),),
        )
        yield from cur


def statuses(conn: Conn, ids: list[int]) -> list[tuple[int, str]]:
    rows = conn.execute("SELECT id, status FROM alerts WHERE id = ANY(%s)", (ids,)).fetchall()
    return [(int(i), str(s)) for i, s in rows]


def insert(conn: Conn, key: Key, f: dict[str, Any], at: float) -> Row | None:
    """Open an alert; None when the key already has an active one."""
    return returning(
        conn,
        "INSERT INTO alerts (sensor, metric, rule, detector, kind, alert_class, severity,"
        " message, value, expected_low, expected_high, score, evidence, lat, lon, area,"
        " opened_at, updated_at) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s,"
        " %s, %s, %s, %s, %s, %s) ON CONFLICT (sensor, metric, rule)"
        " WHERE status <> 'resolved' DO NOTHING RETURNING " + COLUMNS,
        (
            *key,
            f["detector"],
            f["kind"],
            f["alert_class"],
            f["severity"],
            f["message"],
            f["value"],
            f["expected_low"],
            f["expected_high"],
            f["score"],
            f["evidence"],
            f["lat"],
            f["lon"],
            f["area"],
            ts(at),
            ts(at),
        ),
    )


def find_active(conn: Conn, key: Key) -> Row | None:
    """The active alert of ``key`` (one another writer opened)."""
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(
            "SELECT id, status, severity, alert_class, evidence FROM alerts"
            " WHERE sensor = %s AND metric = %s AND rule = %s AND status <> 'resolved'",
            key,
        )
        return cur.fetchone()


# what a repeat of the condition writes: its latest message, values, evidence and time
_LATEST = (
    " message = %s, value = %s, expected_low = %s, expected_high = %s, score = %s,"
    " evidence = %s, updated_at = %s"
)
_LATEST_FIELDS = ("message", "value", "expected_low", "expected_high", "score", "evidence")


def _latest(f: dict[str, Any], at: float) -> tuple[Any, ...]:
    return (*(f[name] for name in _LATEST_FIELDS), ts(at))


def reopen(conn: Conn, alert_id: int, f: dict[str, Any], at: float) -> Row | None:
    """Reopen a resolved alert; None when it is not resolved or its key is active elsewhere."""
    try:
        with conn.transaction():  # a savepoint: the key may be active elsewhere
            return returning(
                conn,
                "UPDATE alerts SET status = 'open', resolved_at = NULL, resolved_by = NULL,"
                " acknowledged_at = NULL, acknowledged_by = NULL,"
                " occurrences = occurrences + 1, severity = %s, alert_class = %s,"
                + _LATEST
                + " WHERE id = %s AND status = 'resolved' RETURNING "
                + COLUMNS,
                (f["severity"], f["alert_class"], *_latest(f, at), alert_id),
            )
    except psycopg.errors.UniqueViolation:
        return None


def update(
    conn: Conn,
    alert_id: int,
    f: dict[str, Any],
    *,
    occurrences: int,
    severity: Severity,
    alert_class: str,
    at: float,
) -> Row | None:
    """Repeats of an active alert; None when it is resolved meanwhile."""
    return returning(
        conn,
        "UPDATE alerts SET occurrences = occurrences + %s, severity = %s, alert_class = %s,"
        + _LATEST
        + " WHERE id = %s AND status <> 'resolved' RETURNING "
        + COLUMNS,
        (occurrences, str(severity), alert_class, *_latest(f, at), alert_id),
    )


def upgrade(conn: Conn, alert_id: int, evidence: dict[str, Any], at: float) -> Row | None:
    """A probable fault corroborated by its neighbours becomes an incident."""
    return returning(
        conn,
        "UPDATE alerts SET alert_class = 'incident', evidence = evidence || %s,"
        " updated_at = %s WHERE id = %s AND status <> 'resolved' RETURNING " + COLUMNS,
        (Jsonb(evidence), ts(at), alert_id),
    )


def resolve(conn: Conn, alert_id: int, occurrences: int, at: float, note: str) -> Row | None:
    """Resolve an alert as the system, with ``note`` in its audit event."""
    conn.execute("SELECT set_config('ioc.note', %s, true)", (note,))
    row = returning(
        conn,
        "UPDATE alerts SET status = 'resolved', resolved_at = %s, resolved_by = 'system',"
        " updated_at = %s, occurrences = occurrences + %s"
        " WHERE id = %s AND status <> 'resolved' RETURNING " + COLUMNS,
        (ts(at), ts(at), occurrences, alert_id),
    )
    conn.execute("SELECT set_config('ioc.note', '', true)")
    return row
