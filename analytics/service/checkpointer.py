"""Checkpoints of one partition: restore every state at start, write them periodically in the background."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

import psycopg

from analytics.engine.pipeline import Pipeline
from analytics.service import checkpoint
from analytics.service.store import iso_time

logger = logging.getLogger(__name__)


class Checkpointer:
    """Names states ``analytics/<i>of<n>/<name>``; one background write at a time."""

    def __init__(self, dsn: str, index: int, count: int, on_written: Callable[[], None]) -> None:
        self.dsn = dsn
        self.prefix = f"analytics/{index}of{count}/"
        self.on_written = on_written
        self._saver: threading.Thread | None = None

    def name(self, name: str) -> str:
        return self.prefix + name

    def restore(
        self, conn: psycopg.Connection[Any], pipeline: Pipeline, label: str
    ) -> dict[str, Any] | None:
        """Restore the pipeline's states; the lifecycle's state, or None without a checkpoint."""
        names = [*pipeline.get_states(), "lifecycle"]
        found = checkpoint.load(conn, [self.name(n) for n in names])
        if not found:
            logger.info("no checkpoint for partition %s: starting cold", label)
            return None
        states = {n: found[self.name(n)] for n in names if self.name(n) in found}
        pipeline.set_states(states)
        logger.info(
            "restored checkpoint (%d states), event time %s",
            len(states),
            iso_time(pipeline.watermark),
        )
        lifecycle_state: dict[str, Any] = states.get("lifecycle", {})
        return lifecycle_state

    def write(self, states: dict[str, Any], background: bool = True) -> None:
        """Encode the states now; write them in a thread (skipped while the last one runs)."""
        if self._saver is not None and self._saver.is_alive():
            return  # the previous one is still being written
        rows = []
        for name, state in states.items():
            try:
                rows.append((self.name(name), checkpoint.encode_state(state)))
            except checkpoint.StateCodecError as exc:
                logger.warning("state %s is not checkpointed: %s", name, exc)
        if background:
            self._saver = threading.Thread(target=self._save, args=(rows,), daemon=True)
            self._saver.start()
        else:
            self._save(rows)

    def join(self, timeout: float) -> None:
        if self._saver is not None:
            self._saver.join(timeout=timeout)

    def _save(self, rows: list[tuple[str, bytes]]) -> None:
        try:
            with psycopg.connect(self.dsn, autocommit=True, connect_timeout=5) as conn:
                checkpoint.save_encoded(conn, rows)
            self.on_written()
            logger.debug("checkpoint written: %d bytes", sum(len(b) for _, b in rows))
        except psycopg.Error as exc:
            logger.warning("checkpoint failed: %s", exc)
