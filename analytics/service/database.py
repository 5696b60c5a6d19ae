"""The analytics service's database connection: waits for it at start, reconnects with backoff after a failure."""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import psycopg

logger = logging.getLogger(__name__)


class Database:
    """One autocommit connection; ``get()`` returns it or None while the database is away."""

    def __init__(
        self,
        dsn: str,
        stopping: threading.Event,
        on_reconnect: Callable[[psycopg.Connection[Any]], None],
    ) -> None:
        self.dsn = dsn
        self.stopping = stopping
        self.on_reconnect = on_reconnect
        self.conn: psycopg.Connection[Any] | None = None
        self._retry_at = 0.0
        self._backoff = 0.5

    def connect(self, wait: bool) -> psycopg.Connection[Any]:
        delay = 0.5
        while True:
            try:
                conn = psycopg.connect(self.dsn, autocommit=True, connect_timeout=5)
                self.conn = conn
                return conn
            except psycopg.OperationalError as exc:
                if not wait or self.stopping.is_set():
                    raise
                logger.warning("database unavailable (%s); retrying in %.1f s", exc, delay)
                time.sleep(delay)
                delay = min(delay * 2, 30.0)

    def get(self) -> psycopg.Connection[Any] | None:
        """The connection, reconnecting (with backoff) after a failure."""
        if self.conn is not None and not self.conn.closed and not self.conn.broken:
            return self.conn
        if time.monotonic() < self._retry_at:
            return None
        try:
            conn = self.connect(wait=False)
        except psycopg.OperationalError as exc:
            self._retry_at = time.monotonic() + self._backoff
            self._backoff = min(self._backoff * 2, 30.0)
            logger.warning("database still unavailable: %s", exc)
            return None
        self._backoff = 0.5
        self.on_reconnect(conn)
        logger.info("database connection restored")
        return conn

    def failed(self, exc: Exception) -> None:
        """Drop the connection after an error; the next ``get()`` after the backoff reconnects."""
        logger.warning("database error: %s", exc)
        if self.conn is not None:
            with contextlib.suppress(psycopg.Error):
                self.conn.close()
        self.conn = None
        self._retry_at = time.monotonic() + self._backoff

    def is_open(self) -> bool:
        return self.conn is not None and not self.conn.closed

    def close(self) -> None:
        if self.conn is not None and not self.conn.closed:
            self.conn.close()
