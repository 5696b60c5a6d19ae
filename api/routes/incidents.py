"""``/api/v1/incidents``: list, one with its alerts, acknowledge, resolve, CAP 1.2."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Path, Query, Response
from psycopg import AsyncConnection, sql
from psycopg.rows import class_row

from api.cap import CAP_MEDIA_TYPE
from api.cap_incident import incident_to_cap
from api.deps import AlertActor, ConnDep, Reader, SettingsDep
from api.incident_models import INCIDENT_COLUMNS, IncidentDetail, IncidentPage, IncidentPublic
from api.models import AlertEvent, AlertPublic, NoteIn, SensorId
from api.params import DB_INT_MAX, MAX_ALERTS_PAGE
from api.queries import ALERT_COLUMNS, MAX_EVENTS, Where
from api.routes import V1
from core.errors import ConflictError, NotFoundError

router = APIRouter(prefix=f"{V1}/incidents", tags=["incidents"])

IncidentId = Annotated[
    int, Path(ge=1, le=DB_INT_MAX, description="the incident's id", examples=[7])
]
Hazard = Literal[
    "air_pollution",
    "flooding",
    "traffic",
    "fire_weather",
    "severe_weather",
    "noise",
    "device_fault",
    "other",
]
MAX_MEMBERS = 2_000


@router.get("", response_model=IncidentPage, summary="List incidents, newest first")
async def list_incidents(
    conn: ConnDep,
    user: Reader,
    status: Annotated[
        list[Literal["open", "acknowledged", "resolved"]] | None,
        Query(max_length=3, examples=[["open", "acknowledged"]]),
    ] = None,
    severity: Annotated[
        list[Literal["info", "warning", "critical"]] | None, Query(max_length=3)
    ] = None,
    hazard: Annotated[list[Hazard] | None, Query(max_length=8)] = None,
    sensor: Annotated[
        SensorId | None, Query(description="incidents that include this sensor")
    ] = None,
    shelved: Annotated[
        bool | None, Query(description="true: only incidents shelved now; false: the others")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_ALERTS_PAGE)] = 100,
    before_id: Annotated[
        int | None, Query(ge=1, le=DB_INT_MAX, description="next page: incidents with a lower id")
    ] = None,
) -> IncidentPage:
    where = Where()
    if shelved is not None:
        where.add(
            "shelved_until > now()"
            if shelved
            else "(shelved_until IS NULL OR shelved_until <= now())"
        )
    where.any_of("status", "status", list(status) if status else None)
    where.any_of("severity", "severity", list(severity) if severity else None)
    where.any_of("hazard", "hazard", list(hazard) if hazard else None)
    if sensor:
        where.add("sensors @> ARRAY[%(sensor)s]::text[]", sensor=sensor)
    async with conn.cursor() as ccur:
        await ccur.execute(
            sql.SQL("SELECT count(*) FROM incidents {}").format(where.sql()), where.params
        )
        row = await ccur.fetchone()
    total = row[0] if row else 0
    if before_id is not None:
        where.add("id < %(before_id)s", before_id=before_id)
    async with conn.cursor(row_factory=class_row(IncidentPublic)) as cur:
        await cur.execute(
            sql.SQL("SELECT {} FROM incidents {} ORDER BY id DESC LIMIT %(limit)s").format(
                sql.SQL(INCIDENT_COLUMNS), where.sql()
            ),
            {**where.params, "limit": limit + 1},
        )
        items = await cur.fetchall()
    more = len(items) > limit
    del items[limit:]
    return IncidentPage(
        items=items, total=total, limit=limit, next_before_id=items[-1].id if more else None
    )


async def fetch_incident(conn: AsyncConnection[Any], incident_id: int) -> IncidentPublic:
    async with conn.cursor(row_factory=class_row(IncidentPublic)) as cur:
        await cur.execute(f"SELECT {INCIDENT_COLUMNS} FROM incidents WHERE id = %s", (incident_id,))
        found = await cur.fetchone()
    if found is None:
        raise NotFoundError(
            f"incident {incident_id} does not exist", key="api.not_found.incident", id=incident_id
        )
    return found


@router.get("/{incident_id}", response_model=IncidentDetail, summary="One incident, its alerts")
async def get_incident(conn: ConnDep, user: Reader, incident_id: IncidentId) -> IncidentDetail:
    incident = await fetch_incident(conn, incident_id)
    async with conn.cursor(row_factory=class_row(AlertPublic)) as cur:
        await cur.execute(
            f"SELECT {ALERT_COLUMNS} FROM alerts WHERE id IN"
            " (SELECT alert_id FROM incident_alerts WHERE incident_id = %s)"
            " ORDER BY id DESC LIMIT %s",
            (incident_id, MAX_MEMBERS),
        )
        alerts = await cur.fetchall()
    async with conn.cursor(row_factory=class_row(AlertEvent)) as cur:
        await cur.execute(
            "SELECT seq, time, action, actor, note FROM ("
            " SELECT seq, time, action, actor, note FROM alert_events WHERE incident_id = %s"
            " ORDER BY seq DESC LIMIT %s) e ORDER BY seq",
            (incident_id, MAX_EVENTS),
        )
        events = await cur.fetchall()
    return IncidentDetail(
        **incident.model_dump(),
        alerts=alerts,
        events=events,
        merged_from=await _merged_from(conn, incident_id),
    )


async def _merged_from(conn: AsyncConnection[Any], incident_id: int) -> list[int]:
    """The incidents merged into this one."""
    async with conn.cursor() as cur:
        await cur.execute(
            "SELECT id FROM incidents WHERE merged_into = %s ORDER BY id", (incident_id,)
        )
        return [int(r[0]) for r in await cur.fetchall()]


async def _transition(
    conn: AsyncConnection[Any],
    incident_id: int,
    actor: str,
    note: str | None,
    target: Literal["acknowledged", "resolved"],
    allowed: tuple[str, ...],
) -> IncidentPublic:
    """Change the incident and its alerts in one transaction, audited under the actor's name."""
    stamp = "acknowledged" if target == "acknowledged" else "resolved"
    async with conn.transaction():
        await conn.execute(
            "SELECT set_config('ioc.actor', %s, true), set_config('ioc.note', %s, true)",
            (actor, note or ""),
        )
        async with conn.cursor(row_factory=class_row(IncidentPublic)) as cur:
            await cur.execute(
                f"UPDATE incidents SET status = %(target)s, {stamp}_at = now(),"
                f" {stamp}_by = %(actor)s WHERE id = %(id)s AND status = ANY(%(allowed)s)"
                f" RETURNING {INCIDENT_COLUMNS}",
                {"id": incident_id, "actor": actor, "target": target, "allowed": list(allowed)},
            )
            changed = await cur.fetchone()
        if changed is not None:
            # its alerts follow, each audited with the same actor and a note naming the incident
            await conn.execute(
                "SELECT set_config('ioc.note', %s, true)",
                (f"incident {incident_id}" + (f": {note}" if note else ""),),
            )
            await conn.execute(
                f"UPDATE alerts SET status = %(target)s, {stamp}_at = now(),"
                f" {stamp}_by = %(actor)s WHERE id IN (SELECT alert_id FROM incident_alerts"
                " WHERE incident_id = %(id)s) AND status = ANY(%(allowed)s)",
                {"id": incident_id, "actor": actor, "target": target, "allowed": list(allowed)},
            )
    if changed is not None:
        return changed
    current = await fetch_incident(conn, incident_id)
    if current.merged_into is not None:
        raise ConflictError(
            f"incident {incident_id} was merged into incident {current.merged_into}; "
            "act on that one",
            key="api.conflict.incident.merged",
            id=incident_id,
            into=current.merged_into,
        )
    raise ConflictError(
        f"incident {incident_id} is {current.status}; only {' or '.join(allowed)} incidents "
        f"can be {target}",
        key=f"api.conflict.incident.{target}",
        id=incident_id,
        status=current.status,
    )


NoteBody = Annotated[NoteIn | None, Body()]


@router.post(
    "/{incident_id}/acknowledge",
    response_model=IncidentPublic,
    summary="Acknowledge an open incident and its open alerts (operator)",
)
async def acknowledge(
    conn: ConnDep, user: AlertActor, incident_id: IncidentId, body: NoteBody = None
) -> IncidentPublic:
    return await _transition(
        conn, incident_id, user.name, body.note if body else None, "acknowledged", ("open",)
    )


@router.post(
    "/{incident_id}/resolve",
    response_model=IncidentPublic,
    summary="Resolve an incident and all its alerts (operator)",
)
async def resolve(
    conn: ConnDep, user: AlertActor, incident_id: IncidentId, body: NoteBody = None
) -> IncidentPublic:
    return await _transition(
        conn,
        incident_id,
        user.name,
        body.note if body else None,
        "resolved",
        ("open", "acknowledged"),
    )


@router.get(
    "/{incident_id}/cap",
    response_class=Response,
    responses={200: {"content": {CAP_MEDIA_TYPE: {"schema": {"type": "string"}}}}},
    summary="The incident as an OASIS CAP 1.2 document, its area covering all its sensors",
)
async def get_cap(
    conn: ConnDep, user: Reader, settings: SettingsDep, incident_id: IncidentId
) -> Response:
    incident = await fetch_incident(conn, incident_id)
    return Response(
        incident_to_cap(
            incident,
            sender=settings.api_cap_sender,
            sender_name=settings.api_cap_sender_name,
            merged_from=await _merged_from(conn, incident_id),
        ),
        media_type=CAP_MEDIA_TYPE,
    )
