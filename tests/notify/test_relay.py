"""The MQTT relay: the committed event log on ioc/v1/alerts/..., resuming from its stored seq."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import orjson
import paho.mqtt.client as mqtt
import psycopg
import pytest
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from core.routing import RoutesFile
from notify.service import NotifyService
from tests.notify.conftest import insert_alert, wait_for
from tests.notify.test_dispatcher import settings
from tests.support.servers import MosquittoServer

pytestmark = [pytest.mark.db, pytest.mark.mqtt]


class Subscriber:
    """A persistent-session subscriber, so nothing is missed while the broker restarts."""

    def __init__(self, port: int) -> None:
        self.got: list[dict[str, Any]] = []
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=f"relay-test-{port}",
            protocol=MQTTProtocolVersion.MQTTv5,
        )
        self.client.on_connect = lambda c, u, f, r, p: c.subscribe("ioc/v1/alerts/#", qos=1)
        self.client.on_message = lambda c, u, m: self.got.append(
            {"topic": m.topic, **orjson.loads(m.payload)}
        )
        self.client.reconnect_delay_set(0.2, 1)
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = 300
        self.client.connect("127.0.0.1", port, clean_start=False, properties=props)
        self.client.loop_start()

    def seqs(self) -> list[int]:
        return [int(m["seq"]) for m in self.got]

    def close(self) -> None:
        self.client.disconnect()  # before loop_stop: the loop closes the socket
        self.client.loop_stop()


def cursor(db: psycopg.Connection[Any]) -> int:
    return int(db.execute("SELECT seq FROM event_cursors WHERE name = 'mqtt'").fetchone()[0])


def head(db: psycopg.Connection[Any]) -> int:
    return int(db.execute("SELECT max(seq) FROM alert_events").fetchone()[0])


def test_the_relay_resumes_after_a_restart_and_a_broker_outage(
    db: psycopg.Connection[Any], db_url: str, make_broker: Callable[..., MosquittoServer]
) -> None:
    broker = make_broker()
    sub = Subscriber(broker.port)
    s = settings(db_url, mqtt_url=broker.url, notify_mqtt_relay=True)
    try:
        time.sleep(0.3)
        first = NotifyService(s, RoutesFile())
        first.start()
        a = insert_alert(db, severity="critical")
        wait_for(lambda: sub.got)
        assert sub.got[0]["topic"] == "ioc/v1/alerts/critical/water_level"
        assert sub.got[0]["action"] == "opened" and sub.got[0]["alert"]["id"] == a
        first.stop()

        # while no relay runs: a new alert, an operator's acknowledgement
        b = insert_alert(db, severity="warning")
        with db.transaction():
            db.execute("SELECT set_config('ioc.actor', 'duty-operator', true)")
            db.execute("UPDATE alerts SET status = 'acknowledged' WHERE id = %s", (a,))
        time.sleep(0.3)
        assert len(sub.got) == 1
        second = NotifyService(s, RoutesFile())
        second.start()
        wait_for(lambda: len(sub.got) >= 3)
        assert [(m["action"], m["alert"]["id"]) for m in sub.got] == [
            ("opened", a), ("opened", b), ("acknowledged", a)
        ]  # fmt: skip
        assert sub.got[2]["actor"] == "duty-operator"
        assert sub.got[1]["topic"] == "ioc/v1/alerts/warning/water_level"

        # the broker goes away: the cursor waits for it
        broker.stop()
        c = insert_alert(db, severity="info")
        time.sleep(1.0)
        assert cursor(db) < head(db)
        broker.start()
        wait_for(lambda: any(m["alert"]["id"] == c for m in sub.got), timeout=20)
        wait_for(lambda: cursor(db) == head(db))
        assert sub.seqs() == sorted(set(sub.seqs()))  # in order, once each
        second.stop()
    finally:
        sub.close()


def test_a_relay_the_broker_does_not_let_write_alerts_keeps_its_cursor(
    db: psycopg.Connection[Any],
    db_url: str,
    make_broker: Callable[..., MosquittoServer],
    tmp_path: Any,
    caplog: pytest.LogCaptureFixture,
) -> None:
    acl = tmp_path / "acl"
    acl.write_text("topic read ioc/v1/#\n")  # anonymous clients: read only
    broker = make_broker(f"acl_file {acl}\n")
    relay = NotifyService(
        settings(db_url, mqtt_url=broker.url, notify_mqtt_relay=True), RoutesFile()
    )
    relay.start()
    try:
        before = cursor(db)
        insert_alert(db)
        wait_for(lambda: "refused 1 publications" in caplog.text)
        assert cursor(db) == before < head(db)  # left for a relay that may write
    finally:
        relay.stop()


def test_incident_events_and_alerts_in_maintenance_are_not_relayed(
    db: psycopg.Connection[Any], db_url: str, make_broker: Callable[..., MosquittoServer]
) -> None:
    broker = make_broker()
    sub = Subscriber(broker.port)
    relay = NotifyService(
        settings(db_url, mqtt_url=broker.url, notify_mqtt_relay=True), RoutesFile()
    )
    try:
        time.sleep(0.3)
        relay.start()
        db.execute(
            "INSERT INTO maintenance_windows (sensors, starts_at, ends_at, reason, created_by)"
            " VALUES ('{wl-quiet}', now() - interval '1 hour', now() + interval '1 hour', 'r', 'e')"
        )
        insert_alert(db, sensor="wl-quiet")  # recorded, suppressed
        db.execute(  # an incident event on the same log
            "INSERT INTO incidents (hazard, severity, title, title_vi, first_seen, last_seen)"
            " VALUES ('flooding', 'critical', 't', 't', now(), now())"
        )
        shown = insert_alert(db, sensor="wl-shown")
        wait_for(lambda: sub.got)
        wait_for(lambda: cursor(db) == head(db))
        time.sleep(0.5)
        assert [m["alert"]["id"] for m in sub.got] == [shown]
    finally:
        relay.stop()
        sub.close()
