"""What the pipeline produced, on its way to the database: signals to the alert lifecycle, derived readings.

Both wait in memory while the database is away (up to ``MAX_PENDING_SIGNALS``
signals and ``MAX_PENDING_DERIVED`` readings, the oldest dropped first) and go out
when it is back.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable

import psycopg

from analytics.alerts.lifecycle import Lifecycle
from analytics.alerts.records import Change
from analytics.alerts.spatial import Upgrade
from analytics.engine.base import Signal
from analytics.engine.pipeline import Result
from analytics.service.database import Database
from analytics.service.metrics import ServiceMetrics
from core.db import insert_readings
from core.types import Reading

logger = logging.getLogger(__name__)

MAX_PENDING_SIGNALS = 200_000
MAX_PENDING_DERIVED = 100_000


class Outbox:
    """Applies signals and upgrades to the lifecycle in one transaction, and stores derived readings."""

    def __init__(
        self,
        db: Database,
        now: Callable[[], float],
        counts: dict[str, int],
        metrics: ServiceMetrics,
        db_failed: Callable[[Exception], None],
    ) -> None:
        self.db = db
        self.now = now
        self.counts = counts
        self.metrics = metrics
        self.db_failed = db_failed
        self.lifecycle: Lifecycle | None = None
        self.signals: list[Signal] = []
        self.upgrades: list[Upgrade] = []
        self.derived: list[Reading] = []

    def send(self, res: Result) -> None:
        """Hand over what one batch or tick produced, and send everything pending."""
        self.signals.extend(res.signals)
        self.upgrades.extend(res.upgrades)
        self.apply_signals()
        self.write_derived(res.derived)

    def apply_signals(self) -> None:
        signals, upgrades = self.signals, self.upgrades
        if not signals and not upgrades:
            return
        if len(signals) > MAX_PENDING_SIGNALS:
            logger.warning(
                "dropping %d old signals while the database is away",
                len(signals) - MAX_PENDING_SIGNALS,
            )
            del signals[: len(signals) - MAX_PENDING_SIGNALS]
        if self.lifecycle is None or self.db.get() is None:
            return
        self.counts["signals"] += len(signals)
        self.metrics.signals.inc(len(signals))
        try:
            changes = self.lifecycle.apply(signals, upgrades, self.now())
        except psycopg.OperationalError as exc:
            self.db_failed(exc)  # keep the signals; the cache is reloaded on reconnect
            return
        except psycopg.Error:
            logger.exception("the lifecycle failed on %d signals; they are dropped", len(signals))
            self.signals, self.upgrades = [], []
            self.lifecycle.load(self.now())
            return
        self.signals, self.upgrades = [], []
        self.count(changes)

    def tick_lifecycle(self, now: float) -> None:
        """The lifecycle's timers (resolution after quiet, stale alerts)."""
        if self.lifecycle is None or self.db.get() is None:
            return
        try:
            self.count(self.lifecycle.tick(now))
        except psycopg.OperationalError as exc:
            self.db_failed(exc)

    def count(self, changes: list[Change]) -> None:
        if not changes:
            return
        self.counts["changes"] += len(changes)
        for ch in changes:
            self.metrics.changes.labels(ch.action).inc()
        # MQTT ioc/v1/alerts/... is published from the committed alert_events log (notify.relay)

    def write_derived(self, rows: list[Reading]) -> None:
        self.derived.extend(rows)
        if not self.derived:
            return
        conn = self.db.get()
        if conn is None:
            del self.derived[: max(0, len(self.derived) - MAX_PENDING_DERIVED)]
            return
        rows = self.derived
        try:
            insert_readings(conn, rows)
        except psycopg.OperationalError as exc:
            self.db_failed(exc)
            return
        except psycopg.Error:
            logger.exception("derived readings could not be stored; %d dropped", len(rows))
        else:
            self.counts["derived"] += len(rows)
        self.derived = []


def replay_into(results: Iterable[Result], outbox: Outbox | None) -> int:
    """Run a replay to its end; its signals go to ``outbox`` (none: learning only). The readings."""
    n = 0
    for res in results:
        n += res.readings
        if outbox is not None:
            outbox.signals.extend(res.signals)
            outbox.upgrades.extend(res.upgrades)
    if outbox is not None:
        outbox.apply_signals()
    return n
