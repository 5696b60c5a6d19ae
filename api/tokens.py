"""``ioc token``: create, list and revoke API tokens from the command line."""

from __future__ import annotations

import argparse
import re
import sys
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg

from api.auth import expiry, hash_token, new_token
from api.config import ApiSettings
from api.models import Role
from core.db import migrate
from core.types import to_display

USAGE = """\
examples:
  ioc token create --role operator --name wall-screen-1 [--expires 30d|12h|2027-06-30|never]
  ioc token list [--all]
  ioc token rotate 3 [--grace 1h]   (a new token of the same name and role; the old one
                                     expires after the grace period)
  ioc token revoke 3        (by id, or --name NAME for every active token of that name)
"""

_UNITS = {"m": 60, "h": 3600, "d": 86400}


def parse_lifetime(text: str) -> timedelta | datetime | None:
    """``30d``, ``12h``, ``90m`` (a lifetime), a date or RFC 3339 time (an instant, UTC if
    no zone), or ``never`` (None)."""
    text = text.strip().lower()
    if text == "never":
        return None
    m = re.fullmatch(r"(\d{1,6})([mhd])", text)
    if m:
        life = timedelta(seconds=int(m.group(1)) * _UNITS[m.group(2)])
        if life <= timedelta(0):
            raise ValueError("a lifetime must be positive")
        return life
    try:
        when = datetime.fromisoformat(text.upper() if "t" in text else text)
    except ValueError:
        raise ValueError(f"not a lifetime (30d, 12h), a date or never: {text!r}") from None
    when = when if when.tzinfo else when.replace(tzinfo=UTC)
    if when <= datetime.now(UTC):
        raise ValueError("the expiry is in the past")
    return when


def create(
    conn: psycopg.Connection[Any],
    name: str,
    role: Role,
    by: str | None,
    expires: timedelta | datetime | None = None,
    rotated_from: int | None = None,
) -> str:
    """Store a new token's hash; return the token (the only time it is seen).  ``expires``:
    a lifetime, an instant, or None for a token that never expires."""
    token = new_token()
    at = expires if isinstance(expires, datetime) else expiry(expires)
    conn.execute(
        "INSERT INTO api_tokens (name, role, token_hash, created_by, expires_at, rotated_from)"
        " VALUES (%s, %s, %s, %s, %s, %s)",
        (name, role.value, hash_token(token), by, at, rotated_from),
    )
    return token


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ioc token",
        description="API tokens (stored as sha256 hashes in api_tokens). "
        "The database comes from IOC_DATABASE_URL.",
        epilog=USAGE,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True)
    c = sub.add_parser("create", help="create a token and print it")
    c.add_argument("--role", required=True, choices=[r.value for r in Role])
    c.add_argument("--name", required=True, help="who or what uses it (shown in the audit trail)")
    c.add_argument("--by", default="cli", help="recorded as created_by")
    c.add_argument(
        "--expires",
        help="30d, 12h, 90m, a date (2027-06-30) or never; default IOC_API_TOKEN_DAYS days",
    )
    ro = sub.add_parser("rotate", help="replace a token: same name and role, a new secret")
    ro.add_argument("id", type=int, help="the token's id (see list)")
    ro.add_argument(
        "--grace", default="0m", help="how long the old token still works (e.g. 1h; default 0)"
    )
    ro.add_argument("--expires", help="lifetime of the new token (as for create)")
    ls = sub.add_parser("list", help="list tokens (never the tokens themselves)")
    ls.add_argument("--all", action="store_true", help="include revoked tokens")
    r = sub.add_parser("revoke", help="revoke a token")
    r.add_argument("id", nargs="?", type=int, help="the token's id (see list)")
    r.add_argument("--name", help="revoke every active token with this name")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(sys.argv[1:] if argv is None else argv)
    settings = ApiSettings()
    try:
        migrate(settings.dsn)
        with psycopg.connect(settings.dsn, autocommit=True) as conn:
            return _run(conn, args)
    except psycopg.OperationalError as exc:
        print(f"ioc token: cannot reach the database: {exc}", file=sys.stderr)
        return 1


def _run(conn: psycopg.Connection[Any], args: argparse.Namespace) -> int:
    if args.command == "create":
        name = args.name.strip()
        if not name or len(name) > 100 or any(ord(ch) < 32 for ch in name):
            print("ioc token: --name must be 1-100 printable characters", file=sys.stderr)
            return 2
        try:
            expires = _lifetime(args.expires)
        except ValueError as exc:
            print(f"ioc token: --expires: {exc}", file=sys.stderr)
            return 2
        print(create(conn, name, Role(args.role), args.by, expires))
        return 0
    if args.command == "rotate":
        return _rotate(conn, args)
    if args.command == "list":
        where = "" if args.all else " WHERE revoked_at IS NULL"
        rows = conn.execute(
            f"SELECT id, name, role, created_at, created_by, revoked_at, last_used_at,"
            f" expires_at, expires_at <= now() FROM api_tokens{where} ORDER BY id"
        ).fetchall()
        print(
            f"{'id':>4}  {'role':<9} {'name':<24} {'created (Hanoi)':<17} {'last used':<17} "
            f"{'expires':<17} state"
        )
        for tid, name, role, created, _by, revoked, used, expires, expired in rows:
            state = "revoked " + _t(revoked) if revoked else "expired" if expired else "active"
            print(
                f"{tid:>4}  {role:<9} {name[:24]:<24} {_t(created):<17} {_t(used):<17} "
                f"{_t(expires) if expires else 'never':<17} {state}"
            )
        return 0
    if args.id is None and not args.name:
        print("ioc token revoke: give an id or --name", file=sys.stderr)
        return 2
    if args.id is not None:
        cur = conn.execute(
            "UPDATE api_tokens SET revoked_at = now() WHERE id = %s AND revoked_at IS NULL",
            (args.id,),
        )
    else:
        cur = conn.execute(
            "UPDATE api_tokens SET revoked_at = now() WHERE name = %s AND revoked_at IS NULL",
            (args.name,),
        )
    if cur.rowcount == 0:
        print("ioc token revoke: no such active token", file=sys.stderr)
        return 1
    print(f"revoked {cur.rowcount} token(s)")
    return 0


def _lifetime(text: str | None) -> timedelta | datetime | None:
    if text is None:
        days = ApiSettings().api_token_days
        return timedelta(days=days) if days > 0 else None
    return parse_lifetime(text)


def _rotate(conn: psycopg.Connection[Any], args: argparse.Namespace) -> int:
    try:
        grace = parse_lifetime(args.grace) if args.grace.strip() not in ("0", "0m") else None
        expires = _lifetime(args.expires)
    except ValueError as exc:
        print(f"ioc token rotate: {exc}", file=sys.stderr)
        return 2
    if isinstance(grace, datetime):
        print("ioc token rotate: --grace is a duration (e.g. 1h)", file=sys.stderr)
        return 2
    with conn.transaction():
        row = conn.execute(
            "SELECT name, role FROM api_tokens WHERE id = %s AND revoked_at IS NULL"
            " AND (expires_at IS NULL OR expires_at > now()) FOR UPDATE",
            (args.id,),
        ).fetchone()
        if row is None:
            print("ioc token rotate: no such active token", file=sys.stderr)
            return 1
        token = create(conn, row[0], Role(row[1]), "rotate", expires, rotated_from=args.id)
        conn.execute(
            "UPDATE api_tokens SET expires_at = least(coalesce(expires_at, 'infinity'), %s)"
            " WHERE id = %s",
            (datetime.now(UTC) + (grace or timedelta(0)), args.id),
        )
    print(token)
    return 0


def _t(value: Any) -> str:
    return to_display(value).strftime("%Y-%m-%d %H:%M") if value else "-"
