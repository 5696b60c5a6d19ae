"""``ioc bench analytics``: detector-bank throughput and publish-to-committed-alert latency.

Throughput (one process, one core): the configured series detector alone, the
series stage around it (slots, thresholds, expected range) and the whole pipeline
(rules, series, health and the domain stages) over ``--series`` series, one
reading per series per round; the placeholder ``robust_z`` detector is the
baseline measured in the same run.

Latency: ``ioc analytics`` runs as a subprocess against a broker (a private
Mosquitto on a free port unless ``--mqtt-url``) and a temporary database on the
PostgreSQL server of ``IOC_DATABASE_URL`` (or ``--dsn``); a second process
publishes the background load of ``--sensors`` traffic cameras; probes publish a
water level over the critical flood level and the time to the committed alert is
taken from ``LISTEN ioc_alerts``.  Baselines in the same run: the broker alone
(publish → a bare subscriber) and the database alone (insert an alert → NOTIFY).
Meanwhile the service's own CPU time (``/proc``, user + system) gives its CPU per
reading and its share of one core; ``--sensors 2013 --interval 60`` is about the default
city's rate (2,013 sensors, about 255 readings/s), whose goal is 25 % of one core.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import paho.mqtt.client as mqtt
import psycopg
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

from analytics.config import AnalyticsSettings
from analytics.detectors.robust_z import RobustZ
from analytics.engine.base import Batch, Context
from analytics.eval.scenario import temporary_database
from analytics.stages.registry import build_pipeline
from analytics.stages.series import SeriesStage, make_series_detector
from benchmarks import save_results
from core.codecs import encode_native
from core.db import migrate
from core.settings import parse_mqtt_url
from core.topics import data_topic
from tests.support.servers import find_mosquitto, private_mosquitto

T0 = 1_763_769_600.0
CAMERA = (
    "vehicle_count",
    "count_motorbike",
    "count_car",
    "count_bus",
    "count_truck",
    "speed",
    "occupancy",
    "queue_length",
)


# -- throughput --------------------------------------------------------------------------


def _camera_values(rng: np.random.Generator, n: int, step: int) -> np.ndarray[Any, Any]:
    day = np.sin(2 * np.pi * (step % 1440) / 1440.0)
    base = np.array([120, 90, 20, 3, 2, 35, 30, 40], dtype=np.float64) * (1 + 0.3 * day)
    out: np.ndarray[Any, Any] = np.abs(
        base[None, :] * (1 + 0.1 * rng.standard_normal((n, len(CAMERA))))
    )
    return out


def throughput(
    n_series: int, steps: int, detector: str, warmup: int = 110, seed: int = 0
) -> dict[str, float]:
    """Readings per CPU second of the detectors, the series stage and the whole pipeline.

    All four run the same readings: ``n_series`` series of traffic cameras (8 metrics
    each), ``warmup`` untimed rounds (past the detectors' warm-up), then ``steps``
    timed rounds of one reading per series.
    """
    rng = np.random.default_rng(seed)
    n_cams = max(1, n_series // len(CAMERA))
    sensors = [f"cam-{i:05d}" for i in range(n_cams) for _ in CAMERA]
    metrics = [m for _ in range(n_cams) for m in CAMERA]
    n = len(sensors)
    rounds = [
        Batch(sensors, metrics, np.full(n, T0 + 60.0 * k), _camera_values(rng, n_cams, k).ravel())
        for k in range(warmup + steps)
    ]
    slots = np.arange(n, dtype=np.int64)
    out: dict[str, float] = {}

    def timed(step: Any) -> float:
        cpu = 0.0
        for k, batch in enumerate(rounds):
            c0 = time.process_time()
            step(batch)
            if k >= warmup:
                cpu += time.process_time() - c0
        return n * steps / max(cpu, 1e-9)

    base = RobustZ()
    out["robust_z detector (baseline)"] = timed(lambda b: base.score_learn(slots, b.time, b.value))
    det = make_series_detector(detector, seed)
    out[f"{det.name} detector"] = timed(lambda b: det.score_learn(slots, b.time, b.value))
    stage = SeriesStage(make_series_detector(detector, seed), exclude=())
    ctx = Context()
    out[f"series stage ({det.name}, all 8 metrics)"] = timed(lambda b: stage.process(b, ctx))
    pipeline = build_pipeline(
        AnalyticsSettings(analytics_detector=detector, analytics_metrics_port=0), Context()
    )
    out["whole pipeline (every stage)"] = timed(pipeline.process)
    return out


# -- latency ---------------------------------------------------------------------------------


@contextlib.contextmanager
def private_broker() -> Iterator[str]:
    if find_mosquitto() is None:
        raise RuntimeError("mosquitto is not installed: give --mqtt-url")
    with private_mosquitto(max_queued=1_000_000) as server:
        yield server.url


def _client(url: str, client_id: str = "") -> mqtt.Client:
    addr = parse_mqtt_url(url)
    c = mqtt.Client(
        CallbackAPIVersion.VERSION2, client_id=client_id, protocol=MQTTProtocolVersion.MQTTv5
    )
    if addr.username:
        c.username_pw_set(addr.username, addr.password)
    c.connect(addr.host, addr.port)
    c.loop_start()
    return c


def _background(url: str, n_sensors: int, interval_s: float, count_file: Path) -> None:
    """Traffic cameras publishing one pack of 8 metrics every ``interval_s`` (own process).

    Runs until SIGTERM; the readings sent so far are written to ``count_file``.
    """
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    rng = np.random.default_rng(1)
    c = _client(url, f"bench-bg-{os.getpid()}")
    ids = [f"bg-cam-{i:05d}" for i in range(n_sensors)]
    topics = [data_topic("traffic_camera", s) for s in ids]
    per_tick = max(1, int(n_sensors * 0.1 / interval_s))  # spread over 100 ms ticks
    i = sent = 0
    next_at = time.monotonic()
    while not stop.is_set():
        now = datetime.now(UTC).timestamp()
        vals = _camera_values(rng, per_tick, int(now // 60))
        for j in range(per_tick):
            k = (i + j) % n_sensors
            values = dict(zip(CAMERA, vals[j].round(1).tolist(), strict=True))
            c.publish(topics[k], encode_native([(now, values)]), qos=1)
        i += per_tick
        sent += per_tick * len(CAMERA)
        count_file.write_text(str(sent))
        next_at += 0.1
        time.sleep(max(0.0, next_at - time.monotonic()))
    c.loop_stop()
    c.disconnect()


def _percentiles(ms: list[float]) -> dict[str, float]:
    a = np.array(ms)
    return {
        "n": float(a.size),
        "p50": float(np.percentile(a, 50)),
        "p95": float(np.percentile(a, 95)),
        "p99": float(np.percentile(a, 99)),
        "max": float(a.max()),
    }


def broker_baseline(url: str, n: int = 200) -> dict[str, float]:
    """Publish (QoS 1) → a bare subscriber, on the same broker."""
    got: dict[str, float] = {}
    ready = threading.Event()
    sub = _client(url, f"bench-sub-{uuid.uuid4().hex[:6]}")
    sub.on_message = lambda c, u, m: got.__setitem__(m.topic, time.perf_counter())
    sub.on_subscribe = lambda *a: ready.set()
    sub.subscribe("bench/baseline/#", qos=1)
    ready.wait(5)
    pub = _client(url, f"bench-pub-{uuid.uuid4().hex[:6]}")
    sent: dict[str, float] = {}
    for i in range(n):
        topic = f"bench/baseline/{i}"
        sent[topic] = time.perf_counter()
        pub.publish(topic, b"x", qos=1)
        time.sleep(0.01)
    time.sleep(0.5)
    for c in (sub, pub):
        c.loop_stop()
        c.disconnect()
    return _percentiles([1000 * (got[t] - sent[t]) for t in sent if t in got])


def db_baseline(dsn: str, n: int = 100) -> dict[str, float]:
    """Insert an alert (the triggers write the event and NOTIFY) → the listener hears it."""
    lat = []
    with (
        psycopg.connect(dsn, autocommit=True) as writer,
        psycopg.connect(dsn, autocommit=True) as ln,
    ):
        ln.execute("LISTEN ioc_alerts")
        for i in range(n):
            t0 = time.perf_counter()
            writer.execute(
                "INSERT INTO alerts (sensor, metric, rule, detector, kind, alert_class, severity,"
                " message) VALUES (%s, 'water_level', 'bench', 'bench', 'water_level',"
                " 'threshold', 'critical', 'baseline')",
                (f"baseline-{i}",),
            )
            for _ in ln.notifies(timeout=5, stop_after=1):
                lat.append(1000 * (time.perf_counter() - t0))
        writer.execute("DELETE FROM alerts WHERE rule = 'bench'")
    return _percentiles(lat)


def latency(
    dsn_server: str, mqtt_url: str | None, n_sensors: int, interval_s: float, probes: int
) -> dict[str, Any]:
    with contextlib.ExitStack() as stack:
        url = mqtt_url or stack.enter_context(private_broker())
        dsn = stack.enter_context(temporary_database(dsn_server))
        migrate(dsn)
        results: dict[str, Any] = {
            "broker alone": broker_baseline(url),
            "database alone": db_baseline(dsn),
        }
        env = {
            **os.environ,
            "IOC_DATABASE_URL": dsn,
            "IOC_MQTT_URL": url,
            "IOC_ANALYTICS_METRICS_PORT": "0",
            "IOC_ANALYTICS_CLIENT_ID": f"bench-{uuid.uuid4().hex[:6]}",
            "IOC_ANALYTICS_WARMUP_S": "0",
            "IOC_LOG_LEVEL": "WARNING",
        }
        proc = subprocess.Popen([sys.executable, "-m", "ioc", "analytics"], env=env)
        stack.callback(_stop_process, proc)
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="ioc-bench-")))
        count_file = tmp / "sent"
        count_file.write_text("0")
        bg = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "benchmarks.analytics",
                "--background",
                url,
                str(n_sensors),
                str(interval_s),
                str(count_file),
            ]
        )
        stack.callback(_stop_process, bg)
        pub = _client(url, f"bench-probe-{uuid.uuid4().hex[:6]}")
        stack.callback(pub.loop_stop)
        lat: list[float] = []
        with psycopg.connect(dsn, autocommit=True) as ln:
            ln.execute("LISTEN ioc_alerts")
            time.sleep(5.0)  # the service connects and the load settles
            c0 = int(count_file.read_text() or 0)
            w0 = time.monotonic()
            cpu0 = _cpu_s(proc.pid)
            run_id = uuid.uuid4().hex[:4]
            for i in range(probes + 5):
                sensor = f"probe-{run_id}-{i}"
                topic = data_topic("water_level", sensor)
                now = datetime.now(UTC).timestamp()
                pub.publish(topic, encode_native([(now - 60, {"water_level": 45.0})]), qos=1)
                time.sleep(0.1)  # the first reading over the level is pending (2 readings)
                t0 = time.perf_counter()
                pub.publish(topic, encode_native([(now, {"water_level": 46.0})]), qos=1)
                seen = _wait_alert(ln, sensor, timeout=5.0)
                if seen is not None and i >= 5:  # the first probes warm the path up
                    lat.append(1000 * (seen - t0))
                time.sleep(0.2)
            cpu = _cpu_s(proc.pid) - cpu0
            wall = time.monotonic() - w0
            sent = int(count_file.read_text() or 0) - c0
            rate = sent / wall
        results["publish -> committed alert"] = _percentiles(lat) if lat else {"n": 0.0}
        results["background readings/s"] = rate
        results["service CPU share of one core"] = cpu / wall
        results["service CPU per reading (us)"] = 1e6 * cpu / max(sent, 1)
        results["probes answered"] = f"{len(lat)}/{probes}"
        return results


def _cpu_s(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` so far (Linux ``/proc``)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _wait_alert(ln: psycopg.Connection[Any], sensor: str, timeout: float) -> float | None:
    """When the NOTIFY of ``sensor``'s alert arrived (perf_counter), or None."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        seqs = []
        heard = 0.0
        for note in ln.notifies(timeout=max(0.01, deadline - time.monotonic()), stop_after=1):
            heard = time.perf_counter()
            seqs.append(int(note.payload))
        if not seqs:
            continue
        row = ln.execute(
            "SELECT a.sensor FROM alert_events e JOIN alerts a ON a.id = e.alert_id"
            " WHERE e.seq = %s",
            (seqs[0],),
        ).fetchone()
        if row is not None and row[0] == sensor:
            return heard
    return None


def _stop_process(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _terminate(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--background"]:  # the load generator's own process
        _background(argv[1], int(argv[2]), float(argv[3]), Path(argv[4]))
        return 0
    p = argparse.ArgumentParser(prog="ioc bench analytics", description=__doc__)
    p.add_argument("--series", type=int, default=10_000, help="series for the throughput run")
    p.add_argument("--steps", type=int, default=30, help="timed rounds of one reading per series")
    p.add_argument("--detector", default="auto", help="series detector (IOC_ANALYTICS_DETECTOR)")
    p.add_argument("--no-latency", action="store_true", help="throughput only")
    p.add_argument("--sensors", type=int, default=2_000, help="background cameras")
    p.add_argument("--interval", type=float, default=10.0, help="seconds between their packs")
    p.add_argument("--probes", type=int, default=100, help="alerts to time")
    p.add_argument("--dsn", help="PostgreSQL server for a temporary database (IOC_DATABASE_URL)")
    p.add_argument("--mqtt-url", help="broker (default: a private Mosquitto on a free port)")
    p.add_argument("--json", type=Path, help="write the figures as JSON here too")
    args = p.parse_args(argv)
    signal.signal(signal.SIGTERM, _terminate)  # clean up the broker and the service
    report: dict[str, Any] = {}
    print(f"analytics throughput: {args.series:,} series x {args.steps} rounds, per CPU second")
    tp = throughput(args.series, args.steps, args.detector)
    sys.stdout.flush()
    base = tp["robust_z detector (baseline)"]
    for name, rate in tp.items():
        print(f"  {name:<42} {rate:>12,.0f} readings/s   {rate / base:6.3f} x baseline")
    report["throughput"] = tp
    if not args.no_latency:
        dsn = args.dsn or AnalyticsSettings().dsn
        print(
            f"latency at load: {args.sensors:,} cameras every {args.interval:g} s "
            f"({args.sensors * len(CAMERA) / args.interval:,.0f} readings/s), {args.probes} probes"
        )
        try:
            lat = latency(dsn, args.mqtt_url, args.sensors, args.interval, args.probes)
        except (psycopg.OperationalError, RuntimeError) as exc:
            print(f"  latency skipped: {exc}")
        else:
            for name in ("broker alone", "database alone", "publish -> committed alert"):
                v = lat[name]
                if v.get("n"):
                    print(
                        f"  {name:<28} p50 {v['p50']:7.1f} ms  p95 {v['p95']:7.1f} ms  "
                        f"p99 {v['p99']:7.1f} ms  max {v['max']:7.1f} ms  (n={int(v['n'])})"
                    )
            print(
                f"  background load achieved: {lat['background readings/s']:,.0f} readings/s;"
                f" probes answered {lat['probes answered']}"
            )
            share = lat["service CPU share of one core"]
            print(
                f"  ioc analytics: {lat['service CPU per reading (us)']:.1f} us CPU per reading,"
                f" {100 * share:.1f} % of one core ({share / 0.25:.2f} x the 25 % goal)"
            )
            e2e = lat["publish -> committed alert"]
            if e2e.get("n"):
                floor = lat["broker alone"]["p50"] + lat["database alone"]["p50"]
                print(
                    f"  p99 {e2e['p99']:.0f} ms vs the 250 ms goal ({e2e['p99'] / 250:.2f} x); "
                    f"p50 {e2e['p50'] / max(floor, 1e-9):.1f} x broker + database alone"
                )
            report["latency"] = lat
    report["parameters"] = {"series": args.series, "steps": args.steps, "detector": args.detector}
    save_results("analytics", report)
    if args.json:
        args.json.write_text(orjson.dumps(report, option=orjson.OPT_INDENT_2).decode())
    return 0


if __name__ == "__main__":
    sys.exit(main())
