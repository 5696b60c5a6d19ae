"""The application: health and readiness, Prometheus metrics, dashboard files, CORS, errors."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from api.config import ApiSettings
from tests.api.conftest import LiveApi, auth
from tests.support.servers import free_port

pytestmark = pytest.mark.db


def test_health_and_readiness(shared_api: LiveApi) -> None:
    assert httpx.get(f"{shared_api.url}/healthz").json() == {"status": "ok"}
    ready = httpx.get(f"{shared_api.url}/readyz")
    assert ready.status_code == 200
    assert ready.json() == {"status": "ready", "database": True, "broker": True}


@pytest.mark.mqtt
def test_not_ready_without_the_broker(
    api_settings: ApiSettings, make_api: Callable[[ApiSettings], LiveApi], make_broker: Any
) -> None:
    broker = make_broker()
    live = make_api(api_settings.model_copy(update={"mqtt_url": SecretStr(broker.url)}))
    assert httpx.get(f"{live.url}/readyz").status_code == 200
    broker.kill()
    resp = httpx.get(f"{live.url}/readyz")
    assert resp.status_code == 503
    assert resp.json() == {"status": "not ready", "database": True, "broker": False}
    assert httpx.get(f"{live.url}/healthz").status_code == 200


def test_prometheus_metrics(shared_client: httpx.Client) -> None:
    shared_client.get("/api/v1/sensors")
    shared_client.get("/api/v1/sensors/nope")
    text = httpx.get(f"{shared_client.base_url}/metrics").text
    assert 'ioc_api_http_requests_total{method="GET",route="/api/v1/sensors",status="200"}' in text
    assert 'route="/api/v1/sensors/{sensor_id}",status="404"' in text
    assert "ioc_api_ws_clients" in text and "ioc_api_alert_events_total" in text


def test_private_metrics(
    api_settings: ApiSettings, make_api: Callable[[ApiSettings], LiveApi], tokens: dict[str, str]
) -> None:
    live = make_api(api_settings.model_copy(update={"api_public_metrics": False}))
    assert httpx.get(f"{live.url}/metrics").status_code == 401
    assert httpx.get(f"{live.url}/metrics", headers=auth(tokens["operator"])).status_code == 403
    assert httpx.get(f"{live.url}/metrics", headers=auth(tokens["admin"])).status_code == 200


def test_dashboard_files_and_cors(
    tmp_path: Path, api_settings: ApiSettings, make_api: Callable[[ApiSettings], LiveApi]
) -> None:
    (tmp_path / "js").mkdir()
    (tmp_path / "index.html").write_text("<!doctype html><title>IOC</title>")
    (tmp_path / "js" / "app.js").write_text("export const x = 1;")
    live = make_api(
        api_settings.model_copy(
            update={"api_static_dir": str(tmp_path), "api_cors_origins": ["https://wall.example"]}
        )
    )
    index = httpx.get(f"{live.url}/")
    assert index.status_code == 200 and "<title>IOC</title>" in index.text
    assert "text/html" in index.headers["content-type"]
    js = httpx.get(f"{live.url}/static/js/app.js")
    assert js.status_code == 200 and "javascript" in js.headers["content-type"]
    assert httpx.get(f"{live.url}/static/../../etc/passwd").status_code == 404
    pre = httpx.options(
        f"{live.url}/api/v1/alerts",
        headers={
            "Origin": "https://wall.example",
            "Access-Control-Request-Method": "GET",
            "Access-Control-Request-Headers": "authorization",
        },
    )
    assert pre.headers["access-control-allow-origin"] == "https://wall.example"
    other = httpx.get(f"{live.url}/healthz", headers={"Origin": "https://evil.example"})
    assert "access-control-allow-origin" not in other.headers


def test_no_dashboard_is_a_clear_404(
    tmp_path: Path, api_settings: ApiSettings, make_api: Callable[[ApiSettings], LiveApi]
) -> None:
    live = make_api(api_settings.model_copy(update={"api_static_dir": str(tmp_path / "none")}))
    resp = httpx.get(f"{live.url}/")
    assert resp.status_code == 404 and "not installed" in resp.json()["detail"]
    assert httpx.get(f"{live.url}/static/app.js").status_code == 404


def test_shipped_dashboard_has_no_external_references() -> None:
    static = Path(__file__).parents[2] / "api" / "static"
    if not static.is_dir():
        pytest.skip("the dashboard is not in this checkout")
    for f in static.rglob("*"):
        if f.suffix in (".html", ".js", ".css"):
            body = f.read_text("utf-8")
            assert "http://" not in body.replace("http://www.w3.org", "")
            assert "https://" not in body.replace("https://www.w3.org", ""), f


def test_bodies_too_large_and_unreadable(shared_client: httpx.Client) -> None:
    big = shared_client.post(
        "/api/v1/sensors",
        content=b'{"id": "x", "kind": "noise", "name": "' + b"y" * 2_000_000 + b'"}',
        headers={"Content-Type": "application/json"},
    )
    assert big.status_code == 413
    deep = shared_client.post(
        "/api/v1/sensors",
        content=b"[" * 100_000 + b"]" * 100_000,
        headers={"Content-Type": "application/json"},
    )
    assert deep.status_code in (400, 422)
    broken = shared_client.post(
        "/api/v1/sensors", content=b"{not json", headers={"Content-Type": "application/json"}
    )
    assert broken.status_code == 422
    method = shared_client.request("PATCH", "/api/v1/sensors")
    assert method.status_code == 405 and method.headers["allow"] == "GET, POST"


@pytest.mark.e2e
@pytest.mark.parametrize("workers", [1, 2])
def test_ioc_api_command(db_url: str, mqtt_url: str, tokens: dict[str, str], workers: int) -> None:
    """``ioc api`` as an operator starts it: a process of its own, settings from IOC_*."""
    port = free_port()
    env = {**os.environ, "IOC_DATABASE_URL": db_url, "IOC_MQTT_URL": mqtt_url,
           "IOC_API_PORT": str(port), "IOC_LOG_LEVEL": "WARNING"}  # fmt: skip
    proc = subprocess.Popen(
        [sys.executable, "-m", "ioc", "api", "--workers", str(workers), "--host", "127.0.0.1"],
        env=env,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code == 200:
                    break
            assert proc.poll() is None and time.monotonic() < deadline, "ioc api did not start"
            time.sleep(0.2)
        me = httpx.get(f"http://127.0.0.1:{port}/api/v1/me", headers=auth(tokens["engineer"]))
        assert me.json() == {"name": "engineer-user", "role": "engineer"}
    finally:
        proc.terminate()
        assert proc.wait(30) in (0, -signal.SIGTERM)  # a graceful stop (uvicorn re-raises it)
