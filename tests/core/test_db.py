"""Migrations and the alert event log on a real PostgreSQL."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from core.db import (
    available_migrations,
    ensure_partitions,
    insert_readings,
    maintain,
    migrate,
    missing_partition,
)
from core.types import Reading

pytestmark = pytest.mark.db


def test_migrations_are_idempotent(db_url: str) -> None:
    assert migrate(db_url) == []  # the template is already migrated
    versions = {m.version for m in available_migrations()}
    with psycopg.connect(db_url) as conn:
        rows = conn.execute("SELECT version, variant FROM schema_migrations").fetchall()
    assert {r[0] for r in rows} == versions
    assert {r[1] for r in rows} == {"plain"}


def test_concurrent_migrate_on_empty_database(pg_server) -> None:  # type: ignore[no-untyped-def]
    with psycopg.connect(pg_server.dsn("postgres"), autocommit=True) as conn:
        conn.execute("DROP DATABASE IF EXISTS mig_race")
        conn.execute("CREATE DATABASE mig_race")
    results: list[list[str]] = []
    threads = [
        threading.Thread(target=lambda: results.append(migrate(pg_server.dsn("mig_race"))))
        for _ in range(3)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(len(r) for r in results) == [
        0,
        0,
        len({m.version for m in available_migrations()}),
    ]


def test_duplicates_stored_once_and_partitions(db: psycopg.Connection) -> None:  # type: ignore[type-arg]
    assert "partitions" in maintain(db, back_days=2, ahead_days=3, retention_days=30)
    db.execute(
        "INSERT INTO readings VALUES (now(), 's', 'pm25', 1), (now() - interval '1 day', 's', 'pm25', 2)"
    )
    db.execute(
        "INSERT INTO readings SELECT time, sensor, metric, value + 1 FROM readings ON CONFLICT DO NOTHING"
    )
    assert db.execute("SELECT count(*) FROM readings").fetchone() == (2,)
    # retention drops whole old partitions
    db.execute(
        "SELECT ioc_ensure_partitions(now() - interval '40 days', now() - interval '39 days')"
    )
    db.execute("INSERT INTO readings VALUES (now() - interval '39 days 12 hours', 's', 'pm25', 9)")
    maintain(db, back_days=2, ahead_days=3, retention_days=30)
    assert db.execute("SELECT count(*) FROM readings WHERE value = 9").fetchone() == (0,)


def test_insert_readings_makes_the_partitions_it_needs_once(db: psycopg.Connection) -> None:  # type: ignore[type-arg]
    far = datetime(2031, 3, 7, 5, tzinfo=UTC)  # no partition holds this day yet
    rows = [
        Reading(far, "aq-1", "aqi_vn", 151.0),
        Reading(far + timedelta(days=1), "aq-1", "aqi_vn", 90.0),
    ]
    with pytest.raises(psycopg.errors.CheckViolation) as caught:
        db.execute("INSERT INTO readings VALUES (%s, 'x', 'pm25', 1)", (far,))
    assert missing_partition(caught.value)
    insert_readings(db, rows)
    insert_readings(db, [Reading(far, "aq-1", "aqi_vn", 999.0)])  # stored once: the first stays
    got = db.execute(
        "SELECT time, value FROM readings WHERE sensor = 'aq-1' ORDER BY time"
    ).fetchall()
    assert got == [(far, 151.0), (far + timedelta(days=1), 90.0)]
    assert ensure_partitions(db, far, far + timedelta(days=1)) == 0  # there already


def test_maintenance_deletes_dead_letters_past_their_retention(db: psycopg.Connection) -> None:  # type: ignore[type-arg]
    db.execute(
        "INSERT INTO dead_letters (received_at, topic, payload, code, reason) VALUES"
        " (now() - interval '10 days', 'old', 'x', 'empty', 'old one'),"
        " (now() - interval '1 day', 'new', 'x', 'empty', 'new one')"
    )
    out = maintain(db, back_days=2, ahead_days=3, retention_days=30)
    assert "dead letters" not in out  # without a dead-letter retention they are kept
    assert db.execute("SELECT count(*) FROM dead_letters").fetchone() == (2,)
    out = maintain(db, back_days=2, ahead_days=3, retention_days=30, dead_letter_retention_days=7)
    assert out.endswith("dead letters deleted 1")
    assert db.execute("SELECT topic FROM dead_letters").fetchall() == [("new",)]


def test_alert_events_record_every_change_in_order(db: psycopg.Connection) -> None:  # type: ignore[type-arg]
    db.execute(
        "INSERT INTO alerts (sensor, metric, rule, detector, kind, alert_class, severity, message)"
        " VALUES ('s', 'water_level', 'level', 'rules', 'water_level', 'threshold', 'warning', 'rising')"
    )
    with pytest.raises(psycopg.errors.UniqueViolation):
        db.execute(
            "INSERT INTO alerts (sensor, metric, rule, detector, kind, alert_class, severity, message)"
            " VALUES ('s', 'water_level', 'level', 'rules', 'water_level', 'threshold', 'warning', 'x')"
        )
    with db.transaction():
        db.execute("SET LOCAL ioc.actor = 'op-anna'")
        db.execute("UPDATE alerts SET severity = 'critical'")
        db.execute("UPDATE alerts SET status = 'acknowledged'")
    db.execute("UPDATE alerts SET status = 'acknowledged'")  # no change, no event
    db.execute("SELECT ioc_alert_comment(1, 'op-anna', 'crew sent')")
    rows = db.execute("SELECT seq, action, actor, note FROM alert_events ORDER BY seq").fetchall()
    assert [r[1:] for r in rows] == [
        ("opened", "system", None),
        ("escalated", "op-anna", None),
        ("acknowledged", "op-anna", None),
        ("commented", "op-anna", "crew sent"),
    ]
