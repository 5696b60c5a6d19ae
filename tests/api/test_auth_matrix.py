"""Every role against every endpoint and both websockets: 401 without or with a wrong token,
403 for a role without the right, 2xx otherwise.  The table must list every route."""

from __future__ import annotations

import asyncio
import itertools
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
import psycopg
import pytest
from psycopg_pool import AsyncConnectionPool
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from api.auth import ROLE_PERMISSIONS, Permission
from api.models import Role
from api.routes.ws import authorize
from tests.api.conftest import LiveApi, auth, insert_alert

pytestmark = pytest.mark.db

_counter = itertools.count()


@dataclass
class Call:
    method: str
    url: str
    json: Any = None


Prepare = Callable[[psycopg.Connection[Any]], Call]


def _sensor(conn: psycopg.Connection[Any]) -> str:
    sid = f"m-{next(_counter)}"
    conn.execute("INSERT INTO sensors (id, kind) VALUES (%s, 'noise')", (sid,))
    return sid


def _token(conn: psycopg.Connection[Any]) -> int:
    row = conn.execute(
        "INSERT INTO api_tokens (name, role, token_hash) VALUES ('victim', 'analyst', %s)"
        " RETURNING id",
        (f"hash-{next(_counter)}",),
    ).fetchone()
    assert row is not None
    return int(row[0])


def _route(conn: psycopg.Connection[Any]) -> str:
    name = f"r{next(_counter)}"
    conn.execute("INSERT INTO notify_routes (name, spec) VALUES (%s, '{}')", (name,))
    return name


def _incident(conn: psycopg.Connection[Any]) -> int:
    row = conn.execute(
        "INSERT INTO incidents (hazard, severity, title, title_vi, sensors, first_seen, last_seen)"
        " VALUES ('air_pollution', 'warning', 't', 't', '{aq-1}', now(), now()) RETURNING id"
    ).fetchone()
    assert row is not None
    return int(row[0])


def _window(conn: psycopg.Connection[Any]) -> int:
    row = conn.execute(
        "INSERT INTO maintenance_windows (sensors, starts_at, ends_at, reason, created_by)"
        " VALUES (%s, now(), now() + interval '1 hour', 'r', 'x') RETURNING id",
        ([f"w-{next(_counter)}"],),
    ).fetchone()
    assert row is not None
    return int(row[0])


def _new_window() -> dict[str, Any]:
    return {
        "sensors": [f"w-{next(_counter)}"],
        "start": "2026-01-01T00:00:00Z",
        "end": "2026-01-01T04:00:00Z",
        "reason": "maintenance",
    }


T = "start=2026-01-01T00:00:00Z&end=2026-01-02T00:00:00Z"
# (method, OpenAPI path) -> (permission or None for public, how to build a call that succeeds)
MATRIX: dict[tuple[str, str], tuple[Permission | None, Prepare]] = {
    ("GET", "/api/v1/sensors"): (Permission.READ, lambda c: Call("GET", "/api/v1/sensors")),
    ("GET", "/api/v1/sensors/{sensor_id}"): (
        Permission.READ,
        lambda c: Call("GET", f"/api/v1/sensors/{_sensor(c)}"),
    ),
    ("POST", "/api/v1/sensors"): (
        Permission.SENSOR_WRITE,
        lambda c: Call("POST", "/api/v1/sensors", {"id": f"new-{next(_counter)}", "kind": "noise"}),
    ),
    ("PUT", "/api/v1/sensors/{sensor_id}"): (
        Permission.SENSOR_WRITE,
        lambda c: Call("PUT", f"/api/v1/sensors/{_sensor(c)}", {"name": "renamed"}),
    ),
    ("DELETE", "/api/v1/sensors/{sensor_id}"): (
        Permission.SENSOR_WRITE,
        lambda c: Call("DELETE", f"/api/v1/sensors/{_sensor(c)}"),
    ),
    ("GET", "/api/v1/readings"): (
        Permission.HISTORY,
        lambda c: Call("GET", f"/api/v1/readings?sensor=x&{T}"),
    ),
    ("GET", "/api/v1/readings/export.csv"): (
        Permission.HISTORY,
        lambda c: Call("GET", f"/api/v1/readings/export.csv?sensor=x&{T}"),
    ),
    ("GET", "/api/v1/alerts"): (Permission.READ, lambda c: Call("GET", "/api/v1/alerts")),
    ("GET", "/api/v1/alerts/{alert_id}"): (
        Permission.READ,
        lambda c: Call("GET", f"/api/v1/alerts/{insert_alert(c)}"),
    ),
    ("POST", "/api/v1/alerts/{alert_id}/acknowledge"): (
        Permission.ALERT_ACTIONS,
        lambda c: Call("POST", f"/api/v1/alerts/{insert_alert(c)}/acknowledge", {"note": "x"}),
    ),
    ("POST", "/api/v1/alerts/{alert_id}/resolve"): (
        Permission.ALERT_ACTIONS,
        lambda c: Call("POST", f"/api/v1/alerts/{insert_alert(c)}/resolve"),
    ),
    ("POST", "/api/v1/alerts/{alert_id}/comments"): (
        Permission.ALERT_ACTIONS,
        lambda c: Call("POST", f"/api/v1/alerts/{insert_alert(c)}/comments", {"note": "x"}),
    ),
    ("GET", "/api/v1/alerts/{alert_id}/cap"): (
        Permission.READ,
        lambda c: Call("GET", f"/api/v1/alerts/{insert_alert(c)}/cap"),
    ),
    ("GET", "/api/v1/alerts/{alert_id}/notifications"): (
        Permission.READ,
        lambda c: Call("GET", f"/api/v1/alerts/{insert_alert(c)}/notifications"),
    ),
    ("GET", "/api/v1/notify/routes"): (
        Permission.NOTIFY_ROUTES,
        lambda c: Call("GET", "/api/v1/notify/routes"),
    ),
    ("PUT", "/api/v1/notify/routes/{name}"): (
        Permission.NOTIFY_ROUTES,
        lambda c: Call(
            "PUT", f"/api/v1/notify/routes/r{next(_counter)}", {"spec": {"webhook": "http://h/"}}
        ),
    ),
    ("DELETE", "/api/v1/notify/routes/{name}"): (
        Permission.NOTIFY_ROUTES,
        lambda c: Call("DELETE", f"/api/v1/notify/routes/{_route(c)}"),
    ),
    ("GET", "/api/v1/dead-letters"): (
        Permission.DEAD_LETTERS,
        lambda c: Call("GET", "/api/v1/dead-letters?code=bad_json&limit=5"),
    ),
    ("GET", "/api/v1/incidents"): (Permission.READ, lambda c: Call("GET", "/api/v1/incidents")),
    ("GET", "/api/v1/incidents/{incident_id}"): (
        Permission.READ,
        lambda c: Call("GET", f"/api/v1/incidents/{_incident(c)}"),
    ),
    ("GET", "/api/v1/incidents/{incident_id}/notifications"): (
        Permission.READ,
        lambda c: Call("GET", f"/api/v1/incidents/{_incident(c)}/notifications"),
    ),
    ("POST", "/api/v1/incidents/{incident_id}/acknowledge"): (
        Permission.ALERT_ACTIONS,
        lambda c: Call("POST", f"/api/v1/incidents/{_incident(c)}/acknowledge", {"note": "x"}),
    ),
    ("POST", "/api/v1/incidents/{incident_id}/resolve"): (
        Permission.ALERT_ACTIONS,
        lambda c: Call("POST", f"/api/v1/incidents/{_incident(c)}/resolve"),
    ),
    ("GET", "/api/v1/incidents/{incident_id}/cap"): (
        Permission.READ,
        lambda c: Call("GET", f"/api/v1/incidents/{_incident(c)}/cap"),
    ),
    ("POST", "/api/v1/alerts/{alert_id}/shelve"): (
        Permission.ALERT_ACTIONS,
        lambda c: Call("POST", f"/api/v1/alerts/{insert_alert(c)}/shelve", {"minutes": 5}),
    ),
    ("POST", "/api/v1/alerts/{alert_id}/unshelve"): (
        Permission.ALERT_ACTIONS,
        lambda c: Call("POST", f"/api/v1/alerts/{insert_alert(c)}/unshelve"),
    ),
    ("POST", "/api/v1/incidents/{incident_id}/shelve"): (
        Permission.ALERT_ACTIONS,
        lambda c: Call("POST", f"/api/v1/incidents/{_incident(c)}/shelve", {"minutes": 5}),
    ),
    ("POST", "/api/v1/incidents/{incident_id}/unshelve"): (
        Permission.ALERT_ACTIONS,
        lambda c: Call("POST", f"/api/v1/incidents/{_incident(c)}/unshelve"),
    ),
    ("GET", "/api/v1/operator-load"): (
        Permission.READ,
        lambda c: Call("GET", "/api/v1/operator-load"),
    ),
    ("GET", "/api/v1/maintenance"): (
        Permission.READ,
        lambda c: Call("GET", "/api/v1/maintenance"),
    ),
    ("POST", "/api/v1/maintenance"): (
        Permission.SENSOR_WRITE,
        lambda c: Call("POST", "/api/v1/maintenance", _new_window()),
    ),
    ("DELETE", "/api/v1/maintenance/{window_id}"): (
        Permission.SENSOR_WRITE,
        lambda c: Call("DELETE", f"/api/v1/maintenance/{_window(c)}"),
    ),
    ("GET", "/api/v1/me"): (Permission.READ, lambda c: Call("GET", "/api/v1/me")),
    ("GET", "/api/v1/tokens"): (Permission.TOKENS, lambda c: Call("GET", "/api/v1/tokens")),
    ("POST", "/api/v1/tokens"): (
        Permission.TOKENS,
        lambda c: Call("POST", "/api/v1/tokens", {"name": "n", "role": "operator"}),
    ),
    ("DELETE", "/api/v1/tokens/{token_id}"): (
        Permission.TOKENS,
        lambda c: Call("DELETE", f"/api/v1/tokens/{_token(c)}"),
    ),
    ("GET", "/healthz"): (None, lambda c: Call("GET", "/healthz")),
    ("GET", "/readyz"): (None, lambda c: Call("GET", "/readyz")),
    ("GET", "/metrics"): (None, lambda c: Call("GET", "/metrics")),
}


def test_matrix_lists_every_route(shared_api: LiveApi) -> None:
    schema = shared_api.app.openapi()
    routes = {(m.upper(), p) for p, ops in schema["paths"].items() for m in ops}
    assert routes == set(MATRIX)


@pytest.mark.parametrize(("method", "path"), sorted(MATRIX))
def test_every_role_against_every_endpoint(
    shared_api: LiveApi,
    shared_tokens: dict[str, str],
    shared_db_url: str,
    method: str,
    path: str,
) -> None:
    permission, prepare = MATRIX[(method, path)]
    with (
        psycopg.connect(shared_db_url, autocommit=True) as conn,
        httpx.Client(base_url=shared_api.url, timeout=30) as http,
    ):

        def send(headers: dict[str, str]) -> httpx.Response:
            call = prepare(conn)
            return http.request(call.method, call.url, json=call.json, headers=headers)

        if permission is None:
            assert send({}).status_code == 200
            return
        for headers in ({}, auth("not-a-token"), {"Authorization": "Basic dXNlcjpwdw=="}):
            resp = send(headers)
            assert resp.status_code == 401, (headers, resp.text)
            assert resp.headers.get("www-authenticate") == "Bearer"
            assert isinstance(resp.json()["detail"], str)
        for role in Role:
            resp = send(auth(shared_tokens[role.value]))
            if permission in ROLE_PERMISSIONS[role]:
                assert 200 <= resp.status_code < 300, (role, resp.status_code, resp.text)
            else:
                assert resp.status_code == 403, (role, resp.status_code, resp.text)
                assert role.value in resp.json()["detail"]


@pytest.mark.parametrize("path", ["/ws/alerts", "/ws/readings?sensor=wl-1"])
def test_websockets_for_every_role(
    shared_api: LiveApi, shared_tokens: dict[str, str], path: str
) -> None:
    sep = "&" if "?" in path else "?"
    for token in (None, "not-a-token"):
        url = f"{shared_api.ws_url}{path}" + (f"{sep}token={token}" if token else "")
        with connect(url) as ws, pytest.raises(ConnectionClosed) as err:
            ws.recv(timeout=10)
        assert err.value.rcvd is not None and err.value.rcvd.code == 4401
    for role in Role:  # every role may read the live streams
        assert Permission.READ in ROLE_PERMISSIONS[role]
        with connect(f"{shared_api.ws_url}{path}{sep}token={shared_tokens[role.value]}") as ws:
            if path.startswith("/ws/alerts"):
                assert json.loads(ws.recv(timeout=10))["type"] == "hello"
            else:
                with pytest.raises(TimeoutError):
                    ws.recv(timeout=0.3)  # open, waiting for readings


class FakeSocket:
    """Just what ``authorize`` touches of a starlette WebSocket."""

    def __init__(self, pool: AsyncConnectionPool[Any], token: str | None) -> None:
        self.query_params = {"token": token} if token else {}
        self.headers: dict[str, str] = {}
        self.scope: dict[str, Any] = {}  # no sub-protocols offered
        self.app = type("App", (), {"state": type("State", (), {"pool": pool})()})()
        self.closed: tuple[int, str] | None = None

    async def accept(self, subprotocol: str | None = None) -> None:
        pass

    async def close(self, code: int, reason: str) -> None:
        self.closed = (code, reason)


def test_websocket_role_refusal_is_4403(shared_db_url: str, shared_tokens: dict[str, str]) -> None:
    """Both websockets need READ, which every role has; the 4403 path is checked directly."""

    async def run() -> dict[str, Any]:
        out: dict[str, Any] = {}
        async with AsyncConnectionPool(shared_db_url, min_size=1, open=False) as pool:
            for role in Role:
                ws = FakeSocket(pool, shared_tokens[role.value])
                user = await authorize(ws, Permission.TOKENS)  # type: ignore[arg-type]
                out[role.value] = user.role.value if user else ws.closed
            ws = FakeSocket(pool, None)
            out["none"] = await authorize(ws, Permission.READ) or ws.closed  # type: ignore[arg-type]
        return out

    got = asyncio.run(run())
    assert got["admin"] == "admin"
    for role in ("operator", "analyst", "engineer"):
        assert got[role][0] == 4403
    assert got["none"][0] == 4401
