"""The reader's language (``Accept-Language``) and alert messages rendered in it."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Annotated, Any

from fastapi import Depends, Response
from psycopg import AsyncConnection
from starlette.datastructures import MutableHeaders
from starlette.requests import HTTPConnection

from api.models import AlertPublic
from core import alert_text
from core.i18n import Lang, language, negotiate


def reader_language(request: HTTPConnection, *, query: bool = False) -> Lang:
    """The best match of ``Accept-Language`` (after ``?lang=`` when ``query``: websockets,
    whose browser clients cannot set headers), else the default (``IOC_LANGUAGE``)."""
    default: Lang = request.app.state.settings.language
    if query:
        asked = language(request.query_params.get("lang"))
        if asked is not None:
            return asked
    return negotiate(request.headers.get("accept-language"), default)


def mark_language(headers: MutableHeaders, lang: Lang) -> None:
    """``Content-Language`` of a localised answer, and ``Vary`` so caches keep one per language."""
    headers["Content-Language"] = lang
    headers.add_vary_header("Accept-Language")


def response_language(request: HTTPConnection, response: Response) -> Lang:
    """A route dependency: the reader's language, marked on the response."""
    lang = reader_language(request)
    mark_language(response.headers, lang)
    return lang


LangDep = Annotated[Lang, Depends(response_language)]


def error_language(request: HTTPConnection) -> Lang:
    """The language of error details: English unless ``Accept-Language`` asks otherwise
    (API clients match on them; people's screens send the header)."""
    return negotiate(request.headers.get("accept-language"), "en")


ErrorLangDep = Annotated[Lang, Depends(error_language)]


async def sensor_names(conn: AsyncConnection[Any], sensors: Iterable[str]) -> dict[str, str]:
    """The names of ``sensors`` (those that have one), in one query."""
    ids = sorted(set(sensors))
    if not ids:
        return {}
    async with conn.cursor() as cur:
        await cur.execute("SELECT id, name FROM sensors WHERE id = ANY(%s) AND name <> ''", (ids,))
        return {str(i): str(n) for i, n in await cur.fetchall()}


def localize(alert: AlertPublic, lang: Lang, names: Mapping[str, str]) -> AlertPublic:
    """``alert`` with its message in ``lang`` (the same object, changed in place)."""
    alert.message = alert_text.render(_fields(alert), lang, names.get(alert.sensor))
    return alert


async def localize_all(
    conn: AsyncConnection[Any], alerts: list[AlertPublic], lang: Lang
) -> list[AlertPublic]:
    names = await sensor_names(conn, (a.sensor for a in alerts))
    for alert in alerts:
        localize(alert, lang, names)
    return alerts


def _fields(alert: AlertPublic) -> dict[str, Any]:
    return {
        "sensor": alert.sensor,
        "metric": alert.metric,
        "rule": alert.rule,
        "detector": alert.detector,
        "severity": alert.severity,
        "message": alert.message,
        "value": alert.value,
        "expected_low": alert.expected_low,
        "expected_high": alert.expected_high,
        "score": alert.score,
        "evidence": alert.evidence,
        "area": alert.area,
    }
