"""CAP 1.2: every alert state becomes a document valid against the CAP 1.2 schema structure."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
import xmlschema

from api.cap import CAP_NS, alert_to_cap
from api.models import ALERT_EXAMPLE, AlertPublic
from tests.api.conftest import insert_alert

XSD = xmlschema.XMLSchema(Path(__file__).parent / "data" / "CAP-v1.2.xsd")
NS = {"cap": CAP_NS}
T0 = datetime(2026, 11, 22, 0, 30, tzinfo=UTC)


def alert(**over: Any) -> AlertPublic:
    doc: dict[str, Any] = {
        **ALERT_EXAMPLE,
        "evidence": {"radius_km": 0.3},
        "opened_at": T0,
        "updated_at": T0 + timedelta(seconds=1),
        "occurrences": 1,
    }
    doc.update(over)
    return AlertPublic.model_validate(doc)


def render(a: AlertPublic) -> ET.Element:
    xml = alert_to_cap(a, sender="ioc.hanoi.gov.vn", sender_name="Hanoi IOC")
    XSD.validate(xml.decode())  # raises with the reason if the structure is wrong
    return ET.fromstring(xml)


def text(root: ET.Element, path: str) -> str:
    el = root.find(path, NS)
    assert el is not None and el.text is not None, path
    return el.text


def test_a_new_alert_is_an_alert_message() -> None:
    root = render(alert())
    assert text(root, "cap:identifier") == "ioc.hanoi.gov.vn.alert.42"
    assert text(root, "cap:msgType") == "Alert"
    assert (text(root, "cap:status"), text(root, "cap:scope")) == ("Actual", "Public")
    assert text(root, "cap:sent") == "2026-11-22T07:30:01+07:00"  # Hanoi time, no Z, no fraction
    assert root.find("cap:references", NS) is None
    info = "cap:info/"
    assert text(root, info + "cap:category") == "Met"
    assert text(root, info + "cap:urgency") == "Immediate"
    assert text(root, info + "cap:severity") == "Severe"
    assert text(root, info + "cap:certainty") == "Observed"
    assert text(root, info + "cap:area/cap:areaDesc") == "Cầu Giấy"
    assert text(root, info + "cap:area/cap:circle") == "21.010600,105.800300 0.3"
    assert "52" in text(root, info + "cap:description")
    params = {
        p.findtext("cap:valueName", namespaces=NS): p.findtext("cap:value", namespaces=NS)
        for p in root.findall(info + "cap:parameter", NS)
    }
    assert params["sensor"] == "wl-td-03" and params["value"] == "52" and params["unit"] == "cm"


def test_later_states_are_updates_referencing_the_first() -> None:
    acked = render(
        alert(
            status="acknowledged",
            acknowledged_at=T0 + timedelta(minutes=5),
            acknowledged_by="duty-operator",
            occurrences=3,
        )
    )
    assert text(acked, "cap:msgType") == "Update"
    ident = text(acked, "cap:identifier")
    assert ident.startswith("ioc.hanoi.gov.vn.alert.42.") and not re.search(r"[\s,<&]", ident)
    assert text(acked, "cap:references") == (
        "ioc.hanoi.gov.vn,ioc.hanoi.gov.vn.alert.42,2026-11-22T07:30:00+07:00"
    )
    assert "duty-operator" in text(acked, "cap:info/cap:description")
    done = render(
        alert(status="resolved", resolved_at=T0 + timedelta(hours=1), resolved_by="duty-operator")
    )
    assert text(done, "cap:info/cap:urgency") == "Past"
    assert text(done, "cap:info/cap:responseType") == "AllClear"
    assert text(done, "cap:sent") == "2026-11-22T08:30:00+07:00"
    assert text(done, "cap:identifier") != ident


@pytest.mark.parametrize(
    "over",
    [
        {"lat": None, "lon": None, "area": ""},  # no place: areaDesc falls back to the sensor
        {"kind": "air_quality", "metric": "pm25", "severity": "warning", "alert_class": "incident"},
        {"kind": "weather", "metric": "fire_risk", "rule": "fire_risk.high", "severity": "info"},
        {"alert_class": "device", "rule": "health.offline", "value": None},
        {"alert_class": "probable_fault", "kind": "generic", "metric": "battery"},
        {"message": "bad \x00 bytes \x1b[31m and <tags> & ampersands"},
        {"severity": "warning", "evidence": {"radius_km": "huge"}},
    ],
)
def test_every_kind_of_alert_is_valid_cap(over: dict[str, Any]) -> None:
    root = render(alert(**over))
    circle = root.find("cap:info/cap:area/cap:circle", NS)
    if circle is not None:
        assert re.fullmatch(r"-?\d+\.\d+,-?\d+\.\d+ \d+(\.\d+)?", circle.text or "")
    assert text(root, "cap:info/cap:area/cap:areaDesc")


@pytest.mark.db
def test_cap_endpoint(client: httpx.Client, db: psycopg.Connection[Any]) -> None:
    aid = insert_alert(db)
    resp = client.get(f"/api/v1/alerts/{aid}/cap")
    assert resp.status_code == 200
    assert resp.headers["content-type"].startswith("application/cap+xml")
    XSD.validate(resp.text)
    root = ET.fromstring(resp.content)
    assert text(root, "cap:identifier").endswith(f".alert.{aid}")
    assert client.get("/api/v1/alerts/424242/cap").status_code == 404


def test_the_schema_is_not_vacuous() -> None:
    good = alert_to_cap(alert(), sender="s", sender_name="n").decode()
    XSD.validate(good)
    for bad in (
        good.replace("+07:00</sent>", "Z</sent>"),  # CAP forbids Z
        good.replace("<status>Actual</status>", "<status>Real</status>"),
        good.replace("<msgType>Alert</msgType>", ""),  # required
        good.replace("<scope>Public</scope>", "")
        .replace("</msgType>", "</msgType><scope>Public</scope>", 1)
        .replace("<source>", "<scope>Public</scope><source>", 1),  # order
    ):
        assert not XSD.is_valid(bad)


def test_one_info_block_per_language() -> None:
    root = render(
        alert(
            rule="water_level.flood",
            detector="rules",
            value=52.5,
            evidence={"level": "critical", "threshold": 40.0, "direction": "above"},
            status="resolved",
            resolved_at=T0 + timedelta(hours=1),
            resolved_by="duty-operator",
        )
    )
    infos = root.findall("cap:info", NS)
    assert [i.findtext("cap:language", namespaces=NS) for i in infos] == ["en-US", "vi-VN"]
    en, vi = ({c.tag.split("}")[1]: c.text for c in i} for i in infos)
    assert en["headline"] == "CRITICAL: Water level above the gauge datum at Cầu Giấy (resolved)"
    assert vi["headline"] == "NGHIÊM TRỌNG: Mực nước tại Cầu Giấy (đã xử lý)"
    assert en["description"] is not None and vi["description"] is not None
    assert "street flooding 52.5 cm is at or above the critical level 40 cm" in en["description"]
    assert "ngập úng 52,5 cm, bằng hoặc vượt ngưỡng nghiêm trọng 40 cm" in vi["description"]
    assert "duty-operator đã xử lý." in vi["description"]
    assert vi["instruction"] == "Tình trạng đã kết thúc; không cần xử lý thêm."
    # the same facts in both: severity, urgency, area
    for tag in ("severity", "urgency", "certainty", "responseType"):
        assert en[tag] == vi[tag], tag
