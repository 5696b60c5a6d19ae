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
        self._lock = threading.Lock()

    def __contains__(self, sensor: object) -> bool:
        return sensor in self._known

    def __len__(self) -> int:
        return len(self._known)

    def kind(self, sensor: str) -> str | None:
        return self._known.get(sensor)

    def replace(self, known: dict[str, str]) -> None:
        with self._lock:
            self._known = dict(known)

    def update(self, known: dict[str, str]) -> None:
        if known:
            with self._lock:
                self._known.update(known)
