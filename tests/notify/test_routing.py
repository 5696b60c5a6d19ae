"""The routes file: the minimal form, matching, and errors that name the line."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from core.errors import ConfigError
from core.events import AlertAction, AlertEvent
from core.routing import load_routes, mask_target, parse_routes
from notify.render import render


def event(action: str = "opened", at: datetime | None = None, **alert: Any) -> AlertEvent:
    now = at or datetime(2026, 12, 5, 3, 0, tzinfo=UTC)  # 10:00 Hanoi, a Saturday
    doc = {
        "id": 7, "sensor": "wl-1", "metric": "water_level", "rule": "water_level.critical",
        "detector": "threshold", "kind": "water_level", "alert_class": "threshold",
        "severity": "critical", "status": "open", "message": "Ngập 56 cm", "value": 56.0,
        "area": "Hai Bà Trưng", "opened_at": now, "updated_at": now,
    }  # fmt: skip
    doc.update(alert)
    return AlertEvent.model_validate({"seq": 1, "action": action, "time": now, "alert": doc})


def test_the_minimal_form_of_the_contract() -> None:
    book = parse_routes(
        "routes:\n  - name: duty\n    min_severity: critical\n    webhook: http://127.0.0.1:8099/hook\n"
    )
    (route,) = book.routes
    assert route.targets() == ["webhook+http://127.0.0.1:8099/hook"]
    assert route.wants(event())
    assert not route.wants(event(severity="warning"))
    assert not route.wants(event(action="updated"))  # repeats do not page anybody
    assert route.wants(event(action="acknowledged"))


def test_matching_on_kind_district_rule_and_local_time() -> None:
    book = parse_routes(
        """
routes:
  - name: flood-day
    kinds: [water_level]
    districts: [Hai Bà Trưng, Hoàn Kiếm]
    rules: ["water_level.*"]
    days: [sat, sun]
    hours: "07:00-19:00"
    channels: ["ntfy://ioc-flood"]
    language: en
  - name: night
    hours: "22:00-06:00"
    channels: ["ntfy://ioc-night"]
"""
    )
    day, night = book.routes
    assert day.wants(event())
    assert not day.wants(event(area="Cầu Giấy"))
    assert not day.wants(event(kind="air_quality", rule="aqi.bad"))
    assert not day.wants(event(at=datetime(2026, 12, 7, 3, 0, tzinfo=UTC)))  # Monday
    assert not day.wants(event(at=datetime(2026, 12, 5, 13, 0, tzinfo=UTC)))  # 20:00 Hanoi
    assert night.wants(event(at=datetime(2026, 12, 5, 16, 0, tzinfo=UTC)))  # 23:00 Hanoi
    assert night.wants(event(at=datetime(2026, 12, 5, 22, 0, tzinfo=UTC)))  # 05:00 Hanoi
    assert not night.wants(event())


@pytest.mark.parametrize(
    ("text", "line", "words"),
    [
        ("routes:\n  - name: duty\n    min_severity: severe\n    webhook: http://x/\n", 3, "min_severity"),
        ("routes:\n  - name: a\n    webhook: http://x/\n  - name: b\n    webhook: ftp://x\n", 5, "http"),
        ("routes:\n  - name: duty\n    hours: 7-19\n", 3, "07:00-19:00"),
        ("routes:\n  - name: duty\n    colour: red\n", 3, "colour"),
        ("routes:\n  - name: duty\n    webhook: [http://x\n", 4, "not valid YAML"),
        ("escalations:\n  - name: p\n    steps: []\n", 3, "steps"),
    ],
)  # fmt: skip
def test_a_mistake_names_its_line(text: str, line: int, words: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_routes(text, "routes.yaml")
    assert f"routes.yaml:{line}:" in str(err.value) and words in str(err.value)


def test_missing_file_and_duplicate_names(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_routes(tmp_path / "nope.yaml")
    with pytest.raises(ConfigError, match="names used twice: a"):
        parse_routes("routes:\n  - name: a\n  - name: a\n")
    assert load_routes(None).routes == ()


def test_targets_are_shown_without_their_secrets() -> None:
    assert mask_target("tgram://123456:AAH-secret-token/987654") == "tgram://…"
    assert (
        mask_target("mailto://user:pass@mail.example.org:587?to=a@b.org")
        == "mailto://mail.example.org:587"
    )
    shown = mask_target("webhook+https://user:pw@hooks.example.org/in/abc?key=zzz")
    assert shown == "webhook https://hooks.example.org/in/abc" and "pw" not in shown


def test_texts_in_both_languages_neutralise_hostile_values() -> None:
    hostile = "Ngập <script>x</script>\x1b[2J\u202eevil\nFAKE: resolved"
    ev = event(message=hostile, area="Q1\x00")
    vi_title, vi_text = render(ev, lang="vi")
    en_title, en_text = render(ev, lang="en")
    assert vi_title.startswith("Nghiêm trọng · mới mở: wl-1")
    assert en_title.startswith("Critical · opened: wl-1")
    assert "Khu vực: Q1" in vi_text and "Area: Q1" in en_text
    for text in (vi_text, en_text, vi_title, en_title):
        assert "\x1b" not in text and "\u202e" not in text and "\x00" not in text
    assert "\nFAKE" not in vi_text  # a value cannot forge a line of its own
    title, text = render(event(action=AlertAction.NOTIFIED), lang="vi", reason="reminder", step=2)
    assert title.startswith("[Nhắc lại]") and "nhắc lần 2" in text


def incident_event(action: str = "opened", **fields: Any) -> Any:
    from core.events import IncidentEvent
    from core.types import Incident

    at = datetime(2026, 12, 5, 8, 27, 4, tzinfo=UTC)
    doc: dict[str, Any] = dict(
        id=7, hazard="air_pollution", status="open", severity="critical",
        title="Air pollution episode: 25 stations in 7 areas",
        title_vi="Đợt ô nhiễm không khí: 25 trạm tại 7 khu vực", sensors=("aq-1", "aq-2"),
        areas=("Cầu Giấy", "Đống Đa"), kinds=("air_quality",),
        peak={"metric": "pm25", "value": 301}, alert_count=27, active_alerts=25,
        first_seen=at, last_seen=at, opened_at=at, updated_at=at,
    )  # fmt: skip
    doc.update(fields)
    return IncidentEvent(seq=9, action=action, time=at, incident=Incident(**doc))


def test_routes_match_incidents_on_hazard_districts_kinds_and_subject() -> None:
    book = parse_routes(
        """
routes:
  - name: episodes
    subject: incident
    min_severity: critical
    hazards: [air_pollution]
    districts: [Đống Đa]
    kinds: [air_quality, noise]
    webhook: http://127.0.0.1:1/hook
  - name: alerts-only
    webhook: http://127.0.0.1:1/hook
  - name: flood-both
    subject: both
    hazards: [flooding]
    webhook: http://127.0.0.1:1/hook
"""
    )
    episodes, alerts_only, flood_both = book.routes
    assert episodes.wants(incident_event())
    assert not episodes.wants(incident_event(severity="warning"))
    assert not episodes.wants(incident_event(hazard="flooding"))
    assert not episodes.wants(incident_event(areas=("Hoàn Kiếm",)))
    assert not episodes.wants(incident_event(kinds=("water_level",)))
    assert not episodes.wants(incident_event("updated"))  # not among the default events
    assert not episodes.wants(event())  # an alert is not an incident
    assert not alerts_only.wants(incident_event()) and alerts_only.wants(event())
    assert flood_both.wants(incident_event(hazard="flooding"))
    assert not flood_both.wants(event())  # hazards are the incidents' own filter


@pytest.mark.parametrize(
    ("spec", "words"),
    [
        ("subject: alert\n    hazards: [flooding]", "hazards match incidents"),
        ("subject: incident\n    rules: [pm25.*]", "rules and classes match alerts"),
        ("subject: incidents", "Input should be 'alert', 'incident' or 'both'"),
    ],
)
def test_filters_that_do_not_fit_the_subject_are_refused(spec: str, words: str) -> None:
    text = f"routes:\n  - name: r\n    {spec}\n    webhook: http://127.0.0.1:1/hook\n"
    with pytest.raises(ConfigError, match=words) as err:
        parse_routes(text, "routes.yaml")
    assert str(err.value).startswith("routes.yaml:")


def test_incident_texts_in_both_languages_neutralise_hostile_titles() -> None:
    ev = incident_event(
        "acknowledged", title_vi="Ngập\n[Chuyển cấp 9] giả\u202e", title="Flood\r\nX-Evil: 1"
    )
    ev = ev.model_copy(update={"actor": "duty-operator", "note": "đội đang đến"})
    vi_title, vi_text = render(ev, lang="vi")
    en_title, en_text = render(ev, lang="en", reason="escalation", route="episode-duty", step=2)
    assert vi_title == "Nghiêm trọng · sự cố đã tiếp nhận: Ngập [Chuyển cấp 9] giả"
    assert en_title == "[Escalation 2] Critical · incident acknowledged: Flood X-Evil: 1"
    assert vi_text.splitlines()[0] == (
        "Sự cố #7 (ô nhiễm không khí, mức nghiêm trọng) đã tiếp nhận bởi duty-operator."
    )
    assert "Khu vực: Cầu Giấy, Đống Đa" in vi_text and "Đỉnh: pm25 = 301" in vi_text
    assert "Sensors: 2 (air quality) · active alerts: 25/27" in en_text
    assert "escalation step 2 of policy episode-duty" in en_text
    assert "\u202e" not in vi_text + vi_title and "\nX-Evil" not in en_text


def test_a_merged_incident_tells_where_it_went_in_both_languages() -> None:
    from core.routing import Route

    ev = incident_event("merged", status="resolved", merged_into=12, active_alerts=0)
    vi_title, vi_text = render(ev, lang="vi")
    en_title, en_text = render(ev, lang="en")
    assert en_title.startswith("Critical · incident merged: Air pollution episode")
    assert vi_title.startswith("Nghiêm trọng · sự cố đã được gộp: Đợt ô nhiễm")
    assert "Merged into incident #12, which holds its alerts now" in en_text
    assert "Đã gộp vào sự cố #12" in vi_text
    assert "Merged into" not in render(incident_event(), lang="en")[1]
    assert AlertAction.MERGED in Route(name="duty", webhook="https://x.example/h").events
