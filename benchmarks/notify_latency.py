"""Notification figures: event commit -> webhook received, kill -9 mid-burst, receiver down.

Starts a private PostgreSQL, an HTTP webhook receiver and ``python -m ioc notify``, then

1. inserts critical alerts at ``--rate`` per second for ``--seconds`` and prints the p50
   and p99 of (webhook received - alert committed);
2. inserts a burst of ``--burst`` alerts, kills the dispatcher with SIGKILL after a third
   arrived, starts it again and counts what was lost and what came twice (and whether
   every repeat carried the same idempotency key);
3. with ``--down-s S``: the receiver answers 503 for S seconds while alerts keep coming,
   and the time until everything arrived after it came back is printed;
4. commits alerts at ``--rate`` with and without ``--escalations`` alerts waiting under an
   escalation policy (steps and reminders ticking) and prints the commit p50/p99 of both.

    python -m benchmarks.notify_latency --rate 10 --seconds 30 --burst 1000 --down-s 60
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import psycopg

from benchmarks import save_results
from core.db import migrate
from tests.support.servers import PostgresServer

SQL_WARNING = (
    "INSERT INTO alerts (sensor, metric, rule, detector, kind, alert_class, severity, message)"
    " VALUES (%s, 'water_level', %s, 'threshold', 'water_level', 'threshold', 'warning',"
    " 'benchmark')"
)
SQL = (
    "INSERT INTO alerts (sensor, metric, rule, detector, kind, alert_class, severity, message)"
    " VALUES (%s, 'water_level', %s, 'threshold', 'water_level', 'threshold', 'critical',"
    " 'benchmark') RETURNING id"
)


class Receiver:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.got: list[tuple[float, dict[str, Any]]] = []
        self.down = False
        rcv = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                now = time.time()
                if rcv.down:
                    self.send_response(503)
                else:
                    with rcv.lock:
                        rcv.got.append((now, json.loads(body)))
                    self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    def count(self) -> int:
        with self.lock:
            return len(self.got)

    def wait(self, n: int, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while self.count() < n:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.count()} of {n} webhooks arrived")
            time.sleep(0.01)


def _start(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "ioc", "notify"], env=env, stdout=out, stderr=out
        )


def _commit_latency(
    conn: psycopg.Connection[Any], rate: float, seconds: float, tag: str
) -> tuple[float, float]:
    """p50 and p99 (ms) of committing an alert (the analytics write path) at ``rate``/s."""
    took: list[float] = []
    start = time.monotonic()
    for i in range(int(rate * seconds)):
        time.sleep(max(0.0, start + i / rate - time.monotonic()))
        t0 = time.perf_counter()
        conn.execute(SQL, (f"{tag}{i}", f"{tag}{i}.{time.monotonic_ns()}"))
        took.append(time.perf_counter() - t0)
    return round(_pct(took, 50) * 1000, 2), round(_pct(took, 99) * 1000, 2)


def _pct(values: list[float], p: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(p / 100 * len(s)))]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="ioc bench notify", description=__doc__)
    ap.add_argument("--rate", type=float, default=10.0)
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--burst", type=int, default=1000)
    ap.add_argument("--down-s", type=float, default=0.0)
    ap.add_argument("--escalations", type=int, default=1000)
    args = ap.parse_args(argv)
    result: dict[str, Any] = {"machine": f"{os.cpu_count()} CPU, {platform.machine()}"}
    with tempfile.TemporaryDirectory(prefix="ioc-bench-notify-") as tmp:
        pg = PostgresServer(Path(tmp) / "pg")
        pg.start()
        rcv = Receiver()
        proc: subprocess.Popen[bytes] | None = None
        try:
            with psycopg.connect(pg.dsn("postgres"), autocommit=True) as c:
                c.execute("CREATE DATABASE bench")
            dsn = pg.dsn("bench")
            migrate(dsn)
            routes = Path(tmp) / "routes.yaml"
            routes.write_text(
                f"routes:\n  - name: duty\n    min_severity: critical\n    webhook: {rcv.url}\n"
                "    rate_per_minute: 100000\n"
                # phase 4: warning alerts of rule esc.* wait under a policy, reminded each minute
                "escalations:\n  - name: standby\n    min_severity: warning\n"
                '    rules: ["esc.*"]\n    steps:\n      - after_minutes: 0.1\n'
                f"        webhook: {rcv.url}\n    repeat_minutes: 1\n    max_reminders: 100\n"
            )
            env = {
                **os.environ,
                "IOC_DATABASE_URL": dsn,
                "IOC_NOTIFY_ROUTES": str(routes),
                "IOC_NOTIFY_WEBHOOK_SECRET": "bench",
                "IOC_NOTIFY_MQTT_RELAY": "false",
                "IOC_NOTIFY_BACKOFF_MAX_S": "30",  # 8 attempts then span about 2 minutes
                "IOC_LOG_LEVEL": "WARNING",
            }
            log = Path(tmp) / "notify.log"
            proc = _start(env, log)
            time.sleep(2.0)
            conn = psycopg.connect(dsn, autocommit=True)
            n = 0

            # 1. latency at a steady rate
            committed: dict[int, float] = {}
            total = int(args.rate * args.seconds)
            start = time.monotonic()
            for i in range(total):
                time.sleep(max(0.0, start + i / args.rate - time.monotonic()))
                row = conn.execute(SQL, (f"s{i}", f"r{n}")).fetchone()
                n += 1
                assert row is not None
                committed[int(row[0])] = time.time()
            rcv.wait(total, 30)
            lat = [t - committed[d["alert"]["id"]] for t, d in rcv.got]
            result["latency"] = {
                "rate_per_s": args.rate,
                "events": total,
                "p50_ms": round(_pct(lat, 50) * 1000, 1),
                "p99_ms": round(_pct(lat, 99) * 1000, 1),
                "max_ms": round(max(lat) * 1000, 1),
            }
            print(f"latency at {args.rate:g}/s: {result['latency']}")

            # 2. kill -9 in the middle of a burst
            base = rcv.count()
            with conn.transaction():
                for i in range(args.burst):
                    conn.execute(SQL, (f"b{i}", f"r{n}"))
                    n += 1
            rcv.wait(base + args.burst // 3, 60)
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            at_kill = rcv.count() - base
            proc = _start(env, log)
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                sent = conn.execute(
                    "SELECT count(*) FROM notifications WHERE status = 'sent'"
                ).fetchone()
                if sent and sent[0] >= total + args.burst:
                    break
                time.sleep(0.1)
            with rcv.lock:
                keys = Counter(d["idempotency_key"] for _, d in rcv.got[base:])
                alerts = {d["alert"]["id"] for _, d in rcv.got[base:]}
            result["kill9"] = {
                "burst": args.burst,
                "received_before_kill": at_kill,
                "lost": args.burst - len(alerts),
                "duplicates": sum(c - 1 for c in keys.values()),
                "duplicates_under_another_key": len(keys) - len(alerts),
            }
            print(f"kill -9 mid-burst: {result['kill9']}")

            # 3. a receiver that is down for a while
            if args.down_s > 0:
                base = rcv.count()
                rcv.down = True
                sent_n = 0
                t0 = time.monotonic()
                while time.monotonic() - t0 < args.down_s:
                    conn.execute(SQL, (f"d{sent_n}", f"r{n}"))
                    n += 1
                    sent_n += 1
                    time.sleep(1.0)
                rcv.down = False
                back = time.monotonic()
                with contextlib.suppress(TimeoutError):
                    rcv.wait(base + sent_n, 120)
                dead = conn.execute(
                    "SELECT count(*) FROM notifications WHERE status = 'dead'"
                ).fetchone()
                result["down"] = {
                    "down_s": args.down_s,
                    "events": sent_n,
                    "arrived": rcv.count() - base,
                    "dead": dead[0] if dead else None,
                    "drained_s_after_return": round(time.monotonic() - back, 1),
                }
                print(f"receiver down: {result['down']}")
            # 4. the alert path with and without 1,000 escalations waiting
            if args.escalations > 0:
                quiet = _commit_latency(conn, args.rate, args.seconds / 2, "q")
                with conn.transaction():
                    for i in range(args.escalations):
                        conn.execute(SQL_WARNING, (f"e{i}", f"esc.{i}"))
                deadline = time.monotonic() + 60
                while time.monotonic() < deadline:
                    row = conn.execute("SELECT count(*) FROM notify_escalations").fetchone()
                    if row and row[0] >= args.escalations:
                        break
                    time.sleep(0.2)
                busy = _commit_latency(conn, args.rate, args.seconds / 2, "w")
                ticked = conn.execute(
                    "SELECT count(*) FROM notifications WHERE reason <> 'event'"
                ).fetchone()
                result["escalations"] = {
                    "waiting": args.escalations,
                    "steps_and_reminders_sent_meanwhile": ticked[0] if ticked else None,
                    "alert_commit_p50_ms": [quiet[0], busy[0]],
                    "alert_commit_p99_ms": [quiet[1], busy[1]],
                }
                print(f"1,000 escalations waiting: {result['escalations']}")
            conn.close()
        finally:
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait()
            rcv.server.shutdown()
            pg.stop()
    save_results("notify_latency", result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
