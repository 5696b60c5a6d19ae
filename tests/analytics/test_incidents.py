"""The incident correlator against a real database: alerts written as analytics writes them."""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from psycopg.rows import dict_row

from analytics.alerts.correlator import CorrelatorConfig, parse_radii
from analytics.alerts.geometry import area_polygon, contains, convex_hull, distance_km
from analytics.alerts.hazards import Peak, hazard_of, titles
from analytics.alerts.incidents import IncidentService, IncidentStore
from core.operator_load import measure

pytestmark = pytest.mark.db

T0 = datetime(2026, 11, 22, 1, 0, tzinfo=UTC)
CFG = CorrelatorConfig(radius_km=3.0, window_s=1800.0)


@pytest.fixture
def conn(db_url: str) -> Iterator[psycopg.Connection[Any]]:
    with psycopg.connect(db_url, autocommit=True) as c:
        yield c


def alert(
    conn: psycopg.Connection[Any],
    sensor: str,
    *,
    metric: str = "pm25",
    rule: str = "pm25.level",
    severity: str = "critical",
    lat: float = 21.03,
    lon: float = 105.85,
    area: str = "Hoàn Kiếm",
    at: datetime = T0,
    value: float = 280.0,
    kind: str = "air_quality",
    alert_class: str = "threshold",
) -> int:
    row = conn.execute(
        "INSERT INTO alerts (sensor, metric, rule, detector, kind, alert_class, severity,"
        " message, value, lat, lon, area, opened_at, updated_at) VALUES"
        " (%s, %s, %s, 'threshold', %s, %s, %s, 'm', %s, %s, %s, %s, %s, %s) RETURNING id",
        (sensor, metric, rule, kind, alert_class, severity, value, lat, lon, area, at, at),
    ).fetchone()
    assert row is not None
    return int(row[0])


def resolve(conn: psycopg.Connection[Any], alert_id: int, at: datetime) -> None:
    conn.execute(
        "UPDATE alerts SET status = 'resolved', resolved_at = %s, resolved_by = 'system',"
        " updated_at = %s WHERE id = %s",
        (at, at, alert_id),
    )


def incidents(conn: psycopg.Connection[Any]) -> list[dict[str, Any]]:
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute("SELECT * FROM incidents ORDER BY id")
        return cur.fetchall()


def ring(n: int, km: float) -> list[tuple[float, float]]:
    """``n`` points on a circle of radius ``km`` around central Hanoi."""
    out = []
    for i in range(n):
        a = 2 * math.pi * i / n
        out.append((21.03 + km / 111.32 * math.sin(a), 105.85 + km / 104.0 * math.cos(a)))
    return out


def test_twelve_stations_and_their_related_metrics_are_one_incident(
    conn: psycopg.Connection[Any],
) -> None:
    store = IncidentStore(conn, CFG)
    where = ring(12, 1.4)
    for i, (lat, lon) in enumerate(where):
        alert(
            conn, f"aq-{i:02d}", lat=lat, lon=lon, at=T0 + timedelta(seconds=5 * i), value=260 + i
        )
    alert(conn, "aq-00", metric="pm10", rule="pm10.level", severity="warning", value=380)
    alert(conn, "aq-00", metric="aqi_vn", rule="aqi_vn.category", value=320)
    assert store.run_until_idle() > 0
    (inc,) = incidents(conn)
    assert inc["status"] == "open" and inc["severity"] == "critical"
    assert inc["hazard"] == "air_pollution"
    assert inc["sensors"] == [f"aq-{i:02d}" for i in range(12)]
    assert inc["areas"] == ["Hoàn Kiếm"] and inc["alert_count"] == 14
    assert inc["title"] == "Air pollution episode: 12 stations in Hoàn Kiếm, PM2.5 up to 271 µg/m³"
    assert inc["title_vi"].startswith("Đợt ô nhiễm không khí: 12 trạm tại Hoàn Kiếm")
    ring_ = [tuple(p) for p in inc["polygon"]["coordinates"][0]]
    assert all(contains(ring_, lon, lat) for lat, lon in where)
    members = conn.execute("SELECT count(*) FROM incident_alerts").fetchone()
    assert members == (14,)
    # the incident's own events ride on alert_events, in the same seq order
    ev = conn.execute(
        "SELECT action FROM alert_events WHERE incident_id = %s ORDER BY seq", (inc["id"],)
    ).fetchall()
    assert ev[0] == ("opened",)


def test_neighbours_by_distance_across_areas_but_not_far_away_or_later(
    conn: psycopg.Connection[Any],
) -> None:
    store = IncidentStore(conn, CFG)
    alert(conn, "aq-a", area="Ba Đình", lat=21.035, lon=105.83)
    alert(conn, "aq-b", area="Đống Đa", lat=21.02, lon=105.83)  # 1.7 km away: joins
    alert(conn, "aq-far", area="Sóc Sơn", lat=21.25, lon=105.85)  # 25 km: its own
    alert(conn, "aq-late", area="Ba Đình", lat=21.035, lon=105.83, at=T0 + timedelta(hours=2))
    store.run_until_idle()
    got = sorted(tuple(i["sensors"]) for i in incidents(conn))
    assert got == [("aq-a", "aq-b"), ("aq-far",), ("aq-late",)]


def test_hazards_stay_apart_and_each_device_faults_once(conn: psycopg.Connection[Any]) -> None:
    store = IncidentStore(conn, CFG)
    alert(conn, "wl-1", metric="water_level", rule="water_level.flood", kind="water_level")
    alert(conn, "aq-1")
    for rule in ("health.stuck", "health.dropout"):
        alert(conn, "cam-7", metric="speed", rule=rule, kind="traffic_camera", alert_class="device")
    alert(
        conn,
        "cam-8",
        metric="speed",
        rule="health.stuck",
        kind="traffic_camera",
        alert_class="device",
    )
    store.run_until_idle()
    got = {(i["hazard"], tuple(i["sensors"]), i["alert_count"]) for i in incidents(conn)}
    assert got == {
        ("flooding", ("wl-1",), 1),
        ("air_pollution", ("aq-1",), 1),
        ("device_fault", ("cam-7",), 2),
        ("device_fault", ("cam-8",), 1),
    }


def test_resolved_once_all_its_alerts_are_and_a_new_alert_opens_a_new_one(
    conn: psycopg.Connection[Any],
) -> None:
    store = IncidentStore(conn, CFG)
    a = alert(conn, "aq-1")
    b = alert(conn, "aq-2", severity="warning")
    store.run_until_idle()
    resolve(conn, a, T0 + timedelta(minutes=20))
    store.run_until_idle()
    assert incidents(conn)[0]["status"] == "open"
    assert incidents(conn)[0]["active_alerts"] == 1
    resolve(conn, b, T0 + timedelta(minutes=30))
    store.run_until_idle()
    (inc,) = incidents(conn)
    assert inc["status"] == "resolved" and inc["resolved_by"] == "system"
    assert inc["resolved_at"] == T0 + timedelta(minutes=30)
    alert(conn, "aq-1", at=T0 + timedelta(minutes=40))
    store.run_until_idle()
    assert [i["status"] for i in incidents(conn)] == ["resolved", "open"]
    actions = conn.execute(
        "SELECT action FROM alert_events WHERE incident_id = %s ORDER BY seq", (inc["id"],)
    ).fetchall()
    assert actions[0] == ("opened",) and actions[-1] == ("resolved",)


def test_an_acknowledged_or_shelved_incident_comes_back_when_it_gets_worse(
    conn: psycopg.Connection[Any],
) -> None:
    store = IncidentStore(conn, CFG)
    alert(conn, "aq-1", severity="warning")
    store.run_until_idle()
    conn.execute(
        "UPDATE incidents SET status = 'acknowledged', shelved_until = now() + interval '1 h'"
    )
    alert(conn, "aq-2", severity="warning")
    store.run_until_idle()
    assert incidents(conn)[0]["status"] == "acknowledged"  # more of the same: stays
    alert(conn, "aq-3", severity="critical")
    store.run_until_idle()
    assert [(i["status"], i["severity"]) for i in incidents(conn)] == [("open", "critical")]
    assert incidents(conn)[0]["shelved_until"] is None  # worse: back from the shelf at once


def test_a_restarted_correlator_resumes_at_its_cursor(conn: psycopg.Connection[Any]) -> None:
    IncidentStore(conn, CFG).run_until_idle()
    alert(conn, "aq-1")
    IncidentStore(conn, CFG).run_until_idle()
    alert(conn, "aq-2")
    IncidentStore(conn, CFG).run_until_idle()  # a new leader: loads the incident, joins aq-2
    (inc,) = incidents(conn)
    assert inc["sensors"] == ["aq-1", "aq-2"]


def test_alerts_in_maintenance_are_suppressed_and_join_no_incident(
    conn: psycopg.Connection[Any],
) -> None:
    conn.execute(
        "INSERT INTO maintenance_windows (sensors, starts_at, ends_at, reason, created_by)"
        " VALUES ('{aq-m}', %s, %s, 'filter change', 'eng')",
        (T0 - timedelta(hours=1), T0 + timedelta(minutes=10)),
    )
    quiet = alert(conn, "aq-m")
    alert(conn, "aq-1")
    late = alert(conn, "aq-m", metric="pm10", rule="pm10.level", at=T0 + timedelta(minutes=15))
    IncidentStore(conn, CFG).run_until_idle()
    supp = dict(conn.execute("SELECT id, suppressed_by FROM alerts").fetchall())
    assert supp[quiet] is not None and supp[late] is None
    (inc,) = incidents(conn)  # aq-1 and the alert after the window
    assert inc["sensors"] == ["aq-1", "aq-m"] and inc["alert_count"] == 2


def test_one_leader_among_several_services(db_url: str, conn: psycopg.Connection[Any]) -> None:
    services = [IncidentService(db_url, CFG, poll_s=0.05, retry_s=0.2) for _ in range(3)]
    for s in services:
        s.start()
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not any(s.leader.is_set() for s in services):
            time.sleep(0.05)
        alert(conn, "aq-1")
        alert(conn, "aq-2")
        while time.monotonic() < deadline and not incidents(conn):
            time.sleep(0.05)
        time.sleep(0.3)
        assert sum(s.leader.is_set() for s in services) == 1
        (inc,) = incidents(conn)
        assert inc["sensors"] == ["aq-1", "aq-2"]
        leader = next(s for s in services if s.leader.is_set())
        leader.stop()  # another takes over and carries on from the cursor
        alert(conn, "aq-3")
        while time.monotonic() < deadline + 10 and len(incidents(conn)[0]["sensors"]) < 3:
            time.sleep(0.05)
        assert incidents(conn)[0]["sensors"] == ["aq-1", "aq-2", "aq-3"]
        assert sum(s.leader.is_set() for s in services) == 1
    finally:
        for s in services:
            s.stop()


# -- without a database ------------------------------------------------------------------


def test_hazard_of_alerts() -> None:
    assert hazard_of({"metric": "aqi_vn", "rule": "aqi_vn.category"}) == "air_pollution"
    assert hazard_of({"metric": "rainfall", "rule": "series.anomaly"}) == "flooding"
    assert hazard_of({"metric": "speed", "rule": "camera.multivariate"}) == "traffic"
    assert hazard_of({"metric": "humidity", "rule": "humidity.dry"}) == "fire_weather"
    assert hazard_of({"metric": "pm25", "rule": "health.stuck"}) == "device_fault"
    assert hazard_of({"metric": "water_level", "rule": "water_level.implausible"}) == "device_fault"


def test_titles_in_both_languages() -> None:
    t = titles(
        "air_pollution", [f"s{i}" for i in range(25)], list("ABCDEFG"), Peak("pm25", 301.4), []
    )
    assert t.en == "Air pollution episode: 25 stations in 7 areas, PM2.5 up to 301 µg/m³"
    assert t.vi == "Đợt ô nhiễm không khí: 25 trạm tại 7 khu vực, bụi mịn PM2.5 lên tới 301 µg/m³"
    t = titles("traffic", ["c1"], ["Cầu Giấy"], Peak("speed", 4.5), [])
    assert t.en == "Traffic congestion: 1 camera in Cầu Giấy, speed down to 4.5 km/h"
    assert t.vi.endswith("tốc độ xuống 4,5 km/h")
    t = titles("device_fault", ["cam-7"], ["Ba Đình"], None, ["speed"])
    assert t.en == "Device fault: cam-7 in Ba Đình, speed"


def test_polygon_covers_every_sensor() -> None:
    assert convex_hull([(0, 0), (1, 0), (1, 1), (0, 1), (0.5, 0.5)]) == [
        (0, 0),
        (1, 0),
        (1, 1),
        (0, 1),
    ]
    for pts in ([(21.0, 105.8)], [(21.0, 105.8), (21.01, 105.81)], ring(7, 2.0)):
        poly = area_polygon(pts)
        assert poly is not None and poly[0] == poly[-1] and len(poly) >= 5
        assert all(contains(poly, lon, lat) for lat, lon in pts)
    assert area_polygon([]) is None
    assert distance_km(21.0, 105.8, 21.0, 105.8) == 0.0
    assert 110 < distance_km(21.0, 105.8, 22.0, 105.8) < 112


def test_alerts_without_a_place_take_it_from_the_registry(conn: psycopg.Connection[Any]) -> None:
    for i in range(3):
        conn.execute(
            "INSERT INTO sensors (id, kind, lat, lon, area, source) VALUES"
            " (%s, 'air_quality', %s, 105.85, 'Đống Đa', 'api')",
            (f"aq-r{i}", 21.0 + i * 0.001),
        )
        # opened before analytics knew the sensor: no position, no area
        conn.execute(
            "INSERT INTO alerts (sensor, metric, rule, detector, kind, alert_class, severity,"
            " message, opened_at, updated_at) VALUES (%s, 'pm25', 'pm25.level', 'threshold',"
            " 'air_quality', 'threshold', 'critical', 'm', %s, %s)",
            (f"aq-r{i}", T0, T0),
        )
    IncidentStore(conn, CFG).run_until_idle()
    (inc,) = incidents(conn)
    assert inc["sensors"] == ["aq-r0", "aq-r1", "aq-r2"] and inc["areas"] == ["Đống Đa"]
    assert inc["polygon"] is not None


def test_operator_load_per_isa_18_2() -> None:
    start = 0.0
    # 12 new in the first 10 minutes (a flood), one chattering alert (3 in 50 s), then quiet
    news = [(i, 30.0 * i) for i in range(9)] + [(99, 400.0), (99, 420.0), (99, 450.0)]
    spans = [(0.0, 100.0), (0.0, math.inf), (3600.0, 3600.0 + 2 * 86_400)]
    load = measure("alerts", news, spans, start, 3 * 86_400.0)
    assert load.new == 12 and load.peak_10min == 12 and load.busiest_hour == 12
    assert load.flood_share == pytest.approx(1 / (3 * 144))
    assert load.chattering == 1 and load.standing == 2
    assert load.per_hour == pytest.approx(12 / 72)
    quiet = measure("incidents", [(1, 10.0), (2, 700.0)], [], start, 3600.0)
    assert (quiet.peak_10min, quiet.flood_share, quiet.chattering) == (1, 0.0, 0)


def test_regional_hazards_reach_further(conn: psycopg.Connection[Any]) -> None:
    store = IncidentStore(conn, CFG)
    for i, lat in enumerate((21.00, 21.09)):  # 10 km apart, different areas
        alert(conn, f"aq-{i}", lat=lat, area=f"A{i}")
        alert(
            conn, f"wl-{i}", lat=lat, area=f"A{i}", metric="water_level", rule="water_level.flood"
        )
    store.run_until_idle()
    got = sorted((i["hazard"], tuple(i["sensors"])) for i in incidents(conn))
    assert got == [
        ("air_pollution", ("aq-0", "aq-1")),
        ("flooding", ("wl-0",)),
        ("flooding", ("wl-1",)),
    ]
    assert parse_radii("air_pollution=15, noise = 1") == {"air_pollution": 15.0, "noise": 1.0}
    for bad in ("air_pollution", "x=0", "x=abc", "=3"):
        with pytest.raises(ValueError, match=r"radius|float"):
            parse_radii(bad)


def test_the_first_run_keeps_its_place_and_an_evaluation_reads_the_whole_log(
    conn: psycopg.Connection[Any],
) -> None:
    old = alert(conn, "aq-old", area="Ba Vì", lat=21.2, lon=105.4)
    resolve(conn, old, T0 + timedelta(minutes=10))  # history: all resolved
    IncidentStore(conn, CFG).run_until_idle()
    assert incidents(conn) == []  # a live start does not dig up resolved history
    new = alert(conn, "aq-new", at=T0 + timedelta(hours=3))
    resolve(conn, new, T0 + timedelta(hours=3, minutes=5))  # opened and resolved between steps
    IncidentStore(conn, CFG).run_until_idle()
    assert [(i["sensors"], i["status"]) for i in incidents(conn)] == [(["aq-new"], "resolved")]
    conn.execute("DELETE FROM incidents; DELETE FROM incident_cursor")
    IncidentStore(conn, CFG, start_seq=0).run_until_idle()  # an evaluation: the whole log
    assert sorted(i["sensors"][0] for i in incidents(conn)) == ["aq-new", "aq-old"]


def test_a_district_or_a_kind_in_maintenance(conn: psycopg.Connection[Any]) -> None:
    conn.execute(
        "INSERT INTO maintenance_windows (areas, kinds, starts_at, ends_at, reason, created_by)"
        " VALUES ('{Tây Hồ}', '{water_level}', %s, %s, 'pump works', 'eng')",
        (T0 - timedelta(hours=1), T0 + timedelta(hours=1)),
    )
    in_area = alert(conn, "aq-th", area="Tây Hồ")
    of_kind = alert(
        conn, "wl-1", metric="water_level", rule="water_level.flood", kind="water_level"
    )
    shown = alert(conn, "aq-hk")
    supp = dict(conn.execute("SELECT id, suppressed_by IS NOT NULL FROM alerts").fetchall())
    assert supp == {in_area: True, of_kind: True, shown: False}
    # an update after the window shows it again
    conn.execute(
        "UPDATE alerts SET updated_at = %s WHERE id = %s", (T0 + timedelta(hours=2), in_area)
    )
    row = conn.execute("SELECT suppressed_by FROM alerts WHERE id = %s", (in_area,)).fetchone()
    assert row == (None,)
