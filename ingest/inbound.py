"""One received MQTT message, decoded in ``on_message`` and held until its batch commits."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from core.codecs import Limits, Rejection, decode_meta, decode_status, payload_error
from core.columnar import Columns, decode_columns
from core.errors import PayloadError, TopicError
from core.i18n import message
from core.topics import parse_sensor_topic
from core.types import DeviceStatus, Sensor, SensorKind

BAD = "bad"  # channel of a message whose topic is not a sensor topic
_MAX_TOPICS = 500_000
# topic -> (channel, sensor, kind); topics repeat, parsing them need not
_topics: dict[str, tuple[str, str, SensorKind]] = {}


@dataclass(slots=True)
class Inbound:
    """A message and what it became: columns of readings, a registration, a status or an error.

    ``gen`` is the MQTT connection it arrived on: an acknowledgement is only sent on
    that same connection (packet ids are reused by the broker after a reconnect).
    """

    mid: int
    qos: int
    gen: int
    topic: str
    payload: bytes
    received: float  # wall clock, epoch seconds
    channel: str  # data, meta, status or bad
    sensor: str = ""
    kind: SensorKind | None = None
    cols: Columns | None = None
    rejections: list[Rejection] = field(default_factory=list)
    error: PayloadError | None = None
    meta: Sensor | None = None
    status: tuple[DeviceStatus, float] | None = None

    @property
    def rows(self) -> int:
        return len(self.cols.us) if self.cols is not None else 0


def decode_message(
    topic: str, payload: bytes, *, mid: int, qos: int, gen: int, now: float, limits: Limits
) -> Inbound:
    """Turn a message into an ``Inbound``; never raises for bad input (it becomes ``error``)."""
    msg = Inbound(mid, qos, gen, topic, payload, now, BAD)
    parsed = _topics.get(topic)
    if parsed is None:
        try:
            st = parse_sensor_topic(topic)
        except TopicError as exc:
            msg.error = PayloadError("bad_topic", str(exc), key=exc.key, **exc.fields)
            return msg
        if len(_topics) >= _MAX_TOPICS:
            _topics.clear()
        parsed = _topics[topic] = (st.channel.value, st.sensor, st.kind)
    channel, sensor, kind = parsed
    msg.channel, msg.sensor, msg.kind = parsed
    try:
        if channel == "data":
            msg.cols, msg.rejections = decode_columns(sensor, payload, now, limits)
        elif channel == "meta":
            if b"\\u0000" in payload:
                raise payload_error("bad_meta", "meta.nul")
            msg.meta = decode_meta(kind, sensor, payload)
        else:
            status = decode_status(payload, now=now)
            _check_status_time(status[1], now, limits)
            msg.status = status
    except PayloadError as exc:
        # a fresh error without the traceback: the raised one's frames hold ``msg`` and the
        # payload in a reference cycle, which kept megabytes alive until the next full
        # collection (the ingestor collects rarely, see ``tune_gc``)
        msg.error = PayloadError(exc.reason, exc.detail, key=exc.key, **exc.fields)
    return msg


def _check_status_time(t: float, now: float, limits: Limits) -> None:
    if t > now + limits.max_future_skew_s:
        raise payload_error("timestamp_future", "status.future", seconds=round(t - now))
    if t < now - limits.max_age_s:
        raise payload_error(
            "timestamp_too_old", "status.too_old", days=round(limits.max_age_s / 86400)
        )


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A ``dead_letters`` row."""

    received_at: datetime
    topic: str
    payload: bytes
    code: str
    reason: str
    rejected: list[dict[str, Any]] | None
    accepted: int
    counted: tuple[str, ...]  # rejection reasons, one per rejected entry (for the counters)
    # ``reason`` as a catalogue id and its fields, so that it reads in any language (None for
    # a reason that has no catalogue text)
    detail_key: str | None = None
    detail_fields: dict[str, Any] | None = None


def _clean(text: str) -> str:
    return text.replace("\x00", "\\0")  # PostgreSQL text cannot hold NUL


def _plain(value: Any) -> Any:
    """``value`` as jsonb holds it: no NUL in text, no NaN or infinity in numbers."""
    if isinstance(value, str):
        return _clean(value)
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def _text(key: str | None, fields: Mapping[str, Any] | None) -> dict[str, Any]:
    """A catalogue text as a dead letter stores it (``{}`` when there is none)."""
    if key is None:
        return {}
    return {"key": key, "fields": _plain(dict(fields or {}))}


def _entry(r: Rejection) -> dict[str, Any]:
    return {"index": r.index, "reason": r.reason, "detail": _clean(r.detail)} | _text(
        r.key, r.fields
    )


def dead_letter_of(msg: Inbound, *, unknown_sensor: bool = False) -> DeadLetter | None:
    """The dead letter a message leaves, if any (a wholly good message leaves none)."""
    if msg.error is None and not msg.rejections and not unknown_sensor:
        return None
    at = datetime.fromtimestamp(msg.received, UTC)
    rejected = [_entry(r) for r in msg.rejections] if msg.rejections else None
    reasons = tuple(r.reason for r in msg.rejections)
    topic = _clean(msg.topic)
    if msg.error is not None:
        err = msg.error
        said = _text(err.key, err.fields)
        return DeadLetter(
            at,
            topic,
            msg.payload,
            err.reason,
            _clean(err.detail),
            None,
            0,
            (),
            detail_key=said.get("key"),
            detail_fields=said.get("fields"),
        )
    if unknown_sensor:
        said = _text(
            "deadletter.unknown_sensor",
            {"sensor": repr(msg.sensor), "kind": str(msg.kind), "id": msg.sensor},
        )
        reason = message("en", said["key"], said["fields"])
        return DeadLetter(
            at,
            topic,
            msg.payload,
            "unknown_sensor",
            reason,
            rejected,
            0,
            reasons,
            detail_key=said["key"],
            detail_fields=said["fields"],
        )
    if not msg.rejections:
        return None
    accepted = msg.rows
    total = accepted + len(msg.rejections)
    counts: dict[str, int] = {}
    for r in msg.rejections:
        counts[r.reason] = counts.get(r.reason, 0) + 1
    summary = ", ".join(f"{k} ({v})" for k, v in counts.items())
    first = msg.rejections[0]
    said = _text(
        "deadletter.pack",
        {
            "rejected": len(msg.rejections),
            "total": total,
            "summary": summary,
            "first": _text(first.key, first.fields) or first.detail,
        },
    )
    reason = message("en", said["key"], said["fields"])
    return DeadLetter(
        at,
        topic,
        msg.payload,
        first.reason,
        _clean(reason),
        rejected,
        accepted,
        reasons,
        detail_key=said["key"],
        detail_fields=said["fields"],
    )
