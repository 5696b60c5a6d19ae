"""Alerts: filters and paging, detail with events, acknowledge / resolve / comment audit trail."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import psycopg
import pytest

from tests.api.conftest import auth, insert_alert

pytestmark = pytest.mark.db


def test_list_newest_first_with_filters(client: httpx.Client, db: psycopg.Connection[Any]) -> None:
    a = insert_alert(db, sensor="wl-1", severity="warning", area="Cầu Giấy")
    b = insert_alert(
        db, sensor="aq-1", kind="air_quality", metric="pm25", severity="critical", area="Hoàn Kiếm"
    )
    c = insert_alert(db, sensor="wl-2", severity="critical", area="Cầu Giấy")
    db.execute("UPDATE alerts SET status = 'resolved' WHERE id = %s", (c,))

    def ids(**params: Any) -> list[int]:
        resp = client.get("/api/v1/alerts", params=params)
        assert resp.status_code == 200, resp.text
        return [x["id"] for x in resp.json()["items"]]

    assert ids() == [c, b, a]
    assert ids(status=["open", "acknowledged"]) == [b, a]
    assert ids(severity="critical") == [c, b]
    assert ids(kind="air_quality") == [b]
    assert ids(area="Cầu Giấy") == [c, a]
    assert ids(sensor=["wl-1", "wl-2"]) == [c, a]
    future = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    assert ids(since=future) == []
    assert ids(until=future) == [c, b, a]
    assert ids(until="2000-01-01T00:00:00Z") == []


def test_paging_with_before_id(client: httpx.Client, db: psycopg.Connection[Any]) -> None:
    made = [insert_alert(db, sensor=f"s{i}") for i in range(7)]
    seen: list[int] = []
    before: int | None = None
    while True:
        params: dict[str, Any] = {"limit": 3}
        if before is not None:
            params["before_id"] = before
        page = client.get("/api/v1/alerts", params=params).json()
        assert page["total"] == 7
        seen += [x["id"] for x in page["items"]]
        before = page["next_before_id"]
        if before is None:
            break
    assert seen == sorted(made, reverse=True)


def test_acknowledge_resolve_comment_keep_the_audit_trail(
    live_api: Any, tokens: dict[str, str], db: psycopg.Connection[Any]
) -> None:
    aid = insert_alert(db)
    with httpx.Client(base_url=live_api.url, headers=auth(tokens["operator"])) as op:
        ack = op.post(f"/api/v1/alerts/{aid}/acknowledge", json={"note": "team dispatched"})
        assert ack.status_code == 200, ack.text
        doc = ack.json()
        assert (doc["status"], doc["acknowledged_by"]) == ("acknowledged", "operator-user")
        assert op.post(f"/api/v1/alerts/{aid}/acknowledge").status_code == 409
        com = op.post(f"/api/v1/alerts/{aid}/comments", json={"note": "pump truck on site"})
        assert com.status_code == 200, com.text
        res = op.post(f"/api/v1/alerts/{aid}/resolve")
        assert res.status_code == 200, res.text
        assert (res.json()["status"], res.json()["resolved_by"]) == ("resolved", "operator-user")
        again = op.post(f"/api/v1/alerts/{aid}/resolve", json={"note": "twice"})
        assert again.status_code == 409
        assert "resolved" in again.json()["detail"]
        detail = op.get(f"/api/v1/alerts/{aid}").json()
    trail = [(e["action"], e["actor"], e["note"]) for e in detail["events"]]
    assert trail == [
        ("opened", "system", None),
        ("acknowledged", "operator-user", "team dispatched"),
        ("commented", "operator-user", "pump truck on site"),
        ("resolved", "operator-user", None),
    ]
    seqs = [e["seq"] for e in detail["events"]]
    assert seqs == sorted(seqs)
    assert detail["evidence"] == {"threshold": 50}
    # the settings were transaction-local: a later change by the system is not blamed on anyone
    db.execute("UPDATE alerts SET occurrences = occurrences + 1 WHERE id = %s", (aid,))
    last = db.execute(
        "SELECT actor, note FROM alert_events WHERE alert_id = %s ORDER BY seq DESC LIMIT 1", (aid,)
    ).fetchone()
    assert last == ("system", None)


def test_operator_changes_move_updated_at_so_since_sees_them(
    client: httpx.Client, db: psycopg.Connection[Any]
) -> None:
    # an alert opened by a reading an hour old (a replay, a simulation behind the clock)
    past = datetime.now(UTC) - timedelta(hours=1)
    aid = insert_alert(db, opened_at=past)
    poll_from = datetime.now(UTC).isoformat()
    assert client.get("/api/v1/alerts", params={"since": poll_from}).json()["items"] == []
    ack = {k: _t(v) for k, v in client.post(f"/api/v1/alerts/{aid}/acknowledge").json().items()}
    assert ack["updated_at"] >= ack["acknowledged_at"] > _t(poll_from)
    seen = client.get("/api/v1/alerts", params={"since": poll_from}).json()["items"]
    assert [a["id"] for a in seen] == [aid]
    # a later repeat stamped with its (older) reading time does not move updated_at back
    db.execute(
        "UPDATE alerts SET occurrences = occurrences + 1, updated_at = %s WHERE id = %s",
        (past + timedelta(minutes=5), aid),
    )
    row = db.execute(
        "SELECT updated_at >= acknowledged_at FROM alerts WHERE id = %s", (aid,)
    ).fetchone()
    assert row == (True,)
    res = {k: _t(v) for k, v in client.post(f"/api/v1/alerts/{aid}/resolve").json().items()}
    assert res["updated_at"] >= res["resolved_at"] >= ack["acknowledged_at"]
    # one clock in the audit trail: the system's events carry the readings' time
    events = client.get(f"/api/v1/alerts/{aid}").json()["events"]
    times = [(e["action"], e["reading_time"] and _t(e["reading_time"])) for e in events]
    assert times == [
        ("opened", past),
        ("acknowledged", None),
        ("updated", None),
        ("resolved", None),
    ]


def _t(value: Any) -> Any:
    """RFC 3339 strings as datetimes (other values as they are)."""
    if isinstance(value, str) and value[:2] == "20" and "T" in value:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    return value


def test_resolve_straight_from_open_and_unknown_alerts(
    client: httpx.Client, db: psycopg.Connection[Any]
) -> None:
    aid = insert_alert(db)
    assert client.post(f"/api/v1/alerts/{aid}/resolve", json={}).status_code == 200
    assert client.post(f"/api/v1/alerts/{aid}/acknowledge").status_code == 409
    for path in ("acknowledge", "resolve"):
        assert client.post(f"/api/v1/alerts/999999/{path}").status_code == 404
    assert client.post("/api/v1/alerts/999999/comments", json={"note": "x"}).status_code == 404
    assert client.get("/api/v1/alerts/999999").status_code == 404
    assert client.post(f"/api/v1/alerts/{aid}/comments", json={"note": ""}).status_code == 422
    assert client.post(f"/api/v1/alerts/{aid}/comments", json={}).status_code == 422


@pytest.mark.parametrize(
    "params",
    [
        {"limit": 501},
        {"before_id": 0},
        {"before_id": 2**63},
        {"before_id": "NaN"},
        {"since": "yesterday"},
        {"since": "2026-11-22T07:00:00"},  # no zone
        {"until": "99999-01-01T00:00:00Z"},
        {"since": "1e308"},
        {"severity": "catastrophic"},
        {"status": "closed"},
    ],
)
def test_list_rejects_hostile_parameters(
    shared_client: httpx.Client, params: dict[str, Any]
) -> None:
    resp = shared_client.get("/api/v1/alerts", params=params)
    assert resp.status_code == 422, resp.text


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/alerts/0",
        "/api/v1/alerts/-1",
        "/api/v1/alerts/1e3",
        "/api/v1/alerts/99999999999999999999999",
        "/api/v1/alerts/NaN",
    ],
)
def test_bad_alert_ids(shared_client: httpx.Client, path: str) -> None:
    assert shared_client.get(path).status_code == 422


def test_concurrent_acknowledgements_one_wins(
    live_api: Any, tokens: dict[str, str], db: psycopg.Connection[Any]
) -> None:
    import concurrent.futures

    aid = insert_alert(db)

    def ack(_: int) -> int:
        with httpx.Client(base_url=live_api.url, headers=auth(tokens["operator"])) as op:
            return op.post(f"/api/v1/alerts/{aid}/acknowledge").status_code

    with concurrent.futures.ThreadPoolExecutor(6) as pool:
        codes = sorted(pool.map(ack, range(6)))
    assert codes == [200, 409, 409, 409, 409, 409]
    n = db.execute(
        "SELECT count(*) FROM alert_events WHERE alert_id = %s AND action = 'acknowledged'", (aid,)
    ).fetchone()
    assert n == (1,)
