"""Fixtures of the API tests: a real uvicorn serving create_app() on a free port, and tokens."""

from __future__ import annotations

import asyncio
import os
import shutil
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
import uvicorn
from fastapi import FastAPI
from psycopg.types.json import Jsonb

from api.config import ApiSettings
from api.main import create_app
from api.models import Role
from api.server import uvicorn_options
from api.tokens import create as create_token
from tests.conftest import TEMPLATE_DB, drop_database
from tests.support.servers import MosquittoServer, PostgresServer, free_port


@dataclass
class LiveApi:
    """A running API: its base URLs, app and settings."""

    app: FastAPI
    settings: ApiSettings
    port: int
    server: uvicorn.Server
    thread: threading.Thread

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(15)

    def call(self, fn: Callable[[], Any]) -> Any:
        """Run ``fn`` on the server's event loop (to inspect hubs safely)."""
        loop: asyncio.AbstractEventLoop = self.app.state.loop
        fut: asyncio.Future[Any] = asyncio.run_coroutine_threadsafe(_call(fn), loop)  # type: ignore[assignment]
        return fut.result(5)


async def _call(fn: Callable[[], Any]) -> Any:
    return fn()


def start_api(settings: ApiSettings, port: int | None = None) -> LiveApi:
    app = create_app(settings)
    port = port or free_port()
    config = uvicorn.Config(
        app, host="127.0.0.1", port=port, lifespan="on", **uvicorn_options(settings)
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name=f"uvicorn-{port}", daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the API did not start")
        time.sleep(0.02)
    return LiveApi(app, settings, port, server, thread)


@pytest.fixture
def api_settings(db_url: str, mqtt_url: str) -> ApiSettings:
    return ApiSettings(
        database_url=db_url,  # type: ignore[arg-type]
        mqtt_url=mqtt_url,  # type: ignore[arg-type]
        api_ws_heartbeat_s=1.0,
        api_ws_poll_s=5.0,
        api_pool_max=10,
        api_rollup=False,  # tests of the rollup turn it on; the others see raw readings at once
        api_rate_per_token=0,  # tests fire bursts with one token; tests/api/test_security.py
    )


@pytest.fixture
def make_api() -> Iterator[Callable[..., LiveApi]]:
    started: list[LiveApi] = []

    def factory(settings: ApiSettings, port: int | None = None) -> LiveApi:
        live = start_api(settings, port)
        started.append(live)
        return live

    yield factory
    for live in started:
        live.stop()


@pytest.fixture
def live_api(api_settings: ApiSettings, make_api: Callable[[ApiSettings], LiveApi]) -> LiveApi:
    return make_api(api_settings)


@pytest.fixture
def tokens(db: psycopg.Connection[Any]) -> dict[str, str]:
    """One token per role, named after the role (``operator`` -> ``op-user``...)."""
    return {role.value: create_token(db, f"{role.value}-user", role, "test") for role in Role}


@pytest.fixture
def client(live_api: LiveApi, tokens: dict[str, str]) -> Iterator[httpx.Client]:
    """An HTTP client with the admin token."""
    with httpx.Client(
        base_url=live_api.url, headers={"Authorization": f"Bearer {tokens['admin']}"}, timeout=30
    ) as c:
        yield c


@pytest.fixture(scope="module")
def shared_db_url(pg_server: PostgresServer) -> Iterator[str]:
    """A database for a whole module (tests that only read or are refused)."""
    name = f"t_api_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(pg_server.dsn("postgres"), autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name} TEMPLATE {TEMPLATE_DB}")
    yield pg_server.dsn(name)
    drop_database(pg_server, name)


@pytest.fixture(scope="module")
def shared_tokens(shared_db_url: str) -> dict[str, str]:
    with psycopg.connect(shared_db_url, autocommit=True) as conn:
        return {r.value: create_token(conn, f"{r.value}-user", r, "test") for r in Role}


@pytest.fixture(scope="module")
def shared_api(shared_db_url: str, broker: MosquittoServer) -> Iterator[LiveApi]:
    """One API for a whole module, on ``shared_db_url``."""
    live = start_api(
        ApiSettings(
            database_url=shared_db_url,  # type: ignore[arg-type]
            mqtt_url=broker.url,  # type: ignore[arg-type]
            api_ws_heartbeat_s=1.0,
            api_rate_per_token=0,  # schemathesis fires bursts with one token
        )
    )
    yield live
    live.stop()


@pytest.fixture(scope="module")
def shared_client(shared_api: LiveApi, shared_tokens: dict[str, str]) -> Iterator[httpx.Client]:
    """An admin HTTP client of ``shared_api``."""
    with httpx.Client(
        base_url=shared_api.url, headers=auth(shared_tokens["admin"]), timeout=30
    ) as c:
        yield c


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


_ALERT_SQL = (
    "INSERT INTO alerts (sensor, metric, rule, detector, kind, alert_class, severity, message,"
    " value, expected_high, evidence, lat, lon, area, opened_at, updated_at)"
    " VALUES (%(sensor)s, %(metric)s, %(rule)s, 'threshold', %(kind)s, %(alert_class)s,"
    " %(severity)s, %(message)s, %(value)s, %(expected_high)s, %(evidence)s, %(lat)s, %(lon)s,"
    " %(area)s, %(opened_at)s, %(opened_at)s) RETURNING id"
)


def insert_alert(conn: psycopg.Connection[Any], **fields: Any) -> int:
    """Insert an alert the way analytics does (the trigger writes its 'opened' event).

    ``opened_at`` is the reading's time, and ``updated_at`` starts there too."""
    doc: dict[str, Any] = {
        "sensor": "wl-td-03",
        "metric": "water_level",
        "rule": f"water_level.r{time.monotonic_ns()}",
        "kind": "water_level",
        "alert_class": "threshold",
        "severity": "critical",
        "message": "Water level 52 cm at Trần Duy Hưng underpass",
        "value": 52.0,
        "expected_high": 30.0,
        "evidence": {"threshold": 50},
        "lat": 21.0106,
        "lon": 105.8003,
        "area": "Cầu Giấy",
        "opened_at": None,
    }
    doc.update(fields)
    doc["evidence"] = Jsonb(doc["evidence"])
    sql = _ALERT_SQL if doc["opened_at"] else _ALERT_SQL.replace("%(opened_at)s", "now()")
    row = conn.execute(sql, doc).fetchone()
    assert row is not None
    return int(row[0])


# headless Chromium for the dashboard tests (IOC_TEST_CHROMIUM overrides where it is)
CHROMIUM = os.environ.get("IOC_TEST_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    sync_api = pytest.importorskip("playwright.sync_api")
    if not Path(CHROMIUM).exists():
        pytest.skip(f"no Chromium at {CHROMIUM}")
    with sync_api.sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()
