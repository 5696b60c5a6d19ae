"""Delivery history of an alert and the admin routes API, with a real dispatcher and receiver."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx
import psycopg
import pytest

from core.routing import RoutesFile, parse_routes
from notify.service import NotifyService
from tests.api.conftest import LiveApi, auth
from tests.notify.conftest import Receiver, insert_alert, receiver, wait_for
from tests.notify.test_dispatcher import settings

pytestmark = pytest.mark.db
__all__ = ["receiver"]  # the fixture


@pytest.fixture
def service(db_url: str) -> Iterator[NotifyService]:
    svc = NotifyService(settings(db_url), RoutesFile())  # routes only from the database
    svc.start()
    yield svc
    svc.stop()


def test_routes_are_managed_by_engineers_and_deliveries_are_shown_on_the_alert(
    live_api: LiveApi,
    tokens: dict[str, str],
    db: psycopg.Connection[Any],
    receiver: Receiver,
    service: NotifyService,
) -> None:
    url = live_api.url + "/api/v1/notify/routes/duty"
    secret_url = receiver.url + "?token=very-secret-value"
    body = {"spec": {"min_severity": "critical", "webhook": secret_url, "language": "en"}}
    with httpx.Client(timeout=10) as http:
        r = http.put(url, json=body, headers=auth(tokens["operator"]))
        assert r.status_code == 403
        bad = {"spec": {"min_severity": "severe", "webhook": receiver.url}}
        r = http.put(url, json=bad, headers=auth(tokens["engineer"]))
        assert r.status_code == 422 and "spec.min_severity" in r.json()["detail"]
        r = http.put(url, json=body, headers=auth(tokens["engineer"]))
        assert r.status_code == 200, r.text
        assert r.json()["updated_by"] == "engineer-user" and r.json()["type"] == "route"
        listed = http.get(live_api.url + "/api/v1/notify/routes", headers=auth(tokens["admin"]))
        assert [x["name"] for x in listed.json()] == ["duty"]

        receiver.fail_first = 1
        alert = wait_for(lambda: _alert_when_route_is_read(db, service))
        hook = receiver.wait(1)[0]
        assert hook.doc["alert"]["id"] == alert and hook.doc["lang"] == "en"

        path = f"{live_api.url}/api/v1/alerts/{alert}/notifications"
        got = wait_for(
            lambda: (
                (d := http.get(path, headers=auth(tokens["operator"])).json())
                and d[0]["status"] == "sent"
                and d
            )
        )
        (delivery,) = got
        assert delivery["attempts"] == 2 and delivery["reason"] == "event"
        assert delivery["route"] == "duty" and delivery["idempotency_key"] == f"ev:{hook.doc['seq']}:duty:0"  # fmt: skip
        assert "very-secret-value" not in str(got) and "target" not in delivery
        missing = http.get(f"{live_api.url}/api/v1/alerts/999999/notifications", headers=auth(tokens["operator"]))  # fmt: skip
        assert missing.status_code == 404

        assert http.delete(url, headers=auth(tokens["admin"])).status_code == 204
        assert http.delete(url, headers=auth(tokens["admin"])).status_code == 404


def _alert_when_route_is_read(db: psycopg.Connection[Any], service: NotifyService) -> int | None:
    """Insert an alert once the dispatcher has read the new route from the database."""
    book = service.planner.book
    with psycopg.connect(db.info.dsn, autocommit=True) as conn:
        if not book.get(conn).routes:
            return None
    return insert_alert(db)


def test_an_operator_shelves_unshelves_and_acknowledges_an_incident_through_the_api(
    live_api: LiveApi, tokens: dict[str, str], db: psycopg.Connection[Any], receiver: Receiver
) -> None:
    base = receiver.url.removesuffix("/hook")
    routes = parse_routes(
        f"""
routes:
  - name: episodes
    subject: incident
    min_severity: critical
    events: [opened, unshelved, acknowledged]
    webhook: {base}/route
escalations:
  - name: episode-duty
    subject: incident
    min_severity: critical
    steps:
      - after_minutes: 0.01
        webhook: {base}/tier1
"""
    )
    svc = NotifyService(settings(db.info.dsn), routes)
    svc.start()
    try:
        incident = int(
            db.execute(
                "INSERT INTO incidents (hazard, severity, title, title_vi, areas, kinds,"
                " first_seen, last_seen) VALUES ('flooding', 'critical', 'Street flooding',"
                " 'Ngập úng', '{Cầu Giấy}', '{water_level}', now(), now()) RETURNING id"
            ).fetchone()[0]
        )
        op = auth(tokens["operator"])
        at = f"{live_api.url}/api/v1/incidents/{incident}"
        with httpx.Client(timeout=10) as http:
            r = http.post(
                f"{at}/shelve", json={"minutes": 60, "note": "đội đang xử lý"}, headers=op
            )
            assert r.status_code == 200, r.text
            assert receiver.wait(1)[0].doc["event"] == "opened"
            time.sleep(1.5)  # the step was due after 0.6 s: held while shelved
            assert [h.path for h in receiver.received] == ["/route"]

            assert http.post(f"{at}/unshelve", headers=op).status_code == 200
            hooks = receiver.wait(3)
            assert sorted((h.path, h.doc["event"]) for h in hooks[1:]) == [
                ("/route", "unshelved"), ("/tier1", "notified")
            ]  # fmt: skip
            r = http.post(f"{at}/acknowledge", json={"note": "đã cử đội"}, headers=op)
            assert r.status_code == 200, r.text
            ack = receiver.wait(4)[3].doc
            assert (ack["event"], ack["actor"]) == ("acknowledged", "operator-user")
            assert ack["incident"]["id"] == incident and "alert" not in ack
            assert all(h.signature_ok() for h in receiver.received)

            got = wait_for(
                lambda: (
                    (d := http.get(f"{at}/notifications", headers=op).json())
                    and len(d) == 4
                    and all(x["status"] == "sent" for x in d)
                    and d
                )
            )
            assert sorted((x["route"], x["reason"]) for x in got) == [
                ("episode-duty", "escalation"), *[("episodes", "event")] * 3
            ]  # fmt: skip
            missing = http.get(f"{live_api.url}/api/v1/incidents/999999/notifications", headers=op)
            assert missing.status_code == 404
        events = [
            r[0]
            for r in db.execute(
                "SELECT action FROM alert_events WHERE incident_id = %s ORDER BY seq", (incident,)
            )
        ]
        assert events == ["opened", "shelved", "unshelved", "notified", "acknowledged"]
    finally:
        svc.stop()
