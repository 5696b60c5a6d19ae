"""``/api/v1/dead-letters``: rejected messages for engineers, newest first, a bounded page."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query
from psycopg import sql
from psycopg.rows import dict_row
from pydantic import Field

from api.deps import ConnDep, DeadLetterReader
from api.i18n import LangDep
from api.models import DeadLetterPage, DeadLetterPublic, SensorId, TimeParam
from api.params import DB_INT_MAX
from api.queries import Where, like_pattern
from api.routes import V1
from core.i18n import Lang, message

router = APIRouter(prefix=f"{V1}/dead-letters", tags=["dead letters"])

MAX_PAGE = 500
PREVIEW_BYTES = 512  # the head of the payload shown; the whole one stays in the table
MAX_REJECTED = 20  # per-entry rejections shown of a pack

Code = Annotated[str, Field(max_length=64, pattern=r"^[a-z0-9_]+$")]
Words = Annotated[str, Field(max_length=200)]

_COLUMNS = f"""
    id, received_at, topic,
    CASE WHEN split_part(topic, '/', 1) = 'ioc' THEN nullif(split_part(topic, '/', 4), '')
    END AS sensor,
    code, reason, reason_key, reason_fields, accepted,
    CASE WHEN jsonb_typeof(rejected) = 'array' THEN jsonb_array_length(rejected) ELSE 0
    END AS rejected_count,
    CASE WHEN jsonb_typeof(rejected) = 'array' THEN
        (SELECT coalesce(jsonb_agg(e), '[]') FROM (
            SELECT e FROM jsonb_array_elements(rejected) e LIMIT {MAX_REJECTED}) r)
    END AS rejected,
    coalesce(payload_size, octet_length(payload)) AS payload_size,
    payload_sha256,
    coalesce(payload_size, octet_length(payload)) > {PREVIEW_BYTES} AS payload_cut,
    substring(payload FROM 1 FOR {PREVIEW_BYTES}) AS payload_preview
"""


@router.get(
    "",
    response_model=DeadLetterPage,
    summary="Rejected messages (dead letters), newest first (engineer)",
)
async def list_dead_letters(
    conn: ConnDep,
    user: DeadLetterReader,
    lang: LangDep,
    code: Annotated[
        list[Code] | None,
        Query(
            max_length=20, description="reason codes, e.g. out_of_range", examples=[["bad_json"]]
        ),
    ] = None,
    reason: Annotated[
        Words | None, Query(description="words in the readable reason (case-insensitive)")
    ] = None,
    sensor: Annotated[
        list[SensorId] | None, Query(max_length=100, description="the sensor the topic names")
    ] = None,
    topic: Annotated[
        Words | None, Query(description="part of the topic, e.g. ioc/v1/air_quality/")
    ] = None,
    since: Annotated[TimeParam | None, Query(description="received at or after this time")] = None,
    until: Annotated[TimeParam | None, Query(description="received before this time")] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 50,
    before_id: Annotated[
        int | None,
        Query(ge=1, le=DB_INT_MAX, description="next page: dead letters with a lower id"),
    ] = None,
    after_id: Annotated[
        int | None,
        Query(ge=0, le=DB_INT_MAX, description="only dead letters with a higher id (to follow)"),
    ] = None,
) -> DeadLetterPage:
    """``reason`` (and each rejected entry's ``detail``) is in the reader's language
    (``Accept-Language``); the ``reason`` filter searches the English text.

    Each item shows the head of its payload (``payload_preview``, at most 512 bytes) with
    the whole payload's size and SHA-256; the raw bytes stay in the ``dead_letters`` table."""
    where = Where()
    where.any_of("code", "code", code)
    if reason:
        where.add("reason ILIKE %(reason)s", reason=like_pattern(reason))
    if sensor:
        where.add(
            "split_part(topic, '/', 1) = 'ioc' AND split_part(topic, '/', 4) = ANY(%(sensor)s)",
            sensor=sensor,
        )
    if topic:
        where.add("topic ILIKE %(topic)s", topic=like_pattern(topic))
    if since:
        where.add("received_at >= %(since)s", since=since)
    if until:
        where.add("received_at < %(until)s", until=until)
    if before_id is not None:
        where.add("id < %(before_id)s", before_id=before_id)
    if after_id is not None:
        where.add("id > %(after_id)s", after_id=after_id)
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(
            sql.SQL("SELECT {} FROM dead_letters {} ORDER BY id DESC LIMIT %(limit)s").format(
                sql.SQL(_COLUMNS), where.sql()
            ),
            {**where.params, "limit": limit + 1},
        )
        rows = await cur.fetchall()
    more = len(rows) > limit
    items = [_public(row, lang) for row in rows[:limit]]
    return DeadLetterPage(items=items, limit=limit, next_before_id=items[-1].id if more else None)


def _public(row: dict[str, Any], lang: Lang) -> DeadLetterPublic:
    """A row as the API shows it, its texts in ``lang`` (a row from before texts were kept
    as message ids shows its English sentence)."""
    key, fields = row.pop("reason_key"), row.pop("reason_fields")
    if key is not None:
        row["reason"] = message(lang, key, fields)
    if row["rejected"] is not None:
        row["rejected"] = [_entry(e, lang) for e in row["rejected"]]
    return DeadLetterPublic(**row)


def _entry(entry: Any, lang: Lang) -> Any:
    if not isinstance(entry, dict) or "key" not in entry:
        return entry
    out = {k: v for k, v in entry.items() if k not in ("key", "fields")}
    if isinstance(entry["key"], str):
        out["detail"] = message(lang, entry["key"], entry.get("fields"))
    return out
