"""docs/asyncapi.yaml and docs/schemas/: an AsyncAPI 3.0 document, generated from core, true to it."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import warnings
from datetime import datetime
from pathlib import Path
from typing import Any

import jsonschema_rs
import pytest
import yaml

from core.codecs import (
    decode_meta,
    decode_readings,
    decode_status,
    encode_fiware,
    encode_meta,
    encode_native,
    encode_senml,
)
from core.contract import asyncapi_document, contract_files, payload_schemas
from core.errors import PayloadError
from core.topics import alert_topic, data_topic, meta_topic, status_topic
from core.types import DISPLAY_TZ as HANOI
from core.types import Sensor, SensorKind, Severity

DOCS = Path(__file__).resolve().parents[2] / "docs"


@pytest.fixture(scope="module")
def document() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((DOCS / "asyncapi.yaml").read_text(encoding="utf-8"))
    return loaded


def test_the_published_files_are_what_core_generates() -> None:
    for rel, text in contract_files().items():
        path = DOCS / rel
        assert path.exists(), f"docs/{rel} is missing: run `ioc contract write`"
        assert path.read_text(encoding="utf-8") == text, (
            f"docs/{rel} is stale: `ioc contract write`"
        )


def test_it_is_an_asyncapi_3_document(document: dict[str, Any]) -> None:
    with warnings.catch_warnings():  # the model's own field names shadow pydantic's
        warnings.simplefilter("ignore", UserWarning)
        from asyncapi3.models.asyncapi import AsyncAPI3

    parsed = AsyncAPI3.model_validate(document)
    assert parsed.asyncapi == "3.0.0"
    assert document == asyncapi_document()
    broken = {**document, "operations": {"x": {"action": "publish", "channel": {}}}}
    with pytest.raises(ValueError, match="send"):  # the parser does check
        AsyncAPI3.model_validate(broken)


def _refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        own = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return own + [r for v in node.values() for r in _refs(v)]
    if isinstance(node, list):
        return [r for v in node for r in _refs(v)]
    return []


def test_every_reference_resolves(document: dict[str, Any]) -> None:
    refs = _refs(document)
    assert len(refs) >= 12
    for ref in refs:
        assert ref.startswith("#/"), ref
        node: Any = document
        for part in ref[2:].split("/"):
            assert isinstance(node, dict) and part in node, f"{ref} does not resolve"
            node = node[part]


def _address(document: dict[str, Any], channel: str, **params: str) -> str:
    address: str = document["channels"][channel]["address"]
    for name, value in params.items():
        address = address.replace("{" + name + "}", value)
    return address


def test_channels_are_the_topics_of_core(document: dict[str, Any]) -> None:
    assert set(document["channels"]) >= {"data", "meta", "status", "alerts"}
    for kind in SensorKind:
        p = {"kind": kind.value, "sensorId": "aq-01"}
        assert _address(document, "data", **p) == data_topic(kind, "aq-01")
        assert _address(document, "meta", **p) == meta_topic(kind, "aq-01")
        assert _address(document, "status", **p) == status_topic(kind, "aq-01")
        for sev in Severity:
            got = _address(document, "alerts", severity=sev.value, kind=kind.value)
            assert got == alert_topic(sev, kind)
        assert kind.value in document["channels"]["data"]["parameters"]["kind"]["enum"]
    ops = {
        op["channel"]["$ref"].rsplit("/", 1)[-1]: (op["action"], op["bindings"]["mqtt"])
        for op in document["operations"].values()
    }
    assert ops["data"] == ("receive", {"qos": 1, "retain": False, "bindingVersion": "0.2.0"})
    assert ops["meta"][1]["retain"] is True and ops["status"][1]["retain"] is True
    assert ops["alerts"][0] == "send" and ops["alerts"][1]["qos"] == 1


@pytest.fixture(scope="module")
def validators() -> dict[str, Any]:
    out = {}
    for name in payload_schemas():
        published = json.loads((DOCS / "schemas" / f"{name}.json").read_text(encoding="utf-8"))
        out[name] = jsonschema_rs.Draft7Validator(published)
    return out


def test_what_core_encodes_the_schemas_accept(validators: dict[str, Any]) -> None:
    now = time.time()
    data = validators["data"]
    for payload in [
        encode_native([(now, {"pm25": 87.5, "pm10": 120})]),
        encode_native([(now - 60, {"water_level": 42}), (now, {"water_level": 47})]),
        encode_senml("cam-0001", [(now, "speed", 23.5), (now + 1, "occupancy", 41)]),
        encode_fiware(SensorKind.WEATHER, "ws-1", now, {"temperature": 34.5, "humidity": 32}),
        encode_fiware(SensorKind.TRAFFIC_CAMERA, "cam-1", now, {"occupancy": 40, "speed": 30}),
    ]:
        assert data.is_valid(json.loads(payload)), payload
    meta = Sensor(
        id="wl-lb-01",
        kind=SensorKind.WATER_LEVEL,
        name="Long Biên",
        lat=21.043,
        lon=105.86,
        metrics=("water_level",),
        attributes={"site_type": "river", "levels": {"water_level": {"warning": 1050}}},
    )
    assert validators["meta"].is_valid(json.loads(encode_meta(meta)))
    for status in ("online", "offline", {"status": "offline", "ts": "2026-11-22T07:00:00Z"}):
        assert validators["status"].is_valid(status)


@pytest.mark.parametrize(
    "doc",
    [
        {"ts": 0, "values": {"pm25": 5000}},  # outside the physical range
        {"ts": 0, "values": {"aqi_vn": 50}},  # derived by analytics, never sent
        {"ts": 0, "values": {}},
        {"values": {"pm25": "high"}},
        [{"n": "pm25", "v": "x"}],
        {"type": "WaterObserved", "height": 99},  # metres: 99 m is no water level
        {"type": "NoSuchModel", "x": 1},
    ],
)
def test_what_core_rejects_the_schemas_reject(validators: dict[str, Any], doc: Any) -> None:
    assert not validators["data"].is_valid(doc)
    payload = json.dumps(doc).encode()
    try:
        decoded = decode_readings("s-1", payload, now=time.time())
    except PayloadError:
        return
    assert decoded.rejections and not decoded.readings


def test_alert_schema_matches_a_published_alert(validators: dict[str, Any]) -> None:
    alert = {
        "action": "opened",
        "id": 7,
        "sensor": "wl-td-03",
        "metric": "water_level",
        "rule": "street_flooding",
        "detector": "rules",
        "kind": "water_level",
        "alert_class": "threshold",
        "severity": "warning",
        "status": "open",
        "message": "Ngập / flooding",
        "value": 31.0,
        "evidence": {},
        "opened_at": "2026-11-22T07:00:00+00:00",
        "updated_at": "2026-11-22T07:00:00+00:00",
        "occurrences": 1,
    }
    assert validators["alert"].is_valid(alert)
    assert not validators["alert"].is_valid({**alert, "severity": "apocalyptic"})
    assert not validators["alert"].is_valid({k: v for k, v in alert.items() if k != "action"})


def test_schema_examples_decode_in_core(validators: dict[str, Any]) -> None:
    """What the schemas accept, core stores: the README's own examples, through both."""
    now = time.time()
    docs = [
        {"ts": datetime.now(HANOI).isoformat(), "values": {"pm25": 87.5, "pm10": 120, "no2": 41}},
        [{"bn": "urn:dev:ioc:cam-0001:", "bt": now, "n": "speed", "u": "km/h", "v": 23.5}],
        {
            "id": "urn:ngsi-ld:WeatherObserved:s-1",
            "type": "WeatherObserved",
            "temperature": 34.5,
            "relativeHumidity": {"value": 0.32},
        },
    ]
    for doc in docs:
        assert validators["data"].is_valid(doc)
        sensor = "cam-0001" if isinstance(doc, list) else "s-1"
        decoded = decode_readings(sensor, json.dumps(doc).encode(), now=now)
        assert decoded.readings and not decoded.rejections, decoded
    assert decode_meta(SensorKind.AIR_QUALITY, "aq-1", b'{"name": "x", "metrics": ["pm25"]}')
    assert decode_status(b"offline")[0] == "offline"


def test_ioc_contract_check_says_whether_the_files_are_current(tmp_path: Path) -> None:
    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "ioc", "contract", *args, "--docs", str(tmp_path)],
            capture_output=True,
            text=True,
            timeout=60,
        )

    stale = run("check")
    assert stale.returncode == 1 and "asyncapi.yaml" in stale.stderr
    assert "ioc contract write" in stale.stderr
    assert run("write").returncode == 0
    assert run("check").returncode == 0
    assert sorted(p.name for p in (tmp_path / "schemas").iterdir()) == [
        "alert.json",
        "data.json",
        "incident.json",
        "meta.json",
        "status.json",
    ]


def test_incident_schema_matches_a_relayed_incident_event(validators: dict[str, Any]) -> None:
    from datetime import UTC, datetime

    from core.events import IncidentEvent
    from core.types import Incident

    at = datetime(2026, 12, 5, 8, 0, tzinfo=UTC)
    incident = Incident(
        id=7, hazard="air_pollution", status="open", severity="critical",
        title="Air pollution episode", title_vi="Đợt ô nhiễm không khí", sensors=("aq-1",),
        areas=("Cầu Giấy",), kinds=("air_quality",), peak={"metric": "pm25", "value": 301},
        alert_count=1, active_alerts=1, first_seen=at, last_seen=at, opened_at=at, updated_at=at,
    )  # fmt: skip
    doc = json.loads(IncidentEvent(seq=3, action="opened", time=at, incident=incident).to_json())
    assert validators["incident"].is_valid(doc)
    assert not validators["incident"].is_valid({k: v for k, v in doc.items() if k != "incident"})
    bad = {**doc, "incident": {**doc["incident"], "severity": "apocalyptic"}}
    assert not validators["incident"].is_valid(bad)
