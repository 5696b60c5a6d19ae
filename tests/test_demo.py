"""``ioc demo`` comes up from nothing, shows alerts on the API, and leaves nothing behind on Ctrl-C."""

from __future__ import annotations

import os
import queue
import re
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import psutil
import pytest

from tests.support.servers import free_port

ROOT = Path(__file__).resolve().parents[1]
URL_RE = re.compile(r"^Dashboard: (http://127\.0\.0\.1:(\d+))/#token=(\S+)$")


def export_re(name: str) -> re.Pattern[str]:
    return re.compile(rf"^  export {name}=(\S+)$")


class Output:
    """The demo's stdout+stderr, read by a thread so the pipe never fills."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.lines: list[str] = []
        self._q: queue.Queue[str | None] = queue.Queue()
        self._thread = threading.Thread(target=self._read, args=(proc,), daemon=True)
        self._thread.start()

    def _read(self, proc: subprocess.Popen[str]) -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            self._q.put(line.rstrip("\n"))
        self._q.put(None)

    def wait_for(self, pattern: re.Pattern[str], timeout: float) -> re.Match[str]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self._q.get(timeout=0.5)
            except queue.Empty:
                continue
            if line is None:
                break
            self.lines.append(line)
            if m := pattern.search(line):
                return m
        pytest.fail(f"no line matching {pattern.pattern!r}; output:\n" + self.text)

    def drain(self, timeout: float = 10) -> None:
        self._thread.join(timeout)
        while not self._q.empty():
            line = self._q.get_nowait()
            if line is not None:
                self.lines.append(line)

    @property
    def text(self) -> str:
        return "\n".join(self.lines)


def _gone(p: psutil.Process) -> bool:
    try:
        return not p.is_running() or p.status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


@pytest.mark.e2e
@pytest.mark.slow
@pytest.mark.timeout(240)
def test_demo_comes_up_raises_alerts_and_stops_cleanly(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("IOC_")}
    env["IOC_LOG_LEVEL"] = "INFO"
    port = free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "ioc",
            "demo",
            "--data-dir",
            str(tmp_path / "data"),
            "--port",
            str(port),
            "--mqtt-port",
            str(free_port()),
            "--pg-port",
            str(free_port()),
            "--speed",
            "120",
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    out = Output(proc)
    children: list[psutil.Process] = []
    try:
        m = out.wait_for(URL_RE, timeout=120)
        base, token = m.group(1), m.group(3)
        assert int(m.group(2)) == port
        # ready-to-paste lines: they point the other commands at the demo's servers
        dsn = shlex.split(out.wait_for(export_re("IOC_DATABASE_URL"), timeout=10).group(1))[0]
        mqtt = shlex.split(out.wait_for(export_re("IOC_MQTT_URL"), timeout=10).group(1))[0]
        pub = out.wait_for(re.compile(r"^  (mosquitto_pub -h \S+ -p (\d+) .*)$"), timeout=10)
        assert f":{pub.group(2)}" in mqtt
        cli_env = {**env, "IOC_DATABASE_URL": dsn, "IOC_MQTT_URL": mqtt}
        made = subprocess.run(
            [sys.executable, "-m", "ioc", "token", "create", "--role", "engineer", "--name", "eng"],
            env=cli_env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert made.returncode == 0, made.stderr
        engineer = made.stdout.strip().splitlines()[-1].split()[-1]
        if shutil.which("mosquitto_pub"):
            sent = subprocess.run(shlex.split(pub.group(1)), capture_output=True, timeout=30)
            assert sent.returncode == 0, sent.stderr
        children = psutil.Process(proc.pid).children(recursive=True)
        cmdlines = [" ".join(c.cmdline()) for c in children]
        for part in ("ingest", "analytics", "api", "simulate"):
            assert any(f"-m ioc {part}" in c for c in cmdlines), (part, cmdlines)
        assert any("postgres" in c for c in cmdlines), cmdlines
        assert any("mosquitto" in c or "amqtt" in c for c in cmdlines), cmdlines

        with httpx.Client(base_url=base, timeout=10) as http:
            assert http.get("/healthz").status_code == 200
            auth = {"Authorization": f"Bearer {token}"}
            assert http.get("/api/v1/alerts").status_code == 401
            deadline = time.monotonic() + 90
            alerts: list[dict[str, object]] = []
            while time.monotonic() < deadline and not alerts:
                r = http.get("/api/v1/alerts", headers=auth)
                assert r.status_code == 200, r.text
                alerts = r.json()["items"]
                if not alerts:
                    time.sleep(2)
                    assert proc.poll() is None, out.text
            assert alerts, "no alert within 90 s of the dashboard coming up"
            assert {"sensor", "rule", "alert_class", "severity"} <= set(alerts[0])
            dead = http.get("/api/v1/dead-letters", headers={"Authorization": f"Bearer {engineer}"})
            assert dead.status_code == 200, dead.text
            assert isinstance(dead.json()["items"], list)
            if shutil.which("mosquitto_pub"):  # the printed example was stored
                r = http.get("/api/v1/sensors/aq-hk-01", headers=auth)
                assert r.status_code == 200, r.text
            dashboard = http.get("/")
            assert dashboard.status_code == 200
            assert "text/html" in dashboard.headers["content-type"]
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
        try:
            code = proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            code = proc.wait()
            for c in children:
                if not _gone(c):
                    c.kill()
        out.drain()
        if proc.stdout is not None:
            proc.stdout.close()
    assert code == 0, out.text
    assert "ioc demo: everything stopped." in out.text
    left = [c for c in children if not _gone(c)]
    assert not left, f"still running after Ctrl-C: {[c.cmdline() for c in left]}"
    for name in ("ingest", "analytics", "api", "simulator", "postgres"):
        assert (tmp_path / "data" / "logs" / f"{name}.log").stat().st_size > 0, name
