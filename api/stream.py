"""Live alert fan-out: one LISTEN reader per process, bounded per-client queues, resume by seq.

The reader holds a dedicated connection that LISTENs on ``ioc_alerts``.  On every
notification (and every ``poll_s`` as a safety net) it reads ``alert_events WHERE seq >
head ORDER BY seq`` -- so coalesced or lost notifications cost nothing -- encodes each
event once and offers the same text to every matching client's bounded queue.  A
client's sender task drains its queue into its socket; a client whose queue is full is
flagged and closed with 4008 by its endpoint, never slowing the others.

Writers of ``alert_events`` serialise on an advisory lock, so seq order is commit order:
once the reader sees seq N, every event below N is visible.  A client resuming with
``since = S`` is registered first (the hub's head ``H`` at that instant is returned),
then replays ``S < seq <= H`` from the table while live events ``> H`` wait in its
queue: no gap, and no duplicate because the sender drops any seq it already sent.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import Enum
from typing import Any

import orjson
import psycopg
from psycopg import AsyncConnection, sql
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool
from websockets.frames import Frame as WsFrame
from websockets.frames import Opcode

from api.i18n import localize, sensor_names
from api.incident_models import IncidentPublic
from api.models import AlertPublic
from api.params import BBox
from api.telemetry import (
    ALERT_EVENT_LAG,
    ALERT_EVENTS,
    ALERT_READER_RECONNECTS,
    REPLAYED_EVENTS,
    WS_CLIENTS,
    WS_FRAMES,
)
from core.i18n import Lang

logger = logging.getLogger(__name__)

CHANNEL = "ioc_alerts"
PAGE = 500
_EVENT_COLUMNS = "seq, alert_id, incident_id, time, action, actor, note, snapshot"


class FrameKind(Enum):
    EVENT = 1
    HEARTBEAT = 2


@dataclass(frozen=True, slots=True)
class Frame:
    """An encoded message waiting in clients' queues, with its ASGI message and its
    websocket frame (server side: unmasked, uncompressed) built once."""

    kind: FrameKind
    seq: int
    text: str
    message: dict[str, str] = field(init=False, repr=False, compare=False)
    wire: bytes = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "message", {"type": "websocket.send", "text": self.text})
        wire = WsFrame(Opcode.TEXT, self.text.encode()).serialize(mask=False)
        object.__setattr__(self, "wire", wire)


@dataclass(frozen=True, slots=True)
class Event:
    """One alert event, encoded once for every client."""

    seq: int
    severity: str
    kind: str
    area: str
    lat: float | None
    lon: float | None
    text: str


@dataclass(frozen=True, slots=True)
class AlertFilter:
    """What a client asked for; an empty set means any."""

    severities: frozenset[str] = frozenset()
    kinds: frozenset[str] = frozenset()
    areas: frozenset[str] = frozenset()
    bbox: BBox | None = None

    def matches(self, ev: Event) -> bool:
        return (
            (not self.severities or ev.severity in self.severities)
            and (not self.kinds or ev.kind in self.kinds)
            and (not self.areas or ev.area in self.areas)
            and (self.bbox is None or self.bbox.contains(ev.lat, ev.lon))
        )


class Subscriber:
    """One websocket client: a bounded queue drained by the endpoint's sender task.

    (A deque and one future rather than ``asyncio.Queue``: offering a frame to thousands
    of clients per event is the hot path.)
    """

    __slots__ = (
        "_waiter",
        "direct",
        "last",
        "maxsize",
        "overflowed",
        "pending",
        "sending_since",
        "too_slow",
    )

    def __init__(self, maxsize: int) -> None:
        self.maxsize = maxsize
        self.last = 0  # the newest seq sent to this client
        # writes a whole frame to the socket now, or returns False (see api.routes.ws)
        self.direct: Callable[[bytes], bool] | None = None
        self.pending: deque[Frame] = deque()
        self.overflowed = asyncio.Event()  # set when it must be dropped (see ``too_slow``)
        self.too_slow = ""  # why: a full queue, or one frame stuck in the socket too long
        self.sending_since = 0.0  # loop time the current send began; 0: not sending
        self._waiter: asyncio.Future[None] | None = None

    def drop(self, reason: str) -> None:
        """Mark the client too slow: the hubs stop feeding it and its endpoint closes it."""
        if not self.overflowed.is_set():
            self.too_slow = reason
            self.overflowed.set()

    def stalled(self, now: float, limit_s: float) -> bool:
        """Whether one send has been waiting for the socket for more than ``limit_s``."""
        return self.sending_since > 0.0 and now - self.sending_since > limit_s

    def deliver(self, frame: Frame) -> None:
        """Write ``frame`` straight to the socket when nothing is ahead of it (the sender
        waits for work and the socket takes data), else queue it for the sender.

        Fanning one event out to thousands of idle clients then costs one ``write`` each,
        instead of a task switch, an ASGI call and a websocket framing each."""
        direct = self.direct
        waiter = self._waiter
        if (
            direct is not None
            and not self.pending
            and waiter is not None
            and not waiter.done()
            and frame.seq > self.last
            and direct(frame.wire)
        ):
            self.last = frame.seq
            return
        self.offer(frame)

    def offer(self, frame: Frame) -> None:
        if len(self.pending) >= self.maxsize:
            self.drop(f"too slow: more than {self.maxsize} frames waiting")
            return
        self.pending.append(frame)
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def next(self) -> Frame:
        """The next frame, waiting for one if need be."""
        while not self.pending:
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        return self.pending.popleft()

    def qsize(self) -> int:
        return len(self.pending)


class AlertSubscriber(Subscriber):
    __slots__ = ("filter", "lang")

    def __init__(self, maxsize: int, flt: AlertFilter, lang: Lang | None = None) -> None:
        super().__init__(maxsize)
        self.filter = flt
        self.lang = lang  # None: messages as stored


def encode_event(
    row: dict[str, Any], lang: Lang | None = None, names: dict[str, str] | None = None
) -> Event:
    """An ``alert_events`` row as the websocket's ``alert`` message (its message in ``lang``)."""
    alert = AlertPublic.model_validate(row["snapshot"])
    if lang is not None:
        localize(alert, lang, names or {})
    doc = {
        "type": "alert",
        "seq": row["seq"],
        "action": row["action"],
        "actor": row["actor"],
        "note": row["note"],
        "time": row["time"],
        "alert": alert.model_dump(mode="json"),
    }
    return Event(
        seq=row["seq"],
        severity=alert.severity,
        kind=alert.kind,
        area=alert.area,
        lat=alert.lat,
        lon=alert.lon,
        text=orjson.dumps(doc, option=orjson.OPT_UTC_Z).decode(),
    )


def encode_incident_event(row: dict[str, Any]) -> Event:
    """An ``alert_events`` row about an incident as the websocket's ``incident`` message."""
    inc = IncidentPublic.model_validate(row["snapshot"])
    doc = {
        "type": "incident",
        "seq": row["seq"],
        "action": row["action"],
        "actor": row["actor"],
        "note": row["note"],
        "time": row["time"],
        "incident": inc.model_dump(mode="json"),
    }
    ring = (inc.polygon or {}).get("coordinates", [[]])[0]
    lat = lon = None
    if ring:  # the centre of its area decides a bounding-box filter
        lon = sum(p[0] for p in ring) / len(ring)
        lat = sum(p[1] for p in ring) / len(ring)
    return Event(
        seq=row["seq"],
        severity=inc.severity,
        kind=inc.kinds[0] if len(inc.kinds) == 1 else "",
        area=inc.areas[0] if len(inc.areas) == 1 else "",
        lat=lat,
        lon=lon,
        text=orjson.dumps(doc, option=orjson.OPT_UTC_Z).decode(),
    )


def encode_row(
    row: dict[str, Any], lang: Lang | None = None, names: dict[str, str] | None = None
) -> Event | None:
    """Any ``alert_events`` row; None for an alert raised under maintenance (not shown).

    (An incident carries its title in both languages: ``lang`` changes nothing there.)"""
    if row.get("incident_id") is not None:
        return encode_incident_event(row)
    if row["snapshot"].get("suppressed_by") is not None:
        return None
    return encode_event(row, lang, names)


def heartbeat_text(seq: int) -> str:
    doc = {"type": "heartbeat", "seq": seq, "time": datetime.now(UTC)}
    return orjson.dumps(doc, option=orjson.OPT_UTC_Z).decode()


def hello_text(seq: int) -> str:
    return orjson.dumps({"type": "hello", "seq": seq}).decode()


class AlertHub:
    """The process's one reader of ``alert_events`` and its websocket subscribers."""

    def __init__(
        self,
        dsn: str,
        *,
        heartbeat_s: float = 15.0,
        poll_s: float = 5.0,
        retry_s: float = 1.0,
    ) -> None:
        self.dsn = dsn
        self.heartbeat_s = heartbeat_s
        self.poll_s = poll_s
        self.retry_s = retry_s
        self.head = 0  # the last seq read and offered to the subscribers
        self.subscribers: set[AlertSubscriber] = set()
        self.connected = False
        self._ready = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        """Start reading; return once the reader listens (give up after 30 s)."""
        self._tasks = [
            asyncio.create_task(self._reader(), name="ioc-alert-reader"),
            asyncio.create_task(self._heartbeats(), name="ioc-alert-heartbeats"),
        ]
        async with asyncio.timeout(30.0):
            await self._ready.wait()

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []

    def register(self, sub: AlertSubscriber) -> int:
        """Add a subscriber; events after the returned head will reach its queue."""
        self.subscribers.add(sub)
        WS_CLIENTS.labels("alerts").set(len(self.subscribers))
        return self.head

    def unregister(self, sub: AlertSubscriber) -> None:
        self.subscribers.discard(sub)
        WS_CLIENTS.labels("alerts").set(len(self.subscribers))

    # -- reading -------------------------------------------------------------

    async def _reader(self) -> None:
        first = True
        while True:
            try:
                async with await AsyncConnection.connect(self.dsn, autocommit=True) as conn:
                    await conn.execute(f"LISTEN {CHANNEL}")
                    if first:
                        cur = await conn.execute("SELECT coalesce(max(seq), 0) FROM alert_events")
                        row = await cur.fetchone()
                        self.head = int(row[0]) if row else 0
                        first = False
                    else:
                        await self._drain(conn)  # what was committed while we were away
                    self.connected = True
                    self._ready.set()
                    logger.info("alert reader listening on %s from seq %d", CHANNEL, self.head)
                    while True:
                        async for _ in conn.notifies(timeout=self.poll_s, stop_after=1):
                            pass
                        await self._drain(conn)
            except asyncio.CancelledError:
                raise
            except (psycopg.Error, OSError) as exc:
                self.connected = False
                ALERT_READER_RECONNECTS.inc()
                logger.warning(
                    "alert reader lost the database (%s); retrying in %.1f s", exc, self.retry_s
                )
                await asyncio.sleep(self.retry_s)

    async def _drain(self, conn: AsyncConnection[Any]) -> None:
        while True:
            async with conn.cursor(row_factory=dict_row) as cur:
                await cur.execute(
                    f"SELECT {_EVENT_COLUMNS} FROM alert_events WHERE seq > %s ORDER BY seq LIMIT %s",
                    (self.head, PAGE),
                )
                rows = await cur.fetchall()
            names: dict[str, str] = {}
            if rows and any(sub.lang for sub in self.subscribers):
                names = await sensor_names(conn, _sensors(rows))
            now = datetime.now(UTC)
            for row in rows:
                self._dispatch(row, now, names)
            if len(rows) < PAGE:
                return

    def _dispatch(
        self, row: dict[str, Any], now: datetime, names: dict[str, str] | None = None
    ) -> None:
        seq = int(row["seq"])
        self.head = seq
        ALERT_EVENTS.inc()
        ALERT_EVENT_LAG.observe(max(0.0, (now - row["time"]).total_seconds()))
        try:
            ev = encode_row(row)
        except Exception:  # one malformed snapshot must not stop the stream
            logger.exception("alert event %d could not be encoded; skipped", seq)
            return
        if ev is None:
            return
        frames: dict[Lang | None, Frame] = {None: Frame(FrameKind.EVENT, seq, ev.text)}
        n = 0
        for sub in self.subscribers:
            if sub.filter.matches(ev):
                frame = frames.get(sub.lang)
                if frame is None:  # encoded once per language, on first need
                    frame = frames[sub.lang] = self._localized(row, sub.lang, names or {}, frames)
                sub.deliver(frame)
                n += 1
        WS_FRAMES.labels("alerts").inc(n)
        self._drop_overflowed()

    @staticmethod
    def _localized(
        row: dict[str, Any],
        lang: Lang | None,
        names: dict[str, str],
        frames: dict[Lang | None, Frame],
    ) -> Frame:
        try:
            ev = encode_row(row, lang, names)
            assert ev is not None  # (rows that are not shown never get here)
            return Frame(FrameKind.EVENT, int(row["seq"]), ev.text)
        except Exception:  # the stored message rather than no event
            logger.exception("alert event %s could not be rendered in %s", row["seq"], lang)
            return frames[None]

    def _drop_overflowed(self) -> None:
        """Stop feeding clients that overflowed; their endpoints close them with 4008."""
        slow = [s for s in self.subscribers if s.overflowed.is_set()]
        for sub in slow:
            self.unregister(sub)

    async def _heartbeats(self) -> None:
        while True:
            await asyncio.sleep(self.heartbeat_s)
            frame = Frame(FrameKind.HEARTBEAT, self.head, heartbeat_text(self.head))
            for sub in self.subscribers:
                sub.offer(frame)
            self._drop_overflowed()


async def replay(
    pool: AsyncConnectionPool[AsyncConnection[Any]],
    since: int,
    head: int,
    flt: AlertFilter,
    lang: Lang | None = None,
) -> AsyncIterator[Event]:
    """Events ``since < seq <= head`` matching ``flt``, in seq order, a page at a time
    (their messages in ``lang``; None: as stored)."""
    conds: list[sql.Composable] = [sql.SQL("seq > %(after)s AND seq <= %(head)s")]
    params: dict[str, Any] = {"head": head}
    for column, values in (
        ("severity", flt.severities),
        ("kind", flt.kinds),
        ("area", flt.areas),
    ):
        if values:
            conds.append(  # a pre-filter: an incident's own filter is flt.matches below
                sql.SQL("(snapshot->>{} = ANY({}) OR incident_id IS NOT NULL)").format(
                    sql.Literal(column), sql.Placeholder(column)
                )
            )
            params[column] = sorted(values)
    query = sql.SQL("SELECT {} FROM alert_events WHERE {} ORDER BY seq LIMIT {}").format(
        sql.SQL(_EVENT_COLUMNS), sql.SQL(" AND ").join(conds), sql.Literal(PAGE)
    )
    after = since
    while after < head:
        async with pool.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
            await cur.execute(query, {**params, "after": after})
            rows = await cur.fetchall()
            names = await sensor_names(conn, _sensors(rows)) if lang and rows else {}
        if not rows:
            return
        for row in rows:
            after = int(row["seq"])
            ev = encode_row(row, lang, names)
            if ev is not None and flt.matches(ev):
                REPLAYED_EVENTS.inc()
                yield ev
        if len(rows) < PAGE:
            return


def _sensors(rows: list[dict[str, Any]]) -> set[str]:
    return {str(r["snapshot"].get("sensor", "")) for r in rows if isinstance(r["snapshot"], dict)}
