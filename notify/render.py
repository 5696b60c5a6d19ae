"""Notification texts from Jinja2 templates in Vietnamese and English (package data)."""

from __future__ import annotations

import re
from functools import cache
from importlib import resources
from typing import Any

import jinja2
import yaml

from core.events import AlertEvent, Event
from core.routing import Lang
from core.types import to_display

MAX_VALUE_CHARS = 500
_CONTROL = re.compile(r"[\x00-\x1f\x7f\u202a-\u202e\u2066-\u2069]")


def _finalize(value: Any) -> Any:
    """Every value put into a text: one line, no control or bidi-override characters, bounded."""
    if isinstance(value, str):
        value = _CONTROL.sub(" ", value)
        if len(value) > MAX_VALUE_CHARS:
            value = value[: MAX_VALUE_CHARS - 1] + "…"
    return value


@cache
def _env() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.PackageLoader("notify", "templates"),
        autoescape=False,  # plain text; each channel escapes for its own format
        finalize=_finalize,
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=False,
    )


@cache
def _words() -> dict[str, dict[str, dict[str, str]]]:
    text = resources.files("notify").joinpath("templates/words.yaml").read_text("utf-8")
    words: dict[str, dict[str, dict[str, str]]] = yaml.safe_load(text)
    return words


def render(
    event: Event, *, lang: Lang, reason: str = "event", route: str = "", step: int = 0
) -> tuple[str, str]:
    """The title and text of a notification about ``event`` (an alert's or an incident's)."""
    w = _words()[lang]
    thing = event.entity
    ctx: dict[str, Any] = {
        "actor": event.actor,
        "note": event.note,
        "reason": reason,
        "route": route,
        "step": step,
        "severity_word": w["severity"][thing.severity.value],
        "status_word": w["status"][thing.status.value],
        "action_word": w["action"].get(event.action.value, event.action.value),
        "local_time": to_display(event.time).strftime("%H:%M:%S %d/%m/%Y"),
    }
    if isinstance(event, AlertEvent):
        ctx.update(alert=event.alert, kind_word=w["kind"].get(event.alert.kind, event.alert.kind))
        prefix = ""
    else:
        incident = event.incident
        ctx.update(
            incident=incident,
            incident_title=incident.title_vi if lang == "vi" else incident.title,
            hazard_word=w["hazard"].get(incident.hazard, incident.hazard),
            kind_words=[w["kind"].get(k, k) for k in incident.kinds],
        )
        prefix = "incident_"
    env = _env()
    title = env.get_template(f"{lang}/{prefix}title.txt.j2").render(ctx).strip()
    body = env.get_template(f"{lang}/{prefix}body.txt.j2").render(ctx).strip()
    return " ".join(title.split()), body
