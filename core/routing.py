"""Notification routes and escalation policies: their schema, the YAML file, and matching.

A route sends matching alert or incident events to channels (``subject``); an
escalation policy notifies tiers one after another while an alert or incident stays
unacknowledged, then reminds every ``repeat_minutes``.  Both are data: a YAML file (``IOC_NOTIFY_ROUTES``) and rows managed
through the admin API share this schema.  A mistake in the file raises ``ConfigError``
naming its line.
"""

from __future__ import annotations

import fnmatch
from datetime import datetime, time
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from core.errors import ConfigError
from core.events import AlertAction, Event
from core.types import DISPLAY_TZ, Alert, AlertClass, Incident, SensorKind, Severity

Lang = Literal["vi", "en"]
# what a route or policy is about: alerts (the default), incidents (one notification per
# episode; its member alerts are not notified on their own), or both, each on its own
Subject = Literal["alert", "incident", "both"]
Day = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
DAYS: tuple[Day, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
DEFAULT_EVENTS = frozenset(
    {
        AlertAction.OPENED,
        AlertAction.REOPENED,
        AlertAction.ESCALATED,
        AlertAction.ACKNOWLEDGED,
        AlertAction.RESOLVED,
        AlertAction.MERGED,  # an incident someone was paged about is now part of another
    }
)
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$"


class Match(BaseModel):
    """What an alert or incident must be for a route or policy to apply; empty lists mean any."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    subject: Subject = Field(default="alert", description="alert, incident or both")
    min_severity: Severity = Severity.INFO
    kinds: tuple[SensorKind, ...] = Field(
        default=(), description="sensor kinds (of an incident: any of its sensors)"
    )
    hazards: tuple[str, ...] = Field(
        default=(), description="incident hazards, e.g. flooding, air_pollution (incidents only)"
    )
    rules: tuple[str, ...] = Field(
        default=(), description="hazard rules, globs allowed, e.g. water_level.*"
    )
    districts: tuple[str, ...] = Field(
        default=(), description="alert areas, e.g. Hoàn Kiếm (of an incident: any of its areas)"
    )
    classes: tuple[AlertClass, ...] = ()
    days: tuple[Day, ...] = Field(default=(), description="local (Asia/Ho_Chi_Minh) weekdays")
    hours: str | None = Field(
        default=None, description="local time window HH:MM-HH:MM (may wrap midnight)"
    )

    @field_validator("hours")
    @classmethod
    def _check_hours(cls, v: str | None) -> str | None:
        if v is not None:
            _window(v)
        return v

    @model_validator(mode="after")
    def _fits_subject(self) -> Match:
        if self.subject == "alert" and self.hazards:
            raise ValueError("hazards match incidents: set subject to incident or both")
        if self.subject == "incident" and (self.rules or self.classes):
            raise ValueError("rules and classes match alerts: set subject to alert or both")
        return self

    def about(self, subject: str) -> bool:
        """Whether it applies to alerts (``alert``) or incidents (``incident``) at all."""
        return self.subject in (subject, "both")

    def matches(self, thing: Alert | Incident, at: datetime) -> bool:
        if isinstance(thing, Incident):
            if not self._matches_incident(thing):
                return False
        elif not self._matches_alert(thing):
            return False
        return self._matches_time(at)

    def _matches_alert(self, alert: Alert) -> bool:
        if not self.about("alert") or self.hazards:
            return False  # a filter of incidents' own excludes alerts
        if alert.severity.rank < self.min_severity.rank:
            return False
        if self.kinds and alert.kind not in self.kinds:
            return False
        if self.rules and not any(fnmatch.fnmatchcase(alert.rule, p) for p in self.rules):
            return False
        if self.districts and alert.area not in self.districts:
            return False
        return not (self.classes and alert.alert_class not in self.classes)

    def _matches_incident(self, incident: Incident) -> bool:
        if not self.about("incident") or self.rules or self.classes:
            return False  # a filter of alerts' own excludes incidents
        if incident.severity.rank < self.min_severity.rank:
            return False
        if self.kinds and not set(self.kinds) & set(incident.kinds):
            return False
        if self.hazards and incident.hazard not in self.hazards:
            return False
        return not (self.districts and not set(self.districts) & set(incident.areas))

    def _matches_time(self, at: datetime) -> bool:
        local = at.astimezone(DISPLAY_TZ)
        if self.days and DAYS[local.weekday()] not in self.days:
            return False
        if self.hours is not None:
            start, end = _window(self.hours)
            now = local.time()
            inside = start <= now < end if start <= end else (now >= start or now < end)
            if not inside:
                return False
        return True


def _window(text: str) -> tuple[time, time]:
    try:
        a, b = text.split("-")
        return time.fromisoformat(a.strip()), time.fromisoformat(b.strip())
    except ValueError:
        raise ValueError(f"hours must look like 07:00-19:00, got {text!r}") from None


class Targets(BaseModel):
    """Where to send: a signed JSON webhook and/or Apprise URLs (mailto://, tgram://, ...)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    webhook: str | None = Field(default=None, description="http(s) URL of a signed JSON webhook")
    channels: tuple[str, ...] = Field(default=(), description="Apprise URLs")
    language: Lang = "vi"

    @field_validator("webhook")
    @classmethod
    def _check_webhook(cls, v: str | None) -> str | None:
        if v is not None and not v.startswith(("http://", "https://")):
            raise ValueError("webhook must be an http:// or https:// URL")
        return v

    @field_validator("channels")
    @classmethod
    def _check_channels(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        for url in v:
            if "://" not in url:
                raise ValueError(f"a channel is an Apprise URL like mailto://..., got {url!r}")
        return v

    def targets(self) -> list[str]:
        """Every target; the webhook is prefixed ``webhook+`` to tell it from Apprise URLs."""
        out = [f"webhook+{self.webhook}"] if self.webhook else []
        return out + list(self.channels)


class Route(Match, Targets):
    """Matching events go to the route's targets."""

    name: str = Field(pattern=NAME_PATTERN)
    events: tuple[AlertAction, ...] = Field(
        default=tuple(sorted(DEFAULT_EVENTS)), description="action words that are sent"
    )
    rate_per_minute: float = Field(default=60.0, gt=0, le=100_000)

    def wants(self, event: Event) -> bool:
        return event.action in self.events and self.matches(event.entity, event.time)


class Step(Targets):
    """One tier of an escalation: notify it when the alert or incident is unacknowledged this long."""

    after_minutes: float = Field(ge=0, le=10_080)


class Escalation(Match):
    """Several steps while nobody acknowledges, then reminders every ``repeat_minutes``."""

    name: str = Field(pattern=NAME_PATTERN)
    steps: tuple[Step, ...] = Field(min_length=1, max_length=20)
    repeat_minutes: float | None = Field(default=None, gt=0, le=10_080)
    max_reminders: int = Field(default=12, ge=0, le=1_000)

    @field_validator("steps")
    @classmethod
    def _ordered(cls, v: tuple[Step, ...]) -> tuple[Step, ...]:
        waits = [s.after_minutes for s in v]
        if waits != sorted(waits):
            raise ValueError("steps must be in order of after_minutes")
        return v


class RoutesFile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    routes: tuple[Route, ...] = ()
    escalations: tuple[Escalation, ...] = ()


def parse_routes(text: str, source: str = "<routes>") -> RoutesFile:
    """Parse the YAML text of a routes file; ``ConfigError`` names the line of a mistake."""
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{source}:{mark.line + 1}" if mark is not None else source
        raise ConfigError(f"{where}: not valid YAML: {getattr(exc, 'problem', exc)}") from None
    if data is None:
        return RoutesFile()
    try:
        parsed = RoutesFile.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        line = _line_of(node, err["loc"])
        path = ".".join(str(p) for p in err["loc"])
        raise ConfigError(f"{source}:{line}: {path}: {err['msg']}") from None
    names = [r.name for r in parsed.routes] + [e.name for e in parsed.escalations]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ConfigError(f"{source}: names used twice: {', '.join(dupes)}")
    return parsed


def load_routes(path: Path | str | None) -> RoutesFile:
    """The routes file at ``path`` (``None`` or empty: no routes)."""
    if path is None or str(path) == "":
        return RoutesFile()
    p = Path(path)
    try:
        text = p.read_text("utf-8")
    except OSError as exc:
        raise ConfigError(f"IOC_NOTIFY_ROUTES: cannot read {p}: {exc.strerror}") from None
    return parse_routes(text, str(p))


def _line_of(node: Any, loc: tuple[int | str, ...]) -> int:
    """The 1-based line of the deepest YAML node on ``loc`` that exists."""
    line: int = node.start_mark.line + 1 if node is not None else 1
    for key in loc:
        child = None
        if isinstance(node, yaml.MappingNode):
            for k, v in node.value:
                if k.value == key:
                    child = v
                    break
        elif (
            isinstance(node, yaml.SequenceNode)
            and isinstance(key, int)
            and 0 <= key < len(node.value)
        ):
            child = node.value[key]
        if child is None:
            break
        node = child
        line = node.start_mark.line + 1
    return line


def mask_target(target: str) -> str:
    """A target as people may see it: scheme, host and path, no credentials or tokens."""
    raw = target.removeprefix("webhook+")
    scheme = raw.partition("://")[0]
    webhook = target.startswith("webhook+")
    if not webhook and scheme not in ("mailto", "mailtos"):
        return f"{scheme}://…"  # chat services carry tokens where a host would be
    try:  # a mail server or a webhook's host and path are not secrets; credentials are
        parts = urlsplit(raw)
        where = f"{parts.hostname or ''}{f':{parts.port}' if parts.port else ''}"
    except ValueError:
        return f"{scheme}://…"
    return f"webhook {scheme}://{where}{parts.path}" if webhook else f"{scheme}://{where}"
