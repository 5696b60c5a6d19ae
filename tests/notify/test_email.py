"""Email through Apprise against a real SMTP server (aiosmtpd) started by the test."""

from __future__ import annotations

import email
from collections.abc import Callable, Iterator
from email.header import decode_header, make_header
from typing import Any

import psycopg
import pytest
from aiosmtpd.controller import Controller

from notify.service import NotifyService
from tests.notify.conftest import insert_alert, wait_for
from tests.notify.test_dispatcher import services, settings
from tests.support.servers import free_port

pytestmark = [pytest.mark.db]
__all__ = ["services"]  # the fixture


class Inbox:
    def __init__(self) -> None:
        self.messages: list[email.message.Message] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append(email.message_from_bytes(envelope.content))
        return "250 OK"


@pytest.fixture
def smtp() -> Iterator[tuple[int, Inbox]]:
    inbox = Inbox()
    port = free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    yield port, inbox
    controller.stop()


def test_an_alert_arrives_by_email_in_vietnamese(
    db: psycopg.Connection[Any],
    db_url: str,
    smtp: tuple[int, Inbox],
    services: Callable[..., NotifyService],
) -> None:
    port, inbox = smtp
    url = f"mailto://127.0.0.1:{port}?to=duty@example.org&from=ioc@example.org&mode=insecure"
    services(settings(db_url), f'routes:\n  - name: mail\n    channels: ["{url}"]\n')
    insert_alert(db, message="Ngập 55 cm <script>x</script>", area="Hoàn Kiếm")
    (msg,) = wait_for(lambda: inbox.messages, timeout=15)
    subject = str(make_header(decode_header(msg["Subject"])))
    assert subject == "Nghiêm trọng · mới mở: wl-td-03 (Hoàn Kiếm)"
    body = msg.get_payload(decode=True).decode()
    assert "Khu vực: Hoàn Kiếm" in body and "Ngập 55 cm" in body
    assert msg.get_content_type() == "text/plain"
    status = wait_for(lambda: db.execute("SELECT status, channel FROM notifications").fetchone())
    assert status == ("sent", f"mailto://127.0.0.1:{port}")


def test_an_unreachable_mail_server_ends_dead_without_its_password_anywhere(
    db: psycopg.Connection[Any],
    db_url: str,
    services: Callable[..., NotifyService],
    caplog: pytest.LogCaptureFixture,
) -> None:
    url = f"mailto://duty:hunter2pass@127.0.0.1:{free_port()}?to=duty@example.org&from=ioc@example.org&mode=insecure"
    services(
        settings(db_url, notify_max_attempts=2),
        f'routes:\n  - name: mail\n    channels: ["{url}"]\n',
    )
    insert_alert(db)
    row = wait_for(
        lambda: db.execute(
            "SELECT status, last_error, channel FROM notifications WHERE status = 'dead'"
        ).fetchone(),
        timeout=20,
    )
    assert row[1].startswith("apprise:") and "attempt 2 of 2" in row[1]
    assert "hunter2pass" not in row[1] + row[2]
    assert "hunter2pass" not in caplog.text
