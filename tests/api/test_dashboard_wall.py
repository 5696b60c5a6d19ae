"""The wall view in a real headless Chromium, in Vietnamese and English, at 1920×1080 and
1366×768: nothing overflows or is cut off, the header is one line, labels on the chart and
the map never overlap, and axe-core finds no serious accessibility violation.

The page is loaded with the busiest screen a shift lead sees: an admin (action buttons,
history, the dead-letter button), an incident, alerts on twelve sensors in the city
centre, and a chart with alerts minutes apart.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest

from analytics.alerts.correlator import CorrelatorConfig
from analytics.alerts.incidents import IncidentStore
from tests.api import test_dashboard as dashboard
from tests.api.test_dashboard import ADMIN, WAIT_MS, ApiServer, Page, _raise_alert

api_fixture = dashboard.api
open_page_fixture = dashboard.open_page

pytestmark = [pytest.mark.browser, pytest.mark.db]

AXE = Path(__file__).resolve().parents[1] / "support" / "vendor" / "axe-core" / "axe.min.js"

# Elements whose box lies outside the viewport, or outside an ancestor that clips it, or
# whose own text is clipped (scrollWidth beyond its width without an ellipsis and a title);
# what a scrolling list holds below its fold does not count.
OVERFLOWS = """() => {
  const out = [];
  const name = (e) => e.id ? `#${e.id}` : `${e.tagName.toLowerCase()}.${[...e.classList].join('.')}`;
  const scrolls = (cs) => ['auto', 'scroll'].includes(cs.overflowY) || ['auto', 'scroll'].includes(cs.overflowX);
  const clips = (cs) => cs.overflowX !== 'visible' || cs.overflowY !== 'visible';
  for (const e of document.querySelectorAll('body *')) {
    if (e.closest('.sr-only, .skip:not(:focus), [hidden], dialog:not([open]), details:not([open]) > :not(summary), .tooltip, #map')) continue;
    const r = e.getBoundingClientRect();
    if (r.width <= 1 || r.height <= 1) continue; // nothing, or visually hidden (read aloud only)
    const cs = getComputedStyle(e);
    if (cs.visibility === 'hidden' || cs.display === 'none') continue;
    let clipper = null;
    for (let a = e.parentElement; a && a !== document.body; a = a.parentElement) {
      const acs = getComputedStyle(a);
      if (scrolls(acs)) { clipper = 'scroll'; break; }
      if (clips(acs)) { clipper = a; break; }
    }
    if (clipper === 'scroll') continue;
    if (r.right > innerWidth + 1 || r.bottom > innerHeight + 1 || r.left < -1 || r.top < -1) {
      out.push(`${name(e)} leaves the screen (${Math.round(r.left)},${Math.round(r.top)})-(${Math.round(r.right)},${Math.round(r.bottom)})`);
      continue;
    }
    if (clipper) {
      const c = clipper.getBoundingClientRect();
      if (r.right > c.right + 1 || r.bottom > c.bottom + 1 || r.left < c.left - 1 || r.top < c.top - 1) {
        out.push(`${name(e)} is cut off by ${name(clipper)}`);
        continue;
      }
    }
    const text = [...e.childNodes].some((n) => n.nodeType === 3 && n.textContent.trim());
    if (text && clips(cs) && !scrolls(cs) && e.scrollWidth > e.clientWidth + 1
        && !(cs.textOverflow === 'ellipsis' && e.title)) {
      out.push(`${name(e)} clips its text "${e.textContent.trim().slice(0, 40)}"`);
    }
  }
  return out;
}"""

HEADER_ROWS = """() => {
  const kids = [...document.querySelector('header.top').children].filter((e) => e.offsetParent);
  const tops = kids.map((e) => e.getBoundingClientRect()).map((r) => r.top + r.height / 2);
  return Math.max(...tops) - Math.min(...tops);
}"""

OVERLAPS = """(boxes) => {
  const out = [];
  for (let i = 0; i < boxes.length; i++) for (let j = i + 1; j < boxes.length; j++) {
    const a = boxes[i], b = boxes[j];
    if (a.l < b.r - 0.5 && a.r > b.l + 0.5 && a.t < b.b - 0.5 && a.b > b.t + 0.5) out.push([a, b]);
  }
  return out;
}"""

# twelve sensors in the old quarter and around it, with long names, all alerting
CENTRE = [
    (f"aq-c-{i:02d}", 21.028 + 0.004 * ((i % 4) - 1.5), 105.852 + 0.005 * ((i // 4) - 1), name)
    for i, name in enumerate(
        [
            "Hàng Bài - Tràng Tiền",
            "Phố Huế - Hàng Bài",
            "Đinh Tiên Hoàng",
            "Lý Thái Tổ - Tràng Thi",
            "Hàng Đào - Hàng Ngang",
            "Ô Quan Chưởng",
            "Lê Duẩn - Nguyễn Du",
            "Bà Triệu - Hai Bà Trưng",
            "Trần Hưng Đạo - Quán Sứ",
            "Chợ Đồng Xuân",
            "Cửa Nam - Điện Biên Phủ",
            "Nhà hát Lớn",
        ]
    )
]


# what a Hanoi air-quality station reports: eleven tiles above the chart
STATION_METRICS = [
    "pm25", "pm10", "no2", "o3", "co", "so2", "aqi_vn", "aqi_vn_daily", "aqi_us",
    "temperature", "humidity",
]  # fmt: skip


def _busy_screen(db: psycopg.Connection[Any]) -> None:
    for i, (sid, lat, lon, name) in enumerate(CENTRE):
        db.execute(
            "INSERT INTO sensors (id, kind, name, lat, lon, area, metrics, status, status_at,"
            " last_seen_at) VALUES (%s, 'air_quality', %s, %s, %s, 'Hoàn Kiếm', %s,"
            " 'online', now(), now())",
            (sid, name, lat, lon, STATION_METRICS),
        )
        _raise_alert(
            db,
            sid,
            severity="critical" if i % 3 else "warning",
            metric="pm25",
            message=f"PM2.5 {160 + i} µg/m³",
            value=160.0 + i,
        )
    # the charted gauge: criticals and warnings minutes apart, their labels side by side
    now = datetime.now(UTC)
    for minutes, severity, metric in [
        (50, "warning", "water_level"),
        (47, "critical", "water_level"),
        (45, "critical", "rainfall"),
        (20, "info", "water_level"),
    ]:
        at = now - timedelta(minutes=minutes)
        _raise_alert(db, "wl-td-03", severity=severity, metric=metric, opened_at=at)
    IncidentStore(db, CorrelatorConfig(radius_km=5.0)).run_until_idle()
    db.execute(
        "INSERT INTO dead_letters (topic, payload, code, reason, payload_size)"
        " VALUES ('ioc/v1/air_quality/aq-c-01/data', 'x', 'malformed_json', 'not JSON', 1)"
    )


@pytest.mark.parametrize(("width", "height"), [(1920, 1080), (1366, 768)])
@pytest.mark.parametrize("lang", ["vi", "en"])
def test_wall_view_fits_in_both_languages(
    api_fixture: ApiServer,
    db: psycopg.Connection[Any],
    open_page_fixture: Callable[..., Page],
    lang: str,
    width: int,
    height: int,
) -> None:
    api = api_fixture
    _busy_screen(db)
    p = open_page_fixture(width, height, locale="vi-VN" if lang == "vi" else "en-GB")
    page = p.page
    page.goto(f"{api.url}/?sensor=wl-td-03#token={ADMIN}")
    page.wait_for_selector("#incidents li.incident", timeout=WAIT_MS)
    page.wait_for_selector("#conn[data-state='live']", timeout=WAIT_MS)
    page.wait_for_function("Number(document.querySelector('#chart').dataset.points) > 100")
    page.wait_for_function("Number(document.querySelector('#chart').dataset.alerts) >= 4")
    page.wait_for_selector("#dl-open:not([hidden])", timeout=WAIT_MS)
    assert page.evaluate("document.documentElement.lang") == lang

    for view in ("all", "centre"):
        page.click("#zoom-fit" if view == "all" else "#zoom-centre")
        page.wait_for_timeout(300)  # a frame or two of the map
        overflows = page.evaluate(OVERFLOWS)
        assert overflows == [], f"{lang} {width}×{height} {view}:\n" + "\n".join(overflows)
        assert page.evaluate(HEADER_ROWS) < 8, "the header wraps"
        dims = page.evaluate(
            "({sw: document.documentElement.scrollWidth, sh: document.documentElement.scrollHeight})"
        )
        assert dims["sw"] <= width and dims["sh"] <= height
        names = page.evaluate("window.__ioc.map.labelBoxes")
        assert len(names) >= 3, names  # the alerted sensors are named
        assert page.evaluate(OVERLAPS, names) == [], f"map labels overlap ({view})"
    # the alert labels above the chart
    marks = page.evaluate("window.__ioc.chart.labelBoxes")
    assert len(marks) >= 2
    assert page.evaluate(OVERLAPS, marks) == []
    shots = os.environ.get("IOC_DASHBOARD_SCREENSHOTS")
    if shots:
        page.click("#zoom-fit")
        page.wait_for_timeout(500)
        page.screenshot(path=str(Path(shots) / f"dashboard-{lang}-{width}x{height}.png"))
    # a station's eleven metric tiles are all whole, none behind a scroll bar
    page.fill("#sensor-pick", "aq-c-01")
    page.dispatch_event("#sensor-pick", "change")
    page.wait_for_function("document.querySelectorAll('#latest .tile').length === 11")
    page.wait_for_timeout(300)
    overflows = page.evaluate(OVERFLOWS)
    assert overflows == [], "\n".join(overflows)
    hidden = page.evaluate(
        "(() => { const b = document.querySelector('#latest'); return [b.scrollWidth - b.clientWidth,"
        " b.scrollHeight - b.clientHeight]; })()"
    )
    assert hidden[0] <= 1 and hidden[1] <= 1, f"tiles behind a scroll bar: {hidden}"
    chart = page.evaluate("document.querySelector('#chart').getBoundingClientRect().height")
    assert chart >= 100, "the tiles leave the chart no room"

    # axe-core: no serious or critical violation (WCAG 2.1 A and AA rules and best practices)
    page.add_script_tag(path=str(AXE))
    result = page.evaluate(
        "axe.run(document, {resultTypes: ['violations']}).then((r) => r.violations"
        ".filter((v) => ['serious', 'critical'].includes(v.impact))"
        ".map((v) => ({id: v.id, help: v.help, nodes: v.nodes.slice(0, 12).map((n) => n.target)})))"
    )
    assert result == [], result

    assert p.errors == []
