"""The alert event: one typed schema and one set of action words for every outlet.

Every change of an alert is committed to ``alert_events`` (a trigger writes it in the
same transaction as the change).  That log is the one road: the MQTT relay, the
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

from core.topics import alert_topic
from core.types import Alert


class AlertAction(StrEnum):
    """What happened to an alert (the ``action`` of an event, the webhook's ``event``)."""

    OPENED = "opened"
    UPDATED = "updated"
    ESCALATED = "escalated"  # severity went up
    DEESCALATED = "deescalated"  # severity went down
    ACKNOWLEDGED = "acknowledged"
    RESOLVED = "resolved"
    REOPENED = "reopened"
    COMMENTED = "commented"
    SHELVED = "shelved"
    UNSHELVED = "unshelved"
    NOTIFIED = "notified"  # an escalation or reminder step sent notifications


class AlertEvent(BaseModel):
    """One committed row of ``alert_events``: the action and the alert after it."""

    model_config = ConfigDict(frozen=True)

    seq: int
    action: AlertAction
    time: datetime
    actor: str = "system"
    note: str | None = None
    alert: Alert

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
        )

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


EVENT_COLUMNS = "seq, alert_id, time, action, actor, note, snapshot"
# what the outlets (MQTT relay, notifications) act on: the alerts' events, not the incidents'
# that share the log, and not those of alerts raised under maintenance (recorded, not sent)
ALERTS_SHOWN = " AND alert_id IS NOT NULL AND snapshot->>'suppressed_by' IS NULL"
