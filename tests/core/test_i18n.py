"""The message catalogue: complete in both languages, negotiation, local number and date formats."""

from __future__ import annotations

import string
from datetime import UTC, datetime
from importlib import resources
from typing import Any

import pytest
from babel.messages.catalog import Catalog
from babel.messages.pofile import read_po
from babel.numbers import format_decimal

from core import alert_text
from core.i18n import LANGUAGES, Lang, negotiate, number, text, when
from core.metrics import METRICS


def _catalog(lang: str) -> Catalog:
    po = resources.files("core") / "locale" / lang / "LC_MESSAGES" / "ioc.po"
    with po.open("rb") as fh:
        return read_po(fh, locale=lang)


def _fields(template: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(template) if name}


def test_every_message_exists_in_both_languages_with_the_same_fields() -> None:
    cats = {lang: _catalog(lang) for lang in LANGUAGES}
    ids = {lang: {m.id for m in cat if m.id} for lang, cat in cats.items()}
    assert ids["vi"] == ids["en"], ids["vi"] ^ ids["en"]
    assert len(ids["vi"]) > 50
    for msgid in ids["vi"]:
        vi, en = cats["vi"][msgid], cats["en"][msgid]
        assert vi is not None and en is not None
        assert vi.string and en.string, f"{msgid} is untranslated"
        assert not vi.fuzzy and not en.fuzzy, f"{msgid} is fuzzy"
        assert _fields(str(vi.string)) == _fields(str(en.string)), msgid


def test_every_metric_and_built_in_rule_has_a_name() -> None:
    en = {m.id for m in _catalog("en") if m.id}
    assert {f"metric.{name}" for name in METRICS} <= en
    for sev in ("info", "warning", "critical"):
        assert {f"severity.{sev}", f"level.{sev}"} <= en


@pytest.mark.parametrize(
    ("header", "default", "expected"),
    [
        ("vi", "en", "vi"),
        ("en", "vi", "en"),
        ("vi-VN,vi;q=0.9,en;q=0.8", "en", "vi"),
        ("en-US,en;q=0.9,vi;q=0.8", "vi", "en"),
        ("fr-FR,fr;q=0.9,en;q=0.5,vi;q=0.4", "vi", "en"),
        ("vi;q=0.2, en;q=0.7", "vi", "en"),
        ("EN_gb", "vi", "en"),
        ("fr, de", "vi", "vi"),
        ("fr, de", "en", "en"),
        ("*", "en", "en"),
        ("vi;q=0, *", "vi", "en"),
        ("en;q=0", "en", "vi"),
        ("", "vi", "vi"),
        (None, "en", "en"),
        ("en;q=abc, vi;q=0.1", "en", "vi"),
        ("en;q=2", "vi", "vi"),
        (";;;,,, =", "vi", "vi"),
        ("x" * 600, "en", "en"),
    ],
)
def test_accept_language(header: str | None, default: Lang, expected: str) -> None:
    assert negotiate(header, default) == expected


def test_numbers_and_dates_follow_the_language() -> None:
    assert number(1234.5, "vi") == "1.234,5"
    assert number(1234.5, "en") == "1,234.5"
    assert number(float("nan"), "vi") == "–"
    moment = datetime(2026, 12, 5, 1, 30, tzinfo=UTC)  # 08:30 in Hanoi
    assert when(moment, "vi") == "05/12/2026 08:30"
    assert when(moment, "en") == "5 Dec 2026, 08:30"


@pytest.mark.parametrize("lang", LANGUAGES)
def test_numbers_agree_with_babel(lang: Lang) -> None:
    # (decimal ties such as 0.05 may round either way: Babel rounds the shortest decimal
    # text, format() the binary value; both are within half a unit of the last digit)
    values = [0, -0.04, 0.07, 1, 9.96, 12.25, 999.96, 1234.5, -1234.56, 1251.5, 1e7 + 0.5]
    for digits in (0, 1, 3):
        pattern = "#,##0" + ("." + "#" * digits if digits else "")
        for v in values:
            want = format_decimal(v, format=pattern, locale=lang)
            assert number(v, lang, digits) in (want, want.replace("-0", "0")), (v, digits)


def test_text_falls_back_and_never_raises() -> None:
    assert text("vi", "no.such.message") == "no.such.message"
    assert text("vi", "alert.health.offline") == "{place}: thiết bị mất kết nối"
    assert text("en", "alert.health.offline", place="Kim Mã") == "Kim Mã: the device went offline"


_CAMERA = {
    "features": {"vehicle_count": 1200, "speed": 8.0, "occupancy": 62.0, "queue_length": 300},
    "expected": {"speed": [25, 40], "occupancy": [10, 30], "queue_length": [0, 100]},
    "z": {"vehicle_count": 1.0, "speed": -4.2, "occupancy": 5.5, "queue_length": 3.0},
    "window_start": "2026-12-01T01:15:00+00:00",
}
# one alert of every family analytics writes, with the words each language must show
FAMILIES: list[tuple[dict[str, Any], str, str]] = [
    (
        {
            "metric": "pm25",
            "rule": "pm25.level",
            "detector": "rules",
            "value": 1251.5,
            "evidence": {"level": "critical", "threshold": 250.0, "direction": "above"},
        },
        "bụi mịn PM2.5 1.252 µg/m³, bằng hoặc vượt ngưỡng nghiêm trọng 250 µg/m³",
        "fine dust PM2.5 1,252 µg/m³ is at or above the critical level 250 µg/m³",
    ),
    (
        {
            "metric": "pm25",
            "rule": "pm25.level",
            "detector": "rules",
            "value": 145.5,
            "evidence": {"level": "warning", "threshold": 150.0, "direction": "above"},
        },
        "145,5 µg/m³; đã chạm ngưỡng cảnh báo 150 µg/m³ và chưa hạ hẳn",
        "145.5 µg/m³; the warning level 150 µg/m³ was reached and has not cleared yet",
    ),
    (
        {
            "metric": "temperature",
            "rule": "temperature.cold",
            "detector": "rules",
            "value": 8.2,
            "evidence": {"level": "warning", "threshold": 10.0, "direction": "below"},
        },
        "rét đậm 8,2 °C, bằng hoặc dưới ngưỡng cảnh báo 10 °C",
        "severe cold 8.2 °C is at or below the warning level 10 °C",
    ),
    (
        {
            "metric": "temperature",
            "rule": "temperature.implausible",
            "detector": "rules",
            "value": 55.2,
            "expected_low": -5.0,
            "expected_high": 50.0,
            "evidence": {"level": "warning", "threshold": 0.0, "direction": "outside"},
        },
        "55,2 °C nằm ngoài khoảng hợp lý -5–50 °C",
        "55.2 °C is outside the plausible range -5–50 °C",
    ),
    (
        {
            "metric": "water_level",
            "rule": "series.anomaly",
            "detector": "hst",
            "value": 52.0,
            "expected_low": 1.0,
            "expected_high": 12.5,
            "evidence": {"direction": "above"},
        },
        "mực nước 52 cm, cao hơn nhiều so với mức dự kiến 1–12,5 cm",
        "water level 52 cm is far above the expected 1–12.5 cm",
    ),
    (
        {
            "metric": "water_level",
            "rule": "series.anomaly",
            "detector": "hst",
            "value": 5.0,
            "score": 0.93123,
            "evidence": {"direction": "within"},
        },
        "diễn biến bất thường (điểm 0,931)",
        "behaves unusually (score 0.931)",
    ),
    (
        {
            "metric": "aqi_vn",
            "rule": "aqi_vn.category",
            "detector": "vn_aqi",
            "value": 212.0,
            "evidence": {
                "aqi": 212,
                "dominant": "pm25",
                "concentrations": {"pm25": 160.4},
                "hour_start": "2026-12-05T08:00:00+07:00",
            },
        },
        "VN_AQI 212 – Rất xấu trong giờ từ 08:00: PM2.5 160 µg/m³ (NowCast)",
        "VN_AQI 212 – Very bad for the hour from 08:00: PM2.5 160 µg/m³ (NowCast)",
    ),
    (
        {
            "metric": "fire_risk",
            "rule": "fire_risk.level",
            "detector": "nesterov_vn",
            "value": 70.0,
            "evidence": {
                "level": "V",
                "p": 12345.6,
                "dry_days": 12,
                "temperature_13h": 33.4,
                "humidity_13h": 41,
                "wind_13h": 3.2,
                "wind_raised_level": True,
            },
        },
        "nguy cơ cháy rừng cấp V (cực kỳ nguy hiểm): 12 ngày khô hạn, lúc 13:00 nhiệt độ 33,4 °C",
        "forest-fire danger level V (extremely dangerous): 12 dry days, 13:00 temperature 33.4 °C",
    ),
    (
        {
            "metric": "speed",
            "rule": "camera.multivariate",
            "detector": "iforest",
            "value": 8.0,
            "evidence": _CAMERA,
        },
        "Thứ Ba 08:15: tốc độ 8 km/h, chậm hơn mức thường lệ 25–40 km/h; tỷ lệ chiếm dụng 62 %",
        "Tuesday 08:15: speed 8 km/h, slower than the usual 25–40 km/h; occupancy 62 %",
    ),
    (
        {"metric": "device", "rule": "health.offline", "detector": "health"},
        "thiết bị mất kết nối",
        "the device went offline",
    ),
    (
        {
            "metric": "device",
            "rule": "health.dropout",
            "detector": "health",
            "evidence": {"last_reading": 1764900000.0, "interval_s": 60.0},
        },
        "không có số liệu đo từ 05/12/2025 09:00 (dự kiến 60 giây một lần)",
        "no readings since 5 Dec 2025, 09:00 (expected every 60 s)",
    ),
    (
        {
            "metric": "speed",
            "rule": "health.stuck",
            "detector": "health",
            "value": 42.0,
            "evidence": {"repeats": 30},
        },
        "tốc độ trung bình lặp lại 42 km/h trong 30 lần đo liên tiếp",
        "average speed has repeated 42 km/h for 30 readings",
    ),
    (
        {
            "metric": "vehicle_count",
            "rule": "health.inconsistent",
            "detector": "health",
            "value": 1234.0,
            "evidence": {"sum_of_parts": 1100, "parts": ["count_motorbike", "count_car"]},
        },
        "số lượt xe 1.234 không khớp với tổng xe máy + ô tô (1.100)",
        "vehicle count 1,234 disagrees with the sum of motorbikes + cars (1,100)",
    ),
    (
        {"metric": "battery", "rule": "health.invalid_values", "detector": "health"},
        "pin: thiết bị liên tục gửi giá trị không thể xảy ra",
        "battery: the device keeps sending impossible values",
    ),
    (
        {"metric": "pm10", "rule": "health.channel_dropout", "detector": "health"},
        "bụi PM10 ngừng gửi trong khi thiết bị vẫn hoạt động",
        "dust PM10 stopped while the device keeps reporting",
    ),
]


@pytest.mark.parametrize(("fields", "vi", "en"), FAMILIES, ids=lambda x: str(x)[:30])
def test_alert_messages_render_from_fields_in_both_languages(
    fields: dict[str, Any], vi: str, en: str
) -> None:
    alert = {"sensor": "cam-07", "severity": "warning", "area": "Đống Đa", **fields}
    got = {lang: alert_text.render(alert, lang, "Ngã Tư Sở") for lang in LANGUAGES}
    for lang, want in (("vi", vi), ("en", en)):
        assert got[lang].startswith("Ngã Tư Sở (Đống Đa): "), got[lang]
        assert want in got[lang], got[lang]
        assert "{" not in got[lang] and "alert." not in got[lang], got[lang]


def test_place_names_the_area_once() -> None:
    assert alert_text.place("aq-1", "Trạm Thanh Xuân", "Thanh Xuân") == "Trạm Thanh Xuân"
    assert alert_text.place("aq-1", "", "Thanh Xuân") == "aq-1 (Thanh Xuân)"
    assert alert_text.place("aq-1", None, "") == "aq-1"


def test_unknown_rules_and_odd_evidence_still_read_well() -> None:
    unknown = {
        "sensor": "x-1",
        "metric": "pm25",
        "rule": "new.rule",
        "detector": "new",
        "severity": "critical",
        "value": 12.25,
        "area": "",
        "message": "as stored",
    }
    assert alert_text.render(unknown, "en") == "as stored"
    assert alert_text.render(unknown, "vi") == "x-1: bụi mịn PM2.5 12,2 µg/m³ (nghiêm trọng)"
    broken = {**unknown, "rule": "fire_risk.level", "evidence": {"level": "VII"}}
    assert alert_text.render(broken, "vi") == "x-1: bụi mịn PM2.5 12,2 µg/m³ (nghiêm trọng)"


def test_every_built_in_rule_has_a_name_in_both_languages() -> None:
    import tomllib

    rules = resources.files("analytics") / "stages" / "default_rules.toml"
    ids = {r["id"] for r in tomllib.loads(rules.read_text(encoding="utf-8"))["rules"]}
    assert ids
    for lang in LANGUAGES:
        names = {m.id for m in _catalog(lang) if m.id}
        assert {f"rule.{i}" for i in ids} <= names, lang


def test_a_kept_higher_severity_is_said_beside_the_latest_level() -> None:
    alert = {"sensor": "aq-1", "metric": "pm25", "rule": "pm25.high", "detector": "rules",
             "severity": "critical", "value": 145.5, "area": "",
             "evidence": {"level": "warning", "threshold": 150.0, "direction": "above"}}  # fmt: skip
    en = alert_text.render(alert, "en")
    assert (
        "at or above" not in en and "(now warning; the alert stays critical until resolved)" in en
    )
    vi = alert_text.render(alert, "vi")
    assert "cảnh báo giữ mức nghiêm trọng" in vi and "{" not in vi
    same = alert_text.render({**alert, "severity": "warning"}, "en")
    assert "the alert stays" not in same
