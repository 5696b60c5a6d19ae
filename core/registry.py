"""The sensor registry as every part reads it: rows of the ``sensors`` table, and ``Sensor`` models."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg.rows import class_row

from core.types import Sensor, SensorKind

_SELECT = (
    "SELECT id, kind, name, lat, lon, area, metrics, interval_s, attributes, status FROM sensors"
)


@dataclass(frozen=True, slots=True)
class SensorRow:
    """One row of ``sensors`` as stored (not validated: see ``to_sensor``)."""

    id: str
    kind: str
    name: str = ""
    lat: float | None = None
    lon: float | None = None
    area: str = ""
    metrics: list[str] = field(default_factory=list)
    interval_s: float | None = None
    attributes: dict[str, Any] = field(default_factory=dict)
    status: str = "unknown"  # the last status the device announced

    def to_sensor(self) -> Sensor:
        """The row as a ``Sensor``; ``ValueError`` (pydantic's too) when it is unusable."""
        return Sensor(
            id=self.id,
            kind=SensorKind(self.kind),
            name=self.name or "",
            lat=self.lat,
            lon=self.lon,
            area=self.area or "",
            metrics=tuple(self.metrics or ()),
            interval_s=self.interval_s,
            attributes=self.attributes or {},
        )


def read_sensors(
    conn: psycopg.Connection[Any], ids: Iterable[str] | None = None
) -> list[SensorRow]:
    """Every registered sensor, or those among ``ids``."""
    with conn.cursor(row_factory=class_row(SensorRow)) as cur:
        if ids is None:
            cur.execute(_SELECT)
        else:
            cur.execute(_SELECT + " WHERE id = ANY(%s)", (list(ids),))
        return cur.fetchall()
