"""The project's own commands (``ioc ingest``, ``ioc analytics``, ``ioc api``) as real processes.

The log (stderr) is kept in a file and in memory, so a test can wait for a line.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def ioc_env(**values: str) -> dict[str, str]:
    """This environment without any ``IOC_*`` of the caller's, plus ``values``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("IOC_")}
    env.update(values)
    return env


class PartProcess:
    """``python -m ioc <args>`` with ``env``; ``start``, ``wait_for_line``, ``stop``, ``kill``."""

    def __init__(self, args: list[str], env: dict[str, str], log: Path) -> None:
        self.args = args
        self.env = env
        self.log = log
        self.lines: list[str] = []
        self.proc: subprocess.Popen[str] | None = None
        self._pump_thread: threading.Thread | None = None

    def start(self) -> None:
        self.lines = []
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "ioc", *self.args],
            cwd=REPO,
            env=self.env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        self._pump_thread = threading.Thread(target=self._pump, args=(self.proc,), daemon=True)
        self._pump_thread.start()

    def _pump(self, proc: subprocess.Popen[str]) -> None:
        assert proc.stderr is not None
        with proc.stderr, self.log.open("a") as out:
            for line in proc.stderr:
                self.lines.append(line)
                out.write(line)
                out.flush()

    def wait_for_line(self, text: str, timeout: float = 60, after: int = 0) -> str:
        """The first line from index ``after`` on that contains ``text``."""
        deadline = time.monotonic() + timeout
        while True:
            for line in self.lines[after:]:
                if text in line:
                    return line
            assert self.proc is not None and self.proc.poll() is None, self.tail()
            assert time.monotonic() < deadline, f"no {text!r} in the log:\n{self.tail()}"
            time.sleep(0.05)

    def tail(self, n: int = 30) -> str:
        return "".join(self.lines[-n:])

    def stop(self, timeout: float = 20) -> None:
        """SIGTERM (a clean shutdown), SIGKILL if it takes longer than ``timeout``."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self._pump_thread is not None:
            self._pump_thread.join(10)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        if self._pump_thread is not None:
            self._pump_thread.join(10)
