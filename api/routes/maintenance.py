"""``/api/v1/maintenance``: windows that put sensors, areas or kinds out of service (engineer)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query
from psycopg import AsyncConnection
from psycopg.rows import class_row
from psycopg.types.json import Jsonb

from api.deps import ConnDep, Reader, SensorEditor, SettingsDep
from api.incident_models import (
    MAINTENANCE_COLUMNS,
    MaintenanceCreate,
    MaintenancePage,
    MaintenancePublic,
)
from api.params import DB_INT_MAX
from api.routes import V1
from core.errors import ConflictError, NotFoundError, PayloadError

router = APIRouter(prefix=f"{V1}/maintenance", tags=["maintenance"])

MAX_WINDOWS = 1_000
WindowId = Annotated[int, Path(ge=1, le=DB_INT_MAX, description="the window's id", examples=[3])]
_OVERLAP = (
    "SELECT id FROM maintenance_windows WHERE cancelled_at IS NULL"
    " AND starts_at < %(end)s AND ends_at > %(start)s"
    " AND (sensors && %(sensors)s::text[] OR areas && %(areas)s::text[]"
    "      OR kinds && %(kinds)s::text[]) ORDER BY id LIMIT 1"
)


async def _audit(conn: AsyncConnection[Any], window: MaintenancePublic, action: str) -> None:
    await conn.execute(
        "INSERT INTO maintenance_events (window_id, action, actor, snapshot)"
        " VALUES (%s, %s, %s, %s)",
        (
            window.id,
            action,
            window.cancelled_by or window.created_by,
            Jsonb(window.model_dump(mode="json")),
        ),
    )


@router.post(
    "",
    response_model=MaintenancePublic,
    status_code=201,
    summary="Put sensors, areas or sensor kinds in maintenance (engineer)",
)
async def create_window(
    conn: ConnDep, user: SensorEditor, settings: SettingsDep, body: MaintenanceCreate
) -> MaintenancePublic:
    hours = (body.end - body.start).total_seconds() / 3600
    if hours > settings.api_maintenance_max_h:
        raise PayloadError(
            "too_long",
            f"a maintenance window lasts at most {settings.api_maintenance_max_h:g} h;"
            f" this one lasts {hours:.1f} h",
            key="api.invalid.maintenance_too_long",
            max=settings.api_maintenance_max_h,
            hours=round(hours, 1),
        )
    params = {
        "sensors": body.sensors,
        "areas": body.areas,
        "kinds": [k.value for k in body.kinds],
        "start": body.start,
        "end": body.end,
        "reason": body.reason,
        "actor": user.name,
    }
    async with conn.transaction():
        # one writer at a time, so that two overlapping windows cannot both pass the check
        await conn.execute("SELECT pg_advisory_xact_lock(727007)")
        cur = await conn.execute(_OVERLAP, params)
        clash = await cur.fetchone()
        if clash is not None:
            raise ConflictError(
                f"maintenance window {clash[0]} already covers some of these sensors, areas or"
                " kinds in that time; change or cancel it instead",
                key="api.conflict.maintenance_overlap",
                id=clash[0],
            )
        async with conn.cursor(row_factory=class_row(MaintenancePublic)) as mcur:
            await mcur.execute(
                "INSERT INTO maintenance_windows (sensors, areas, kinds, starts_at, ends_at,"
                " reason, created_by) VALUES (%(sensors)s, %(areas)s, %(kinds)s, %(start)s,"
                f" %(end)s, %(reason)s, %(actor)s) RETURNING {MAINTENANCE_COLUMNS}",
                params,
            )
            window = await mcur.fetchone()
        assert window is not None
        await _audit(conn, window, "created")
    return window


@router.get(
    "", response_model=MaintenancePage, summary="Maintenance windows, newest first (1,000 at most)"
)
async def list_windows(
    conn: ConnDep,
    user: Reader,
    active: Annotated[
        bool, Query(description="only windows not cancelled that have not ended")
    ] = False,
) -> MaintenancePage:
    where = " WHERE cancelled_at IS NULL AND ends_at > now()" if active else ""
    async with conn.cursor(row_factory=class_row(MaintenancePublic)) as cur:
        await cur.execute(
            f"SELECT {MAINTENANCE_COLUMNS} FROM maintenance_windows{where}"
            " ORDER BY id DESC LIMIT %s",
            (MAX_WINDOWS,),
        )
        items = await cur.fetchall()
    return MaintenancePage(items=items)


@router.delete(
    "/{window_id}",
    response_model=MaintenancePublic,
    summary="Cancel a maintenance window: alerts are shown again from now on (engineer)",
)
async def cancel_window(
    conn: ConnDep, user: SensorEditor, window_id: WindowId
) -> MaintenancePublic:
    async with conn.transaction():
        async with conn.cursor(row_factory=class_row(MaintenancePublic)) as cur:
            await cur.execute(
                "UPDATE maintenance_windows SET cancelled_at = now(), cancelled_by = %s"
                f" WHERE id = %s AND cancelled_at IS NULL RETURNING {MAINTENANCE_COLUMNS}",
                (user.name, window_id),
            )
            window = await cur.fetchone()
        if window is not None:
            await _audit(conn, window, "cancelled")
    if window is not None:
        return window
    cur2 = await conn.execute("SELECT 1 FROM maintenance_windows WHERE id = %s", (window_id,))
    if await cur2.fetchone() is None:
        raise NotFoundError(
            f"maintenance window {window_id} does not exist",
            key="api.not_found.maintenance",
            id=window_id,
        )
    raise ConflictError(
        f"maintenance window {window_id} is already cancelled",
        key="api.conflict.maintenance_cancelled",
        id=window_id,
    )
