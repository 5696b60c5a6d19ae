"""``/api/v1/alerts``: list, detail with audit trail, acknowledge, resolve, comment, CAP 1.2."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Path, Query, Response
from psycopg import AsyncConnection, sql
from psycopg.rows import class_row
from pydantic import Field

from api.cap import CAP_MEDIA_TYPE, alert_to_cap
from api.deps import AlertActor, ConnDep, Reader, SettingsDep
from api.i18n import ErrorLangDep, LangDep, localize_all, sensor_names
from api.models import AlertDetail, AlertPage, AlertPublic, CommentIn, NoteIn, SensorId, TimeParam
from api.params import DB_INT_MAX, MAX_ALERTS_PAGE
from api.queries import ALERT_COLUMNS, Where, fetch_alert, fetch_events
from api.routes import V1
from core.errors import ConflictError, NotFoundError
from core.i18n import Lang, text
from core.types import SensorKind

router = APIRouter(prefix=f"{V1}/alerts", tags=["alerts"])

AlertId = Annotated[int, Path(ge=1, le=DB_INT_MAX, description="the alert's id", examples=[42])]
Words = Annotated[str, Field(max_length=200)]


@router.get("", response_model=AlertPage, summary="List alerts, newest first")
async def list_alerts(
    conn: ConnDep,
    user: Reader,
    lang: LangDep,
    status: Annotated[
        list[Literal["open", "acknowledged", "resolved"]] | None,
        Query(max_length=3, examples=[["open", "acknowledged"]]),
    ] = None,
    severity: Annotated[
        list[Literal["info", "warning", "critical"]] | None, Query(max_length=3)
    ] = None,
    kind: Annotated[list[SensorKind] | None, Query(max_length=10)] = None,
    area: Annotated[list[Words] | None, Query(max_length=50)] = None,
    sensor: Annotated[list[SensorId] | None, Query(max_length=100)] = None,
    since: Annotated[
        TimeParam | None, Query(description="alerts changed at or after this time (updated_at)")
    ] = None,
    until: Annotated[
        TimeParam | None, Query(description="alerts opened before this time (opened_at)")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_ALERTS_PAGE)] = 100,
    before_id: Annotated[
        int | None, Query(ge=1, le=DB_INT_MAX, description="next page: alerts with a lower id")
    ] = None,
    include_suppressed: Annotated[
        bool, Query(description="also alerts raised under maintenance (hidden otherwise)")
    ] = False,
    shelved: Annotated[
        bool | None, Query(description="true: only alerts shelved now; false: only the others")
    ] = None,
) -> AlertPage:
    where = Where()
    if not include_suppressed:
        where.add("suppressed_by IS NULL")
    if shelved is not None:
        where.add(
            "shelved_until > now()"
            if shelved
            else "(shelved_until IS NULL OR shelved_until <= now())"
        )
    where.any_of("status", "status", list(status) if status else None)
    where.any_of("severity", "severity", list(severity) if severity else None)
    where.any_of("kind", "kind", [k.value for k in kind] if kind else None)
    where.any_of("area", "area", area)
    where.any_of("sensor", "sensor", sensor)
    if since:
        where.add("updated_at >= %(since)s", since=since)
    if until:
        where.add("opened_at < %(until)s", until=until)
    async with conn.cursor() as ccur:
        await ccur.execute(
            sql.SQL("SELECT count(*) FROM alerts {}").format(where.sql()), where.params
        )
        row = await ccur.fetchone()
    total = row[0] if row else 0
    if before_id is not None:
        where.add("id < %(before_id)s", before_id=before_id)
    async with conn.cursor(row_factory=class_row(AlertPublic)) as cur:
        await cur.execute(
            sql.SQL("SELECT {} FROM alerts {} ORDER BY id DESC LIMIT %(limit)s").format(
                sql.SQL(ALERT_COLUMNS),
                where.sql(),
            ),
            {**where.params, "limit": limit + 1},
        )
        items = await cur.fetchall()
    more = len(items) > limit
    del items[limit:]
    await localize_all(conn, items, lang)
    return AlertPage(
        items=items, total=total, limit=limit, next_before_id=items[-1].id if more else None
    )


async def _detail(
    conn: AsyncConnection[Any], alert_id: int, lang: Lang, err: Lang = "en"
) -> AlertDetail:
    alert = await fetch_alert(conn, alert_id)
    if alert is None:
        raise NotFoundError(text(err, "api.alert.not_found", id=alert_id))
    await localize_all(conn, [alert], lang)
    events = await fetch_events(conn, alert_id)
    return AlertDetail(**alert.model_dump(), events=events)


@router.get("/{alert_id}", response_model=AlertDetail, summary="One alert with its audit trail")
async def get_alert(
    conn: ConnDep, user: Reader, lang: LangDep, err: ErrorLangDep, alert_id: AlertId
) -> AlertDetail:
    return await _detail(conn, alert_id, lang, err)


async def _transition(
    conn: AsyncConnection[Any],
    alert_id: int,
    actor: str,
    note: str | None,
    update: str,
    allowed: tuple[str, ...],
    verb: str,
    lang: Lang,
    err: Lang,
) -> AlertPublic:
    """Change an alert in a transaction that names the actor for the audit trigger."""
    async with conn.transaction():
        await conn.execute(
            "SELECT set_config('ioc.actor', %s, true), set_config('ioc.note', %s, true)",
            (actor, note or ""),
        )
        async with conn.cursor(row_factory=class_row(AlertPublic)) as cur:
            await cur.execute(
                f"UPDATE alerts SET {update} WHERE id = %(id)s AND status = ANY(%(allowed)s)"
                f" RETURNING {ALERT_COLUMNS}",
                {"id": alert_id, "actor": actor, "allowed": list(allowed)},
            )
            changed = await cur.fetchone()
    if changed is not None:
        return (await localize_all(conn, [changed], lang))[0]
    current = await fetch_alert(conn, alert_id)
    if current is None:
        raise NotFoundError(text(err, "api.alert.not_found", id=alert_id))
    raise ConflictError(
        text(
            err,
            f"api.alert.conflict.{verb}",
            id=alert_id,
            status=text(err, f"tail.status.{current.status}"),
        )
    )


NoteBody = Annotated[NoteIn | None, Body()]


@router.post(
    "/{alert_id}/acknowledge",
    response_model=AlertPublic,
    summary="Acknowledge an open alert (operator)",
)
async def acknowledge(
    conn: ConnDep,
    user: AlertActor,
    lang: LangDep,
    err: ErrorLangDep,
    alert_id: AlertId,
    body: NoteBody = None,
) -> AlertPublic:
    return await _transition(
        conn,
        alert_id,
        user.name,
        body.note if body else None,
        "status = 'acknowledged', acknowledged_at = now(), acknowledged_by = %(actor)s",
        ("open",),
        "acknowledged",
        lang,
        err,
    )


@router.post(
    "/{alert_id}/resolve",
    response_model=AlertPublic,
    summary="Resolve an open or acknowledged alert (operator)",
)
async def resolve(
    conn: ConnDep,
    user: AlertActor,
    lang: LangDep,
    err: ErrorLangDep,
    alert_id: AlertId,
    body: NoteBody = None,
) -> AlertPublic:
    return await _transition(
        conn,
        alert_id,
        user.name,
        body.note if body else None,
        "status = 'resolved', resolved_at = now(), resolved_by = %(actor)s",
        ("open", "acknowledged"),
        "resolved",
        lang,
        err,
    )


@router.post(
    "/{alert_id}/comments",
    response_model=AlertDetail,
    summary="Add a comment to an alert's audit trail (operator)",
)
async def comment(
    conn: ConnDep,
    user: AlertActor,
    lang: LangDep,
    err: ErrorLangDep,
    alert_id: AlertId,
    body: CommentIn,
) -> AlertDetail:
    async with conn.cursor() as cur:
        await cur.execute("SELECT ioc_alert_comment(%s, %s, %s)", (alert_id, user.name, body.note))
        row = await cur.fetchone()
    if row is None or row[0] is None:
        raise NotFoundError(text(err, "api.alert.not_found", id=alert_id))
    return await _detail(conn, alert_id, lang, err)


@router.get(
    "/{alert_id}/cap",
    response_class=Response,
    responses={200: {"content": {CAP_MEDIA_TYPE: {"schema": {"type": "string"}}}}},
    summary="The alert as an OASIS CAP 1.2 document",
)
async def get_cap(
    conn: ConnDep, user: Reader, settings: SettingsDep, alert_id: AlertId
) -> Response:
    alert = await fetch_alert(conn, alert_id)
    if alert is None:
        raise NotFoundError(
            f"alert {alert_id} does not exist", key="api.not_found.alert", id=alert_id
        )
    names = await sensor_names(conn, [alert.sensor])
    return Response(
        alert_to_cap(
            alert,
            sender=settings.api_cap_sender,
            sender_name=settings.api_cap_sender_name,
            sensor_name=names.get(alert.sensor),
        ),
        media_type=CAP_MEDIA_TYPE,
    )
