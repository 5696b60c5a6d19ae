"""Bearer tokens and roles: hashing, lookup, and which role may do what."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

from psycopg import AsyncConnection
from psycopg.rows import dict_row

from api.models import Role
from core.errors import AuthError, PermissionDeniedError

MAX_TOKEN_CHARS = 256
_TOUCH_EVERY = timedelta(seconds=60)


class Permission(StrEnum):
    READ = "read"  # sensors, alerts, CAP, live streams
    ALERT_ACTIONS = "alert_actions"  # acknowledge, resolve, comment
    HISTORY = "history"  # readings history and CSV export
    SENSOR_WRITE = "sensor_write"  # create, update, delete sensors
    TOKENS = "tokens"  # manage API tokens
    DEAD_LETTERS = "dead_letters"  # read rejected messages
    METRICS = "metrics"  # /metrics when it is not public
    NOTIFY_ROUTES = "notify_routes"  # notification routes and escalation policies


ROLE_PERMISSIONS: dict[Role, frozenset[Permission]] = {
    Role.OPERATOR: frozenset({Permission.READ, Permission.ALERT_ACTIONS}),
    Role.ANALYST: frozenset({Permission.READ, Permission.HISTORY}),
    Role.ENGINEER: frozenset(
        {
            Permission.READ,
            Permission.SENSOR_WRITE,
            Permission.NOTIFY_ROUTES,
            Permission.DEAD_LETTERS,
        }
    ),
    Role.ADMIN: frozenset(Permission),
}


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: the token's name (the audit trail's actor) and role."""

    token_id: int
    name: str
    role: Role

    def can(self, permission: Permission) -> bool:
        return permission in ROLE_PERMISSIONS[self.role]

    def require(self, permission: Permission) -> None:
        if not self.can(permission):
            allowed = sorted(r.value for r, p in ROLE_PERMISSIONS.items() if permission in p)
            raise PermissionDeniedError(
                f"role {self.role.value} may not do this; it needs one of: {', '.join(allowed)}",
                key="api.denied.role",
                role=self.role.value,
                roles=", ".join(allowed),
            )


def new_token() -> str:
    """A fresh bearer token (43 URL-safe characters, 256 bits)."""
    return secrets.token_urlsafe(32)


def expiry(lifetime: timedelta | None, now: datetime | None = None) -> datetime | None:
    """When a token made now with ``lifetime`` expires (None: never)."""
    if lifetime is None or lifetime <= timedelta(0):
        return None
    return (now or datetime.now(UTC)) + lifetime


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def bearer_from_header(value: str | None) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header, or None."""
    if not value:
        return None
    scheme, _, token = value.strip().partition(" ")
    if scheme.lower() != "bearer":
        return None
    return token.strip() or None


async def authenticate(conn: AsyncConnection[Any], token: str | None) -> Principal:
    """Look the token up by its hash; raise ``AuthError`` if it is missing, unknown, revoked
    or expired."""
    if not token:
        raise AuthError(
            "missing bearer token: send Authorization: Bearer <token>", key="api.auth.missing"
        )
    if len(token) > MAX_TOKEN_CHARS:
        raise AuthError("invalid or revoked token", key="api.auth.invalid")
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(
            "SELECT id, name, role, last_used_at, expires_at <= now() AS expired FROM api_tokens"
            " WHERE token_hash = %s AND revoked_at IS NULL",
            (hash_token(token),),
        )
        row = await cur.fetchone()
        if row is None:
            raise AuthError("invalid or revoked token", key="api.auth.invalid")
        if row["expired"]:
            raise AuthError(
                "the token has expired; ask an administrator for a new one", key="api.auth.expired"
            )
        last: datetime | None = row["last_used_at"]
        if last is None or datetime.now(UTC) - last > _TOUCH_EVERY:
            await cur.execute(
                "UPDATE api_tokens SET last_used_at = now() WHERE id = %s", (row["id"],)
            )
    return Principal(token_id=row["id"], name=row["name"], role=Role(row["role"]))
