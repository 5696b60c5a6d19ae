"""``ioc demo``: the whole system on one machine: servers, parts, simulated Hanoi, dashboard.

Starts (or uses, where ``IOC_DATABASE_URL`` / ``IOC_MQTT_URL`` are set) PostgreSQL and
an MQTT broker, applies the migrations, runs ``ioc ingest``, ``ioc analytics`` and
``ioc api`` as child processes, creates an operator token, starts the simulator in
accelerated time with incidents, and prints the dashboard's address.  Each child
runs in a process group of its own and logs to a file; Ctrl-C (or SIGTERM) stops the
children in order (simulator, parts, broker, database), killing what does not stop
in time.  If a component dies, the demo says so and stops the rest.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import re
import shlex
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import IO

import psycopg

from core.db import migrate
from core.errors import IocError
from core.logs import setup_logging
from core.settings import parse_mqtt_urls
from ioc.config import DemoSettings
from ioc.democity import CityPlan
from ioc.embedded import (
    Broker,
    EmbeddedError,
    EmbeddedPostgres,
    default_data_dir,
    free_port,
    make_broker,
    port_is_free,
    spawn,
    stop_process,
)
from ioc.progress import ReplayProgress

logger = logging.getLogger(__name__)


class Stopped(Exception):
    """Ctrl-C or SIGTERM arrived while starting up."""


@dataclass
class Part:
    """One ``ioc <command>`` child process."""

    name: str
    argv: list[str]
    env: dict[str, str]
    log_path: Path
    proc: subprocess.Popen[bytes] | None = None
    then: list[str] | None = None  # run this next when the first run ends well (exit 0)

    def start(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            _banner(log, f"ioc {' '.join(self.argv)}")
            self.proc = spawn([sys.executable, "-m", "ioc", *self.argv], log, env=self.env)


def _banner(log: IO[bytes], what: str) -> None:
    log.write(f"\n==== {time.strftime('%Y-%m-%d %H:%M:%S')} ioc demo starts: {what}\n".encode())
    log.flush()


AMQTT_SPEED = 10.0  # the fastest pace amqtt keeps up with on a small machine


class Demo:
    """Starts everything, watches it, and stops it in order."""

    def __init__(self, settings: DemoSettings, args: argparse.Namespace) -> None:
        self.settings = settings
        self.args = args
        self.data_dir: Path = args.data_dir or settings.demo_data_dir or default_data_dir()
        self.logs = self.data_dir / "logs"
        self.stop_event = threading.Event()
        self.first_signal: float | None = None
        self.kill_now = False
        self.pg: EmbeddedPostgres | None = None
        self.broker: Broker | None = None
        self.parts: list[Part] = []
        self.dsn = settings.dsn
        self.mqtt_url = settings.mqtt_url.get_secret_value()
        self.mqtt5 = True
        self._env: dict[str, str] | None = None
        self.replay: ReplayProgress | None = None

    # -- output ---------------------------------------------------------------------------

    def status(self, component: str, state: str, detail: str) -> None:
        print(f"  {component:<10} {state:<6} {detail}", flush=True)

    def rel(self, path: Path) -> str:
        with contextlib.suppress(ValueError):
            return str(path.relative_to(self.data_dir))
        return str(path)

    # -- signals --------------------------------------------------------------------------

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        now = time.monotonic()
        if self.first_signal is None:
            self.first_signal = now
            print(f"\n{signal.Signals(signum).name}: stopping (again to kill at once)", flush=True)
        elif now - self.first_signal > 1.0:  # a repeat within a second is the same request
            self.kill_now = True
        self.stop_event.set()

    def check(self) -> None:
        if self.stop_event.is_set():
            raise Stopped

    # -- start-up -------------------------------------------------------------------------

    def start_database(self) -> None:
        if self.settings.external_database:
            self.status("postgres", "ok", f"using IOC_DATABASE_URL ({_redact(self.dsn)})")
        else:
            port = _port(self.args.pg_port, self.settings.demo_pg_port, "--pg-port")
            self.pg = EmbeddedPostgres(self.data_dir, port)
            if not self.pg.initialised:
                self.status("postgres", "init", f"a new cluster in {self.rel(self.pg.datadir)}")
            self.pg.start()
            self.dsn = self.pg.dsn()
            pid = self.pg.proc.pid if self.pg.proc else 0
            self.status(
                "postgres",
                "ok",
                f"PostgreSQL {self.pg.version} at {self.dsn} ({self.pg.source}, pid {pid}, "
                f"log {self.rel(self.pg.log_path)})",
            )
        self.check()
        done = migrate(self.dsn)
        self.status("schema", "ok", f"{len(done)} migration(s) applied" if done else "up to date")

    def start_broker(self) -> None:
        if self.settings.external_broker:
            where = ",".join(f"mqtt://{a.host}:{a.port}" for a in parse_mqtt_urls(self.mqtt_url))
            self.status("broker", "ok", f"using IOC_MQTT_URL ({where})")
            return
        port = _port(self.args.mqtt_port, self.settings.demo_mqtt_port, "--mqtt-port")
        self.broker = make_broker(
            self.data_dir, port, self.args.broker or self.settings.demo_broker
        )
        self.broker.start()
        self.mqtt_url = self.broker.url
        self.mqtt5 = self.broker.mqtt5
        pid = self.broker.proc.pid if self.broker.proc else 0
        note = "" if self.mqtt5 else "; MQTT 3.1.1 only and slow: see docs/operations.md"
        self.status(
            "broker",
            "ok",
            f"{self.broker.name} at {self.mqtt_url} (pid {pid}, log "
            f"{self.rel(self.broker.log_path)}{note})",
        )

    def child_env(self) -> dict[str, str]:
        """The environment of every part (made once: the metrics ports stay the same)."""
        if self._env is not None:
            return dict(self._env)
        env = dict(os.environ)
        env.update(
            IOC_DATABASE_URL=self.dsn,
            IOC_MQTT_URL=self.mqtt_url,
            PYTHONUNBUFFERED="1",
        )
        env.setdefault("IOC_INGEST_UNKNOWN_SENSORS", "register")
        # the demo's parts must not fight over fixed metrics ports with anything else
        env.setdefault("IOC_INGEST_METRICS_PORT", str(free_port()))
        env.setdefault("IOC_INGEST_METRICS_HOST", "127.0.0.1")
        env.setdefault("IOC_ANALYTICS_METRICS_PORT", str(free_port()))
        if not self.mqtt5:
            env.setdefault("IOC_ANALYTICS_MQTT_PROTOCOL", "3.1.1")
            env.setdefault("IOC_INGEST_SHARED_GROUP", "")
        self._env = env
        return dict(env)

    def start_parts(self) -> str:
        env = self.child_env()
        port = _port(self.args.port, self.settings.demo_port, "--port")
        api_env = {
            **env,
            "IOC_API_HOST": "127.0.0.1",
            "IOC_API_PORT": str(port),
            "IOC_API_PUBLIC_DOCS": "true",  # a local demo: /docs opens in a browser
        }
        for name, part_env in (("ingest", env), ("analytics", env), ("api", api_env)):
            part = Part(name, [name], part_env, self.logs / f"{name}.log")
            part.start()
            self.parts.append(part)
        base = f"http://127.0.0.1:{port}"
        for part in self.parts:
            assert part.proc is not None
            state, detail = "ok", f"pid {part.proc.pid}, log {self.rel(part.log_path)}"
            if part.name == "api":
                self.wait_http(f"{base}/healthz", part, timeout=90)
                detail = f"{base} ({detail})"
            elif part.name == "ingest" and env["IOC_INGEST_METRICS_PORT"] != "0":
                metrics = f"http://127.0.0.1:{env['IOC_INGEST_METRICS_PORT']}/metrics"
                if self.wait_metric(metrics, "ioc_ingest_mqtt_connected", part, timeout=30):
                    detail = f"connected to the broker ({detail})"
                else:
                    state = "WARN"
                    detail = (
                        "not connected to the broker after 30 s: readings are not stored, alerts "
                        f"still work ({detail})"
                        + ("; ioc ingest speaks MQTT 5, amqtt only 3.1.1" if not self.mqtt5 else "")
                    )
            self.status(part.name, state, detail)
        return base

    def wait_metric(self, url: str, name: str, part: Part, timeout: float) -> bool:
        """Wait until the Prometheus gauge ``name`` at ``url`` reads 1."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.check()
            self.check_alive()
            with (
                contextlib.suppress(OSError, urllib.error.URLError, ValueError),
                urllib.request.urlopen(url, timeout=2) as resp,
            ):
                for line in resp.read().decode().splitlines():
                    if line.startswith(name + " ") and float(line.split()[1]) == 1.0:
                        return True
            time.sleep(0.25)
        return False

    def wait_http(self, url: str, part: Part, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.check()
            self.check_alive()
            with (
                contextlib.suppress(OSError, urllib.error.URLError),
                urllib.request.urlopen(url, timeout=2) as resp,
            ):
                if resp.status == 200:
                    return
            time.sleep(0.2)
        raise EmbeddedError(f"{part.name} did not answer {url} within {timeout:.0f} s")

    def create_token(self) -> str:
        from api.models import Role
        from api.tokens import create

        with psycopg.connect(self.dsn, autocommit=True) as conn:
            token = create(conn, "demo", Role.OPERATOR, "ioc demo")
        self.status("token", "ok", "operator token 'demo' created (ioc token list shows it)")
        return token

    def start_simulator(self) -> None:
        speed = self.args.speed or self.settings.demo_speed
        if (
            not self.mqtt5
            and not self.args.speed
            and "demo_speed" not in self.settings.model_fields_set
        ):
            speed = AMQTT_SPEED  # amqtt drops QoS 1 deliveries at the default pace
        share = self.args.sensors or self.settings.demo_sensors
        plan = CityPlan(speed, share)
        sim_dir = self.data_dir / "simulator"
        sim_dir.mkdir(parents=True, exist_ok=True)
        argv, then = plan.argv(sim_dir)
        part = Part("simulator", argv, self.child_env(), self.logs / "simulator.log", then=then)
        if then is not None:  # an accelerated history first: show how far it is
            now = time.time()
            self.replay = ReplayProgress(
                part.log_path,
                start=now - plan.history_s,
                end=now + plan.history_s / (plan.speed - 1),
            )
        part.start()
        self.parts.append(part)
        assert part.proc is not None
        self.status(
            "simulator",
            "ok",
            f"{plan.describe()} (pid {part.proc.pid}, log {self.rel(part.log_path)})",
        )
        self.status("", "", f"injected incidents are listed in {self.rel(sim_dir)}/truth-*.jsonl")

    def shell_lines(self) -> str:
        """Ready-to-paste lines that point ``ioc``, ``psql`` and ``mosquitto_pub`` at the demo."""
        addr = parse_mqtt_urls(self.mqtt_url)[0]  # the first node (the demo has one)
        hidden = _redact(self.dsn) != self.dsn or _redact(self.mqtt_url) != self.mqtt_url
        lines = [
            "",
            "In another terminal (ioc token create, ioc alerts tail, psql ...):",
            f"  export IOC_DATABASE_URL={shlex.quote(_redact(self.dsn))}",
            f"  export IOC_MQTT_URL={shlex.quote(_redact(self.mqtt_url))}",
        ]
        if hidden:
            lines.append("  (passwords shown as ***: use the ones you configured)")
        payload = '{"values": {"pm25": 35.5, "pm10": 60}}'
        lines += [
            f"Publish a reading (the broker listens on port {addr.port}):",
            f"  mosquitto_pub -h {addr.host} -p {addr.port} -q 1 "
            f"-t ioc/v1/air_quality/aq-hk-01/data -m {shlex.quote(payload)}",
            "",
        ]
        return "\n".join(lines)

    # -- running --------------------------------------------------------------------------

    def check_alive(self) -> None:
        for part in self.parts:
            if part.proc is not None and part.proc.poll() == 0 and part.then is not None:
                if self.replay is not None:
                    self.replay.finish()
                part.argv, part.then = part.then, None
                part.start()
                assert part.proc is not None
                self.status(
                    part.name,
                    "live",
                    f"caught up with the clock; now in real time (pid {part.proc.pid})",
                )
            if part.proc is not None and part.proc.poll() is not None:
                raise EmbeddedError(
                    f"{part.name} exited with code {part.proc.returncode}; "
                    f"see {part.log_path}:\n{_tail(part.log_path)}"
                )
        for server, name in ((self.pg, "postgres"), (self.broker, "broker")):
            proc = server.proc if server is not None else None
            if proc is not None and proc.poll() is not None:
                raise EmbeddedError(f"{name} exited with code {proc.returncode}")

    def watch(self) -> None:
        last = ""
        next_count = time.monotonic() + 5
        while not self.stop_event.wait(0.5):
            self.check_alive()
            if self.replay is not None:
                self.replay.poll()
            if time.monotonic() >= next_count:
                next_count = time.monotonic() + 15
                summary = self.alert_summary()
                if summary and summary != last:
                    print(f"  alerts     {summary}", flush=True)
                    last = summary

    def alert_summary(self) -> str:
        try:
            with psycopg.connect(self.dsn, connect_timeout=3) as conn:
                rows = conn.execute(
                    "SELECT alert_class, count(*) FROM alerts WHERE status <> 'resolved'"
                    " GROUP BY alert_class ORDER BY 2 DESC"
                ).fetchall()
        except psycopg.Error as exc:
            logger.warning("cannot count alerts: %s", exc)
            return ""
        total = sum(int(n) for _, n in rows)
        if not total:
            return "none open yet"
        return f"{total} open: " + ", ".join(f"{n} {cls}" for cls, n in rows)

    # -- shutdown -------------------------------------------------------------------------

    def stop(self) -> None:
        """Simulator first, then the parts, then the broker and the database."""
        if self.replay is not None:
            self.replay.finish()
        sims = [p for p in self.parts if p.name == "simulator"]
        others = [p for p in self.parts if p.name != "simulator"]
        self._stop_parts(sims)
        self._stop_parts(list(reversed(others)))
        for server, name in ((self.broker, "broker"), (self.pg, "postgres")):
            if server is not None:
                start = time.monotonic()
                server.stop(0.1 if self.kill_now else self.settings.demo_stop_timeout_s)
                self.status(name, "done", f"stopped ({time.monotonic() - start:.1f} s)")

    def _stop_parts(self, parts: list[Part]) -> None:
        """SIGINT to each part's group; SIGKILL what still runs after the timeout or a
        second Ctrl-C."""
        procs = [(p, p.proc) for p in parts if p.proc is not None]
        for _, proc in procs:
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGINT)
        timeout = self.settings.demo_stop_timeout_s
        start = time.monotonic()
        took: dict[int, float] = {}
        while not self.kill_now and time.monotonic() - start < timeout:
            for _, proc in procs:
                if proc.pid not in took and proc.poll() is not None:
                    took[proc.pid] = time.monotonic() - start
            if len(took) == len(procs):
                break
            time.sleep(0.05)
        for part, proc in procs:
            code = stop_process(proc, None, 0.1)
            if code == -signal.SIGKILL:
                why = "a second Ctrl-C" if self.kill_now else f"not stopped after {timeout:.0f} s"
                self.status(part.name, "killed", why)
            else:
                secs = took.get(proc.pid, time.monotonic() - start)
                self.status(part.name, "done", f"stopped (exit {code}, {secs:.1f} s)")

    def run(self) -> int:
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, self._on_signal)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        print(f"ioc demo: data in {self.data_dir}, logs in {self.logs}", flush=True)
        code = 0
        try:
            self.start_database()
            self.check()
            self.start_broker()
            self.check()
            base = self.start_parts()
            self.check()
            token = self.create_token()
            if not self.args.no_simulator:
                self.start_simulator()
            print(f"\nDashboard: {base}/#token={token}", flush=True)
            print(f"API:       {base}/docs   (Authorization: Bearer {token})", flush=True)
            print(f"MQTT:      {_redact(self.mqtt_url)}    SQL: {_redact(self.dsn)}", flush=True)
            print(self.shell_lines(), flush=True)
            print("Press Ctrl-C to stop.\n", flush=True)
            self.watch()
        except Stopped:
            pass
        except (IocError, OSError, psycopg.Error, subprocess.SubprocessError) as exc:
            print(f"\nioc demo: {exc}\nstopping everything.", file=sys.stderr, flush=True)
            code = 1
        finally:
            self.stop()
        print("ioc demo: everything stopped.", flush=True)
        return code


def _port(flag: int | None, default: int, name: str) -> int:
    """The port a flag asks for (an error if taken), else the default or a free one."""
    if flag is not None:
        if not port_is_free(flag):
            raise EmbeddedError(f"port {flag} is in use: choose another {name}")
        return flag
    return default if port_is_free(default) else free_port()


def _redact(url: str) -> str:
    return re.sub(r"(://[^:/@]+:)[^@]+@", r"\1***@", url)


def _tail(path: Path, lines: int = 15) -> str:
    with contextlib.suppress(OSError):
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    return ""


def _positive(text: str) -> float:
    value = float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError("must be greater than 0")
    return value


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="ioc demo",
        description="Run the whole system on this machine: embedded PostgreSQL and broker "
        "(unless IOC_DATABASE_URL / IOC_MQTT_URL are set), ingest, analytics, the API and "
        "dashboard, and the simulated Hanoi with incidents. Ctrl-C stops everything.",
    )
    p.add_argument("--port", type=int, help="API and dashboard port (default 8000)")
    p.add_argument("--speed", type=_positive, help="simulated seconds per real second (60)")
    p.add_argument(
        "--sensors",
        type=_positive,
        help="share of Hanoi's 1,873 traffic cameras to simulate (0.1); the 140 other sensors "
        "always run",
    )
    p.add_argument("--no-simulator", action="store_true", help="run without the simulated city")
    p.add_argument("--data-dir", type=Path, help="where data and logs live between runs")
    p.add_argument("--broker", choices=["auto", "mosquitto", "amqtt"], help="embedded broker")
    p.add_argument("--mqtt-port", type=int, help="embedded broker port (1883, or a free one)")
    p.add_argument("--pg-port", type=int, help="embedded PostgreSQL port (5432, or a free one)")
    return p.parse_args(argv)


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    settings = DemoSettings()
    # the status lines tell the story; IOC_LOG_LEVEL (also the parts') asks for more
    level = settings.log_level if "log_level" in settings.model_fields_set else "WARNING"
    setup_logging(level, settings.log_format)
    return Demo(settings, args).run()
