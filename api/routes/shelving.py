"""Shelving (ISA-18.2): an operator hides an alert or an incident for a bounded time.

It comes back when the time ends, or at once if it gets worse (the ``alerts`` trigger
and the correlator clear ``shelved_until`` on an escalation).  Each change is audited
under the operator's name, with a note that says until when.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Body
from psycopg import AsyncConnection
from psycopg.rows import class_row

from api.deps import AlertActor, ConnDep
from api.incident_models import INCIDENT_COLUMNS, IncidentPublic, ShelveIn
from api.models import AlertPublic
from api.queries import ALERT_COLUMNS
from api.routes import V1
from api.routes.alerts import AlertId
from api.routes.incidents import IncidentId
from core.errors import ConflictError, NotFoundError
from core.types import DISPLAY_TZ

router = APIRouter(prefix=V1, tags=["shelving"])


def _note(until: datetime | None, note: str | None) -> str:
    what = f"shelved until {until.astimezone(DISPLAY_TZ):%H:%M %d/%m}" if until else "unshelved"
    return f"{what}: {note}" if note else what


async def _shelve(
    conn: AsyncConnection[Any],
    table: str,
    row_id: int,
    actor: str,
    until: datetime | None,
    note: str | None,
) -> Any:
    model = AlertPublic if table == "alerts" else IncidentPublic
    columns = ALERT_COLUMNS if table == "alerts" else INCIDENT_COLUMNS
    name = "alert" if table == "alerts" else "incident"
    async with conn.transaction():
        await conn.execute(
            "SELECT set_config('ioc.actor', %s, true), set_config('ioc.note', %s, true)",
            (actor, _note(until, note)),
        )
        async with conn.cursor(row_factory=class_row(model)) as cur:
            await cur.execute(
                f"UPDATE {table} SET shelved_until = %(until)s,"
                " shelved_by = CASE WHEN %(until)s::timestamptz IS NULL THEN NULL"
                " ELSE %(actor)s END WHERE id = %(id)s AND status <> 'resolved'"
                f" RETURNING {columns}",
                {"id": row_id, "until": until, "actor": actor},
            )
            changed = await cur.fetchone()
        if changed is not None and table == "incidents":
            await conn.execute(  # its active alerts with it
                "UPDATE alerts SET shelved_until = %(until)s,"
                " shelved_by = CASE WHEN %(until)s::timestamptz IS NULL THEN NULL"
                " ELSE %(actor)s END WHERE id IN (SELECT alert_id FROM incident_alerts"
                " WHERE incident_id = %(id)s) AND status <> 'resolved'",
                {"id": row_id, "until": until, "actor": actor},
            )
    if changed is not None:
        return changed
    cur2 = await conn.execute(f"SELECT status FROM {table} WHERE id = %s", (row_id,))
    if await cur2.fetchone() is None:
        raise NotFoundError(
            f"{name} {row_id} does not exist", key=f"api.not_found.{name}", id=row_id
        )
    raise ConflictError(
        f"{name} {row_id} is resolved; only an active {name} can be shelved",
        key=f"api.conflict.shelve_resolved.{name}",
        id=row_id,
    )


ShelveBody = Annotated[ShelveIn, Body()]


def _until(body: ShelveIn) -> datetime:
    return datetime.now(UTC) + timedelta(minutes=body.minutes)


@router.post(
    "/alerts/{alert_id}/shelve",
    response_model=AlertPublic,
    summary="Shelve an active alert for 1 minute to 24 hours (operator)",
)
async def shelve_alert(
    conn: ConnDep, user: AlertActor, alert_id: AlertId, body: ShelveBody
) -> AlertPublic:
    out: AlertPublic = await _shelve(conn, "alerts", alert_id, user.name, _until(body), body.note)
    return out


@router.post("/alerts/{alert_id}/unshelve", response_model=AlertPublic, summary="Unshelve an alert")
async def unshelve_alert(conn: ConnDep, user: AlertActor, alert_id: AlertId) -> AlertPublic:
    out: AlertPublic = await _shelve(conn, "alerts", alert_id, user.name, None, None)
    return out


@router.post(
    "/incidents/{incident_id}/shelve",
    response_model=IncidentPublic,
    summary="Shelve an active incident and its alerts for 1 minute to 24 hours (operator)",
)
async def shelve_incident(
    conn: ConnDep, user: AlertActor, incident_id: IncidentId, body: ShelveBody
) -> IncidentPublic:
    out: IncidentPublic = await _shelve(
        conn, "incidents", incident_id, user.name, _until(body), body.note
    )
    return out


@router.post(
    "/incidents/{incident_id}/unshelve",
    response_model=IncidentPublic,
    summary="Unshelve an incident and its alerts",
)
async def unshelve_incident(
    conn: ConnDep, user: AlertActor, incident_id: IncidentId
) -> IncidentPublic:
    out: IncidentPublic = await _shelve(conn, "incidents", incident_id, user.name, None, None)
    return out
