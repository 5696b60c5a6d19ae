"""An alert's message in a language, rendered from its structured fields (rule, value, evidence).

Stored alerts keep the text their detector wrote (English).  A reader asking for a
language gets a text built afresh from the alert's fields (rule, metric, value, unit,
levels, evidence, place) through the message catalogue of ``core.i18n``, so that both
languages say the same thing and follow the same numbers.  A rule the catalogue does
not know gets a generic text (its English reader gets the stored text).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Final

from babel.dates import format_datetime

from core.i18n import LOCAL_TZ, Lang, has, number, text, when
from core.metrics import METRICS

# traffic-camera features, in the order a sentence mentions them
_FEATURES: Final = ("speed", "occupancy", "vehicle_count", "queue_length")
_FEATURE_UNITS: Final = {
    "vehicle_count": "",
    "speed": "km/h",
    "occupancy": "%",
    "queue_length": "m",
}
_COUNT_METRICS: Final = frozenset(
    {"vehicle_count", "count_motorbike", "count_car", "count_bus", "count_truck"}
)
_FIRE_LEVELS: Final = ("I", "II", "III", "IV", "V")
# VN_AQI bands (Decision 1459/QD-TCMT): the lowest index of each category
_AQI_BANDS: Final = (0, 51, 101, 151, 201, 301)
_POLLUTANTS: Final = {
    "pm25": "PM2.5",
    "pm10": "PM10",
    "o3": "O3",
    "no2": "NO2",
    "co": "CO",
    "so2": "SO2",
}


_RANK = {"info": 0, "warning": 1, "critical": 2}


def place(sensor: str, name: str | None, area: str) -> str:
    """Where an alert is: the sensor's name (else its id), with its area unless already named."""
    label = name or sensor
    if area and area not in label:
        return f"{label} ({area})"
    return label


def metric_name(metric: str, lang: Lang) -> str:
    """A metric as people call it (``bụi mịn PM2.5``), else its id."""
    key = f"metric.{metric}"
    return text(lang, key) if has(lang, key) or has("en", key) else metric


def severity_name(severity: str, lang: Lang) -> str:
    key = f"severity.{severity}"
    return text(lang, key) if has("en", key) else severity


def render(alert: Mapping[str, Any], lang: Lang, sensor_name: str | None = None) -> str:
    """The message of ``alert`` (a row of ``alerts`` or its snapshot) in ``lang``."""
    r = _Renderer(alert, lang, sensor_name)
    rule = str(alert.get("rule") or "")
    detector = str(alert.get("detector") or "")
    family = rule.split(".", 1)[0]
    try:
        if rule == "series.anomaly":
            return r.series()
        if family == "forecast":
            return r.forecast()
        if detector == "rules" or {"level", "threshold", "direction"} <= r.ev.keys():
            return r.threshold()
        if rule == "aqi_vn.category":
            return r.aqi()
        if rule == "fire_risk.level":
            return r.fire()
        if family == "camera":
            return r.camera()
        if rule == "device.multivariate":
            return r.device()
        if family == "health":
            return r.health(rule)
    except (KeyError, TypeError, ValueError, IndexError):
        pass  # evidence of an older shape: say what is certain
    return r.generic()


class _Renderer:
    def __init__(self, alert: Mapping[str, Any], lang: Lang, sensor_name: str | None) -> None:
        self.a = alert
        self.lang = lang
        self.ev: Mapping[str, Any] = alert.get("evidence") or {}
        self.metric = str(alert.get("metric") or "")
        m = METRICS.get(self.metric)
        unit = m.unit if m is not None else str(self.ev.get("unit") or "")
        self.unit = "" if unit in ("index", "vehicles", "1") else unit
        self.fields: dict[str, object] = {
            "place": place(
                str(alert.get("sensor") or ""), sensor_name, str(alert.get("area") or "")
            ),
            "what": metric_name(self.metric, lang),
            "unit": self.unit,
            "value": self.num(alert.get("value")),
            "severity": severity_name(str(alert.get("severity") or ""), lang),
        }

    def num(self, value: object, digits: int | None = None) -> str:
        if not isinstance(value, int | float) or isinstance(value, bool):
            return "–"
        if digits is None:
            digits = 0 if self.metric in _COUNT_METRICS or abs(value) >= 1000 else 1
        return number(float(value), self.lang, digits)

    def say(self, msgid: str, **extra: object) -> str:
        return " ".join(text(self.lang, msgid, **{**self.fields, **extra}).split())

    # -- families --------------------------------------------------------------------------

    def generic(self) -> str:
        stored = self.a.get("message")
        if self.lang == "en" and isinstance(stored, str) and stored:
            return stored
        return self.say("alert.generic")

    def threshold(self) -> str:
        rule = str(self.a.get("rule") or "")
        key = f"rule.{rule}"
        if has("en", key):
            self.fields["what"] = text(self.lang, key)
        direction = self.ev.get("direction", "above")
        if direction == "outside":
            return self.say(
                "alert.threshold.outside",
                low=self.num(self.a.get("expected_low")),
                high=self.num(self.a.get("expected_high")),
            )
        level = str(self.ev.get("level") or self.a.get("severity") or "warning")
        thr = float(self.ev["threshold"])
        value = self.a.get("value")
        beyond = isinstance(value, int | float) and (
            value <= thr if direction == "below" else value >= thr
        )
        msgid = f"alert.threshold.{'below' if direction == 'below' else 'above'}"
        out = self.say(
            msgid if beyond else msgid + ".held",
            level=text(self.lang, f"level.{level}"),
            threshold=self.num(thr),
        )
        kept = str(self.a.get("severity") or level)
        if _RANK.get(kept, 0) > _RANK.get(level, 0):  # the alert keeps its highest severity
            out += " " + self.say("alert.kept_severity", now=severity_name(level, self.lang))
        return out

    def forecast(self) -> str:
        rule = str(self.ev.get("rule") or "")
        if has("en", f"rule.{rule}"):
            self.fields["what"] = text(self.lang, f"rule.{rule}")
        rain = float(self.ev.get("rain_mm_h") or 0.0)
        rate = float(self.ev.get("slope_per_h") or 0.0)
        return self.say(
            "alert.forecast.rain" if rain >= 1.0 and rate <= 0.0 else "alert.forecast.rising",
            level=text(self.lang, f"level.{self.ev['level']}"),
            threshold=self.num(float(self.ev["level_value"])),
            minutes=self.num(int(self.ev["minutes"]), 0),
            rate=self.num(rate),
            rain=self.num(rain, 0),
        )

    def series(self) -> str:
        direction = self.ev.get("direction", "within")
        lo, hi = self.a.get("expected_low"), self.a.get("expected_high")
        if direction in ("above", "below"):
            if lo is None or hi is None:
                return self.say(f"alert.series.{direction}.usual")
            return self.say(f"alert.series.{direction}", low=self.num(lo), high=self.num(hi))
        return self.say("alert.series.unusual", score=self.num(self.a.get("score"), 3))

    def aqi(self) -> str:
        aqi = float(self.ev.get("aqi", self.a.get("value")))
        band = max(i for i, low in enumerate(_AQI_BANDS) if aqi >= low or i == 0)
        dominant = str(self.ev["dominant"])
        conc = (self.ev.get("concentrations") or {}).get(dominant)
        hour = _local(str(self.ev["hour_start"]))
        return self.say(
            "alert.aqi",
            aqi=self.num(aqi, 0),
            category=text(self.lang, f"aqi.category.{band}"),
            hour=hour.strftime("%H:00"),
            pollutant=_POLLUTANTS.get(dominant, dominant),
            concentration=self.num(conc, 0),
            nowcast=" (NowCast)" if dominant in ("pm25", "pm10") else "",
            health=text(self.lang, f"aqi.health.{band}"),
        )

    def fire(self) -> str:
        roman = str(self.ev["level"])
        lv = _FIRE_LEVELS.index(roman) + 1
        wind = self.ev.get("wind_13h")
        return self.say(
            "alert.fire",
            level=roman,
            level_name=text(self.lang, f"fire.level.{lv}"),
            dry_days=self.num(int(self.ev["dry_days"]), 0),
            temperature=self.num(self.ev.get("temperature_13h")),
            humidity=self.num(self.ev.get("humidity_13h"), 0),
            wind=self.num(wind if wind is not None else 0.0),
            p=self.num(float(self.ev["p"]), 0),
            wind_note=text(self.lang, "alert.fire.wind_raised")
            if self.ev.get("wind_raised_level")
            else "",
        )

    def camera(self) -> str:
        features: Mapping[str, Any] = self.ev["features"]
        expected: Mapping[str, Any] = self.ev.get("expected") or {}
        z: Mapping[str, Any] = self.ev.get("z") or {}
        start = _local(str(self.ev["window_start"]))
        window = format_datetime(start, "EEEE HH:mm", locale=self.lang)
        parts = []
        for f in _FEATURES:
            zf, x, rng = z.get(f), features.get(f), expected.get(f)
            if zf is None or x is None or not rng or abs(float(zf)) < 2.0:
                continue
            unit = _FEATURE_UNITS[f]
            parts.append(
                text(
                    self.lang,
                    f"camera.{f}.{'high' if float(zf) > 0 else 'low'}",
                    value=" ".join(filter(None, (self.num(x, 0), unit))),
                    usual=" ".join(
                        filter(None, (f"{self.num(rng[0], 0)}–{self.num(rng[1], 0)}", unit))
                    ),
                )
            )
            if len(parts) == 3:
                break
        if not parts:
            return self.say("alert.camera.unusual", when=window)
        return self.say("alert.camera", when=window, details="; ".join(parts))

    def device(self) -> str:
        names = [metric_name(str(m), self.lang) for m in self.ev["metrics"]]
        return self.say(
            "alert.device", metrics=", ".join(names), score=self.num(self.a.get("score"), 3)
        )

    def health(self, rule: str) -> str:
        name = rule.split(".", 1)[1]
        extra: dict[str, object] = {}
        if name == "dropout":
            last = self.ev.get("last_reading")
            extra["since"] = _when(float(last), self.lang) if isinstance(last, int | float) else "–"
            extra["interval"] = self.num(self.ev.get("interval_s"), 0)
        elif name == "stuck":
            extra["repeats"] = self.num(self.ev.get("repeats"), 0)
        elif name == "inconsistent":
            parts = self.ev.get("parts") or []
            extra["parts"] = " + ".join(metric_name(str(p), self.lang) for p in parts)
            extra["sum"] = self.num(self.ev.get("sum_of_parts"), 0)
        msgid = f"alert.health.{name}"
        if not has("en", msgid):
            return self.generic()
        return self.say(msgid, **extra)


def _local(iso: str) -> datetime:
    moment = datetime.fromisoformat(iso)
    return moment.astimezone(LOCAL_TZ) if moment.tzinfo else moment


def _when(epoch: float, lang: Lang) -> str:
    if not math.isfinite(epoch):
        return "–"
    return when(datetime.fromtimestamp(epoch, UTC), lang)
