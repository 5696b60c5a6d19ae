"""Query parameters that need more than a type: bbox, bucket width, aggregates, time ranges."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, NoReturn

from fastapi.exceptions import RequestValidationError

from core.errors import InvalidValue

# hard limits of every query (documented in docs/api.md)
MAX_SENSORS_PAGE = 1_000
MAX_ALERTS_PAGE = 500
MAX_OFFSET = 1_000_000
MAX_SERIES_SENSORS = 50
MAX_SERIES_METRICS = 30
MAX_RAW_SPAN = timedelta(days=31)
MAX_BUCKET_SPAN = timedelta(days=366)
MAX_BUCKETS = 10_000
MAX_ROWS = 100_000
DEFAULT_ROWS = 10_000
MAX_EXPORT_ROWS = 10_000_000
MIN_BUCKET_S = 60
MAX_BUCKET_S = 86_400
AGGREGATES = ("avg", "min", "max", "count", "last")
_AGG = "|".join("".join(f"[{c.upper()}{c}]" for c in a) for a in AGGREGATES)
# ``avg,max``: names in any case, comma-separated (stated in the schema)
AGG_PATTERN = rf"^\s*({_AGG})\s*(,\s*({_AGG})\s*)*$"
DB_INT_MAX = 2**63 - 1

# a bucket width: ``raw``, or a number and a unit, any case (the schema states this
# pattern, so it is spelled without a case-insensitive flag, which JSON Schema lacks)
_UNIT = "|".join(
    "".join(f"[{c.upper()}{c}]" for c in unit)
    for unit in ("sec", "s", "min", "m", "hour", "h", "day", "d")
)
BUCKET_PATTERN = rf"^([Rr][Aa][Ww]|\s*[0-9]{{1,6}}\s*({_UNIT})[Ss]?\s*)?$"
_BUCKET_RE = re.compile(rf"^\s*([0-9]{{1,6}})\s*({_UNIT})[Ss]?\s*$")
_UNIT_S = {"s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600, "hour": 3600, "d": 86400, "day": 86400}


def invalid(
    where: str, name: str, msg: str, value: Any, key: str | None = None, **fields: object
) -> NoReturn:
    """Raise the same 422 that FastAPI raises for a badly typed parameter; ``key`` names
    the text in the catalogue (``api.invalid.*``) for readers of other languages."""
    error: dict[str, Any] = {
        "type": "value_error",
        "loc": (where, name),
        "msg": msg,
        "input": value,
    }
    if key is not None:
        error["ctx"] = {"error": InvalidValue(msg, key, **fields)}
    raise RequestValidationError([error])


@dataclass(frozen=True, slots=True)
class BBox:
    min_lon: float
    min_lat: float
    max_lon: float
    max_lat: float

    def contains(self, lat: float | None, lon: float | None) -> bool:
        if lat is None or lon is None:
            return False
        return self.min_lat <= lat <= self.max_lat and self.min_lon <= lon <= self.max_lon


# four decimal numbers (the schema states it; empty: no bbox)
_NUMBER = r"-?[0-9]{1,3}(\.[0-9]{1,15})?"
BBOX_PATTERN = rf"^({_NUMBER}(,{_NUMBER}){{3}})?$"
_BBOX_RE = re.compile(BBOX_PATTERN)


def parse_bbox(text: str | None, where: str = "query") -> BBox | None:
    """``minlon,minlat,maxlon,maxlat`` in degrees (WGS 84)."""
    if text is None or text == "":
        return None
    if not _BBOX_RE.fullmatch(text):
        invalid(
            where,
            "bbox",
            "bbox must be four numbers: minlon,minlat,maxlon,maxlat",
            text,
            "api.invalid.bbox",
        )
    parts = text.split(",")
    if len(parts) != 4:
        invalid(where, "bbox", "bbox must be minlon,minlat,maxlon,maxlat", text, "api.invalid.bbox")
    try:
        vals = [float(p) for p in parts]
    except ValueError:
        invalid(
            where,
            "bbox",
            "bbox must be four numbers: minlon,minlat,maxlon,maxlat",
            text,
            "api.invalid.bbox",
        )
    if not all(math.isfinite(v) for v in vals):
        invalid(where, "bbox", "bbox numbers must be finite", text, "api.invalid.bbox")
    b = BBox(*vals)
    if not (-180 <= b.min_lon <= b.max_lon <= 180 and -90 <= b.min_lat <= b.max_lat <= 90):
        invalid(
            where,
            "bbox",
            "bbox needs -180 <= minlon <= maxlon <= 180 and -90 <= minlat <= maxlat <= 90",
            text,
            "api.invalid.bbox_range",
        )
    return b


def parse_bucket(text: str | None) -> int | None:
    """A bucket width such as ``1m``, ``15min``, ``1h``, ``1d`` in seconds (1 minute to 1 day)."""
    if text is None or text == "" or text.lower() == "raw":
        return None
    m = _BUCKET_RE.match(text)
    if not m:
        invalid(
            "query",
            "bucket",
            "bucket must look like 1m, 5m, 15m, 1h, 6h or 1d",
            text,
            "api.invalid.bucket",
        )
    seconds = int(m.group(1)) * _UNIT_S[m.group(2).lower()]  # (m: a match, or invalid raised)
    if not MIN_BUCKET_S <= seconds <= MAX_BUCKET_S:
        invalid(
            "query",
            "bucket",
            "bucket must be between 1 minute and 1 day",
            text,
            "api.invalid.bucket_range",
        )
    return seconds


def parse_aggs(values: list[str] | None) -> tuple[str, ...]:
    """``agg=avg,min`` or ``agg=avg&agg=min``; default: all of them."""
    if not values:
        return AGGREGATES
    out: list[str] = []
    for value in values:
        for name in value.split(","):
            name = name.strip().lower()
            if name not in AGGREGATES:
                invalid(
                    "query",
                    "agg",
                    f"agg must be among {', '.join(AGGREGATES)}",
                    value,
                    "api.invalid.agg",
                    names=", ".join(AGGREGATES),
                )
            if name not in out:
                out.append(name)
    return tuple(a for a in AGGREGATES if a in out)


def check_range(
    start: datetime, end: datetime, max_span: timedelta, what: str = "the range"
) -> None:
    if end <= start:
        invalid("query", "end", "end must be after start", end.isoformat(), "api.invalid.end")
    if end - start > max_span:
        invalid(
            "query",
            "start",
            f"{what} is at most {max_span.days} days; narrow start..end",
            start.isoformat(),
            "api.invalid.span",
            days=max_span.days,
        )


def check_bucket_count(start: datetime, end: datetime, bucket_s: int) -> None:
    n = math.ceil((end - start).total_seconds() / bucket_s)
    if n > MAX_BUCKETS:
        invalid(
            "query",
            "bucket",
            f"{n} buckets exceed the limit of {MAX_BUCKETS}; widen the bucket or narrow the range",
            bucket_s,
            "api.invalid.buckets",
            n=n,
            limit=MAX_BUCKETS,
        )
