"""The one reader of the ``sensors`` table, on a real PostgreSQL."""

from __future__ import annotations

import psycopg
import pytest
from psycopg.types.json import Jsonb

from core.registry import SensorRow, read_sensors
from core.types import SensorKind

pytestmark = pytest.mark.db


def test_rows_as_stored_and_as_sensors(db: psycopg.Connection) -> None:  # type: ignore[type-arg]
    db.execute(
        "INSERT INTO sensors (id, kind, name, lat, lon, area, metrics, interval_s, attributes,"
        " status) VALUES ('aq-1', 'air_quality', 'Hồ Gươm', 21.03, 105.85, 'Hoàn Kiếm',"
        " '{pm25,no2}', 60, %s, 'online'), ('x-1', 'no_such_kind', '', NULL, NULL, '', '{}',"
        " NULL, '{}', 'unknown')",
        (Jsonb({"fire_watch": True}),),
    )
    rows = {r.id: r for r in read_sensors(db)}
    assert rows["aq-1"] == SensorRow(
        "aq-1",
        "air_quality",
        "Hồ Gươm",
        21.03,
        105.85,
        "Hoàn Kiếm",
        ["pm25", "no2"],
        60.0,
        {"fire_watch": True},
        "online",
    )
    sensor = rows["aq-1"].to_sensor()
    assert sensor.kind == SensorKind.AIR_QUALITY and sensor.metrics == ("pm25", "no2")
    assert sensor.attributes == {"fire_watch": True} and sensor.area == "Hoàn Kiếm"
    with pytest.raises(ValueError, match="no_such_kind"):
        rows["x-1"].to_sensor()  # stored, but not usable as a Sensor
    assert [r.id for r in read_sensors(db, ["x-1", "nobody"])] == ["x-1"]
    assert read_sensors(db, []) == []
