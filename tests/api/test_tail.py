"""``ioc alerts tail``: one line per event in Hanoi time, filters, resume after the API restarts."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from typing import Any

import psycopg
import pytest

from api.config import ApiSettings
from api.tail import TailOptions, follow, format_event, main, stream_url
from tests.api.conftest import LiveApi, insert_alert


def test_stream_url_and_line_format() -> None:
    assert stream_url("http://h:8000") == "ws://h:8000/ws/alerts"
    assert stream_url("https://ioc.example/") == "wss://ioc.example/ws/alerts"
    assert stream_url("ws://h:1/ws/alerts") == "ws://h:1/ws/alerts"
    assert stream_url("h:8000") == "ws://h:8000/ws/alerts"
    line = format_event(
        {
            "type": "alert",
            "seq": 7,
            "action": "acknowledged",
            "actor": "duty",
            "note": "on it",
            "time": "2026-11-22T00:30:00Z",
            "alert": {"severity": "critical", "sensor": "wl-1", "metric": "water_level",
                      "area": "Cầu Giấy", "status": "acknowledged", "message": "52 cm"},
        }
    )  # fmt: skip
    assert line.startswith("2026-11-22 07:30:00 #7 acknowledged CRITICAL wl-1/water_level")
    assert "(Cầu Giấy)" in line and "[duty]" in line and "“on it”" in line


def test_missing_token(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("IOC_API_TOKEN", raising=False)
    assert main(["tail", "--url", "http://127.0.0.1:1"]) == 2


class Tail:
    """``follow`` in a thread of its own, collecting lines."""

    def __init__(self, opts: TailOptions) -> None:
        self.lines: list[str] = []
        self.status: list[str] = []
        self.result: int | None = None
        self.loop = asyncio.new_event_loop()
        self.stop = asyncio.Event()
        self.thread = threading.Thread(target=self._run, args=(opts,), daemon=True)
        self.thread.start()

    def _run(self, opts: TailOptions) -> None:
        async def go() -> int:
            self.stop = asyncio.Event()
            return await follow(opts, self.lines.append, self.status.append, self.stop)

        try:
            self.result = self.loop.run_until_complete(go())
        finally:
            self.loop.close()

    def wait(self, pred: Callable[[], bool], timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while not pred():
            assert time.monotonic() < deadline, (self.lines, self.status)
            time.sleep(0.05)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.stop.set)
        self.thread.join(10)


@pytest.mark.db
def test_tail_follows_filters_and_resumes_across_a_restart(
    api_settings: ApiSettings,
    make_api: Callable[..., LiveApi],
    tokens: dict[str, str],
    db: psycopg.Connection[Any],
) -> None:
    live = make_api(api_settings)
    tail = Tail(TailOptions(url=live.url, token=tokens["operator"], severity=["critical"],
                            max_backoff_s=0.5, open_first=False))  # fmt: skip
    try:
        tail.wait(lambda: any("connected" in s for s in tail.status))
        insert_alert(db, sensor="one", severity="critical")
        insert_alert(db, sensor="quiet", severity="info")  # filtered out
        tail.wait(lambda: len(tail.lines) == 1)
        assert "one/water_level" in tail.lines[0] and "CRITICAL" in tail.lines[0]
        port = live.port
        live.stop()  # the API goes away...
        tail.wait(lambda: any("cannot reach" in s or "closed" in s for s in tail.status))
        insert_alert(db, sensor="two", severity="critical")  # ...while alerts keep coming
        insert_alert(db, sensor="three", severity="critical")
        make_api(api_settings, port)  # and comes back on the same address
        tail.wait(lambda: len(tail.lines) == 3)
        insert_alert(db, sensor="four", severity="critical")
        tail.wait(lambda: len(tail.lines) == 4)
        assert [ln.split()[5].split("/")[0] for ln in tail.lines] == ["one", "two", "three", "four"]
        assert any("resuming after" in s for s in tail.status)
    finally:
        tail.close()
    assert tail.result == 0


@pytest.mark.db
def test_tail_stops_on_a_bad_token(shared_api: LiveApi) -> None:
    tail = Tail(TailOptions(url=shared_api.url, token="wrong"))
    tail.thread.join(20)
    assert tail.result == 1
    assert any("4401" in s for s in tail.status)


def test_line_in_vietnamese() -> None:
    doc = {
        "type": "alert", "seq": 7, "action": "acknowledged", "actor": "duty", "note": None,
        "time": "2026-11-22T00:30:00Z",
        "alert": {"severity": "critical", "sensor": "wl-1", "metric": "water_level",
                  "area": "Cầu Giấy", "status": "acknowledged", "message": "52 cm"},
    }  # fmt: skip
    line = format_event(doc, lang="vi")
    assert line.startswith("22/11/2026 07:30:00 #7 tiếp nhận    NGHIÊM TRỌNG wl-1/water_level")
    assert "(Cầu Giấy) đã tiếp nhận: 52 cm" in line
    assert format_event(doc, lang="en").startswith("2026-11-22 07:30:00 #7 acknowledged CRITICAL")


@pytest.mark.db
def test_tail_in_vietnamese(shared_api: LiveApi, shared_tokens: dict[str, str]) -> None:
    tail = Tail(TailOptions(url=shared_api.url, token=shared_tokens["operator"], lang="vi"))
    try:
        tail.wait(lambda: any("đã kết nối tới" in s for s in tail.status))
        with psycopg.connect(shared_api.settings.dsn, autocommit=True) as conn:
            insert_alert(
                conn,
                sensor="wl-vi-1",
                rule="water_level.flood",
                detector="rules",
                value=52.5,
                evidence={"level": "critical", "threshold": 40.0, "direction": "above"},
            )
        tail.wait(lambda: any("wl-vi-1" in ln for ln in tail.lines))
        line = next(ln for ln in tail.lines if "wl-vi-1" in ln)
        assert " mở " in line and "NGHIÊM TRỌNG" in line and "đang mở:" in line
        assert "ngập úng 52,5 cm, bằng hoặc vượt ngưỡng nghiêm trọng 40 cm" in line, line
    finally:
        tail.close()
    assert tail.result == 0


def test_cli_language_comes_from_the_setting(monkeypatch: pytest.MonkeyPatch, capsys: Any) -> None:
    monkeypatch.delenv("IOC_API_TOKEN", raising=False)
    monkeypatch.setenv("IOC_LANGUAGE", "vi")
    assert main(["tail", "--url", "http://127.0.0.1:1"]) == 2
    assert "hãy dùng --token" in capsys.readouterr().err
    assert main(["tail", "--url", "http://127.0.0.1:1", "--lang", "en"]) == 2
    assert "give --token" in capsys.readouterr().err


@pytest.mark.db
def test_tail_starts_with_what_is_open(
    live_api: LiveApi, tokens: dict[str, str], db: psycopg.Connection[Any]
) -> None:
    old = insert_alert(db, sensor="old-open", severity="critical")
    insert_alert(db, sensor="old-info", severity="info")  # filtered out
    gone = insert_alert(db, sensor="old-gone", severity="critical")
    db.execute("UPDATE alerts SET status = 'resolved' WHERE id = %s", (gone,))
    acked = insert_alert(db, sensor="old-acked", severity="critical")
    db.execute("UPDATE alerts SET status = 'acknowledged' WHERE id = %s", (acked,))
    tail = Tail(TailOptions(url=live_api.url, token=tokens["operator"], severity=["critical"]))
    try:
        tail.wait(lambda: any("new events follow" in s for s in tail.status))
        listed = [ln for ln in tail.lines if " open now " in ln]
        assert [ln.split()[7].split("/")[0] for ln in listed] == ["old-open", "old-acked"]
        assert f"id {old} open now" in listed[0]
        insert_alert(db, sensor="new-one", severity="critical")
        tail.wait(lambda: any("new-one/" in ln for ln in tail.lines))
        assert "opened" in next(ln for ln in tail.lines if "new-one/" in ln)
        assert any("2 open or acknowledged" in s for s in tail.status)
    finally:
        tail.close()
