"""Sending the outbox: one row at a time under its row lock, retries with backoff, dead rows.

A worker takes the oldest due ``pending`` row with ``FOR UPDATE SKIP LOCKED`` and keeps
the lock while it sends, so dispatchers in several processes never send the same row
at once.  Success marks it ``sent``; a failure sets ``next_attempt_at`` to
``now + backoff * 2^(attempts-1)`` (capped, with jitter) or, after ``max_attempts`` or a
permanent refusal, ``dead`` with the reason.  A crash mid-send rolls the transaction
back and the row is sent again later, under the same idempotency key.  A per-channel
token bucket spaces sends; a row that must wait is pushed back without counting an attempt.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import orjson
import psycopg
from psycopg.rows import dict_row

from notify.channels import DeliveryError, send_apprise, send_webhook

logger = logging.getLogger(__name__)


@dataclass(slots=True)
class Bucket:
    rate_per_s: float
    tokens: float
    at: float = field(default_factory=time.monotonic)

    def take(self) -> float:
        """0 if a send may go now, else the seconds to wait."""
        now = time.monotonic()
        cap = max(1.0, self.rate_per_s * 10)  # bursts of up to 10 s worth
        self.tokens = min(cap, self.tokens + (now - self.at) * self.rate_per_s)
        self.at = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return 0.0
        return (1.0 - self.tokens) / self.rate_per_s


class RateLimits:
    """A token bucket per target (channel), shared by the workers of one process."""

    def __init__(self, rates: dict[str, float], default_per_minute: float = 60.0) -> None:
        self.rates = rates  # route name -> per minute
        self.default = default_per_minute
        self._buckets: dict[str, Bucket] = {}
        self._lock = threading.Lock()

    def wait_for(self, target: str, route: str) -> float:
        per_s = self.rates.get(route, self.default) / 60.0
        with self._lock:
            b = self._buckets.get(target)
            if b is None:
                b = self._buckets[target] = Bucket(per_s, tokens=max(1.0, per_s * 10))
            b.rate_per_s = per_s
            return b.take()


class Dispatcher:
    def __init__(
        self,
        *,
        secret: str,
        max_attempts: int = 8,
        backoff_s: float = 2.0,
        backoff_max_s: float = 600.0,
        timeout_s: float = 10.0,
        limits: RateLimits | None = None,
    ) -> None:
        self.secret = secret
        self.max_attempts = max_attempts
        self.backoff_s = backoff_s
        self.backoff_max_s = backoff_max_s
        self.timeout_s = timeout_s
        self.limits = limits or RateLimits({})
        self.counts = {"sent": 0, "failed": 0, "dead": 0, "limited": 0}
        self._lock = threading.Lock()

    def _count(self, name: str) -> None:
        with self._lock:
            self.counts[name] += 1

    def step(self, conn: psycopg.Connection[Any]) -> bool:
        """Send one due notification; False when none is due."""
        with conn.transaction(), conn.cursor(row_factory=dict_row) as cur:
            cur.execute(
                "SELECT id, idempotency_key, route, target, channel, body, attempts"
                " FROM notifications WHERE status = 'pending' AND next_attempt_at <= now()"
                " ORDER BY next_attempt_at, id LIMIT 1 FOR UPDATE SKIP LOCKED"
            )
            row = cur.fetchone()
            if row is None:
                return False
            wait = self.limits.wait_for(row["target"], row["route"])
            if wait > 0:
                self._count("limited")
                cur.execute(
                    "UPDATE notifications SET next_attempt_at = now() + make_interval(secs => %s)"
                    " WHERE id = %s",
                    (wait, row["id"]),
                )
                return True
            attempts = row["attempts"] + 1
            try:
                self._send(row)
            except DeliveryError as exc:
                self._failed(cur, row, attempts, exc)
            except Exception as exc:  # a channel library's own failure must not stall the row
                logger.warning("notification %s: %s", row["id"], type(exc).__name__)
                self._failed(cur, row, attempts, DeliveryError(type(exc).__name__))
            else:
                cur.execute(
                    "UPDATE notifications SET status = 'sent', attempts = %s, sent_at = now(),"
                    " last_error = NULL WHERE id = %s",
                    (attempts, row["id"]),
                )
                self._count("sent")
        return True

    def _send(self, row: dict[str, Any]) -> None:
        target: str = row["target"]
        body: str = row["body"]
        if target.startswith("webhook+"):
            send_webhook(
                target.removeprefix("webhook+"),
                body.encode(),
                secret=self.secret,
                key=row["idempotency_key"],
                event=str(orjson.loads(body).get("event", "")),
                timeout=self.timeout_s,
            )
        else:
            doc = orjson.loads(body)
            send_apprise(target, doc.get("title", ""), doc.get("text", ""), timeout=self.timeout_s)

    def _failed(
        self, cur: psycopg.Cursor[Any], row: dict[str, Any], attempts: int, exc: DeliveryError
    ) -> None:
        if exc.permanent or attempts >= self.max_attempts:
            reason = f"{exc.reason} (attempt {attempts} of {self.max_attempts})"
            cur.execute(
                "UPDATE notifications SET status = 'dead', attempts = %s, last_error = %s"
                " WHERE id = %s",
                (attempts, reason, row["id"]),
            )
            self._count("dead")
            logger.warning("notification %s to %s is dead: %s", row["id"], row["channel"], reason)
            return
        delay = min(self.backoff_max_s, self.backoff_s * 2 ** (attempts - 1))
        delay *= random.uniform(0.8, 1.2)
        cur.execute(
            "UPDATE notifications SET attempts = %s, last_error = %s,"
            " next_attempt_at = now() + make_interval(secs => %s) WHERE id = %s",
            (attempts, exc.reason, delay, row["id"]),
        )
        self._count("failed")
        logger.info(
            "notification %s to %s failed (%s); retry in %.1f s",
            row["id"], row["channel"], exc.reason, delay,
        )  # fmt: skip
