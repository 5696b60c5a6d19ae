"""Durable delivery against a real webhook receiver: retries, dead rows, restarts, concurrency."""

from __future__ import annotations

import signal
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from core.routing import parse_routes
from notify.config import NotifySettings
from notify.service import NotifyService
from tests.notify.conftest import SECRET, Proc, Receiver, insert_alert, wait_for

pytestmark = [pytest.mark.db]


def settings(db_url: str, **kw: Any) -> NotifySettings:
    base: dict[str, Any] = {
        "database_url": db_url,
        "notify_mqtt_relay": False,
        "notify_webhook_secret": SECRET,
        "notify_poll_s": 0.05,
        "notify_backoff_s": 0.1,
        "notify_backoff_max_s": 0.5,
        "notify_timeout_s": 2.0,
        "notify_routes_reload_s": 0.2,
    }
    base.update(kw)
    return NotifySettings(**base)


def one_route(url: str, extra: str = "") -> str:
    return f"routes:\n  - name: duty\n    min_severity: warning\n    webhook: {url}\n{extra}"


@pytest.fixture
def services() -> Iterator[Callable[..., NotifyService]]:
    started: list[NotifyService] = []

    def start(s: NotifySettings, routes_yaml: str) -> NotifyService:
        svc = NotifyService(s, parse_routes(routes_yaml))
        svc.start()
        started.append(svc)
        return svc

    yield start
    for svc in started:
        svc.stop()


def statuses(db: psycopg.Connection[Any]) -> list[tuple[str, int, str | None]]:
    return db.execute(
        "SELECT status, attempts, last_error FROM notifications ORDER BY id"
    ).fetchall()


def test_a_receiver_that_fails_first_gets_it_after_retries(
    db: psycopg.Connection[Any],
    db_url: str,
    receiver: Receiver,
    services: Callable[..., NotifyService],
) -> None:
    receiver.fail_first = 2
    services(settings(db_url), one_route(receiver.url))
    alert = insert_alert(db)
    hook = receiver.wait(1)[0]
    assert hook.doc["alert"]["id"] == alert and hook.signature_ok()
    assert receiver.calls == 3
    assert wait_for(lambda: statuses(db)[0][0] == "sent")
    status, attempts, error = statuses(db)[0]
    assert (status, attempts, error) == ("sent", 3, None)


def test_an_unreachable_channel_is_marked_dead_with_the_reason_and_blocks_nothing(
    db: psycopg.Connection[Any],
    db_url: str,
    receiver: Receiver,
    services: Callable[..., NotifyService],
) -> None:
    receiver.status = 500
    routes = one_route(receiver.url) + "  - name: nowhere\n    webhook: http://127.0.0.1:9/x\n"
    svc = services(settings(db_url, notify_max_attempts=3), routes)
    insert_alert(db)
    rows = wait_for(
        lambda: (r := statuses(db)) and all(s == "dead" for s, _, _ in r) and len(r) == 2 and r,
        timeout=15,
    )
    reasons = sorted(e or "" for _, _, e in rows)
    assert reasons[0].startswith("HTTP 500") and "attempt 3 of 3" in reasons[0]
    assert reasons[1].startswith("webhook unreachable") and "attempt 3 of 3" in reasons[1]
    assert all(a == 3 for _, a, _ in rows)
    assert svc.dispatcher.counts["dead"] == 2
    receiver.status = 200  # the next alert goes through at once
    insert_alert(db)
    assert receiver.wait(1)[0].signature_ok()


def test_a_permanent_refusal_is_dead_at_once(
    db: psycopg.Connection[Any],
    db_url: str,
    receiver: Receiver,
    services: Callable[..., NotifyService],
) -> None:
    receiver.status = 410
    services(settings(db_url), one_route(receiver.url))
    insert_alert(db)
    _, attempts, error = wait_for(lambda: [r for r in statuses(db) if r[0] == "dead"])[0]
    assert attempts == 1 and error.startswith("HTTP 410")


def test_two_dispatchers_never_send_the_same_notification(
    db: psycopg.Connection[Any],
    db_url: str,
    receiver: Receiver,
    services: Callable[..., NotifyService],
) -> None:
    receiver.delay_s = 0.005
    for _ in range(2):
        services(
            settings(db_url, notify_workers=3),
            one_route(receiver.url, "    rate_per_minute: 100000\n"),
        )
    ids = [insert_alert(db, sensor=f"wl-{i}") for i in range(60)]
    hooks = receiver.wait(60, timeout=10)
    time.sleep(0.5)
    keys = Counter(h.doc["idempotency_key"] for h in receiver.received)
    assert len(keys) == 60 and max(keys.values()) == 1
    assert sorted(h.doc["alert"]["id"] for h in hooks) == ids


def test_kill_9_mid_burst_loses_nothing_and_repeats_only_under_the_same_key(
    db: psycopg.Connection[Any],
    db_url: str,
    receiver: Receiver,
    run_ioc: Callable[..., Proc],
    tmp_path: Path,
) -> None:
    n = 300
    receiver.delay_s = 0.002
    routes = tmp_path / "routes.yaml"
    routes.write_text(one_route(receiver.url, "    rate_per_minute: 100000\n"))
    env = {
        "IOC_DATABASE_URL": db_url,
        "IOC_NOTIFY_ROUTES": str(routes),
        "IOC_NOTIFY_WEBHOOK_SECRET": SECRET,
        "IOC_NOTIFY_MQTT_RELAY": "false",
        "IOC_NOTIFY_POLL_S": "0.05",
    }
    first = run_ioc("notify", env=env)
    with db.transaction():
        for i in range(n):
            insert_alert(db, sensor=f"wl-{i}")
    receiver.wait(n // 5, timeout=20)
    first.proc.send_signal(signal.SIGKILL)
    first.proc.wait(10)
    before = len(receiver.received)
    assert before < n, "the burst finished before the kill"
    second = run_ioc("notify", env=env)
    receiver.wait(n, timeout=30)
    wait_for(lambda: db.execute("SELECT count(*) FROM notifications WHERE status = 'sent'").fetchone()[0] == n)  # fmt: skip
    keys = Counter(h.doc["idempotency_key"] for h in receiver.received)
    assert len(keys) == n  # nothing lost
    dupes = {k: c for k, c in keys.items() if c > 1}
    assert sum(dupes.values()) - len(dupes) == len(receiver.received) - n  # only same-key repeats
    assert all(h.signature_ok() for h in receiver.received)
    second.proc.send_signal(signal.SIGTERM)
    assert second.proc.wait(15) == 0, second.output()


def test_the_rate_limit_spaces_sends_to_a_channel(
    db: psycopg.Connection[Any],
    db_url: str,
    receiver: Receiver,
    services: Callable[..., NotifyService],
) -> None:
    # 120 per minute: a burst of 20 (10 s worth), then one every 0.5 s
    services(settings(db_url), one_route(receiver.url, "    rate_per_minute: 120\n"))
    for i in range(23):
        insert_alert(db, sensor=f"wl-{i}")
    receiver.wait(20, timeout=5)
    t0 = time.monotonic()
    receiver.wait(23, timeout=5)
    assert time.monotonic() - t0 >= 1.0  # three more took about 1.5 s
    assert db.execute("SELECT max(attempts) FROM notifications").fetchone()[0] == 1
