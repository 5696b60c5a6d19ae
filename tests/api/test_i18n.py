"""Alert messages in the reader's language: ``Accept-Language`` on REST, ``lang`` on the websocket.

The API is a real ``ioc api`` process on a free port, with ``IOC_LANGUAGE=en`` as its default.
"""

from __future__ import annotations

import contextlib
import re
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import psycopg
import pytest
from websockets.sync.client import connect

from api.i18n import _VALIDATION_TEXTS
from api.models import Role
from api.tokens import create as create_token
from core.i18n import LANGUAGES, has
from tests.api.conftest import auth, insert_alert
from tests.support.servers import MosquittoServer, free_port

pytestmark = [pytest.mark.db, pytest.mark.e2e]

ROOT = Path(__file__).resolve().parents[2]
ALERTS = "/api/v1/alerts"
PM25 = {
    "metric": "pm25",
    "rule": "pm25.level",
    "detector": "rules",
    "kind": "air_quality",
    "severity": "critical",
    "message": "Trạm Thanh Xuân: fine dust (PM2.5): pm25 1251.5 µg/m³ is at or above ...",
    "value": 1251.5,
    "expected_high": 150.0,
    "evidence": {"level": "critical", "threshold": 250.0, "direction": "above"},
    "area": "Thanh Xuân",
}
VI = "Trạm Thanh Xuân: bụi mịn PM2.5 1.252 µg/m³, bằng hoặc vượt ngưỡng nghiêm trọng 250 µg/m³"
EN = "Trạm Thanh Xuân: fine dust PM2.5 1,252 µg/m³ is at or above the critical level 250 µg/m³"


@pytest.fixture(scope="module")
def api_process(
    shared_db_url: str, broker: MosquittoServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    port = free_port()
    env = {
        "PATH": "/usr/bin:/bin",
        "IOC_DATABASE_URL": shared_db_url,
        "IOC_MQTT_URL": broker.url,
        "IOC_LANGUAGE": "en",
        "IOC_API_WS_POLL_S": "0.5",
    }
    log = tmp_path_factory.mktemp("api") / "api.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "ioc", "api", "--port", str(port)],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                pytest.fail(f"ioc api exited with {proc.returncode}:\n{log.read_text()}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                    break
            if time.monotonic() > deadline:
                pytest.fail(f"ioc api did not answer:\n{log.read_text()}")
            time.sleep(0.1)
        yield url
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture(scope="module")
def db(shared_db_url: str) -> Iterator[psycopg.Connection[Any]]:
    with psycopg.connect(shared_db_url, autocommit=True) as conn:
        yield conn


@pytest.fixture(scope="module")
def operator(db: psycopg.Connection[Any]) -> str:
    return create_token(db, "duty", Role.OPERATOR, "test")


@pytest.fixture
def sensor(db: psycopg.Connection[Any]) -> str:
    """A sensor of this test's own, named as the messages expect."""
    sid = f"aq-tx-{uuid.uuid4().hex[:8]}"
    db.execute(
        "INSERT INTO sensors (id, kind, name, area, source) VALUES"
        " (%s, 'air_quality', 'Trạm Thanh Xuân', 'Thanh Xuân', 'api')",
        (sid,),
    )
    return sid


def _get(url: str, token: str, lang: str | None) -> httpx.Response:
    headers = auth(token) | ({"Accept-Language": lang} if lang is not None else {})
    resp = httpx.get(url, headers=headers, timeout=10)
    assert resp.status_code == 200, resp.text
    return resp


@pytest.mark.parametrize(
    ("header", "message", "content_language"),
    [
        ("vi", VI, "vi"),
        ("en", EN, "en"),
        ("vi-VN,vi;q=0.9,en;q=0.8", VI, "vi"),
        ("en-GB,en;q=0.9,vi;q=0.8", EN, "en"),
        ("fr-FR,fr;q=0.9,vi;q=0.5,en;q=0.4", VI, "vi"),
        ("vi;q=0.1, en", EN, "en"),
        (None, EN, "en"),  # IOC_LANGUAGE=en
        ("de", EN, "en"),
    ],
)
def test_alert_messages_follow_accept_language(
    api_process: str,
    operator: str,
    db: psycopg.Connection[Any],
    sensor: str,
    header: str | None,
    message: str,
    content_language: str,
) -> None:
    alert_id = insert_alert(db, sensor=sensor, **PM25)
    listing = _get(f"{api_process}{ALERTS}?sensor={sensor}", operator, header)
    assert [a["message"] for a in listing.json()["items"]] == [message]
    one = _get(f"{api_process}{ALERTS}/{alert_id}", operator, header)
    assert one.json()["message"] == message
    for resp in (listing, one):
        assert resp.headers["content-language"] == content_language
        assert "accept-language" in resp.headers["vary"].lower()
    # what is stored stays as analytics wrote it
    row = db.execute("SELECT message FROM alerts WHERE id = %s", (alert_id,)).fetchone()
    assert row is not None and row[0] == PM25["message"]


def test_acknowledging_answers_in_the_readers_language(
    api_process: str, operator: str, db: psycopg.Connection[Any], sensor: str
) -> None:
    alert_id = insert_alert(db, sensor=sensor, **PM25)
    resp = httpx.post(
        f"{api_process}{ALERTS}/{alert_id}/acknowledge",
        headers=auth(operator) | {"Accept-Language": "vi"},
        timeout=10,
    )
    assert resp.status_code == 200, resp.text
    assert resp.json()["message"] == VI and resp.json()["status"] == "acknowledged"
    assert resp.headers["content-language"] == "vi"
    # errors a person reads come in the same language
    again = httpx.post(
        f"{api_process}{ALERTS}/{alert_id}/acknowledge",
        headers=auth(operator) | {"Accept-Language": "vi"},
        timeout=10,
    )
    assert again.status_code == 409
    assert again.json()["detail"] == (
        f"cảnh báo {alert_id} đã tiếp nhận; chỉ tiếp nhận được cảnh báo đang mở"
    )
    missing = httpx.get(
        f"{api_process}{ALERTS}/999999", headers=auth(operator) | {"Accept-Language": "en"}
    )
    assert missing.status_code == 404
    assert missing.json()["detail"] == "alert 999999 does not exist"
    missing = httpx.get(
        f"{api_process}{ALERTS}/999999", headers=auth(operator) | {"Accept-Language": "vi"}
    )
    assert missing.json()["detail"] == "không có cảnh báo 999999"


@pytest.mark.parametrize(
    ("method", "path", "token", "vi", "en"),
    [
        # 401 (checked before routing), with and without a token
        (
            "GET",
            ALERTS,
            None,
            "thiếu mã truy cập: hãy gửi Authorization: Bearer <mã>",
            "missing bearer token: send Authorization: Bearer <token>",
        ),
        (
            "GET",
            ALERTS,
            "not-a-token",
            "mã truy cập không hợp lệ hoặc đã bị thu hồi",
            "invalid or revoked token",
        ),
        # 403: an operator may not read dead letters
        (
            "GET",
            "/api/v1/dead-letters",
            "operator",
            "vai trò operator không được làm việc này; cần một trong các vai trò: admin, engineer",
            "role operator may not do this; it needs one of: admin, engineer",
        ),
        # 404: a sensor, an incident, an unknown path
        (
            "GET",
            "/api/v1/sensors/no-such-sensor",
            "operator",
            "không có cảm biến no-such-sensor",
            "sensor no-such-sensor does not exist",
        ),
        (
            "GET",
            "/api/v1/incidents/987654",
            "operator",
            "không có sự cố 987654",
            "incident 987654 does not exist",
        ),
        ("GET", "/api/v1/nothing-here", "operator", "không tìm thấy", "Not Found"),
        # 422: pydantic's own checks and the API's, one sentence each
        (
            "GET",
            f"{ALERTS}?limit=0",
            "operator",
            "limit: phải lớn hơn hoặc bằng 1",
            "limit: Input should be greater than or equal to 1",
        ),
        (
            "GET",
            f"{ALERTS}?limit=abc",
            "operator",
            "limit: phải là số nguyên",
            "limit: Input should be a valid integer, unable to parse string as an integer",
        ),
        (
            "GET",
            "/api/v1/readings?sensor=x&bucket=7y",
            "operator",
            "bucket: phải có dạng 1m, 5m, 15m, 1h, 6h hoặc 1d",
            "bucket: bucket must look like 1m, 5m, 15m, 1h, 6h or 1d",
        ),
        (
            "GET",
            f"{ALERTS}?since=yesterday",
            "operator",
            "since: phải là thời điểm RFC 3339, ví dụ 2026-11-22T07:00:00+07:00",
            "since: Value error, 'yesterday' is not an RFC 3339 time (e.g. 2026-11-22T00:00:00Z)",
        ),
        (
            "GET",
            f"{ALERTS}?bogus=1",
            "operator",
            "bogus: tham số không được nhận; địa chỉ này nhận:",
            "bogus: unknown query parameter; this endpoint takes:",
        ),
    ],
)
def test_error_details_follow_accept_language(
    api_process: str, operator: str, method: str, path: str, token: str | None, vi: str, en: str
) -> None:
    """401, 403, 404 and 422 texts in Vietnamese when asked, in English otherwise."""
    _same_error_in_both_languages(
        api_process, method, path, operator if token == "operator" else token, vi, en
    )


LONG_WINDOW = {
    "sensors": ["aq-x"],
    "start": "2026-12-01T00:00:00Z",
    "end": "2027-01-01T12:30:00Z",
    "reason": "works",
}


@pytest.mark.parametrize(
    ("body", "vi", "en"),
    [
        (LONG_WINDOW, "một đợt bảo trì dài tối đa 720 giờ; đợt này dài 756,5 giờ",
         "too_long: a maintenance window lasts at most 720 h; this one lasts 756.5 h"),
        ({**LONG_WINDOW, "sensors": []}, "body: hãy nêu ít nhất một cảm biến, khu vực hoặc loại",
         "body: Value error, name at least one of sensors, areas or kinds"),
        ({**LONG_WINDOW, "reason": ""}, "reason: phải có ít nhất 1 ký tự hoặc phần tử",
         "reason: Value should have at least 1 item"),
    ],
)  # fmt: skip
def test_body_errors_follow_accept_language(
    api_process: str, db: psycopg.Connection[Any], body: dict[str, Any], vi: str, en: str
) -> None:
    engineer = create_token(db, f"eng-{uuid.uuid4().hex[:6]}", Role.ENGINEER, "test")
    _same_error_in_both_languages(
        api_process, "POST", "/api/v1/maintenance", engineer, vi, en, body=body
    )


def _same_error_in_both_languages(
    api: str,
    method: str,
    path: str,
    bearer: str | None,
    vi: str,
    en: str,
    body: dict[str, Any] | None = None,
) -> None:
    headers = auth(bearer) if bearer else {}
    answers = {
        lang: httpx.request(
            method,
            f"{api}{path}",
            headers=headers | ({"Accept-Language": lang} if lang else {}),
            json=body,
            timeout=10,
        )
        for lang in ("vi-VN,vi;q=0.9", "en", None)
    }
    statuses = {r.status_code for r in answers.values()}
    assert len(statuses) == 1 and statuses.pop() >= 400, statuses
    got_vi = answers["vi-VN,vi;q=0.9"]
    assert got_vi.json()["detail"].startswith(vi), got_vi.text
    assert got_vi.headers["content-language"] == "vi"
    for lang in ("en", None):  # API clients without the header keep the English texts
        assert answers[lang].json()["detail"].startswith(en), answers[lang].text
        assert answers[lang].headers["content-language"] == "en"


def test_every_error_text_the_api_names_is_in_both_catalogues() -> None:
    """Each ``key=`` of an error raised in ``api/`` and each ``api.invalid.*`` text exists in
    Vietnamese and English (a missing one would show its id)."""
    source = "\n".join(p.read_text() for p in (ROOT / "api").rglob("*.py"))
    keys = set(re.findall(r'key="(api\.[a-z_.]+)"', source))
    keys |= set(re.findall(r'"(api\.invalid\.[a-z_]+)"', source))
    keys |= {f"api.not_found.{n}" for n in ("alert", "incident")}  # key=f"...{name}"
    keys |= {f"api.conflict.shelve_resolved.{n}" for n in ("alert", "incident")}
    keys |= {f"api.conflict.incident.{t}" for t in ("acknowledged", "resolved")}
    keys |= {f"api.invalid.{t}" for t, _ in _VALIDATION_TEXTS.values()}
    keys |= {f"api.http.{s}" for s in (400, 401, 403, 404, 405, 409, 413, 422, 429, 503)}
    assert len(keys) > 50
    missing = sorted(k for k in keys for lang in LANGUAGES if not has(lang, k))
    assert missing == []


def _first_alert(ws: Any) -> dict[str, Any]:
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        doc = orjson.loads(ws.recv(timeout=15))
        if doc["type"] == "alert":
            return doc
    raise AssertionError("no alert event")


def test_websocket_events_in_the_asked_language(
    api_process: str, operator: str, db: psycopg.Connection[Any], sensor: str
) -> None:
    ws_url = api_process.replace("http", "ws", 1) + f"/ws/alerts?token={operator}"
    with (
        connect(f"{ws_url}&lang=vi", open_timeout=10) as vi,
        connect(ws_url, open_timeout=10, additional_headers={"Accept-Language": "en"}) as en,
        connect(ws_url, open_timeout=10) as plain,
    ):
        for ws in (vi, en, plain):
            assert orjson.loads(ws.recv(timeout=10))["type"] == "hello"
        alert_id = insert_alert(db, sensor=sensor, **PM25)
        assert _first_alert(vi)["alert"]["message"] == VI
        assert _first_alert(en)["alert"]["message"] == EN
        # no language asked for: the message as stored, as before
        assert _first_alert(plain)["alert"]["message"] == PM25["message"]
    # a resuming client gets the missed events in its language too
    seq = db.execute("SELECT min(seq) - 1 FROM alert_events WHERE alert_id = %s", (alert_id,))
    since = seq.fetchone()
    assert since is not None
    with connect(f"{ws_url}&since={since[0]}&lang=vi", open_timeout=10) as again:
        assert _first_alert(again)["alert"]["message"] == VI
    with (
        connect(f"{ws_url}&lang=fr", open_timeout=10) as bad,
        pytest.raises(Exception, match="lang must be one of vi, en"),
    ):
        bad.recv(timeout=10)
