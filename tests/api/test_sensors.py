"""Sensors: list with filters and paging, detail with latest readings and alerts, CRUD."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import psycopg
import pytest

from tests.api.conftest import insert_alert

pytestmark = pytest.mark.db

SENSORS = [
    # id, kind, name, lat, lon, area, status
    ("aq-hk-01", "air_quality", "Hoàn Kiếm Lake", 21.0287, 105.8524, "Hoàn Kiếm", "online"),
    ("aq-cg-02", "air_quality", "Cầu Giấy Park", 21.0305, 105.7935, "Cầu Giấy", "offline"),
    ("wl-td-03", "water_level", "Trần Duy Hưng", 21.0106, 105.8003, "Cầu Giấy", "online"),
    ("cam-0001", "traffic_camera", "Kim Mã x Liễu Giai", 21.0320, 105.8150, "Ba Đình", "unknown"),
    ("ws-socson-1", "weather", "Sóc Sơn forest", 21.2570, 105.8480, "Sóc Sơn", "online"),
]


def seed(db: psycopg.Connection[Any]) -> None:
    for sid, kind, name, lat, lon, area, status in SENSORS:
        db.execute(
            "INSERT INTO sensors (id, kind, name, lat, lon, area, status, metrics)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
            (sid, kind, name, lat, lon, area, status, []),
        )


def ids(resp: httpx.Response) -> list[str]:
    assert resp.status_code == 200, resp.text
    return [s["id"] for s in resp.json()["items"]]


def test_list_filters_and_paging(client: httpx.Client, db: psycopg.Connection[Any]) -> None:
    seed(db)
    assert ids(client.get("/api/v1/sensors")) == sorted(s[0] for s in SENSORS)
    assert ids(client.get("/api/v1/sensors", params={"kind": "air_quality"})) == [
        "aq-cg-02",
        "aq-hk-01",
    ]
    both = client.get("/api/v1/sensors", params=[("kind", "air_quality"), ("kind", "weather")])
    assert ids(both) == ["aq-cg-02", "aq-hk-01", "ws-socson-1"]
    assert ids(client.get("/api/v1/sensors", params={"area": "Cầu Giấy"})) == [
        "aq-cg-02",
        "wl-td-03",
    ]
    assert ids(client.get("/api/v1/sensors", params={"status": "offline"})) == ["aq-cg-02"]
    # the old quarter only: Hoàn Kiếm and Ba Đình, not Cầu Giấy nor Sóc Sơn
    box = client.get("/api/v1/sensors", params={"bbox": "105.81,21.02,105.86,21.04"})
    assert ids(box) == ["aq-hk-01", "cam-0001"]
    assert ids(client.get("/api/v1/sensors", params={"q": "lake"})) == ["aq-hk-01"]
    assert ids(client.get("/api/v1/sensors", params={"q": "%"})) == []  # a literal, not a wildcard
    page = client.get("/api/v1/sensors", params={"limit": 2, "offset": 2}).json()
    assert [s["id"] for s in page["items"]] == ["cam-0001", "wl-td-03"]
    assert (page["total"], page["limit"], page["offset"]) == (5, 2, 2)


def test_alert_counts_and_worst_severity(client: httpx.Client, db: psycopg.Connection[Any]) -> None:
    seed(db)
    insert_alert(db, sensor="wl-td-03", severity="warning")
    insert_alert(db, sensor="wl-td-03", severity="critical")
    done = insert_alert(db, sensor="aq-hk-01", severity="critical")
    db.execute("UPDATE alerts SET status = 'resolved' WHERE id = %s", (done,))
    by_id = {s["id"]: s for s in client.get("/api/v1/sensors").json()["items"]}
    assert (by_id["wl-td-03"]["open_alerts"], by_id["wl-td-03"]["worst_severity"]) == (
        2,
        "critical",
    )
    assert (by_id["aq-hk-01"]["open_alerts"], by_id["aq-hk-01"]["worst_severity"]) == (0, None)


def test_detail_has_latest_readings_and_active_alerts(
    client: httpx.Client, db: psycopg.Connection[Any]
) -> None:
    seed(db)
    now = datetime.now(UTC).replace(microsecond=0)
    with db.cursor() as cur:
        cur.executemany(
            "INSERT INTO readings (time, sensor, metric, value) VALUES (%s, %s, %s, %s)",
            [
                (now - timedelta(minutes=2), "wl-td-03", "water_level", 40.0),
                (now - timedelta(minutes=1), "wl-td-03", "water_level", 44.0),
                (now - timedelta(minutes=1), "wl-td-03", "rainfall", 3.5),
                (now, "aq-hk-01", "pm25", 80.0),  # another sensor
            ],
        )
    db.execute("UPDATE sensors SET last_seen_at = %s WHERE id = 'wl-td-03'", (now,))
    active = insert_alert(db, sensor="wl-td-03")
    resolved = insert_alert(db, sensor="wl-td-03")
    db.execute("UPDATE alerts SET status = 'resolved' WHERE id = %s", (resolved,))
    doc = client.get("/api/v1/sensors/wl-td-03").json()
    latest = {r["metric"]: r for r in doc["latest"]}
    assert set(latest) == {"water_level", "rainfall"}
    assert latest["water_level"]["value"] == 44.0
    assert latest["water_level"]["unit"] == "cm"
    assert latest["water_level"]["time"] == (now - timedelta(minutes=1)).isoformat().replace(
        "+00:00", "Z"
    )
    assert [a["id"] for a in doc["alerts"]] == [active]
    assert doc["open_alerts"] == 1
    assert client.get("/api/v1/sensors/nope").status_code == 404
    assert client.get("/api/v1/sensors/bad%20id").status_code == 422


def test_create_update_delete(client: httpx.Client) -> None:
    body = {
        "id": "wl-new-1",
        "kind": "water_level",
        "name": "Nguyễn Chí Thanh",
        "lat": 21.02,
        "lon": 105.81,
        "area": "Đống Đa",
        "metrics": ["water_level"],
        "interval_s": 60,
        "attributes": {"installer": "team 3"},
    }
    created = client.post("/api/v1/sensors", json=body)
    assert created.status_code == 201, created.text
    assert created.json()["source"] == "api"
    assert created.json()["attributes"] == {"installer": "team 3"}
    assert client.post("/api/v1/sensors", json=body).status_code == 409
    changed = client.put("/api/v1/sensors/wl-new-1", json={"name": "NCT underpass", "lat": None})
    assert changed.status_code == 200, changed.text
    doc = changed.json()
    assert (doc["name"], doc["lat"], doc["lon"], doc["area"]) == (
        "NCT underpass",
        None,
        105.81,
        "Đống Đa",
    )
    assert client.put("/api/v1/sensors/wl-new-1", json={"name": None}).status_code == 422
    assert client.put("/api/v1/sensors/ghost", json={"name": "x"}).status_code == 404
    assert client.delete("/api/v1/sensors/wl-new-1").status_code == 204
    assert client.get("/api/v1/sensors/wl-new-1").status_code == 404
    assert client.delete("/api/v1/sensors/wl-new-1").status_code == 404


@pytest.mark.parametrize(
    "body",
    [
        {"id": "x y", "kind": "water_level"},
        {"id": "ok", "kind": "volcano"},
        {"id": "ok", "kind": "water_level", "lat": 91},
        {"id": "ok", "kind": "water_level", "metrics": ["not_a_metric"]},
        {"id": "ok", "kind": "water_level", "metrics": ["pm25", "pm25"]},
        {"id": "ok", "kind": "water_level", "interval_s": -1},
        {"id": "ok", "kind": "water_level", "surprise": 1},
        {"id": "ok", "kind": "water_level", "attributes": {"x": "y" * 20_000}},
    ],
)
def test_create_rejects_bad_bodies(shared_client: httpx.Client, body: dict[str, Any]) -> None:
    resp = shared_client.post("/api/v1/sensors", json=body)
    assert resp.status_code == 422, resp.text
    assert isinstance(resp.json()["detail"], str)


@pytest.mark.parametrize(
    "params",
    [
        {"limit": 0},
        {"limit": 100_000},
        {"offset": -1},
        {"offset": 10**30},
        {"bbox": "1,2,3"},
        {"bbox": "NaN,1,2,3"},
        {"bbox": "10,10,0,0"},
        {"bbox": "' OR 1=1 --,0,0,0"},
        {"kind": "'; DROP TABLE sensors; --"},
        {"status": "sleeping"},
        {"q": "x" * 500},
    ],
)
def test_list_rejects_hostile_parameters(
    shared_client: httpx.Client, params: dict[str, Any]
) -> None:
    resp = shared_client.get("/api/v1/sensors", params=params)
    assert resp.status_code == 422, resp.text
    assert resp.json()["detail"]


def test_injection_strings_are_just_values(
    client: httpx.Client, db: psycopg.Connection[Any]
) -> None:
    seed(db)
    for text in ("' OR '1'='1", "x'); DELETE FROM sensors; --", "\\"):
        assert ids(client.get("/api/v1/sensors", params={"area": text})) == []
        assert ids(client.get("/api/v1/sensors", params={"q": text})) == []
    assert len(ids(client.get("/api/v1/sensors"))) == len(SENSORS)


def test_bodies_postgres_cannot_store_are_422(shared_client: httpx.Client) -> None:
    for body in (
        {"id": "nul-1", "kind": "noise", "name": "a\u0000b"},
        {"id": "nul-2", "kind": "noise", "attributes": {"k": "a\u0000b"}},
        {"id": "big-1", "kind": "noise", "attributes": {"n": 2**70}},
        {"id": "bool-1", "kind": "noise", "lat": True},
    ):
        resp = shared_client.post("/api/v1/sensors", json=body)
        assert resp.status_code == 422, (body, resp.text)
    lone = b'{"id": "sur-1", "kind": "noise", "name": "\\ud800"}'
    resp = shared_client.post(
        "/api/v1/sensors", content=lone, headers={"Content-Type": "application/json"}
    )
    assert resp.status_code == 422, resp.text
    assert shared_client.get("/api/v1/sensors", params={"area": "x\u0000"}).status_code == 422
    unknown = shared_client.get("/api/v1/sensors", params={"kinds": "noise"})
    assert unknown.status_code == 422 and "kinds" in unknown.json()["detail"]
