"""The message catalogue (Vietnamese, English): languages, texts by message id, local formats.

Texts people read live in ``core/locale/<lang>/LC_MESSAGES/ioc.po`` (gettext, read with
Babel), keyed by a message id such as ``alert.threshold.above``; a text's fields are
``str.format`` names (``{value}``).  The ``.po`` files are parsed when a language is
first used (a few milliseconds, then cached), so a fresh clone needs no compile step and
the ``.po`` file stays the one source of truth.

Numbers and dates follow the language's conventions through Babel: ``1.234,5`` and
``dd/MM/yyyy HH:mm`` in Vietnamese, shown in Asia/Ho_Chi_Minh time.
"""

from __future__ import annotations

import io
import logging
import math
import re
from collections.abc import Mapping
from datetime import datetime
from functools import cache
from importlib import resources
from typing import Final, Literal

from babel.core import Locale
from babel.dates import format_datetime
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.numbers import get_decimal_symbol, get_group_symbol
from babel.support import Translations

from core.types import DISPLAY_TZ

logger = logging.getLogger(__name__)

Lang = Literal["vi", "en"]
LANGUAGES: Final[tuple[Lang, ...]] = ("vi", "en")
DEFAULT_LANGUAGE: Final[Lang] = "vi"
DOMAIN: Final = "ioc"
LOCAL_TZ: Final = DISPLAY_TZ
# BCP 47 tags, as Content-Language and CAP <language> want them
TAGS: Final[dict[Lang, str]] = {"vi": "vi-VN", "en": "en-US"}
_DATE_FORMAT: Final[dict[Lang, str]] = {"vi": "dd/MM/yyyy HH:mm", "en": "d MMM yyyy, HH:mm"}
_LANGUAGE_RANGE = re.compile(r"^(?:\*|[A-Za-z]{1,8}(?:-[A-Za-z0-9]{1,8})*)$")
_MAX_HEADER = 512


def language(value: str | None) -> Lang | None:
    """``value`` (``vi``, ``vi-VN``, ``EN_us``...) as a supported language, or None."""
    if not value:
        return None
    primary = value.strip().replace("_", "-").split("-", 1)[0].lower()
    return next((lang for lang in LANGUAGES if lang == primary), None)


def negotiate(accept_language: str | None, default: Lang = DEFAULT_LANGUAGE) -> Lang:
    """The best supported language for an ``Accept-Language`` header (RFC 9110 12.5.4).

    Quality values are honoured (``q=0`` refuses a language), a region tag counts for its
    language (``vi-VN`` is ``vi``), ``*`` means ``default``; an absent, malformed or
    unsatisfiable header gives ``default``.
    """
    if not accept_language or len(accept_language) > _MAX_HEADER:
        return default
    offers: list[tuple[float, int, Lang]] = []
    refused: set[Lang] = set()
    for position, part in enumerate(accept_language.split(",")):
        tag, _, params = part.strip().partition(";")
        tag = tag.strip().replace("_", "-")  # en_GB: a common slip, read as en-GB
        if not tag or not _LANGUAGE_RANGE.match(tag):
            continue
        q = 1.0
        for param in params.split(";"):
            name, _, raw = param.strip().partition("=")
            if name.strip().lower() == "q":
                try:
                    q = float(raw)
                except ValueError:
                    q = 0.0
                if not 0.0 <= q <= 1.0:  # NaN included
                    q = 0.0
        lang = default if tag == "*" else language(tag)
        if lang is None:
            continue
        if q == 0.0:
            if tag != "*":
                refused.add(lang)
            continue
        offers.append((-q, position, lang))
    for _, _, lang in sorted(offers):  # highest quality first; a tie goes to the first named
        if lang not in refused:
            return lang
    if default not in refused:
        return default
    return next((lang for lang in LANGUAGES if lang not in refused), default)


@cache
def translations(lang: Lang) -> Translations:
    """The catalogue of ``lang``, parsed from its ``.po`` file on first use."""
    po = resources.files("core") / "locale" / lang / "LC_MESSAGES" / f"{DOMAIN}.po"
    with po.open("rb") as fh:
        catalog = read_po(fh, locale=lang, domain=DOMAIN)
    buf = io.BytesIO()
    write_mo(buf, catalog)
    buf.seek(0)
    return Translations(buf, domain=DOMAIN)


@cache
def has(lang: Lang, msgid: str) -> bool:
    """Whether the catalogue of ``lang`` translates ``msgid``."""
    return translations(lang).gettext(msgid) != msgid


@cache
def _template(lang: Lang, msgid: str) -> str:
    template = translations(lang).gettext(msgid)
    if template == msgid and lang != "en":
        template = translations("en").gettext(msgid)
    return template


def text(lang: Lang, msgid: str, /, **fields: object) -> str:
    """The text ``msgid`` in ``lang`` with its ``{fields}`` filled in.

    A message missing from ``lang`` falls back to English, then to the id itself; a field
    the text names but the caller did not give is left as ``{name}`` (never an error).
    """
    template = _template(lang, msgid)
    if not fields:
        return template
    return template.format_map(_Fields(fields))


class _Fields(dict[str, object]):
    def __missing__(self, key: str) -> str:
        return "{" + key + "}"


@cache
def _separators(lang: Lang) -> dict[int, str]:
    """``lang``'s decimal and group symbols (from Babel's CLDR data), as a translate table."""
    locale = Locale.parse(lang)
    return {ord("."): get_decimal_symbol(locale), ord(","): get_group_symbol(locale)}


def number(value: float | int, lang: Lang, digits: int = 1) -> str:
    """``value`` with at most ``digits`` decimals, grouped the way ``lang`` writes numbers.

    The same text as Babel's ``format_decimal(value, "#,##0.#", locale=lang)``, at a
    fraction of the cost (the symbols come from Babel once; the digits from ``format``),
    for pages of thousands of alerts.
    """
    if not math.isfinite(value):
        return "–"
    out = f"{value:,.{max(digits, 0)}f}"
    if digits > 0:
        out = out.rstrip("0").rstrip(".")
    if out == "-0":
        out = "0"
    return out.translate(_separators(lang))


def when(moment: datetime, lang: Lang) -> str:
    """``moment`` in Hanoi time, as ``lang`` writes a date and time."""
    return format_datetime(moment, _DATE_FORMAT[lang], tzinfo=LOCAL_TZ, locale=lang)


def message(lang: Lang, msgid: str, fields: Mapping[str, object] | None = None) -> str:
    """A stored message (its id and fields, as a dead letter keeps them) in ``lang``.

    Numbers are written the way ``lang`` writes them; a field that is itself a stored
    message (``{"key": ..., "fields": {...}}``) is rendered in ``lang`` too.
    """
    if not fields:
        return text(lang, msgid)
    return text(lang, msgid, **{k: _field(lang, v) for k, v in fields.items()})


def _field(lang: Lang, value: object) -> object:
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float):
        return number(value, lang, digits=6)
    if isinstance(value, Mapping) and isinstance(value.get("key"), str):
        inner = value.get("fields")
        return message(lang, value["key"], inner if isinstance(inner, Mapping) else None)
    return value
