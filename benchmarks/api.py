"""``ioc bench api``: live fan-out latency to many websocket clients, and history query speed.

``ioc bench api ws``     N websocket clients in separate processes; alerts committed at a
                         steady rate; latency from each commit to each client's receipt,
                         against a one-client baseline measured in the same run.  With
                         ``--mixed`` each client authenticates with the ``ioc.bearer.``
                         sub-protocol, has a filter (severity, kind, area or bbox) and
                         resumes with ``since=`` after reading the head, as a wall does.
``ioc bench api query``  a 30-day, 1-hour-bucket query of one sensor over a readings table
                         of ``--rows`` rows (generated server-side with generate_series in a
                         dedicated database, reused while its shape matches), against a
                         1-day query of the same sensors as the baseline.
``ioc bench api``        both, with the defaults.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx
import orjson
import psycopg
from psycopg.types.json import Jsonb

from api.auth import hash_token, new_token
from api.config import ApiSettings
from benchmarks import save_results
from core.db import migrate
from tests.support.servers import free_port

BENCH_WS_DB = "ioc_bench_api"
BENCH_QUERY_DB = "ioc_bench_readings"


# ---------------------------------------------------------------------------
# helpers


def _with_db(dsn: str, db: str) -> str:
    parts = urlsplit(dsn)
    return urlunsplit(parts._replace(path=f"/{db}"))


def _fresh_db(dsn: str, db: str) -> str:
    with psycopg.connect(_with_db(dsn, "postgres"), autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {db} WITH (FORCE)")
        conn.execute(f"CREATE DATABASE {db}")
    url = _with_db(dsn, db)
    migrate(url)
    return url


def _token(url: str, role: str = "admin") -> str:
    token = new_token()
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO api_tokens (name, role, token_hash) VALUES ('bench', %s, %s)",
            (role, hash_token(token)),
        )
    return token


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process and its children (Linux /proc), in seconds."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    pids = [pid]
    with contextlib.suppress(OSError):
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                with contextlib.suppress(OSError), open(f"/proc/{entry}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
                    if int(fields[1]) == pid:
                        pids.append(int(entry))
    for p in pids:
        with contextlib.suppress(OSError), open(f"/proc/{p}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / tick
    return total


SERVER_PID: list[int] = []


@contextlib.contextmanager
def api_server(url: str, workers: int = 1, **env: str) -> Iterator[str]:
    """``ioc api [--workers N]`` in processes of its own; yields its base URL."""
    port = free_port()
    environ = {
        **os.environ,
        "IOC_DATABASE_URL": url,
        "IOC_LOG_LEVEL": "WARNING",
        "IOC_API_PORT": str(port),
        "IOC_API_RATE_PER_TOKEN": "0",  # the benchmarks measure speed, not the rate limit
        **env,
    }
    cmd = [sys.executable, "-m", "ioc", "api", "--workers", str(workers)]
    proc = subprocess.Popen(cmd, env=environ)
    SERVER_PID[:] = [proc.pid]
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the API did not start")
            time.sleep(0.1)
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _pct(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    k = max(0, min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1))))
    return ordered[k]


def _summary(ms: list[float]) -> str:
    return (
        f"p50 {_pct(ms, 50):7.1f} ms  p95 {_pct(ms, 95):7.1f} ms  "
        f"p99 {_pct(ms, 99):7.1f} ms  max {max(ms) if ms else float('nan'):7.1f} ms"
    )


# ---------------------------------------------------------------------------
# websocket fan-out


def _client_main(argv: list[str]) -> int:
    """A client process: N websocket clients; print READY, then one JSON line of receipts."""
    p = argparse.ArgumentParser()
    p.add_argument("--url", required=True)
    p.add_argument("--token", required=True)
    p.add_argument("--n", type=int, required=True)
    p.add_argument("--expect", type=int, required=True)
    p.add_argument("--timeout", type=float, default=120)
    p.add_argument("--mixed", action="store_true")
    a = p.parse_args(argv)
    return asyncio.run(_clients(a.url, a.token, a.n, a.expect, a.timeout, a.mixed))


# --mixed: filters that each match the producer's alerts, in four shapes
MIXED_FILTERS = (
    "severity=critical&kind=water_level",
    "area=C%E1%BA%A7u%20Gi%E1%BA%A5y",  # Cầu Giấy
    "severity=critical&severity=warning&kind=water_level&kind=air_quality",
    "bbox=105.7,20.9,105.9,21.1&severity=critical",
)


async def _open(url: str, token: str, i: int, mixed: bool) -> Any:
    """Client ``i``'s websocket, ready for live events.

    Plain: ``?token=`` and no filter; the ``hello`` has been read.  Mixed: the token as the
    ``ioc.bearer.`` sub-protocol and one of ``MIXED_FILTERS``; the client connects, reads
    the head from ``hello``, closes and resumes from it with ``since=``, as a client
    reconnecting does."""
    from websockets.asyncio.client import connect
    from websockets.typing import Subprotocol

    options: dict[str, Any] = {"compression": None, "open_timeout": 60, "ping_interval": None}
    if not mixed:
        ws = await connect(f"{url}/ws/alerts?token={token}", max_queue=1024, **options)
        hello = orjson.loads(await ws.recv())
        assert hello["type"] == "hello"
        return ws
    query = MIXED_FILTERS[i % len(MIXED_FILTERS)]
    protocols = [Subprotocol(f"ioc.bearer.{token}")]
    async with connect(f"{url}/ws/alerts?{query}", subprotocols=protocols, **options) as first:
        hello = orjson.loads(await first.recv())
        assert hello["type"] == "hello"
    since = f"{url}/ws/alerts?{query}&since={hello['seq']}"
    return await connect(since, subprotocols=protocols, max_queue=1024, **options)


async def _clients(url: str, token: str, n: int, expect: int, wait_s: float, mixed: bool) -> int:

    receipts: list[list[tuple[int, float]]] = [[] for _ in range(n)]
    ready = 0
    all_ready = asyncio.Event()
    gate = asyncio.Semaphore(50)

    async def one(i: int) -> None:
        nonlocal ready
        for attempt in range(5):
            try:
                async with gate:
                    ws = await _open(url, token, i, mixed)
                break
            except (OSError, TimeoutError) as exc:
                print(f"client {i}: connect failed ({exc!r}), retrying", file=sys.stderr)
                await asyncio.sleep(0.5 * (attempt + 1))
        else:
            raise RuntimeError(f"client {i} could not connect")
        try:
            ready += 1
            if ready == n:
                all_ready.set()
            got = receipts[i]
            while len(got) < expect:
                raw = await ws.recv()
                t = time.time()
                doc = orjson.loads(raw)
                if doc["type"] == "alert":
                    got.append((doc["alert"]["id"], t))
        finally:
            await ws.close()

    failed = asyncio.Event()

    async def guarded(i: int) -> None:
        try:
            await one(i)
        except Exception as exc:
            print(f"client {i} failed: {exc!r}", file=sys.stderr)
            failed.set()
            raise

    tasks = [asyncio.create_task(guarded(i)) for i in range(n)]
    gates = [asyncio.create_task(all_ready.wait()), asyncio.create_task(failed.wait())]
    await asyncio.wait(gates, return_when=asyncio.FIRST_COMPLETED)
    if not all_ready.is_set():
        print("FAILED", flush=True)
        return 1
    print("READY", flush=True)
    _, pending = await asyncio.wait(tasks, timeout=wait_s)
    for task in pending:
        task.cancel()
    print(orjson.dumps(receipts).decode(), flush=True)
    return 0


def _producer(url: str, n: int, rate: float) -> dict[int, float]:
    """Commit ``n`` new alerts at ``rate`` per second; alert id -> commit time."""
    committed: dict[int, float] = {}
    evidence = Jsonb({"threshold": 50, "window": [41.0, 44.5, 47.2, 52.0], "neighbours": []})
    tag = f"{time.time_ns() % 10**9:09d}"
    with psycopg.connect(url, autocommit=True) as conn:
        start = time.monotonic()
        for i in range(n):
            delay = start + i / rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            row = conn.execute(
                "INSERT INTO alerts (sensor, metric, rule, detector, kind, alert_class, severity,"
                " message, value, expected_high, evidence, lat, lon, area, opened_at)"
                " VALUES (%s, 'water_level', 'water_level.critical', 'threshold', 'water_level',"
                " 'threshold', 'critical', %s, 52, 30, %s, 21.0106, 105.8003, 'Cầu Giấy', now())"
                " RETURNING id",
                (
                    f"wl-{tag}-{i:05d}",
                    f"Water level 52 cm at gauge {i}: street flooding likely",
                    evidence,
                ),
            ).fetchone()
            committed[int(row[0])] = time.time()  # type: ignore[index]
    return committed


def ws_round(
    base: str, token: str, clients: int, procs: int, alerts: int, rate: float, mixed: bool = False
) -> tuple[list[float], float]:
    """Latencies (ms) from each alert's commit to each client's receipt; API CPU ms per alert."""
    ws_url = base.replace("http://", "ws://")
    procs = max(1, min(procs, clients))
    per = [clients // procs + (1 if i < clients % procs else 0) for i in range(procs)]
    cmd = [sys.executable, "-m", "benchmarks.api", "_client", "--url", ws_url, "--token", token]
    cmd += ["--mixed"] if mixed else []
    workers = [
        subprocess.Popen(
            [*cmd, "--n", str(n), "--expect", str(alerts)], stdout=subprocess.PIPE, text=True
        )
        for n in per
    ]
    for w in workers:
        assert w.stdout is not None
        line = w.stdout.readline().strip()
        if line != "READY":
            raise RuntimeError(f"a client process failed to connect: {line!r}")
    time.sleep(0.5)
    url = _with_db(os.environ["IOC_BENCH_DB"], BENCH_WS_DB)
    cpu0 = cpu_seconds(SERVER_PID[0])
    committed = _producer(url, alerts, rate)
    time.sleep(1.0)
    cpu = cpu_seconds(SERVER_PID[0]) - cpu0
    print(f"    (API CPU {cpu * 1000 / alerts:.1f} ms per alert for {clients:,} client(s))")
    latencies: list[float] = []
    missing = 0
    for w in workers:
        out, _ = w.communicate(timeout=180)
        for receipts in orjson.loads(out.strip().splitlines()[-1]):
            missing += alerts - len(receipts)
            latencies += [(t - committed[aid]) * 1000 for aid, t in receipts if aid in committed]
    if missing:
        print(f"  !! {missing} receipts missing")
    return latencies, cpu * 1000 / alerts


def bench_ws(
    dsn: str,
    clients: int,
    procs: int,
    alerts: int,
    rate: float,
    workers: int = 1,
    mixed: bool = False,
) -> dict[str, float]:
    url = _fresh_db(dsn, BENCH_WS_DB)
    os.environ["IOC_BENCH_DB"] = dsn
    token = _token(url)
    print(f"== websocket fan-out: {alerts} alerts at {rate:g}/s, commit -> client receipt")
    print(f"  API: {workers} worker process(es); clients in {procs} other processes")
    if mixed:
        print(
            "  mixed: token as a sub-protocol, a filter per client (severity, kind, area, bbox),"
            " each resumed with since= after reading the head"
        )
    limits = {
        "IOC_API_WS_QUEUE": "1000",
        "IOC_API_WS_MAX_CLIENTS": str(clients + 100),
        "IOC_API_WS_PER_TOKEN": str(clients + 100),  # every client uses the one token
    }
    with api_server(url, workers, **limits) as base:
        base_ms, _ = ws_round(base, token, 1, 1, alerts, rate, mixed)
        print(f"  baseline, 1 client            {_summary(base_ms)}")
        many_ms, cpu_ms = ws_round(base, token, clients, procs, alerts, rate, mixed)
        print(f"  {clients:,} clients in {procs} processes {_summary(many_ms)}")
        lag = _server_lag(base)
    ratio = _pct(many_ms, 99) / max(_pct(base_ms, 99), 1e-9)
    print(f"  p99 {clients:,} clients / p99 1 client = {ratio:.1f}x; server-side reader lag {lag}")
    return {
        "p99_ms": round(_pct(many_ms, 99), 1),
        "baseline_p99_ms": round(_pct(base_ms, 99), 1),
        "ratio": round(ratio, 1),
        "api_cpu_ms_per_alert": round(cpu_ms, 1),
        "load_average": round(os.getloadavg()[0], 2),  # the machine's, other jobs included
    }


def _server_lag(base: str) -> str:
    text = httpx.get(f"{base}/metrics", timeout=10).text
    vals = {}
    for line in text.splitlines():
        if line.startswith("ioc_api_alert_event_lag_seconds_sum"):
            vals["sum"] = float(line.split()[-1])
        if line.startswith("ioc_api_alert_event_lag_seconds_count"):
            vals["count"] = float(line.split()[-1])
    if vals.get("count"):
        return f"mean {vals['sum'] / vals['count'] * 1000:.1f} ms"
    return "n/a"


# ---------------------------------------------------------------------------
# history queries


def _prepare_readings(dsn: str, rows: int, days: int, jobs: int, reuse: bool) -> tuple[str, int]:
    """A database whose readings hold ``rows`` one-minute readings of S sensors over ``days``."""
    sensors = max(1, rows // (days * 1440))
    url = _with_db(dsn, BENCH_QUERY_DB)
    shape = f"{sensors}x{days}"
    if reuse:
        with contextlib.suppress(psycopg.OperationalError), psycopg.connect(url) as conn:
            row = conn.execute("SELECT shape, ready FROM bench_shape").fetchone()
            if row == (shape, True):
                print(f"  reusing {BENCH_QUERY_DB} ({sensors:,} sensors x {days} days)")
                return url, sensors
    url = _fresh_db(dsn, BENCH_QUERY_DB)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE TABLE bench_shape (shape text, ready bool, made_at timestamptz)")
        conn.execute("INSERT INTO bench_shape VALUES (%s, false, now())", (shape,))
    end = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0) + timedelta(days=1)
    first = end - timedelta(days=days)
    total = sensors * days * 1440
    print(f"  generating {total:,} readings: {sensors:,} sensors x {days} days x 1,440 minutes")
    started = time.monotonic()
    done = [0]
    lock = threading.Lock()

    def load(day: datetime) -> None:
        name = f"readings_p{day:%Y%m%d}"
        nxt = day + timedelta(days=1)
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("SET synchronous_commit = off")
            conn.execute("SET work_mem = '1GB'")  # the time-major sort below stays in memory
            with conn.transaction():
                if _attached(conn, name):
                    conn.execute(f"ALTER TABLE readings DETACH PARTITION {name}")
                conn.execute(f"DROP TABLE IF EXISTS {name}")
            conn.execute(
                f"CREATE TABLE {name} (time timestamptz NOT NULL, sensor text NOT NULL,"
                f" metric text NOT NULL, value double precision NOT NULL)"
            )
            # time-major, as an ingestor writes it: every sensor's reading of a minute together
            conn.execute(
                f"INSERT INTO {name} SELECT t, 'bs-' || lpad(s::text, 5, '0'), 'water_level',"
                " round((40 + 15 * sin(extract(epoch FROM t) / 3600.0 + s)"
                "  + 5 * random())::numeric, 2)::float8"
                " FROM generate_series(%s::timestamptz, %s::timestamptz - interval '1 minute',"
                " interval '1 minute') t CROSS JOIN generate_series(1, %s) s ORDER BY t, s",
                (day, nxt, sensors),
            )
            conn.execute(f"ALTER TABLE {name} ADD PRIMARY KEY (sensor, metric, time)")
            conn.execute(f"CREATE INDEX ON {name} USING brin (time)")
            conn.execute(  # lets ATTACH skip its validation scan
                f"ALTER TABLE {name} ADD CONSTRAINT {name}_range"
                f" CHECK (time >= '{day.isoformat()}' AND time < '{nxt.isoformat()}')"
            )
            conn.execute(
                f"ALTER TABLE readings ATTACH PARTITION {name}"
                f" FOR VALUES FROM ('{day.isoformat()}') TO ('{nxt.isoformat()}')"
            )
            conn.execute(f"VACUUM (ANALYZE) {name}")
        with lock:
            done[0] += 1
            rate = done[0] * sensors * 1440 / (time.monotonic() - started)
            print(f"    {done[0]}/{days} days loaded ({rate:,.0f} rows/s)", flush=True)

    with ThreadPoolExecutor(max(1, jobs)) as pool:
        list(pool.map(load, [first + timedelta(days=i) for i in range(days)]))
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("ANALYZE readings")
        conn.execute("UPDATE bench_shape SET ready = true")
    print(f"  generated in {time.monotonic() - started:,.0f} s")
    return url, sensors


def _attached(conn: psycopg.Connection[Any], name: str) -> bool:
    row = conn.execute(
        "SELECT EXISTS (SELECT 1 FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid"
        " WHERE i.inhparent = 'readings'::regclass AND c.relname = %s)",
        (name,),
    ).fetchone()
    return bool(row and row[0])


def _wait_for_rollup(url: str, limit_s: float = 3600) -> float:
    """Seconds until the rollup reaches the last closed hour and every closed day is rolled."""
    started = time.monotonic()
    with psycopg.connect(url, autocommit=True) as conn:
        while True:
            with contextlib.suppress(psycopg.errors.UndefinedTable):
                row = conn.execute(
                    "SELECT (SELECT watermark FROM api_rollup_state)"
                    " >= date_trunc('hour', now() - interval '2 minutes'),"
                    " (SELECT count(*) FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid"
                    "   LEFT JOIN api_rollup_partitions p ON p.name = c.relname"
                    "   JOIN pg_stat_all_tables t ON t.relid = c.oid"
                    "   WHERE i.inhparent = 'readings'::regclass"
                    "   AND to_date(substr(c.relname, 11), 'YYYYMMDD') < now() - interval '1 day 3 hours'"
                    "   AND p.changes IS DISTINCT FROM t.n_tup_ins + t.n_tup_upd + t.n_tup_del)"
                ).fetchone()
                if row and row[0] and row[1] == 0:
                    return time.monotonic() - started
            if time.monotonic() - started > limit_s:
                raise RuntimeError("the rollup did not catch up")
            time.sleep(2)


def bench_query(
    dsn: str, rows: int, days: int, queries: int, jobs: int, reuse: bool
) -> dict[str, float]:
    print(f"== history query: 30 days in 1-hour buckets of one sensor, {rows:,}-row table")
    url, sensors = _prepare_readings(dsn, rows, max(days, 31), jobs, reuse)
    token = _token(url, "analyst")
    end = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    rng = random.Random(7)
    picks = [f"bs-{rng.randint(1, sensors):05d}" for _ in range(queries)]

    def measure(env: dict[str, str], spans: list[timedelta]) -> list[list[float]]:
        with (
            api_server(url, 1, **env) as base,
            httpx.Client(
                base_url=base, headers={"Authorization": f"Bearer {token}"}, timeout=120
            ) as http,
        ):
            if env.get("IOC_API_ROLLUP") != "false":
                took = _wait_for_rollup(url)
                print(f"  rollup caught up in {took:,.0f} s")

            def run(span: timedelta, sensor: str) -> float:
                params = {
                    "sensor": sensor,
                    "metric": "water_level",
                    "start": (end - span).isoformat(),
                    "end": end.isoformat(),
                    "bucket": "1h",
                }
                t = time.perf_counter()
                resp = http.get("/api/v1/readings", params=params)
                ms = (time.perf_counter() - t) * 1000
                resp.raise_for_status()
                assert len(resp.json()["items"]) >= span / timedelta(hours=1) - 1
                return ms

            run(timedelta(days=1), "bs-00001")  # connections, plans
            return [[run(span, s) for s in picks] for span in spans]

    day, raw = measure({"IOC_API_ROLLUP": "false"}, [timedelta(days=1), timedelta(days=30)])
    (month,) = measure({}, [timedelta(days=30)])
    print(f"  baseline: 1 day (24 buckets), raw readings  {_summary(day)}")
    print(f"  30 days (720 buckets), raw readings         {_summary(raw)}")
    print(f"  30 days (720 buckets), hourly rollup        {_summary(month)}")
    ratio = _pct(month, 95) / max(_pct(day, 95), 1e-9)
    print(
        f"  p95: 30 days with the rollup / 1 day raw = {ratio:.2f}x;"
        f" without the rollup {_pct(raw, 95) / max(_pct(day, 95), 1e-9):.1f}x"
        f"  ({queries} sensors picked at random)"
    )
    return {"p95_ms": _pct(month, 95), "baseline_p95_ms": _pct(day, 95), "ratio": ratio}


# ---------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "_client":
        return _client_main(argv[1:])
    p = argparse.ArgumentParser(
        prog="ioc bench api",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("which", nargs="?", choices=["ws", "query", "all"], default="all")
    p.add_argument(
        "--pg",
        default=None,
        help="a PostgreSQL to create the bench databases on (default: the server of "
        "IOC_DATABASE_URL)",
    )
    p.add_argument("--clients", type=int, default=1_000, help="websocket clients")
    p.add_argument("--procs", type=int, default=4, help="client processes")
    p.add_argument("--alerts", type=int, default=100, help="alerts to commit")
    p.add_argument("--rate", type=float, default=10.0, help="alerts per second")
    p.add_argument("--workers", type=int, default=1, help="API worker processes (ws)")
    p.add_argument(
        "--mixed",
        action="store_true",
        help="ws: token as a sub-protocol, a filter per client, each client resumed with since=",
    )
    p.add_argument("--rows", type=int, default=2_000_000, help="readings in the query table")
    p.add_argument("--days", type=int, default=35, help="days those readings span")
    p.add_argument("--queries", type=int, default=50, help="queries per measurement")
    p.add_argument("--jobs", type=int, default=2, help="parallel loaders when generating")
    p.add_argument("--regenerate", action="store_true", help="do not reuse the readings table")
    p.add_argument("--prepare-only", action="store_true", help="generate the table, do not query")
    a = p.parse_args(argv)
    dsn = a.pg or ApiSettings().dsn
    figures: dict[str, object] = {}
    if a.which in ("ws", "all"):
        ws = bench_ws(dsn, a.clients, a.procs, a.alerts, a.rate, a.workers, a.mixed)
        key = "websocket_mixed" if a.mixed else "websocket"
        figures[key] = ws | {"clients": a.clients, "alerts": a.alerts, "workers": a.workers}
    if a.which in ("query", "all"):
        if a.prepare_only:
            _prepare_readings(dsn, a.rows, max(a.days, 31), a.jobs, not a.regenerate)
        else:
            figures["query"] = bench_query(
                dsn, a.rows, a.days, a.queries, a.jobs, not a.regenerate
            ) | {"rows": a.rows}
    if figures:
        save_results("api", figures)
    return 0


if __name__ == "__main__":
    sys.exit(main())
