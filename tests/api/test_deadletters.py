"""``GET /api/v1/dead-letters``: filters, paging, a bounded payload preview, engineers only."""

from __future__ import annotations

import hashlib
import re
import threading
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import psycopg
import pytest
from psycopg.types.json import Jsonb

from api.deadletters_tail import DeadLetterTail, follow
from ingest.config import IngestSettings
from tests.api.conftest import LiveApi, auth
from tests.ingest.conftest import count, publish, running, wait_for

pytestmark = pytest.mark.db


def _dead_letter(
    conn: psycopg.Connection[Any],
    topic: str,
    payload: bytes,
    code: str,
    reason: str,
    *,
    at: datetime | None = None,
    rejected: Any = None,
    size: int | None = None,
) -> int:
    row = conn.execute(
        "INSERT INTO dead_letters (received_at, topic, payload, code, reason, rejected,"
        " payload_size, payload_sha256) VALUES (coalesce(%s, now()), %s, %s, %s, %s, %s, %s, %s)"
        " RETURNING id",
        (
            at,
            topic,
            payload,
            code,
            reason,
            Jsonb(rejected) if rejected is not None else None,
            size,
            hashlib.sha256(payload).hexdigest() if size else None,
        ),
    ).fetchone()
    assert row is not None
    return int(row[0])


def test_engineer_reads_filtered_pages_with_a_bounded_preview(
    live_api: LiveApi, tokens: dict[str, str], db: psycopg.Connection[Any]
) -> None:
    old = datetime.now(UTC) - timedelta(days=2)
    a = _dead_letter(
        db,
        "ioc/v1/air_quality/aq-1/data",
        b'{"values": {"pm25": -3}}',
        "out_of_range",
        "pm25 -3 is below the physical range",
        at=old,
    )
    big = b'{"values": [' + b"1," * 200_000 + b"1]}"
    b = _dead_letter(
        db,
        "ioc/v1/noise/nm-2/data",
        big[:65536],
        "payload_too_large",
        "payload too large",
        size=len(big),
    )
    c = _dead_letter(
        db,
        "ioc/v1/air_quality/aq-1/data",
        b"\xff\xfe not json",
        "bad_json",
        "not JSON: bad byte",
        rejected=[{"index": i, "reason": "out_of_range", "detail": "x"} for i in range(50)],
    )
    with httpx.Client(base_url=live_api.url, headers=auth(tokens["engineer"])) as eng:

        def ids(**params: Any) -> list[int]:
            resp = eng.get("/api/v1/dead-letters", params=params)
            assert resp.status_code == 200, resp.text
            return [x["id"] for x in resp.json()["items"]]

        assert ids() == [c, b, a]
        assert ids(code=["bad_json", "out_of_range"]) == [c, a]
        assert ids(sensor="aq-1") == [c, a]
        assert ids(topic="ioc/v1/noise/") == [b]
        assert ids(reason="PHYSICAL RANGE") == [a]
        assert ids(since=(old + timedelta(hours=1)).isoformat()) == [c, b]
        assert ids(until=(old + timedelta(hours=1)).isoformat()) == [a]
        page = eng.get("/api/v1/dead-letters", params={"limit": 2}).json()
        assert [x["id"] for x in page["items"]] == [c, b]
        assert ids(limit=2, before_id=page["next_before_id"]) == [a]
        items = {x["id"]: x for x in eng.get("/api/v1/dead-letters").json()["items"]}
        assert eng.get("/api/v1/dead-letters", params={"limit": 501}).status_code == 422
        assert eng.get("/api/v1/dead-letters", params={"code": "Bad Code"}).status_code == 422
    # the oversized one: a 512-byte head, the whole size and hash; not the 64 KiB kept
    assert len(items[b]["payload_preview"]) == 512
    assert items[b]["payload_cut"] is True
    assert items[b]["payload_size"] == len(big)
    assert items[b]["payload_sha256"] == hashlib.sha256(big[:65536]).hexdigest()
    assert items[a]["payload_preview"] == '{"values": {"pm25": -3}}'
    assert (items[a]["payload_cut"], items[a]["sensor"], items[a]["rejected"]) == (
        False,
        "aq-1",
        None,
    )
    assert items[c]["payload_preview"].startswith("\ufffd\ufffd not json")
    assert items[c]["rejected_count"] == 50
    assert len(items[c]["rejected"]) == 20


def test_only_engineers_and_admins(
    live_api: LiveApi, tokens: dict[str, str], db: psycopg.Connection[Any]
) -> None:
    with httpx.Client(base_url=live_api.url) as http:
        assert http.get("/api/v1/dead-letters").status_code == 401
        for role, status in (("operator", 403), ("analyst", 403), ("admin", 200)):
            resp = http.get("/api/v1/dead-letters", headers=auth(tokens[role]))
            assert resp.status_code == status, (role, resp.text)


def test_ioc_deadletters_tail_shows_the_latest_then_follows(
    live_api: LiveApi, tokens: dict[str, str], db: psycopg.Connection[Any]
) -> None:
    for i in range(3):
        _dead_letter(db, f"ioc/v1/noise/nm-{i}/data", b"{" * (i + 1), "bad_json", f"broken {i}")
    opts = DeadLetterTail(url=live_api.url, token=tokens["engineer"], last=2, interval_s=0.1)
    lines: list[str] = []
    status: list[str] = []
    stop = threading.Event()
    result: list[int] = []
    thread = threading.Thread(
        target=lambda: result.append(follow(opts, lines.append, status.append, stop))
    )
    thread.start()
    try:
        _wait(lambda: len(lines) == 2)
        assert "broken 1" in lines[0] and "broken 2" in lines[1]  # oldest first
        assert "bad_json" in lines[0] and "ioc/v1/noise/nm-1/data" in lines[0]
        _dead_letter(db, "ioc/v1/noise/nm-9/data", b"x" * 3000, "payload_too_large", "too big")
        _wait(lambda: len(lines) == 3)
        assert "too big" in lines[2] and "(3,000 bytes)" in lines[2]
    finally:
        stop.set()
        thread.join(10)
    assert result == [0]
    refused = DeadLetterTail(url=live_api.url, token=tokens["operator"])
    assert follow(refused, lines.append, status.append, threading.Event()) == 1
    assert "refused (403)" in status[-1]
    # in Vietnamese: its words, dd/MM/yyyy, and the API's refusal in Vietnamese too
    vi = DeadLetterTail(url=live_api.url, token=tokens["engineer"], last=1, lang="vi")
    vi_lines: list[str] = []
    vi_stop = threading.Event()
    vi_thread = threading.Thread(target=follow, args=(vi, vi_lines.append, status.append, vi_stop))
    vi_thread.start()
    try:
        _wait(lambda: len(vi_lines) == 1)
    finally:
        vi_stop.set()
        vi_thread.join(10)
    assert re.match(r"\d{2}/\d{2}/\d{4} \d{2}:\d{2}:\d{2} #", vi_lines[0]), vi_lines[0]
    assert "(3.000 byte)" in vi_lines[0]
    assert status[-1].startswith("1 bản tin mới nhất ở trên; đang theo dõi ")
    refused_vi = DeadLetterTail(url=live_api.url, token=tokens["operator"], lang="vi")
    assert follow(refused_vi, lines.append, status.append, threading.Event()) == 1
    assert status[-1].startswith("bị từ chối (403): ") and "vai trò operator" in status[-1]


def _wait(pred: Callable[[], bool], timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        assert time.monotonic() < deadline
        time.sleep(0.05)


def test_an_ingested_dead_letter_reads_in_the_readers_language(
    live_api: LiveApi, tokens: dict[str, str], db_url: str, mqtt_url: str
) -> None:
    """A hostile pack goes through the real ingestor; the API, and ``ioc deadletters tail``
    through it, give its reason and its entries' details in Vietnamese or English."""
    sensor = f"dl-{uuid.uuid4().hex[:8]}"
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO sensors (id, kind, metrics) VALUES (%s, 'air_quality', '{pm25}')",
            (sensor,),
        )
    topic = f"ioc/v1/air_quality/{sensor}/data"
    hostile = b'[{"values": {"pm25": 12}}, {"values": {"pm25": -3.5, "pm10": "\\u0000<b>"}}]'
    settings = IngestSettings(
        mqtt_url=mqtt_url,  # type: ignore[arg-type]
        database_url=db_url,  # type: ignore[arg-type]
        ingest_metrics_port=0,
        ingest_client_id=f"ingest-dl-{sensor}",
        ingest_batch_interval_ms=50,
        ingest_session_expiry_s=60,
    )
    with running(settings):
        publish(mqtt_url, [(topic, hostile)])
        wait_for(lambda: count(db_url, "SELECT count(*) FROM dead_letters WHERE topic = %s", topic))

    def read(lang: str) -> dict[str, Any]:
        r = httpx.get(
            f"{live_api.url}/api/v1/dead-letters",
            params={"sensor": sensor},
            headers={**auth(tokens["engineer"]), "Accept-Language": lang},
        )
        assert r.status_code == 200, r.text
        assert r.headers["content-language"] == lang
        [item] = r.json()["items"]
        return dict(item)

    vi, en = read("vi"), read("en")
    assert vi["code"] == en["code"] == "out_of_range" and vi["accepted"] == 1
    assert en["reason"] == (
        "2 of 3 entries rejected: out_of_range (1), wrong_type (1); first: pm25 = -3.5 µg/m³"
        " is outside the physical range 0..1,000"
    )
    assert vi["reason"] == (
        "2 trên 3 mục bị từ chối: out_of_range (1), wrong_type (1); mục đầu: pm25 = -3,5 µg/m³"
        " nằm ngoài khoảng vật lý 0..1.000"
    )
    assert [e["detail"] for e in vi["rejected"]] == [
        "pm25 = -3,5 µg/m³ nằm ngoài khoảng vật lý 0..1.000",
        "pm10 phải là số, nhận được '\\x00<b>'",
    ]
    assert en["rejected"][1] == {
        "index": 2,
        "reason": "wrong_type",
        "detail": "pm10 must be a number, got '\\x00<b>'",
    }
    # the command line asks the API in its own language
    for lang, words in (("vi", "mục bị từ chối"), ("en", "entries rejected")):
        lines: list[str] = []
        stop = threading.Event()
        opts = DeadLetterTail(
            live_api.url, tokens["engineer"], sensor=[sensor], lang=lang, interval_s=0.2
        )
        worker = threading.Thread(target=follow, args=(opts, lines.append, lambda s: None, stop))
        worker.start()
        try:
            wait_for(lambda w=words, seen=lines: any(w in x for x in seen), timeout=10)
        finally:
            stop.set()
            worker.join(10)
