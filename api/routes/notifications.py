"""Notifications: an alert's or incident's delivery history, and the routes kept in the database."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Response
from psycopg.rows import class_row, dict_row
from psycopg.types.json import Jsonb
from pydantic import BaseModel, Field, ValidationError

from api.deps import ConnDep, NotifyAdmin, Reader
from api.params import DB_INT_MAX
from api.routes import V1
from core.errors import NotFoundError, PayloadError
from core.routing import NAME_PATTERN, Escalation, Route

router = APIRouter(prefix=V1, tags=["notifications"])

AlertId = Annotated[int, Path(ge=1, le=DB_INT_MAX, description="the alert's id", examples=[42])]
IncidentId = Annotated[
    int, Path(ge=1, le=DB_INT_MAX, description="the incident's id", examples=[7])
]
RouteName = Annotated[
    str, Path(pattern=NAME_PATTERN, description="the route's name", examples=["duty"])
]
MAX_DELIVERIES = 1_000


class DeliveryPublic(BaseModel):
    """One notification of an alert or incident in the outbox (targets shown without secrets)."""

    id: int
    idempotency_key: str = Field(examples=["ev:1234:duty:0"])
    event_seq: int | None = Field(description="the event that caused it")
    reason: Literal["event", "escalation", "reminder"]
    route: str = Field(examples=["duty"])
    step: int
    channel: str = Field(examples=["webhook https://hooks.example.org/ioc"])
    lang: str = Field(examples=["vi"])
    status: Literal["pending", "sent", "dead"]
    attempts: int
    last_error: str | None = Field(examples=["HTTP 503 Service Unavailable"])
    created_at: datetime
    next_attempt_at: datetime
    sent_at: datetime | None


class RouteIn(BaseModel):
    """A route (``type: route``) or an escalation policy, in the routes file's schema."""

    type: Literal["route", "escalation"] = "route"
    spec: dict[str, Any] = Field(
        examples=[{"min_severity": "critical", "webhook": "https://hooks.example.org/ioc"}]
    )


class RoutePublic(BaseModel):
    name: str
    type: Literal["route", "escalation"]
    spec: dict[str, Any]
    updated_at: datetime
    updated_by: str


_DELIVERY_COLUMNS = (
    "id, idempotency_key, event_seq, reason, route, step, channel, lang, status,"
    " attempts, last_error, created_at, next_attempt_at, sent_at"
)


async def _deliveries(conn: Any, table: str, column: str, row_id: int) -> list[DeliveryPublic]:
    async with conn.cursor(row_factory=class_row(DeliveryPublic)) as cur:
        await cur.execute(
            f"SELECT {_DELIVERY_COLUMNS} FROM notifications WHERE {column} = %s"
            " ORDER BY id LIMIT %s",
            (row_id, MAX_DELIVERIES),
        )
        rows: list[DeliveryPublic] = await cur.fetchall()
    if not rows:
        async with conn.cursor() as plain:
            await plain.execute(f"SELECT 1 FROM {table} WHERE id = %s", (row_id,))
            if await plain.fetchone() is None:
                kind = table.removesuffix("s")
                raise NotFoundError(
                    f"{kind} {row_id} does not exist", key=f"api.not_found.{kind}", id=row_id
                )
    return rows


@router.get(
    "/alerts/{alert_id}/notifications",
    response_model=list[DeliveryPublic],
    summary="The alert's notifications: who was told, when, and how it went",
)
async def deliveries(conn: ConnDep, user: Reader, alert_id: AlertId) -> list[DeliveryPublic]:
    return await _deliveries(conn, "alerts", "alert_id", alert_id)


@router.get(
    "/incidents/{incident_id}/notifications",
    response_model=list[DeliveryPublic],
    summary="The incident's notifications: who was told, when, and how it went",
)
async def incident_deliveries(
    conn: ConnDep, user: Reader, incident_id: IncidentId
) -> list[DeliveryPublic]:
    return await _deliveries(conn, "incidents", "incident_id", incident_id)


@router.get(
    "/notify/routes",
    response_model=list[RoutePublic],
    summary="Routes and escalation policies kept in the database (engineer, admin)",
)
async def list_routes(conn: ConnDep, user: NotifyAdmin) -> list[RoutePublic]:
    async with conn.cursor(row_factory=class_row(RoutePublic)) as cur:
        await cur.execute(
            "SELECT name, type, spec, updated_at, updated_by FROM notify_routes ORDER BY name"
        )
        return await cur.fetchall()


@router.put(
    "/notify/routes/{name}",
    response_model=RoutePublic,
    summary="Create or replace a route or escalation policy (engineer, admin)",
)
async def put_route(
    conn: ConnDep, user: NotifyAdmin, name: RouteName, body: RouteIn
) -> RoutePublic:
    model = Escalation if body.type == "escalation" else Route
    try:
        checked = model.model_validate({**body.spec, "name": name})
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"])
        raise PayloadError("invalid_route", f"spec.{where}: {err['msg']}") from None
    spec = checked.model_dump(mode="json", exclude={"name"}, exclude_defaults=True)
    async with conn.cursor(row_factory=class_row(RoutePublic)) as cur:
        await cur.execute(
            "INSERT INTO notify_routes (name, type, spec, updated_by) VALUES (%s, %s, %s, %s)"
            " ON CONFLICT (name) DO UPDATE SET type = excluded.type, spec = excluded.spec,"
            " updated_at = now(), updated_by = excluded.updated_by"
            " RETURNING name, type, spec, updated_at, updated_by",
            (name, body.type, Jsonb(spec), user.name),
        )
        row = await cur.fetchone()
    assert row is not None
    return row


@router.delete(
    "/notify/routes/{name}",
    status_code=204,
    response_class=Response,
    summary="Delete a route or escalation policy (engineer, admin)",
)
async def delete_route(conn: ConnDep, user: NotifyAdmin, name: RouteName) -> Response:
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute("DELETE FROM notify_routes WHERE name = %s", (name,))
        if cur.rowcount == 0:
            raise NotFoundError(f"route {name} does not exist", key="api.not_found.route", id=name)
    return Response(status_code=204)
