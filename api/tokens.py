"""``ioc token``: create, list and revoke API tokens from the command line."""

from __future__ import annotations

import argparse
import sys
from typing import Any

import psycopg

from api.auth import hash_token, new_token
from api.config import ApiSettings
from api.models import Role
from core.db import migrate
from core.types import to_display

USAGE = """\
examples:
  ioc token create --role operator --name wall-screen-1
  ioc token list [--all]
  ioc token revoke 3        (by id, or --name NAME for every active token of that name)
"""


def create(conn: psycopg.Connection[Any], name: str, role: Role, by: str | None) -> str:
    """Store a new token's hash; return the token (the only time it is seen)."""
    token = new_token()
    conn.execute(
        "INSERT INTO api_tokens (name, role, token_hash, created_by) VALUES (%s, %s, %s, %s)",
        (name, role.value, hash_token(token), by),
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
        print(create(conn, name, Role(args.role), args.by))
        return 0
    if args.command == "list":
        where = "" if args.all else " WHERE revoked_at IS NULL"
        rows = conn.execute(
            f"SELECT id, name, role, created_at, created_by, revoked_at, last_used_at"
            f" FROM api_tokens{where} ORDER BY id"
        ).fetchall()
        print(
            f"{'id':>4}  {'role':<9} {'name':<24} {'created (Hanoi)':<17} {'last used':<17} state"
        )
        for tid, name, role, created, _by, revoked, used in rows:
            print(
                f"{tid:>4}  {role:<9} {name[:24]:<24} {_t(created):<17} {_t(used):<17} "
                f"{'revoked ' + _t(revoked) if revoked else 'active'}"
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


def _t(value: Any) -> str:
    return to_display(value).strftime("%Y-%m-%d %H:%M") if value else "-"
