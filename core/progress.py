"""Progress of a long command on the terminal: a rich bar on a TTY, a plain line now and then otherwise."""

from __future__ import annotations

import sys
import time
from types import TracebackType
from typing import Self, TextIO

from rich.console import Console
from rich.progress import (
    BarColumn,
    Progress,
    SpinnerColumn,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

PLAIN_EVERY_S = 30.0


class TaskProgress:
    """One step of a long command, ``total`` units long (None: unknown, a spinner).

    On a terminal (``out`` is a TTY, by default stderr so that the command's output stays
    clean) it is a transient rich bar; otherwise a line every ``plain_every_s`` seconds,
    and none at all for a step shorter than that.
    """

    def __init__(
        self,
        label: str,
        total: float | None = None,
        *,
        out: TextIO | None = None,
        plain_every_s: float = PLAIN_EVERY_S,
        unit: str = "",
    ) -> None:
        self.label = label
        self.unit = unit  # with no total: the count so far is shown in this unit
        self.total = total
        self.out = out or sys.stderr
        self.plain_every_s = plain_every_s
        self.completed = 0.0
        self.tty = self.out.isatty()
        self._progress: Progress | None = None
        self._task: TaskID | None = None
        self._next_plain = time.monotonic() + plain_every_s

    def __enter__(self) -> Self:
        if self.tty:
            columns = (
                [
                    SpinnerColumn(),
                    TextColumn(self.label),
                    TextColumn("{task.completed:,.0f} " + self.unit if self.unit else ""),
                    TimeElapsedColumn(),
                ]
                if self.total is None
                else [
                    TextColumn(self.label),
                    BarColumn(),
                    TextColumn("{task.percentage:>3.0f}%"),
                    TimeRemainingColumn(),
                ]
            )
            self._progress = Progress(*columns, console=Console(file=self.out), transient=True)
            self._progress.start()
            self._task = self._progress.add_task(self.label, total=self.total)
        return self

    def update(self, completed: float) -> None:
        """``completed`` units of ``total`` are done."""
        self.completed = completed
        if self._progress is not None and self._task is not None:
            self._progress.update(self._task, completed=completed)
        elif not self.tty and time.monotonic() >= self._next_plain:
            self._next_plain = time.monotonic() + self.plain_every_s
            share = (
                f" {completed / self.total:4.0%}"
                if self.total
                else f" {completed:,.0f} {self.unit}"
                if self.unit
                else ""
            )
            print(f"{self.label}{share}", file=self.out, flush=True)

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None
