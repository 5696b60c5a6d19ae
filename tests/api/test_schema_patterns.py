"""The patterns the OpenAPI schema states for bbox, bucket, agg and times accept exactly what
the server's own parsing accepts (so that schemathesis's positive and negative checks hold)."""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest
from fastapi.exceptions import RequestValidationError

from api.config import ApiSettings
from api.main import create_app
from api.models import _rfc3339
from api.params import (
    AGG_PATTERN,
    BBOX_PATTERN,
    BUCKET_PATTERN,
    parse_aggs,
    parse_bbox,
    parse_bucket,
)
from core.errors import InvalidValue


def _accepted(parse: Callable[[str], object], text: str) -> bool:
    try:
        parse(text)
    except (RequestValidationError, InvalidValue):
        return False
    return True


@pytest.mark.parametrize(
    "text",
    [
        "105.78,20.99,105.88,21.06",
        "-1,-2,3,4",
        "1,2,3",
        "1e1,2,3,4",
        " 1,2,3,4",
        "a,b,c,d",
        "",
        "1,2,3,4,",
    ],
)
def test_bbox_pattern_is_the_parsers_format(text: str) -> None:
    # (the ranges and min <= max inside a bbox are the one part the schema cannot state)
    formed = bool(re.search(BBOX_PATTERN, text))
    assert formed == _accepted(lambda t: parse_bbox(t) or True, text)


@pytest.mark.parametrize(
    "text", ["1h", "15MIN", " 6 hours ", "1d", "raw", "RAW", "", "7y", "1.5h", "h"]
)
def test_bucket_pattern_is_the_parsers_format(text: str) -> None:
    assert bool(re.search(BUCKET_PATTERN, text)) == _accepted(parse_bucket, text)


@pytest.mark.parametrize("text", ["avg", "avg,max", " AVG , last", "avg,", "x", ",", "min,min"])
def test_agg_pattern_is_the_parsers_format(text: str) -> None:
    assert bool(re.search(AGG_PATTERN, text)) == _accepted(lambda t: parse_aggs([t]), text)


@pytest.mark.parametrize(
    ("text", "ok"),
    [
        ("1970-01-01T00:30:00+01:00", True),  # the year as written, although 1969 in UTC
        ("2200-12-31T23:00:00-05:00", True),
        ("1969-12-31T23:59:59Z", False),
        ("2201-01-01T00:00:00Z", False),
    ],
)
def test_times_are_within_the_years_the_schema_states(text: str, ok: bool) -> None:
    schema = create_app(ApiSettings()).openapi()["components"]["schemas"]["MaintenanceCreate"]
    pattern = schema["properties"]["start"]["pattern"]
    assert bool(re.search(pattern, text)) is ok
    assert _accepted(_rfc3339, text) is ok
