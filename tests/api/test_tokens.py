"""Tokens: ``ioc token`` create / list / revoke, the admin endpoints, hashing, revocation."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import psycopg
import pytest

from api.tokens import main as token_main
from tests.api.conftest import LiveApi, auth

pytestmark = pytest.mark.db


def test_cli_create_list_revoke(
    db_url: str, db: psycopg.Connection[Any], monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    monkeypatch.setenv("IOC_DATABASE_URL", db_url)
    assert token_main(["create", "--role", "operator", "--name", "wall-1"]) == 0
    token = capsys.readouterr().out.strip()
    assert len(token) >= 40
    row = db.execute("SELECT name, role, token_hash FROM api_tokens").fetchone()
    assert row == ("wall-1", "operator", hashlib.sha256(token.encode()).hexdigest())
    assert token not in str(db.execute("SELECT * FROM api_tokens").fetchall())
    assert token_main(["list"]) == 0
    listing = capsys.readouterr().out
    assert "wall-1" in listing and "operator" in listing and token not in listing
    assert token_main(["revoke", "--name", "wall-1"]) == 0
    assert "revoked 1" in capsys.readouterr().out
    assert token_main(["revoke", "1"]) == 1  # already revoked
    assert token_main(["list"]) == 0
    assert "wall-1" not in capsys.readouterr().out
    assert token_main(["list", "--all"]) == 0
    assert "revoked" in capsys.readouterr().out
    assert token_main(["create", "--role", "operator", "--name", "bad\x07name"]) == 2
    with pytest.raises(SystemExit):
        token_main(["create", "--role", "superuser", "--name", "x"])


def test_cli_token_works_against_the_api(
    live_api: LiveApi, db_url: str, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    monkeypatch.setenv("IOC_DATABASE_URL", db_url)
    token_main(["create", "--role", "analyst", "--name", "grafana"])
    token = capsys.readouterr().out.strip()
    me = httpx.get(f"{live_api.url}/api/v1/me", headers=auth(token))
    assert me.json() == {"name": "grafana", "role": "analyst"}
    token_main(["revoke", "--name", "grafana"])
    assert httpx.get(f"{live_api.url}/api/v1/me", headers=auth(token)).status_code == 401


def test_admin_endpoints(client: httpx.Client, live_api: LiveApi) -> None:
    made = client.post("/api/v1/tokens", json={"name": "wall-2", "role": "operator"})
    assert made.status_code == 201, made.text
    doc = made.json()
    assert doc["created_by"] == "admin-user" and doc["revoked_at"] is None
    new = doc["token"]
    me = httpx.get(f"{live_api.url}/api/v1/me", headers=auth(new)).json()
    assert me == {"name": "wall-2", "role": "operator"}
    listed = client.get("/api/v1/tokens").json()
    assert "wall-2" in [t["name"] for t in listed]
    assert all("token" not in t and "token_hash" not in t for t in listed)
    revoked = client.delete(f"/api/v1/tokens/{doc['id']}")
    assert revoked.status_code == 200 and revoked.json()["revoked_at"] is not None
    assert httpx.get(f"{live_api.url}/api/v1/me", headers=auth(new)).status_code == 401
    assert "wall-2" not in [t["name"] for t in client.get("/api/v1/tokens").json()]
    everything = client.get("/api/v1/tokens", params={"include_revoked": "true"}).json()
    assert "wall-2" in [t["name"] for t in everything]
    assert client.delete("/api/v1/tokens/999999").status_code == 404
    for body in (
        {"name": "", "role": "operator"},
        {"name": "x", "role": "root"},
        {"name": "a\nb", "role": "admin"},
    ):
        assert client.post("/api/v1/tokens", json=body).status_code == 422


def test_last_used_is_recorded(client: httpx.Client, db: psycopg.Connection[Any]) -> None:
    assert client.get("/api/v1/me").status_code == 200
    row = db.execute("SELECT last_used_at FROM api_tokens WHERE name = 'admin-user'").fetchone()
    assert row is not None and row[0] is not None


def test_tokens_expire_and_rotate(
    live_api: LiveApi,
    db_url: str,
    db: psycopg.Connection[Any],
    monkeypatch: pytest.MonkeyPatch,
    capsys: Any,
) -> None:
    monkeypatch.setenv("IOC_DATABASE_URL", db_url)
    me = f"{live_api.url}/api/v1/me"
    # the default lifetime (IOC_API_TOKEN_DAYS), an explicit one, and never
    monkeypatch.setenv("IOC_API_TOKEN_DAYS", "10")
    assert token_main(["create", "--role", "operator", "--name", "default"]) == 0
    assert token_main(["create", "--role", "operator", "--name", "hours", "--expires", "12h"]) == 0
    assert (
        token_main(["create", "--role", "operator", "--name", "forever", "--expires", "never"]) == 0
    )
    capsys.readouterr()
    left = dict(
        db.execute(
            "SELECT name, extract(epoch FROM expires_at - now()) / 3600 FROM api_tokens"
        ).fetchall()
    )
    assert 239 < left["default"] <= 240 and 11.9 < left["hours"] <= 12 and left["forever"] is None
    for bad in ("yesterday", "-3d", "2001-01-01", "0d"):
        assert token_main(["create", "--role", "operator", "--name", "x", f"--expires={bad}"]) == 2
    # an expired token is refused, on REST and websockets alike
    assert token_main(["create", "--role", "analyst", "--name", "old", "--expires", "1d"]) == 0
    old = capsys.readouterr().out.strip()
    assert httpx.get(me, headers=auth(old)).status_code == 200
    db.execute("UPDATE api_tokens SET expires_at = now() - interval '1 s' WHERE name = 'old'")
    r = httpx.get(me, headers=auth(old))
    assert r.status_code == 401 and "expired" in r.json()["detail"]
    assert token_main(["list"]) == 0
    assert "expired" in capsys.readouterr().out
    # rotation: a new secret of the same name and role; the old one works for the grace only
    assert token_main(["create", "--role", "engineer", "--name", "gw", "--expires", "30d"]) == 0
    first = capsys.readouterr().out.strip()
    (gw_id,) = db.execute("SELECT id FROM api_tokens WHERE name = 'gw'").fetchone() or (0,)
    assert token_main(["rotate", str(gw_id), "--grace", "1h"]) == 0
    second = capsys.readouterr().out.strip()
    assert second != first
    for t in (first, second):
        assert httpx.get(me, headers=auth(t)).json() == {"name": "gw", "role": "engineer"}
    (third_id,) = db.execute(
        "SELECT id FROM api_tokens WHERE name = 'gw' AND rotated_from = %s", (gw_id,)
    ).fetchone() or (0,)
    assert token_main(["rotate", str(third_id)]) == 0  # no grace: the old one stops at once
    third = capsys.readouterr().out.strip()
    assert httpx.get(me, headers=auth(second)).status_code == 401
    assert httpx.get(me, headers=auth(third)).status_code == 200
    assert token_main(["rotate", str(third_id)]) == 1  # expired: nothing to rotate


def test_api_created_tokens_expire(client: httpx.Client) -> None:
    made = client.post("/api/v1/tokens", json={"name": "wall-3", "role": "operator"}).json()
    lifetime = datetime.fromisoformat(made["expires_at"]) - datetime.now(UTC)
    assert timedelta(days=89.9) < lifetime <= timedelta(days=90)  # IOC_API_TOKEN_DAYS
    made = client.post(
        "/api/v1/tokens", json={"name": "wall-4", "role": "operator", "expires_in_days": 7}
    ).json()
    lifetime = datetime.fromisoformat(made["expires_at"]) - datetime.now(UTC)
    assert timedelta(days=6.9) < lifetime <= timedelta(days=7)
    bad = client.post(
        "/api/v1/tokens", json={"name": "wall-5", "role": "operator", "expires_in_days": 0}
    )
    assert bad.status_code == 422
