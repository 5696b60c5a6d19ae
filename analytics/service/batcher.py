"""Decoded messages waiting for the worker, and micro-batches taken by age or size.

paho's network thread decodes a message (``decode_message``) and ``put``s it;
the worker ``take``s a micro-batch once the oldest message has waited the batch
time or the queue holds a batch's worth of readings.  A full queue makes
``put`` wait, which slows the feed instead of growing memory.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from itertools import repeat

import numpy as np

from analytics.engine.base import Batch
from core.codecs import Limits, decode_meta, decode_status
from core.columnar import PG_EPOCH_S, Columns, decode_columns
from core.errors import IocError
from core.topics import Channel, parse_sensor_topic
from core.types import DeviceStatus, Sensor, SensorKind

logger = logging.getLogger(__name__)

INVALID_REASONS = frozenset({"out_of_range", "not_finite"})


@dataclass(slots=True)
class Msg:
    """One decoded message: readings, a self-registration or a device status."""

    arrived: float  # monotonic
    sensor: str
    cols: Columns | None = None  # readings; times in microseconds since 2000-01-01 UTC
    meta: Sensor | None = None
    status: tuple[DeviceStatus, float] | None = None
    invalid: list[tuple[str, float]] = field(default_factory=list)

    @property
    def count(self) -> int:
        return 0 if self.cols is None else len(self.cols.us)


@dataclass(slots=True)
class Decoded:
    """What ``decode_message`` made of a message (``channel`` None: the topic is not ours)."""

    channel: Channel | None
    sensor: str = ""
    msg: Msg | None = None
    kind: SensorKind | None = None  # the sensor's kind, for sensors this partition owns
    undecodable: bool = False


def decode_message(
    topic: str,
    payload: bytes,
    *,
    owns: Callable[[str], bool],
    limits: Limits,
    now: float | None,
    wall: Callable[[], float],
) -> Decoded:
    """Decode one MQTT message of the data, meta or status channel."""
    try:
        st = parse_sensor_topic(topic)
    except IocError:
        return Decoded(None, undecodable=True)
    arrived = time.monotonic()
    if st.channel is Channel.META:
        try:
            meta = decode_meta(st.kind, st.sensor, payload)
        except IocError:
            return Decoded(st.channel, st.sensor, undecodable=True)
        return Decoded(
            st.channel, st.sensor, None if meta is None else Msg(arrived, st.sensor, meta=meta)
        )
    if not owns(st.sensor):
        return Decoded(st.channel, st.sensor)
    if st.channel is Channel.STATUS:
        try:
            status = decode_status(payload, now=now)
        except IocError:
            return Decoded(st.channel, st.sensor, kind=st.kind, undecodable=True)
        return Decoded(st.channel, st.sensor, Msg(arrived, st.sensor, status=status), st.kind)
    try:
        cols, rejections = decode_columns(
            st.sensor, payload, wall() if now is None else now, limits
        )
    except IocError:
        return Decoded(st.channel, st.sensor, kind=st.kind, undecodable=True)
    invalid = [
        (rej.detail.split(" ", 1)[0], now or wall())
        for rej in rejections
        if rej.reason in INVALID_REASONS
    ]
    if cols.us or invalid:
        msg = Msg(arrived, st.sensor, cols, invalid=invalid)
        return Decoded(st.channel, st.sensor, msg, st.kind)
    return Decoded(st.channel, st.sensor, kind=st.kind)


class Batcher:
    """A bounded queue of decoded messages, counted in readings."""

    def __init__(
        self, *, batch_ms: float, batch_max: int, queue_max: int, stopping: threading.Event
    ) -> None:
        self.linger = batch_ms / 1000.0
        self.batch_max = batch_max
        self.queue_max = queue_max
        self.stopping = stopping
        self.queued = 0  # readings waiting
        self._queue: deque[Msg] = deque()
        self._cv = threading.Condition()

    def __len__(self) -> int:
        with self._cv:
            return len(self._queue)

    def put(self, item: Msg) -> None:
        n = item.count
        with self._cv:
            warned = False
            while self.queued >= self.queue_max and not self.stopping.is_set():
                if not warned:
                    logger.warning(
                        "analytics queue full (%d readings): slowing the feed", self.queued
                    )
                    warned = True
                self._cv.wait(1.0)
            self._queue.append(item)
            self.queued += n
            if len(self._queue) == 1 or self.queued >= self.batch_max:
                self._cv.notify_all()

    def take(self, timeout: float) -> list[Msg]:
        """A micro-batch, waiting up to ``timeout`` for a first message and then the batch time."""
        limit = self.batch_max
        with self._cv:
            if not self._queue:
                self._cv.wait(timeout)
            if not self._queue:
                return []
            deadline = self._queue[0].arrived + self.linger
            while self.queued < limit and not self.stopping.is_set():
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._cv.wait(left)
            items = []
            taken = 0
            while self._queue and taken < limit:
                item = self._queue.popleft()
                taken += item.count
                items.append(item)
            self.queued -= taken
            self._cv.notify_all()
            return items

    def take_all(self) -> list[Msg]:
        """Everything queued, at once (offline runs)."""
        with self._cv:
            items = list(self._queue)
            self._queue.clear()
            self.queued = 0
            self._cv.notify_all()
            return items

    def wake(self) -> None:
        with self._cv:
            self._cv.notify_all()


def to_batch(items: list[Msg]) -> Batch:
    """The readings of the messages as one batch of columns (times in Unix seconds)."""
    sensors: list[str] = []
    metrics: list[str] = []
    us: list[int] = []
    values: list[float] = []
    for m in items:
        if m.cols is not None and m.cols.us:
            sensors.extend(repeat(m.sensor, len(m.cols.us)))
            metrics.extend(m.cols.metrics)
            us.extend(m.cols.us)
            values.extend(m.cols.values)
    times = (np.array(us, dtype=np.int64) + PG_EPOCH_S * 1_000_000) / 1e6
    return Batch(sensors, metrics, times, np.array(values, dtype=np.float64))
