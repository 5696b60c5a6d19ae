"""After a merge, REST, the websocket and CAP agree: the absorbed incident points to the survivor."""

from __future__ import annotations

import json
import time
import xml.etree.ElementTree as ET
from typing import Any

import httpx
import psycopg
import pytest
from websockets.sync.client import connect

from analytics.alerts.correlator import CorrelatorConfig
from analytics.alerts.geometry import contains
from analytics.alerts.incidents import IncidentStore
from tests.api.conftest import LiveApi, auth, insert_alert
from tests.api.test_incidents import NS, XSD

pytestmark = pytest.mark.db

KM = 1 / 111.32
SITES = {"wl-s": 21.0, "wl-n": 21.0 + 5 * KM, "wl-m": 21.0 + 2.5 * KM}  # flooding: 3 km


def flood(db: psycopg.Connection[Any], sensor: str) -> int:
    return insert_alert(
        db,
        sensor=sensor,
        rule="water_level.flood",
        lat=SITES[sensor],
        lon=105.85,
        area=sensor.upper(),
    )


def merged(db: psycopg.Connection[Any]) -> tuple[int, int]:
    """Two flooding incidents 5 km apart, then the alert between them: (survivor, absorbed)."""
    store = IncidentStore(db, CorrelatorConfig())
    for sensor in ("wl-s", "wl-n"):
        flood(db, sensor)
        store.run_until_idle()
    flood(db, "wl-m")
    store.run_until_idle()
    rows = db.execute("SELECT id, merged_into FROM incidents ORDER BY id").fetchall()
    (survivor, none), (absorbed, into) = rows
    assert none is None and into == survivor
    return survivor, absorbed


def test_rest_lists_the_survivor_and_the_absorbed_points_to_it(
    live_api: LiveApi, tokens: dict[str, str], db: psycopg.Connection[Any]
) -> None:
    survivor, absorbed = merged(db)
    ops = auth(tokens["operator"])
    with httpx.Client(base_url=live_api.url, headers=ops, timeout=30) as c:
        (item,) = c.get("/api/v1/incidents", params={"status": "open"}).json()["items"]
        assert item["id"] == survivor and item["merged_into"] is None
        assert item["sensors"] == ["wl-m", "wl-n", "wl-s"]
        one = c.get(f"/api/v1/incidents/{survivor}").json()
        assert one["merged_from"] == [absorbed] and len(one["alerts"]) == 3
        gone = c.get(f"/api/v1/incidents/{absorbed}").json()
        assert gone["status"] == "resolved" and gone["merged_into"] == survivor
        assert gone["alerts"] == [] and gone["events"][-1]["action"] == "merged"
        for verb in ("acknowledge", "resolve"):
            r = c.post(f"/api/v1/incidents/{absorbed}/{verb}")
            assert r.status_code == 409
            assert f"merged into incident {survivor}" in r.json()["detail"]
        r = c.post(f"/api/v1/incidents/{absorbed}/resolve", headers={"Accept-Language": "vi"})
        assert f"đã được gộp vào sự cố {survivor}" in r.json()["detail"]


def test_cap_of_the_survivor_covers_all_sensors_and_names_the_absorbed(
    client: httpx.Client, db: psycopg.Connection[Any]
) -> None:
    survivor, absorbed = merged(db)
    doc = client.get(f"/api/v1/incidents/{survivor}/cap").content
    XSD.validate(doc)
    root = ET.fromstring(doc)
    sender = root.findtext("cap:sender", namespaces=NS)
    assert root.findtext("cap:incidents", namespaces=NS) == (
        f"{sender}.incident.{survivor} {sender}.incident.{absorbed}"
    )
    poly = root.findtext("cap:info/cap:area/cap:polygon", namespaces=NS)
    assert poly is not None
    ring = [(float(p.split(",")[1]), float(p.split(",")[0])) for p in poly.split()]
    assert all(contains(ring, 105.85, lat) for lat in SITES.values())

    doc = client.get(f"/api/v1/incidents/{absorbed}/cap").content
    XSD.validate(doc)
    root = ET.fromstring(doc)
    assert root.findtext("cap:msgType", namespaces=NS) == "Update"
    assert root.findtext("cap:incidents", namespaces=NS) == (
        f"{sender}.incident.{absorbed} {sender}.incident.{survivor}"
    )
    en, vi = root.findall("cap:info", NS)
    assert en.findtext("cap:responseType", namespaces=NS) == "None"
    assert f"merged into incident {survivor}" in (
        en.findtext("cap:instruction", namespaces=NS) or ""
    )
    assert f"gộp vào sự cố {survivor}" in (vi.findtext("cap:instruction", namespaces=NS) or "")
    params = {
        p.findtext("cap:valueName", namespaces=NS): p.findtext("cap:value", namespaces=NS)
        for p in en.findall("cap:parameter", NS)
    }
    assert params["merged_into"] == f"{sender}.incident.{survivor}"


def test_the_websocket_carries_the_merge_in_seq_order(
    live_api: LiveApi, tokens: dict[str, str], db: psycopg.Connection[Any]
) -> None:
    survivor, absorbed = merged(db)
    query = httpx.QueryParams({"token": tokens["operator"], "since": 0})
    got: list[dict[str, Any]] = []
    with connect(f"{live_api.ws_url}/ws/alerts?{query}", open_timeout=10) as ws:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not any(g.get("action") == "merged" for g in got):
            got.append(json.loads(ws.recv(timeout=10)))
    seqs = [g["seq"] for g in got if "seq" in g]
    assert seqs == sorted(set(seqs))
    incs = [(g["action"], g["incident"]["id"]) for g in got if g["type"] == "incident"]
    assert incs[-1] == ("merged", absorbed)
    last = [g for g in got if g["type"] == "incident"][-1]["incident"]
    assert last["status"] == "resolved" and last["merged_into"] == survivor
    # the survivor's update (all three sensors) comes before the merge closes the other
    before = [
        g["incident"] for g in got if g["type"] == "incident" and g["incident"]["id"] == survivor
    ]
    assert before[-1]["sensors"] == ["wl-m", "wl-n", "wl-s"]
