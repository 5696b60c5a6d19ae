"""The dashboard's incident cards in a real headless Chromium: one card per incident, live over
the websocket, expanding to its alerts while the map rings its sensors; acknowledge acts on
the incident's alerts."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import psycopg
import pytest

from analytics.alerts.correlator import CorrelatorConfig
from analytics.alerts.incidents import IncidentStore
from tests.api import test_dashboard as dashboard
from tests.api.test_dashboard import OPERATOR, WAIT_MS, ApiServer, Page, _raise_alert, _wait_db

# the dashboard tests' fixtures (a live API over a seeded database, a browser page)
api_fixture = dashboard.api
open_page_fixture = dashboard.open_page

pytestmark = [pytest.mark.browser, pytest.mark.db]


def test_incident_card_expands_to_its_alerts_and_rings_its_sensors(
    api_fixture: ApiServer, db: psycopg.Connection[Any], open_page_fixture: Callable[..., Page]
) -> None:
    api = api_fixture
    db.execute(
        "INSERT INTO maintenance_windows (sensors, starts_at, ends_at, reason, created_by)"
        " VALUES ('{cam-0002}', now() - interval '1 minute', now() + interval '1 hour',"
        " 'lens cleaning', 'eng')"
    )
    p = open_page_fixture()
    page = p.page
    page.goto(f"{api.url}/#token={OPERATOR}")
    page.wait_for_selector("#maintenance:has-text('In maintenance')", timeout=WAIT_MS)
    assert "1 windows, 1 sensors" in page.inner_text("#maintenance")
    window = page.inner_text("#maintenance .mw")
    assert window.startswith("cam-0002: ") and window.endswith("(lens cleaning, by eng)")
    page.wait_for_selector("#load:has-text('Last hour: 0 incidents')", timeout=WAIT_MS)
    assert "chattering: 0, standing over 24 h: 0" in page.inner_text("#load")
    page.wait_for_selector("#conn[data-state='live']")
    page.wait_for_selector("#incidents li.empty")
    assert "No open incidents" in page.inner_text("#incidents")

    # two stations of one episode, raised after the page loaded
    with psycopg.connect(api.db_url, autocommit=True) as other:
        a = _raise_alert(other, "aq-hk-01", metric="pm25", message="PM2.5 301 µg/m³", value=301)
        b = _raise_alert(other, "aq-bd-02", metric="pm25", message="PM2.5 280 µg/m³", value=280)
        IncidentStore(other, CorrelatorConfig(radius_km=5.0)).run_until_idle()
    card = page.locator("#incidents li.incident")
    card.wait_for(timeout=WAIT_MS)
    assert card.count() == 1
    text = card.inner_text()
    # one language on the page: the English title, not the Vietnamese one beside it
    assert "Air pollution episode: 2 stations in 2 areas, PM2.5 up to 301 µg/m³" in text
    assert "Đợt ô nhiễm" not in text and "Tiếp nhận" not in text
    assert "Critical" in text
    # the alert feed below still lists every alert
    page.wait_for_selector(f"li.alert[data-alert-id='{a}']", timeout=WAIT_MS)

    card.get_by_role("button", name="Alerts", exact=True).click()
    page.wait_for_selector(f"#incidents li.i-alert[data-alert-id='{b}']", timeout=WAIT_MS)
    assert page.locator("#incidents li.i-alert").count() == 2
    ringed = page.evaluate("[...window.__ioc.map.highlighted].sort()")
    assert ringed == ["aq-bd-02", "aq-hk-01"]

    card.get_by_role("button", name="Acknowledge", exact=True).click()
    assert _wait_db(
        lambda: (
            db.execute("SELECT DISTINCT status FROM alerts WHERE id IN (%s, %s)", (a, b)).fetchall()
            == [("acknowledged",)]
        )
    )
    page.wait_for_selector("#incidents li.incident[data-status='acknowledged']", timeout=WAIT_MS)
    assert "by duty-operator" in card.inner_text()

    # shelved for an hour: off the board, listed on the shelf with its time; then back
    card.get_by_role("button", name="Shelve 1 h", exact=True).click()
    page.wait_for_selector("#incidents li.i-shelved", state="attached", timeout=WAIT_MS)
    assert page.locator("#incidents li.incident").count() == 0
    assert "Shelved: 1" in page.inner_text("#incidents")
    page.wait_for_selector(f"li.alert[data-alert-id='{a}']", state="detached", timeout=WAIT_MS)
    page.locator("#incidents .shelf summary").click()
    assert page.inner_text("#incidents .i-shelved-by") == "by duty-operator"
    page.get_by_role("button", name="Unshelve", exact=True).click()
    card.wait_for(timeout=WAIT_MS)
    assert db.execute("SELECT shelved_until FROM incidents").fetchone() == (None,)
    # an alert shelved on its own is on the shelf too, with its time and who shelved it
    ops = {"Authorization": f"Bearer {OPERATOR}"}
    r = httpx.post(f"{api.url}/api/v1/alerts/{b}/shelve", json={"minutes": 30}, headers=ops)
    assert r.status_code == 200, r.text
    page.wait_for_selector(
        f"#incidents li.i-shelved-alert[data-alert-id='{b}']", state="attached", timeout=WAIT_MS
    )
    assert "Shelved: 1" in page.inner_text("#incidents")
    assert "by duty-operator" in page.locator("li.i-shelved-alert").text_content()
    httpx.post(f"{api.url}/api/v1/alerts/{b}/unshelve", headers=ops).raise_for_status()
    page.wait_for_selector("li.i-shelved-alert", state="detached", timeout=WAIT_MS)

    # the same card in Vietnamese: the correlator's Vietnamese title and the catalogue's words
    vi = open_page_fixture(locale="vi-VN").page
    vi.goto(f"{api.url}/#token={OPERATOR}")
    vi_card = vi.locator("#incidents li.incident")
    vi_card.wait_for(timeout=WAIT_MS)
    vi_text = vi_card.inner_text()
    assert "Đợt ô nhiễm không khí: 2 trạm tại 2 khu vực" in vi_text
    assert "Air pollution episode" not in vi_text
    assert "Đã tiếp nhận" in vi_text and "bởi duty-operator" in vi_text
    assert vi_card.get_by_role("button", name="Tạm ẩn 1 giờ", exact=True).count() == 1
    vi.wait_for_selector("#load:has-text('Giờ qua: 1 sự cố')", timeout=WAIT_MS)
    assert "lặp liên tục: 0, tồn đọng quá 24 giờ: 0" in vi.inner_text("#load")
    assert "(lens cleaning, bởi eng)" in vi.inner_text("#maintenance .mw")

    # resolving every alert resolves the incident: its card leaves the board
    db.execute(
        "UPDATE alerts SET status = 'resolved', resolved_at = now() WHERE id IN (%s, %s)", (a, b)
    )
    IncidentStore(db, CorrelatorConfig(radius_km=5.0)).run_until_idle()
    page.wait_for_selector("#incidents li.empty", timeout=WAIT_MS)
    assert p.errors == []
