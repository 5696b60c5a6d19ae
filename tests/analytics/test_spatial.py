"""Spatial corroboration: neighbours by distance, incident versus probable fault, upgrades."""

from __future__ import annotations

import time
from typing import Any

import pytest

from analytics.alerts.spatial import Corroborator, haversine_km, parse_radius
from analytics.engine.base import Signal
from analytics.service.runner import AnalyticsService
from core.codecs import encode_native
from core.topics import data_topic
from core.types import AlertClass, Sensor, SensorKind

T0 = 1_763_769_600.0
KM_LAT = 1 / 111.2  # degrees of latitude per km


def cam(i: int, north_km: float, kind: SensorKind = SensorKind.TRAFFIC_CAMERA) -> Sensor:
    return Sensor(id=f"cam-{i}", kind=kind, lat=21.0 + north_km * KM_LAT, lon=105.85)


def sig(sensor: str, t: float, active: bool = True, cls: AlertClass | None = None) -> Signal:
    return Signal(sensor, "speed", "series.anomaly", "robust_z", t, active, alert_class=cls)


def test_haversine() -> None:
    # Hoàn Kiếm Lake to Nội Bài airport is about 21 km
    assert haversine_km(21.0287, 105.8524, 21.2187, 105.8042) == pytest.approx(21.7, abs=0.5)
    assert haversine_km(21.0, 105.0, 21.0, 105.0) == 0.0


def test_neighbours_are_same_kind_within_the_radius() -> None:
    c = Corroborator(radius_km={SensorKind.TRAFFIC_CAMERA: 1.5, SensorKind.NOISE: 1.0})
    sensors = [cam(0, 0), cam(1, 1.0), cam(2, 1.4), cam(3, 3.0), cam(4, 0.5, SensorKind.NOISE)]
    c.set_registry({s.id: s for s in sensors})
    assert [n for n, _ in c.neighbours["cam-0"]] == ["cam-1", "cam-2"]
    assert c.neighbours["cam-0"][0][1] == pytest.approx(1.0, abs=0.01)
    assert [n for n, _ in c.neighbours["cam-3"]] == []
    assert c.neighbours["cam-4"] == []


def test_alone_is_a_probable_fault_shared_is_an_incident_and_the_first_is_upgraded() -> None:
    c = Corroborator(window_s=900)
    c.set_registry({s.id: s for s in [cam(0, 0), cam(1, 0.8), cam(2, 1.2), cam(3, 5)]})
    first, ups = c.classify([sig("cam-0", T0)])
    assert first[0].alert_class is AlertClass.PROBABLE_FAULT and ups == []
    assert "none of 2 neighbouring sensors" in first[0].evidence["corroboration"]
    assert {n["sensor"] for n in first[0].evidence["neighbours"]} == {"cam-1", "cam-2"}
    second, ups = c.classify([sig("cam-1", T0 + 300)])
    assert second[0].alert_class is AlertClass.INCIDENT
    assert second[0].evidence["agreeing"] == ["cam-0"]
    assert [u.sensor for u in ups] == ["cam-0"]
    assert ups[0].evidence["agreeing"] == ["cam-1"]
    # an upgrade is given once
    third, ups = c.classify([sig("cam-2", T0 + 400)])
    assert third[0].alert_class is AlertClass.INCIDENT
    assert sorted(third[0].evidence["agreeing"]) == ["cam-0", "cam-1"]
    assert ups == []


def test_anomalies_outside_the_window_do_not_corroborate() -> None:
    c = Corroborator(window_s=600)
    c.set_registry({s.id: s for s in [cam(0, 0), cam(1, 0.8)]})
    c.classify([sig("cam-0", T0)])
    late, ups = c.classify([sig("cam-1", T0 + 601)])
    assert late[0].alert_class is AlertClass.PROBABLE_FAULT and ups == []
    c.prune(T0 + 1000)
    assert c.get_state()["recent"] == {"cam-1": {"speed": T0 + 601}}


def test_far_sensors_and_isolated_sensors() -> None:
    c = Corroborator()
    c.set_registry({s.id: s for s in [cam(0, 0), cam(1, 4)]})
    c.classify([sig("cam-0", T0)])
    out, _ = c.classify([sig("cam-1", T0 + 10)])
    assert out[0].alert_class is AlertClass.PROBABLE_FAULT
    assert "no neighbouring sensor" in out[0].evidence["corroboration"]


def test_classes_set_by_stages_and_clearances_pass_through() -> None:
    c = Corroborator()
    c.set_registry({s.id: s for s in [cam(0, 0), cam(1, 0.5)]})
    c.classify([sig("cam-1", T0)])
    out, _ = c.classify([sig("cam-0", T0, cls=AlertClass.THRESHOLD), sig("cam-0", T0, False)])
    assert out[0].alert_class is AlertClass.THRESHOLD and "corroboration" not in out[0].evidence
    assert out[1].active is False


def test_min_agree_and_radius_settings() -> None:
    assert parse_radius("traffic_camera=0.5, noise=2")[SensorKind.NOISE] == 2.0
    c = Corroborator(min_agree=2)
    c.set_registry({s.id: s for s in [cam(0, 0), cam(1, 0.5), cam(2, 0.9)]})
    c.classify([sig("cam-0", T0)])
    two, _ = c.classify([sig("cam-1", T0 + 1)])
    three, ups = c.classify([sig("cam-2", T0 + 2)])
    assert two[0].alert_class is AlertClass.PROBABLE_FAULT
    assert three[0].alert_class is AlertClass.INCIDENT
    assert sorted(u.sensor for u in ups) == ["cam-0", "cam-1"]


@pytest.mark.db
@pytest.mark.mqtt
def test_through_the_service_a_shared_anomaly_is_an_incident_a_lone_one_a_fault(
    db_url: str, mqtt_url: str, db: Any
) -> None:
    """Three cameras report a collapse of speed: two neighbours and one far away."""
    from tests.analytics.test_service import Publisher, settings, uid, wait_for

    run = uid("sp")
    cams = [cam(0, 0), cam(1, 0.6), cam(2, 8)]
    ids = {c.id: f"{run}-{c.id}" for c in cams}
    for c in cams:
        db.execute(
            "INSERT INTO sensors (id, kind, lat, lon) VALUES (%s, 'traffic_camera', %s, %s)",
            (ids[c.id], c.lat, c.lon),
        )
    svc = AnalyticsService(settings(db_url, mqtt_url))
    svc.start()
    pub = Publisher(mqtt_url)
    try:
        assert svc.connected.wait(10)
        time.sleep(0.3)
        t0 = time.time() - 4 * 3600
        normal = [(t0 + 60 * i, {"speed": 30.0 + (i % 7) * 0.4}) for i in range(80)]
        for sid in ids.values():
            pub.send(data_topic("traffic_camera", sid), encode_native(normal))
        wait_for(lambda: svc.counts["readings"] >= 240)
        jam = [(t0 + 60 * (80 + i), {"speed": 4.0 + i * 0.1}) for i in range(3)]
        for sid in ids.values():
            pub.send(data_topic("traffic_camera", sid), encode_native(jam))

        def classes() -> dict[str, str]:
            rows = db.execute(
                "SELECT sensor, alert_class FROM alerts WHERE rule = 'series.anomaly'"
                " AND sensor LIKE %s",
                (f"{run}-%",),
            ).fetchall()
            return {s: c for s, c in rows}

        got = wait_for(lambda: len(classes()) == 3 and classes())
        # the first of the two neighbours may have opened as a probable fault: it is upgraded
        got = wait_for(lambda: classes()[ids["cam-0"]] == "incident" and classes())
        assert got[ids["cam-1"]] == "incident"
        assert got[ids["cam-2"]] == "probable_fault"
        ev = db.execute(
            "SELECT evidence FROM alerts WHERE sensor = %s", (ids["cam-1"],)
        ).fetchone()[0]
        assert ev["agreeing"] == [ids["cam-0"]]
        assert {n["sensor"] for n in ev["neighbours"]} == {ids["cam-0"]}
    finally:
        pub.close()
        svc.stop()
