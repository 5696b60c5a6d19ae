"""What hazard an alert speaks of, and an incident's title in plain words (English, Vietnamese)."""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from core.metrics import METRICS

DEVICE_FAULT = "device_fault"
TEXTS_FILE = Path(__file__).with_name("incident_texts.toml")  # titles in English and Vietnamese

_AIR = frozenset({"pm25", "pm10", "no2", "o3", "co", "so2", "aqi_vn", "aqi_vn_daily", "aqi_us"})
_FLOOD = frozenset({"water_level", "rainfall"})
_TRAFFIC = frozenset(
    {
        "speed",
        "occupancy",
        "queue_length",
        "vehicle_count",
        "count_motorbike",
        "count_car",
        "count_bus",
        "count_truck",
    }
)
_FIRE = frozenset({"fire_risk"})
_WEATHER = frozenset({"temperature", "humidity", "wind_speed", "pressure"})
_LOWER_IS_WORSE = frozenset({"speed", "battery", "humidity"})


def hazard_of(alert: Mapping[str, Any]) -> str:
    """The hazard an alert belongs to: its metric decides, a device's health is a fault."""
    rule = str(alert.get("rule", ""))
    metric = str(alert.get("metric", ""))
    if (
        alert.get("alert_class") == "device"
        or rule.startswith("health.")
        or rule.endswith(".implausible")
        or metric == "battery"
    ):
        return DEVICE_FAULT
    if metric in _AIR:
        return "air_pollution"
    if metric in _FLOOD:
        return "flooding"
    if metric in _TRAFFIC:
        return "traffic"
    if metric in _FIRE or rule == "humidity.dry":
        return "fire_weather"
    if metric in _WEATHER:
        return "severe_weather"
    if metric == "noise":
        return "noise"
    return "other"


@cache
def _texts() -> dict[str, Any]:
    return tomllib.loads(TEXTS_FILE.read_text("utf-8"))


@dataclass(frozen=True, slots=True)
class Peak:
    """The worst value among an incident's alerts."""

    metric: str
    value: float | None


@dataclass(frozen=True, slots=True)
class Titles:
    en: str
    vi: str


def _number(v: float, lang: str) -> str:
    text = f"{v:,.0f}" if abs(v) >= 10 else f"{v:,.1f}"
    if lang == "vi":  # 1.234,5
        text = text.replace(",", "\0").replace(".", ",").replace("\0", ".")
    return text


def lower_is_worse(metric: str) -> bool:
    return metric in _LOWER_IS_WORSE


def titles(
    hazard: str, sensors: list[str], areas: list[str], peak: Peak | None, metrics: list[str]
) -> Titles:
    """``Air pollution episode: 25 stations in 7 areas, PM2.5 up to 301 µg/m³`` (and in vi)."""
    t = _texts()
    h = t["hazards"].get(hazard, t["hazards"]["other"])
    w = t["words"]
    out = {}
    n = len(sensors)
    for lang in ("en", "vi"):
        if lang == "en":
            one, many = h["sensor_en"]
            who = f"{n} {one if n == 1 else many}"
        else:
            who = f"{n} {h['sensor_vi']}"
        if n == 1 and hazard == DEVICE_FAULT:
            who = sensors[0]
        if len(areas) == 1:
            where = w[f"in_area_{lang}"].format(area=areas[0])
        elif areas:
            where = w[f"in_areas_{lang}"].format(n=len(areas))
        else:
            where = ""
        parts = [f"{h[lang]}: {who}" + (f" {where}" if where else "")]
        if hazard == DEVICE_FAULT:
            names = [t["metrics"].get(m, {}).get(lang, m.replace("_", " ")) for m in metrics[:3]]
            if names:
                parts.append(", ".join(names))
        elif peak is not None and peak.value is not None:
            label = t["metrics"].get(peak.metric, {}).get(lang, peak.metric.replace("_", " "))
            unit = METRICS[peak.metric].unit if peak.metric in METRICS else ""
            if unit in ("index", "1"):
                unit = ""
            how = w[f"down_to_{lang}"] if lower_is_worse(peak.metric) else w[f"up_to_{lang}"]
            value = _number(peak.value, lang)
            parts.append(f"{label} {how} {value}" + (f" {unit}" if unit else ""))
        out[lang] = ", ".join(parts)
    return Titles(en=out["en"], vi=out["vi"])
