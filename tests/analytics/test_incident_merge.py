"""Incident merge against a real database: an alert that bridges two incidents makes them one."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import psycopg
import pytest

from analytics.alerts.incidents import IncidentStore
from tests.analytics.test_incidents import CFG, T0, alert, incidents, resolve

pytestmark = pytest.mark.db

KM = 1 / 111.32  # a kilometre of latitude
# flooding reaches 3 km: the two ends are 5 km apart, the middle 2.5 km from each
SOUTH, MIDDLE, NORTH = 21.0, 21.0 + 2.5 * KM, 21.0 + 5 * KM


@pytest.fixture
def conn(db_url: str) -> Iterator[psycopg.Connection[Any]]:
    with psycopg.connect(db_url, autocommit=True) as c:
        yield c


def flood(conn: psycopg.Connection[Any], sensor: str, lat: float, **kw: Any) -> int:
    return alert(
        conn,
        sensor,
        metric="water_level",
        rule="water_level.flood",
        kind="water_level",
        lat=lat,
        lon=105.85,
        area=sensor.upper(),
        **kw,
    )


def events(conn: psycopg.Connection[Any], incident_id: int) -> list[tuple[Any, ...]]:
    return conn.execute(
        "SELECT action, actor, detail FROM alert_events WHERE incident_id = %s ORDER BY seq",
        (incident_id,),
    ).fetchall()


def members(conn: psycopg.Connection[Any]) -> list[tuple[int, int]]:
    rows = conn.execute("SELECT incident_id, alert_id FROM incident_alerts ORDER BY alert_id")
    return [(int(i), int(a)) for i, a in rows.fetchall()]


def test_a_bridging_alert_merges_two_incidents_into_the_older(
    conn: psycopg.Connection[Any],
) -> None:
    store = IncidentStore(conn, CFG)
    south = flood(conn, "wl-s", SOUTH, severity="warning", value=40.0)
    store.run_until_idle()
    conn.execute("UPDATE incidents SET status = 'acknowledged', acknowledged_by = 'op'")
    north = flood(conn, "wl-n", NORTH, at=T0 + timedelta(minutes=5), value=55.0)
    store.run_until_idle()
    older, newer = incidents(conn)
    assert older["sensors"] == ["wl-s"] and newer["sensors"] == ["wl-n"]  # 5 km: apart

    bridge = flood(conn, "wl-m", MIDDLE, severity="warning", at=T0 + timedelta(minutes=9))
    store.run_until_idle()
    survivor, absorbed = incidents(conn)
    assert survivor["id"] == older["id"] and survivor["merged_into"] is None
    assert survivor["sensors"] == ["wl-m", "wl-n", "wl-s"]
    assert survivor["areas"] == ["WL-M", "WL-N", "WL-S"]
    assert survivor["severity"] == "critical"  # the max of all three
    assert survivor["status"] == "open"  # acknowledged, but worse now: back to the operator
    assert (survivor["alert_count"], survivor["active_alerts"]) == (3, 3)
    assert survivor["first_seen"] == T0 and survivor["last_seen"] == T0 + timedelta(minutes=9)
    assert survivor["title"].startswith("Street flooding: 3 ")
    assert absorbed["status"] == "resolved" and absorbed["merged_into"] == survivor["id"]
    assert absorbed["active_alerts"] == 0 and absorbed["resolved_by"] == "system"
    assert absorbed["resolved_at"] == T0 + timedelta(minutes=9)
    assert members(conn) == [(survivor["id"], a) for a in (south, north, bridge)]
    # one audited 'merged' event of the absorbed incident, naming the survivor and the alerts
    assert events(conn, absorbed["id"])[-1] == (
        "merged",
        "system",
        {"into": survivor["id"], "alerts": [north]},
    )
    assert [e[0] for e in events(conn, absorbed["id"])] == ["opened", "merged"]
    assert [e[0] for e in events(conn, survivor["id"])][-1] == "reopened"

    # the survivor follows every alert from now on, also after a restart of the correlator
    for a in (south, north):
        resolve(conn, a, T0 + timedelta(minutes=20))
    IncidentStore(conn, CFG).run_until_idle()
    assert [i["status"] for i in incidents(conn)] == ["open", "resolved"]
    resolve(conn, bridge, T0 + timedelta(minutes=21))
    IncidentStore(conn, CFG).run_until_idle()
    got = [(i["status"], i["merged_into"]) for i in incidents(conn)]
    assert got == [("resolved", None), ("resolved", survivor["id"])]
    assert [e[0] for e in events(conn, absorbed["id"])] == ["opened", "merged"]  # nothing more


def test_alerts_seen_together_make_one_incident_with_nothing_to_merge(
    conn: psycopg.Connection[Any],
) -> None:
    flood(conn, "wl-s", SOUTH)
    flood(conn, "wl-n", NORTH, at=T0 + timedelta(seconds=5))
    flood(conn, "wl-m", MIDDLE, at=T0 + timedelta(seconds=9))
    IncidentStore(conn, CFG).run_until_idle()  # one page: the two never reached the table
    (inc,) = incidents(conn)
    assert inc["sensors"] == ["wl-m", "wl-n", "wl-s"] and inc["alert_count"] == 3
    assert (
        conn.execute("SELECT count(*) FROM alert_events WHERE action = 'merged'").fetchone()[0] == 0
    )


def test_no_merge_across_hazards_devices_or_the_window(conn: psycopg.Connection[Any]) -> None:
    store = IncidentStore(conn, CFG)
    flood(conn, "wl-s", SOUTH)
    alert(conn, "tc-n", metric="speed", rule="speed.low", kind="traffic_camera", lat=NORTH)
    flood(conn, "wl-n", NORTH, at=T0 + timedelta(hours=1))  # the south one is 1 h old
    store.run_until_idle()
    flood(conn, "wl-m", MIDDLE, at=T0 + timedelta(hours=1, minutes=1))
    store.run_until_idle()
    got = sorted((i["hazard"], tuple(i["sensors"]), i["merged_into"]) for i in incidents(conn))
    assert got == [
        ("flooding", ("wl-m", "wl-n"), None),  # the bridge joins the recent one only
        ("flooding", ("wl-s",), None),
        ("traffic", ("tc-n",), None),
    ]


def test_three_incidents_bridged_at_once_and_a_second_merge_later(
    conn: psycopg.Connection[Any],
) -> None:
    store = IncidentStore(conn, CFG)
    east = 105.85 + 2.5 / 104.0  # 2.5 km east of the middle
    flood(conn, "wl-s", SOUTH)
    flood(conn, "wl-n", NORTH)
    alert(conn, "wl-e", metric="water_level", rule="water_level.flood", lat=MIDDLE, lon=east,
          area="WL-E", kind="water_level")  # fmt: skip
    store.run_until_idle()
    first, *rest = incidents(conn)
    assert len(rest) == 2
    flood(conn, "wl-m", MIDDLE, at=T0 + timedelta(minutes=1))
    store.run_until_idle()
    got = [(i["id"], i["status"], i["merged_into"]) for i in incidents(conn)]
    assert got == [
        (first["id"], "open", None),
        (rest[0]["id"], "resolved", first["id"]),
        (rest[1]["id"], "resolved", first["id"]),
    ]
    assert incidents(conn)[0]["sensors"] == ["wl-e", "wl-m", "wl-n", "wl-s"]
    merged = conn.execute(
        "SELECT incident_id FROM alert_events WHERE action = 'merged' ORDER BY seq"
    ).fetchall()
    assert merged == [(rest[0]["id"],), (rest[1]["id"],)]
