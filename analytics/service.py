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

import contextlib
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np
import paho.mqtt.client as mqtt
import psycopg
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

from analytics import checkpoint
from analytics.base import Batch, Context, Signal
from analytics.config import AnalyticsSettings
from analytics.lifecycle import Change, Lifecycle
from analytics.pipeline import Pipeline, build_pipeline
from analytics.spatial import Upgrade
from core.codecs import decode_meta, decode_readings, decode_status
from core.db import migrate
from core.errors import IocError
from core.metrics import METRICS
from core.topics import ALL_DATA, ALL_META, ALL_STATUS, Channel, alert_topic, parse_sensor_topic
from core.types import DeviceStatus, Reading, Sensor, SensorKind

logger = logging.getLogger(__name__)

MAX_PENDING_SIGNALS = 200_000
INVALID_REASONS = frozenset({"out_of_range", "not_finite"})


@dataclass(slots=True)
class _Msg:
    arrived: float  # monotonic
    sensor: str
    readings: list[Reading] = field(default_factory=list)
    meta: Sensor | None = None
    status: tuple[DeviceStatus, float] | None = None
    invalid: list[tuple[str, float]] = field(default_factory=list)


class _Metrics:
    """Prometheus metrics of one service instance (own registry: several may share a process)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.messages = Counter("ioc_analytics_messages", "MQTT messages", ["channel"], registry=r)
        self.readings = Counter("ioc_analytics_readings", "readings processed", registry=r)
        self.dropped = Counter("ioc_analytics_dropped", "duplicate or late readings", registry=r)
        self.undecodable = Counter("ioc_analytics_undecodable", "messages ignored", registry=r)
        self.signals = Counter("ioc_analytics_signals", "signals from the stages", registry=r)
        self.changes = Counter(
            "ioc_analytics_alert_changes", "alert changes", ["action"], registry=r
        )
        self.db_errors = Counter("ioc_analytics_db_errors", "database errors", registry=r)
        self.batch = Histogram(
            "ioc_analytics_batch_seconds",
            "micro-batch processing time",
            buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
            registry=r,
        )
        self.queue = Gauge("ioc_analytics_queue_readings", "readings waiting", registry=r)
        self.lag = Gauge("ioc_analytics_lag_seconds", "now - newest reading time", registry=r)


def load_registry(conn: psycopg.Connection[Any]) -> tuple[dict[str, Sensor], dict[str, str]]:
    """The sensors table as ``Sensor`` models, and each sensor's last announced status."""
    sensors: dict[str, Sensor] = {}
    status: dict[str, str] = {}
    rows = conn.execute(
        "SELECT id, kind, name, lat, lon, area, metrics, interval_s, attributes, status"
        " FROM sensors"
    ).fetchall()
    for sid, kind, name, lat, lon, area, metrics, interval_s, attributes, st in rows:
        try:
            sensors[sid] = Sensor(
                id=sid,
                kind=SensorKind(kind),
                name=name or "",
                lat=lat,
                lon=lon,
                area=area or "",
                metrics=tuple(metrics or ()),
                interval_s=interval_s,
                attributes=attributes or {},
            )
        except ValueError as exc:
            logger.warning("sensor %s in the registry is unusable: %s", sid, exc)
            continue
        status[sid] = st
    return sensors, status


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
        self.metrics = _Metrics()
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
        self._queue: deque[_Msg] = deque()
        self._queued = 0
        self._cv = threading.Condition()
        self._stopping = threading.Event()
        self._kinds: dict[str, SensorKind] = {}
        self._status: dict[str, str] = {}
        self._pending_signals: list[Signal] = []
        self._pending_upgrades: list[Upgrade] = []
        self._pending_derived: list[Reading] = []
        self._conn: psycopg.Connection[Any] | None = None
        self._retry_at = 0.0
        self._backoff = 0.5
        self.lifecycle: Lifecycle | None = None
        self._client: mqtt.Client | None = None
        self._worker: threading.Thread | None = None
        self._saver: threading.Thread | None = None
        self._http: Any = None
        self.connected = threading.Event()
        self.ready = threading.Event()

    # -- names -------------------------------------------------------------------------

    def _state_name(self, name: str) -> str:
        p = self.partition
        return f"analytics/{p.index}of{p.count}/{name}"

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
        self._client = self._mqtt()
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
        conn = self._connect_db(wait=True)
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
        restored = self._restore(conn)
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
        with self._cv:
            self._cv.notify_all()
        if self._worker is not None:
            self._worker.join(timeout=60)
        if self._saver is not None:
            self._saver.join(timeout=60)
        if self._conn is not None and not self._conn.closed:
            try:
                self._checkpoint(background=False)
            except psycopg.Error as exc:
                logger.warning("final checkpoint failed: %s", exc)
            self._conn.close()
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

    def _connect_db(self, wait: bool) -> psycopg.Connection[Any]:
        delay = 0.5
        while True:
            try:
                conn = psycopg.connect(self.settings.dsn, autocommit=True, connect_timeout=5)
                self._conn = conn
                return conn
            except psycopg.OperationalError as exc:
                if not wait or self._stopping.is_set():
                    raise
                logger.warning("database unavailable (%s); retrying in %.1f s", exc, delay)
                time.sleep(delay)
                delay = min(delay * 2, 30.0)

    def _db(self) -> psycopg.Connection[Any] | None:
        """The connection, reconnecting (with backoff) after a failure."""
        if self._conn is not None and not self._conn.closed and not self._conn.broken:
            return self._conn
        if time.monotonic() < self._retry_at:
            return None
        try:
            conn = self._connect_db(wait=False)
        except psycopg.OperationalError as exc:
            self._retry_at = time.monotonic() + self._backoff
            self._backoff = min(self._backoff * 2, 30.0)
            logger.warning("database still unavailable: %s", exc)
            return None
        self._backoff = 0.5
        assert self.lifecycle is not None
        self.lifecycle.conn = conn
        self.lifecycle.load(self.pipeline.clock.now())
        logger.info("database connection restored")
        return conn

    def _db_failed(self, exc: Exception) -> None:
        self.counts["db_errors"] += 1
        self.metrics.db_errors.inc()
        logger.warning("database error: %s", exc)
        if self._conn is not None:
            with contextlib.suppress(psycopg.Error):
                self._conn.close()
        self._conn = None
        self._retry_at = time.monotonic() + self._backoff

    def _refresh_registry(self) -> None:
        conn = self._db()
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
        health = self.pipeline.health
        now = self.pipeline.clock.now()
        for sid, st in status.items():
            if st != self._status.get(sid) and st in ("online", "offline"):
                self._status[sid] = st
                if health is not None and self.partition.owns(sid):
                    health.on_status(sid, st, now)

    # -- checkpoints and replay ----------------------------------------------------------

    def _restore(self, conn: psycopg.Connection[Any]) -> dict[str, Any] | None:
        names = [*self.pipeline.get_states(), "lifecycle"]
        found = checkpoint.load(conn, [self._state_name(n) for n in names])
        if not found:
            logger.info("no checkpoint for partition %s: starting cold", self.partition.label)
            return None
        states = {n: found[self._state_name(n)] for n in names if self._state_name(n) in found}
        self.pipeline.set_states(states)
        logger.info(
            "restored checkpoint (%d states), event time %s",
            len(states),
            _iso(self.pipeline.watermark),
        )
        lifecycle_state: dict[str, Any] = states.get("lifecycle", {})
        return lifecycle_state

    def _checkpoint(self, background: bool = True) -> None:
        if self._saver is not None and self._saver.is_alive():
            return  # the previous one is still being written
        states = self.pipeline.get_states()
        if self.lifecycle is not None:
            states["lifecycle"] = self.lifecycle.get_state()
        rows = []
        for name, state in states.items():
            try:
                rows.append((self._state_name(name), checkpoint.encode_state(state)))
            except checkpoint.StateCodecError as exc:
                logger.warning("state %s is not checkpointed: %s", name, exc)
        if background:
            self._saver = threading.Thread(target=self._save, args=(rows,), daemon=True)
            self._saver.start()
        else:
            self._save(rows)

    def _save(self, rows: list[tuple[str, bytes]]) -> None:
        try:
            with psycopg.connect(self.settings.dsn, autocommit=True, connect_timeout=5) as conn:
                checkpoint.save_encoded(conn, rows)
            self.counts["checkpoints"] += 1
            logger.debug("checkpoint written: %d bytes", sum(len(b) for _, b in rows))
        except psycopg.Error as exc:
            logger.warning("checkpoint failed: %s", exc)

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
        with conn.transaction(), conn.cursor(name="ioc_analytics_replay") as cur:
            cur.itersize = 50_000
            cur.execute(
                "SELECT extract(epoch FROM time)::float8, sensor, metric, value FROM readings"
                " WHERE time > %s AND time <= %s ORDER BY time",
                (_dt(since), _dt(now + 300)),
            )
            while rows := cur.fetchmany(50_000):
                sensors, metrics, times, values = [], [], [], []
                for t, sensor, metric, value in rows:
                    m = METRICS.get(metric)
                    if m is None or m.derived or not self.partition.owns(sensor):
                        continue
                    sensors.append(sensor)
                    metrics.append(metric)
                    times.append(t)
                    values.append(value)
                if not sensors:
                    continue
                batch = Batch(sensors, metrics, np.array(times), np.array(values))
                res = self.pipeline.process(batch)
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
            _iso(since),
            time.monotonic() - started,
        )

    # -- MQTT -----------------------------------------------------------------------------

    def _mqtt(self) -> mqtt.Client:
        s = self.settings
        addr = s.mqtt
        v5 = s.analytics_mqtt_protocol == "5"
        if v5:
            client = mqtt.Client(
                CallbackAPIVersion.VERSION2,
                client_id=s.client_id,
                protocol=MQTTProtocolVersion.MQTTv5,
            )
        else:
            client = mqtt.Client(
                CallbackAPIVersion.VERSION2,
                client_id=s.client_id,
                clean_session=False,
                protocol=MQTTProtocolVersion.MQTTv311,
            )
        if addr.username:
            client.username_pw_set(addr.username, addr.password)
        if addr.tls:
            client.tls_set()
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        client.reconnect_delay_set(1, 30)
        client.max_queued_messages_set(0)
        props = None
        if v5:
            props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
            props.SessionExpiryInterval = s.analytics_session_expiry_s
            props.ReceiveMaximum = 65535
            client.connect_async(
                addr.host, addr.port, keepalive=30, clean_start=False, properties=props
            )
        else:
            client.connect_async(addr.host, addr.port, keepalive=30)
        client.loop_start()
        return client

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
        try:
            st = parse_sensor_topic(topic)
        except IocError:
            self._undecodable()
            return
        self.metrics.messages.labels(st.channel.value).inc()
        arrived = time.monotonic()
        if st.channel is Channel.META:
            try:
                meta = decode_meta(st.kind, st.sensor, payload)
            except IocError:
                self._undecodable()
                return
            if meta is not None:
                self._put(_Msg(arrived, st.sensor, meta=meta), 0)
            return
        if not self.partition.owns(st.sensor):
            return
        self._kinds[st.sensor] = st.kind
        if st.channel is Channel.STATUS:
            try:
                status = decode_status(payload, now=now)
            except IocError:
                self._undecodable()
                return
            self._put(_Msg(arrived, st.sensor, status=status), 0)
            return
        try:
            decoded = decode_readings(st.sensor, payload, now=now, limits=self.settings.limits)
        except IocError:
            self._undecodable()
            return
        invalid = []
        for rej in decoded.rejections:
            if rej.reason in INVALID_REASONS:
                invalid.append((rej.detail.split(" ", 1)[0], now or self.wall()))
        if decoded.readings or invalid:
            self._put(
                _Msg(arrived, st.sensor, decoded.readings, invalid=invalid), len(decoded.readings)
            )

    def _undecodable(self) -> None:
        self.counts["undecodable"] += 1
        self.metrics.undecodable.inc()

    def _put(self, item: _Msg, n: int) -> None:
        with self._cv:
            warned = False
            while self._queued >= self.settings.analytics_queue_max and not self._stopping.is_set():
                if not warned:
                    logger.warning(
                        "analytics queue full (%d readings): slowing the feed", self._queued
                    )
                    warned = True
                self._cv.wait(1.0)
            self._queue.append(item)
            self._queued += n
            if len(self._queue) == 1 or self._queued >= self.settings.analytics_batch_max:
                self._cv.notify_all()

    # -- feeding without MQTT (offline evaluation, tests) ---------------------------

    def feed(self, topic: str, payload: bytes, now: float | None = None) -> None:
        """Decode one message as ``on_message`` does (``now``: the time of arrival)."""
        self._decode(topic, payload, now)

    def drain(self) -> None:
        """Process everything fed so far as one micro-batch, in the caller's thread."""
        with self._cv:
            items = list(self._queue)
            self._queue.clear()
            self._queued = 0
        if items:
            self._handle(items)

    def tick(self) -> None:
        """The once-a-second work: time-driven checks and the lifecycle's timers."""
        self._tick()

    def close(self) -> None:
        """End an offline run: close the database connection."""
        if self._conn is not None and not self._conn.closed:
            self._conn.close()

    # -- the worker -------------------------------------------------------------------

    def _take(self, timeout: float) -> list[_Msg]:
        linger = self.settings.analytics_batch_ms / 1000.0
        limit = self.settings.analytics_batch_max
        with self._cv:
            if not self._queue:
                self._cv.wait(timeout)
            if not self._queue:
                return []
            deadline = self._queue[0].arrived + linger
            while self._queued < limit and not self._stopping.is_set():
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._cv.wait(left)
            items = []
            taken = 0
            while self._queue and taken < limit:
                item = self._queue.popleft()
                taken += len(item.readings)
                items.append(item)
            self._queued -= taken
            self._cv.notify_all()
            return items

    def _run(self) -> None:
        s = self.settings
        next_tick = time.monotonic() + 1.0
        next_refresh = time.monotonic() + s.analytics_registry_refresh_s
        next_ckpt = time.monotonic() + s.analytics_checkpoint_s
        next_peers = time.monotonic() + 5.0
        while True:
            try:
                items = self._take(max(0.0, min(next_tick - time.monotonic(), 1.0)))
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
                with self._cv:
                    if self._queue:
                        continue
                self._tick()
                return

    def _handle(self, items: list[_Msg]) -> None:
        started = time.perf_counter()
        metas = [m.meta for m in items if m.meta is not None]
        if metas:
            self.ctx.sensors = {**self.ctx.sensors, **{m.id: m for m in metas}}
        health = self.pipeline.health
        sensors: list[str] = []
        metrics: list[str] = []
        times: list[float] = []
        values: list[float] = []
        for m in items:
            if m.status is not None:
                self._status[m.sensor] = m.status[0].value
                if health is not None:
                    health.on_status(m.sensor, m.status[0], m.status[1])
            if health is not None:
                for metric, t in m.invalid:
                    health.on_invalid(m.sensor, metric, t)
            for r in m.readings:
                sensors.append(r.sensor)
                metrics.append(r.metric)
                times.append(r.time.timestamp())
                values.append(r.value)
        batch = Batch(sensors, metrics, np.array(times, dtype=np.float64), np.array(values))
        res = self.pipeline.process(batch)
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
        self.metrics.queue.set(self._queued)

    def _tick(self) -> None:
        now = self.pipeline.clock.now()
        res = self.pipeline.tick(now)
        self._pending_signals.extend(res.signals)
        self._pending_upgrades.extend(res.upgrades)
        self._apply_signals()
        self._write_derived(res.derived)
        if self.lifecycle is None or self._db() is None:
            return
        try:
            self._publish(self.lifecycle.tick(now))
        except psycopg.OperationalError as exc:
            self._db_failed(exc)

    def _observe_peers(self) -> None:
        """Anomalies the other partitions raised recently, for spatial corroboration."""
        conn = self._db()
        if conn is None:
            return
        since = self.pipeline.clock.now() - self.settings.analytics_spatial_window_s
        try:
            rows = conn.execute(
                "SELECT sensor, metric, extract(epoch FROM updated_at)::float8 FROM alerts"
                " WHERE alert_class IN ('incident', 'probable_fault') AND updated_at > %s"
                " AND evidence ? 'corroboration'",
                (_dt(since),),
            ).fetchall()
        except psycopg.OperationalError as exc:
            self._db_failed(exc)
            return
        for sensor, metric, t in rows:
            if not self.partition.owns(sensor):
                self.pipeline.corroborator.observe(sensor, metric, t)

    def _sync_lifecycle(self) -> None:
        if self.lifecycle is None or self._db() is None:
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
        if self.lifecycle is None or self._db() is None:
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
        if not self.settings.analytics_publish_alerts or self._client is None:
            return
        for ch in changes:
            topic = alert_topic(ch.alert["severity"], ch.alert["kind"])
            self._client.publish(topic, ch.to_json(), qos=1)
            self.counts["published"] += 1

    def _write_derived(self, rows: list[Reading]) -> None:
        self._pending_derived.extend(rows)
        if not self._pending_derived:
            return
        conn = self._db()
        if conn is None:
            del self._pending_derived[: max(0, len(self._pending_derived) - 100_000)]
            return
        rows = self._pending_derived
        try:
            _insert_readings(conn, rows)
        except psycopg.OperationalError as exc:
            self._db_failed(exc)
            return
        except psycopg.Error:
            logger.exception("derived readings could not be stored; %d dropped", len(rows))
        else:
            self.counts["derived"] += len(rows)
        self._pending_derived = []


def _insert_readings(conn: psycopg.Connection[Any], rows: list[Reading]) -> None:
    sql = (
        "INSERT INTO readings (time, sensor, metric, value) VALUES (%s, %s, %s, %s)"
        " ON CONFLICT DO NOTHING"
    )
    try:
        with conn.transaction(), conn.cursor() as cur:
            cur.executemany(sql, rows)
    except psycopg.errors.CheckViolation:  # no partition for a row: create them, once
        lo = min(r.time for r in rows)
        hi = max(r.time for r in rows)
        conn.execute("SELECT ioc_ensure_partitions(%s, %s)", (lo, hi))
        with conn.transaction(), conn.cursor() as cur:
            cur.executemany(sql, rows)


def _dt(t: float) -> datetime:
    return datetime.fromtimestamp(t, UTC)


def _iso(t: float) -> str:
    return _dt(t).isoformat() if np.isfinite(t) else "never"
