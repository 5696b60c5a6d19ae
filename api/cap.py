"""An alert as an OASIS Common Alerting Protocol 1.2 document (CAP-v1.2.xsd structure)."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from datetime import datetime
from typing import Any

from api.models import AlertPublic
from core import alert_text
from core.i18n import TAGS, Lang, text
from core.metrics import METRICS
from core.types import DISPLAY_TZ

CAP_NS = "urn:oasis:names:tc:emergency:cap:1.2"
CAP_MEDIA_TYPE = "application/cap+xml"
DEFAULT_RADIUS_KM = 0.5
# characters XML 1.0 cannot carry (a message with a stray control byte must not break CAP)
_NOT_XML = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")

_CATEGORY = {
    "traffic_camera": "Transport",
    "air_quality": "Env",
    "water_level": "Met",  # CAP files floods under Met(eorological)
    "weather": "Met",
    "noise": "Env",
    "generic": "Other",
}
_SEVERITY = {"critical": "Severe", "warning": "Moderate", "info": "Minor"}
_URGENCY = {"critical": "Immediate", "warning": "Expected", "info": "Future"}
_CERTAINTY = {
    "incident": "Observed",
    "threshold": "Observed",
    "device": "Observed",
    "probable_fault": "Possible",
}


def cap_time(t: datetime) -> str:
    """CAP dateTime: local time with a numeric offset, no fractions, never ``Z``."""
    return t.astimezone(DISPLAY_TZ).replace(microsecond=0).isoformat()


def _identifier(sender: str, alert_id: int, suffix: str = "") -> str:
    return f"{sender}.alert.{alert_id}{suffix}"


def _categories(alert: AlertPublic) -> list[str]:
    if alert.alert_class == "device":
        return ["Infra"]
    if alert.metric == "fire_risk" or alert.rule.startswith("fire"):
        return ["Fire"]
    cats = [_CATEGORY.get(alert.kind, "Other")]
    if alert.kind == "air_quality":
        cats.append("Health")
    return cats


def _event_name(alert: AlertPublic, lang: Lang) -> str:
    metric = METRICS.get(alert.metric)
    if lang == "en":
        what = metric.description if metric else alert.metric.replace("_", " ")
    else:
        what = alert_text.metric_name(alert.metric, lang)
    if alert.alert_class == "device":
        return text(lang, "cap.event.device", what=what)
    return what[:1].upper() + what[1:]


def _radius_km(evidence: dict[str, Any]) -> float:
    for key in ("radius_km", "radius"):
        value = evidence.get(key)
        if isinstance(value, int | float) and 0 < value <= 1_000:
            return float(value)
    return DEFAULT_RADIUS_KM


def _fmt(v: float) -> str:
    return f"{v:.6g}"


def _sub(parent: ET.Element, tag: str, text: str | None = None) -> ET.Element:
    el = ET.SubElement(parent, f"{{{CAP_NS}}}{tag}")
    if text is not None:
        el.text = _NOT_XML.sub("\ufffd", text)
    return el


def _pair(parent: ET.Element, tag: str, name: str, value: str) -> None:
    """``<tag><valueName>name</valueName><value>value</value></tag>``."""
    el = _sub(parent, tag)
    _sub(el, "valueName", name)
    _sub(el, "value", value)


def alert_to_cap(
    alert: AlertPublic,
    *,
    sender: str,
    sender_name: str,
    sensor_name: str | None = None,
    languages: tuple[Lang, ...] = ("en", "vi"),
) -> bytes:
    """The CAP 1.2 ``<alert>`` for the alert's current state, with one ``<info>`` per language
    (``en-US``, ``vi-VN``: the same facts, texts from the message catalogue).

    The first message about an alert (open, never repeated nor handled) is an ``Alert``;
    every later state is an ``Update`` that references it; a resolved alert's urgency
    is ``Past``.  Identifiers are unique per state:
    ``<sender>.alert.<id>`` then ``<sender>.alert.<id>.<unix milliseconds>``.
    """
    ET.register_namespace("", CAP_NS)
    first = (
        alert.status == "open"
        and alert.occurrences <= 1
        and alert.acknowledged_at is None
        and alert.resolved_at is None
    )
    sent = max(t for t in (alert.updated_at, alert.acknowledged_at, alert.resolved_at) if t)
    original = _identifier(sender, alert.id)

    root = ET.Element(f"{{{CAP_NS}}}alert")
    if first:
        _sub(root, "identifier", original)
    else:
        _sub(root, "identifier", f"{original}.{int(sent.timestamp() * 1000)}")
    _sub(root, "sender", sender)
    _sub(root, "sent", cap_time(sent))
    _sub(root, "status", "Actual")
    _sub(root, "msgType", "Alert" if first else "Update")
    _sub(root, "source", f"{alert.detector}/{alert.rule}")
    _sub(root, "scope", "Public")
    if not first:
        _sub(root, "references", f"{sender},{original},{cap_time(alert.opened_at)}")
    _sub(root, "incidents", original)
    for lang in languages:
        _info(root, alert, lang, sender_name, sensor_name)
    ET.indent(root)
    doc: bytes = ET.tostring(root, encoding="utf-8", xml_declaration=True)
    return doc


def _info(
    root: ET.Element, alert: AlertPublic, lang: Lang, sender_name: str, sensor_name: str | None
) -> None:
    resolved = alert.status == "resolved"
    info = _sub(root, "info")
    _sub(info, "language", TAGS[lang])
    for cat in _categories(alert):
        _sub(info, "category", cat)
    event = _event_name(alert, lang)
    _sub(info, "event", event)
    _sub(info, "responseType", "AllClear" if resolved else "Monitor")
    _sub(info, "urgency", "Past" if resolved else _URGENCY.get(alert.severity, "Unknown"))
    _sub(info, "severity", _SEVERITY.get(alert.severity, "Unknown"))
    _sub(info, "certainty", _CERTAINTY.get(alert.alert_class, "Unknown"))
    _pair(info, "eventCode", "rule", alert.rule)
    _sub(info, "onset", cap_time(alert.opened_at))
    _sub(info, "senderName", sender_name)
    place = alert.area or alert.sensor
    suffix = "" if alert.status == "open" else f" ({text(lang, f'cap.status.{alert.status}')})"
    severity = text(lang, f"severity.{alert.severity}").upper()
    _sub(
        info,
        "headline",
        text(lang, "cap.headline", severity=severity, event=event, place=place) + suffix,
    )
    _sub(info, "description", _description(alert, lang, sensor_name))
    if resolved:
        _sub(info, "instruction", text(lang, "cap.instruction.resolved"))
    unit = METRICS[alert.metric].unit if alert.metric in METRICS else None
    params = {
        "sensor": alert.sensor,
        "metric": alert.metric,
        "value": _fmt(alert.value) if alert.value is not None else None,
        "unit": unit,
        "expected_low": _fmt(alert.expected_low) if alert.expected_low is not None else None,
        "expected_high": _fmt(alert.expected_high) if alert.expected_high is not None else None,
        "alert_class": alert.alert_class,
        "status": alert.status,
        "occurrences": str(alert.occurrences),
    }
    for name, value in params.items():
        if value is not None:
            _pair(info, "parameter", name, value)
    area = _sub(info, "area")
    _sub(area, "areaDesc", place)
    if alert.lat is not None and alert.lon is not None:
        radius = _radius_km(alert.evidence)
        _sub(area, "circle", f"{alert.lat:.6f},{alert.lon:.6f} {radius:g}")
    if alert.area:
        _pair(area, "geocode", "district", alert.area)


def _description(alert: AlertPublic, lang: Lang, sensor_name: str | None) -> str:
    fields = alert.model_dump(
        include={"sensor", "metric", "rule", "detector", "severity", "message", "value"}
        | {"expected_low", "expected_high", "score", "evidence", "area"}
    )
    lines = [alert_text.render(fields, lang, sensor_name)]
    if alert.value is not None:
        unit = METRICS[alert.metric].unit if alert.metric in METRICS else ""
        measured = {"metric": alert.metric, "value": _fmt(alert.value), "unit": unit}
        if alert.expected_low is not None or alert.expected_high is not None:
            lo = _fmt(alert.expected_low) if alert.expected_low is not None else "-∞"
            hi = _fmt(alert.expected_high) if alert.expected_high is not None else "∞"
            line = text(lang, "cap.measured.expected", **measured, low=lo, high=hi)
        else:
            line = text(lang, "cap.measured", **measured)
        lines.append(" ".join(line.split()))
    lines.append(
        text(
            lang,
            "cap.sensor",
            sensor=alert.sensor,
            kind=alert.kind,
            alert_class=text(lang, f"cap.class.{alert.alert_class}"),
            occurrences=alert.occurrences,
            since=cap_time(alert.opened_at),
        )
    )
    if alert.status == "acknowledged" and alert.acknowledged_by:
        lines.append(text(lang, "cap.acknowledged_by", who=alert.acknowledged_by))
    if alert.status == "resolved" and alert.resolved_by:
        lines.append(text(lang, "cap.resolved_by", who=alert.resolved_by))
    return "\n".join(lines)
