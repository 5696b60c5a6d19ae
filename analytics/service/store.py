"""What the analytics service reads of the database: stored readings to replay, corroborated anomalies."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import numpy as np
import psycopg

from analytics.engine.base import Batch
from analytics.engine.pipeline import Pipeline, Result
from core.metrics import METRICS


def utc_time(t: float) -> datetime:
    return datetime.fromtimestamp(t, UTC)


def iso_time(t: float) -> str:
    return utc_time(t).isoformat() if np.isfinite(t) else "never"


def replay_stored(
    conn: psycopg.Connection[Any],
    pipeline: Pipeline,
    owns: Callable[[str], bool],
    since: float,
    until: float,
    chunk: int = 50_000,
) -> Iterator[Result]:
    """Run the stored readings of ``(since, until]`` that this partition owns through the pipeline."""
    with conn.transaction(), conn.cursor(name="ioc_analytics_replay") as cur:
        cur.itersize = chunk
        cur.execute(
            "SELECT extract(epoch FROM time)::float8, sensor, metric, value FROM readings"
            " WHERE time > %s AND time <= %s ORDER BY time",
            (utc_time(since), utc_time(until)),
        )
        while rows := cur.fetchmany(chunk):
            sensors, metrics, times, values = [], [], [], []
            for t, sensor, metric, value in rows:
                m = METRICS.get(metric)
                if m is None or m.derived or not owns(sensor):
                    continue
                sensors.append(sensor)
                metrics.append(metric)
                times.append(t)
                values.append(value)
            if sensors:
                yield pipeline.process(Batch(sensors, metrics, np.array(times), np.array(values)))


def corroborated_since(conn: psycopg.Connection[Any], since: float) -> list[tuple[str, str, float]]:
    """(sensor, metric, time) of the corroborated anomalies any partition raised since ``since``."""
    rows: list[tuple[str, str, float]] = conn.execute(
        "SELECT sensor, metric, extract(epoch FROM updated_at)::float8 FROM alerts"
        " WHERE alert_class IN ('incident', 'probable_fault') AND updated_at > %s"
        " AND evidence ? 'corroboration'",
        (utc_time(since),),
    ).fetchall()
    return rows
