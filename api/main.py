"""The FastAPI application: ``create_app(settings)`` wires routes, streams, errors and the pool."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import psycopg
from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool, PoolTimeout
from starlette.exceptions import HTTPException as StarletteHTTPException

from api import rollup
from api.auth import Permission
from api.config import ApiSettings
from api.deps import known_query_only, require
from api.i18n import error_language, error_text, mark_language, validation_text
from api.models import ErrorPublic, Health, Readiness
from api.readings_stream import ReadingsHub, broker_reachable
from api.routes import (
    alerts,
    deadletters,
    incidents,
    load,
    maintenance,
    notifications,
    readings,
    sensors,
    shelving,
    tokens,
    ws,
)
from api.security import AuthFirst, SecurityHeaders
from api.stream import AlertHub
from api.telemetry import MetricsMiddleware
from core.db import migrate, uses_timescale
from core.errors import (
    AuthError,
    ConflictError,
    IocError,
    NotFoundError,
    PayloadError,
    PermissionDeniedError,
    TopicError,
)
from core.i18n import text
from core.logs import redact_loggers

logger = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).parent / "static"
MAX_BODY_BYTES = 1024 * 1024

DESCRIPTION = """
REST and websocket API of the city operations centre (IOC).

* **Auth**: `Authorization: Bearer <token>`; tokens come from `ioc token create --role ROLE
  --name NAME` or `POST /api/v1/tokens`.  Roles: `operator` (read, acknowledge, resolve,
  comment), `analyst` (read, readings history and export), `engineer` (read, manage
  sensors), `admin` (everything, tokens).  A missing or wrong token is 401, a role without
  the right 403.
* **Errors** are JSON `{"detail": "..."}`; a bad parameter is 422.
* **Times** are RFC 3339 in UTC (`2026-11-22T00:00:00Z`).
* **Live**: `GET /ws/alerts?since=<seq>&severity=&kind=&area=&bbox=` and
  `GET /ws/readings?sensor=<id>` (websockets, see the project documentation); the token
  goes in the Authorization header or the sub-protocol `ioc.bearer.<token>` (with
  `ioc.v1`), or, for older clients, `?token=`.
"""

_ERROR_STATUS: list[tuple[type[IocError], int]] = [
    (NotFoundError, 404),
    (ConflictError, 409),
    (AuthError, 401),
    (PermissionDeniedError, 403),
    (PayloadError, 422),
    (TopicError, 422),
]


def _error(status: int, description: str) -> dict[str, Any]:
    return {"model": ErrorPublic, "description": description}


COMMON_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: _error(400, "the body is not readable JSON"),
    401: _error(401, "missing, unknown or revoked token"),
    403: _error(403, "the token's role may not do this"),
    404: _error(404, "no such sensor, alert or token"),
    409: _error(409, "conflicts with the current state"),
    413: _error(413, "the body is larger than 1 MiB"),
    429: _error(429, "the token's request rate is exceeded (see Retry-After)"),
    422: _error(422, "a parameter or the body is invalid"),
    503: _error(503, "the database is unavailable or too busy"),
}


async def handle_error(request: Request, exc: Exception) -> JSONResponse:
    """The one place where errors become HTTP statuses."""
    status, detail = 500, "internal server error"
    headers: dict[str, str] | None = None
    if isinstance(exc, StarletteHTTPException):
        status, detail = exc.status_code, str(exc.detail)
        headers = dict(exc.headers or {})
        if status == 405:  # name every method of the path, not those of one route
            allowed = request.app.state.allowed_methods(request.url.path)
            if allowed:
                headers["Allow"] = ", ".join(allowed)
    elif isinstance(exc, IocError):
        status = next((code for cls, code in _ERROR_STATUS if isinstance(exc, cls)), 400)
        detail = str(exc)
        if status == 401:
            headers = {"WWW-Authenticate": "Bearer"}
    elif isinstance(exc, psycopg.errors.DataError | UnicodeEncodeError):
        status, detail = 422, "a value was refused by the database (e.g. a NUL character)"
    elif isinstance(exc, PoolTimeout):
        status, detail = 503, "the database is too busy; try again"
    elif isinstance(exc, psycopg.errors.QueryCanceled):
        status, detail = 503, "the query took too long; narrow it"
    elif isinstance(exc, psycopg.OperationalError):
        status, detail = 503, "the database is unavailable"
    if status >= 500 and status != 503:
        logger.error("%s %s failed", request.method, request.url.path, exc_info=exc)
    elif status == 503:
        logger.warning("%s %s: %s (%s)", request.method, request.url.path, detail, exc)
    lang = error_language(request)
    response = JSONResponse(
        {"detail": error_text(exc, status, detail, lang)}, status_code=status, headers=headers
    )
    mark_language(response.headers, lang)
    return response


async def handle_validation_error(request: Request, exc: Exception) -> JSONResponse:
    """422 with one readable sentence in ``detail`` and the details in ``errors``."""
    assert isinstance(exc, RequestValidationError)
    errors = [
        {
            "loc": [str(p) for p in e.get("loc", ())],
            "msg": str(e.get("msg", "")),
            "type": e.get("type"),
        }
        for e in exc.errors()[:20]
    ]
    lang = error_language(request)
    if lang == "en":
        detail = "; ".join(
            f"{'.'.join(e['loc'][1:] or e['loc']) or 'request'}: {e['msg']}" for e in errors[:5]
        )
    else:
        detail = "; ".join(validation_text(e, lang) for e in exc.errors()[:5])
    response = JSONResponse(
        {"detail": detail or text(lang, "api.invalid.request"), "errors": errors}, status_code=422
    )
    mark_language(response.headers, lang)
    return response


def _detect_timescale(dsn: str) -> bool:
    with psycopg.connect(dsn, autocommit=True) as conn:
        return uses_timescale(conn)


def _configure(settings: ApiSettings) -> Any:
    async def configure(conn: AsyncConnection[Any]) -> None:
        await conn.execute("SET TIME ZONE 'UTC'")
        await conn.execute("SET jit = off")  # compiling costs more than short queries take
        await conn.execute(f"SET statement_timeout = {int(settings.api_statement_timeout_ms)}")

    return configure


def create_app(settings: ApiSettings | None = None) -> FastAPI:
    """The API application; the pool and streams open in its lifespan."""
    settings = settings or ApiSettings()
    # uvicorn logs every websocket's URL (query included) on its own loggers
    redact_loggers("uvicorn.error", "uvicorn.access", "websockets.server")

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if settings.api_migrate:
            applied = await asyncio.to_thread(migrate, settings.dsn)
            if applied:
                logger.info("applied migrations %s", ", ".join(applied))
        app.state.loop = asyncio.get_running_loop()
        app.state.timescale = await asyncio.to_thread(_detect_timescale, settings.dsn)
        pool: AsyncConnectionPool[AsyncConnection[Any]] = AsyncConnectionPool(
            settings.dsn,
            min_size=min(settings.api_pool_min, settings.api_pool_max),
            max_size=settings.api_pool_max,
            kwargs={"autocommit": True},
            configure=_configure(settings),
            check=AsyncConnectionPool.check_connection,  # survives a database restart
            open=False,
            name="ioc-api",
        )
        await pool.open(wait=True, timeout=30)
        hub = AlertHub(
            settings.dsn, heartbeat_s=settings.api_ws_heartbeat_s, poll_s=settings.api_ws_poll_s
        )
        readings_hub = ReadingsHub(settings.mqtt, settings.limits, settings.mqtt_nodes)
        app.state.pool = pool
        app.state.alert_hub = hub
        app.state.readings_hub = readings_hub
        refresher: asyncio.Task[None] | None = None
        if settings.api_rollup and not app.state.timescale:
            async with pool.connection() as conn:
                await rollup.ensure_schema(conn)
            cfg = rollup.RollupConfig(
                interval_s=settings.api_rollup_interval_s,
                trailing=timedelta(hours=settings.api_rollup_trailing_h),
                retention=timedelta(days=settings.retention_days),
            )
            refresher = asyncio.create_task(rollup.refresher(pool, cfg), name="ioc-rollup")
            app.state.rollup = True
        try:
            await hub.start()
            logger.info(
                "API ready (%s storage)", "TimescaleDB" if app.state.timescale else "PostgreSQL"
            )
            yield
        finally:
            if refresher is not None:
                refresher.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await refresher
            await hub.stop()
            await readings_hub.stop()
            await pool.close()

    app = FastAPI(
        title="IOC backend API",
        version="1.0.0",
        description=DESCRIPTION,
        lifespan=lifespan,
        max_body_size=MAX_BODY_BYTES,
        openapi_tags=[
            {"name": "sensors", "description": "the sensor registry"},
            {"name": "readings", "description": "history, raw or time-bucketed, and CSV export"},
            {"name": "alerts", "description": "alerts, their audit trail, actions and CAP"},
            {"name": "tokens", "description": "API tokens (admin) and the caller"},
            {"name": "health", "description": "liveness, readiness and Prometheus metrics"},
        ],
    )
    app.state.settings = settings
    app.state.ws_per_token = {}  # token id -> open websockets (IOC_API_WS_PER_TOKEN)
    app.state.timescale = False
    app.state.rollup = False

    app.state.allowed_methods = _methods_by_path(app)
    for exc_class in (
        StarletteHTTPException,
        IocError,
        psycopg.errors.DataError,
        UnicodeEncodeError,
        PoolTimeout,
        psycopg.OperationalError,
        Exception,
    ):
        app.add_exception_handler(exc_class, handle_error)
    app.add_exception_handler(RequestValidationError, handle_validation_error)

    for resource in (
        sensors,
        readings,
        alerts,
        incidents,
        shelving,
        maintenance,
        load,
        notifications,
        deadletters,
        tokens,
    ):
        app.include_router(
            resource.router, responses=COMMON_RESPONSES, dependencies=[Depends(known_query_only)]
        )
    app.include_router(_health_router(settings), dependencies=[Depends(known_query_only)])
    _mount_dashboard(app, Path(settings.api_static_dir) if settings.api_static_dir else STATIC_DIR)

    app.add_middleware(AuthFirst)  # the token before routing, parameters and body
    if settings.api_cors_origins:  # outside AuthFirst: a 401 carries CORS headers too
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.api_cors_origins,
            allow_methods=["GET", "POST", "PUT", "DELETE"],
            allow_headers=["Authorization", "Content-Type"],
            expose_headers=["Content-Disposition"],
            max_age=600,
        )
    app.add_middleware(MetricsMiddleware)
    app.add_middleware(SecurityHeaders)
    app.add_middleware(ws.WebSocketFastPath)  # outermost: /ws/alerts and /ws/readings
    return app


def _methods_by_path(app: FastAPI) -> Callable[[str], list[str]]:
    """path -> the methods the OpenAPI schema documents for it (built on first use)."""
    table: list[tuple[re.Pattern[str], list[str]]] = []

    def allowed(path: str) -> list[str]:
        if not table:
            for template, ops in app.openapi()["paths"].items():
                pattern = re.sub(r"\\\{[^/]+?\\\}", "[^/]+", re.escape(template))
                table.append((re.compile(f"^{pattern}$"), sorted(m.upper() for m in ops)))
        return sorted({m for rx, methods in table if rx.match(path) for m in methods})

    return allowed


def _health_router(settings: ApiSettings) -> APIRouter:
    router = APIRouter(tags=["health"])

    @router.get("/healthz", response_model=Health, summary="Liveness: the process answers")
    async def healthz() -> Health:
        return Health()

    @router.get(
        "/readyz",
        response_model=Readiness,
        responses={503: {"model": Readiness, "description": "database or broker unreachable"}},
        summary="Readiness: the database and the broker are reachable",
    )
    async def readyz(request: Request) -> JSONResponse:
        state = request.app.state
        db_ok = state.alert_hub.connected and await _database_ok(state.pool)
        hub: ReadingsHub = state.readings_hub
        broker_ok = hub.connected or await broker_reachable(*settings.mqtt_nodes)
        ready = Readiness(
            status="ready" if db_ok and broker_ok else "not ready",
            database=db_ok,
            broker=broker_ok,
        )
        return JSONResponse(ready.model_dump(), status_code=200 if ready.status == "ready" else 503)

    deps = [] if settings.api_public_metrics else [Depends(require(Permission.METRICS))]

    @router.get(
        "/metrics",
        dependencies=deps,
        response_class=Response,
        responses={200: {"content": {CONTENT_TYPE_LATEST: {"schema": {"type": "string"}}}}},
        summary="Prometheus metrics",
    )
    async def metrics() -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    return router


async def _database_ok(pool: AsyncConnectionPool[AsyncConnection[Any]]) -> bool:
    try:
        async with asyncio.timeout(3):
            async with pool.connection(timeout=2) as conn:
                await conn.execute("SELECT 1")
    except (psycopg.Error, TimeoutError, OSError):
        return False
    return True


def _mount_dashboard(app: FastAPI, directory: Path) -> None:
    index = directory / "index.html"
    installed = index.is_file()  # looked at once, at start-up

    @app.get("/", include_in_schema=False)
    async def dashboard() -> Response:
        if not installed:
            return JSONResponse({"detail": "the dashboard is not installed"}, status_code=404)
        return FileResponse(index, headers={"Cache-Control": "no-cache"})

    if directory.is_dir():
        app.mount("/static", StaticFiles(directory=directory), name="static")
    else:

        @app.get("/static/{path:path}", include_in_schema=False)
        async def no_static(path: str) -> Response:
            return JSONResponse({"detail": "the dashboard is not installed"}, status_code=404)
