"""``/api/v1/operator-load``: the operators' alarm load over the last hours (ISA-18.2)."""

from __future__ import annotations

import time
from collections import Counter
from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field

from api.deps import ConnDep, Reader
from api.models import UtcDateTime
from api.routes import V1
from core.operator_load import ALERT_SPANS, INCIDENT_SPANS, LIVE_NEWS, measure

router = APIRouter(prefix=f"{V1}/operator-load", tags=["operator load"])


class LoadPublic(BaseModel):
    new: int = Field(description="opened or reopened", examples=[31])
    per_hour: float = Field(description="mean new per hour (ISA-18.2: about 6)", examples=[1.3])
    busiest_hour: int = Field(examples=[7])
    peak_10min: int = Field(description="most new in any 10 minutes (flood: more than 10)")
    flood_share: float = Field(description="share of 10-minute periods with more than 10 new")
    chattering: int = Field(description="opened or reopened 3 times or more within a minute")
    standing: int = Field(description="open for more than 24 hours")


class Noisy(BaseModel):
    name: str
    count: int


class OperatorLoad(BaseModel):
    """What operators were asked to handle: alerts, and incidents (what they are shown)."""

    since: UtcDateTime
    until: UtcDateTime
    alerts: LoadPublic
    incidents: LoadPublic
    noisiest_sensors: list[Noisy] = Field(description="the 10 sensors with most new alerts")
    noisiest_rules: list[Noisy] = Field(description="the 10 rules with most new alerts")
    priorities: dict[str, int] = Field(
        description="new alerts by severity", examples=[{"critical": 4, "warning": 20}]
    )


@router.get("", response_model=OperatorLoad, summary="Operator load (ISA-18.2), last hours")
async def operator_load(
    conn: ConnDep,
    user: Reader,
    hours: Annotated[int, Query(ge=1, le=168, description="how far back, in hours")] = 24,
) -> OperatorLoad:
    end = time.time()
    start = end - hours * 3600.0
    since = datetime.fromtimestamp(start, UTC)
    cur = await conn.execute(LIVE_NEWS, (since,))
    rows = await cur.fetchall()
    alert_news = [(int(i), float(t)) for i, is_alert, t, _, _, _ in rows if is_alert]
    incident_news = [(int(i), float(t)) for i, is_alert, t, _, _, _ in rows if not is_alert]
    spans_cur = await conn.execute(ALERT_SPANS, (since,))
    alert_spans = await spans_cur.fetchall()
    spans_cur = await conn.execute(INCIDENT_SPANS, (since,))
    incident_spans = await spans_cur.fetchall()
    alerts = measure("alerts", alert_news, alert_spans, start, end)
    incidents = measure("incidents", incident_news, incident_spans, start, end)
    sensors = Counter(s for _, a, _, s, _, _ in rows if a and s)
    rules = Counter(r for _, a, _, _, r, _ in rows if a and r)
    severities = Counter(v for _, a, _, _, _, v in rows if a and v)
    return OperatorLoad(
        since=since,
        until=datetime.fromtimestamp(end, UTC),
        alerts=LoadPublic(**alerts.to_dict()),
        incidents=LoadPublic(**incidents.to_dict()),
        noisiest_sensors=[Noisy(name=n, count=c) for n, c in sensors.most_common(10)],
        noisiest_rules=[Noisy(name=n, count=c) for n, c in rules.most_common(10)],
        priorities={s: severities.get(s, 0) for s in ("critical", "warning", "info")},
    )
