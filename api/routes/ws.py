"""``/ws/alerts`` (live alert events with resume) and ``/ws/readings`` (one sensor, live)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import orjson
import psycopg
from fastapi import WebSocket
from fastapi.exceptions import RequestValidationError
from starlette.types import ASGIApp, Receive, Scope, Send
from starlette.websockets import WebSocketDisconnect
from websockets.protocol import Protocol as WsProtocol
from websockets.protocol import State as WsState

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
CLOSE_RESUME_AHEAD = 4409
CLOSE_TOO_MANY_FOR_TOKEN = 4429
CLOSE_TRY_LATER = 1013
_SEVERITIES = {s.value for s in Severity}
_KINDS = {k.value for k in SensorKind}


class BadParameter(ValueError):
    pass


SUBPROTOCOL = "ioc.v1"
BEARER_SUBPROTOCOL = "ioc.bearer."


def subprotocol(ws: WebSocket) -> str | None:
    """``ioc.v1`` if the client offered it (a browser that offered sub-protocols fails the
    handshake unless the server picks one), else None."""
    offered = ws.scope.get("subprotocols") or ()
    return SUBPROTOCOL if SUBPROTOCOL in offered else None


def token_of(ws: WebSocket) -> str | None:
    """The bearer token: the ``ioc.bearer.<token>`` sub-protocol (browsers, nothing in the
    URL), the Authorization header, or ``?token=``."""
    for proto in ws.scope.get("subprotocols") or ():
        if proto.startswith(BEARER_SUBPROTOCOL):
            return proto[len(BEARER_SUBPROTOCOL) :] or None
    return bearer_from_header(ws.headers.get("authorization")) or ws.query_params.get("token")


async def accept(ws: WebSocket) -> None:
    await ws.accept(subprotocol=subprotocol(ws))


async def _deny(ws: WebSocket, code: int, reason: str) -> None:
    WS_DENIED.labels(str(code)).inc()
    await accept(ws)
    await ws.close(code=code, reason=reason[:120])


async def authorize(ws: WebSocket, permission: Permission) -> Principal | None:
    """The caller of a websocket (see ``token_of``), or None after closing it with 4401
    (no, bad or expired token) or 4403 (the role lacks ``permission``)."""
    token = token_of(ws)
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


ALERT_PARAMS = frozenset({"token", "since", "severity", "kind", "area", "bbox", "lang"})
READINGS_PARAMS = frozenset({"token", "sensor"})
_SINGLE = frozenset({"token", "since", "bbox", "sensor", "lang"})


def _check_names(ws: WebSocket, known: frozenset[str]) -> None:
    """Refuse unknown parameters and a repeated single-valued one (``since=1&since=9``)."""
    seen: set[str] = set()
    for key, _ in ws.query_params.multi_items():
        if key not in known:
            raise BadParameter(
                f"unknown parameter {key[:40]}; this stream takes: {', '.join(sorted(known))}"
            )
        if key in _SINGLE and key in seen:
            raise BadParameter(f"{key} given more than once")
        seen.add(key)


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
    _check_names(ws, ALERT_PARAMS)
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


async def _watch(sub: Subscriber, send_timeout: float) -> None:
    """Return when the client must go: its queue overflowed, or one frame has waited more
    than ``send_timeout`` for its socket (a client that does not read at all)."""
    loop = asyncio.get_running_loop()
    while True:
        try:
            async with asyncio.timeout(send_timeout / 2):
                await sub.overflowed.wait()
            return
        except TimeoutError:
            if sub.stalled(loop.time(), send_timeout):
                sub.drop(f"too slow: a frame waited more than {send_timeout:g} s to be sent")
                return


async def _serve(
    ws: WebSocket, sub: Subscriber, sender: asyncio.Task[None], stream: str, settings: ApiSettings
) -> None:
    """Run until the client leaves, the sender fails, or it is too slow (close 4008)."""
    receiver = asyncio.create_task(_drain_incoming(ws))
    overflow = asyncio.create_task(_watch(sub, settings.api_ws_send_timeout_s))
    tasks = {sender, receiver, overflow}
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        if overflow in done:
            sender.cancel()
            WS_SLOW_CLOSED.labels(stream).inc()
            logger.info(
                "closing a too-slow %s client (%s; %d frames waiting)",
                stream,
                sub.too_slow,
                sub.qsize(),
            )
            with contextlib.suppress(Exception):
                await asyncio.wait_for(
                    ws.close(code=CLOSE_TOO_SLOW, reason=sub.too_slow[:120]),
                    settings.api_ws_close_timeout_s,
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
    if since is not None and since > hub.head:
        newest = await _newest_seq(websocket)
        if newest is not None and since > newest:
            await _deny(
                websocket,
                CLOSE_RESUME_AHEAD,
                f"since {since} is beyond the newest event {newest}: this history was reset; "
                "reconnect without since",
            )
            return
    if not await _claim(websocket, user, settings):
        return
    await accept(websocket)
    sub = AlertSubscriber(settings.api_ws_queue, flt, lang)
    head = hub.register(sub)
    try:
        sender = asyncio.create_task(
            _send_alerts(websocket, send, sub, since, head, settings.api_ws_direct_write)
        )
        await _serve(websocket, sub, sender, "alerts", settings)
    finally:
        hub.unregister(sub)
        _release(websocket, user)


def _open_per_token(ws: WebSocket) -> dict[int, int]:
    table: dict[int, int] = ws.app.state.ws_per_token
    return table


async def _claim(ws: WebSocket, user: Principal, settings: ApiSettings) -> bool:
    """Count one more open websocket of ``user``'s token, or refuse it (4429) at the limit."""
    table = _open_per_token(ws)
    if table.get(user.token_id, 0) >= settings.api_ws_per_token:
        await _deny(
            ws,
            CLOSE_TOO_MANY_FOR_TOKEN,
            f"too many websockets for this token (at most {settings.api_ws_per_token})",
        )
        return False
    table[user.token_id] = table.get(user.token_id, 0) + 1
    return True


def _release(ws: WebSocket, user: Principal) -> None:
    table = _open_per_token(ws)
    left = table.get(user.token_id, 0) - 1
    if left > 0:
        table[user.token_id] = left
    else:
        table.pop(user.token_id, None)


async def _newest_seq(ws: WebSocket) -> int | None:
    """The newest committed seq (the hub may not have read it yet), or None if unknown."""
    try:
        async with ws.app.state.pool.connection() as conn:
            cur = await conn.execute("SELECT coalesce(max(seq), 0) FROM alert_events")
            row = await cur.fetchone()
    except psycopg.Error:
        return None
    return int(row[0]) if row else 0


async def _send_alerts(
    ws: WebSocket, send: Send, sub: AlertSubscriber, since: int | None, head: int, direct: bool
) -> None:
    sub.last = since if since is not None else head
    clock = asyncio.get_running_loop().time
    if since is None:
        await ws.send_text(hello_text(head))
    elif since < head:
        async for ev in replay(ws.app.state.pool, since, head, sub.filter, sub.lang):
            if ev.seq > sub.last:
                sub.sending_since = clock()
                await ws.send_text(ev.text)
                sub.sending_since = 0.0
                sub.last = ev.seq
    if direct:  # live from here on: the hub may write events while this task waits
        sub.direct = direct_writer(send)
    while True:
        frame = await sub.next()
        sub.sending_since = clock()  # the watcher closes a client stuck here (4008)
        if frame.kind is FrameKind.EVENT:
            if frame.seq > sub.last:  # else already sent (replayed, resumed ahead, direct)
                await send(frame.message)  # the message shared by every client
                sub.last = frame.seq
        else:
            await ws.send_text(frame.text if frame.seq >= sub.last else heartbeat_text(sub.last))
        sub.sending_since = 0.0


def direct_writer(send: Send) -> Callable[[bytes], bool] | None:
    """A synchronous writer of whole frames to the socket behind uvicorn's ``send``, when
    that is safe: uvicorn's websockets protocol, no extension (no compression).  It writes
    only while the connection is open and the transport takes data, else returns False and
    the frame goes the normal way."""
    proto: Any = getattr(send, "__self__", None)
    conn = getattr(proto, "conn", None)
    transport = getattr(proto, "transport", None)
    writable = getattr(proto, "writable", None)
    if not isinstance(conn, WsProtocol) or conn.extensions or transport is None:
        return None
    if not isinstance(writable, asyncio.Event):
        return None

    def write(data: bytes) -> bool:
        if (
            getattr(proto, "close_sent", True)
            or conn.state is not WsState.OPEN
            or not writable.is_set()
            or transport.is_closing()
        ):
            return False
        transport.write(data)
        return True

    return write


async def ws_readings(websocket: WebSocket, send: Send) -> None:
    """Live readings of one sensor: ``{"type": "reading", "sensor", "metric", "time", "value"}``."""
    settings: ApiSettings = websocket.app.state.settings
    user = await authorize(websocket, Permission.READ)
    if user is None:
        return
    try:
        _check_names(websocket, READINGS_PARAMS)
    except BadParameter as exc:
        await _deny(websocket, CLOSE_BAD_REQUEST, str(exc))
        return
    sensor = websocket.query_params.get("sensor", "")
    if not SENSOR_ID_RE.match(sensor):
        await _deny(
            websocket, CLOSE_BAD_REQUEST, "sensor must be a sensor id (1-64 of A-Za-z0-9_.-)"
        )
        return
    hub: ReadingsHub = websocket.app.state.readings_hub
    if not await _claim(websocket, user, settings):
        return
    await accept(websocket)
    sub = Subscriber(settings.api_ws_queue)
    hub.watch(sensor, sub)
    try:
        sender = asyncio.create_task(
            _send_frames(websocket, send, sub, settings.api_ws_heartbeat_s)
        )
        await _serve(websocket, sub, sender, "readings", settings)
    finally:
        hub.unwatch(sensor, sub)
        _release(websocket, user)


async def _send_frames(ws: WebSocket, send: Send, sub: Subscriber, heartbeat_s: float) -> None:
    clock = asyncio.get_running_loop().time
    while True:
        try:
            async with asyncio.timeout(heartbeat_s):
                frame = await sub.next()
        except TimeoutError:
            doc = {"type": "heartbeat", "time": datetime.now(UTC)}
            sub.sending_since = clock()
            await ws.send_text(orjson.dumps(doc, option=orjson.OPT_UTC_Z).decode())
            sub.sending_since = 0.0
            continue
        sub.sending_since = clock()
        await send(frame.message)
        sub.sending_since = 0.0


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
