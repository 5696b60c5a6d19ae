"""``/api/v1/sensors``: the registry with alert state; engineers create, update and delete."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

import orjson
from fastapi import APIRouter, Path, Query, Response, status
from psycopg import AsyncConnection, errors, sql
from psycopg.rows import class_row, dict_row
from psycopg.types.json import Jsonb
from pydantic import Field

from api.deps import ConnDep, Reader, SensorEditor
from api.models import (
    AlertPublic,
    LatestReading,
    SensorCreate,
    SensorDetail,
    SensorId,
    SensorPage,
    SensorPublic,
    SensorUpdate,
)
from api.params import BBOX_PATTERN, MAX_OFFSET, MAX_SENSORS_PAGE, invalid, parse_bbox
from api.queries import ALERT_COLUMNS, Where, like_pattern
from api.routes import V1
from core.errors import ConflictError, NotFoundError
from core.metrics import KIND_METRICS, METRICS
from core.types import SensorKind

router = APIRouter(prefix=f"{V1}/sensors", tags=["sensors"])

LATEST_WINDOW = timedelta(days=7)
MAX_SENSOR_ALERTS = 200

_PUBLIC_COLUMNS = """
    s.id, s.kind, s.name, s.lat, s.lon, s.area, s.metrics, s.status, s.status_at,
    s.last_seen_at, s.source,
    coalesce(a.open_alerts, 0)::int AS open_alerts,
    (ARRAY['info', 'warning', 'critical'])[a.worst + 1] AS worst_severity
"""
_DETAIL_COLUMNS = _PUBLIC_COLUMNS + ", s.interval_s, s.attributes, s.registered_at, s.updated_at"
_FROM = """
FROM sensors s
LEFT JOIN (
    SELECT sensor, count(*) AS open_alerts,
           max(CASE severity WHEN 'critical' THEN 2 WHEN 'warning' THEN 1 ELSE 0 END) AS worst
    FROM alerts WHERE status IN ('open', 'acknowledged') AND suppressed_by IS NULL
    GROUP BY sensor
) a ON a.sensor = s.id
"""

Words = Annotated[
    str, Field(max_length=200, json_schema_extra={"pattern": r"^[^\x00]*$"})
]  # no NUL (PostgreSQL)


@router.get("", response_model=SensorPage, summary="List sensors")
async def list_sensors(
    conn: ConnDep,
    user: Reader,
    kind: Annotated[list[SensorKind] | None, Query(max_length=10)] = None,
    area: Annotated[list[Words] | None, Query(max_length=50, examples=["Hoàn Kiếm"])] = None,
    status_: Annotated[
        list[Literal["online", "offline", "unknown"]] | None, Query(alias="status", max_length=3)
    ] = None,
    bbox: Annotated[
        str | None,
        Query(
            max_length=100,
            json_schema_extra={"pattern": BBOX_PATTERN},  # parse_bbox says why
            description="minlon,minlat,maxlon,maxlat (WGS 84 degrees)",
            examples=["105.78,20.99,105.88,21.06"],
        ),
    ] = None,
    q: Annotated[
        str | None, Query(max_length=100, description="substring of the id or the name")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_SENSORS_PAGE)] = 100,
    offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0,
) -> SensorPage:
    """Sensors ordered by id, with the count and worst severity of their active alerts."""
    where = Where()
    where.any_of("s.kind", "kind", [k.value for k in kind] if kind else None)
    where.any_of("s.area", "area", area)
    where.any_of("s.status", "status", list(status_) if status_ else None)
    box = parse_bbox(bbox)
    if box:
        where.add(
            "s.lon BETWEEN %(min_lon)s AND %(max_lon)s AND s.lat BETWEEN %(min_lat)s AND %(max_lat)s",
            min_lon=box.min_lon,
            max_lon=box.max_lon,
            min_lat=box.min_lat,
            max_lat=box.max_lat,
        )
    if q:
        where.add("(s.id ILIKE %(q)s OR s.name ILIKE %(q)s)", q=like_pattern(q))
    params = {**where.params, "limit": limit, "offset": offset}
    async with conn.cursor(row_factory=class_row(SensorPublic)) as cur:
        await cur.execute(
            sql.SQL("SELECT {} {} {} ORDER BY s.id LIMIT %(limit)s OFFSET %(offset)s").format(
                sql.SQL(_PUBLIC_COLUMNS), sql.SQL(_FROM), where.sql()
            ),
            params,
        )
        items = await cur.fetchall()
    async with conn.cursor() as ccur:
        await ccur.execute(
            sql.SQL("SELECT count(*) FROM sensors s {}").format(where.sql()), where.params
        )
        row = await ccur.fetchone()
    return SensorPage(items=items, total=row[0] if row else 0, limit=limit, offset=offset)


async def _detail(conn: AsyncConnection[Any], sensor_id: str) -> SensorDetail:
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(
            sql.SQL("SELECT {} {} WHERE s.id = %s").format(
                sql.SQL(_DETAIL_COLUMNS), sql.SQL(_FROM)
            ),
            (sensor_id,),
        )
        row = await cur.fetchone()
    if row is None:
        raise NotFoundError(
            f"sensor {sensor_id} does not exist", key="api.not_found.sensor", id=sensor_id
        )
    row["latest"] = await _latest(conn, row)
    async with conn.cursor(row_factory=class_row(AlertPublic)) as acur:
        await acur.execute(
            f"SELECT {ALERT_COLUMNS} FROM alerts WHERE sensor = %s"
            " AND status IN ('open', 'acknowledged') AND suppressed_by IS NULL"
            " ORDER BY id DESC LIMIT %s",
            (sensor_id, MAX_SENSOR_ALERTS),
        )
        row["alerts"] = await acur.fetchall()
    return SensorDetail.model_validate(row)


async def _latest(conn: AsyncConnection[Any], row: dict[str, Any]) -> list[LatestReading]:
    """The newest reading of each of the sensor's metrics (and derived ones)."""
    try:
        kind_metrics = KIND_METRICS[SensorKind(row["kind"])]
    except ValueError:
        kind_metrics = ()
    derived = [m.name for m in METRICS.values() if m.derived]
    metrics = list(dict.fromkeys([*row["metrics"], *kind_metrics, *derived]))
    newest = row["last_seen_at"] or datetime.now(UTC)
    async with conn.cursor() as cur:
        await cur.execute(
            "SELECT m.metric, r.time, r.value FROM unnest(%s::text[]) AS m(metric)"
            " CROSS JOIN LATERAL (SELECT time, value FROM readings"
            "   WHERE sensor = %s AND metric = m.metric AND time > %s"
            "   ORDER BY time DESC LIMIT 1) r ORDER BY m.metric",
            (metrics, row["id"], newest - LATEST_WINDOW),
        )
        rows = await cur.fetchall()
    return [
        LatestReading(metric=m, time=t, value=v, unit=METRICS[m].unit if m in METRICS else "")
        for m, t, v in rows
    ]


@router.get(
    "/{sensor_id}",
    response_model=SensorDetail,
    summary="One sensor with its latest readings and active alerts",
)
async def get_sensor(
    conn: ConnDep, user: Reader, sensor_id: Annotated[SensorId, Path()]
) -> SensorDetail:
    return await _detail(conn, sensor_id)


@router.post(
    "",
    response_model=SensorDetail,
    status_code=status.HTTP_201_CREATED,
    summary="Register a sensor (engineer)",
)
async def create_sensor(conn: ConnDep, user: SensorEditor, body: SensorCreate) -> SensorDetail:
    try:
        await conn.execute(
            "INSERT INTO sensors (id, kind, name, lat, lon, area, metrics, interval_s,"
            " attributes, source) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, 'api')",
            (
                body.id,
                body.kind.value,
                body.name,
                body.lat,
                body.lon,
                body.area,
                body.metrics,
                body.interval_s,
                Jsonb(body.attributes, dumps=_dumps),
            ),
        )
    except errors.UniqueViolation:
        raise ConflictError(
            f"sensor {body.id} already exists; use PUT to change it",
            key="api.conflict.sensor_exists",
            id=body.id,
        ) from None
    return await _detail(conn, body.id)


_UPDATABLE = ("kind", "name", "lat", "lon", "area", "metrics", "interval_s", "attributes")
_NOT_NULL = {"kind", "name", "area", "metrics", "attributes"}


@router.put("/{sensor_id}", response_model=SensorDetail, summary="Change a sensor (engineer)")
async def update_sensor(
    conn: ConnDep,
    user: SensorEditor,
    sensor_id: Annotated[SensorId, Path()],
    body: SensorUpdate,
) -> SensorDetail:
    """Only the fields present in the body change; ``lat``, ``lon``, ``interval_s`` may be null."""
    given = [f for f in _UPDATABLE if f in body.model_fields_set]
    values: dict[str, Any] = {}
    for name in given:
        value = getattr(body, name)
        if value is None and name in _NOT_NULL:
            invalid("body", name, f"{name} cannot be null", None, "api.invalid.null")
        if name == "kind":
            value = value.value
        elif name == "attributes":
            value = Jsonb(value, dumps=_dumps)
        values[name] = value
    assignments: list[sql.Composable] = [
        sql.SQL("{} = %({})s").format(sql.Identifier(n), sql.SQL(n)) for n in values
    ]
    assignments.append(sql.SQL("updated_at = now()"))
    async with conn.cursor() as cur:
        await cur.execute(
            sql.SQL("UPDATE sensors SET {} WHERE id = %(sensor_id)s").format(
                sql.SQL(", ").join(assignments)
            ),
            {**values, "sensor_id": sensor_id},
        )
        if cur.rowcount == 0:
            raise NotFoundError(
                f"sensor {sensor_id} does not exist", key="api.not_found.sensor", id=sensor_id
            )
    return await _detail(conn, sensor_id)


@router.delete(
    "/{sensor_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    summary="Remove a sensor from the registry (engineer); its readings and alerts stay",
)
async def delete_sensor(
    conn: ConnDep, user: SensorEditor, sensor_id: Annotated[SensorId, Path()]
) -> Response:
    async with conn.cursor() as cur:
        await cur.execute("DELETE FROM sensors WHERE id = %s", (sensor_id,))
        if cur.rowcount == 0:
            raise NotFoundError(
                f"sensor {sensor_id} does not exist", key="api.not_found.sensor", id=sensor_id
            )
    return Response(status_code=status.HTTP_204_NO_CONTENT)


def _dumps(obj: Any) -> str:
    return orjson.dumps(obj).decode()
