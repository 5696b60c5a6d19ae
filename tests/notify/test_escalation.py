"""Escalation policies: tiers one after another while unacknowledged, reminders, stop on ack."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from core.routing import parse_routes
from notify.service import NotifyService
from tests.notify.conftest import Receiver, insert_alert, wait_for
from tests.notify.test_dispatcher import settings

pytestmark = [pytest.mark.db]


def policy(url: str) -> str:
    return f"""
escalations:
  - name: flood-duty
    min_severity: critical
    kinds: [water_level]
    steps:
      - after_minutes: 0
        webhook: {url}/tier1
      - after_minutes: 0.02
        webhook: {url}/tier2
        language: en
    repeat_minutes: 0.01
    max_reminders: 2
"""


@pytest.fixture
def service(db_url: str, receiver: Receiver) -> Iterator[NotifyService]:
    svc = NotifyService(settings(db_url), parse_routes(policy(receiver.url.removesuffix("/hook"))))
    svc.start()
    yield svc
    svc.stop()


def test_unacknowledged_alert_climbs_the_tiers_then_reminds_and_every_step_is_audited(
    db: psycopg.Connection[Any], receiver: Receiver, service: NotifyService
) -> None:
    alert = insert_alert(db)
    insert_alert(db, severity="warning")  # below the policy: never escalated
    hooks = receiver.wait(4, timeout=15)
    assert [h.path for h in hooks] == ["/tier1", "/tier2", "/tier2", "/tier2"]
    assert [(h.doc["reason"], h.doc["step"]) for h in hooks] == [
        ("escalation", 1), ("escalation", 2), ("reminder", 1), ("reminder", 2)
    ]  # fmt: skip
    assert all(h.doc["alert"]["id"] == alert and h.doc["event"] == "notified" for h in hooks)
    assert hooks[0].doc["title"].startswith("[Chuyển cấp 1]")
    assert hooks[1].doc["title"].startswith("[Escalation 2]")
    assert len({h.doc["idempotency_key"] for h in hooks}) == 4
    notes = [
        r[0]
        for r in db.execute(
            "SELECT note FROM alert_events WHERE alert_id = %s AND action = 'notified' ORDER BY seq",
            (alert,),
        )
    ]
    assert notes == [
        "chuyển cấp / escalation flood-duty: 1/2",
        "chuyển cấp / escalation flood-duty: 2/2",
        "nhắc lại / reminder flood-duty: 1",
        "nhắc lại / reminder flood-duty: 2",
    ]
    time.sleep(1.5)
    assert len(receiver.received) == 4  # max_reminders reached
    assert db.execute("SELECT count(*) FROM notify_escalations").fetchone()[0] == 0


def test_acknowledgement_stops_the_escalation(
    db: psycopg.Connection[Any], receiver: Receiver, service: NotifyService
) -> None:
    alert = insert_alert(db)
    assert receiver.wait(1)[0].path == "/tier1"
    with db.transaction():
        db.execute("SELECT set_config('ioc.actor', 'duty-operator', true)")
        db.execute("UPDATE alerts SET status = 'acknowledged' WHERE id = %s", (alert,))
    wait_for(lambda: db.execute("SELECT count(*) FROM notify_escalations").fetchone()[0] == 0)
    time.sleep(2.0)  # tier 2 was due 1.2 s after opening
    assert [h.path for h in receiver.received] == ["/tier1"]


def test_deescalation_ends_a_policy_that_no_longer_applies(
    db: psycopg.Connection[Any], receiver: Receiver, service: NotifyService
) -> None:
    alert = insert_alert(db)
    receiver.wait(1)
    db.execute("UPDATE alerts SET severity = 'warning' WHERE id = %s", (alert,))
    wait_for(lambda: db.execute("SELECT count(*) FROM notify_escalations").fetchone()[0] == 0)
    time.sleep(1.5)
    assert len(receiver.received) == 1
