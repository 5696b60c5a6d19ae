"""From the committed event log to the outbox: route matching and escalation state.

The planner reads ``alert_events`` after its cursor (``event_cursors.name = 'notify'``),
in ``seq`` order.  In one transaction it writes an outbox row per matching (event,
route, target), keyed ``ev:<seq>:<route>:<n>`` (``ON CONFLICT DO NOTHING``), updates
the escalation state, and moves the cursor: a crash before the commit redoes the same
events and writes the same keys, so nothing is lost and nothing doubles.  Several
planners (one per process) take turns: the one that locks the cursor row works, the
others skip it.

``tick`` takes the escalations that are due, notifies the next tier (or reminds), and
records each step as an audited ``notified`` event of the alert.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import orjson
import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb
from pydantic import ValidationError

from core.events import ALERTS_SHOWN, EVENT_COLUMNS, AlertAction, AlertEvent
from core.routing import Escalation, Route, RoutesFile, Targets, mask_target
from core.types import AlertStatus, utcnow
from notify.render import render

logger = logging.getLogger(__name__)

CURSOR = "notify"
PAGE = 500
MAX_STEPS_PER_TICK = 500
_STOPPERS = {AlertAction.ACKNOWLEDGED, AlertAction.RESOLVED}
_STARTERS = {AlertAction.OPENED, AlertAction.REOPENED, AlertAction.ESCALATED}


@dataclass(frozen=True, slots=True)
class Book:
    """The routes and escalation policies in force."""

    routes: tuple[Route, ...] = ()
    escalations: tuple[Escalation, ...] = ()

    def policy(self, name: str) -> Escalation | None:
        return next((e for e in self.escalations if e.name == name), None)


class RouteBook:
    """The file's routes plus the ones kept in ``notify_routes``, re-read every few seconds."""

    def __init__(self, file: RoutesFile, reload_s: float = 5.0) -> None:
        self.file = file
        self.reload_s = reload_s
        self._book = Book(file.routes, file.escalations)
        self._read_at = -float("inf")

    def get(self, conn: psycopg.Connection[Any]) -> Book:
        if time.monotonic() - self._read_at < self.reload_s:
            return self._book
        names = {r.name for r in self.file.routes} | {e.name for e in self.file.escalations}
        routes, escalations = list(self.file.routes), list(self.file.escalations)
        for name, type_, spec in conn.execute("SELECT name, type, spec FROM notify_routes"):
            if name in names:
                logger.warning("route %s is in the routes file and the database: file wins", name)
                continue
            try:
                if type_ == "escalation":
                    escalations.append(Escalation.model_validate({**spec, "name": name}))
                else:
                    routes.append(Route.model_validate({**spec, "name": name}))
            except ValidationError as exc:
                logger.warning("route %s in the database is invalid, skipped: %s", name, exc)
        self._book = Book(tuple(routes), tuple(escalations))
        self._read_at = time.monotonic()
        return self._book


def document(
    event: AlertEvent, *, key: str, reason: str, route: str, step: int, lang: str
) -> bytes:
    """The JSON body of a notification (webhooks get exactly these bytes)."""
    title, text = render(event, lang="en" if lang == "en" else "vi", reason=reason, route=route, step=step)  # fmt: skip
    doc = event.document()
    doc.update(
        idempotency_key=key,
        reason=reason,
        route=route,
        step=step,
        lang=lang,
        title=title,
        text=text,
    )
    return orjson.dumps(doc, option=orjson.OPT_UTC_Z)


def _outbox(
    cur: psycopg.Cursor[Any],
    event: AlertEvent,
    targets: Targets,
    *,
    key_prefix: str,
    reason: str,
    route: str,
    step: int,
    event_seq: int | None,
) -> int:
    n = 0
    for i, target in enumerate(targets.targets()):
        key = f"{key_prefix}:{i}"
        body = document(
            event, key=key, reason=reason, route=route, step=step, lang=targets.language
        )
        cur.execute(
            "INSERT INTO notifications (idempotency_key, alert_id, event_seq, reason, route, step,"
            " channel, target, lang, body) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
            " ON CONFLICT (idempotency_key) DO NOTHING",
            (key, event.alert.id, event_seq, reason, route, step, mask_target(target), target,
             targets.language, body.decode()),
        )  # fmt: skip
        n += cur.rowcount
    return n


class Planner:
    def __init__(self, book: RouteBook, *, on_planned: Callable[[], None] = lambda: None) -> None:
        self.book = book
        self.on_planned = on_planned
        self.counts = {"events": 0, "planned": 0, "escalations": 0, "reminders": 0, "bad": 0}

    def step(self, conn: psycopg.Connection[Any]) -> int:
        """Plan one page of new events; return how many events were read (0: idle or busy)."""
        book = self.book.get(conn)
        planned = 0
        with conn.transaction(), conn.cursor(row_factory=dict_row) as cur:
            cur.execute(
                "SELECT seq FROM event_cursors WHERE name = %s FOR UPDATE SKIP LOCKED", (CURSOR,)
            )
            row = cur.fetchone()
            if row is None:
                return 0  # another planner holds the cursor
            cur.execute(
                f"SELECT {EVENT_COLUMNS}, detail FROM alert_events WHERE seq > %s{ALERTS_SHOWN}"
                " ORDER BY seq LIMIT %s",
                (row["seq"], PAGE),
            )
            rows = cur.fetchall()
            if not rows:
                return 0
            for r in rows:
                try:
                    event = AlertEvent.from_row(r)
                except ValidationError as exc:
                    self.counts["bad"] += 1
                    logger.warning(
                        "event %s is not a valid alert event, skipped: %s", r["seq"], exc
                    )
                    continue
                planned += self._plan(cur, book, event)
                if event.action is AlertAction.NOTIFIED:
                    planned += self._escalation_step(cur, book, event, r["detail"])
            cur.execute(
                "UPDATE event_cursors SET seq = %s, updated_at = now() WHERE name = %s",
                (rows[-1]["seq"], CURSOR),
            )
        self.counts["events"] += len(rows)
        self.counts["planned"] += planned
        if planned:
            self.on_planned()
        return len(rows)

    def _plan(self, cur: psycopg.Cursor[Any], book: Book, event: AlertEvent) -> int:
        n = 0
        for route in book.routes:
            if route.wants(event):
                n += _outbox(
                    cur, event, route, key_prefix=f"ev:{event.seq}:{route.name}",
                    reason="event", route=route.name, step=0, event_seq=event.seq,
                )  # fmt: skip
        alert = event.alert
        if event.action in _STOPPERS or alert.status is not AlertStatus.OPEN:
            cur.execute("DELETE FROM notify_escalations WHERE alert_id = %s", (alert.id,))
        elif event.action in _STARTERS:
            for policy in book.escalations:
                if policy.matches(alert, event.time):
                    first = timedelta(minutes=policy.steps[0].after_minutes)
                    cur.execute(
                        "INSERT INTO notify_escalations (alert_id, policy, started_at, next_at)"
                        " VALUES (%s, %s, %s, %s) ON CONFLICT DO NOTHING",
                        (alert.id, policy.name, event.time, event.time + first),
                    )
        elif event.action is AlertAction.DEESCALATED:
            # things improved: drop the policies that no longer apply
            gone = [p.name for p in book.escalations if not p.matches(alert, event.time)]
            cur.execute(
                "DELETE FROM notify_escalations WHERE alert_id = %s AND policy = ANY(%s)",
                (alert.id, gone),
            )
        return n

    def tick(self, conn: psycopg.Connection[Any], now: datetime | None = None) -> int:
        """Take the due escalation steps and reminders; return how many were taken.

        Each step is its own short transaction: it records the audited ``notified`` event
        (which takes the alert writers' lock, so it must not linger) and moves the
        escalation on; the planner turns that event into outbox rows like any other.
        """
        book = self.book.get(conn)
        taken = 0
        for _ in range(MAX_STEPS_PER_TICK):
            with conn.transaction(), conn.cursor(row_factory=dict_row) as cur:
                cur.execute(
                    "SELECT e.alert_id, e.policy, e.step, e.reminders, e.started_at, a.status"
                    " FROM notify_escalations e JOIN alerts a ON a.id = e.alert_id"
                    " WHERE e.next_at <= coalesce(%s, now())"
                    " ORDER BY e.next_at LIMIT 1 FOR UPDATE OF e SKIP LOCKED",
                    (now,),
                )
                d = cur.fetchone()
                if d is None:
                    break
                policy = book.policy(d["policy"])
                if policy is None or d["status"] != AlertStatus.OPEN.value:
                    cur.execute(
                        "DELETE FROM notify_escalations WHERE alert_id = %s AND policy = %s",
                        (d["alert_id"], d["policy"]),
                    )
                    continue
                self._take(cur, policy, d)
                taken += 1
        return taken

    def _take(self, cur: psycopg.Cursor[Any], policy: Escalation, d: dict[str, Any]) -> None:
        step, reminders = d["step"], d["reminders"]
        started: datetime = d["started_at"]
        if step < len(policy.steps):
            reason, number = "escalation", step + 1
            note = f"chuyển cấp / escalation {policy.name}: {number}/{len(policy.steps)}"
            step += 1
            self.counts["escalations"] += 1
        else:
            reason, number = "reminder", reminders + 1
            note = f"nhắc lại / reminder {policy.name}: {number}"
            reminders += 1
            self.counts["reminders"] += 1
        if step < len(policy.steps):
            next_at: datetime | None = started + timedelta(minutes=policy.steps[step].after_minutes)
        elif policy.repeat_minutes is not None and reminders < policy.max_reminders:
            next_at = utcnow() + timedelta(minutes=policy.repeat_minutes)
        else:
            next_at = None
        if next_at is None:
            cur.execute(
                "DELETE FROM notify_escalations WHERE alert_id = %s AND policy = %s",
                (d["alert_id"], policy.name),
            )
        else:
            cur.execute(
                "UPDATE notify_escalations SET step = %s, reminders = %s, next_at = %s"
                " WHERE alert_id = %s AND policy = %s",
                (step, reminders, next_at, d["alert_id"], policy.name),
            )
        detail = {
            "policy": policy.name,
            "reason": reason,
            "number": number,
            "started": int(started.timestamp() * 1000),
        }
        # last: the writers' lock is held from here to the commit only
        cur.execute("SELECT ioc_alert_notified(%s, %s, %s)", (d["alert_id"], note, Jsonb(detail)))

    def _escalation_step(
        self, cur: psycopg.Cursor[Any], book: Book, event: AlertEvent, detail: Any
    ) -> int:
        """Outbox rows for a ``notified`` event that records an escalation step or reminder."""
        if not isinstance(detail, dict):
            return 0
        policy = book.policy(str(detail.get("policy")))
        if policy is None:
            return 0
        reason, number = str(detail.get("reason")), int(detail.get("number", 0))
        if reason == "escalation" and 1 <= number <= len(policy.steps):
            targets = policy.steps[number - 1]
        elif reason == "reminder":
            targets = policy.steps[-1]
        else:
            return 0
        prefix = f"{reason[:3]}:{event.alert.id}:{policy.name}:{detail.get('started')}:{number}"
        return _outbox(
            cur, event, targets, key_prefix=prefix,
            reason=reason, route=policy.name, step=number, event_seq=event.seq,
        )  # fmt: skip
