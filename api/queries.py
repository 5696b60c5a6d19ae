"""SQL shared by the routes and the streams: column lists, a WHERE builder, alert reads."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from psycopg import AsyncConnection, sql
from psycopg.rows import class_row

from api.models import AlertEvent, AlertPublic

ALERT_COLUMNS = (
    "id, sensor, metric, rule, detector, kind, alert_class, severity, status, message, value,"
    " expected_low, expected_high, score, evidence, lat, lon, area, opened_at, updated_at,"
    " acknowledged_at, acknowledged_by, resolved_at, resolved_by, occurrences, suppressed_by,"
    " shelved_until, shelved_by"
)
MAX_EVENTS = 1_000
# the readings' time of an event analytics wrote (a replay or a simulation runs behind the
# wall clock that ``alert_events.time`` records); operators' events have none
_READING_TIME = """CASE WHEN actor = 'system' THEN CASE action
    WHEN 'opened' THEN (snapshot->>'opened_at')::timestamptz
    WHEN 'resolved' THEN (snapshot->>'resolved_at')::timestamptz
    ELSE (snapshot->'evidence'->>'reading_time')::timestamptz END END"""


@dataclass(slots=True)
class Where:
    """AND-ed conditions with their parameters; every value is a bound parameter."""

    parts: list[sql.Composable] = field(default_factory=list)
    params: dict[str, Any] = field(default_factory=dict)

    def add(self, condition: str, **params: Any) -> None:
        self.parts.append(sql.SQL(condition))
        self.params.update(params)

    def any_of(self, column: str, name: str, values: list[str] | None) -> None:
        if values:
            self.add(f"{column} = ANY(%({name})s)", **{name: values})

    def sql(self) -> sql.Composable:
        if not self.parts:
            return sql.SQL("")
        return sql.SQL(" WHERE ") + sql.SQL(" AND ").join(self.parts)


def like_pattern(text: str) -> str:
    """``text`` as a literal ILIKE substring pattern."""
    return "%" + text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


async def fetch_alert(conn: AsyncConnection[Any], alert_id: int) -> AlertPublic | None:
    async with conn.cursor(row_factory=class_row(AlertPublic)) as cur:
        await cur.execute(f"SELECT {ALERT_COLUMNS} FROM alerts WHERE id = %s", (alert_id,))
        return await cur.fetchone()


async def fetch_events(conn: AsyncConnection[Any], alert_id: int) -> list[AlertEvent]:
    async with conn.cursor(row_factory=class_row(AlertEvent)) as cur:
        await cur.execute(
            "SELECT seq, time, action, actor, note, reading_time FROM ("
            f" SELECT seq, time, action, actor, note, {_READING_TIME} AS reading_time"
            " FROM alert_events WHERE alert_id = %s ORDER BY seq DESC LIMIT %s) e ORDER BY seq",
            (alert_id, MAX_EVENTS),
        )
        return await cur.fetchall()
