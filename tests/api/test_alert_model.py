"""``AlertPublic`` is ``core.types.Alert`` plus the API's columns, and its JSON stays as it was."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from api.models import AlertPublic
from core.errors import InvalidValue
from core.types import Alert, AlertStatus, SensorKind

HANOI = timezone(timedelta(hours=7))
ROW = {
    "id": 7,
    "sensor": "wl-td-03",
    "metric": "water_level",
    "rule": "water_level.critical",
    "detector": "threshold",
    "kind": "water_level",
    "alert_class": "threshold",
    "severity": "critical",
    "status": "acknowledged",
    "message": "x",
    "value": 52.5,
    "expected_low": None,
    "expected_high": 30.0,
    "score": float("nan"),
    "evidence": '{"a": [1, 2.5]}',
    "lat": 21.0,
    "lon": 105.8,
    "area": "Cầu Giấy",
    "opened_at": datetime(2026, 11, 22, 7, 30, tzinfo=HANOI),
    "updated_at": datetime(2026, 11, 22, 0, 35, 1, 123456, tzinfo=UTC),
    "acknowledged_at": datetime(2026, 11, 22, 8, 0, tzinfo=HANOI),
    "acknowledged_by": "op",
    "resolved_at": None,
    "resolved_by": None,
    "occurrences": 3,
    "suppressed_by": None,
    "shelved_until": datetime(2026, 11, 22, 9, 0, tzinfo=HANOI),
    "shelved_by": "lead",
}
# the bytes the API returned before AlertPublic was built on core.types.Alert
GOLDEN = (
    '{"id":7,"sensor":"wl-td-03","metric":"water_level","rule":"water_level.critical",'
    '"detector":"threshold","kind":"water_level","alert_class":"threshold",'
    '"severity":"critical","status":"acknowledged","message":"x","value":52.5,'
    '"expected_low":null,"expected_high":30.0,"score":null,"evidence":{"a":[1,2.5]},'
    '"lat":21.0,"lon":105.8,"area":"Cầu Giấy","opened_at":"2026-11-22T00:30:00Z",'
    '"updated_at":"2026-11-22T00:35:01.123456Z","acknowledged_at":"2026-11-22T01:00:00Z",'
    '"acknowledged_by":"op","resolved_at":null,"resolved_by":null,"occurrences":3,'
    '"suppressed_by":null,"shelved_until":"2026-11-22T02:00:00Z","shelved_by":"lead"}'
)


def test_the_public_alert_is_the_core_alert_and_its_json_is_unchanged() -> None:
    alert = AlertPublic(**ROW)
    assert isinstance(alert, Alert)
    assert alert.kind is SensorKind.WATER_LEVEL and alert.status is AlertStatus.ACKNOWLEDGED
    assert alert.model_dump_json() == GOLDEN
    # the API's own columns come after the contract's, which keep their order
    assert list(AlertPublic.model_fields)[: len(Alert.model_fields)] == list(Alert.model_fields)
    alert.message = "in the reader's language"  # the API renders it per request


def test_a_core_alert_holds_its_times_in_utc_and_refuses_a_time_without_a_zone() -> None:
    core = Alert.model_validate({**ROW, "score": None})
    assert core.opened_at == datetime(2026, 11, 22, 0, 30, tzinfo=UTC)
    assert core.opened_at.utcoffset() == timedelta(0)
    with pytest.raises(ValueError, match="no time zone") as info:
        Alert.model_validate({**ROW, "opened_at": datetime(2026, 11, 22, 7, 30)})  # noqa: DTZ001
    assert isinstance(info.value.errors()[0]["ctx"]["error"], InvalidValue)  # type: ignore[attr-defined]
