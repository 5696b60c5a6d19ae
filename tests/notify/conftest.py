"""Fixtures of the notification tests: a real HTTP webhook receiver, alerts, `ioc notify`."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg.types.json import Jsonb

SECRET = "s3cret-for-tests"


@dataclass
class Hook:
    headers: dict[str, str]
    body: bytes
    path: str = "/hook"

    @property
    def doc(self) -> dict[str, Any]:
        doc: dict[str, Any] = json.loads(self.body)
        return doc

    def signature_ok(self, secret: str = SECRET) -> bool:
        want = hmac.new(secret.encode(), self.body, hashlib.sha256).hexdigest()
        return hmac.compare_digest(want, self.headers.get("X-IOC-Signature", ""))


@dataclass
class Receiver:
    """A webhook receiver on a free port: records every POST; can fail or be slow."""

    server: ThreadingHTTPServer
    received: list[Hook] = field(default_factory=list)
    fail_first: int = 0  # answer 503 to this many requests first
    status: int = 200
    delay_s: float = 0.0
    calls: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    def wait(self, n: int, timeout: float = 10.0) -> list[Hook]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if len(self.received) >= n:
                    return list(self.received)
            time.sleep(0.02)
        raise AssertionError(f"{len(self.received)} of {n} webhooks within {timeout} s")


def _handler(rcv: list[Receiver]) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            r = rcv[0]
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            if r.delay_s:
                time.sleep(r.delay_s)
            with r.lock:
                r.calls += 1
                failing = r.calls <= r.fail_first
                status = 503 if failing else r.status
                if status < 300:
                    r.received.append(Hook(dict(self.headers.items()), body, self.path))
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    holder: list[Receiver] = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(holder))
    server.daemon_threads = True
    holder.append(Receiver(server))
    t = threading.Thread(target=server.serve_forever, daemon=True)
    t.start()
    yield holder[0]
    server.shutdown()
    server.server_close()
    t.join(5)


_ALERT_SQL = (
    "INSERT INTO alerts (sensor, metric, rule, detector, kind, alert_class, severity, message,"
    " value, evidence, area) VALUES (%(sensor)s, %(metric)s, %(rule)s, 'threshold', %(kind)s,"
    " 'threshold', %(severity)s, %(message)s, %(value)s, %(evidence)s, %(area)s) RETURNING id"
)


def insert_alert(conn: psycopg.Connection[Any], **fields: Any) -> int:
    """Insert an alert as analytics does (the trigger commits its 'opened' event)."""
    doc: dict[str, Any] = {
        "sensor": "wl-td-03",
        "metric": "water_level",
        "rule": f"water_level.r{time.monotonic_ns()}",
        "kind": "water_level",
        "severity": "critical",
        "message": "Ngập 52 cm tại hầm Trần Duy Hưng",
        "value": 52.0,
        "evidence": {},
        "area": "Cầu Giấy",
    }
    doc.update(fields)
    doc["evidence"] = Jsonb(doc["evidence"])
    row = conn.execute(_ALERT_SQL, doc).fetchone()
    assert row is not None
    return int(row[0])


def wait_for(fn: Callable[[], Any], timeout: float = 10.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = fn()
        if got:
            return got
        time.sleep(0.05)
    raise AssertionError(f"condition not met within {timeout} s")


@dataclass
class Proc:
    proc: subprocess.Popen[bytes]
    log: Path

    def output(self) -> str:
        return self.log.read_text(errors="replace")[-4000:]


@pytest.fixture
def run_ioc(tmp_path: Path) -> Iterator[Callable[..., Proc]]:
    """Start ``ioc <command>`` as a real process with extra ``IOC_*`` environment."""
    procs: list[Proc] = []

    def start(*args: str, env: dict[str, str]) -> Proc:
        log = tmp_path / f"ioc-{len(procs)}.log"
        full = {**os.environ, "IOC_LOG_LEVEL": "INFO", **env}
        with log.open("wb") as out:
            proc = subprocess.Popen(
                [sys.executable, "-m", "ioc", *args], env=full, stdout=out, stderr=out
            )
        p = Proc(proc, log)
        procs.append(p)
        return p

    yield start
    for p in procs:
        if p.proc.poll() is None:
            p.proc.kill()
        p.proc.wait(10)
