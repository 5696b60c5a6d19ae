"""The notification service: relay, planner and sending workers as threads of one process.

It runs alone (``ioc notify``) or beside ``ioc api`` and ``ioc analytics``; any number
of copies may run at once, since each stage takes turns through row locks.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import psycopg

from core.errors import ConfigError
from core.routing import RoutesFile, load_routes, mask_target
from notify.channels import check_apprise
from notify.config import NotifySettings
from notify.dispatcher import Dispatcher, RateLimits
from notify.planner import Planner, RouteBook
from notify.relay import BrokerUnavailable, MqttLink, Relay

logger = logging.getLogger(__name__)

TICK_S = 1.0
EVENTS_CHANNEL = "ioc_alerts"  # NOTIFY of every alert_events insert
RETRY_S = 1.0
MAX_RELAY_WAIT_S = 30.0


class NotifyService:
    def __init__(self, settings: NotifySettings, routes: RoutesFile | None = None) -> None:
        self.settings = settings
        self.routes = routes if routes is not None else load_routes(settings.notify_routes)
        _check_channels(self.routes)
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._threads: list[threading.Thread] = []
        self.planner = Planner(
            RouteBook(self.routes, settings.notify_routes_reload_s),
            on_planned=self._wake.set,
            group_wait_s=settings.notify_group_wait_s,
        )
        secret = settings.notify_webhook_secret.get_secret_value()
        if not secret and any(r.webhook for r in self.routes.routes):
            logger.warning("IOC_NOTIFY_WEBHOOK_SECRET is empty: webhooks go out unsigned")
        self.dispatcher = Dispatcher(
            secret=secret,
            max_attempts=settings.notify_max_attempts,
            backoff_s=settings.notify_backoff_s,
            backoff_max_s=settings.notify_backoff_max_s,
            timeout_s=settings.notify_timeout_s,
            limits=RateLimits({r.name: r.rate_per_minute for r in self.routes.routes}),
        )
        self._relay_failures = 0
        self._ticked = 0.0
        self.link: MqttLink | None = None
        self.relay: Relay | None = None
        if settings.notify_mqtt_relay:
            self.link = MqttLink(settings.mqtt, settings.mqtt_nodes)
            self.relay = Relay(self.link)

    def start(self) -> None:
        logger.info(
            "notifications: %d routes, %d escalation policies, MQTT relay %s",
            len(self.routes.routes),
            len(self.routes.escalations),
            "on" if self.relay else "off",
        )
        if self.link is not None and self.relay is not None:
            self.link.start()
            self._spawn("relay", self._relay_step)
        self._spawn("planner", self._planner_step)
        for i in range(self.settings.notify_workers):
            self._spawn(f"sender-{i}", self._send_step)

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        self._wake.set()
        deadline = time.monotonic() + timeout
        for t in self._threads:
            t.join(max(0.1, deadline - time.monotonic()))
        if self.link is not None:
            self.link.stop()

    def wait(self) -> None:
        while not self._stop.wait(1.0):
            pass

    # the stages: each returns True when it did work (then it runs again at once)

    def _relay_step(self, conn: psycopg.Connection[Any]) -> bool:
        assert self.relay is not None
        try:
            n = self.relay.step(conn)
        except BrokerUnavailable as exc:
            wait = min(MAX_RELAY_WAIT_S, RETRY_S * 2**self._relay_failures)
            self._relay_failures += 1
            logger.warning("MQTT relay: %s; retrying in %.0f s", exc, wait)
            self._stop.wait(wait)
            return False
        self._relay_failures = 0
        return n > 0

    def _planner_step(self, conn: psycopg.Connection[Any]) -> bool:
        worked = self.planner.step(conn) > 0
        now = time.monotonic()
        if now - self._ticked >= TICK_S:
            self._ticked = now
            self.planner.tick(conn)  # its events reach the outbox through step()
        return worked

    def _send_step(self, conn: psycopg.Connection[Any]) -> bool:
        return self.dispatcher.step(conn)

    def _spawn(self, name: str, step: Callable[[psycopg.Connection[Any]], bool]) -> None:
        t = threading.Thread(
            target=self._run, args=(name, step), name=f"notify-{name}", daemon=True
        )
        self._threads.append(t)
        t.start()

    def _run(self, name: str, step: Callable[[psycopg.Connection[Any]], bool]) -> None:
        conn: psycopg.Connection[Any] | None = None
        while not self._stop.is_set():
            try:
                if conn is None or conn.closed:
                    conn = psycopg.connect(self.settings.dsn, autocommit=True)
                    if not name.startswith("sender"):
                        conn.execute(f"LISTEN {EVENTS_CHANNEL}")  # the alert_events triggers
                if not step(conn):
                    if name.startswith("sender"):
                        self._wake.wait(self.settings.notify_poll_s)
                        self._wake.clear()
                    else:  # until a new event is committed, or the poll interval
                        for _ in conn.notifies(timeout=self.settings.notify_poll_s, stop_after=1):
                            pass
            except psycopg.OperationalError as exc:
                logger.warning("notify %s: database unavailable (%s); retrying", name, exc)
                if conn is not None:
                    conn.close()
                conn = None
                self._stop.wait(RETRY_S)
            except Exception:
                logger.exception("notify %s: unexpected failure; carrying on", name)
                self._stop.wait(RETRY_S)
        if conn is not None:
            conn.close()


def _check_channels(routes: RoutesFile) -> None:
    """Refuse to start with a channel URL that Apprise does not understand."""
    owners = [(r.name, r) for r in routes.routes] + [
        (f"{e.name} step {i + 1}", s) for e in routes.escalations for i, s in enumerate(e.steps)
    ]
    for name, targets in owners:
        for n, url in enumerate(targets.channels):
            if not check_apprise(url):
                raise ConfigError(
                    f"route {name}: channel {n + 1} ({mask_target(url)}) is not a valid Apprise URL"
                )
