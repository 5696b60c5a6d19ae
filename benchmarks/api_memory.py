"""``ioc bench api-memory``: API memory over a soak of REST, 200 websockets and CSV exports.

Starts a private PostgreSQL and Mosquitto, seeds sensors, readings and alerts, runs one
``ioc api`` process and drives it with a mixed load: REST reads (alerts, one alert,
sensors, readings, incidents, refusals), ``--ws`` websockets on ``/ws/alerts`` (token as a
sub-protocol, half of them filtered, some reconnecting with ``since`` to resume), a CSV
export every few seconds, and an alert committed every second so that every websocket
has something to send. The API's RSS is sampled every second; the figures are the RSS at
start, after ``--warmup`` seconds and at the end (medians of the last 5 samples), the
ratio end / after warm-up, and the slope over the soak.

    ioc bench api-memory --minutes 10

``--leak-kib N`` runs the API with a middleware that keeps N KiB per request for good:
the check that this benchmark sees a leak (its test uses it); never set it otherwise.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable, Iterator, MutableMapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import orjson
import psycopg

from api.auth import hash_token, new_token
from benchmarks import save_results
from core.db import migrate
from tests.support.servers import MosquittoServer, PostgresServer, free_port

SENSORS = 50
DEFAULT_BOUND = 1.10

Scope = MutableMapping[str, Any]
Asgi = Callable[[Scope, Any, Any], Awaitable[None]]


def rss_mib(pid: int) -> float:
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


# ---------------------------------------------------------------------------
# the API process (``_api``): ``ioc api``, with the leak of --leak-kib when asked


def _leaky(app: Asgi, kib: int) -> Asgi:
    hoard: list[bytes] = []

    async def leaking(scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            hoard.append(b"L" * (kib * 1024))
        await app(scope, receive, send)

    return leaking


def _api_main(argv: list[str]) -> int:
    import api.__main__ as entry

    p = argparse.ArgumentParser()
    p.add_argument("--leak-kib", type=int, default=0)
    a = p.parse_args(argv)
    if a.leak_kib > 0:
        make = getattr(entry, "create_app")  # noqa: B009 (not re-exported: patched here)

        def leaky_app(settings: Any) -> Any:
            return _leaky(make(settings), a.leak_kib)

        setattr(entry, "create_app", leaky_app)  # noqa: B010
    return entry.main([])


@contextlib.contextmanager
def api_process(dsn: str, mqtt_url: str, leak_kib: int, env: dict[str, str]) -> Iterator[Any]:
    port = free_port()
    environ = {
        **os.environ,
        "IOC_DATABASE_URL": dsn,
        "IOC_MQTT_URL": mqtt_url,
        "IOC_API_PORT": str(port),
        "IOC_LOG_LEVEL": "WARNING",
        "IOC_API_RATE_PER_TOKEN": "0",  # one token drives the whole load
        "IOC_API_WS_PER_TOKEN": "1000",
        "IOC_API_WS_MAX_CLIENTS": "1000",
        **env,
    }
    cmd = [sys.executable, "-m", "benchmarks.api_memory", "_api", "--leak-kib", str(leak_kib)]
    proc = subprocess.Popen(cmd, env=environ)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                    break
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the API did not start")
            time.sleep(0.1)
        yield proc, base
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


# ---------------------------------------------------------------------------
# data


def _seed(dsn: str) -> str:
    """Sensors, a day of 5-minute readings, a few hundred alerts; an admin token."""
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    with psycopg.connect(dsn, autocommit=True) as conn:
        for i in range(SENSORS):
            conn.execute(
                "INSERT INTO sensors (id, kind, name, lat, lon, area, metrics)"
                " VALUES (%s, 'water_level', %s, %s, %s, 'Cầu Giấy', '{water_level}')",
                (f"wl-{i:03d}", f"Gauge {i}", 21.0 + i / 1000, 105.8 + i / 1000),
            )
        conn.execute(
            "INSERT INTO readings (time, sensor, metric, value)"
            " SELECT t, 'wl-' || lpad(s::text, 3, '0'), 'water_level', 40 + 10 * random()"
            " FROM generate_series(%s::timestamptz - interval '1 day', %s, interval '5 minutes')"
            " t CROSS JOIN generate_series(0, %s) s",
            (now, now, SENSORS - 1),
        )
        token = new_token()
        conn.execute(
            "INSERT INTO api_tokens (name, role, token_hash) VALUES ('soak', 'admin', %s)",
            (hash_token(token),),
        )
    _commit_alerts(dsn, 300, 0, threading.Event())
    return token


def _commit_alerts(dsn: str, n: int, rate: float, stop: threading.Event) -> None:
    """``n`` alerts (each a new sensor-rule pair, so each opens one), ``rate`` per second
    (0: at once)."""
    tag = f"{time.time_ns() % 10**9:09d}"
    with psycopg.connect(dsn, autocommit=True) as conn:
        for i in range(n):
            if stop.is_set():
                return
            severity = ("critical", "warning", "info")[i % 3]
            conn.execute(
                "INSERT INTO alerts (sensor, metric, rule, detector, kind, alert_class, severity,"
                " message, value, expected_high, evidence, lat, lon, area, opened_at)"
                " VALUES (%s, 'water_level', %s, 'threshold', 'water_level', 'threshold', %s,"
                " %s, 52, 30, '{}', 21.01, 105.8, 'Cầu Giấy', now())",
                (
                    f"wl-{i % SENSORS:03d}",
                    f"water_level.soak-{tag}-{i}",
                    severity,
                    f"Water level 52 cm at gauge {i % SENSORS}",
                ),
            )
            if rate > 0:
                stop.wait(1 / rate)


# ---------------------------------------------------------------------------
# the load


class Load:
    """REST, websockets and CSV exports against one API until ``stop`` is set."""

    def __init__(self, base: str, token: str, websockets: int, rest_rate: float) -> None:
        self.base = base
        self.ws_base = base.replace("http://", "ws://")
        self.token = token
        self.websockets = websockets
        self.rest_rate = rest_rate
        self.stop = asyncio.Event()
        self.counts = {"rest": 0, "csv": 0, "ws_messages": 0, "ws_connects": 0, "errors": 0}
        self.last_seq = 0

    async def run(self) -> None:
        headers = {"Authorization": f"Bearer {self.token}"}
        async with httpx.AsyncClient(base_url=self.base, headers=headers, timeout=60) as http:
            tasks = [asyncio.create_task(self._ws(i)) for i in range(self.websockets)]
            tasks += [asyncio.create_task(self._rest(http, w)) for w in range(2)]
            tasks.append(asyncio.create_task(self._csv(http)))
            await self.stop.wait()
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _ws(self, i: int) -> None:
        from websockets.asyncio.client import connect
        from websockets.exceptions import WebSocketException
        from websockets.typing import Subprotocol

        rng = random.Random(i)
        since: int | None = None
        while not self.stop.is_set():
            params = []
            if i % 2:
                params.append("severity=critical&severity=warning")
            if since is not None:
                params.append(f"since={since}")
            url = f"{self.ws_base}/ws/alerts" + ("?" + "&".join(params) if params else "")
            # a tenth of the clients reconnect now and then, resuming from their last seq
            life = rng.uniform(5, 30) if i % 10 == 0 else float("inf")
            try:
                async with connect(
                    url,
                    subprotocols=[Subprotocol(f"ioc.bearer.{self.token}")],
                    compression=None,
                    open_timeout=60,
                    ping_interval=None,
                ) as ws:
                    self.counts["ws_connects"] += 1
                    ends = time.monotonic() + life
                    while time.monotonic() < ends:
                        try:
                            raw = await asyncio.wait_for(ws.recv(), timeout=1)
                        except TimeoutError:
                            continue
                        doc = orjson.loads(raw)
                        self.counts["ws_messages"] += 1
                        if "seq" in doc:
                            since = doc["seq"]
                            self.last_seq = max(self.last_seq, since)
            except (OSError, TimeoutError, WebSocketException):
                self.counts["errors"] += 1
                await asyncio.sleep(1)

    async def _rest(self, http: httpx.AsyncClient, worker: int) -> None:
        rng = random.Random(1000 + worker)
        period = 2 / self.rest_rate
        now = datetime.now(UTC)
        calls: list[Callable[[], Awaitable[httpx.Response]]] = [
            lambda: http.get("/api/v1/alerts", params={"limit": 50}),
            lambda: http.get("/api/v1/alerts", params={"state": "open", "severity": "critical"}),
            lambda: http.get(f"/api/v1/alerts/{rng.randint(1, 300)}"),
            lambda: http.get("/api/v1/sensors", params={"limit": 50}),
            lambda: http.get(f"/api/v1/sensors/wl-{rng.randrange(SENSORS):03d}"),
            lambda: http.get(
                "/api/v1/readings",
                params={
                    "sensor": f"wl-{rng.randrange(SENSORS):03d}",
                    "metric": "water_level",
                    "start": (now - timedelta(hours=12)).isoformat(),
                    "bucket": "1h",
                },
            ),
            lambda: http.get("/api/v1/incidents"),
            lambda: http.get("/api/v1/alerts", params={"limit": "many"}),  # 422
            lambda: http.get("/api/v1/alerts/999999"),  # 404
            lambda: http.get("/api/v1/alerts", headers={"Authorization": "Bearer nope"}),  # 401
            lambda: http.get("/healthz"),
        ]
        while not self.stop.is_set():
            t = time.monotonic()
            try:
                resp = await rng.choice(calls)()
                if resp.status_code >= 500:
                    self.counts["errors"] += 1
                self.counts["rest"] += 1
            except httpx.HTTPError:
                self.counts["errors"] += 1
            await asyncio.sleep(max(0.0, period - (time.monotonic() - t)))

    async def _csv(self, http: httpx.AsyncClient) -> None:
        while not self.stop.is_set():
            start = (datetime.now(UTC) - timedelta(days=1)).isoformat()
            params = {"metric": "water_level", "start": start}
            try:
                async with http.stream("GET", "/api/v1/readings/export.csv", params=params) as r:
                    async for _ in r.aiter_bytes():
                        pass
                    self.counts["csv"] += 1
            except httpx.HTTPError:
                self.counts["errors"] += 1
            await asyncio.sleep(5)


# ---------------------------------------------------------------------------


def _median_of_last(samples: list[tuple[float, float]], until: float, n: int = 5) -> float:
    window = [rss for t, rss in samples if t <= until][-n:]
    return statistics.median(window) if window else float("nan")


def _slope_mib_per_min(samples: list[tuple[float, float]], since: float) -> float:
    pts = [(t, rss) for t, rss in samples if t >= since]
    if len(pts) < 3:
        return 0.0
    return statistics.linear_regression([t for t, _ in pts], [r for _, r in pts]).slope * 60


async def _soak(
    pid: int, base: str, token: str, websockets: int, rest_rate: float, warmup: float, soak: float
) -> tuple[list[tuple[float, float]], dict[str, int]]:
    load = Load(base, token, websockets, rest_rate)
    samples: list[tuple[float, float]] = []
    started = time.monotonic()
    runner = asyncio.create_task(load.run())
    last_print = 0.0
    while (elapsed := time.monotonic() - started) < warmup + soak:
        samples.append((elapsed, rss_mib(pid)))
        if elapsed - last_print >= 60:
            last_print = elapsed
            print(
                f"  {elapsed / 60:5.1f} min  RSS {samples[-1][1]:6.1f} MiB  "
                + "  ".join(f"{k} {v:,}" for k, v in load.counts.items()),
                flush=True,
            )
        await asyncio.sleep(1)
    load.stop.set()
    await runner
    return samples, load.counts


def run(
    minutes: float,
    warmup: float,
    websockets: int,
    rest_rate: float,
    leak_kib: int,
    env: dict[str, str],
) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        pg = PostgresServer(Path(tmp) / "pg")
        broker = MosquittoServer(Path(tmp) / "mq")
        pg.start()
        broker.start()
        try:
            dsn = pg.dsn()
            migrate(dsn)
            token = _seed(dsn)
            stop = threading.Event()
            with api_process(dsn, broker.url, leak_kib, env) as (proc, base):
                time.sleep(1)
                start_rss = rss_mib(proc.pid)
                producer = threading.Thread(
                    target=_commit_alerts, args=(dsn, 10**6, 1.0, stop), daemon=True
                )
                producer.start()
                try:
                    samples, counts = asyncio.run(
                        _soak(proc.pid, base, token, websockets, rest_rate, warmup, minutes * 60)
                    )
                finally:
                    stop.set()
                    producer.join(10)
                time.sleep(5)
                idle_rss = rss_mib(proc.pid)
        finally:
            broker.stop()
            pg.stop()
    end_t = samples[-1][0]
    warm = _median_of_last(samples, warmup)
    end = _median_of_last(samples, end_t)
    return {
        "minutes": minutes,
        "warmup_s": warmup,
        "websockets": websockets,
        "rest_per_s": rest_rate,
        "leak_kib_per_request": leak_kib,
        "env": env,
        "start_rss_mib": round(start_rss, 1),
        "warm_rss_mib": round(warm, 1),
        "end_rss_mib": round(end, 1),
        "max_rss_mib": round(max(r for _, r in samples), 1),
        "idle_after_rss_mib": round(idle_rss, 1),
        "ratio": round(end / warm, 3),
        "slope_mib_per_min": round(_slope_mib_per_min(samples, warmup), 3),
        "counts": counts,
    }


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "_api":
        return _api_main(argv[1:])
    p = argparse.ArgumentParser(
        prog="ioc bench api-memory",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--minutes", type=float, default=10, help="soak after the warm-up")
    p.add_argument("--warmup", type=float, default=60, help="seconds of load before the baseline")
    p.add_argument("--ws", type=int, default=200, help="websocket clients")
    p.add_argument("--rest", type=float, default=40, help="REST requests per second")
    p.add_argument("--bound", type=float, default=DEFAULT_BOUND, help="fail above this ratio")
    p.add_argument("--leak-kib", type=int, default=0, help=argparse.SUPPRESS)
    p.add_argument(
        "--env", action="append", default=[], metavar="NAME=VALUE", help="for the API process"
    )
    a = p.parse_args(argv)
    env = dict(item.split("=", 1) for item in a.env)
    print(
        f"== API memory: {a.minutes:g} min after {a.warmup:g} s of warm-up; {a.ws} websockets,"
        f" {a.rest:g} REST requests/s, a CSV export every 5 s, 1 alert/s",
        flush=True,
    )
    r = run(a.minutes, a.warmup, a.ws, a.rest, a.leak_kib, env)
    if not a.leak_kib:
        save_results("api_memory", r)
    print(
        f"  RSS start {r['start_rss_mib']} MiB, after warm-up {r['warm_rss_mib']} MiB,"
        f" end {r['end_rss_mib']} MiB (max {r['max_rss_mib']}, idle after {r['idle_after_rss_mib']})"
    )
    print(
        f"  end / after warm-up = {r['ratio']:.3f} (bound {a.bound:g});"
        f" slope {r['slope_mib_per_min']:+.2f} MiB/min;"
        + "  ".join(f" {k} {v:,}" for k, v in r["counts"].items())
    )
    return 0 if r["ratio"] <= a.bound else 1


if __name__ == "__main__":
    sys.exit(main())
