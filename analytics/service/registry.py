"""The sensor registry as analytics sees it: the ``sensors`` table read into ``Sensor`` models."""

from __future__ import annotations

import logging
from typing import Any

import psycopg

from core.registry import read_sensors
from core.types import Sensor

logger = logging.getLogger(__name__)


def load_registry(conn: psycopg.Connection[Any]) -> tuple[dict[str, Sensor], dict[str, str]]:
    """The sensors table as ``Sensor`` models, and each sensor's last announced status."""
    sensors: dict[str, Sensor] = {}
    status: dict[str, str] = {}
    for row in read_sensors(conn):
        try:
            sensors[row.id] = row.to_sensor()
        except ValueError as exc:
            logger.warning("sensor %s in the registry is unusable: %s", row.id, exc)
            continue
        status[row.id] = row.status
    return sensors, status
