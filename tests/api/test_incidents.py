"""Incidents (list, one, acknowledge, resolve, CAP, websocket) and maintenance windows over HTTP."""

from __future__ import annotations

import json
import time
import xml.etree.ElementTree as ET
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
import xmlschema
from websockets.sync.client import connect

from analytics.alerts.correlator import CorrelatorConfig
from analytics.alerts.geometry import contains
from analytics.alerts.incidents import IncidentStore
from tests.api.conftest import LiveApi, auth, insert_alert

pytestmark = pytest.mark.db

XSD = xmlschema.XMLSchema(Path(__file__).parent / "data" / "CAP-v1.2.xsd")
NS = {"cap": "urn:oasis:names:tc:emergency:cap:1.2"}
SITES = [(21.028, 105.852), (21.035, 105.846), (21.022, 105.858)]


def episode(db: psycopg.Connection[Any]) -> list[int]:
    """Three air-quality alerts in one district, grouped by the correlator."""
    ids = [
        insert_alert(
            db,
            sensor=f"aq-{i}",
            kind="air_quality",
            metric="pm25",
            rule="pm25.level",
            value=260.0 + i,
            lat=lat,
            lon=lon,
            area="Hoàn Kiếm",
        )
        for i, (lat, lon) in enumerate(SITES)
    ]
    IncidentStore(db, CorrelatorConfig()).run_until_idle()
    return ids


def test_list_and_one_with_its_alerts(client: httpx.Client, db: psycopg.Connection[Any]) -> None:
    alerts = episode(db)
    resp = client.get("/api/v1/incidents", params={"status": "open"})
    assert resp.status_code == 200, resp.text
    (item,) = resp.json()["items"]
    assert item["status"] == "open" and item["severity"] == "critical"
    assert item["sensors"] == ["aq-0", "aq-1", "aq-2"]
    assert item["title"] == "Air pollution episode: 3 stations in Hoàn Kiếm, PM2.5 up to 262 µg/m³"
    assert client.get("/api/v1/incidents", params={"status": "resolved"}).json()["items"] == []
    assert client.get("/api/v1/incidents", params={"sensor": "aq-1"}).json()["total"] == 1
    assert client.get("/api/v1/incidents", params={"sensor": "nope"}).json()["total"] == 0
    one = client.get(f"/api/v1/incidents/{item['id']}").json()
    assert sorted(a["id"] for a in one["alerts"]) == alerts
    assert one["events"][0]["action"] == "opened"
    assert client.get("/api/v1/incidents/999999").status_code == 404
    assert client.get("/api/v1/incidents", params={"hazard": "volcano"}).status_code == 422


def test_acknowledge_and_resolve_act_on_its_alerts_and_are_audited(
    live_api: LiveApi, tokens: dict[str, str], db: psycopg.Connection[Any]
) -> None:
    alerts = episode(db)
    (iid,) = [r[0] for r in db.execute("SELECT id FROM incidents")]
    with httpx.Client(base_url=live_api.url, timeout=30) as c:
        url = f"/api/v1/incidents/{iid}"
        r = c.post(f"{url}/acknowledge", headers=auth(tokens["analyst"]))
        assert r.status_code == 403
        r = c.post(f"{url}/acknowledge", headers=auth(tokens["operator"]), json={"note": "on it"})
        assert r.status_code == 200, r.text
        assert r.json()["status"] == "acknowledged"
        assert r.json()["acknowledged_by"] == "operator-user"
        assert c.post(f"{url}/acknowledge", headers=auth(tokens["operator"])).status_code == 409
        states = db.execute(
            "SELECT DISTINCT status, acknowledged_by FROM alerts WHERE id = ANY(%s)", (alerts,)
        ).fetchall()
        assert states == [("acknowledged", "operator-user")]
        notes = db.execute(
            "SELECT DISTINCT actor, note FROM alert_events WHERE alert_id = ANY(%s)"
            " AND action = 'acknowledged'",
            (alerts,),
        ).fetchall()
        assert notes == [("operator-user", f"incident {iid}: on it")]
        r = c.post(f"{url}/resolve", headers=auth(tokens["operator"]))
        assert r.status_code == 200 and r.json()["status"] == "resolved"
        statuses = db.execute(
            "SELECT DISTINCT status FROM alerts WHERE id = ANY(%s)", (alerts,)
        ).fetchall()
        assert statuses == [("resolved",)]
        # the correlator then sees every alert resolved and keeps the operator's resolution
        IncidentStore(db, CorrelatorConfig()).run_until_idle()
        row = db.execute("SELECT status, resolved_by FROM incidents").fetchone()
        assert row == ("resolved", "operator-user")
        actions = [
            r[0]
            for r in db.execute(
                "SELECT action FROM alert_events WHERE incident_id = %s ORDER BY seq", (iid,)
            )
        ]
        assert actions[:3] == ["opened", "acknowledged", "resolved"]


def test_cap_area_covers_every_sensor(client: httpx.Client, db: psycopg.Connection[Any]) -> None:
    episode(db)
    (iid,) = [r[0] for r in db.execute("SELECT id FROM incidents")]
    resp = client.get(f"/api/v1/incidents/{iid}/cap")
    assert resp.status_code == 200
    assert resp.headers["content-type"].startswith("application/cap+xml")
    XSD.validate(resp.content)
    root = ET.fromstring(resp.content)
    assert root.findtext("cap:msgType", namespaces=NS) == "Alert"
    infos = root.findall("cap:info", NS)
    assert [i.findtext("cap:language", namespaces=NS) for i in infos] == ["en-US", "vi-VN"]
    poly = infos[0].findtext("cap:area/cap:polygon", namespaces=NS)
    assert poly is not None
    ring = [(float(p.split(",")[1]), float(p.split(",")[0])) for p in poly.split()]
    assert ring[0] == ring[-1]
    assert all(contains(ring, lon, lat) for lat, lon in SITES)


def test_incident_events_ride_on_the_alert_stream_and_resume(
    live_api: LiveApi, tokens: dict[str, str], db: psycopg.Connection[Any]
) -> None:
    episode(db)
    query = httpx.QueryParams({"token": tokens["operator"], "since": 0})
    with connect(f"{live_api.ws_url}/ws/alerts?{query}", open_timeout=10) as ws:
        got: list[dict[str, Any]] = []
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not any(g["type"] == "incident" for g in got):
            got.append(json.loads(ws.recv(timeout=10)))
    seqs = [g["seq"] for g in got if g["type"] in ("alert", "incident")]
    assert seqs == sorted(set(seqs))
    (inc,) = [g for g in got if g["type"] == "incident"]
    assert inc["action"] == "opened" and inc["incident"]["sensors"] == ["aq-0", "aq-1", "aq-2"]
    assert [g["type"] for g in got if g["type"] != "hello"] == ["alert"] * 3 + ["incident"]


def test_maintenance_suppresses_alerts_and_refuses_bad_windows(
    live_api: LiveApi, tokens: dict[str, str], db: psycopg.Connection[Any]
) -> None:
    now = datetime.now(UTC)
    body = {
        "sensors": ["aq-m"],
        "start": (now - timedelta(minutes=1)).isoformat(),
        "end": (now + timedelta(hours=1)).isoformat(),
        "reason": "filter change",
    }
    with httpx.Client(base_url=live_api.url, timeout=30) as c:
        eng = auth(tokens["engineer"])
        assert c.post("/api/v1/maintenance", json=body).status_code == 401
        assert (
            c.post("/api/v1/maintenance", json=body, headers=auth(tokens["operator"])).status_code
            == 403
        )
        r = c.post("/api/v1/maintenance", json=body, headers=eng)
        assert r.status_code == 201, r.text
        window = r.json()
        assert window["created_by"] == "engineer-user" and window["sensors"] == ["aq-m"]
        bad = [
            ({**body, "end": body["start"]}, 422, "end must be after start"),
            ({**body, "end": (now + timedelta(days=60)).isoformat()}, 422, "at most 720 h"),
            ({**body, "sensors": []}, 422, "at least one of"),
            ({**body, "reason": "bad\x00text"}, 422, "NUL"),
            ({**body, "sensors": ["../etc"]}, 422, ""),
            ({**body, "start": "tomorrow"}, 422, "RFC 3339"),
            (body, 409, f"window {window['id']} already covers"),
        ]
        for doc, status, words in bad:
            r = c.post("/api/v1/maintenance", json=doc, headers=eng)
            assert r.status_code == status, (doc, r.text)
            assert words in r.json()["detail"], r.text
        quiet = insert_alert(db, sensor="aq-m", kind="air_quality", metric="pm25")
        shown = insert_alert(db, sensor="aq-n", kind="air_quality", metric="pm25")
        admin = auth(tokens["admin"])
        ids = [a["id"] for a in c.get("/api/v1/alerts", headers=admin).json()["items"]]
        assert ids == [shown]
        everything = c.get("/api/v1/alerts", params={"include_suppressed": True}, headers=admin)
        got = {a["id"]: a["suppressed_by"] for a in everything.json()["items"]}
        assert got == {quiet: window["id"], shown: None}
        IncidentStore(db, CorrelatorConfig()).run_until_idle()
        (sensors,) = db.execute("SELECT sensors FROM incidents").fetchone() or [None]
        assert sensors == ["aq-n"]
        listed = c.get("/api/v1/maintenance", params={"active": True}, headers=admin).json()
        assert [w["id"] for w in listed["items"]] == [window["id"]]
        r = c.delete(f"/api/v1/maintenance/{window['id']}", headers=eng)
        assert r.status_code == 200 and r.json()["cancelled_by"] == "engineer-user"
        assert c.delete(f"/api/v1/maintenance/{window['id']}", headers=eng).status_code == 409
        assert c.delete("/api/v1/maintenance/99999", headers=eng).status_code == 404
        audit = db.execute("SELECT action, actor FROM maintenance_events ORDER BY seq").fetchall()
        assert audit == [("created", "engineer-user"), ("cancelled", "engineer-user")]


def test_shelve_an_alert_or_an_incident_for_a_bounded_time(
    live_api: LiveApi, tokens: dict[str, str], db: psycopg.Connection[Any]
) -> None:
    alerts = episode(db)
    (iid,) = [r[0] for r in db.execute("SELECT id FROM incidents")]
    op = auth(tokens["operator"])
    with httpx.Client(base_url=live_api.url, timeout=30, headers=op) as c:
        bad = [
            ("/api/v1/alerts/999999/shelve", {"minutes": 30}, 404),
            (f"/api/v1/alerts/{alerts[0]}/shelve", {"minutes": 0}, 422),
            (f"/api/v1/alerts/{alerts[0]}/shelve", {"minutes": 2000}, 422),
            (f"/api/v1/alerts/{alerts[0]}/shelve", {"minutes": 5, "note": "x\x00"}, 422),
            (f"/api/v1/alerts/{alerts[0]}/shelve", {}, 422),
            ("/api/v1/incidents/999999/shelve", {"minutes": 30}, 404),
        ]
        for url, body, status in bad:
            r = c.post(url, json=body)
            assert r.status_code == status, (url, body, r.text)
        r = c.post(
            f"/api/v1/alerts/{alerts[0]}/shelve",
            json={"minutes": 30},
            headers=auth(tokens["analyst"]),
        )
        assert r.status_code == 403
        r = c.post(f"/api/v1/alerts/{alerts[0]}/shelve", json={"minutes": 30, "note": "known"})
        assert r.status_code == 200, r.text
        until = datetime.fromisoformat(r.json()["shelved_until"])
        assert timedelta(minutes=29) < until - datetime.now(UTC) <= timedelta(minutes=30)
        assert r.json()["shelved_by"] == "operator-user"
        ids = {a["id"] for a in c.get("/api/v1/alerts", params={"shelved": False}).json()["items"]}
        assert ids == set(alerts[1:])
        shelved = c.get("/api/v1/alerts", params={"shelved": True}).json()["items"]
        assert [a["id"] for a in shelved] == [alerts[0]]
        (actor, note) = db.execute(
            "SELECT actor, note FROM alert_events WHERE alert_id = %s ORDER BY seq DESC LIMIT 1",
            (alerts[0],),
        ).fetchone() or (None, None)
        assert actor == "operator-user" and note.startswith("shelved until ") and "known" in note
        # it gets worse: it comes back at once
        db.execute("UPDATE alerts SET severity = 'warning' WHERE id = %s", (alerts[1],))
        c.post(f"/api/v1/alerts/{alerts[1]}/shelve", json={"minutes": 30})
        db.execute("UPDATE alerts SET severity = 'critical' WHERE id = %s", (alerts[1],))
        back = db.execute("SELECT shelved_until FROM alerts WHERE id = %s", (alerts[1],)).fetchone()
        assert back == (None,)
        # an incident shelves with its alerts, and unshelves
        r = c.post(f"/api/v1/incidents/{iid}/shelve", json={"minutes": 60})
        assert r.status_code == 200 and r.json()["shelved_until"] is not None
        assert c.get("/api/v1/incidents", params={"shelved": False}).json()["items"] == []
        n = db.execute(
            "SELECT count(*) FROM alerts WHERE shelved_until > now() AND id = ANY(%s)", (alerts,)
        ).fetchone()
        assert n == (3,)
        r = c.post(f"/api/v1/incidents/{iid}/unshelve")
        assert r.status_code == 200 and r.json()["shelved_until"] is None
        c.post(f"/api/v1/incidents/{iid}/resolve")
        assert c.post(f"/api/v1/incidents/{iid}/shelve", json={"minutes": 5}).status_code == 409


def test_operator_load_report(client: httpx.Client, db: psycopg.Connection[Any]) -> None:
    for i in range(12):  # a flood of alerts, one incident
        insert_alert(db, sensor=f"aq-{i % 4}", kind="air_quality", metric="pm25", area="Ba Đình")
    insert_alert(db, sensor="wl-1", severity="warning", area="Tây Hồ", lat=21.07, lon=105.82)
    IncidentStore(db, CorrelatorConfig()).run_until_idle()
    r = client.get("/api/v1/operator-load", params={"hours": 1})
    assert r.status_code == 200, r.text
    doc = r.json()
    assert doc["alerts"]["new"] == 13 and doc["alerts"]["peak_10min"] == 13
    assert doc["alerts"]["flood_share"] > 0 and doc["alerts"]["standing"] == 0
    assert doc["incidents"]["new"] == 2 and doc["incidents"]["flood_share"] == 0
    assert doc["priorities"] == {"critical": 12, "warning": 1, "info": 0}
    assert doc["noisiest_sensors"][0] == {"name": "aq-0", "count": 3}
    assert len(doc["noisiest_rules"]) == 10
    assert client.get("/api/v1/operator-load", params={"hours": 0}).status_code == 422
    assert client.get("/api/v1/operator-load", params={"hours": 1000}).status_code == 422
