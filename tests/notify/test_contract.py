"""The outside contract, against real processes: ``ioc notify`` and ``ioc api`` both running."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import orjson
import paho.mqtt.client as mqtt
import psycopg
import pytest
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

from api.models import Role
from api.tokens import create as create_token
from tests.notify.conftest import SECRET, Proc, Receiver, insert_alert, wait_for
from tests.support.servers import free_port

pytestmark = [pytest.mark.db, pytest.mark.mqtt, pytest.mark.e2e]


class AlertTopic:
    def __init__(self, mqtt_url: str) -> None:
        host, port = mqtt_url.removeprefix("mqtt://").split(":")
        self.got: list[tuple[str, dict[str, Any]]] = []
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=MQTTProtocolVersion.MQTTv5)
        self.client.on_message = lambda c, u, m: self.got.append((m.topic, orjson.loads(m.payload)))
        self.client.connect(host, int(port))
        self.client.loop_start()
        self.client.subscribe("ioc/v1/alerts/#", qos=1)[1]

    def close(self) -> None:
        self.client.disconnect()  # before loop_stop: the loop closes the socket
        self.client.loop_stop()


def test_webhook_is_signed_and_an_api_acknowledgement_reaches_mqtt(
    db: psycopg.Connection[Any],
    db_url: str,
    mqtt_url: str,
    receiver: Receiver,
    run_ioc: Callable[..., Proc],
    tmp_path: Path,
) -> None:
    routes = tmp_path / "routes.yaml"
    routes.write_text(
        f"routes:\n  - name: duty\n    min_severity: critical\n    webhook: {receiver.url}\n"
    )
    env = {
        "IOC_DATABASE_URL": db_url,
        "IOC_MQTT_URL": mqtt_url,
        "IOC_NOTIFY_ROUTES": str(routes),
        "IOC_NOTIFY_WEBHOOK_SECRET": SECRET,
    }
    port = free_port()
    topic = AlertTopic(mqtt_url)
    try:
        notify = run_ioc("notify", env=env)
        api = run_ioc("api", "--port", str(port), env=env)  # runs a second dispatcher inside
        wait_for(lambda: _up(port), timeout=30)
        time.sleep(0.5)  # both dispatchers are polling

        critical = insert_alert(db, severity="critical", message="Ngập <b>55 cm</b>")
        insert_alert(db, severity="warning")
        hook = receiver.wait(1)[0]
        assert hook.signature_ok()
        assert hook.headers["Content-Type"] == "application/json"
        assert hook.headers["X-IOC-Timestamp"].isdigit()
        doc = hook.doc
        assert doc["event"] == "opened" and doc["alert"]["id"] == critical
        assert doc["alert"]["severity"] == "critical" and doc["lang"] == "vi"
        assert hook.headers["X-IOC-Idempotency-Key"] == doc["idempotency_key"]

        token = create_token(db, "duty-operator", Role.OPERATOR, "test")
        r = httpx.post(
            f"http://127.0.0.1:{port}/api/v1/alerts/{critical}/acknowledge",
            headers={"Authorization": f"Bearer {token}"},
            json={"note": "đội xử lý đang đến"},
            timeout=10,
        )
        assert r.status_code == 200, r.text

        acked = wait_for(
            lambda: [b for t, b in topic.got if b["action"] == "acknowledged"], timeout=10
        )[0]
        assert acked["alert"]["id"] == critical and acked["actor"] == "duty-operator"
        assert acked["note"] == "đội xử lý đang đến"
        hooks = receiver.wait(2)
        assert hooks[1].doc["event"] == "acknowledged" and hooks[1].signature_ok()
        time.sleep(1.0)  # anything doubled by the two dispatchers would arrive now
        assert len(receiver.received) == 2
        topics = {t for t, _ in topic.got}
        assert "ioc/v1/alerts/critical/water_level" in topics
        seqs = [b["seq"] for _, b in topic.got]
        assert len(seqs) == 3 and len(set(seqs)) == 3  # two opened, one acknowledged, once each
        assert notify.proc.poll() is None and api.proc.poll() is None, notify.output()
    finally:
        topic.close()


def _up(port: int) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def test_a_bad_routes_file_stops_every_process_with_its_line(
    run_ioc: Callable[..., Proc], tmp_path: Path
) -> None:
    routes = tmp_path / "routes.yaml"
    routes.write_text("routes:\n  - name: duty\n    min_severity: severe\n    webhook: http://x/\n")
    env = {"IOC_NOTIFY_ROUTES": str(routes), "IOC_DATABASE_URL": "postgresql://127.0.0.1:1/x"}
    for args in (("notify", "--check-routes"), ("notify",), ("api", "--port", "1")):
        p = run_ioc(*args, env=env)
        assert p.proc.wait(30) == 2
        assert f"{routes}:3: routes.0.min_severity" in p.output(), p.output()
    routes.write_text(
        "routes:\n  - name: duty\n    min_severity: critical\n    webhook: http://127.0.0.1:8099/hook\n"
    )
    p = run_ioc("notify", "--check-routes", env=env)
    assert p.proc.wait(30) == 0
    assert "1 routes, 0 escalation policies OK" in p.output()
