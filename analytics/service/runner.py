"""The live analytics service: its own MQTT subscription, micro-batches, the stage pipeline, alerts, checkpoints.

Threads: paho's network thread decodes each message and enqueues it (nothing
else); one worker thread drains the queue when the oldest message has waited
``IOC_ANALYTICS_BATCH_MS`` (or the queue holds ``IOC_ANALYTICS_BATCH_MAX``
readings), runs the pipeline, applies the signals to the alert lifecycle in one
transaction, publishes the committed changes and writes derived readings; about
once a second it runs the time-driven checks and the lifecycle's timers.  A
checkpoint of every stage's state goes to ``analytics_state`` periodically (the
database write in a background thread) and on shutdown; a restart replays the
readings stored since the checkpoint from the database, so a crash loses nothing
that ingest stored.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import paho.mqtt.client as mqtt
import psycopg
from prometheus_client import start_http_server

from analytics.alerts.lifecycle import Lifecycle
from analytics.alerts.records import Change
from analytics.alerts.spatial import Upgrade
from analytics.config import AnalyticsSettings
from analytics.engine.base import Context, Signal
from analytics.engine.pipeline import Pipeline
from analytics.service.batcher import Batcher, Msg, decode_message, to_batch
from analytics.service.checkpointer import Checkpointer
from analytics.service.database import Database
from analytics.service.metrics import ServiceMetrics
from analytics.service.mqtt import make_client
from analytics.service.registry import load_registry
from analytics.service.store import (
    corroborated_since,
    iso_time,
    replay_stored,
)
from analytics.stages.registry import build_pipeline, health_stage
from core.db import insert_readings, migrate
from core.topics import ALL_DATA, ALL_META, ALL_STATUS
from core.types import Reading, SensorKind

logger = logging.getLogger(__name__)

MAX_PENDING_SIGNALS = 200_000


class AnalyticsService:
    """``ioc analytics``: start(), then stop() (or run() until a stop event)."""

    def __init__(
        self,
        settings: AnalyticsSettings,
        *,
        pipeline: Pipeline | None = None,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.partition = settings.partition
        self.wall = wall
        self.pipeline = pipeline or build_pipeline(settings, Context())
        self.ctx = self.pipeline.ctx
        self.metrics = ServiceMetrics()
        self.counts: dict[str, int] = {
            "messages": 0,
            "readings": 0,
            "dropped": 0,
            "undecodable": 0,
            "callback_errors": 0,
            "signals": 0,
            "changes": 0,
            "published": 0,
            "batches": 0,
            "derived": 0,
            "checkpoints": 0,
            "replayed": 0,
            "db_errors": 0,
        }
        self._stopping = threading.Event()
        self.batcher = Batcher(
            batch_ms=settings.analytics_batch_ms,
            batch_max=settings.analytics_batch_max,
            queue_max=settings.analytics_queue_max,
            stopping=self._stopping,
        )
        self._kinds: dict[str, SensorKind] = {}
        self._status: dict[str, str] = {}
        self._pending_signals: list[Signal] = []
        self._pending_upgrades: list[Upgrade] = []
        self._pending_derived: list[Reading] = []
        self.db = Database(settings.dsn, self._stopping, self._reconnected)
        self.lifecycle: Lifecycle | None = None
        self._client: mqtt.Client | None = None
        self._worker: threading.Thread | None = None
        self.checkpoints = Checkpointer(
            settings.dsn, self.partition.index, self.partition.count, self._checkpoint_written
        )
        self._http: Any = None
        self.connected = threading.Event()
        self.ready = threading.Event()

    # -- start and stop ----------------------------------------------------------------

    def start(self) -> None:
        """Connect, restore, replay, subscribe, and start the worker."""
        s = self.settings
        if s.analytics_metrics_port:
            try:
                self._http = start_http_server(
                    s.analytics_metrics_port, registry=self.metrics.registry
                )
            except OSError as exc:
                logger.warning("metrics port %d: %s", s.analytics_metrics_port, exc)
        self.prepare()
        self._client = make_client(
            self.settings, self._on_connect, self._on_disconnect, self._on_message
        )
        self._worker = threading.Thread(target=self._run, name="analytics-worker", daemon=True)
        self._worker.start()
        self.ready.set()
        logger.info(
            "analytics %s started: stages %s",
            self.partition.label,
            ", ".join(st.name for st in self.pipeline.stages),
        )

    def prepare(self) -> None:
        """Everything but MQTT: database, registry, lifecycle, checkpoint, replay of history."""
        s = self.settings
        conn = self.db.connect(wait=True)
        migrate(conn)
        conn.autocommit = True
        self._refresh_registry()
        self.lifecycle = Lifecycle(
            conn,
            sensors=lambda sid: self.ctx.sensors.get(sid),
            kinds=self._kinds.get,
            owns=self.partition.owns,
            update_throttle_s=s.analytics_update_throttle_s,
            resolve_after_s=s.analytics_resolve_after_s,
            cooldown_s=s.analytics_cooldown_s,
            stale_resolve_s=s.analytics_stale_resolve_s,
        )
        restored = self.checkpoints.restore(conn, self.pipeline, self.partition.label)
        self.lifecycle.load(self.pipeline.clock.now())
        if restored is not None:
            self.lifecycle.set_state(restored)
        self._replay_history(conn, restored is not None)

    def stop(self) -> None:
        """Drain the queue, write a checkpoint, disconnect."""
        self._stopping.set()
        if self._client is not None:
            self._client.disconnect()
            self._client.loop_stop()
        self.batcher.wake()
        if self._worker is not None:
            self._worker.join(timeout=60)
        self.checkpoints.join(timeout=60)
        if self.db.is_open():
            try:
                self._checkpoint(background=False)
            except psycopg.Error as exc:
                logger.warning("final checkpoint failed: %s", exc)
            self.db.close()
        if self._http is not None:
            server, thread = self._http
            server.shutdown()
            thread.join(5)
        logger.info("analytics %s stopped", self.partition.label)

    def run(self, stop: threading.Event) -> None:
        self.start()
        try:
            while not stop.wait(0.5):
                if self._worker is not None and not self._worker.is_alive():
                    raise RuntimeError("the analytics worker died")
        finally:
            self.stop()

    # -- database ------------------------------------------------------------------------

    def _reconnected(self, conn: psycopg.Connection[Any]) -> None:
        assert self.lifecycle is not None
        self.lifecycle.conn = conn
        self.lifecycle.load(self.pipeline.clock.now())

    def _db_failed(self, exc: Exception) -> None:
        self.counts["db_errors"] += 1
        self.metrics.db_errors.inc()
        self.db.failed(exc)

    def _refresh_registry(self) -> None:
        conn = self.db.get()
        if conn is None:
            return
        try:
            sensors, status = load_registry(conn)
        except psycopg.OperationalError as exc:
            self._db_failed(exc)
            return
        merged = {**self.ctx.sensors, **sensors}
        if merged != self.ctx.sensors:
            self.ctx.sensors = merged
        health = health_stage(self.pipeline)
        now = self.pipeline.clock.now()
        for sid, st in status.items():
            if st != self._status.get(sid) and st in ("online", "offline"):
                self._status[sid] = st
                if health is not None and self.partition.owns(sid):
                    health.on_status(sid, st, now)

    # -- checkpoints and replay ----------------------------------------------------------

    def _checkpoint(self, background: bool = True) -> None:
        states = self.pipeline.get_states()
        if self.lifecycle is not None:
            states["lifecycle"] = self.lifecycle.get_state()
        self.checkpoints.write(states, background)

    def _checkpoint_written(self) -> None:
        self.counts["checkpoints"] += 1

    def _replay_history(self, conn: psycopg.Connection[Any], restored: bool) -> None:
        """Replay readings stored since the checkpoint (alerts on), or warm up (learn only)."""
        s = self.settings
        now = self.wall()
        if restored and np.isfinite(self.pipeline.watermark):
            since = max(self.pipeline.watermark, now - s.analytics_replay_max_s)
            learn_only = False
        elif s.analytics_warmup_s > 0:
            since = now - s.analytics_warmup_s
            learn_only = True
        else:
            return
        n = 0
        started = time.monotonic()
        for res in replay_stored(conn, self.pipeline, self.partition.owns, since, now + 300):
            n += res.readings
            if not learn_only:
                self._pending_signals.extend(res.signals)
                self._pending_upgrades.extend(res.upgrades)
        self.counts["replayed"] = n
        if not learn_only:
            self._apply_signals()
        logger.info(
            "%s %d stored readings since %s in %.1f s",
            "learned from" if learn_only else "replayed",
            n,
            iso_time(since),
            time.monotonic() - started,
        )

    # -- MQTT -----------------------------------------------------------------------------

    def _on_connect(
        self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, props: Any
    ) -> None:
        try:
            if reason.is_failure:
                logger.warning("MQTT connection refused: %s", reason)
                return
            client.subscribe([(ALL_DATA, 1), (ALL_META, 1), (ALL_STATUS, 1)])
            self.connected.set()
            logger.info("MQTT connected (session present: %s)", flags.session_present)
        except Exception:
            self.counts["callback_errors"] += 1
            logger.exception("on_connect failed")

    def _on_disconnect(
        self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, props: Any
    ) -> None:
        self.connected.clear()
        if not self._stopping.is_set():
            logger.warning("MQTT disconnected (%s); reconnecting", reason)

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        try:
            self._decode(msg.topic, bytes(msg.payload))
        except Exception:  # nothing may escape a paho callback
            self.counts["callback_errors"] += 1
            logger.exception("on_message failed for %s", msg.topic)

    def _decode(self, topic: str, payload: bytes, now: float | None = None) -> None:
        self.counts["messages"] += 1
        d = decode_message(
            topic,
            payload,
            owns=self.partition.owns,
            limits=self.settings.limits,
            now=now,
            wall=self.wall,
        )
        if d.channel is not None:
            self.metrics.messages.labels(d.channel.value).inc()
        if d.kind is not None:
            self._kinds[d.sensor] = d.kind
        if d.undecodable:
            self._undecodable()
        elif d.msg is not None:
            self.batcher.put(d.msg)

    def _undecodable(self) -> None:
        self.counts["undecodable"] += 1
        self.metrics.undecodable.inc()

    # -- feeding without MQTT (offline evaluation, tests) ---------------------------

    def feed(self, topic: str, payload: bytes, now: float | None = None) -> None:
        """Decode one message as ``on_message`` does (``now``: the time of arrival)."""
        self._decode(topic, payload, now)

    def drain(self) -> None:
        """Process everything fed so far as one micro-batch, in the caller's thread."""
        items = self.batcher.take_all()
        if items:
            self._handle(items)

    def tick(self) -> None:
        """The once-a-second work: time-driven checks and the lifecycle's timers."""
        self._tick()

    def close(self) -> None:
        """End an offline run: close the database connection."""
        self.db.close()

    # -- the worker -------------------------------------------------------------------

    def _run(self) -> None:
        s = self.settings
        next_tick = time.monotonic() + 1.0
        next_refresh = time.monotonic() + s.analytics_registry_refresh_s
        next_ckpt = time.monotonic() + s.analytics_checkpoint_s
        next_peers = time.monotonic() + 5.0
        while True:
            try:
                items = self.batcher.take(max(0.0, min(next_tick - time.monotonic(), 1.0)))
                if items:
                    self._handle(items)
                mono = time.monotonic()
                if mono >= next_tick:
                    next_tick = mono + 1.0
                    self._tick()
                if mono >= next_refresh:
                    next_refresh = mono + s.analytics_registry_refresh_s
                    self._refresh_registry()
                    self._sync_lifecycle()
                if mono >= next_ckpt:
                    next_ckpt = mono + s.analytics_checkpoint_s
                    self._checkpoint()
                if self.partition.count > 1 and mono >= next_peers:
                    next_peers = mono + 5.0
                    self._observe_peers()
            except Exception:  # keep running: one bad batch must not stop the city's alerts
                logger.exception("analytics worker: unexpected error")
                time.sleep(0.5)
            if self._stopping.is_set():
                if len(self.batcher):
                    continue
                self._tick()
                return

    def _handle(self, items: list[Msg]) -> None:
        started = time.perf_counter()
        metas = [m.meta for m in items if m.meta is not None]
        if metas:
            self.ctx.sensors = {**self.ctx.sensors, **{m.id: m for m in metas}}
        health = health_stage(self.pipeline)
        for m in items:
            if m.status is not None:
                self._status[m.sensor] = m.status[0].value
                if health is not None:
                    health.on_status(m.sensor, m.status[0], m.status[1])
            if health is not None:
                for metric, t in m.invalid:
                    health.on_invalid(m.sensor, metric, t)
        res = self.pipeline.process(to_batch(items))
        self.counts["readings"] += res.readings
        self.counts["dropped"] += res.dropped
        self.counts["batches"] += 1
        self.metrics.readings.inc(res.readings)
        self.metrics.dropped.inc(res.dropped)
        if res.readings:
            self.metrics.lag.set(self.wall() - self.pipeline.watermark)
        self._pending_signals.extend(res.signals)
        self._pending_upgrades.extend(res.upgrades)
        self._apply_signals()
        self._write_derived(res.derived)
        if any(m.status is not None or m.invalid for m in items):
            self._tick()  # status changes surface through the health stage's tick
        self.metrics.batch.observe(time.perf_counter() - started)
        self.metrics.queue.set(self.batcher.queued)

    def _tick(self) -> None:
        now = self.pipeline.clock.now()
        res = self.pipeline.tick(now)
        self._pending_signals.extend(res.signals)
        self._pending_upgrades.extend(res.upgrades)
        self._apply_signals()
        self._write_derived(res.derived)
        if self.lifecycle is None or self.db.get() is None:
            return
        try:
            self._publish(self.lifecycle.tick(now))
        except psycopg.OperationalError as exc:
            self._db_failed(exc)

    def _observe_peers(self) -> None:
        """Anomalies the other partitions raised recently, for spatial corroboration."""
        conn = self.db.get()
        if conn is None:
            return
        since = self.pipeline.clock.now() - self.settings.analytics_spatial_window_s
        try:
            rows = corroborated_since(conn, since)
        except psycopg.OperationalError as exc:
            self._db_failed(exc)
            return
        for sensor, metric, t in rows:
            if not self.partition.owns(sensor):
                self.pipeline.corroborator.observe(sensor, metric, t)

    def _sync_lifecycle(self) -> None:
        if self.lifecycle is None or self.db.get() is None:
            return
        try:
            self.lifecycle.sync()
        except psycopg.OperationalError as exc:
            self._db_failed(exc)

    def _apply_signals(self) -> None:
        signals, upgrades = self._pending_signals, self._pending_upgrades
        if not signals and not upgrades:
            return
        if len(signals) > MAX_PENDING_SIGNALS:
            logger.warning(
                "dropping %d old signals while the database is away",
                len(signals) - MAX_PENDING_SIGNALS,
            )
            del signals[: len(signals) - MAX_PENDING_SIGNALS]
        if self.lifecycle is None or self.db.get() is None:
            return
        self.counts["signals"] += len(signals)
        self.metrics.signals.inc(len(signals))
        try:
            changes = self.lifecycle.apply(signals, upgrades, self.pipeline.clock.now())
        except psycopg.OperationalError as exc:
            self._db_failed(exc)  # keep the signals; the cache is reloaded on reconnect
            return
        except psycopg.Error:
            logger.exception("the lifecycle failed on %d signals; they are dropped", len(signals))
            self._pending_signals, self._pending_upgrades = [], []
            self.lifecycle.load(self.pipeline.clock.now())
            return
        self._pending_signals, self._pending_upgrades = [], []
        self._publish(changes)

    def _publish(self, changes: list[Change]) -> None:
        if not changes:
            return
        self.counts["changes"] += len(changes)
        for ch in changes:
            self.metrics.changes.labels(ch.action).inc()
        # MQTT ioc/v1/alerts/... is published from the committed alert_events log (notify.relay)

    def _write_derived(self, rows: list[Reading]) -> None:
        self._pending_derived.extend(rows)
        if not self._pending_derived:
            return
        conn = self.db.get()
        if conn is None:
            del self._pending_derived[: max(0, len(self._pending_derived) - 100_000)]
            return
        rows = self._pending_derived
        try:
            insert_readings(conn, rows)
        except psycopg.OperationalError as exc:
            self._db_failed(exc)
            return
        except psycopg.Error:
            logger.exception("derived readings could not be stored; %d dropped", len(rows))
        else:
            self.counts["derived"] += len(rows)
        self._pending_derived = []
