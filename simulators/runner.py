"""Runs an engine against a sink: pacing (real time, ×speed, as fast as possible), rate limit,
progress, the honest "cannot keep up" warning, clean shutdown, ground truth and final stats."""

from __future__ import annotations

import logging
import math
import re
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from types import FrameType
from typing import Any, Protocol, TextIO

import orjson

from core.types import DISPLAY_TZ
from simulators.engine import Message
from simulators.incidents import Incident, iso
from simulators.publisher import Sink

logger = logging.getLogger(__name__)

STATS_SCHEMA = "ioc.sim.stats/1"


class Source(Protocol):
    """What the runner drives: the city engine, or a replayed recording."""

    seed: int
    connections: int

    @property
    def interval_max(self) -> float: ...
    def announce(self, t: float) -> list[Message]: ...
    def goodbye(self, t: float) -> list[Message]: ...
    def window(self, a: float, b: float) -> list[Message]: ...
    def new_incidents(self, until: float) -> list[Incident]: ...
    def sensor_counts(self) -> dict[str, int]: ...


@dataclass(slots=True)
class RunOptions:
    start: float
    until: float | None = None  # simulated end (exclusive); None = until stopped
    speed: float = 1.0  # simulated seconds per wall second; math.inf = as fast as possible
    max_rate: float | None = None  # readings per wall second
    progress_s: float = 5.0  # 0 = no progress lines
    lag_warn_s: float = 5.0  # warn when the simulated clock is this far (wall s) behind
    flush_timeout_s: float = 30.0
    truth_path: str | None = None
    stats_path: str | None = None
    announce: bool = True


@dataclass(slots=True)
class Progress:
    sim_time: float
    wall_s: float
    readings: int
    messages: int
    readings_per_s: float
    messages_per_s: float
    lag_s: float
    unacked: int


@dataclass(slots=True)
class RunStats:
    schema: str
    seed: int
    sim_start: str
    sim_end: str
    speed: float | None
    wall_s: float
    sensors: dict[str, int]
    sensors_total: int
    connections: int
    readings_sent: int
    messages_sent: int
    readings_published: int
    messages_published: int
    messages_by_channel: dict[str, int]
    unacked_at_exit: int
    readings_per_s: float
    messages_per_s: float
    max_lag_s: float
    fell_behind: bool
    incidents: int
    stopped_by: str
    warnings: list[str] = field(default_factory=list)
    workers: int = 1


class TokenBucket:
    """At most ``rate`` units per second, in bursts of at most a tenth of a second's worth."""

    def __init__(self, rate: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate = rate
        self.capacity = rate / 10.0
        self.tokens = self.capacity
        self.clock = clock
        self.last = clock()

    def wait_time(self, n: float) -> float:
        """0 and take ``n`` tokens if allowed now, else the seconds to wait before asking again."""
        now = self.clock()
        self.tokens = min(self.capacity, self.tokens + (now - self.last) * self.rate)
        self.last = now
        if self.tokens >= min(
            n, self.capacity
        ):  # a message bigger than a burst waits for a full bucket
            self.tokens -= n
            return 0.0
        return (min(n, self.capacity) - self.tokens) / self.rate


class Runner:
    def __init__(
        self,
        engine: Source,
        sink: Sink,
        options: RunOptions,
        on_progress: Callable[[Progress], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.engine = engine
        self.sink = sink
        self.opt = options
        self.on_progress = on_progress or _log_progress
        self.clock = clock
        self.stop_reason = ""
        self._stop = threading.Event()
        self.max_lag = 0.0
        self.warnings: list[str] = []
        self._truth: TextIO | None = None
        self._incidents = 0
        self._msgs0 = 0  # messages acknowledged before the clock started (registration)
        self._bucket = TokenBucket(options.max_rate, clock) if options.max_rate else None

    def stop(self, reason: str = "stopped") -> None:
        if not self._stop.is_set():
            self.stop_reason = reason
        self._stop.set()
        setattr(self.sink, "abort", True)  # noqa: B010 (MqttSink only)

    def install_signal_handlers(self) -> None:
        def handler(signum: int, frame: FrameType | None) -> None:
            self.stop(signal.Signals(signum).name)

        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, handler)

    # --- the loop ----------------------------------------------------------------------

    def run(self) -> RunStats:
        opt = self.opt
        fast = math.isinf(opt.speed)
        if opt.truth_path:
            Path(opt.truth_path).parent.mkdir(parents=True, exist_ok=True)
            self._truth = open(opt.truth_path, "w", encoding="utf-8")  # noqa: SIM115
        self.sink.connect()
        wall0 = self.clock()
        cursor = opt.start
        try:
            if opt.announce:
                for msg in self.engine.announce(opt.start):
                    self._send(msg)
                self.sink.flush(opt.flush_timeout_s)  # rates below count the readings' time only
            wall0 = self.clock()
            self._msgs0 = self.sink.stats.acked_messages
            last_progress = wall0
            last_warn = -math.inf
            # a window is a slice of simulated time handed to the engine at once
            step = (
                max(1.0, min(60.0, self.engine.interval_max))
                if fast
                else max(0.05, 0.1 * opt.speed)
            )
            while not self._stop.is_set():
                end = opt.until if opt.until is not None else math.inf
                if cursor >= end:
                    self.stop_reason = self.stop_reason or "until"
                    break
                now = self.clock()
                target = end if fast else opt.start + (now - wall0) * opt.speed
                target = min(target, end, cursor + step * (1 if fast else 50))
                if target <= cursor:
                    wait = (cursor - (opt.start + (now - wall0) * opt.speed)) / opt.speed
                    self.sink.poll(min(max(wait, 0.005), 0.1))
                else:
                    for msg in self.engine.window(cursor, target):
                        self._send(msg)
                        if self._stop.is_set():
                            break
                    self._write_truth(target)
                    cursor = target
                    self.sink.poll(0)
                now = self.clock()
                if not fast:
                    lag = max(0.0, (opt.start + (now - wall0) * opt.speed - cursor) / opt.speed)
                    self.max_lag = max(self.max_lag, lag)
                    if lag > opt.lag_warn_s and now - last_warn > 10.0:
                        last_warn = now
                        self._warn_behind(lag, now - wall0)
                if opt.progress_s and now - last_progress >= opt.progress_s:
                    last_progress = now
                    self.on_progress(self._progress(cursor, now - wall0))
        finally:
            wall = self.clock() - wall0
            stats = self._shutdown(cursor, wall)
        return stats

    def _send(self, msg: Message) -> None:
        if self._bucket is not None and msg.readings:
            while not self._stop.is_set():
                wait = self._bucket.wait_time(msg.readings)
                if wait <= 0:
                    break
                self.sink.poll(min(wait, 0.1))
        self.sink.publish(msg)

    def _warn_behind(self, lag: float, wall: float) -> None:
        s = self.sink.stats
        rate = s.acked_readings / wall if wall > 0 else 0.0
        limit = (
            f"; --max-rate {self.opt.max_rate:g} readings/s is the limit"
            if self.opt.max_rate
            else ""
        )
        text = (
            f"cannot keep up: the simulated clock is {lag:.1f} s (wall) behind ×{self.opt.speed:g}; "
            f"achieved {rate:,.0f} readings/s{limit}. Lower --speed or --scale, or add --connections"
        )
        if not self.warnings or self.warnings[-1] != text:
            self.warnings.append(text)
        logger.warning("%s", text)

    def _progress(self, cursor: float, wall: float) -> Progress:
        s = self.sink.stats
        lag = (
            0.0
            if math.isinf(self.opt.speed)
            else max(0.0, (self.opt.start + wall * self.opt.speed - cursor) / self.opt.speed)
        )
        return Progress(
            sim_time=cursor,
            wall_s=wall,
            readings=s.acked_readings,
            messages=s.acked_messages,
            readings_per_s=s.acked_readings / wall if wall > 0 else 0.0,
            messages_per_s=(s.acked_messages - self._msgs0) / wall if wall > 0 else 0.0,
            lag_s=lag,
            unacked=s.unacked,
        )

    def _write_truth(self, until: float) -> None:
        for inc in self.engine.new_incidents(until):
            self._incidents += 1
            if self._truth is not None:
                self._truth.write(orjson.dumps(inc.truth(self.engine.seed)).decode() + "\n")
                self._truth.flush()

    def _shutdown(self, cursor: float, wall: float) -> RunStats:
        sink = self.sink
        if not sink.flush(self.opt.flush_timeout_s):
            logger.warning("%d messages were not acknowledged by the broker", sink.stats.unacked)
        setattr(sink, "abort", False)  # noqa: B010
        run_messages = sink.stats.acked_messages - self._msgs0  # without registration and goodbye
        try:
            for msg in self.engine.goodbye(cursor):
                sink.publish(msg)
            sink.flush(self.opt.flush_timeout_s)
        finally:
            sink.close()
            if self._truth is not None:
                self._truth.close()
        s = sink.stats
        stats = RunStats(
            schema=STATS_SCHEMA,
            seed=self.engine.seed,
            sim_start=iso(self.opt.start),
            sim_end=iso(cursor),
            speed=None if math.isinf(self.opt.speed) else self.opt.speed,
            wall_s=round(wall, 3),
            sensors=self.engine.sensor_counts(),
            sensors_total=sum(self.engine.sensor_counts().values()),
            connections=self.engine.connections,
            readings_sent=s.acked_readings,
            messages_sent=s.acked_messages,
            readings_published=s.published_readings,
            messages_published=s.published_messages,
            messages_by_channel=dict(s.by_channel),
            unacked_at_exit=s.unacked,
            readings_per_s=round(s.acked_readings / wall, 1) if wall > 0 else 0.0,
            messages_per_s=round(run_messages / wall, 1) if wall > 0 else 0.0,
            max_lag_s=round(self.max_lag, 3),
            fell_behind=bool(self.warnings),
            incidents=self._incidents,
            stopped_by=self.stop_reason or "until",
            warnings=self.warnings,
        )
        if self.opt.stats_path:
            Path(self.opt.stats_path).parent.mkdir(parents=True, exist_ok=True)
            Path(self.opt.stats_path).write_bytes(
                orjson.dumps(asdict(stats), option=orjson.OPT_INDENT_2)
            )
        return stats


def _log_progress(p: Progress) -> None:
    logger.info("%s", format_progress(p))


def format_progress(p: Progress) -> str:
    sim = datetime.fromtimestamp(p.sim_time, DISPLAY_TZ).isoformat(timespec="seconds")
    return (
        f"sim {sim} | {p.readings:,} readings ({p.readings_per_s:,.0f}/s) "
        f"{p.messages:,} messages ({p.messages_per_s:,.0f}/s) | unacked {p.unacked:,} | lag {p.lag_s:.1f} s"
    )


_PROGRESS_RE = re.compile(r"sim (\S+) \| ([\d,]+) readings")


def parse_progress(line: str) -> tuple[float, int] | None:
    """The simulated time (Unix seconds) and readings of a ``format_progress`` line."""
    m = _PROGRESS_RE.search(line)
    if m is None:
        return None
    try:
        return datetime.fromisoformat(m.group(1)).timestamp(), int(m.group(2).replace(",", ""))
    except ValueError:
        return None


def stats_dict(stats: RunStats) -> dict[str, Any]:
    return asdict(stats)
