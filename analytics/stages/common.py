"""What the domain stages share: Hanoi's UTC offset, times, place names and rounded numbers in messages."""

from __future__ import annotations

import logging
from datetime import UTC, datetime

import numpy as np

from analytics.engine.base import (
    Context,
)
from core.types import DISPLAY_TZ, UTC_OFFSET_S

logger = logging.getLogger(__name__)

TZ = UTC_OFFSET_S  # Hanoi: UTC+7 all year


def utc_time(t: float) -> datetime:
    return datetime.fromtimestamp(t, UTC)


def local_time(t: float) -> datetime:
    return datetime.fromtimestamp(t, DISPLAY_TZ)


def place_name(sensor: str, ctx: Context) -> str:
    meta = ctx.sensors.get(sensor)
    if meta is None:
        return sensor
    label = meta.name or meta.area
    return f"{label} ({sensor})" if label else sensor


def rounded(x: float) -> float | None:
    return None if not np.isfinite(x) else round(float(x), 2)
