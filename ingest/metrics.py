"""Prometheus metrics of one ingestor, on a registry of its own (several can share a process)."""

from __future__ import annotations

import logging
import threading
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

logger = logging.getLogger(__name__)

_LATENCY_BUCKETS = (0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
_SIZE_BUCKETS = (1, 10, 50, 100, 500, 1_000, 2_500, 5_000, 10_000, 20_000, 50_000, 100_000)


class IngestMetrics:
    """Counters, gauges and histograms named ``ioc_ingest_*``."""

    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        self.messages = Counter(
            "ioc_ingest_messages", "MQTT messages received", ["channel"], registry=r
        )
        self.readings = Counter(
            "ioc_ingest_readings_stored", "readings stored (new rows in readings)", registry=r
        )
        self.duplicates = Counter(
            "ioc_ingest_duplicates", "readings already stored (redeliveries, repeats)", registry=r
        )
        self.rejections = Counter(
            "ioc_ingest_rejections",
            "rejected messages and entries by reason code",
            ["reason"],
            registry=r,
        )
        self.dead_letters = Counter(
            "ioc_ingest_dead_letters", "rows written to dead_letters", registry=r
        )
        self.sensors_registered = Counter(
            "ioc_ingest_sensors_registered", "sensors upserted", ["source"], registry=r
        )
        self.statuses = Counter(
            "ioc_ingest_status_changes", "online/offline changes stored", registry=r
        )
        self.commit_seconds = Histogram(
            "ioc_ingest_batch_commit_seconds",
            "time to write and commit one batch",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.batch_rows = Histogram(
            "ioc_ingest_batch_rows", "readings per batch", buckets=_SIZE_BUCKETS, registry=r
        )
        self.batch_messages = Histogram(
            "ioc_ingest_batch_messages", "messages per batch", buckets=_SIZE_BUCKETS, registry=r
        )
        self.delay_seconds = Histogram(
            "ioc_ingest_commit_delay_seconds",
            "from receiving a batch's oldest message to its commit",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.lag_seconds = Gauge(
            "ioc_ingest_lag_seconds",
            "consumer lag: commit time minus the newest reading time of the last batch",
            registry=r,
        )
        self.queue_depth = Gauge(
            "ioc_ingest_queue_depth", "messages received and not yet committed", registry=r
        )
        self.db_errors = Counter(
            "ioc_ingest_db_errors", "database errors by kind", ["kind"], registry=r
        )
        self.db_retries = Counter(
            "ioc_ingest_db_retries", "batch write attempts that were retried", registry=r
        )
        self.db_up = Gauge("ioc_ingest_db_up", "1 while the database answers", registry=r)
        self.mqtt_connected = Gauge(
            "ioc_ingest_mqtt_connected", "1 while connected to the broker", registry=r
        )
        self.mqtt_connects = Counter(
            "ioc_ingest_mqtt_connects", "successful broker connections", registry=r
        )
        self.acks_dropped = Counter(
            "ioc_ingest_acks_skipped",
            "acknowledgements not sent because the connection changed (the broker redelivers)",
            registry=r,
        )
        self.callback_errors = Counter(
            "ioc_ingest_callback_errors", "exceptions caught in MQTT callbacks", registry=r
        )
        self.maintenance_runs = Counter(
            "ioc_ingest_maintenance", "partition/retention maintenance runs", ["result"], registry=r
        )
        self._server: Any = None
        self._thread: threading.Thread | None = None

    def value(self, name: str, labels: dict[str, str] | None = None) -> float:
        """A sample's current value (0 when absent); for tests, benchmarks and logs."""
        v = self.registry.get_sample_value(name, labels or {})
        return float(v) if v is not None else 0.0

    def serve(self, host: str, port: int) -> None:
        """Serve /metrics; port 0 means no server."""
        if port == 0:
            return
        self._server, self._thread = start_http_server(port, addr=host, registry=self.registry)
        logger.info("metrics on http://%s:%d/metrics", host, port)

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
