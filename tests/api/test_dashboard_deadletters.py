"""The dashboard's dead-letter panel in a real headless Chromium: engineers and admins see
the ingestor's rejected messages, in Vietnamese and English; operators do not see it."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import psycopg
import pytest
from psycopg.types.json import Jsonb

from tests.api import test_dashboard as dashboard
from tests.api.test_dashboard import ADMIN, OPERATOR, WAIT_MS, ApiServer, Page
from tests.api.test_dashboard_wall import AXE

api_fixture = dashboard.api
open_page_fixture = dashboard.open_page

pytestmark = [pytest.mark.browser, pytest.mark.db]


def _dead_letter(
    db: psycopg.Connection[Any],
    topic: str,
    code: str,
    reason: str,
    key: str | None = None,
    fields: dict[str, Any] | None = None,
) -> int:
    row = db.execute(
        "INSERT INTO dead_letters (topic, payload, code, reason, payload_size, reason_key,"
        " reason_fields) VALUES (%s, %s, %s, %s, %s, %s, %s) RETURNING id",
        (topic, b'{"values": {"pm25": -3}}', code, reason, 24, key, Jsonb(fields)),
    ).fetchone()
    assert row is not None
    return int(row[0])


@pytest.mark.parametrize(
    ("locale", "button", "code_word", "reason", "shown"),
    [
        (
            "vi-VN",
            "Bản tin bị từ chối trong giờ qua: 2",
            "Ngoài khoảng vật lý",
            "pm25 = -3 µg/m³ nằm ngoài khoảng vật lý 0..1.000",
            "2 bản tin, mới nhất trước",
        ),
        (
            "en-GB",
            "Dead letters in the last hour: 2",
            "Out of range",
            "pm25 = -3 µg/m³ is outside the physical range 0..1,000",
            "2 messages, newest first",
        ),
    ],
)
def test_engineers_read_dead_letters_in_their_language(
    api_fixture: ApiServer,
    db: psycopg.Connection[Any],
    open_page_fixture: Callable[..., Page],
    locale: str,
    button: str,
    code_word: str,
    reason: str,
    shown: str,
) -> None:
    api = api_fixture
    bad = _dead_letter(
        db,
        "ioc/v1/air_quality/aq-hk-01/data",
        "out_of_range",
        "pm25 = -3 µg/m³ is outside the physical range 0..1,000",
        "payload.value.out_of_range",
        {"metric": "pm25", "value": -3, "unit": "µg/m³", "low": 0, "high": 1000},
    )
    # a row from before reasons were kept as message ids reads as it was stored
    old = _dead_letter(db, "ioc/v1/weather/ws-01/data", "malformed_json", "not JSON at byte 3")

    # an operator has no such panel
    op = open_page_fixture(locale=locale)
    op.page.goto(f"{api.url}/#token={OPERATOR}")
    op.page.wait_for_selector("#conn[data-state='live']", timeout=WAIT_MS)
    assert op.page.locator("#dl-open").is_hidden()

    p = open_page_fixture(locale=locale)
    page = p.page
    page.goto(f"{api.url}/#token={ADMIN}")
    opener = page.locator("#dl-open")
    opener.wait_for(timeout=WAIT_MS)
    page.wait_for_function("document.querySelector('#n-dl').textContent === '2'")
    # at 1920 px the word is hidden and the name says it (with the count it shows)
    assert opener.get_attribute("aria-label") == button
    opener.click()
    row = page.locator(f"#dl-rows tr[data-dl-id='{bad}']")
    row.wait_for(timeout=WAIT_MS)
    text = row.inner_text()
    assert code_word in text and "aq-hk-01" in text and reason in text
    assert "not JSON at byte 3" in page.locator(f"#dl-rows tr[data-dl-id='{old}']").inner_text()
    assert '{"values": {"pm25": -3}}' in text
    assert page.inner_text("#dl-foot") == shown
    # the open panel passes axe-core too (no serious or critical violation)
    page.add_script_tag(path=str(AXE))
    serious = page.evaluate(
        "axe.run(document.querySelector('#dl-panel')).then((r) => r.violations"
        ".filter((v) => ['serious', 'critical'].includes(v.impact)).map((v) => v.id))"
    )
    assert serious == []

    # filtered by its reason code: only that one
    page.select_option("#dl-code", "malformed_json")
    page.wait_for_function("document.querySelectorAll('#dl-rows tr').length === 1")
    assert page.locator(f"#dl-rows tr[data-dl-id='{bad}']").count() == 0
    page.click("#dl-close")
    assert not page.locator("#dl-panel").is_visible()
    assert p.errors == [] and op.errors == []
