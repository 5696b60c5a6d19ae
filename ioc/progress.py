"""The demo's progress bar for the simulator's accelerated history, read from its log."""

from __future__ import annotations

import sys
import time
from datetime import datetime
from pathlib import Path
from typing import TextIO

from rich.console import Console
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeRemainingColumn

from core.types import DISPLAY_TZ
from simulators.runner import parse_progress

PLAIN_EVERY_S = 30.0  # without a terminal: a line this often


class ReplayProgress:
    """Follows the simulator's progress lines in its log and shows how far the replay is.

    The replay runs the simulated clock from ``start`` to ``end`` (Unix seconds, where it
    meets the wall clock).  On a terminal it is a rich progress bar; otherwise (a pipe, a
    log file) a plain line every 30 s.
    """

    def __init__(self, log_path: Path, start: float, end: float, out: TextIO | None = None) -> None:
        self.log_path = log_path
        self.start = start
        self.end = end
        self.out = out or sys.stdout
        self.offset = log_path.stat().st_size if log_path.exists() else 0
        self.sim_time = start
        self.readings = 0
        self.tty = self.out.isatty()
        self._progress: Progress | None = None
        self._task: TaskID | None = None
        self._next_plain = time.monotonic() + PLAIN_EVERY_S
        self.done = False

    @property
    def fraction(self) -> float:
        span = self.end - self.start
        return min(max((self.sim_time - self.start) / span, 0.0), 1.0) if span > 0 else 1.0

    def _read(self) -> None:
        try:
            with open(self.log_path, "rb") as f:
                f.seek(self.offset)
                chunk = f.read()
        except OSError:
            return
        end = chunk.rfind(b"\n")
        if end < 0:
            return
        self.offset += end + 1
        for line in chunk[: end + 1].decode(errors="replace").splitlines():
            got = parse_progress(line)
            if got is not None:
                self.sim_time, self.readings = got

    def describe(self) -> str:
        clock = datetime.fromtimestamp(self.sim_time, DISPLAY_TZ).strftime("%H:%M")
        return f"simulated {clock}, {self.readings:,} readings"

    def poll(self) -> None:
        """Read what the simulator logged since, and show it."""
        if self.done:
            return
        self._read()
        if self.tty:
            if self._progress is None:
                self._progress = Progress(
                    TextColumn("  replay     "),
                    BarColumn(),
                    TextColumn("{task.percentage:>3.0f}%"),
                    TextColumn("{task.description}"),
                    TimeRemainingColumn(),
                    console=Console(file=self.out),
                    transient=True,
                )
                self._progress.start()
                self._task = self._progress.add_task(self.describe(), total=1000)
            assert self._task is not None
            self._progress.update(
                self._task, completed=round(self.fraction * 1000), description=self.describe()
            )
        elif time.monotonic() >= self._next_plain:
            self._next_plain = time.monotonic() + PLAIN_EVERY_S
            print(
                f"  replay     {self.fraction:4.0%} ({self.describe()})", file=self.out, flush=True
            )

    def finish(self) -> None:
        """The replay ended: take the bar away and say so once."""
        if self.done:
            return
        self._read()
        if self._progress is not None:
            self._progress.stop()
            self._progress = None
        self.done = True
