"""FastAPI dependencies: settings, a database connection, the caller and the role it needs."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool
from starlette.requests import HTTPConnection

from api.auth import Permission, Principal, authenticate
from api.config import ApiSettings
from api.params import invalid
from api.security import PRINCIPAL_KEY

if TYPE_CHECKING:
    from api.readings_stream import ReadingsHub
    from api.stream import AlertHub

POOL_TIMEOUT_S = 10.0

_bearer = HTTPBearer(
    auto_error=False,
    description="A token from `ioc token create` or POST /api/v1/tokens",
)


def get_settings(request: HTTPConnection) -> ApiSettings:
    settings: ApiSettings = request.app.state.settings
    return settings


def get_pool(request: HTTPConnection) -> AsyncConnectionPool[AsyncConnection[Any]]:
    pool: AsyncConnectionPool[AsyncConnection[Any]] = request.app.state.pool
    return pool


def get_alert_hub(request: HTTPConnection) -> AlertHub:
    hub: AlertHub = request.app.state.alert_hub
    return hub


def get_readings_hub(request: HTTPConnection) -> ReadingsHub:
    hub: ReadingsHub = request.app.state.readings_hub
    return hub


SettingsDep = Annotated[ApiSettings, Depends(get_settings)]
PoolDep = Annotated[AsyncConnectionPool[AsyncConnection[Any]], Depends(get_pool)]


async def get_conn(pool: PoolDep) -> AsyncIterator[AsyncConnection[Any]]:
    """One pooled connection per request (autocommit; UTC; bounded statement time)."""
    async with pool.connection(timeout=POOL_TIMEOUT_S) as conn:
        yield conn


ConnDep = Annotated[AsyncConnection[Any], Depends(get_conn)]


async def current_user(
    request: Request,
    pool: PoolDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal:
    """The caller ``AuthFirst`` found before routing (or, outside it, looked up here)."""
    found: Principal | None = request.scope.get("state", {}).get(PRINCIPAL_KEY)
    if found is not None:
        return found
    async with pool.connection(timeout=POOL_TIMEOUT_S) as conn:
        return await authenticate(conn, credentials.credentials if credentials else None)


CurrentUser = Annotated[Principal, Depends(current_user)]


def require(permission: Permission) -> Callable[[Principal], Awaitable[Principal]]:
    """A dependency that lets through only callers whose role has ``permission``."""

    async def dependency(user: CurrentUser) -> Principal:
        user.require(permission)
        return user

    dependency.__name__ = f"require_{permission.value}"
    return dependency


Reader = Annotated[Principal, Depends(require(Permission.READ))]
AlertActor = Annotated[Principal, Depends(require(Permission.ALERT_ACTIONS))]
HistoryReader = Annotated[Principal, Depends(require(Permission.HISTORY))]
SensorEditor = Annotated[Principal, Depends(require(Permission.SENSOR_WRITE))]
DeadLetterReader = Annotated[Principal, Depends(require(Permission.DEAD_LETTERS))]
Admin = Annotated[Principal, Depends(require(Permission.TOKENS))]
NotifyAdmin = Annotated[Principal, Depends(require(Permission.NOTIFY_ROUTES))]


_QUERY_NAMES: dict[int, frozenset[str]] = {}


def _query_names(dependant: Any) -> set[str]:
    names = {str(f.alias) for f in dependant.query_params}
    for sub in dependant.dependencies:
        names |= _query_names(sub)
    return names


async def known_query_only(request: Request) -> None:
    """Refuse query parameters the route does not know (``?sensors=`` for ``?sensor=``)."""
    route = request.scope.get("route")
    dependant = getattr(route, "dependant", None)
    if dependant is None:
        return
    names = _QUERY_NAMES.get(id(route))
    if names is None:
        names = _QUERY_NAMES[id(route)] = frozenset(_query_names(dependant))
    for key in request.query_params:
        if key not in names:
            known = ", ".join(sorted(names)) or "none"
            invalid(
                "query",
                key,
                f"unknown query parameter; this endpoint takes: {known}",
                key,
                "api.invalid.unknown_parameter",
                known=known,
            )
