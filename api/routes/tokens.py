"""``/api/v1/tokens`` (admin) and ``/api/v1/me``: bearer tokens and who is calling."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated

from fastapi import APIRouter, Path, Query, status
from psycopg.rows import class_row

from api.auth import expiry, hash_token, new_token
from api.deps import Admin, ConnDep, CurrentUser, SettingsDep
from api.models import Me, TokenCreate, TokenCreated, TokenPublic
from api.params import DB_INT_MAX
from api.routes import V1
from core.errors import NotFoundError

router = APIRouter(prefix=V1, tags=["tokens"])

_COLUMNS = "id, name, role, created_at, created_by, revoked_at, last_used_at, expires_at"


@router.get("/me", response_model=Me, summary="The caller's token name and role")
async def me(user: CurrentUser) -> Me:
    return Me(name=user.name, role=user.role)


@router.get("/tokens", response_model=list[TokenPublic], summary="List API tokens (admin)")
async def list_tokens(
    conn: ConnDep,
    user: Admin,
    include_revoked: Annotated[bool, Query(description="also list revoked tokens")] = False,
) -> list[TokenPublic]:
    where = "" if include_revoked else " WHERE revoked_at IS NULL"
    async with conn.cursor(row_factory=class_row(TokenPublic)) as cur:
        await cur.execute(f"SELECT {_COLUMNS} FROM api_tokens{where} ORDER BY id")
        return await cur.fetchall()


@router.post(
    "/tokens",
    response_model=TokenCreated,
    status_code=status.HTTP_201_CREATED,
    summary="Create an API token (admin); the token is shown once",
)
async def create_token(
    conn: ConnDep, user: Admin, body: TokenCreate, settings: SettingsDep
) -> TokenCreated:
    token = new_token()
    days = body.expires_in_days if body.expires_in_days is not None else settings.api_token_days
    async with conn.cursor(row_factory=class_row(TokenPublic)) as cur:
        await cur.execute(
            f"INSERT INTO api_tokens (name, role, token_hash, created_by, expires_at)"
            f" VALUES (%s, %s, %s, %s, %s) RETURNING {_COLUMNS}",
            (
                body.name,
                body.role.value,
                hash_token(token),
                user.name,
                expiry(timedelta(days=days)),
            ),
        )
        row = await cur.fetchone()
    assert row is not None
    return TokenCreated(**row.model_dump(), token=token)


@router.delete(
    "/tokens/{token_id}", response_model=TokenPublic, summary="Revoke an API token (admin)"
)
async def revoke_token(
    conn: ConnDep,
    user: Admin,
    token_id: Annotated[int, Path(ge=1, le=DB_INT_MAX)],
) -> TokenPublic:
    """Revoking is immediate (every request looks the token up) and cannot be undone."""
    async with conn.cursor(row_factory=class_row(TokenPublic)) as cur:
        await cur.execute(
            f"UPDATE api_tokens SET revoked_at = coalesce(revoked_at, now()) WHERE id = %s"
            f" RETURNING {_COLUMNS}",
            (token_id,),
        )
        row = await cur.fetchone()
    if row is None:
        raise NotFoundError(
            f"token {token_id} does not exist", key="api.not_found.token", id=token_id
        )
    return row
