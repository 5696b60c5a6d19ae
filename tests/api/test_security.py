"""The API's front doors against a real ``ioc api`` process: no token in its log, security
headers, bounded request heads, and the token checked before anything else."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from api.config import ApiSettings
from api.security import TokenBuckets
from tests.api.conftest import LiveApi, auth
from tests.support.servers import MosquittoServer, free_port

pytestmark = [pytest.mark.db, pytest.mark.e2e]


@dataclass
class ApiProcess:
    proc: subprocess.Popen[bytes]
    port: int
    log: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log_text(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")

    def rss_kib(self) -> int:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        raise AssertionError("no VmRSS")


@pytest.fixture(scope="module")
def api_process(
    shared_db_url: str, broker: MosquittoServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ApiProcess]:
    """``ioc api`` as an operator starts it, INFO logs (uvicorn's access log included) to a file."""
    port = free_port()
    log = tmp_path_factory.mktemp("api-log") / "api.log"
    env = {**os.environ, "IOC_DATABASE_URL": shared_db_url, "IOC_MQTT_URL": broker.url,
           "IOC_API_PORT": str(port), "IOC_LOG_LEVEL": "INFO"}  # fmt: skip
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "ioc", "api", "--host", "127.0.0.1"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    live = ApiProcess(proc, port, log)
    try:
        deadline = time.monotonic() + 60
        while True:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{live.url}/readyz", timeout=2).status_code == 200:
                    break
            assert proc.poll() is None and time.monotonic() < deadline, "ioc api did not start"
            time.sleep(0.2)
        yield live
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def test_a_websocket_token_never_reaches_the_log(
    api_process: ApiProcess, shared_tokens: dict[str, str]
) -> None:
    token = shared_tokens["operator"]
    with connect(f"ws://127.0.0.1:{api_process.port}/ws/alerts?token={token}") as ws:
        ws.recv(timeout=5)
    # a token in the query of a REST call (refused: unknown parameter) and a wrong bearer
    httpx.get(f"{api_process.url}/api/v1/me?token={token}", headers=auth(token))
    httpx.get(f"{api_process.url}/healthz?access_token={token}")
    time.sleep(0.5)  # let the log lines reach the file
    text = api_process.log_text()
    assert "WebSocket /ws/alerts" in text, text[-2000:]  # the connection was logged...
    assert "token=[redacted]" in text
    assert token not in text  # ...without its token
    assert token[:12] not in text


@pytest.mark.parametrize("path", ["/", "/static/app.js", "/healthz", "/api/v1/me", "/nowhere"])
def test_security_headers_everywhere(
    api_process: ApiProcess, shared_tokens: dict[str, str], path: str
) -> None:
    r = httpx.get(f"{api_process.url}{path}", headers=auth(shared_tokens["operator"]))
    csp = r.headers["content-security-policy"]
    assert "frame-ancestors 'none'" in csp
    assert r.headers["x-content-type-options"] == "nosniff"
    assert r.headers["x-frame-options"] == "DENY"
    assert r.headers["referrer-policy"] == "no-referrer"
    if path == "/":
        assert r.status_code == 200
        assert "script-src 'self'" in csp and "unsafe-inline" not in csp
    assert "server" not in r.headers


def _raw_request(port: int, head: bytes, timeout: float = 5.0) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        with contextlib.suppress(OSError):  # the server may stop reading before the end
            sock.sendall(head)
        data = b""
        with contextlib.suppress(OSError):
            while chunk := sock.recv(65536):
                data += chunk
        return data


def test_a_huge_header_is_refused_at_once_with_bounded_memory(api_process: ApiProcess) -> None:
    big = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * (1024 * 1024) + b"\r\n\r\n"
    with httpx.Client(base_url=api_process.url, timeout=5) as client:
        client.get("/healthz")
        rss_before = api_process.rss_kib()
        start = time.monotonic()
        answer = _raw_request(api_process.port, big)
        took = time.monotonic() - start
        assert answer.split(b"\r\n", 1)[0] in (
            b"HTTP/1.1 431 Request Header Fields Too Large",
            b"HTTP/1.1 400 Bad Request",
        ), answer[:200]
        assert took < 1.0, took
        # through an HTTP client as well, and a stream of them in parallel with normal calls
        r = client.get("/healthz", headers={"X-Big": "a" * (1024 * 1024)})
        assert r.status_code in (431, 400)
        oks: list[int] = []

        def normal() -> None:
            for _ in range(20):
                oks.append(client.get("/healthz").status_code)

        t = threading.Thread(target=normal)
        t.start()
        for _ in range(20):
            _raw_request(api_process.port, big)
        t.join()
        assert oks == [200] * 20
        grew = api_process.rss_kib() - rss_before
        assert grew < 16 * 1024, f"RSS grew {grew} KiB after 22 refused 1 MB headers"
        # too many header fields are refused too
        many = b"".join(f"X-H{i}: v\r\n".encode() for i in range(300))
        answer = _raw_request(
            api_process.port, b"GET /healthz HTTP/1.1\r\nHost: x\r\n" + many + b"\r\n"
        )
        assert answer.startswith((b"HTTP/1.1 431", b"HTTP/1.1 400")), answer[:200]


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("POST", "/api/v1/alerts/1/acknowledge", b"{not json"),
        ("POST", "/api/v1/alerts/not-a-number/acknowledge", b"[[["),
        ("POST", "/api/v1/sensors", b'{"id": 5}'),
        ("GET", "/api/v1/alerts?limit=-5&bogus=1", b""),
        ("GET", "/api/v1/no-such-route", b""),
        ("DELETE", "/api/v1/sensors", b""),
        ("OPTIONS", "/api/v1/alerts", b""),  # not a CORS preflight
        ("GET", "/openapi.json", b""),
        ("GET", "/docs", b""),
    ],
)
def test_authentication_comes_before_validation(
    api_process: ApiProcess, method: str, path: str, body: bytes
) -> None:
    for headers in ({}, auth("not-a-real-token")):
        r = httpx.request(
            method,
            f"{api_process.url}{path}",
            content=body or None,
            headers={**headers, "Content-Type": "application/json"},
        )
        assert r.status_code == 401, (path, r.status_code, r.text)
        assert r.headers["www-authenticate"] == "Bearer"
        assert set(r.json()) == {"detail"}
        assert "content-security-policy" in r.headers


def test_docs_with_a_token(api_process: ApiProcess, shared_tokens: dict[str, str]) -> None:
    schema = httpx.get(f"{api_process.url}/openapi.json", headers=auth(shared_tokens["analyst"]))
    assert schema.status_code == 200 and "/api/v1/alerts" in schema.json()["paths"]
    docs = httpx.get(f"{api_process.url}/docs", headers=auth(shared_tokens["analyst"]))
    assert docs.status_code == 200 and "swagger" in docs.text.lower()


def test_the_dashboard_runs_under_its_csp(
    api_process: ApiProcess, shared_tokens: dict[str, str], browser: Any
) -> None:
    ctx = browser.new_context(viewport={"width": 1600, "height": 900})
    try:
        page = ctx.new_page()
        errors: list[str] = []
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(f"{api_process.url}/#token={shared_tokens['operator']}")
        page.wait_for_selector("#conn[data-state=live]", timeout=15_000)
        page.wait_for_selector("#who >> text=operator-user")
        assert not errors, errors
    finally:
        ctx.close()


def test_token_buckets_refill_at_the_rate() -> None:
    now = [0.0]
    buckets = TokenBuckets(rate=2.0, burst=3, clock=lambda: now[0])
    assert [buckets.take(1) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert buckets.take(1) == pytest.approx(0.5)  # empty: one more in half a second
    assert buckets.take(2) == 0.0  # another token has its own bucket
    now[0] += 0.5
    assert buckets.take(1) == 0.0
    assert buckets.take(1) > 0
    assert TokenBuckets(rate=0, burst=1).take(1) == 0.0  # 0: no limit


def test_request_rate_and_websockets_per_token(
    api_settings: ApiSettings,
    make_api: Callable[[ApiSettings], LiveApi],
    tokens: dict[str, str],
) -> None:
    live = make_api(
        api_settings.model_copy(
            update={"api_rate_per_token": 1.0, "api_rate_burst": 5, "api_ws_per_token": 2}
        )
    )
    with httpx.Client(base_url=live.url, timeout=10) as client:
        codes = [client.get("/api/v1/me", headers=auth(tokens["analyst"])) for _ in range(8)]
        assert [r.status_code for r in codes[:5]] == [200] * 5
        refused = codes[-1]
        assert refused.status_code == 429
        assert 1 <= int(refused.headers["retry-after"]) <= 2
        assert "too many requests" in refused.json()["detail"]
        # other tokens are not affected, and a wrong token is still 401 first
        assert client.get("/api/v1/me", headers=auth(tokens["operator"])).status_code == 200
        assert client.get("/api/v1/me", headers=auth("nope")).status_code == 401
        time.sleep(1.1)
        assert client.get("/api/v1/me", headers=auth(tokens["analyst"])).status_code == 200
    url = f"{live.ws_url}/ws/alerts?token={tokens['operator']}"
    first, second = connect(url), connect(url)
    try:
        for ws in (first, second):
            assert json.loads(ws.recv(timeout=5))["type"] == "hello"
        with connect(url) as third, pytest.raises(ConnectionClosed) as closed:
            third.recv(timeout=5)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 4429
        with connect(f"{live.ws_url}/ws/alerts?token={tokens['admin']}") as other:
            assert json.loads(other.recv(timeout=5))["type"] == "hello"
    finally:
        first.close()
        second.close()
    time.sleep(0.3)  # closed ones no longer count
    with connect(url) as again:
        assert json.loads(again.recv(timeout=5))["type"] == "hello"


def test_redaction_holds_whatever_handler_logs(
    shared_api: LiveApi, shared_tokens: dict[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    """uvicorn's own loggers are filtered too (pytest's handler has no redacting formatter)."""
    token = shared_tokens["engineer"]
    with caplog.at_level(logging.INFO):
        with connect(f"{shared_api.ws_url}/ws/alerts?token={token}") as ws:
            assert json.loads(ws.recv(timeout=5))["type"] == "hello"
        time.sleep(0.2)
    assert "/ws/alerts?token=[redacted]" in caplog.text
    assert token not in caplog.text


def test_redact() -> None:
    from core.logs import redact

    line = (
        'GET /ws/alerts?since=3&token=abc-DEF_123&kind=x "Authorization: Bearer s3cr.et" '
        'mqtt://ingest:pa55@broker:1883 ioc.bearer.tok-en {"u": "/x?access_token=zz"}'
    )
    clean = redact(line)
    for secret in ("abc-DEF_123", "s3cr.et", "pa55", "tok-en", "zz"):
        assert secret not in clean
    assert "since=3&token=[redacted]&kind=x" in clean
    assert "mqtt://ingest:[redacted]@broker:1883" in clean


def test_which_paths_need_a_token() -> None:
    from api.security import needs_token

    for path in ("/api/v1/me", "/api", "/docs", "/docs/oauth2-redirect", "/redoc", "/openapi.json"):
        assert needs_token(path, public_metrics=True)
    for path in ("/", "/static/app.js", "/healthz", "/readyz", "/metrics"):
        assert not needs_token(path, public_metrics=True)
    assert needs_token("/metrics", public_metrics=False)
    # IOC_API_PUBLIC_DOCS (ioc demo): the docs open in a browser, the API still needs a token
    assert not needs_token("/docs", public_metrics=True, public_docs=True)
    assert not needs_token("/openapi.json", public_metrics=True, public_docs=True)
    assert needs_token("/api/v1/me", public_metrics=True, public_docs=True)
