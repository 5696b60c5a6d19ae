"""The dashboard's JavaScript logic in a real headless Chromium: resume, backoff, store, time.

The modules are served by a plain static file server and driven with fake websockets (a
class put in place of ``window.WebSocket``), so reconnects and close codes can be staged
exactly.  The end-to-end behaviour against the real API is in ``test_dashboard.py``.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.browser

STATIC = Path(__file__).resolve().parents[2] / "api" / "static"

FAKE_WEBSOCKET = """
window.FakeWS = class FakeWS {
  static all = [];
  constructor(url) {
    this.url = url;
    this.readyState = 0;
    this.created = performance.now();
    FakeWS.all.push(this);
    setTimeout(() => { if (this.readyState === 0) { this.readyState = 1; this.onopen?.(); } }, 0);
  }
  send() {}
  close(code = 1000, reason = "") {
    if (this.readyState === 3) return;
    this.readyState = 3;
    this.closedBy = "client";
    this.closeCode = code;
    setTimeout(() => this.onclose?.({ code, reason }), 0);
  }
  serverSend(doc) { this.onmessage?.({ data: JSON.stringify(doc) }); }
  serverClose(code, reason = "") { this.readyState = 3; this.onclose?.({ code, reason }); }
};
window.WebSocket = window.FakeWS;
window.sleep = (ms) => new Promise((r) => setTimeout(r, ms));
"""


class _Handler(SimpleHTTPRequestHandler):
    """``/static/...`` from api/static, and a blank page at ``/`` to give the modules an origin."""

    def do_GET(self) -> None:
        if self.path == "/":
            body = b"<!doctype html><title>blank</title>"
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        super().do_GET()

    def translate_path(self, path: str) -> str:
        if path.startswith("/static/"):
            return super().translate_path(path[len("/static") :])
        return super().translate_path("/nothing-here")

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def static_url() -> Iterator[str]:
    handler = functools.partial(_Handler, directory=str(STATIC))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()
    thread.join(10)


@pytest.fixture
def page(browser: Any, static_url: str) -> Iterator[Any]:
    ctx = browser.new_context()
    pg = ctx.new_page()
    errors: list[str] = []
    pg.on("pageerror", lambda e: errors.append(str(e)))
    pg.add_init_script(FAKE_WEBSOCKET)
    pg.goto(static_url + "/")
    yield pg
    ctx.close()
    assert errors == []


def test_alert_stream_resumes_from_the_last_seq_without_duplicates(page: Any) -> None:
    out = page.evaluate(
        """async () => {
        const { AlertStream } = await import("/static/js/live.js");
        const got = [];
        const states = [];
        const s = new AlertStream({
          url: (since) => `ws://x/ws/alerts${since === null ? "" : `?since=${since}`}`,
          onEvent: (e) => got.push(e.seq),
          onState: (st) => states.push(st),
        });
        s.socket.backoff = [20, 40, 80];
        s.start();
        await sleep(20);
        const ws1 = FakeWS.all[0];
        ws1.serverSend({ type: "hello", seq: 10 });
        ws1.serverSend({ type: "alert", seq: 11, action: "opened", alert: { id: 1 } });
        ws1.serverSend({ type: "heartbeat", seq: 99 });  // never a resume point
        ws1.serverSend({ type: "alert", seq: 12, action: "updated", alert: { id: 1 } });
        ws1.serverClose(1006);
        await sleep(150);
        const ws2 = FakeWS.all[1];
        ws2.serverSend({ type: "hello", seq: 50 });  // a hello on resume does not move us
        ws2.serverSend({ type: "alert", seq: 12, action: "updated", alert: { id: 1 } });
        ws2.serverSend({ type: "alert", seq: 13, action: "acknowledged", alert: { id: 1 } });
        ws2.serverClose(1012, "service restart");
        await sleep(150);
        const ws3 = FakeWS.all[2];
        ws3.serverClose(4401, "invalid or revoked token");
        await sleep(200);
        return { urls: FakeWS.all.map((w) => w.url), got, dup: s.duplicates, states,
                 last: s.lastSeq };
    }"""
    )
    assert out["urls"] == [
        "ws://x/ws/alerts",
        "ws://x/ws/alerts?since=12",
        "ws://x/ws/alerts?since=13",
    ]  # and no fourth: a refused token is not retried
    assert out["got"] == [11, 12, 13]
    assert out["dup"] == 1
    assert out["last"] == 13
    assert out["states"][-1] == "denied"
    assert out["states"].count("retrying") == 2


def test_reconnect_backoff_grows_resets_and_is_quick_after_too_slow(page: Any) -> None:
    out = page.evaluate(
        """async () => {
        const { LiveSocket } = await import("/static/js/live.js");
        const sock = new LiveSocket({ urlFor: () => "ws://x/ws/readings", onFrame: () => {},
                                      backoff: [60, 120, 240] });
        sock.start();
        // the server refuses five times in a row: 60, 120, 240, 240 ms (+-20 %)
        for (let i = 0; i < 5; i += 1) {
          while (FakeWS.all.length <= i) await sleep(5);
          await sleep(5);
          FakeWS.all[i].serverClose(1006);
        }
        while (FakeWS.all.length < 6) await sleep(5);
        const t = FakeWS.all.map((w) => w.created);
        const gaps = t.slice(1).map((x, i) => x - t[i]);
        // a frame resets the backoff; "too slow" (4008) reconnects at once-ish
        await sleep(5);
        const six = FakeWS.all[5];
        six.serverSend({ type: "heartbeat" });
        sock.backoff = [3000];
        six.serverClose(4008, "too slow");
        while (FakeWS.all.length < 7) await sleep(5);
        sock.stop();
        return { gaps, fast: FakeWS.all[6].created - six.created, state: sock.state };
    }"""
    )
    for gap, base in zip(out["gaps"], [60, 120, 240, 240, 240], strict=True):
        assert base * 0.8 - 5 <= gap <= base * 1.2 + 60, out["gaps"]
    assert out["fast"] < 1000  # not the 3 s backoff
    assert out["state"] == "stopped"


def test_a_silent_connection_is_dropped_and_reopened(page: Any) -> None:
    out = page.evaluate(
        """async () => {
        const { LiveSocket } = await import("/static/js/live.js");
        const sock = new LiveSocket({ urlFor: () => "ws://x/ws/alerts", onFrame: () => {},
                                      staleAfterMs: 300, backoff: [5000] });
        sock.start();
        await sleep(1500);
        sock.stop();
        return { n: FakeWS.all.length, codes: FakeWS.all.map((w) => w.closeCode ?? null) };
    }"""
    )
    assert out["n"] >= 2  # reopened quickly, not after the 5 s backoff
    assert out["codes"][0] == 4000


def test_alert_store_keeps_the_newest_state_and_ranks_sensors(page: Any) -> None:
    out = page.evaluate(
        """async () => {
        const { AlertStore } = await import("/static/js/alerts.js");
        const base = { sensor: "wl-1", metric: "water_level", severity: "warning",
                       status: "open", message: "m", opened_at: "2026-11-22T00:00:00Z",
                       updated_at: "2026-11-22T00:00:10Z" };
        const st = new AlertStore();
        st.load([{ ...base, id: 1 }, { ...base, id: 9, status: "resolved" }]);
        const r = {};
        r.loaded = [...st.alerts.keys()];
        r.ack = st.apply({ action: "acknowledged", seq: 5,
          alert: { ...base, id: 1, status: "acknowledged", acknowledged_by: "op" } });
        r.stale = st.apply({ action: "updated", seq: 3,
          alert: { ...base, id: 1, status: "open", updated_at: "2026-11-22T00:00:05Z" } });
        r.statusAfter = st.get(1).status;
        r.unknownResolved = st.apply({ action: "resolved", seq: 6,
          alert: { ...base, id: 7, status: "resolved" } });
        st.apply({ action: "opened", seq: 7, alert: { ...base, id: 2, sensor: "wl-1",
          severity: "critical", status: "acknowledged" } });
        st.apply({ action: "opened", seq: 8, alert: { ...base, id: 3, sensor: "wl-2",
          severity: "info" } });
        r.worst1 = st.worstBySensor().get("wl-1");
        r.worst2 = st.worstBySensor().get("wl-2").severity;
        r.counts = st.counts();
        r.fresh = st.info.get(3).fresh;
        return r;
    }"""
    )
    assert out["loaded"] == [1]  # a resolved alert in a snapshot is not shown
    assert out["ack"] is True
    assert out["stale"] is False
    assert out["statusAfter"] == "acknowledged"
    assert out["unknownResolved"] is False
    assert out["worst1"]["severity"] == "critical"
    assert out["worst1"]["status"] == "acknowledged"
    assert out["worst2"] == "info"
    assert out["counts"] == {"critical": 0, "warning": 0, "info": 1, "acknowledged": 2, "open": 1}
    assert out["fresh"] is True


def test_times_are_shown_in_hanoi(page: Any) -> None:
    out = page.evaluate(
        """async () => {
        await (await import("/static/js/i18n.js")).loadMessages();
        const f = await import("/static/js/fmt.js");
        const now = new Date("2026-11-23T01:00:00Z");  // 08:00 on 23/11 in Hanoi
        return [
          f.fmtTime("2026-11-22T17:30:05Z", now),  // 00:30:05 on 23/11: today in Hanoi
          f.fmtTime("2026-11-22T16:59:00Z", now),  // 23:59 on 22/11: yesterday there
          f.fmtFull("2026-11-22T00:00:00Z"),
          f.fmtAge(Date.now() - 125000),
          f.fmtNum(-0.0000000001), f.fmtNum(1234.5), f.fmtNum(3.14159), f.fmtNum(null),
          f.withUnit(87.46, "pm25"),
        ];
    }"""
    )
    assert out == [
        "00:30:05",
        "22/11 23:59",
        "22/11/2026, 07:00:00 ICT",
        "2 min ago",
        "0",
        "1,235",
        "3.14",
        "—",
        "87.5 µg/m³",
    ]


def test_vietnamese_numbers_dates_and_words(page: Any, static_url: str) -> None:
    page.goto(static_url + "/?lang=vi")
    out = page.evaluate(
        """async () => {
        const i = await import("/static/js/i18n.js");
        await i.loadMessages();
        const f = await import("/static/js/fmt.js");
        f.translateLabels();
        const now = new Date("2026-11-23T01:00:00Z");
        return [
          i.LANG, f.fmtTime("2026-11-22T16:59:00Z", now), f.fmtFull("2026-11-22T00:00:00Z"),
          f.fmtAge(Date.now() - 125000), f.fmtNum(1234.5), f.fmtNum(3.14159),
          f.withUnit(87.46, "pm25"), f.withUnit(12, "vehicle_count"), f.KIND_LABELS.water_level,
          f.metricLabel("water_level"), i.t("no.such.key"), i.t("age.s", {n: 5}),
          f.fmtDateLong(new Date("2026-12-04T18:00:00Z")),
        ];
    }"""
    )
    assert out == [
        "vi",
        "22/11 23:59",
        "22/11/2026 07:00:00 ICT",
        "2 phút trước",
        "1.235",
        "3,14",
        "87,5 µg/m³",
        "12 xe",
        "Mực nước",
        "mực nước",
        "no.such.key",
        "5 giây trước",
        "Thứ 7, 05/12/2026",  # 01:00 on Saturday in Hanoi: dd/MM/yyyy
    ]


def test_the_language_comes_from_the_address_the_choice_or_the_browser(page: Any) -> None:
    out = page.evaluate(
        """async () => {
        const { chooseLanguage } = await import("/static/js/i18n.js");
        const at = (q) => ({ href: "http://x/" + q });
        const store = (v) => ({ getItem: () => v });
        const nav = (...languages) => ({ languages });
        return [
          chooseLanguage(at("?lang=en"), store("vi"), nav("vi")),
          chooseLanguage(at(""), store("en"), nav("vi-VN")),
          chooseLanguage(at(""), store(null), nav("fr-FR", "en-GB", "vi")),
          chooseLanguage(at(""), store(null), nav("vi-VN", "en")),
          chooseLanguage(at(""), store(null), nav("fr-FR", "de")),
          chooseLanguage(at("?lang=xx"), store("zz"), nav()),
        ];
    }"""
    )
    assert out == ["en", "en", "en", "vi", "vi", "vi"]
