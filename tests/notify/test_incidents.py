"""Incidents on the notification road: routing, one page per episode, escalation, shelving, MQTT."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import orjson
import paho.mqtt.client as mqtt
import psycopg
import pytest
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

from analytics.alerts.correlator import CorrelatorConfig
from analytics.alerts.incidents import IncidentStore
from core.routing import RoutesFile, parse_routes
from notify.service import NotifyService
from tests.notify.conftest import Receiver, insert_alert, wait_for
from tests.notify.test_dispatcher import settings
from tests.support.servers import MosquittoServer

pytestmark = [pytest.mark.db]


@pytest.fixture
def start(db_url: str) -> Iterator[Callable[..., NotifyService]]:
    started: list[NotifyService] = []

    def run(routes_yaml: str, **kw: Any) -> NotifyService:
        svc = NotifyService(settings(db_url, **kw), parse_routes(routes_yaml))
        svc.start()
        started.append(svc)
        return svc

    yield run
    for svc in started:
        svc.stop()


@pytest.fixture
def correlator(db_url: str) -> Iterator[None]:
    """The analytics correlator, grouping alerts into incidents as `ioc analytics` does."""
    stop = threading.Event()

    def loop() -> None:
        with psycopg.connect(db_url, autocommit=True) as conn:
            store = IncidentStore(conn, CorrelatorConfig(), start_seq=0)
            while not stop.is_set():
                if store.step() == 0:
                    stop.wait(0.05)

    t = threading.Thread(target=loop, daemon=True)
    t.start()
    yield
    stop.set()
    t.join(10)


def air_alert(db: psycopg.Connection[Any], sensor: str, **kw: Any) -> int:
    fields: dict[str, Any] = dict(
        sensor=sensor, metric="pm25", rule="pm25.who", kind="air_quality", value=301.0,
        message="PM2.5 301 µg/m³", area="Cầu Giấy",
    )  # fmt: skip
    fields.update(kw)
    return insert_alert(db, **fields)


def insert_incident(db: psycopg.Connection[Any], **kw: Any) -> int:
    doc: dict[str, Any] = {
        "hazard": "air_pollution",
        "severity": "critical",
        "title": "Air pollution episode: 3 stations in Cầu Giấy, PM2.5 up to 301 µg/m³",
        "title_vi": "Đợt ô nhiễm không khí: 3 trạm tại Cầu Giấy, bụi mịn PM2.5 lên tới 301 µg/m³",
        "areas": ["Cầu Giấy"],
        "kinds": ["air_quality"],
    }
    doc.update(kw)
    row = db.execute(
        "INSERT INTO incidents (hazard, severity, title, title_vi, areas, kinds, sensors,"
        " peak, alert_count, active_alerts, first_seen, last_seen) VALUES (%(hazard)s,"
        " %(severity)s, %(title)s, %(title_vi)s, %(areas)s, %(kinds)s, '{aq-1,aq-2,aq-3}',"
        """ '{"metric": "pm25", "value": 301}', 3, 3, now(), now()) RETURNING id""",
        doc,
    ).fetchone()
    assert row is not None
    return int(row[0])


def as_operator(db: psycopg.Connection[Any], sql: str, *args: Any) -> None:
    with db.transaction():
        db.execute("SELECT set_config('ioc.actor', 'duty-operator', true)")
        db.execute(sql, args)


def by_path(rcv: Receiver, path: str) -> list[dict[str, Any]]:
    with rcv.lock:
        return [h.doc for h in rcv.received if h.path == path]


def test_an_episode_pages_once_as_an_incident_while_an_alert_route_still_gets_each_alert(
    db: psycopg.Connection[Any],
    receiver: Receiver,
    start: Callable[..., NotifyService],
    correlator: None,
) -> None:
    base = receiver.url.removesuffix("/hook")
    start(
        f"""
routes:
  - name: episodes
    subject: incident
    min_severity: critical
    hazards: [air_pollution]
    districts: [Cầu Giấy, Đống Đa]
    webhook: {base}/incidents
  - name: every-alert
    min_severity: critical
    webhook: {base}/alerts
""",
        notify_group_wait_s=5.0,
    )
    alerts = [air_alert(db, f"aq-{i}") for i in range(5)]
    receiver.wait(6, timeout=15)  # the incident's opening and each alert's
    incident = int(db.execute("SELECT id FROM incidents").fetchone()[0])
    assert db.execute("SELECT count(*) FROM incidents").fetchone()[0] == 1
    pages = by_path(receiver, "/incidents")
    assert [(p["event"], p["incident"]["id"]) for p in pages] == [("opened", incident)]
    assert "alert" not in pages[0] and pages[0]["incident"]["hazard"] == "air_pollution"
    assert pages[0]["title"].startswith("Nghiêm trọng · sự cố mới mở: Đợt ô nhiễm không khí")
    assert sorted(p["alert"]["id"] for p in by_path(receiver, "/alerts")) == alerts
    assert all(h.signature_ok() for h in receiver.received)

    as_operator(db, "UPDATE incidents SET status = 'acknowledged' WHERE id = %s", incident)
    receiver.wait(7)
    pages = by_path(receiver, "/incidents")
    assert [(p["event"], p["actor"]) for p in pages][1:] == [("acknowledged", "duty-operator")]
    assert "đã tiếp nhận bởi duty-operator" in pages[1]["text"]
    rows = db.execute(
        "SELECT count(*) FILTER (WHERE incident_id IS NOT NULL AND alert_id IS NULL),"
        " count(*) FILTER (WHERE alert_id IS NOT NULL) FROM notifications"
    ).fetchone()
    assert rows == (2, 5)
    time.sleep(0.5)
    assert len(by_path(receiver, "/incidents")) == 2  # no page for any member alert


def test_with_no_correlator_an_alert_on_an_incident_route_goes_out_after_the_group_wait(
    db: psycopg.Connection[Any], receiver: Receiver, start: Callable[..., NotifyService]
) -> None:
    start(
        f"routes:\n  - name: episodes\n    subject: incident\n    webhook: {receiver.url}\n",
        notify_group_wait_s=0.6,
    )
    began = time.monotonic()
    alert = air_alert(db, "aq-alone")
    hooks = receiver.wait(1)
    assert time.monotonic() - began >= 0.5
    assert hooks[0].doc["alert"]["id"] == alert and "incident" not in hooks[0].doc


def policy(base: str, *, first: float = 0.0, reminders: int = 1) -> str:
    return f"""
escalations:
  - name: episode-duty
    subject: incident
    min_severity: critical
    hazards: [air_pollution]
    steps:
      - after_minutes: {first}
        webhook: {base}/tier1
      - after_minutes: {first + 0.02}
        webhook: {base}/tier2
        language: en
    repeat_minutes: 0.01
    max_reminders: {reminders}
"""


def test_an_unacknowledged_critical_incident_climbs_the_tiers_and_every_step_is_audited(
    db: psycopg.Connection[Any], receiver: Receiver, start: Callable[..., NotifyService]
) -> None:
    start(policy(receiver.url.removesuffix("/hook")))
    incident = insert_incident(db)
    insert_incident(db, hazard="flooding", title="Street flooding", title_vi="Ngập úng")
    insert_incident(db, severity="warning")  # below the policy
    hooks = receiver.wait(3, timeout=15)
    assert [(h.path, h.doc["reason"], h.doc["step"]) for h in hooks] == [
        ("/tier1", "escalation", 1), ("/tier2", "escalation", 2), ("/tier2", "reminder", 1)
    ]  # fmt: skip
    assert all(h.doc["incident"]["id"] == incident and h.doc["event"] == "notified" for h in hooks)
    assert hooks[0].doc["title"].startswith("[Chuyển cấp 1] Nghiêm trọng · sự cố")
    assert "chuyển cấp 1 theo chính sách episode-duty" in hooks[0].doc["text"]
    assert hooks[1].doc["title"].startswith("[Escalation 2] Critical · incident")
    assert "still not acknowledged (reminder" not in hooks[1].doc["text"]
    assert "The incident is still not acknowledged (reminder 1)" in hooks[2].doc["text"]
    notes = [
        r[0]
        for r in db.execute(
            "SELECT note FROM alert_events WHERE incident_id = %s AND action = 'notified'"
            " ORDER BY seq",
            (incident,),
        )
    ]
    assert notes == [
        "chuyển cấp / escalation episode-duty: 1/2",
        "chuyển cấp / escalation episode-duty: 2/2",
        "nhắc lại / reminder episode-duty: 1",
    ]
    time.sleep(1.2)
    assert len(receiver.received) == 3
    assert db.execute("SELECT count(*) FROM notify_escalations").fetchone()[0] == 0


def test_acknowledging_the_incident_stops_its_escalation(
    db: psycopg.Connection[Any], receiver: Receiver, start: Callable[..., NotifyService]
) -> None:
    start(policy(receiver.url.removesuffix("/hook"), reminders=5))
    incident = insert_incident(db)
    assert receiver.wait(1)[0].path == "/tier1"
    as_operator(db, "UPDATE incidents SET status = 'acknowledged' WHERE id = %s", incident)
    wait_for(lambda: db.execute("SELECT count(*) FROM notify_escalations").fetchone()[0] == 0)
    time.sleep(2.0)  # tier 2 was due 1.2 s after opening
    assert [h.path for h in receiver.received] == ["/tier1"]


def test_a_shelved_incident_holds_its_escalation_until_it_is_unshelved(
    db: psycopg.Connection[Any], receiver: Receiver, start: Callable[..., NotifyService]
) -> None:
    start(policy(receiver.url.removesuffix("/hook"), first=0.01))
    incident = insert_incident(db)
    as_operator(
        db, "UPDATE incidents SET shelved_until = now() + interval '1 hour' WHERE id = %s", incident
    )
    time.sleep(2.5)  # tier 1 was due after 0.6 s, tier 2 after 1.8 s
    assert receiver.received == []
    assert db.execute("SELECT count(*) FROM notify_escalations").fetchone()[0] == 1
    as_operator(db, "UPDATE incidents SET shelved_until = NULL WHERE id = %s", incident)
    hooks = receiver.wait(2)  # both steps fell due meanwhile: taken at once, in order
    assert sorted((h.doc["step"], h.path) for h in hooks[:2]) == [(1, "/tier1"), (2, "/tier2")]
    actions = [
        r[0]
        for r in db.execute(
            "SELECT action FROM alert_events WHERE incident_id = %s ORDER BY seq", (incident,)
        )
    ]
    assert actions[:3] == ["opened", "shelved", "unshelved"]


def test_events_of_a_shelved_alert_are_not_sent_and_unshelving_is_an_event(
    db: psycopg.Connection[Any], receiver: Receiver, start: Callable[..., NotifyService]
) -> None:
    start(
        f"routes:\n  - name: duty\n    events: [resolved, unshelved]\n    webhook: {receiver.url}\n"
    )
    shelved, plain = insert_alert(db), insert_alert(db)
    as_operator(
        db, "UPDATE alerts SET shelved_until = now() + interval '1 hour' WHERE id = %s", shelved
    )
    as_operator(db, "UPDATE alerts SET status = 'resolved' WHERE id = %s", shelved)
    as_operator(db, "UPDATE alerts SET status = 'resolved' WHERE id = %s", plain)
    hooks = receiver.wait(1)  # events are planned in seq order: the shelved one came first
    assert [(h.doc["event"], h.doc["alert"]["id"]) for h in hooks] == [("resolved", plain)]
    other = insert_alert(db)
    as_operator(
        db, "UPDATE alerts SET shelved_until = now() + interval '1 hour' WHERE id = %s", other
    )
    as_operator(db, "UPDATE alerts SET shelved_until = NULL WHERE id = %s", other)
    hooks = receiver.wait(2)
    assert [(h.doc["event"], h.doc["alert"]["id"]) for h in hooks][1:] == [("unshelved", other)]
    assert "shelved_until" not in hooks[1].doc["alert"]  # the alert payload is unchanged


def test_alerts_under_maintenance_are_never_notified_and_hold_their_escalation(
    db: psycopg.Connection[Any], receiver: Receiver, start: Callable[..., NotifyService]
) -> None:
    base = receiver.url.removesuffix("/hook")
    start(
        f"""
routes:
  - name: duty
    min_severity: critical
    webhook: {base}/route
escalations:
  - name: flood-duty
    min_severity: critical
    steps:
      - after_minutes: 0.02
        webhook: {base}/tier1
"""
    )
    before = insert_alert(db, area="Tây Hồ")
    assert receiver.wait(1)[0].path == "/route"
    window = db.execute(
        "INSERT INTO maintenance_windows (areas, starts_at, ends_at, reason, created_by)"
        " VALUES ('{Tây Hồ}', now() - interval '1 hour', now() + interval '1 hour',"
        " 'thay cảm biến', 'engineer') RETURNING id"
    ).fetchone()[0]
    db.execute("UPDATE alerts SET occurrences = occurrences + 1 WHERE id = %s", (before,))
    during = insert_alert(db, area="Tây Hồ")
    assert (
        db.execute("SELECT count(*) FROM alerts WHERE suppressed_by = %s", (window,)).fetchone()[0]
        == 2
    )
    time.sleep(2.5)  # the step was due 1.2 s after opening
    assert [h.path for h in receiver.received] == ["/route"]
    db.execute("UPDATE maintenance_windows SET cancelled_at = now() WHERE id = %s", (window,))
    hooks = receiver.wait(2)
    assert (hooks[1].path, hooks[1].doc["alert"]["id"]) == ("/tier1", before)
    time.sleep(0.5)
    assert all(h.doc["alert"]["id"] != during for h in receiver.received)


@pytest.mark.mqtt
def test_incident_events_go_out_on_their_own_mqtt_topics(
    db: psycopg.Connection[Any], db_url: str, make_broker: Callable[..., MosquittoServer]
) -> None:
    broker = make_broker()
    got: list[tuple[str, dict[str, Any]]] = []
    client = mqtt.Client(
        CallbackAPIVersion.VERSION2, client_id="incident-sub", protocol=MQTTProtocolVersion.MQTTv5
    )
    client.on_connect = lambda c, u, f, r, p: c.subscribe("ioc/v1/#", qos=1)
    client.on_message = lambda c, u, m: got.append((m.topic, orjson.loads(m.payload)))
    client.connect("127.0.0.1", broker.port)
    client.loop_start()
    svc = NotifyService(settings(db_url, mqtt_url=broker.url, notify_mqtt_relay=True), RoutesFile())
    try:
        time.sleep(0.3)
        svc.start()
        alert = insert_alert(db)
        incident = insert_incident(db)
        as_operator(db, "UPDATE incidents SET status = 'resolved' WHERE id = %s", incident)
        wait_for(lambda: len(got) >= 3)
        assert [(t, m["event"]) for t, m in got] == [
            ("ioc/v1/alerts/critical/water_level", "opened"),
            ("ioc/v1/incidents/critical/air_pollution", "opened"),
            ("ioc/v1/incidents/critical/air_pollution", "resolved"),
        ]
        assert got[0][1]["alert"]["id"] == alert and "incident" not in got[0][1]
        assert got[2][1]["incident"]["id"] == incident and got[2][1]["actor"] == "duty-operator"
        assert got[2][1]["incident"]["title_vi"].startswith("Đợt ô nhiễm")
    finally:
        svc.stop()
        client.disconnect()
        client.loop_stop()
