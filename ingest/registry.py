"""The in-memory sensor registry: which sensors exist, so readings can be checked without SQL.

The cache is filled from ``sensors`` at start-up and every ``registry_refresh_s``;
retained ``.../meta`` messages and auto-registrations add to it once their batch
has committed.  A sensor missing from the cache is looked up in the database
(inside the batch's transaction) before its readings are rejected, so a sensor
registered through the API a moment ago is seen at once.
"""

from __future__ import annotations

import logging
import threading

logger = logging.getLogger(__name__)


class Registry:
    """Sensor id -> kind; thread-safe."""

    def __init__(self) -> None:
        self._known: dict[str, str] = {}
        # sensors whose valid meta has been taken into a batch that may not have committed
        # yet: with several writers, a later batch holding their first readings must not
        # dead-letter them (the meta's batch is retried until it commits)
        self._pending: dict[str, str] = {}
        self._lock = threading.Lock()

    def __contains__(self, sensor: object) -> bool:
        return sensor in self._known or sensor in self._pending

    def provisional(self, sensor: str, kind: str) -> None:
        """A meta for ``sensor`` is on its way to the database, in arrival order."""
        with self._lock:
            self._pending[sensor] = kind

    def __len__(self) -> int:
        return len(self._known)

    def kind(self, sensor: str) -> str | None:
        return self._known.get(sensor) or self._pending.get(sensor)

    def replace(self, known: dict[str, str]) -> None:
        with self._lock:
            self._known = dict(known)

    def update(self, known: dict[str, str]) -> None:
        if known:
            with self._lock:
                self._known.update(known)
                for sensor in known:
                    self._pending.pop(sensor, None)
