"""Alert and incident events: typed schemas and one set of action words for every outlet.

Every change of an alert or an incident is committed to ``alert_events`` (a trigger
writes it in the same transaction as the change; an incident's row has ``incident_id``
instead of ``alert_id``).  That log is the one road: the MQTT relay, the
websockets, CAP and the notification dispatcher all read events from it, in ``seq``
order, and encode them with :meth:`AlertEvent.to_json`.  ``seq`` is strictly increasing
in commit order, so a consumer that saw ``seq`` N resumes with ``seq > N`` and drops any
``seq`` it already handled (at least once, deduplicated by ``seq``).
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

import orjson
from pydantic import BaseModel, ConfigDict

from core.topics import alert_topic, incident_topic
from core.types import Alert, Incident, Severity


class AlertAction(StrEnum):
    """What happened to an alert or an incident (an event's ``action``, the webhook's ``event``)."""

    OPENED = "opened"
    UPDATED = "updated"
    ESCALATED = "escalated"  # severity went up
    DEESCALATED = "deescalated"  # severity went down
    ACKNOWLEDGED = "acknowledged"
    RESOLVED = "resolved"
    REOPENED = "reopened"
    COMMENTED = "commented"
    SHELVED = "shelved"  # an operator shelved it until a time
    UNSHELVED = "unshelved"  # an operator unshelved it
    NOTIFIED = "notified"  # an escalation or reminder step sent notifications
    MERGED = "merged"  # an incident was merged into another (its ``merged_into``)


class AlertEvent(BaseModel):
    """One committed row of ``alert_events``: the action and the alert after it."""

    model_config = ConfigDict(frozen=True)

    seq: int
    action: AlertAction
    time: datetime
    actor: str = "system"
    note: str | None = None
    alert: Alert
    # not part of the wire form (the MQTT alert payload stays as it is): the planner's view
    shelved_until: datetime | None = None

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> AlertEvent:
        """An ``alert_events`` row (``seq, action, time, actor, note, snapshot``)."""
        return cls(
            seq=row["seq"],
            action=row["action"],
            time=row["time"],
            actor=row["actor"],
            note=row["note"],
            alert=Alert.model_validate(row["snapshot"]),
            shelved_until=row["snapshot"].get("shelved_until"),
        )

    @property
    def subject(self) -> str:
        return "alert"

    @property
    def subject_id(self) -> int:
        return self.alert.id

    @property
    def entity(self) -> Alert:
        return self.alert

    @property
    def severity(self) -> Severity:
        return self.alert.severity

    def shelved_at(self, at: datetime) -> bool:
        """Shelved by an operator at ``at`` (it gets no notifications meanwhile)."""
        return self.shelved_until is not None and self.shelved_until > at

    @property
    def topic(self) -> str:
        """``ioc/v1/alerts/<severity>/<kind>`` for MQTT."""
        return alert_topic(self.alert.severity, self.alert.kind)

    def document(self) -> dict[str, Any]:
        """The wire form shared by MQTT and webhooks.

        ``event`` and ``action`` carry the same word (``event`` for webhook receivers,
        ``action`` as on the websocket).
        """
        return {
            "seq": self.seq,
            "event": self.action.value,
            "action": self.action.value,
            "time": self.time,
            "actor": self.actor,
            "note": self.note,
            "alert": self.alert.model_dump(mode="json"),
        }

    def to_json(self) -> bytes:
        return orjson.dumps(self.document(), option=orjson.OPT_UTC_Z)


class IncidentEvent(BaseModel):
    """One committed incident row of ``alert_events``: the action and the incident after it."""

    model_config = ConfigDict(frozen=True)

    seq: int
    action: AlertAction
    time: datetime
    actor: str = "system"
    note: str | None = None
    incident: Incident

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> IncidentEvent:
        return cls(
            seq=row["seq"],
            action=row["action"],
            time=row["time"],
            actor=row["actor"],
            note=row["note"],
            incident=Incident.model_validate(row["snapshot"]),
        )

    @property
    def subject(self) -> str:
        return "incident"

    @property
    def subject_id(self) -> int:
        return self.incident.id

    @property
    def entity(self) -> Incident:
        return self.incident

    @property
    def severity(self) -> Severity:
        return self.incident.severity

    def shelved_at(self, at: datetime) -> bool:
        until = self.incident.shelved_until
        return until is not None and until > at

    @property
    def topic(self) -> str:
        """``ioc/v1/incidents/<severity>/<hazard>`` for MQTT."""
        return incident_topic(self.incident.severity, self.incident.hazard)

    def document(self) -> dict[str, Any]:
        """The wire form of MQTT and webhooks: as an alert event, with ``incident``."""
        return {
            "seq": self.seq,
            "event": self.action.value,
            "action": self.action.value,
            "time": self.time,
            "actor": self.actor,
            "note": self.note,
            "incident": self.incident.model_dump(mode="json"),
        }

    def to_json(self) -> bytes:
        return orjson.dumps(self.document(), option=orjson.OPT_UTC_Z)


Event = AlertEvent | IncidentEvent


def event_from_row(row: dict[str, Any]) -> Event:
    """An ``alert_events`` row as the event of its subject (``incident_id`` set: an incident)."""
    if row.get("incident_id") is not None:
        return IncidentEvent.from_row(row)
    return AlertEvent.from_row(row)


EVENT_COLUMNS = "seq, alert_id, incident_id, time, action, actor, note, snapshot"
# what the outlets (MQTT relay, notifications) act on: every event but those of alerts
# raised under maintenance (recorded, not sent); an incident's snapshot has no suppressed_by.
# An escalation step ('notified') is only ever taken outside maintenance, but the alert's
# row keeps the window it was last suppressed by until its next change: it goes out.
EVENTS_SHOWN = " AND (snapshot->>'suppressed_by' IS NULL OR action = 'notified')"
