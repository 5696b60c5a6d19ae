"""The writer threads: batches of decoded messages, each committed whole, then acknowledged.

A ``Batcher`` cuts the incoming messages into batches, in arrival order: a batch
closes when it holds ``ingest_batch_rows`` readings or ``ingest_batch_messages``
messages, or when its oldest message has waited ``ingest_batch_interval_ms``.
``ingest_writers`` writer threads, each with its own connection, take batches in
turn, so one COPYs while the next batch is gathered and the database can use more
than one core.  An ``AckSequencer`` sends the acknowledgements in arrival order
(as MQTT asks) whatever order the batches commit in.

A batch is retried until it commits: while the database is away nothing is
acknowledged, the broker stops sending once ``ReceiveMaximum`` messages are
unacknowledged, and the backlog waits on the broker.  A batch the database refuses
for its content (never seen so far: the decoders check everything) is split until
the offending message is found, and that message is kept as a ``db_rejected``
dead letter.
"""

from __future__ import annotations

import logging
import queue
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

import psycopg

from core.codecs import payload_error
from core.columnar import PG_EPOCH_S
from core.db import maintain
from core.types import Sensor
from ingest import memory
from ingest.config import IngestSettings, UnknownSensors
from ingest.inbound import BAD, Inbound, dead_letter_of
from ingest.metrics import IngestMetrics
from ingest.registry import Registry
from ingest.rows import SeriesTable
from ingest.store import (
    Conn,
    ReadingsWriter,
    Work,
    insert_auto,
    load_sensors,
    store_dead_letters,
    store_statuses,
    update_last_seen,
    upsert_metas,
)

logger = logging.getLogger(__name__)

_REJECTED = ("db_rejected", "internal_error")
_ROLLED_BACK = (
    psycopg.errors.DeadlockDetected,
    psycopg.errors.SerializationFailure,
    psycopg.errors.TransactionRollback,
)


class Acker(Protocol):
    def ack(self, msgs: list[Inbound]) -> None: ...

    def forget(self, msgs: list[Inbound]) -> None: ...


class Batcher:
    """Cuts the inbox into batches in arrival order, numbered; one writer gathers at a time."""

    def __init__(
        self,
        settings: IngestSettings,
        inbox: queue.SimpleQueue[Inbound],
        registry: Registry | None = None,
    ) -> None:
        self.settings = settings
        self.inbox = inbox
        self.registry = registry
        self._lock = threading.Lock()
        self._seq = 0

    def take_seq(self) -> int:
        with self._lock:
            self._seq += 1
            return self._seq

    def collect(self, stopping: bool) -> tuple[int, list[Inbound]]:
        """The next batch and its number; ``(0, [])`` when nothing came for a moment."""
        with self._lock:
            msgs = self._gather(stopping)
            if not msgs:
                return 0, []
            if self.registry is not None:  # in arrival order, before any later batch is cut
                for m in msgs:
                    if m.meta is not None and m.error is None:
                        self.registry.provisional(m.sensor, m.meta.kind.value)
            self._seq += 1
            return self._seq, msgs

    def _gather(self, stopping: bool) -> list[Inbound]:
        try:
            first = self.inbox.get(timeout=0.05 if stopping else 0.2)
        except queue.Empty:
            return []
        s = self.settings
        msgs = [first]
        rows = first.rows
        max_rows, max_msgs = s.ingest_batch_rows, s.ingest_batch_messages
        deadline = first.received + s.batch_interval_s
        get = self.inbox.get_nowait
        while True:
            try:  # drain what is there without waking up per message
                while rows < max_rows and len(msgs) < max_msgs:
                    m = get()
                    msgs.append(m)
                    rows += m.rows
            except queue.Empty:
                pass
            if rows >= max_rows or len(msgs) >= max_msgs or stopping:
                return msgs
            remaining = deadline - time.time()
            if remaining <= 0:
                return msgs
            time.sleep(min(remaining, 0.01))


class AckSequencer:
    """Acknowledges batches in the order they were cut, whatever order they committed in."""

    def __init__(self, acker: Acker) -> None:
        self.acker = acker
        self._lock = threading.Lock()
        self._next = 1
        self._done: dict[int, tuple[list[Inbound], list[Inbound]]] = {}

    def done(self, seq: int, acked: list[Inbound], forgotten: list[Inbound]) -> None:
        with self._lock:
            self._done[seq] = (acked, forgotten)
            while self._next in self._done:
                ok, gone = self._done.pop(self._next)
                self._next += 1
                if ok:
                    self.acker.ack(ok)
                if gone:
                    self.acker.forget(gone)


@dataclass(slots=True)
class _Prepared:
    work: Work
    registered: dict[str, str] = field(default_factory=dict)
    oldest: float = 0.0
    newest_us: int | None = None
    last_seen: dict[str, int] = field(default_factory=dict)  # sensor -> newest reading (PG us)


class Writer:
    """Batches, writes, retries and acknowledges; run ``run()`` in its own thread."""

    def __init__(
        self,
        settings: IngestSettings,
        inbox: queue.SimpleQueue[Inbound],
        acker: Acker,
        metrics: IngestMetrics,
        registry: Registry,
        *,
        batcher: Batcher | None = None,
        sequencer: AckSequencer | None = None,
        index: int = 0,
        connect: Callable[[], Conn] | None = None,
    ) -> None:
        self.settings = settings
        self.inbox = inbox
        self.acker = acker
        self.batcher = batcher or Batcher(settings, inbox, registry)
        self.sequencer = sequencer or AckSequencer(acker)
        self.index = index  # writer 0 also does the housekeeping
        self.metrics = metrics
        self.registry = registry
        self.series = SeriesTable()
        self.readings = ReadingsWriter()
        self._connect = connect or (lambda: connect_db(settings.dsn))
        self._db: Conn | None = None
        self._last_seen: dict[str, int] = {}
        self._last_seen_due = 0.0
        self._refresh_due = time.monotonic() + settings.ingest_registry_refresh_s
        self._maintain_due = time.monotonic() + settings.ingest_maintain_interval_s
        self._release_at = 0.0  # when to give the heap back after an oversized message
        self._down_since: float | None = None
        self._stop: threading.Event | None = None
        self._stopping = threading.Event()
        self._give_up_at = float("inf")
        self.batches = 0

    # -- the loop --------------------------------------------------------------

    def run(self, stop: threading.Event) -> None:
        """Until ``stop`` is set and everything received is committed (or the deadline passed)."""
        self._stop = stop
        try:
            while True:
                stopping = self.stopping()
                seq, msgs = self.batcher.collect(stopping)
                if msgs:
                    self.commit(msgs, seq)
                elif stopping:
                    break
                self.housekeeping()
        finally:
            self.close()

    def stopping(self) -> bool:
        """True once a stop was asked for; starts the shutdown deadline the first time."""
        if self._stop is not None and self._stop.is_set() and not self._stopping.is_set():
            self._stopping.set()
            self._give_up_at = time.monotonic() + self.settings.ingest_shutdown_timeout_s
        return self._stopping.is_set()

    def collect(self) -> list[Inbound]:
        """One batch (for tests: ``run`` numbers them for the sequencer itself)."""
        return self.batcher._gather(self.stopping())

    def commit(self, msgs: list[Inbound], seq: int | None = None) -> bool:
        """Store a batch, retrying as long as it takes, and have it acknowledged in turn.

        True when everything was stored; False when shutdown came first (what was not
        stored stays unacknowledged).
        """
        acked: list[Inbound] = []
        forgotten: list[Inbound] = []
        self._store(msgs, acked, forgotten)
        self.sequencer.done(self.batcher.take_seq() if seq is None else seq, acked, forgotten)
        return not forgotten

    def _store(self, msgs: list[Inbound], acked: list[Inbound], forgotten: list[Inbound]) -> None:
        delay = 0.1
        while True:
            try:
                self._write(msgs)
                if self._down_since is not None:
                    logger.info("database back after %.1f s", time.monotonic() - self._down_since)
                    self._down_since = None
                self.metrics.db_up.set(1)
                acked += msgs
                return
            except (psycopg.DataError, psycopg.IntegrityError) as exc:
                content: BaseException | None = exc
            except _ROLLED_BACK as exc:  # a deadlock or serialization failure: just again
                self.metrics.db_errors.labels(type(exc).__name__).inc()
                logger.info("batch rolled back (%s); retrying", type(exc).__name__)
                time.sleep(random.uniform(0.01, 0.1))  # out of step with the other writer
                continue
            except psycopg.Error as exc:
                content = None
                self._failed(exc, msgs)
            except Exception as exc:  # a bug; never let it stop the writer
                logger.exception("unexpected error writing a batch")
                content = exc
            if content is not None:
                self.metrics.db_errors.labels(type(content).__name__).inc()
                if len(msgs) > 1:
                    half = len(msgs) // 2
                    logger.warning(
                        "a batch of %d messages failed (%s); splitting it to find the culprit",
                        len(msgs),
                        content,
                    )
                    self._store(msgs[:half], acked, forgotten)
                    self._store(msgs[half:], acked, forgotten)
                    return
                msg = msgs[0]
                if msg.error is None or msg.error.reason not in _REJECTED:
                    self._reject(msg, content)
                    continue  # now the message is a dead letter: write that
                self._failed(content, msgs)
            if self.stopping() and time.monotonic() >= self._give_up_at:
                logger.warning(
                    "shutting down with %d message(s) not stored; they stay unacknowledged and"
                    " the broker delivers them again",
                    len(msgs),
                )
                forgotten += msgs
                return
            self.metrics.db_retries.inc()
            if self.stopping():
                delay = min(delay, max(0.05, self._give_up_at - time.monotonic()))
            time.sleep(delay)
            delay = min(delay * 2, self.settings.ingest_reconnect_max_s)

    def _failed(self, exc: BaseException, msgs: list[Inbound]) -> None:
        self._drop_connection()
        self.metrics.db_up.set(0)
        if isinstance(exc, psycopg.Error):
            self.metrics.db_errors.labels(type(exc).__name__).inc()
        if self._down_since is None:
            self._down_since = time.monotonic()
            level = (
                logging.WARNING
                if isinstance(exc, psycopg.OperationalError | psycopg.InterfaceError)
                else logging.ERROR
            )
            logger.log(
                level,
                "database write failed (%s: %s); holding %d message(s) unacknowledged"
                " and retrying with backoff",
                type(exc).__name__,
                str(exc).strip(),
                len(msgs),
            )

    def _reject(self, msg: Inbound, exc: BaseException) -> None:
        psql = isinstance(exc, psycopg.Error)
        logger.error(
            "%s the message on %r: %s",
            "the database refused" if psql else "could not store",
            msg.topic,
            exc,
        )
        msg.error = (
            payload_error("db_rejected", "payload.db_rejected", error=str(exc).strip())
            if psql
            else payload_error("internal_error", "payload.internal_error", error=repr(exc))
        )
        msg.channel = BAD
        msg.cols = None
        msg.meta = None
        msg.status = None
        msg.rejections = []

    # -- one transaction -----------------------------------------------------------

    def _write(self, msgs: list[Inbound]) -> None:
        conn = self._conn()
        t0 = time.monotonic()
        flush_last_seen = t0 >= self._last_seen_due
        with conn.transaction():
            prep = self._prepare(conn, msgs)
            work = prep.work
            if flush_last_seen:
                work.last_seen = dict(self._last_seen)
                for sensor, us in prep.last_seen.items():
                    if work.last_seen.get(sensor, -1) < us:
                        work.last_seen[sensor] = us
            upsert_metas(conn, work.metas)
            insert_auto(conn, work.auto)
            changed = store_statuses(conn, work.statuses)
            out = self.readings.write(
                conn, work.rows, self.series, sort=self.settings.ingest_sort_rows
            )
            store_dead_letters(conn, work.dead, self.settings.ingest_dead_letter_max_bytes)
            if flush_last_seen:
                update_last_seen(conn, work.last_seen)
        # committed
        if any(len(d.payload) >= memory.BIG for d in work.dead):
            self._release_at = time.monotonic() + 0.5  # once the batch's buffers are gone
        now = time.time()
        self.batches += 1
        if flush_last_seen:
            self._last_seen.clear()
            self._last_seen_due = t0 + self.settings.ingest_last_seen_interval_s
        else:
            for sensor, us in prep.last_seen.items():
                if self._last_seen.get(sensor, -1) < us:
                    self._last_seen[sensor] = us
        self.registry.update(prep.registered)
        m = self.metrics
        m.commit_seconds.observe(time.monotonic() - t0)
        m.batch_rows.observe(len(work.rows))
        m.batch_messages.observe(len(msgs))
        m.readings.inc(out.inserted)
        if out.duplicates:
            m.duplicates.inc(out.duplicates)
        m.statuses.inc(changed)
        if work.metas:
            m.sensors_registered.labels("meta").inc(len(work.metas))
        if work.auto:
            m.sensors_registered.labels("auto").inc(len(work.auto))
        for d in work.dead:
            m.dead_letters.inc()
            if d.counted:
                for reason in d.counted:
                    m.rejections.labels(reason).inc()
            if d.code == "unknown_sensor" or not d.counted:
                m.rejections.labels(d.code).inc()
        m.delay_seconds.observe(max(0.0, now - prep.oldest))
        if prep.newest_us is not None:
            m.lag_seconds.set(max(0.0, now - (prep.newest_us / 1e6 + PG_EPOCH_S)))
        m.queue_depth.set(self.inbox.qsize())

    def _prepare(self, conn: Conn, msgs: list[Inbound]) -> _Prepared:
        """Sort a batch into what to write; asks the database about sensors the cache lacks."""
        work = Work()
        prep = _Prepared(work, oldest=msgs[0].received)
        registered = prep.registered
        metas: dict[str, Sensor] = {}
        reg = self.registry
        for m in msgs:
            if m.error is not None:
                continue
            if m.meta is not None:
                metas[m.sensor] = m.meta
                registered[m.sensor] = m.meta.kind.value
            elif m.status is not None:
                status, t = m.status
                work.statuses.append((m.sensor, datetime.fromtimestamp(t, UTC), status.value))
        work.metas = [metas[k] for k in sorted(metas)]
        work.statuses.sort()
        # (a message without a single good reading is dead-lettered for its entries instead)
        unknown = {
            m.sensor
            for m in msgs
            if m.cols is not None
            and m.cols.us
            and m.error is None
            and m.sensor not in reg
            and m.sensor not in registered
        }
        if unknown:
            found = load_sensors(conn, unknown)
            registered.update(found)
            unknown -= found.keys()
        if unknown and self.settings.ingest_unknown_sensors is UnknownSensors.REGISTER:
            seen: dict[str, tuple[str, set[str]]] = {}
            for m in msgs:
                if m.sensor in unknown and m.cols is not None and m.cols.us and m.kind:
                    seen.setdefault(m.sensor, (m.kind.value, set()))[1].update(m.cols.metrics)
            work.auto = [(s, k, sorted(ms)) for s, (k, ms) in sorted(seen.items())]
            registered.update({s: k for s, (k, _) in seen.items()})
            unknown = set()
        rows = work.rows
        newest: dict[str, int] = {}
        series = self.series
        for m in msgs:
            cols = m.cols
            if cols is not None and m.error is None:
                if cols.us and m.sensor in unknown:
                    dl = dead_letter_of(m, unknown_sensor=True)
                    if dl is not None:
                        work.dead.append(dl)
                    continue
                if cols.us:
                    rows.add(cols.us, cols.values, series.ids(m.sensor, cols.metrics))
                    top = max(cols.us)
                    if newest.get(m.sensor, -1) < top:
                        newest[m.sensor] = top
            dl = dead_letter_of(m)
            if dl is not None:
                work.dead.append(dl)
        prep.newest_us = max(newest.values()) if newest else None
        prep.last_seen = newest
        return prep

    # -- housekeeping ----------------------------------------------------------------

    def housekeeping(self) -> None:
        """Registry refresh and partition maintenance when they are due (errors: try later)."""
        now = time.monotonic()
        self.metrics.queue_depth.set(self.inbox.qsize())
        self.series.trim()
        if self._release_at and now >= self._release_at:
            self._release_at = 0.0
            memory.release()
        if self.index != 0:
            return
        if now >= self._refresh_due:
            self._refresh_due = now + self.settings.ingest_registry_refresh_s
            try:
                self.refresh_registry()
            except psycopg.Error as exc:
                self._drop_connection()
                logger.warning("registry refresh failed (%s); trying again later", exc)
        if now >= self._maintain_due:
            try:
                self.run_maintenance()
                self._maintain_due = now + self.settings.ingest_maintain_interval_s
            except psycopg.Error as exc:
                self._drop_connection()
                self._maintain_due = now + 60.0
                logger.warning("maintenance failed (%s); trying again in a minute", exc)

    def refresh_registry(self) -> None:
        conn = self._conn()
        with conn.transaction():
            known = load_sensors(conn)
        self.registry.replace(known)

    def run_maintenance(self) -> None:
        s = self.settings
        conn = self._conn()
        try:
            with conn.transaction():
                result = maintain(
                    conn,
                    back_days=s.max_age_days,
                    ahead_days=s.ingest_partitions_ahead_days,
                    retention_days=s.retention_days,
                    dead_letter_retention_days=s.ingest_dead_letter_retention_days,
                )
        except psycopg.Error:
            self.metrics.maintenance_runs.labels("failed").inc()
            raise
        self.metrics.maintenance_runs.labels("ok").inc()
        logger.info("maintenance: %s", result)

    # -- connection --------------------------------------------------------------------

    def _conn(self) -> Conn:
        if self._db is None or self._db.closed or self._db.broken:
            self._drop_connection()
            self._db = self._connect()
        return self._db

    def _drop_connection(self) -> None:
        if self._db is not None:
            try:
                self._db.close()
            except Exception:
                logger.debug("closing a broken connection failed", exc_info=True)
            self._db = None

    def close(self) -> None:
        self._drop_connection()


def connect_db(dsn: str, **kwargs: Any) -> Conn:
    """A connection for the ingestor: keepalives so a vanished server is noticed quickly."""
    return psycopg.connect(
        dsn,
        connect_timeout=5,
        keepalives=1,
        keepalives_idle=10,
        keepalives_interval=5,
        keepalives_count=3,
        application_name="ioc-ingest",
        **kwargs,
    )
