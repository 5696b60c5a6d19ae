"""The ingestor: start-up (migrations, maintenance, registry), MQTT consumer, writer, shutdown."""

from __future__ import annotations

import logging
import queue
import threading
import time

import psycopg

from core.db import migrate
from ingest.config import IngestSettings
from ingest.inbound import Inbound
from ingest.metrics import IngestMetrics
from ingest.mqtt import Consumer
from ingest.registry import Registry
from ingest.writer import AckSequencer, Batcher, Writer

logger = logging.getLogger(__name__)


class Ingestor:
    """MQTT -> PostgreSQL.  ``start()`` returns at once; ``stop()`` flushes, commits, acks, leaves.

    Threads: paho's network thread decodes and enqueues; ``ingest_writers`` writer
    threads batch, commit and acknowledge (the first also does start-up and housekeeping).
    """

    def __init__(self, settings: IngestSettings) -> None:
        self.settings = settings
        self.metrics = IngestMetrics()
        self.registry = Registry()
        self.inbox: queue.SimpleQueue[Inbound] = queue.SimpleQueue()
        self.consumer = Consumer(settings, self.inbox, self.metrics)
        batcher = Batcher(settings, self.inbox, self.registry)
        sequencer = AckSequencer(self.consumer)
        self.writers = [
            Writer(
                settings,
                self.inbox,
                self.consumer,
                self.metrics,
                self.registry,
                batcher=batcher,
                sequencer=sequencer,
                index=i,
            )
            for i in range(settings.ingest_writers)
        ]
        self.writer = self.writers[0]  # also does start-up and housekeeping
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.failed = False

    def start(self) -> None:
        self.metrics.serve(self.settings.ingest_metrics_host, self.settings.ingest_metrics_port)
        self._thread = threading.Thread(target=self._main, name="ioc-ingest-writer", daemon=True)
        self._thread.start()

    def wait_ready(self, timeout: float) -> bool:
        """True once the database is prepared and the subscriptions are in place."""
        return self.consumer.subscribed.wait(timeout)

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def stop(self, timeout: float | None = None, *, leave: bool = False) -> None:
        """Stop taking messages, commit and acknowledge what was taken, disconnect.

        ``leave`` (scaling in): first unsubscribe and keep storing until the broker has
        nothing more for us, then end the session, so no readings wait for an instance
        that is not coming back.  If something is still unacknowledged the session is kept.
        """
        drained = leave and self._drain()
        self._stop.set()
        self.consumer.stop_accepting()
        if self._thread is not None:
            self._thread.join(timeout)
        end_session = drained and self.consumer.pending == 0
        self.consumer.close(end_session=end_session)
        self.metrics.close()
        logger.info("ingestor stopped%s", "; session ended" if end_session else "")

    def _drain(self, quiet_s: float = 2.0) -> bool:
        if not self.consumer.subscribed.is_set() or not self.alive:
            logger.warning("not subscribed: keeping the session, nothing to hand back")
            return False
        self.consumer.leave_group()
        deadline = time.monotonic() + max(30.0, 4 * self.settings.ingest_shutdown_timeout_s)
        while time.monotonic() < deadline:
            quiet = time.monotonic() - self.consumer.last_message >= quiet_s
            if quiet and self.consumer.pending == 0:
                logger.info("unsubscribed and drained")
                return True
            time.sleep(0.1)
        logger.warning("could not drain in time: keeping the session so nothing is lost")
        return False

    def _main(self) -> None:
        others: list[threading.Thread] = []
        try:
            if not self._prepare_database():
                return
            self.consumer.start()
            for w in self.writers[1:]:
                t = threading.Thread(
                    target=self._run_writer, args=(w,), name=f"ioc-ingest-writer-{w.index}"
                )
                t.start()
                others.append(t)
            self._run_writer(self.writer)
        finally:
            for t in others:
                t.join()

    def _run_writer(self, writer: Writer) -> None:
        try:
            writer.run(self._stop)
        except Exception:
            self.failed = True
            self._stop.set()
            logger.exception("writer %d failed", writer.index)

    def _prepare_database(self) -> bool:
        """Migrate, maintain, load the registry; wait (with backoff) for the database."""
        delay = 0.5
        announced = False
        while not self._stop.is_set():
            try:
                if self.settings.ingest_migrate:
                    done = migrate(self.settings.dsn)
                    if done:
                        logger.info("applied migrations %s", ", ".join(done))
                self.writer.run_maintenance()
                self.writer.refresh_registry()
                logger.info("database ready; %d sensors registered", len(self.registry))
                return True
            except psycopg.Error as exc:
                if not announced:
                    logger.warning("database not ready (%s); retrying", str(exc).strip())
                    announced = True
                self._stop.wait(delay)
                delay = min(delay * 2, self.settings.ingest_reconnect_max_s)
        return False
