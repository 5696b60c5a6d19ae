"""The operations-centre dashboard in a real headless Chromium against the real API and database.

Each test starts the API (uvicorn in a thread, ``api.main.create_app``) on a free port over a
fresh migrated database, seeds sensors, readings and tokens with SQL, and drives the page
with Playwright.  Alerts are raised by plain INSERTs from another connection, exactly as the
analytics process does: the database trigger logs the event and notifies the API.
"""

from __future__ import annotations

import hashlib
import os
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import psycopg
import pytest
from psycopg.types.json import Jsonb

from core.settings import parse_mqtt_url
from tests.support.servers import free_port, wait_port

pytestmark = [pytest.mark.browser, pytest.mark.db]

HANOI = ZoneInfo("Asia/Ho_Chi_Minh")
WAIT_MS = 8_000  # an alert raised in the database must be on the screen well within this

OPERATOR = "op-" + "x" * 40
ANALYST = "an-" + "y" * 40
ADMIN = "ad-" + "z" * 40

# (id, kind, name, lat, lon, area, metrics, status)
SENSORS: list[tuple[str, str, str, float | None, float | None, str, list[str], str]] = [
    (
        "wl-td-03",
        "water_level",
        "Trần Duy Hưng underpass",
        21.0106,
        105.8003,
        "Cầu Giấy",
        ["water_level", "rainfall"],
        "online",
    ),
    (
        "aq-hk-01",
        "air_quality",
        "Hoàn Kiếm Lake",
        21.0287,
        105.8524,
        "Hoàn Kiếm",
        ["pm25", "pm10", "no2"],
        "online",
    ),
    (
        "aq-bd-02",
        "air_quality",
        "Ba Đình Square",
        21.0368,
        105.8347,
        "Ba Đình",
        ["pm25"],
        "offline",
    ),
    (
        "cam-0001",
        "traffic_camera",
        "Kim Mã - Giảng Võ",
        21.0303,
        105.8225,
        "Ba Đình",
        ["vehicle_count", "speed", "occupancy"],
        "online",
    ),
    (
        "cam-0002",
        "traffic_camera",
        "Ngã Tư Sở",
        21.0031,
        105.8197,
        "Thanh Xuân",
        ["vehicle_count", "speed"],
        "online",
    ),
    (
        "cam-0003",
        "traffic_camera",
        "Nguyễn Trãi - Khuất Duy Tiến",
        20.9935,
        105.7997,
        "Thanh Xuân",
        ["vehicle_count", "speed"],
        "unknown",
    ),
    (
        "ws-socson-1",
        "weather",
        "Sóc Sơn forest station",
        21.2750,
        105.8300,
        "Sóc Sơn",
        ["temperature", "humidity", "wind_speed"],
        "online",
    ),
    ("nz-lb-01", "noise", "Long Biên bridge", 21.0430, 105.8590, "Long Biên", ["noise"], "online"),
    ("gen-nopos", "generic", "No position yet", None, None, "", ["battery"], "unknown"),
]
ON_MAP = sum(1 for s in SENSORS if s[3] is not None)


# ---------------------------------------------------------------- the API in a thread


class ApiServer:
    """The real API app served by uvicorn in a thread; ``stop()`` and ``start()`` keep the port."""

    def __init__(self, db_url: str, mqtt_url: str) -> None:
        self.db_url = db_url
        self.mqtt_url = mqtt_url
        self.port = free_port()
        self.server: Any = None
        self.thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        import uvicorn

        from api.config import ApiSettings
        from api.main import create_app

        settings = ApiSettings(
            database_url=self.db_url,
            mqtt_url=self.mqtt_url,
            api_host="127.0.0.1",
            api_port=self.port,
            api_ws_heartbeat_s=2.0,
        )
        config = uvicorn.Config(
            create_app(settings),
            host="127.0.0.1",
            port=self.port,
            log_config=None,
            ws="websockets-sansio",
            lifespan="on",
            timeout_graceful_shutdown=2,
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, name="api-under-test", daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the API did not start")
            time.sleep(0.05)
        wait_port(self.port)

    def stop(self) -> None:
        if self.server is not None and self.thread is not None:
            self.server.should_exit = True
            self.thread.join(30)
            assert not self.thread.is_alive(), "the API did not stop"
        self.server = None
        self.thread = None


def _seed(conn: psycopg.Connection[Any]) -> None:
    now = datetime.now(UTC)
    for sid, kind, name, lat, lon, area, metrics, status in SENSORS:
        conn.execute(
            "INSERT INTO sensors (id, kind, name, lat, lon, area, metrics, status, status_at,"
            " last_seen_at) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
            (sid, kind, name, lat, lon, area, metrics, status, now, now - timedelta(minutes=1)),
        )
    # two hours of one reading a minute for the water gauge
    rows = [
        (now - timedelta(minutes=m), "wl-td-03", "water_level", 20.0 + (120 - m) * 0.25)
        for m in range(120, 0, -1)
    ]
    with (
        conn.cursor() as cur,
        cur.copy("COPY readings (time, sensor, metric, value) FROM STDIN") as cp,
    ):
        for row in rows:
            cp.write_row(row)
    for token, name, role in (
        (OPERATOR, "duty-operator", "operator"),
        (ANALYST, "analyst-lan", "analyst"),
        (ADMIN, "shift-lead", "admin"),
    ):
        conn.execute(
            "INSERT INTO api_tokens (name, role, token_hash) VALUES (%s, %s, %s)",
            (name, role, hashlib.sha256(token.encode()).hexdigest()),
        )


def _raise_alert(
    conn: psycopg.Connection[Any],
    sensor: str,
    *,
    severity: str = "critical",
    metric: str = "water_level",
    message: str = "Water level 52 cm: street flooding likely",
    opened_at: datetime | None = None,
    value: float = 52.0,
) -> int:
    """What analytics does: one INSERT; the trigger logs the event and notifies the API."""
    row = conn.execute(
        "INSERT INTO alerts (sensor, metric, rule, detector, kind, alert_class, severity, message,"
        " value, expected_high, lat, lon, area, opened_at, updated_at)"
        " SELECT s.id, %(metric)s, %(rule)s, 'threshold', s.kind, 'threshold', %(severity)s,"
        " %(message)s, %(value)s, 30, s.lat, s.lon, s.area, %(opened)s, %(opened)s"
        " FROM sensors s WHERE s.id = %(sensor)s RETURNING id",
        {
            "sensor": sensor,
            "metric": metric,
            "rule": f"{metric}.{severity}",
            "severity": severity,
            "message": message,
            "value": value,
            "opened": opened_at or datetime.now(UTC),
        },
    ).fetchone()
    assert row is not None
    return int(row[0])


def _publish(mqtt_url: str, topic: str, payload: bytes) -> None:
    """A device's reading, published on the broker the API listens to."""
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    address = parse_mqtt_url(mqtt_url)
    client = mqtt.Client(CallbackAPIVersion.VERSION2)
    client.connect(address.host, address.port)
    client.loop_start()
    try:
        client.publish(topic, payload, qos=1).wait_for_publish(5)
    finally:
        client.disconnect()
        client.loop_stop()


def _wait_db(check: Callable[[], bool], timeout: float = 8.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.1)
    return check()


# ---------------------------------------------------------------- fixtures


@pytest.fixture
def api(db_url: str, db: psycopg.Connection[Any], mqtt_url: str) -> Iterator[ApiServer]:
    pytest.importorskip("api.main", reason="the API app (api.main.create_app) is not there yet")
    _seed(db)
    server = ApiServer(db_url, mqtt_url)
    server.start()
    yield server
    server.stop()


class Page:
    """A Playwright page that records what went wrong in the browser."""

    def __init__(self, page: Any) -> None:
        self.page = page
        self.errors: list[str] = []
        self.sockets: list[str] = []
        self.requests: list[str] = []
        page.on("pageerror", lambda e: self.errors.append(f"pageerror: {e}"))
        page.on(
            "console",
            lambda m: self.errors.append(f"console: {m.text}") if m.type == "error" else None,
        )
        page.on("websocket", lambda ws: self.sockets.append(ws.url))
        page.on("request", lambda r: self.requests.append(r.url))


@pytest.fixture
def open_page(browser: Any) -> Iterator[Callable[..., Page]]:
    contexts: list[Any] = []

    def factory(width: int = 1920, height: int = 1080, locale: str = "en-GB") -> Page:
        # bypass_csp: wait_for_function evaluates strings, which the dashboard's CSP forbids
        # (tests/api/test_security.py loads the dashboard under its CSP)
        ctx = browser.new_context(
            viewport={"width": width, "height": height}, locale=locale, bypass_csp=True
        )
        contexts.append(ctx)
        return Page(ctx.new_page())

    yield factory
    for ctx in contexts:
        ctx.close()


def _marker_state(page: Any, sensor: str) -> str | None:
    state: str | None = page.evaluate("(id) => window.__ioc.map.drawn.get(id) ?? null", sensor)
    return state


def _marker_rgb(page: Any, sensor: str) -> tuple[int, int, int]:
    """The colour painted at the centre of a sensor's marker on the map canvas."""
    page.evaluate("() => new Promise((r) => requestAnimationFrame(() => r(null)))")
    rgba: list[int] = page.evaluate(
        """(id) => {
        const map = window.__ioc.map;
        const p = map.screenPos(id);
        const box = map.canvas.getBoundingClientRect();
        const k = window.devicePixelRatio || 1;
        const x = Math.round((p.x - box.left) * k);
        const y = Math.round((p.y - box.top) * k);
        return [...map.canvas.getContext("2d").getImageData(x, y, 1, 1).data];
    }""",
        sensor,
    )
    return rgba[0], rgba[1], rgba[2]


def _hanoi_clock(t: datetime) -> str:
    return t.astimezone(HANOI).strftime("%H:%M:%S")


# ---------------------------------------------------------------- tests


def test_operator_sees_sensors_and_acknowledges_a_live_alert(
    api: ApiServer, db: psycopg.Connection[Any], open_page: Callable[..., Page]
) -> None:
    p = open_page()
    page = p.page
    page.goto(f"{api.url}/?sensor=wl-td-03#token={OPERATOR}")

    # the token moved from the address bar (a fragment: never sent) into sessionStorage
    page.wait_for_function("() => !location.href.includes('token')")
    assert "sensor=wl-td-03" in page.url
    assert page.evaluate("sessionStorage.getItem('ioc.token')") == OPERATOR
    assert page.evaluate("localStorage.getItem('ioc.token')") is None
    page.wait_for_selector("#who >> text=duty-operator")
    assert "operator" in page.inner_text("#who")
    # the websockets carry it in a sub-protocol, never in their URL
    page.wait_for_selector("#conn[data-state='live']")
    assert p.sockets and all("token" not in u for u in p.sockets), p.sockets

    # every sensor with a position is on the map, coloured by its status
    page.wait_for_function(f"window.__ioc.map.drawn.size === {ON_MAP}")
    assert _marker_state(page, "aq-bd-02") == "offline"
    assert _marker_state(page, "cam-0001") == "online"
    assert _marker_state(page, "cam-0003") == "unknown"
    assert _marker_state(page, "gen-nopos") is None
    assert _marker_rgb(page, "cam-0001") == (0x3D, 0xDC, 0x84)  # green, really painted
    page.wait_for_selector("#conn[data-state='live']")
    assert page.locator("li.alert").count() == 0

    # the chart of the sensor named in the URL: every role may chart the last day (the
    # seeded two hours), then it adds the readings that arrive live over MQTT
    page.wait_for_function("document.querySelector('#chart').dataset.points === '120'")
    _publish(api.mqtt_url, "ioc/v1/water_level/wl-td-03/data", b'{"values": {"water_level": 77.5}}')
    page.wait_for_selector(
        ".tile[data-metric='water_level'] .t-val:has-text('77.5')", timeout=WAIT_MS
    )
    page.wait_for_function("document.querySelector('#chart').dataset.points === '121'")

    # an alert raised AFTER the page loaded reaches the feed through the websocket
    opened = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=2)
    with psycopg.connect(api.db_url, autocommit=True) as other:
        alert_id = _raise_alert(other, "wl-td-03", opened_at=opened)
    card = page.locator(f"li.alert[data-alert-id='{alert_id}']")
    card.wait_for(timeout=WAIT_MS)
    text = card.inner_text()
    assert "CRITICAL" in text  # severity is a word too, not only a colour
    assert "Water level 52 cm: street flooding likely" in text
    assert "Trần Duy Hưng underpass" in text
    # shown in Hanoi time
    assert card.locator("time.a-opened").inner_text() == _hanoi_clock(opened)
    page.wait_for_function("window.__ioc.map.drawn.get('wl-td-03') === 'critical'")
    assert _marker_rgb(page, "wl-td-03") == (0xFF, 0x5A, 0x5A)  # red
    assert page.inner_text("#n-critical") == "1"
    page.wait_for_function("Number(document.querySelector('#chart').dataset.alerts) >= 1")

    # Acknowledge: the row changes in the database, by the logged-in operator
    card.get_by_role("button", name="Acknowledge", exact=False).first.click()
    assert _wait_db(
        lambda: (
            db.execute(
                "SELECT status, acknowledged_by FROM alerts WHERE id = %s", (alert_id,)
            ).fetchone()
            == ("acknowledged", "duty-operator")
        )
    ), db.execute(
        "SELECT status, acknowledged_by FROM alerts WHERE id = %s", (alert_id,)
    ).fetchone()
    events = db.execute(
        "SELECT action, actor FROM alert_events WHERE alert_id = %s ORDER BY seq", (alert_id,)
    ).fetchall()
    assert events == [("opened", "system"), ("acknowledged", "duty-operator")]
    page.wait_for_selector(f"li.alert[data-alert-id='{alert_id}'][data-status='acknowledged']")
    assert "Acknowledged by duty-operator" in card.inner_text()
    assert card.get_by_role("button", name="Acknowledge", exact=False).count() == 0
    # the counters follow on the next render (renders are gathered for up to 150 ms)
    page.wait_for_function(
        "document.querySelector('#n-critical').textContent === '0'"
        " && document.querySelector('#n-ack').textContent === '1'",
        timeout=WAIT_MS,
    )
    # More: the evidence in plain words (no raw JSON, nothing null), the audit trail on the
    # card's clock
    db.execute(
        "UPDATE alerts SET evidence = %s WHERE id = %s",
        (Jsonb({"threshold": 50, "score": None, "direction": "above", "unit": "cm"}), alert_id),
    )
    card.get_by_role("button", name="History and comments", exact=False).first.click()
    details = page.locator(f"#details-{alert_id}")
    details.locator("dl.evidence").wait_for(timeout=WAIT_MS)
    shown = details.inner_text()
    assert "Threshold" in shown and "50" in shown and "Direction" in shown
    assert "null" not in shown and "Anomaly score" not in shown and "{" not in shown
    trail = details.locator("table").inner_text()
    assert _hanoi_clock(opened) in trail and "opened" in trail
    assert [e for e in p.errors if "status of 403" not in e] == []


def test_feed_resumes_after_the_api_restarts(
    api: ApiServer, db: psycopg.Connection[Any], open_page: Callable[..., Page]
) -> None:
    p = open_page(1366, 768)
    page = p.page
    page.goto(f"{api.url}/#token={OPERATOR}")
    page.wait_for_selector("#conn[data-state='live']")
    first = _raise_alert(db, "cam-0001", severity="warning", metric="speed", message="Speed 4 km/h")
    page.locator(f"li.alert[data-alert-id='{first}']").wait_for(timeout=WAIT_MS)
    seq_before = page.evaluate("window.__ioc.stream.lastSeq")
    assert isinstance(seq_before, int)

    # the API goes away; the page says so and keeps trying
    api.stop()
    page.wait_for_selector("#conn[data-state='retrying']", timeout=WAIT_MS)
    assert "offline" in page.inner_text("#conn").lower()
    # alerts raised while the operator is cut off ...
    missed = [
        _raise_alert(db, "aq-hk-01", severity="critical", metric="pm25", message="PM2.5 300"),
        _raise_alert(db, "nz-lb-01", severity="info", metric="noise", message="Noise 88 dB(A)"),
    ]
    db.execute(
        "UPDATE alerts SET status = 'resolved', resolved_at = now(), resolved_by = 'field-team'"
        " WHERE id = %s",
        (first,),
    )
    # ... are all there once it is back, exactly once, through a resumed stream
    api.start()
    for alert_id in missed:
        page.locator(f"li.alert[data-alert-id='{alert_id}']").wait_for(timeout=WAIT_MS * 2)
    page.wait_for_selector("#conn[data-state='live']")
    page.wait_for_selector(f"li.alert[data-alert-id='{first}'][data-status='resolved']")
    resumed = [u for u in p.sockets if "/ws/alerts" in u and f"since={seq_before}" in u]
    assert resumed, p.sockets
    assert page.evaluate("window.__ioc.stream.duplicates") == 0
    for alert_id in missed:
        assert page.locator(f"li.alert[data-alert-id='{alert_id}']").count() == 1
    # the events arrive in order, so the last seq seen is the newest event in the table
    head = db.execute("SELECT max(seq) FROM alert_events").fetchone()
    assert page.evaluate("window.__ioc.stream.lastSeq") == (head[0] if head else None)
    page.wait_for_function(
        "document.querySelector('#n-critical').textContent === '1'", timeout=WAIT_MS
    )
    assert [e for e in p.errors if "WebSocket" not in e and "ERR_CONNECTION" not in e] == []


def test_login_form_and_read_only_role(
    api: ApiServer, db: psycopg.Connection[Any], open_page: Callable[..., Page]
) -> None:
    alert_id = _raise_alert(db, "wl-td-03")
    p = open_page(1366, 768)
    page = p.page
    page.goto(f"{api.url}/?token={ANALYST}")  # a token in the query is refused
    page.wait_for_selector("#login-error:has-text('?token=')")
    assert "token" not in page.url
    page.fill("#token-input", "not-a-token")
    page.click("#login-form button[type=submit]")
    page.wait_for_selector("#login-error:has-text('The token was not accepted')")
    assert page.evaluate("sessionStorage.getItem('ioc.token')") is None

    page.fill("#token-input", ANALYST)
    page.click("#login-form button[type=submit]")
    page.wait_for_selector("#who >> text=analyst-lan")
    card = page.locator(f"li.alert[data-alert-id='{alert_id}']")
    card.wait_for(timeout=WAIT_MS)
    # an analyst may look, but not acknowledge or resolve
    assert card.get_by_role("button", name="Acknowledge", exact=False).count() == 0
    assert card.get_by_role("button", name="Resolve", exact=False).count() == 0
    assert card.get_by_role("button", name="Chart", exact=False).count() == 1

    # choosing the alert's sensor draws its history with the alert marked
    card.get_by_role("button", name="Chart", exact=False).click()
    page.wait_for_function("Number(document.querySelector('#chart').dataset.points) > 100")
    page.wait_for_function("Number(document.querySelector('#chart').dataset.alerts) === 1")
    label = page.get_attribute("#chart", "aria-label") or ""
    assert "water level" in label and "Trần Duy Hưng underpass" in label

    # a click on a marker of the map selects that sensor for the chart
    pos = page.evaluate("window.__ioc.map.screenPos('cam-0002')")
    page.mouse.click(pos["x"], pos["y"])
    page.wait_for_function("document.querySelector('#sensor-pick').value === 'cam-0002'")
    page.wait_for_selector("#sensor-line:has-text('Ngã Tư Sở')")

    # log out: the token is forgotten and the form is back
    page.click("#logout")
    page.wait_for_selector("#login:not([hidden])")
    assert page.evaluate("sessionStorage.getItem('ioc.token')") is None
    assert p.errors == [] or all("401" in e for e in p.errors), p.errors


@pytest.mark.parametrize(
    ("width", "height", "name"),
    [
        (1920, 1080, "wall-1080p"),
        (3840, 2160, "wall-4k"),
        (1366, 768, "laptop"),
        (820, 1180, "tablet"),
    ],
)
def test_layout_reads_well(
    api: ApiServer,
    db: psycopg.Connection[Any],
    open_page: Callable[..., Page],
    width: int,
    height: int,
    name: str,
) -> None:
    for sensor, severity, metric, message in [
        ("wl-td-03", "critical", "water_level", "Water level 52 cm: street flooding likely"),
        ("cam-0002", "warning", "speed", "Traffic at 4 km/h, usual 28 km/h: congestion"),
        ("aq-hk-01", "info", "pm25", "PM2.5 at 62 µg/m³ (VN_AQI 105)"),
    ]:
        _raise_alert(db, sensor, severity=severity, metric=metric, message=message)
    p = open_page(width, height)
    page = p.page
    # a shift lead's screen: the action buttons of an operator and the history of an analyst
    page.goto(f"{api.url}/?sensor=wl-td-03#token={ADMIN}")
    page.wait_for_selector("li.alert >> nth=2")
    assert page.locator("li.alert .btn-ack").count() == 3
    page.wait_for_function("Number(document.querySelector('#chart').dataset.points) > 100")
    page.wait_for_selector("#conn[data-state='live']")

    # nothing runs off the side; on wide screens nothing scrolls at all
    dims = page.evaluate(
        "({sw: document.documentElement.scrollWidth, sh: document.documentElement.scrollHeight,"
        " font: parseFloat(getComputedStyle(document.documentElement).fontSize),"
        " header: document.querySelector('header').getBoundingClientRect().height})"
    )
    assert dims["sw"] <= width
    if width >= 1280:
        assert dims["sh"] <= height
        assert dims["header"] < height * 0.1  # one line of header
    # type scales with the screen: readable across a room on a 4K wall
    assert dims["font"] >= (24 if width >= 3840 else 16 if width >= 1920 else 14)

    # every button says what it does; severity is written, not only coloured
    unnamed = page.evaluate(
        "[...document.querySelectorAll('button')].filter(b => b.offsetParent !== null"
        " && !(b.getAttribute('aria-label') || b.innerText).trim()).length"
    )
    assert unnamed == 0
    badges = page.locator("li.alert .sev-word").all_inner_texts()
    assert sorted(badges) == ["CRITICAL", "INFO", "WARNING"]

    # the page fetched nothing from anywhere but the API itself
    assert [u for u in p.requests if not u.startswith((api.url, "ws://127.0.0.1", "data:"))] == []
    shots = os.environ.get("IOC_DASHBOARD_SCREENSHOTS")
    if shots:
        page.wait_for_timeout(500)
        page.screenshot(path=str(Path(shots) / f"dashboard-{name}.png"))
    assert p.errors == []


@pytest.mark.parametrize(("width", "height"), [(1920, 1080), (1366, 768)])
def test_vietnamese_by_default_and_english_at_a_switch(
    api: ApiServer,
    db: psycopg.Connection[Any],
    open_page: Callable[..., Page],
    width: int,
    height: int,
) -> None:
    db.execute(
        "INSERT INTO alerts (sensor, metric, rule, detector, kind, alert_class, severity, message,"
        " value, expected_high, evidence, lat, lon, area)"
        " SELECT id, 'water_level', 'water_level.flood', 'rules', kind, 'threshold', 'critical',"
        " 'stored text', 52.5, 10, %s, lat, lon, area FROM sensors WHERE id = 'wl-td-03'",
        (Jsonb({"level": "critical", "threshold": 40.0, "direction": "above"}),),
    )
    p = open_page(width, height, locale="vi-VN")
    page = p.page
    page.goto(f"{api.url}/#token={OPERATOR}")
    card = page.locator("li.alert").first
    card.wait_for(timeout=WAIT_MS)
    page.wait_for_selector("#conn[data-state='live']")
    assert page.evaluate("document.documentElement.lang") == "vi"
    assert page.text_content("#feed-h") == "Cảnh báo"
    assert page.input_value("#lang-pick") == "vi"
    assert card.locator(".sev-word").inner_text() == "NGHIÊM TRỌNG"
    assert card.locator(".btn-ack").text_content() == "Tiếp nhận"
    msg = card.locator(".a-msg").inner_text()
    assert "ngập úng 52,5 cm, bằng hoặc vượt ngưỡng nghiêm trọng 40 cm" in msg, msg
    assert "Trực tuyến" in page.inner_text("#conn")
    dims = page.evaluate(
        "({sw: document.documentElement.scrollWidth,"
        " header: document.querySelector('header').getBoundingClientRect().height})"
    )
    assert dims["sw"] <= width
    if width >= 1920:
        assert dims["header"] < height * 0.1  # still one line of header in Vietnamese
    shots = os.environ.get("IOC_DASHBOARD_SCREENSHOTS")
    if shots:
        page.wait_for_timeout(500)
        page.screenshot(path=str(Path(shots) / f"dashboard-vi-{width}x{height}.png"))

    page.select_option("#lang-pick", "en")
    page.wait_for_function("document.documentElement.lang === 'en'")
    card = page.locator("li.alert").first
    card.wait_for(timeout=WAIT_MS)
    assert page.text_content("#feed-h") == "Alerts"
    assert card.locator(".btn-ack").text_content() == "Acknowledge"
    msg = card.locator(".a-msg").inner_text()
    assert "street flooding 52.5 cm is at or above the critical level 40 cm" in msg, msg
    assert page.evaluate("localStorage.getItem('ioc.lang')") == "en"
    if width >= 1920:
        header = page.evaluate("document.querySelector('header').getBoundingClientRect().height")
        assert header < height * 0.1  # one line in English too
    if shots:
        page.wait_for_selector("#conn[data-state='live']")
        page.wait_for_timeout(500)
        page.screenshot(path=str(Path(shots) / f"dashboard-en-{width}x{height}.png"))


def test_alert_details_show_who_was_notified(
    api: ApiServer, db: psycopg.Connection[Any], open_page: Callable[..., Page]
) -> None:
    alert_id = _raise_alert(db, "wl-td-03")
    for n, (status, error) in enumerate((("sent", None), ("dead", "HTTP 500 (attempt 8 of 8)"))):
        db.execute(
            "INSERT INTO notifications (idempotency_key, alert_id, reason, route, channel, target,"
            " body, status, attempts, last_error, sent_at) VALUES (%s, %s, 'event', 'duty',"
            " %s, 'secret-target', '{}', %s, %s, %s, now())",
            (
                f"k{n}",
                alert_id,
                f"webhook https://hooks{n}.example.org/ioc",
                status,
                n * 7 + 1,
                error,
            ),
        )
    p = open_page()
    page = p.page
    page.goto(f"{api.url}/#token={OPERATOR}")
    card = page.locator(f"li.alert[data-alert-id='{alert_id}']")
    card.wait_for(timeout=WAIT_MS)
    card.get_by_role("button", name="History and comments", exact=False).click()
    table = card.locator("table.deliveries")
    table.wait_for(timeout=WAIT_MS)
    text = table.inner_text()
    assert "webhook https://hooks0.example.org/ioc\tsent\t1" in text  # the browser asks English
    assert "\tfailed\t8\tHTTP 500 (attempt 8 of 8)" in text and "Attempts" in text
    assert "secret-target" not in page.content()
    assert p.errors == []
