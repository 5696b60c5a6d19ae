"""Alert records: what the lifecycle tracks per active alert, a committed change, JSON-safe evidence."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson

from analytics.engine.base import Signal
from core.types import AlertClass, AlertStatus, Severity


@dataclass(slots=True)
class Tracked:
    """What the lifecycle knows about one active alert."""

    id: int
    status: AlertStatus
    severity: Severity
    alert_class: AlertClass
    spatial: bool  # the class came from corroboration and may be upgraded
    last_signal: float
    cleared_since: float | None = None
    last_write: float = -math.inf  # monotonic time of the last UPDATE
    pending: Signal | None = None  # latest active signal not yet written (throttled)
    pending_count: int = 0


@dataclass(frozen=True, slots=True)
class Change:
    """A committed change of an alert: the action and the row after it."""

    action: str  # opened, updated, escalated, reopened, resolved
    alert: dict[str, Any]

    def to_json(self) -> bytes:
        return orjson.dumps({"action": self.action, **self.alert}, default=json_default)


def json_default(obj: Any) -> Any:
    if isinstance(obj, datetime):
        return obj.isoformat()
    raise TypeError(type(obj).__name__)


def finite(x: float | None) -> float | None:
    return x if x is not None and math.isfinite(x) else None


def clean_json(obj: Any) -> Any:
    """JSON-safe evidence: NaN/inf become null, numpy scalars plain numbers."""
    if isinstance(obj, dict):
        return {str(k): clean_json(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [clean_json(v) for v in obj]
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if hasattr(obj, "item") and callable(obj.item):
        return clean_json(obj.item())
    return obj
