"""From the committed event log to the outbox: route matching and escalation state.

The planner reads ``alert_events`` (the events of alerts and of incidents) after its cursor (``event_cursors.name = 'notify'``),
in ``seq`` order.  In one transaction it writes an outbox row per matching (event,
route, target), keyed ``ev:<seq>:<route>:<n>`` (``ON CONFLICT DO NOTHING``), updates
the escalation state, and moves the cursor: a crash before the commit redoes the same
events and writes the same keys, so nothing is lost and nothing doubles.  Several
planners (one per process) take turns: the one that locks the cursor row works, the
others skip it.

``tick`` takes the escalations that are due, notifies the next tier (or reminds), and
records each step as an audited ``notified`` event of the alert or incident.  A
shelved alert or incident, or an alert under maintenance, holds its escalation (no step,
no reminder) until it comes back; events of a shelved one are not sent either.

A route or policy with ``subject: incident`` is sent one notification per incident: the
events of alerts that belong to an incident are not sent on it.  So that an alert's
event is judged after the correlator placed it, such an event waits (at most
``group_wait_s``) until the correlator's cursor has passed it; an alert that is then in
no incident (no correlator runs) is sent as an alert.
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

from core.events import EVENT_COLUMNS, EVENTS_SHOWN, AlertAction, Event, event_from_row
from core.routing import Escalation, Match, Route, RoutesFile, Targets, mask_target
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

    @property
    def groups(self) -> bool:
        """Some route or policy notifies incidents instead of their alerts."""
        return any(m.subject == "incident" for m in (*self.routes, *self.escalations))


def applies(match: Match, event: Event, grouped: bool) -> bool:
    """Whether a route or policy applies to the subject of ``event``.

    ``grouped``: the event's alert belongs to an incident.  On ``subject: incident`` an
    alert in no incident stands for its own (so that nothing goes unsaid).
    """
    if event.subject == "alert" and match.subject == "incident":
        if grouped or match.hazards:
            return False
        match = match.model_copy(update={"subject": "both"})
    return match.matches(event.entity, event.time)


def _key_column(event_or_subject: Event | str) -> str:
    subject = event_or_subject if isinstance(event_or_subject, str) else event_or_subject.subject
    return "incident_id" if subject == "incident" else "alert_id"


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


def document(event: Event, *, key: str, reason: str, route: str, step: int, lang: str) -> bytes:
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
    event: Event,
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
            f"INSERT INTO notifications (idempotency_key, {_key_column(event)}, event_seq, reason,"
            " route, step, channel, target, lang, body)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
            " ON CONFLICT (idempotency_key) DO NOTHING",
            (key, event.subject_id, event_seq, reason, route, step, mask_target(target), target,
             targets.language, body.decode()),
        )  # fmt: skip
        n += cur.rowcount
    return n


class Planner:
    def __init__(
        self,
        book: RouteBook,
        *,
        on_planned: Callable[[], None] = lambda: None,
        group_wait_s: float = 10.0,
    ) -> None:
        self.book = book
        self.on_planned = on_planned
        self.group_wait_s = group_wait_s
        self.counts = {
            "events": 0, "planned": 0, "escalations": 0, "reminders": 0, "bad": 0,
            "shelved": 0, "grouped": 0,
        }  # fmt: skip

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
                f"SELECT {EVENT_COLUMNS}, detail,"
                " extract(epoch FROM clock_timestamp() - time) AS age_s"
                f" FROM alert_events WHERE seq > %s{EVENTS_SHOWN} ORDER BY seq LIMIT %s",
                (row["seq"], PAGE),
            )
            rows = cur.fetchall()
            if book.groups:
                rows = self._placed(cur, rows)
            if not rows:
                return 0
            for r in rows:
                try:
                    event = event_from_row(r)
                except ValidationError as exc:
                    self.counts["bad"] += 1
                    logger.warning("event %s is not a valid event, skipped: %s", r["seq"], exc)
                    continue
                grouped = book.groups and event.subject == "alert" and _grouped(cur, event)
                planned += self._plan(cur, book, event, grouped)
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

    def _placed(self, cur: psycopg.Cursor[Any], rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The rows up to the first alert event the correlator has yet to place (group wait)."""
        cur.execute("SELECT seq FROM incident_cursor WHERE id = 1")
        got = cur.fetchone()
        placed = int(got["seq"]) if got else 0
        for i, r in enumerate(rows):
            if r["alert_id"] is not None and r["seq"] > placed and r["age_s"] < self.group_wait_s:
                return rows[:i]
        return rows

    def _plan(self, cur: psycopg.Cursor[Any], book: Book, event: Event, grouped: bool) -> int:
        n = 0
        if grouped:
            self.counts["grouped"] += 1
        if event.shelved_at(event.time):
            self.counts["shelved"] += 1  # shelved: recorded, not sent
        else:
            for route in book.routes:
                if event.action in route.events and applies(route, event, grouped):
                    n += _outbox(
                        cur, event, route, key_prefix=f"ev:{event.seq}:{route.name}",
                        reason="event", route=route.name, step=0, event_seq=event.seq,
                    )  # fmt: skip
        column, subject_id = _key_column(event), event.subject_id
        if event.action in _STOPPERS or event.entity.status is not AlertStatus.OPEN:
            cur.execute(f"DELETE FROM notify_escalations WHERE {column} = %s", (subject_id,))
        elif event.action in _STARTERS:
            for policy in book.escalations:
                if applies(policy, event, grouped):
                    first = timedelta(minutes=policy.steps[0].after_minutes)
                    cur.execute(
                        f"INSERT INTO notify_escalations ({column}, policy, started_at, next_at)"
                        " VALUES (%s, %s, %s, %s) ON CONFLICT DO NOTHING",
                        (subject_id, policy.name, event.time, event.time + first),
                    )
        elif event.action is AlertAction.DEESCALATED:
            # things improved: drop the policies that no longer apply
            gone = [p.name for p in book.escalations if not applies(p, event, grouped)]
            cur.execute(
                f"DELETE FROM notify_escalations WHERE {column} = %s AND policy = ANY(%s)",
                (subject_id, gone),
            )
        return n

    def tick(self, conn: psycopg.Connection[Any], now: datetime | None = None) -> int:
        """Take the due escalation steps and reminders; return how many were taken.

        Each step is its own short transaction: it records the audited ``notified`` event
        (which takes the alert writers' lock, so it must not linger) and moves the
        escalation on; the planner turns that event into outbox rows like any other.
        An escalation whose alert or incident is shelved, or whose alert is under
        maintenance, is held: it stays due and goes on once that ends.
        """
        book = self.book.get(conn)
        taken = 0
        for _ in range(MAX_STEPS_PER_TICK):
            with conn.transaction(), conn.cursor(row_factory=dict_row) as cur:
                cur.execute(
                    "SELECT e.alert_id, e.incident_id, e.policy, e.step, e.reminders,"
                    " e.started_at, coalesce(a.status, i.status) AS status"
                    " FROM notify_escalations e"
                    " LEFT JOIN alerts a ON a.id = e.alert_id"
                    " LEFT JOIN incidents i ON i.id = e.incident_id"
                    " WHERE e.next_at <= coalesce(%(now)s, now())"
                    " AND coalesce(a.shelved_until, i.shelved_until, '-infinity')"
                    " <= coalesce(%(now)s, now())"
                    " AND NOT EXISTS (SELECT 1 FROM maintenance_windows w"
                    " WHERE w.id = a.suppressed_by AND w.cancelled_at IS NULL"
                    " AND w.ends_at > coalesce(%(now)s, now()))"
                    " ORDER BY e.next_at LIMIT 1 FOR UPDATE OF e SKIP LOCKED",
                    {"now": now},
                )
                d = cur.fetchone()
                if d is None:
                    break
                subject = "incident" if d["incident_id"] is not None else "alert"
                d["column"] = _key_column(subject)
                d["id"] = d["incident_id"] if subject == "incident" else d["alert_id"]
                policy = book.policy(d["policy"])
                if policy is None or d["status"] != AlertStatus.OPEN.value:
                    cur.execute(
                        f"DELETE FROM notify_escalations WHERE {d['column']} = %s AND policy = %s",
                        (d["id"], d["policy"]),
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
                f"DELETE FROM notify_escalations WHERE {d['column']} = %s AND policy = %s",
                (d["id"], policy.name),
            )
        else:
            cur.execute(
                "UPDATE notify_escalations SET step = %s, reminders = %s, next_at = %s"
                f" WHERE {d['column']} = %s AND policy = %s",
                (step, reminders, next_at, d["id"], policy.name),
            )
        detail = {
            "policy": policy.name,
            "reason": reason,
            "number": number,
            "started": int(started.timestamp() * 1000),
        }
        # last: the writers' lock is held from here to the commit only
        notified = "ioc_incident_notified" if d["incident_id"] is not None else "ioc_alert_notified"
        cur.execute(f"SELECT {notified}(%s, %s, %s)", (d["id"], note, Jsonb(detail)))

    def _escalation_step(
        self, cur: psycopg.Cursor[Any], book: Book, event: Event, detail: Any
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
        who = event.subject_id if event.subject == "alert" else f"incident-{event.subject_id}"
        prefix = f"{reason[:3]}:{who}:{policy.name}:{detail.get('started')}:{number}"
        return _outbox(
            cur, event, targets, key_prefix=prefix,
            reason=reason, route=policy.name, step=number, event_seq=event.seq,
        )  # fmt: skip


def _grouped(cur: psycopg.Cursor[Any], event: Event) -> bool:
    """Whether the event's alert belongs to an incident."""
    cur.execute("SELECT 1 FROM incident_alerts WHERE alert_id = %s LIMIT 1", (event.subject_id,))
    return cur.fetchone() is not None
