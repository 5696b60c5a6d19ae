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
from core.errors import InvalidValue, IocError
from core.i18n import Lang, has, language, negotiate, number, text


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


# pydantic's error types, by the catalogue text (``api.invalid.*``) and the ``ctx`` field
# that holds the limit; the rest read as ``api.invalid.other`` with pydantic's English
_VALIDATION_TEXTS: dict[str, tuple[str, str | None]] = {
    "missing": ("missing", None),
    "extra_forbidden": ("extra_forbidden", None),
    "int_parsing": ("int", None),
    "int_type": ("int", None),
    "int_from_float": ("int", None),
    "float_parsing": ("float", None),
    "float_type": ("float", None),
    "finite_number": ("float", None),
    "bool_parsing": ("bool", None),
    "bool_type": ("bool", None),
    "string_type": ("string", None),
    "greater_than_equal": ("ge", "ge"),
    "greater_than": ("gt", "gt"),
    "less_than_equal": ("le", "le"),
    "less_than": ("lt", "lt"),
    "string_too_short": ("min_length", "min_length"),
    "too_short": ("min_length", "min_length"),
    "string_too_long": ("max_length", "max_length"),
    "too_long": ("max_length", "max_length"),
    "literal_error": ("choice", None),
    "enum": ("choice", None),
    "string_pattern_mismatch": ("pattern", None),
    "json_invalid": ("json", None),
    "dict_type": ("object", None),
    "model_type": ("object", None),
    "model_attributes_type": ("object", None),
    "list_type": ("list", None),
}


def _shown(value: object, lang: Lang) -> object:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return value
    return number(value, lang, digits=6)


def validation_text(error: Mapping[str, Any], lang: Lang) -> str:
    """One refused value (an item of ``RequestValidationError.errors()``) as a sentence in
    ``lang``: the field, then what it must be."""
    loc = [str(p) for p in error.get("loc", ())]
    field = ".".join(loc[1:] or loc) or text(lang, "api.invalid.request")
    ctx = error.get("ctx") or {}
    cause = ctx.get("error")
    if isinstance(cause, InvalidValue):
        shown = {k: _shown(v, lang) for k, v in cause.fields.items()}
        return text(lang, cause.key, field=field, **shown)
    kind = str(error.get("type", ""))
    known = _VALIDATION_TEXTS.get(kind)
    if known is None:
        return text(lang, "api.invalid.other", field=field, msg=str(error.get("msg", "")))
    msgid, limit = known
    return text(
        lang,
        f"api.invalid.{msgid}",
        field=field,
        limit=_shown(ctx.get(limit), lang) if limit else "",
        expected=ctx.get("expected", ""),
    )


def error_text(exc: Exception, status: int, english: str, lang: Lang) -> str:
    """An error's ``detail`` in ``lang``: the error's own text when it has a catalogue key,
    else the status's general text; ``english`` as it stands for English readers."""
    if lang == "en":
        return english
    if isinstance(exc, IocError):
        if exc.key is None:  # already in the reader's language, or a text of its own
            return english
        fields = {
            k: text(lang, f"tail.status.{v}")
            if k == "status"
            else v
            if k == "id"
            else _shown(v, lang)
            for k, v in exc.fields.items()
        }
        return text(lang, exc.key, **fields)
    msgid = f"api.http.{status}"
    return text(lang, msgid) if has(lang, msgid) else english
