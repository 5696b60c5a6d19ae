"""``ioc api`` and ``ioc analytics`` with the notification service beside them.

The relay and dispatcher run as threads of those processes (``IOC_NOTIFY_ENABLED=false``
turns that off, e.g. when ``ioc notify`` runs on its own); their row locks let any
number of copies run at once.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from pydantic import ValidationError

from core.errors import ConfigError

logger = logging.getLogger(__name__)

_NO_SERVICE = {"-h", "--help", "--check-rules"}


@contextmanager
def _notifications(argv: list[str]) -> Iterator[bool]:
    """Run the notification service for the duration; yield False on a bad configuration."""
    if _NO_SERVICE & set(argv):
        yield True
        return
    from notify.config import NotifySettings

    try:
        settings = NotifySettings()
        if not settings.notify_enabled:
            yield True
            return
        from notify.service import NotifyService

        service = NotifyService(settings)
    except (ConfigError, ValidationError) as exc:
        print(f"notifications: {exc}", file=sys.stderr)
        yield False
        return
    service.start()
    try:
        yield True
    finally:
        service.stop()


def _with_notifications(entry: Callable[[list[str]], int | None], argv: list[str]) -> int:
    with _notifications(argv) as ok:
        if not ok:
            return 2
        return int(entry(argv) or 0)


def api_main(argv: list[str]) -> int:
    from api.__main__ import main

    return _with_notifications(main, argv)


def analytics_main(argv: list[str]) -> int:
    from analytics.__main__ import main

    return _with_notifications(main, argv)
