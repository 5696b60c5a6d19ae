"""Prometheus metrics of one analytics service instance (its own registry: several may share a process)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class ServiceMetrics:
    """The counters, gauges and histogram ``ioc analytics`` exports on its metrics port."""

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
