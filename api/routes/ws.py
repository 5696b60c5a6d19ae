"""``/ws/alerts`` (live alert events with resume) and ``/ws/readings`` (one sensor, live)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import UTC, datetime

import orjson
import psycopg
from fastapi import WebSocket
from fastapi.exceptions import RequestValidationError
from starlette.types import ASGIApp, Receive, Scope, Send
from starlette.websockets import WebSocketDisconnect

from api.auth import Permission, Principal, authenticate, bearer_from_header
from api.config import ApiSettings
from api.i18n import reader_language
from api.params import DB_INT_MAX, parse_bbox
from api.readings_stream import ReadingsHub
from api.stream import (
    AlertFilter,
    AlertHub,
    AlertSubscriber,
    FrameKind,
    Subscriber,
    heartbeat_text,
    hello_text,
    replay,
)
from api.telemetry import WS_DENIED, WS_SLOW_CLOSED
from core.errors import AuthError, PermissionDeniedError
from core.i18n import LANGUAGES, Lang, language
from core.topics import SENSOR_ID_RE
from core.types import SensorKind, Severity

logger = logging.getLogger(__name__)


CLOSE_BAD_REQUEST = 4400
CLOSE_UNAUTHORIZED = 4401
CLOSE_FORBIDDEN = 4403
CLOSE_TOO_SLOW = 4008
CLOSE_TRY_LATER = 1013
_SEVERITIES = {s.value for s in Severity}
_KINDS = {k.value for k in SensorKind}


class BadParameter(ValueError):
    pass


async def _deny(ws: WebSocket, code: int, reason: str) -> None:
    WS_DENIED.labels(str(code)).inc()
    await ws.accept()
    await ws.close(code=code, reason=reason[:120])


async def authorize(ws: WebSocket, permission: Permission) -> Principal | None:
    """The caller of a websocket (``?token=`` or the Authorization header), or None after
    closing it with 4401 (no or bad token) or 4403 (the role lacks ``permission``)."""
    token = ws.query_params.get("token") or bearer_from_header(ws.headers.get("authorization"))
    try:
        async with ws.app.state.pool.connection() as conn:
            user = await authenticate(conn, token)
        user.require(permission)
    except AuthError as exc:
        await _deny(ws, CLOSE_UNAUTHORIZED, str(exc))
        return None
    except PermissionDeniedError as exc:
        await _deny(ws, CLOSE_FORBIDDEN, str(exc))
        return None
    except psycopg.Error as exc:  # PoolTimeout included
        logger.warning("websocket refused: the database is unavailable (%s)", exc)
        await _deny(ws, CLOSE_TRY_LATER, "the database is unavailable; try again")
        return None
    return user


def _many(ws: WebSocket, name: str, allowed: set[str] | None = None) -> frozenset[str]:
    values = [v for raw in ws.query_params.getlist(name) for v in raw.split(",") if v]
    if len(values) > 50 or any(len(v) > 200 for v in values):
        raise BadParameter(f"too many or too long {name} values")
    if allowed is not None:
        bad = [v for v in values if v not in allowed]
        if bad:
            raise BadParameter(f"{name} must be among {', '.join(sorted(allowed))}")
    return frozenset(values)


def _alert_language(ws: WebSocket) -> Lang | None:
    """``?lang=`` (vi or en), else ``Accept-Language`` if sent, else None (messages as stored)."""
    raw = ws.query_params.get("lang")
    if raw:
        lang = language(raw)
        if lang is None or len(raw) > 35:
            raise BadParameter(f"lang must be one of {', '.join(LANGUAGES)}")
        return lang
    if ws.headers.get("accept-language"):
        return reader_language(ws)
    return None


def _alert_params(ws: WebSocket) -> tuple[int | None, AlertFilter]:
    since: int | None = None
    raw = ws.query_params.get("since")
    if raw not in (None, ""):
        if not raw.isdigit() or len(raw) > 19 or int(raw) > DB_INT_MAX:
            raise BadParameter("since must be a seq: an integer from 0 to 2^63-1")
        since = int(raw)
    try:
        box = parse_bbox(ws.query_params.get("bbox"))
    except RequestValidationError as exc:
        raise BadParameter(str(exc.errors()[0]["msg"])) from None
    flt = AlertFilter(
        severities=_many(ws, "severity", _SEVERITIES),
        kinds=_many(ws, "kind", _KINDS),
        areas=_many(ws, "area"),
        bbox=box,
    )
    return since, flt


async def _drain_incoming(ws: WebSocket) -> None:
    """Read (and ignore) what the client sends, until it goes away."""
    while True:
        msg = await ws.receive()
        if msg["type"] == "websocket.disconnect":
            return


async def _serve(
    ws: WebSocket, sub: Subscriber, sender: asyncio.Task[None], stream: str, close_timeout: float
) -> None:
    """Run until the client leaves, the sender fails, or the queue overflows (close 4008)."""
    receiver = asyncio.create_task(_drain_incoming(ws))
    overflow = asyncio.create_task(sub.overflowed.wait())
    tasks = {sender, receiver, overflow}
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        if overflow in done:
            sender.cancel()
            WS_SLOW_CLOSED.labels(stream).inc()
            logger.info("closing a too-slow %s client (%d frames waiting)", stream, sub.qsize())
            with contextlib.suppress(Exception):
                await asyncio.wait_for(
                    ws.close(
                        code=CLOSE_TOO_SLOW,
                        reason=f"too slow: more than {sub.maxsize} frames waiting",
                    ),
                    close_timeout,
                )
        elif sender in done and not sender.cancelled() and sender.exception() is not None:
            exc = sender.exception()
            if not isinstance(exc, WebSocketDisconnect | OSError | RuntimeError):
                logger.error("websocket sender failed", exc_info=exc)
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(BaseException):
                await task


async def ws_alerts(websocket: WebSocket, send: Send) -> None:
    """Live alert events in seq order; ``since`` replays the missed ones first."""
    settings: ApiSettings = websocket.app.state.settings
    hub: AlertHub = websocket.app.state.alert_hub
    user = await authorize(websocket, Permission.READ)
    if user is None:
        return
    try:
        since, flt = _alert_params(websocket)
        lang = _alert_language(websocket)
    except BadParameter as exc:
        await _deny(websocket, CLOSE_BAD_REQUEST, str(exc))
        return
    if len(hub.subscribers) >= settings.api_ws_max_clients:
        await _deny(websocket, CLOSE_TRY_LATER, "too many clients; try again later")
        return
    await websocket.accept()
    sub = AlertSubscriber(settings.api_ws_queue, flt, lang)
    head = hub.register(sub)
    try:
        sender = asyncio.create_task(_send_alerts(websocket, send, sub, since, head))
        await _serve(websocket, sub, sender, "alerts", settings.api_ws_close_timeout_s)
    finally:
        hub.unregister(sub)


async def _send_alerts(
    ws: WebSocket, send: Send, sub: AlertSubscriber, since: int | None, head: int
) -> None:
    last = since if since is not None else head
    if since is None:
        await ws.send_text(hello_text(head))
    elif since < head:
        async for ev in replay(ws.app.state.pool, since, head, sub.filter, sub.lang):
            if ev.seq > last:
                await ws.send_text(ev.text)
                last = ev.seq
    while True:
        frame = await sub.next()
        if frame.kind is FrameKind.EVENT:
            if frame.seq <= last:
                continue  # already sent (replayed, or the client resumed ahead of this hub)
            await send(frame.message)  # the message shared by every client
            last = frame.seq
        else:
            await ws.send_text(frame.text if frame.seq >= last else heartbeat_text(last))


async def ws_readings(websocket: WebSocket, send: Send) -> None:
    """Live readings of one sensor: ``{"type": "reading", "sensor", "metric", "time", "value"}``."""
    settings: ApiSettings = websocket.app.state.settings
    user = await authorize(websocket, Permission.READ)
    if user is None:
        return
    sensor = websocket.query_params.get("sensor", "")
    if not SENSOR_ID_RE.match(sensor):
        await _deny(
            websocket, CLOSE_BAD_REQUEST, "sensor must be a sensor id (1-64 of A-Za-z0-9_.-)"
        )
        return
    hub: ReadingsHub = websocket.app.state.readings_hub
    await websocket.accept()
    sub = Subscriber(settings.api_ws_queue)
    hub.watch(sensor, sub)
    try:
        sender = asyncio.create_task(
            _send_frames(websocket, send, sub, settings.api_ws_heartbeat_s)
        )
        await _serve(websocket, sub, sender, "readings", settings.api_ws_close_timeout_s)
    finally:
        hub.unwatch(sensor, sub)


async def _send_frames(ws: WebSocket, send: Send, sub: Subscriber, heartbeat_s: float) -> None:
    while True:
        try:
            async with asyncio.timeout(heartbeat_s):
                frame = await sub.next()
        except TimeoutError:
            doc = {"type": "heartbeat", "time": datetime.now(UTC)}
            await ws.send_text(orjson.dumps(doc, option=orjson.OPT_UTC_Z).decode())
            continue
        await send(frame.message)


WS_ROUTES = {"/ws/alerts": ws_alerts, "/ws/readings": ws_readings}


class WebSocketFastPath:
    """Serves the two websockets with the server's own ``send`` and ``receive``.

    Every HTTP middleware layer wraps ``send``, and fanning one event out to thousands of
    sockets calls it thousands of times: serving the websockets from the outermost layer
    keeps that path to the socket short.  Everything else goes down the normal stack.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket":
            handler = WS_ROUTES.get(scope["path"])
            if handler is not None:
                await handler(WebSocket(scope, receive, send), send)
                return
        await self.app(scope, receive, send)
