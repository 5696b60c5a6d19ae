"""The sensor registry as analytics sees it: the ``sensors`` table read into ``Sensor`` models."""

from __future__ import annotations

import logging
from typing import Any

import psycopg

from core.types import Sensor, SensorKind

logger = logging.getLogger(__name__)


def load_registry(conn: psycopg.Connection[Any]) -> tuple[dict[str, Sensor], dict[str, str]]:
    """The sensors table as ``Sensor`` models, and each sensor's last announced status."""
    sensors: dict[str, Sensor] = {}
    status: dict[str, str] = {}
    rows = conn.execute(
        "SELECT id, kind, name, lat, lon, area, metrics, interval_s, attributes, status"
        " FROM sensors"
    ).fetchall()
    for sid, kind, name, lat, lon, area, metrics, interval_s, attributes, st in rows:
        try:
            sensors[sid] = Sensor(
                id=sid,
                kind=SensorKind(kind),
                name=name or "",
                lat=lat,
                lon=lon,
                area=area or "",
                metrics=tuple(metrics or ()),
                interval_s=interval_s,
                attributes=attributes or {},
            )
        except ValueError as exc:
            logger.warning("sensor %s in the registry is unusable: %s", sid, exc)
            continue
        status[sid] = st
    return sensors, status
