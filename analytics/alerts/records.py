"""Alert records: what the lifecycle tracks per active alert, a committed change, JSON-safe evidence."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from analytics.engine.base import Signal
from core.events import AlertAction
from core.types import Alert, AlertClass, AlertStatus, Severity


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
    """A committed change of an alert: the action and the alert after it (typed as in ``core``)."""

    action: AlertAction
    alert: Alert

    @classmethod
    def of(cls, action: AlertAction, row: Mapping[str, Any]) -> Change:
        """The change from a row of ``alerts`` (its columns beyond ``Alert``'s are left out)."""
        return cls(action, Alert.model_validate(row))


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
