"""The live analytics service: its own MQTT subscription, micro-batches, the stage pipeline, alerts, checkpoints.

Threads: paho's network thread decodes each message and enqueues it (nothing
else); one worker thread drains the queue when the oldest message has waited
``IOC_ANALYTICS_BATCH_MS`` (or the queue holds ``IOC_ANALYTICS_BATCH_MAX``
readings), runs the pipeline, applies the signals to the alert lifecycle in one
transaction and writes derived readings (``outbox``); about
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
from analytics.config import AnalyticsSettings
from analytics.engine.base import Context
from analytics.engine.pipeline import Pipeline
from analytics.service.batcher import Batcher, Msg, to_batch
from analytics.service.checkpointer import Checkpointer
from analytics.service.database import Database
from analytics.service.metrics import ServiceMetrics
from analytics.service.mqtt import Receiver, make_client
from analytics.service.outbox import Outbox, replay_into
from analytics.service.registry import load_registry
from analytics.service.store import (
    corroborated_since,
    iso_time,
    replay_stored,
)
from analytics.stages.registry import build_pipeline, health_stage
from core.db import migrate

logger = logging.getLogger(__name__)

# what ``counts`` holds (the offline evaluation and the tests read them)
COUNTS = (
    "messages",
    "readings",
    "dropped",
    "undecodable",
    "callback_errors",
    "signals",
    "changes",
    "batches",
    "derived",
    "checkpoints",
    "replayed",
    "db_errors",
)


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
        self.counts: dict[str, int] = dict.fromkeys(COUNTS, 0)
        self._stopping = threading.Event()
        self.batcher = Batcher(
            batch_ms=settings.analytics_batch_ms,
            batch_max=settings.analytics_batch_max,
            queue_max=settings.analytics_queue_max,
            stopping=self._stopping,
        )
        self.receiver = Receiver(
            settings, self.batcher, self.counts, self.metrics, self._stopping, wall
        )
        self.connected = self.receiver.connected
        self._status: dict[str, str] = {}
        self.db = Database(settings.dsn, self._stopping, self._reconnected)
        self.lifecycle: Lifecycle | None = None
        self.outbox = Outbox(
            self.db, self.pipeline.clock.now, self.counts, self.metrics, self._db_failed
        )
        self._client: mqtt.Client | None = None
        self._worker: threading.Thread | None = None
        self.checkpoints = Checkpointer(
            settings.dsn, self.partition.index, self.partition.count, self._checkpoint_written
        )
        self._http: Any = None
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
            self.settings,
            self.receiver.on_connect,
            self.receiver.on_disconnect,
            self.receiver.on_message,
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
            kinds=self.receiver.kinds.get,
            owns=self.partition.owns,
            update_throttle_s=s.analytics_update_throttle_s,
            resolve_after_s=s.analytics_resolve_after_s,
            cooldown_s=s.analytics_cooldown_s,
            stale_resolve_s=s.analytics_stale_resolve_s,
        )
        self.outbox.lifecycle = self.lifecycle
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
            since, learn_only = max(self.pipeline.watermark, now - s.analytics_replay_max_s), False
        elif s.analytics_warmup_s > 0:
            since, learn_only = now - s.analytics_warmup_s, True
        else:
            return
        started = time.monotonic()
        results = replay_stored(conn, self.pipeline, self.partition.owns, since, now + 300)
        self.counts["replayed"] = n = replay_into(results, None if learn_only else self.outbox)
        logger.info(
            "%s %d stored readings since %s in %.1f s",
            "learned from" if learn_only else "replayed",
            n,
            iso_time(since),
            time.monotonic() - started,
        )

    # -- feeding without MQTT (offline evaluation, tests) ---------------------------

    def feed(self, topic: str, payload: bytes, now: float | None = None) -> None:
        """Decode one message as ``on_message`` does (``now``: the time of arrival)."""
        self.receiver.decode(topic, payload, now)

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
        self.outbox.send(res)
        if any(m.status is not None or m.invalid for m in items):
            self._tick()  # status changes surface through the health stage's tick
        self.metrics.batch.observe(time.perf_counter() - started)
        self.metrics.queue.set(self.batcher.queued)

    def _tick(self) -> None:
        now = self.pipeline.clock.now()
        self.outbox.send(self.pipeline.tick(now))
        self.outbox.tick_lifecycle(now)

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
