"""An incident as an OASIS CAP 1.2 document: one ``info`` per language, an area over all its sensors."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Sequence

from api.cap import CAP_NS, _pair, _sub, cap_time
from api.incident_models import IncidentPublic
from core.metrics import METRICS

_CATEGORIES = {
    "air_pollution": ["Env", "Health"],
    "flooding": ["Met"],
    "traffic": ["Transport"],
    "fire_weather": ["Fire"],
    "severe_weather": ["Met"],
    "noise": ["Env"],
    "device_fault": ["Infra"],
}
_EVENTS = {
    "air_pollution": ("Air pollution", "Ô nhiễm không khí"),
    "flooding": ("Street flooding", "Ngập úng"),
    "traffic": ("Traffic congestion", "Ùn tắc giao thông"),
    "fire_weather": ("Forest-fire danger", "Nguy cơ cháy rừng"),
    "severe_weather": ("Severe weather", "Thời tiết nguy hiểm"),
    "noise": ("Noise", "Tiếng ồn"),
    "device_fault": ("Sensor fault", "Lỗi thiết bị"),
}
_SEVERITY = {"critical": "Severe", "warning": "Moderate", "info": "Minor"}
_URGENCY = {"critical": "Immediate", "warning": "Expected", "info": "Future"}
_AREA_DESC = {"en": "{n} sensors in {areas}", "vi": "{n} cảm biến tại {areas}"}
_ALL_CLEAR = {
    "en": "The incident has ended; no further action is needed.",
    "vi": "Sự cố đã kết thúc; không cần xử lý thêm.",
}
_MERGED = {
    "en": "This incident was merged into incident {into}; follow that incident's messages.",
    "vi": "Sự cố này đã được gộp vào sự cố {into}; hãy theo dõi các bản tin của sự cố đó.",
}


def incident_to_cap(
    incident: IncidentPublic,
    *,
    sender: str,
    sender_name: str,
    merged_from: Sequence[int] = (),
) -> bytes:
    """The CAP 1.2 ``<alert>`` for the incident's current state.

    Like an alert's: the first message (open, never handled) is an ``Alert`` with the
    identifier ``<sender>.incident.<id>``; later states are ``Update``s referencing it.
    The ``area`` holds the padded convex hull of its sensors as a ``polygon``.  After a
    merge, ``incidents`` names both: the survivor's lists the incidents ``merged_from``,
    and the absorbed one's (an ``Update``, urgency ``Past``) names the survivor, in a
    ``merged_into`` parameter too, and tells people to follow it.
    """
    ET.register_namespace("", CAP_NS)
    inc = incident
    merged = inc.merged_into is not None
    resolved = inc.status == "resolved" and not merged
    first = inc.status == "open" and inc.acknowledged_at is None and inc.resolved_at is None
    sent = max(t for t in (inc.updated_at, inc.acknowledged_at, inc.resolved_at) if t)
    original = f"{sender}.incident.{inc.id}"

    root = ET.Element(f"{{{CAP_NS}}}alert")
    _sub(root, "identifier", original if first else f"{original}.{int(sent.timestamp() * 1000)}")
    _sub(root, "sender", sender)
    _sub(root, "sent", cap_time(sent))
    _sub(root, "status", "Actual")
    _sub(root, "msgType", "Alert" if first else "Update")
    _sub(root, "source", f"correlator/{inc.hazard}")
    _sub(root, "scope", "Public")
    if not first:
        _sub(root, "references", f"{sender},{original},{cap_time(inc.opened_at)}")
    related = [inc.merged_into] if inc.merged_into is not None else list(merged_from)
    _sub(root, "incidents", " ".join([original, *(f"{sender}.incident.{i}" for i in related)]))

    for lang, code in (("en", "en-US"), ("vi", "vi-VN")):
        info = _sub(root, "info")
        _sub(info, "language", code)
        for cat in _CATEGORIES.get(inc.hazard, ["Other"]):
            _sub(info, "category", cat)
        en, vi = _EVENTS.get(inc.hazard, ("Abnormal readings", "Số liệu bất thường"))
        _sub(info, "event", en if lang == "en" else vi)
        _sub(info, "responseType", "AllClear" if resolved else "None" if merged else "Monitor")
        urgency = "Past" if resolved or merged else _URGENCY.get(inc.severity, "Unknown")
        _sub(info, "urgency", urgency)
        _sub(info, "severity", _SEVERITY.get(inc.severity, "Unknown"))
        _sub(info, "certainty", "Observed")
        _pair(info, "eventCode", "hazard", inc.hazard)
        _sub(info, "onset", cap_time(inc.first_seen))
        _sub(info, "senderName", sender_name)
        _sub(info, "headline", inc.title if lang == "en" else inc.title_vi)
        _sub(info, "description", inc.title if lang == "en" else inc.title_vi)
        if resolved:
            _sub(info, "instruction", _ALL_CLEAR[lang])
        elif merged:
            _sub(info, "instruction", _MERGED[lang].format(into=inc.merged_into))
            _pair(info, "parameter", "merged_into", f"{sender}.incident.{inc.merged_into}")
        _pair(info, "parameter", "sensors", " ".join(inc.sensors))
        _pair(info, "parameter", "alert_count", str(inc.alert_count))
        metric = inc.peak.get("metric")
        value = inc.peak.get("value")
        if isinstance(metric, str) and isinstance(value, int | float):
            _pair(info, "parameter", "peak_metric", metric)
            _pair(info, "parameter", "peak_value", f"{value:.6g}")
            if metric in METRICS:
                _pair(info, "parameter", "peak_unit", METRICS[metric].unit)
        area = _sub(info, "area")
        where = ", ".join(inc.areas) if inc.areas else "Hà Nội"
        _sub(area, "areaDesc", _AREA_DESC[lang].format(n=len(inc.sensors), areas=where))
        ring = (inc.polygon or {}).get("coordinates", [[]])[0]
        if len(ring) >= 4:
            # CAP polygons are "lat,lon" pairs separated by spaces, first = last
            _sub(area, "polygon", " ".join(f"{lat:.6f},{lon:.6f}" for lon, lat in ring))
        for name in inc.areas:
            _pair(area, "geocode", "district", name)
    ET.indent(root)
    doc: bytes = ET.tostring(root, encoding="utf-8", xml_declaration=True)
    return doc
