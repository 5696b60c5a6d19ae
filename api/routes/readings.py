"""``/api/v1/readings``: history of one or many series, raw or in time buckets, and CSV export."""

from __future__ import annotations

import asyncio
import csv
import io
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.responses import StreamingResponse
from psycopg import AsyncConnection, sql
from pydantic import Field

from api.auth import Permission
from api.deps import POOL_TIMEOUT_S, ConnDep, HistoryReader, PoolDep, Reader
from api.models import ReadingsBucketed, ReadingsRaw, SensorId, TimeParam
from api.params import (
    AGG_PATTERN,
    BBOX_PATTERN,
    BUCKET_PATTERN,
    DEFAULT_ROWS,
    MAX_BUCKET_SPAN,
    MAX_EXPORT_ROWS,
    MAX_RAW_SPAN,
    MAX_ROWS,
    MAX_SERIES_METRICS,
    MAX_SERIES_SENSORS,
    BBox,
    check_bucket_count,
    check_range,
    invalid,
    parse_aggs,
    parse_bbox,
    parse_bucket,
)
from api.queries import Where
from api.rollup import RollupView, bucketed_statement, rollup_view
from api.routes import V1
from core.errors import PermissionDeniedError
from core.metrics import METRICS
from core.types import SensorKind, utcnow

logger = logging.getLogger(__name__)
RECENT_WINDOW = timedelta(hours=24, minutes=5)  # what every reader may chart

router = APIRouter(prefix=f"{V1}/readings", tags=["readings"])

EXPORT_CHUNK = 5_000
BIG_ANSWER = 5_000  # rows encoded in a worker thread rather than on the event loop
_ORIGIN = "TIMESTAMPTZ '2000-01-01 00:00:00+00'"
_AGG_SQL = {
    "plain": {
        "avg": "avg(value)",
        "min": "min(value)",
        "max": "max(value)",
        "count": "count(*)",
        "last": "(max(ARRAY[extract(epoch FROM time)::float8, value]))[2]",
    },
    "timescale": {
        "avg": "avg(value)",
        "min": "min(value)",
        "max": "max(value)",
        "count": "count(*)",
        "last": "last(value, time)",
    },
}
_AGG_NULL = {"count": "NULL::bigint"}
_BUCKET_COLUMNS = ("bucket", "sensor", "metric", "avg", "min", "max", "count", "last")
_RAW_COLUMNS = ("time", "sensor", "metric", "value")

Metric = Annotated[str, Field(max_length=64, json_schema_extra={"enum": list(METRICS)})]
SensorsParam = Annotated[
    list[SensorId] | None,
    Query(
        alias="sensor",
        min_length=1,
        max_length=MAX_SERIES_SENSORS,
        description=f"one or more sensor ids (at most {MAX_SERIES_SENSORS}); or a place: "
        "bbox, area, kind",
        examples=[["wl-td-03"]],
    ),
]


@dataclass(frozen=True, slots=True)
class Place:
    """Sensors chosen by where they are and what they are, instead of (or within) ids."""

    kind: list[str] | None
    area: list[str] | None
    bbox: BBox | None

    def given(self) -> bool:
        return bool(self.kind or self.area or self.bbox)


def place_params(
    kind: Annotated[
        list[SensorKind] | None, Query(max_length=10, description="sensors of these kinds")
    ] = None,
    area: Annotated[
        list[Annotated[str, Field(max_length=200, json_schema_extra={"pattern": r"^[^\x00]*$"})]]
        | None,
        Query(max_length=50, description="sensors in these areas (districts)"),
    ] = None,
    bbox: Annotated[
        str | None,
        Query(
            max_length=100,
            json_schema_extra={"pattern": BBOX_PATTERN},  # parse_bbox says why
            description="sensors within minlon,minlat,maxlon,maxlat (WGS 84 degrees)",
            examples=["105.78,20.99,105.88,21.06"],
        ),
    ] = None,
) -> Place:
    return Place([k.value for k in kind] if kind else None, area, parse_bbox(bbox))


PlaceDep = Annotated[Place, Depends(place_params)]


async def _sensors_of(
    conn: AsyncConnection[Any], sensors: list[str] | None, place: Place
) -> list[str]:
    """The sensor ids a query covers: the ids given, the place's sensors, or both (AND)."""
    if not place.given():
        if not sensors:
            invalid(
                "query",
                "sensor",
                "give sensor ids, or a place: bbox, area or kind",
                None,
                "api.invalid.no_sensor",
            )
        return sensors or []
    where = Where()
    where.any_of("kind", "kind", place.kind)
    where.any_of("area", "area", place.area)
    where.any_of("id", "ids", sensors)
    if place.bbox:
        b = place.bbox
        where.add(
            "lon BETWEEN %(min_lon)s AND %(max_lon)s AND lat BETWEEN %(min_lat)s AND %(max_lat)s",
            min_lon=b.min_lon,
            max_lon=b.max_lon,
            min_lat=b.min_lat,
            max_lat=b.max_lat,
        )
    async with conn.cursor() as cur:
        await cur.execute(
            sql.SQL("SELECT id FROM sensors {} ORDER BY id LIMIT %(n)s").format(where.sql()),
            {**where.params, "n": MAX_SERIES_SENSORS + 1},
        )
        ids = [str(r[0]) for r in await cur.fetchall()]
    if len(ids) > MAX_SERIES_SENSORS:
        invalid(
            "query",
            "bbox" if place.bbox else "area" if place.area else "kind",
            f"the place holds more than {MAX_SERIES_SENSORS} sensors; narrow it "
            "(a smaller bbox, an area, a kind, a metric)",
            None,
            "api.invalid.place_too_big",
            limit=MAX_SERIES_SENSORS,
        )
    return ids


MetricsParam = Annotated[
    list[Metric] | None,
    Query(
        alias="metric",
        max_length=MAX_SERIES_METRICS,
        description="metrics to return; default: all of them",
        examples=[["water_level"]],
    ),
]
StartParam = Annotated[
    TimeParam | None,
    Query(description="RFC 3339; default: end minus 24 hours", examples=["2026-11-21T00:00:00Z"]),
]
EndParam = Annotated[TimeParam | None, Query(description="RFC 3339, exclusive; default: now")]
BucketParam = Annotated[
    str | None,
    Query(
        max_length=16,
        json_schema_extra={"pattern": BUCKET_PATTERN},  # parse_bucket says why
        description="bucket width from 1m to 1d (1m, 5m, 15m, 1h, 6h, 1d...); absent: raw readings",
        examples=["1h"],
    ),
]
AggParam = Annotated[
    list[Annotated[str, Field(max_length=40, json_schema_extra={"pattern": AGG_PATTERN})]] | None,
    Query(
        max_length=5,
        description="aggregates of each bucket among avg, min, max, count, last (default: all)",
        examples=[["avg,max"]],
    ),
]


@dataclass(frozen=True, slots=True)
class SeriesQuery:
    sensors: list[str]
    metrics: list[str] | None
    start: datetime
    end: datetime
    bucket_s: int | None
    aggs: tuple[str, ...]

    def series_filter(self) -> tuple[str, dict[str, Any]]:
        """Conditions on sensor and metric (``=`` for one value, so the index is used fully)."""
        params: dict[str, Any] = {}
        if len(self.sensors) == 1:
            cond, params["sensor"] = "sensor = %(sensor)s", self.sensors[0]
        else:
            cond, params["sensors"] = "sensor = ANY(%(sensors)s)", self.sensors
        if self.metrics and len(self.metrics) == 1:
            cond += " AND metric = %(metric)s"
            params["metric"] = self.metrics[0]
        elif self.metrics:
            cond += " AND metric = ANY(%(metrics)s)"
            params["metrics"] = self.metrics
        return cond, params

    def statement(
        self, flavour: str, limit: int, view: RollupView | None = None
    ) -> tuple[sql.SQL, dict[str, Any]]:
        """The query; with a rollup ``view`` and whole-hour buckets, rollup and raw combined."""
        series, params = self.series_filter()
        if view is not None and self.bucket_s is not None:
            params["width"] = timedelta(seconds=self.bucket_s)
            return bucketed_statement(
                where=series,
                params=params,
                start=self.start,
                end=self.end,
                mark=view.mark,
                aggs=self.aggs,
                limit=limit,
                stale=view.stale,
            )
        params.update(start=self.start, end=self.end, limit=limit)
        cond = f"{series} AND time >= %(start)s AND time < %(end)s"
        if self.bucket_s is None:
            text = (
                f"SELECT time, sensor, metric, value FROM readings WHERE {cond}"
                " ORDER BY sensor, metric, time LIMIT %(limit)s"
            )
            return sql.SQL(text), params
        params["width"] = timedelta(seconds=self.bucket_s)
        bucket = (
            f"time_bucket(%(width)s, time, {_ORIGIN})"
            if flavour == "timescale"
            else f"date_bin(%(width)s, time, {_ORIGIN})"
        )
        aggs = ", ".join(
            _AGG_SQL[flavour][a] if a in self.aggs else _AGG_NULL.get(a, "NULL::float8")
            for a in ("avg", "min", "max", "count", "last")
        )
        text = (
            f"SELECT {bucket} AS bucket, sensor, metric, {aggs} FROM readings WHERE {cond}"
            " GROUP BY sensor, metric, bucket ORDER BY sensor, metric, bucket LIMIT %(limit)s"
        )
        return sql.SQL(text), params


def _series_query(
    sensors: list[str] | None,
    metrics: list[str] | None,
    start: datetime | None,
    end: datetime | None,
    bucket: str | None,
    agg: list[str] | None,
) -> SeriesQuery:
    if metrics:
        unknown = [m for m in metrics if m not in METRICS]
        if unknown:
            invalid(
                "query",
                "metric",
                f"unknown metric {unknown[0]!r}",
                unknown[0],
                "api.invalid.metric",
                metric=unknown[0],
            )
    end = end or datetime.now(UTC)
    start = start or end - timedelta(hours=24)
    bucket_s = parse_bucket(bucket)
    if bucket_s is None:
        check_range(start, end, MAX_RAW_SPAN, "a range of raw readings")
    else:
        check_range(start, end, MAX_BUCKET_SPAN, "a range of buckets")
        check_bucket_count(start, end, bucket_s)
    return SeriesQuery(
        sensors=list(dict.fromkeys(sensors or [])),
        metrics=list(dict.fromkeys(metrics)) if metrics else None,
        start=start,
        end=end,
        bucket_s=bucket_s,
        aggs=parse_aggs(agg),
    )


def _flavour(request: Request) -> str:
    return "timescale" if request.app.state.timescale else "plain"


async def _rollup_mark(
    request: Request, conn: AsyncConnection[Any], q: SeriesQuery
) -> RollupView | None:
    """The rollup's watermark and late hours when this query can use it (whole-hour
    buckets, plain storage)."""
    if request.app.state.rollup and q.bucket_s is not None and q.bucket_s % 3600 == 0:
        return await rollup_view(conn, q.start, q.end)
    return None


@router.get(
    "",
    response_model=ReadingsRaw | ReadingsBucketed,
    summary="Readings history: raw, or in time buckets with avg, min, max, count, last",
)
async def get_readings(
    request: Request,
    conn: ConnDep,
    user: Reader,
    place: PlaceDep,
    sensors: SensorsParam = None,
    metrics: MetricsParam = None,
    start: StartParam = None,
    end: EndParam = None,
    bucket: BucketParam = None,
    agg: AggParam = None,
    limit: Annotated[int, Query(ge=1, le=MAX_ROWS)] = DEFAULT_ROWS,
) -> Response:
    """Rows are ordered by sensor, metric and time.  Raw ranges are at most 31 days, bucketed
    ones 366 days and 10,000 buckets; ``truncated`` says that ``limit`` cut the answer.
    Every reader may chart the last 24 hours; longer history needs the ``history``
    permission (analyst, admin)."""
    query = _series_query(sensors, metrics, start, end, bucket, agg)
    query = replace(query, sensors=await _sensors_of(conn, query.sensors or None, place))
    if not user.can(Permission.HISTORY) and query.start < utcnow() - RECENT_WINDOW:
        raise PermissionDeniedError(
            f"role {user.role.value} may read the last 24 hours of readings; "
            "longer history needs the analyst or admin role",
            key="api.denied.history",
            role=user.role.value,
        )
    mark = await _rollup_mark(request, conn, query)
    statement, params = query.statement(_flavour(request), limit + 1, mark)
    async with conn.cursor() as cur:
        await cur.execute(statement, params)
        rows = await cur.fetchall()
    truncated = len(rows) > limit
    del rows[limit:]
    if len(rows) > BIG_ANSWER:  # keep the event loop (and the live streams) responsive
        body = await asyncio.to_thread(_encode, rows, query, limit, truncated)
    else:
        body = _encode(rows, query, limit, truncated)
    return Response(body, media_type="application/json")


AVG_DECIMALS = 3  # averages to a thousandth of the unit: 333.887, not 333.88666666666666


def _bucket_fields(aggs: tuple[str, ...]) -> tuple[list[str], list[int]]:
    """The columns a bucketed answer shows (the asked aggregates only) and their positions
    in a row of ``_BUCKET_COLUMNS``."""
    names = ["bucket", "sensor", "metric", *(a for a in _BUCKET_COLUMNS[3:] if a in aggs)]
    return names, [_BUCKET_COLUMNS.index(n) for n in names]


def _shown(row: tuple[Any, ...], idx: list[int]) -> list[Any]:
    out = [row[i] for i in idx]
    avg = _BUCKET_COLUMNS.index("avg")
    if avg in idx and row[avg] is not None:
        out[idx.index(avg)] = round(row[avg], AVG_DECIMALS)
    return out


def _encode(rows: list[Any], query: SeriesQuery, limit: int, truncated: bool) -> bytes:
    doc: dict[str, Any]
    if query.bucket_s is None:
        doc = {"items": [dict(zip(_RAW_COLUMNS, r, strict=True)) for r in rows]}
    else:
        names, idx = _bucket_fields(query.aggs)
        doc = {"items": [dict(zip(names, _shown(r, idx), strict=True)) for r in rows]}
        doc["bucket_s"] = query.bucket_s
    doc["limit"] = limit
    doc["truncated"] = truncated
    return orjson.dumps(doc, option=orjson.OPT_UTC_Z | orjson.OPT_NAIVE_UTC)


@router.get(
    "/export.csv",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/csv": {"schema": {"type": "string"}}}}},
    summary="Readings history as streamed CSV",
)
async def export_csv(
    request: Request,
    pool: PoolDep,
    user: HistoryReader,
    place: PlaceDep,
    sensors: SensorsParam = None,
    metrics: MetricsParam = None,
    start: StartParam = None,
    end: EndParam = None,
    bucket: BucketParam = None,
    agg: AggParam = None,
    limit: Annotated[int, Query(ge=1, le=MAX_EXPORT_ROWS)] = MAX_EXPORT_ROWS,
) -> StreamingResponse:
    """The same query as ``GET /api/v1/readings`` without paging, streamed from a server-side
    cursor: columns ``time,sensor,metric,value`` or ``bucket,sensor,metric,avg,min,max,count,last``."""
    query = _series_query(sensors, metrics, start, end, bucket, agg)
    async with pool.connection(timeout=POOL_TIMEOUT_S) as conn:
        query = replace(query, sensors=await _sensors_of(conn, query.sensors or None, place))
        mark = await _rollup_mark(request, conn, query)
    statement, params = query.statement(_flavour(request), limit, mark)
    names, idx = _bucket_fields(query.aggs)
    header = _RAW_COLUMNS if query.bucket_s is None else tuple(names)
    raw = query.bucket_s is None

    def pick(row: tuple[Any, ...]) -> list[Any]:
        return list(row) if raw else _shown(row, idx)

    async def rows() -> AsyncIterator[str]:
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(header)
        yield buf.getvalue()
        async with (
            pool.connection(timeout=POOL_TIMEOUT_S) as conn,
            conn.transaction(),
            conn.cursor(name="ioc_export") as cur,
        ):
            await cur.execute(statement, params)
            while batch := await cur.fetchmany(EXPORT_CHUNK):
                buf.seek(0)
                buf.truncate()
                writer.writerows([_csv_row(pick(r)) for r in batch])
                yield buf.getvalue()

    stamp = query.start.strftime("%Y%m%dT%H%M%SZ")
    return StreamingResponse(
        rows(),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="readings-{stamp}.csv"'},
    )


def _csv_row(row: list[Any]) -> list[Any]:
    t: datetime = row[0]
    return [t.isoformat().replace("+00:00", "Z"), *("" if v is None else v for v in row[1:])]
