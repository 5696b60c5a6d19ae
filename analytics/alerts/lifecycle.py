"""The alert lifecycle: signals become alerts (open → acknowledged → resolved) in the ``alerts`` table.

* One active alert per (sensor, metric, rule): the unique partial index
  ``alerts_one_active_idx`` enforces it and the insert relies on it
  (``ON CONFLICT ... DO NOTHING``).
* Repeats update the alert: occurrences, latest value, score and evidence.
  Updates are throttled (``update_throttle_s``) so that ``alert_events`` does
  not flood; an escalation of severity or a change of class is written at once.
  Severity only rises while an alert is active.
* Operators acknowledge and resolve through the API (an UPDATE of ``status``);
  this code never touches ``status`` of an active alert, so an acknowledged
  alert stays acknowledged while its condition persists.  An alert an operator
  resolved while the condition persists is left resolved until the condition
  clears.
* Automatic resolution: once the condition has cleared continuously for
  ``resolve_after_s`` (hysteresis in time); a condition returning within
  ``cooldown_s`` of a resolution reopens the same alert instead of a new one.
* The triggers in ``core/migrations/0001_core.sql`` write ``alert_events`` and
  ``NOTIFY ioc_alerts``; every committed change is also returned to the caller
  (the service publishes it on MQTT).

The statements themselves are in ``analytics.alerts.writes``; this module decides which
one a signal calls for.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import psycopg

from analytics.alerts import writes
from analytics.alerts.records import Change, Tracked
from analytics.alerts.spatial import Upgrade
from analytics.alerts.writes import Key
from analytics.engine.base import Signal
from core.events import AlertAction
from core.types import AlertClass, AlertStatus, Sensor, SensorKind, Severity

logger = logging.getLogger(__name__)


@dataclass(slots=True)
class _Plan:
    changes: list[Change] = field(default_factory=list)


class Lifecycle:
    """Applies signals to the ``alerts`` table and keeps the active alerts in memory."""

    def __init__(
        self,
        conn: psycopg.Connection[Any],
        *,
        sensors: Callable[[str], Sensor | None] = lambda _: None,
        kinds: Callable[[str], SensorKind | None] = lambda _: None,
        owns: Callable[[str], bool] = lambda _: True,
        update_throttle_s: float = 60.0,
        resolve_after_s: float = 300.0,
        cooldown_s: float = 1800.0,
        stale_resolve_s: float = 0.0,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.conn = conn
        self.sensors = sensors
        self.kinds = kinds
        self.owns = owns
        self.update_throttle_s = update_throttle_s
        self.resolve_after_s = resolve_after_s
        self.cooldown_s = cooldown_s
        self.stale_resolve_s = stale_resolve_s
        self.monotonic = monotonic
        self.active: dict[Key, Tracked] = {}
        self.recently_resolved: dict[Key, tuple[int, float]] = {}  # key -> (id, resolved at)
        self.suppressed: set[Key] = set()  # operator resolved while the condition persists

    # -- loading and syncing with the table -----------------------------------------------

    def load(self, now: float) -> None:
        """Read our active alerts and recent resolutions (start-up, after a database error)."""
        self.active.clear()
        self.recently_resolved.clear()
        for r in writes.active_rows(self.conn):
            if not self.owns(r["sensor"]):
                continue
            self.active[(r["sensor"], r["metric"], r["rule"])] = Tracked(
                id=r["id"],
                status=AlertStatus(r["status"]),
                severity=Severity(r["severity"]),
                alert_class=AlertClass(r["alert_class"]),
                spatial="corroboration" in (r["evidence"] or {}),
                last_signal=float(r["t"]),
            )
        for r in writes.resolved_rows(self.conn, now - self.cooldown_s):
            key = (r["sensor"], r["metric"], r["rule"])
            if self.owns(r["sensor"]) and key not in self.active:
                self.recently_resolved[key] = (r["id"], float(r["t"]))
        self.suppressed &= set(self.active) | set(self.recently_resolved)
        logger.info(
            "lifecycle: %d active alerts, %d recently resolved",
            len(self.active),
            len(self.recently_resolved),
        )

    def sync(self) -> None:
        """Pick up what operators changed (acknowledged, resolved) since we last wrote."""
        if not self.active:
            return
        ids = {t.id: k for k, t in self.active.items()}
        seen = set()
        for aid, status in writes.statuses(self.conn, list(ids)):
            seen.add(aid)
            key = ids[aid]
            if status == AlertStatus.RESOLVED:
                self._operator_resolved(key)
            else:
                self.active[key].status = AlertStatus(status)
        for aid in set(ids) - seen:  # deleted
            self.active.pop(ids[aid], None)

    def _operator_resolved(self, key: Key) -> None:
        tracked = self.active.pop(key, None)
        if tracked is None:
            return
        self.recently_resolved[key] = (tracked.id, tracked.last_signal)
        if tracked.cleared_since is None:
            self.suppressed.add(key)  # the condition persists: leave it resolved until it clears
        logger.info("alert %d was resolved by an operator", tracked.id)

    # -- applying signals ------------------------------------------------------------------

    def apply(
        self, signals: Iterable[Signal], upgrades: Iterable[Upgrade] = (), now: float | None = None
    ) -> list[Change]:
        """Apply a micro-batch's signals in one transaction; return the committed changes."""
        plan = _Plan()
        signals = list(signals)
        upgrades = list(upgrades)
        if not signals and not upgrades:
            return []
        with self.conn.transaction():
            for sig in signals:
                if sig.active:
                    self._active(sig, plan)
                else:
                    self._cleared(sig)
            for up in upgrades:
                self._upgrade(up, plan)
        return plan.changes

    def _active(self, sig: Signal, plan: _Plan) -> None:
        key = (sig.sensor, sig.metric, sig.rule)
        if key in self.suppressed:
            return
        tracked = self.active.get(key)
        if tracked is None:
            previous = self.recently_resolved.get(key)
            if previous is not None and sig.time - previous[1] <= self.cooldown_s:
                self._reopen(key, previous[0], sig, plan)
            else:
                self._open(key, sig, plan)
            return
        tracked.cleared_since = None
        tracked.last_signal = max(tracked.last_signal, sig.time)
        tracked.pending = sig
        tracked.pending_count += 1
        escalates = sig.severity.rank > tracked.severity.rank
        upgrades = sig.alert_class is AlertClass.INCIDENT and (
            tracked.alert_class is AlertClass.PROBABLE_FAULT and tracked.spatial
        )
        due = self.monotonic() - tracked.last_write >= self.update_throttle_s
        if escalates or upgrades or due:
            self._write_update(key, tracked, plan)

    def _cleared(self, sig: Signal) -> None:
        key = (sig.sensor, sig.metric, sig.rule)
        self.suppressed.discard(key)
        tracked = self.active.get(key)
        if tracked is not None and tracked.cleared_since is None:
            tracked.cleared_since = sig.time

    def _upgrade(self, up: Upgrade, plan: _Plan) -> None:
        for key, tracked in list(self.active.items()):
            if key[0] != up.sensor or not tracked.spatial:
                continue
            if tracked.alert_class is not AlertClass.PROBABLE_FAULT:
                continue
            row = writes.upgrade(self.conn, tracked.id, up.evidence, up.time)
            if row is None:
                self._operator_resolved(key)
                continue
            tracked.alert_class = AlertClass.INCIDENT
            tracked.last_write = self.monotonic()
            plan.changes.append(Change.of(AlertAction.UPDATED, row))

    # -- the writes ------------------------------------------------------------------------

    def _fields(self, sig: Signal) -> dict[str, Any]:
        return writes.signal_fields(sig, self.sensors, self.kinds)

    def _open(self, key: Key, sig: Signal, plan: _Plan) -> None:
        row = writes.insert(self.conn, key, self._fields(sig), sig.time)
        if row is None:  # an active alert we did not know about: adopt it, then update it
            found = writes.find_active(self.conn, key)
            if found is None:
                raise psycopg.errors.SerializationFailure("alert vanished while opening")
            tracked = Tracked(
                id=found["id"],
                status=AlertStatus(found["status"]),
                severity=Severity(found["severity"]),
                alert_class=AlertClass(found["alert_class"]),
                spatial="corroboration" in (found["evidence"] or {}),
                last_signal=sig.time,
                pending=sig,
                pending_count=1,
            )
            self.active[key] = tracked
            self._write_update(key, tracked, plan)
            return
        self.recently_resolved.pop(key, None)
        self._track(key, sig, row, AlertAction.OPENED, plan)

    def _track(self, key: Key, sig: Signal, row: Any, action: AlertAction, plan: _Plan) -> None:
        """Follow an alert that ``sig`` just opened or reopened (``row``) as active."""
        self.active[key] = Tracked(
            id=row["id"],
            status=AlertStatus.OPEN,
            severity=sig.severity,
            alert_class=AlertClass(row["alert_class"]),
            spatial="corroboration" in sig.evidence,
            last_signal=sig.time,
            last_write=self.monotonic(),
        )
        plan.changes.append(Change.of(action, row))

    def _reopen(self, key: Key, alert_id: int, sig: Signal, plan: _Plan) -> None:
        row = writes.reopen(self.conn, alert_id, self._fields(sig), sig.time)
        self.recently_resolved.pop(key, None)
        if row is None:
            self._open(key, sig, plan)
            return
        self._track(key, sig, row, AlertAction.REOPENED, plan)

    def _write_update(self, key: Key, tracked: Tracked, plan: _Plan) -> None:
        sig = tracked.pending
        if sig is None:
            return
        f = self._fields(sig)
        severity = sig.severity if sig.severity.rank > tracked.severity.rank else tracked.severity
        if severity.rank > sig.severity.rank:  # the alert keeps its highest severity: say so
            f["message"] += f" (now {sig.severity}; the alert stays {severity} until resolved)"
        cls = tracked.alert_class
        if sig.alert_class is AlertClass.INCIDENT and cls is AlertClass.PROBABLE_FAULT:
            cls = AlertClass.INCIDENT
        row = writes.update(
            self.conn,
            tracked.id,
            f,
            occurrences=tracked.pending_count,
            severity=severity,
            alert_class=str(cls),
            at=sig.time,
        )
        if row is None:
            self._operator_resolved(key)
            return
        action = (
            AlertAction.ESCALATED if severity.rank > tracked.severity.rank else AlertAction.UPDATED
        )
        tracked.status = AlertStatus(row["status"])
        tracked.severity = severity
        tracked.alert_class = cls
        tracked.pending = None
        tracked.pending_count = 0
        tracked.last_write = self.monotonic()
        plan.changes.append(Change.of(action, row))

    def _resolve(self, key: Key, tracked: Tracked, now: float, note: str, plan: _Plan) -> None:
        row = writes.resolve(self.conn, tracked.id, tracked.pending_count, now, note)
        del self.active[key]
        if row is not None:
            self.recently_resolved[key] = (tracked.id, now)
            plan.changes.append(Change.of(AlertAction.RESOLVED, row))

    # -- time ------------------------------------------------------------------------------

    def tick(self, now: float) -> list[Change]:
        """Resolve what has cleared for long enough; write throttled updates that are due."""
        plan = _Plan()
        mono = self.monotonic()
        resolving = []
        flushing = []
        for key, t in self.active.items():
            if t.cleared_since is not None and now - t.cleared_since >= self.resolve_after_s:
                resolving.append((key, t, f"condition cleared for {now - t.cleared_since:.0f} s"))
            elif self.stale_resolve_s and now - t.last_signal >= self.stale_resolve_s:
                resolving.append((key, t, f"no signal for {now - t.last_signal:.0f} s"))
            elif t.pending is not None and mono - t.last_write >= self.update_throttle_s:
                flushing.append((key, t))
        if resolving or flushing:
            with self.conn.transaction():
                for key, t, note in resolving:
                    self._resolve(key, t, now, note, plan)
                for key, t in flushing:
                    self._write_update(key, t, plan)
        horizon = now - self.cooldown_s
        for key in [k for k, (_, at) in self.recently_resolved.items() if at < horizon]:
            del self.recently_resolved[key]
        return plan.changes

    # -- checkpoints -----------------------------------------------------------------------

    def get_state(self) -> dict[str, Any]:
        """Timers that the table does not hold (cleared-since, suppression)."""
        return {
            "cleared": [
                [*k, t.cleared_since] for k, t in self.active.items() if t.cleared_since is not None
            ],
            "suppressed": [list(k) for k in self.suppressed],
        }

    def set_state(self, state: dict[str, Any]) -> None:
        for s, m, r, since in state.get("cleared", []):
            tracked = self.active.get((s, m, r))
            if tracked is not None:
                tracked.cleared_since = float(since)
        self.suppressed = {(s, m, r) for s, m, r in state.get("suppressed", [])}
