"""``ioc eval scenario``: run a simulated city through the live pipeline and score the alerts against its ground truth.

Fast offline mode: ``ioc simulate --fast`` (a subprocess; the simulator is not
imported) writes every MQTT message it would publish to a file, and its ground
truth (JSON lines: kind, fault, sensors, start, end...) to another.  The
messages then go through the same ``AnalyticsService`` code as live ones
(``on_message``'s decoding, micro-batches, every stage, spatial corroboration,
the lifecycle in a real PostgreSQL database), only without the broker, with
the time-driven checks run every ``--tick`` seconds of simulated time.

The first ``--learn`` hours only teach the detectors what normal is; incidents
starting in them, and alerts raised in them, are not scored.  Scores: per
incident kind, the share of injected incidents that got an alert on
one of their sensors between ``start - pre`` and ``end + post`` (non-device
alerts for city incidents, any alert for sensor faults), the median delay from
the incident's start to the first such alert (reading time), the share of those
alerts whose class is right (incident/threshold for city incidents,
probable_fault/device for faults); and false alerts (opened or reopened with no
injected incident or fault on that sensor at that time) per 100 sensor-days.
"""

from __future__ import annotations

import argparse
import math
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import psycopg
from psycopg.conninfo import make_conninfo

from analytics.alerts.incidents import IncidentStore
from analytics.config import AnalyticsSettings
from analytics.engine.base import Stage
from analytics.eval.forecast_score import (
    CrossingRecorder,
    format_forecasts,
    read_warnings,
    score_forecasts,
)
from analytics.eval.scoring import (
    AlertEvent,
    Report,
    Span,
    epoch_seconds,
    format_report,
    read_truth,
    score,
)
from analytics.service.runner import AnalyticsService
from analytics.stages.forecast_stage import ForecastStage
from core.logs import setup_logging
from core.operator_load import operator_load
from core.progress import TaskProgress

DEFAULT_RANDOM = {
    "traffic_incident": 6.0,
    "pollution_episode": 1.0,
    "flash_flood": 2.0,
    "fire_weather": 1.0,
    "sensor_fault": 6.0,
}
# -- running --------------------------------------------------------------------------------


@contextmanager
def temporary_database(dsn: str, keep: bool = False) -> Iterator[str]:
    """A fresh database on the server of ``dsn``, dropped afterwards unless ``keep``."""
    name = f"ioc_eval_{uuid.uuid4().hex[:10]}"
    admin = make_conninfo(dsn, dbname="postgres")
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    try:
        yield make_conninfo(dsn, dbname=name)
    finally:
        if not keep:
            with psycopg.connect(admin, autocommit=True) as conn:
                conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def simulate(
    workdir: Path, *, duration_s: float, start: float, sim_args: list[str]
) -> tuple[Path, Path]:
    """Run ``ioc simulate --fast`` into files; return (messages, truth)."""
    out = workdir / "messages.tsv"
    truth = workdir / "truth.jsonl"
    cmd = [
        sys.executable,
        "-m",
        "ioc",
        "simulate",
        "--fast",
        "--start",
        datetime.fromtimestamp(start, UTC).isoformat(),
        "--duration",
        f"{int(duration_s)}s",
        "--output",
        str(out),
        "--truth",
        str(truth),
        "--progress",
        "0",
        *sim_args,
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"ioc simulate failed ({proc.returncode}): {proc.stderr[-2000:]}")
    if not truth.exists():
        truth.write_text("")
    return out, truth


def run_pipeline(
    settings: AnalyticsSettings,
    messages: Path,
    *,
    until: float,
    tick_s: float = 30.0,
    batch: int = 200,
    progress: Callable[[int], None] | None = None,
    observe: Stage | None = None,
) -> tuple[AnalyticsService, set[str], float]:
    """Feed the recorded messages through the service; return it, the sensors with data, seconds.

    ``progress`` hears the bytes of ``messages`` read so far, every 10,000 messages;
    ``observe`` runs after the pipeline's stages (it sees every reading)."""
    svc = AnalyticsService(settings)
    if observe is not None:
        svc.pipeline.stages.append(observe)
    svc.prepare()
    sensors: set[str] = set()
    started = time.perf_counter()
    next_tick = -math.inf
    n = 0
    read = 0
    with messages.open("rb") as fh:
        for line in fh:
            read += len(line)
            topic_b, _, rest = line.partition(b"\t")
            _, _, payload = rest.partition(b"\t")
            topic = topic_b.decode()
            payload = payload.rstrip(b"\n")
            if topic.endswith("/status") and _status_time(payload) >= until - 1:
                continue  # the simulator's clean shutdown, after the evaluated period
            if topic.endswith("/data"):
                sensors.add(topic.split("/")[3])
            svc.feed(topic, payload)
            n += 1
            if progress is not None and n % 10_000 == 0:
                progress(read)
            if n % batch == 0:
                svc.drain()
                if not math.isfinite(svc.pipeline.watermark):
                    continue  # no reading yet: no simulated time either
                now = svc.pipeline.clock.now()
                if now >= next_tick:
                    svc.tick()
                    next_tick = now + tick_s
    svc.drain()
    svc.tick()
    return svc, sensors, time.perf_counter() - started


def _status_time(payload: bytes) -> float:
    try:
        doc = orjson.loads(payload)
    except orjson.JSONDecodeError:
        return -math.inf
    if isinstance(doc, dict) and isinstance(doc.get("ts"), int | float):
        return float(doc["ts"]) / 1000.0
    return -math.inf


def alert_spans(conn: psycopg.Connection[Any]) -> list[Span]:
    """Every stretch of time an alert was open, from its events."""
    rows = conn.execute(
        "SELECT e.alert_id, extract(epoch FROM (e.snapshot->>'updated_at')::timestamptz)::float8,"
        " e.action, a.sensor, a.alert_class"
        " FROM alert_events e JOIN alerts a ON a.id = e.alert_id"
        " WHERE e.action IN ('opened', 'reopened', 'resolved') ORDER BY e.seq"
    ).fetchall()
    open_: dict[int, Span] = {}
    out: list[Span] = []
    for alert_id, t, action, sensor, cls in rows:
        if action == "resolved":
            sp = open_.pop(alert_id, None)
            if sp is not None:
                sp.end = t
        elif alert_id not in open_:
            open_[alert_id] = sp = Span(sensor, cls, t, math.inf)
            out.append(sp)
    return out


def alert_events(conn: psycopg.Connection[Any]) -> list[AlertEvent]:
    rows = conn.execute(
        "SELECT extract(epoch FROM (e.snapshot->>'updated_at')::timestamptz)::float8,"
        " a.sensor, a.metric, a.rule, a.alert_class, e.action"
        " FROM alert_events e JOIN alerts a ON a.id = e.alert_id"
        " WHERE e.action IN ('opened', 'reopened') ORDER BY e.seq"
    ).fetchall()
    return [AlertEvent(*r) for r in rows]


def evaluate(
    dsn: str,
    *,
    duration_s: float,
    sim_args: list[str],
    settings_overrides: dict[str, Any] | None = None,
    pre_s: float = 120.0,
    post_s: float = 900.0,
    keep_db: bool = False,
    workdir: Path | None = None,
    learn_s: float = 7200.0,
    start: float | None = None,
    reuse: bool = False,
) -> Report:
    """Simulate, run the pipeline on a temporary database, and score."""
    if start is None:
        start = math.floor(time.time() - duration_s - 60)
    with tempfile.TemporaryDirectory(prefix="ioc-eval-") as tmp:
        wd = workdir or Path(tmp)
        recorded = wd / "run.json"
        if reuse and recorded.exists():  # the same city again (e.g. other settings)
            run = orjson.loads(recorded.read_bytes())
            start, duration_s = float(run["start"]), float(run["duration_s"])
            messages, truth_path = wd / "messages.tsv", wd / "truth.jsonl"
        else:
            hours = duration_s / 3600
            with TaskProgress(f"simulating {hours:g} h of the city"):
                messages, truth_path = simulate(
                    wd, duration_s=duration_s, start=start, sim_args=sim_args
                )
            recorded.write_bytes(
                orjson.dumps({"start": start, "duration_s": duration_s, "sim_args": sim_args})
            )
        until = start + duration_s
        with temporary_database(dsn, keep=keep_db) as db:
            settings = AnalyticsSettings(
                database_url=db,
                analytics_metrics_port=0,
                analytics_publish_alerts=False,
                analytics_warmup_s=0,
                max_age_days=36_500,
                **(settings_overrides or {}),
            )
            recorder = CrossingRecorder()
            with TaskProgress("analytics on the recorded messages", messages.stat().st_size) as bar:
                svc, sensors, seconds = run_pipeline(
                    settings, messages, until=until, progress=bar.update, observe=recorder
                )
            positions = {
                sid: (m.lat, m.lon)
                for sid, m in svc.ctx.sensors.items()
                if m.lat is not None and m.lon is not None
            }
            try:
                assert svc.db.conn is not None
                events = alert_events(svc.db.conn)
                spans = alert_spans(svc.db.conn)
                IncidentStore(svc.db.conn, settings.incident_config, start_seq=0).run_until_idle()
                load = operator_load(svc.db.conn, start + learn_s, until)
                warnings = read_warnings(svc.db.conn, start + learn_s, until)
            finally:
                svc.close()
            readings = svc.counts["readings"]
        truth = read_truth(truth_path)
    # the first hours teach the detectors what normal is: incidents and alerts in them
    # are left out of the scores
    evaluated_from = start + learn_s
    report = score(
        [t for t in truth if evaluated_from <= t.start < until],
        [e for e in events if evaluated_from <= e.time < until],
        ongoing=[t for t in truth if t.start < evaluated_from <= t.end + post_s],
        sensors=len(sensors),
        days=(until - evaluated_from) / 86_400.0,
        pre_s=pre_s,
        post_s=post_s,
        readings=readings,
        pipeline_s=seconds,
        positions=positions,
        spans=spans,
    )
    report.load = load
    stage = next((st for st in svc.pipeline.stages if isinstance(st, ForecastStage)), None)
    if stage is not None:
        fs = score_forecasts(
            warnings,
            [t for t in truth if evaluated_from <= t.start < until],
            recorder,
            lambda sensor, metric: stage.first_level(sensor, metric, svc.ctx),
            pre_s=pre_s,
            post_s=post_s,
        )
        fs.false_warnings = sum(e.rule.startswith("forecast.") for e in report.false_events)
        fs.sensor_days = report.sensor_days
        report.forecast, report.forecast_text = fs.to_dict(), format_forecasts(fs)
    return report


def scenario_file(workdir: Path, random: dict[str, float], seed: int) -> Path:
    """A scenario (JSON is YAML) that draws incidents and faults at these daily rates."""
    path = workdir / "eval-scenario.json"
    path.write_text(
        orjson.dumps({"version": 1, "name": "eval", "seed": seed, "random": random}).decode()
    )
    return path


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="ioc eval scenario",
        description="Score the live pipeline's alerts against a simulated city's ground truth.",
    )
    p.add_argument("--scenario", help="scenario file or shipped name (default: random incidents)")
    p.add_argument(
        "--random",
        default=",".join(f"{k}={v:g}" for k, v in DEFAULT_RANDOM.items()),
        help="incidents per day by kind when no scenario is given",
    )
    p.add_argument("--duration", default="1d", help="simulated length, e.g. 12h, 2d")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--scale", type=float, default=0.25, help="city size × SCALE")
    p.add_argument("--count", action="append", default=[], help="MODEL=N, passed to the simulator")
    p.add_argument("--dsn", help="PostgreSQL server for a temporary database (IOC_DATABASE_URL)")
    p.add_argument("--keep-db", action="store_true", help="keep the database for inspection")
    p.add_argument("--workdir", type=Path, help="keep the messages and the ground truth here")
    p.add_argument(
        "--reuse",
        action="store_true",
        help="replay the city recorded in --workdir instead of simulating again",
    )
    p.add_argument("--pre", type=float, default=120.0, help="seconds before a start that count")
    p.add_argument("--post", type=float, default=900.0, help="seconds after an end that count")
    p.add_argument(
        "--learn",
        default="2h",
        help="first part of the run that only teaches the detectors (not scored)",
    )
    p.add_argument(
        "--start",
        help="simulated start, RFC 3339 (default: the duration before now); within 30 days",
    )
    p.add_argument(
        "--stages", help="stages to run (IOC_ANALYTICS_STAGES), e.g. rules,series,health"
    )
    p.add_argument("--json", type=Path, help="write the scores as JSON here too")
    args = p.parse_args(sys.argv[1:] if argv is None else argv)
    base = AnalyticsSettings()
    setup_logging("WARNING", base.log_format)
    try:
        duration_s = parse_duration(args.duration)
        learn_s = parse_duration(args.learn)
        if learn_s >= duration_s:
            raise ValueError("--learn must be shorter than --duration")
        start = epoch_seconds(args.start) if args.start else None
        if start is not None and start + duration_s > time.time():
            raise ValueError("--start plus --duration must lie in the past")
        if args.reuse and not args.workdir:
            raise ValueError("--reuse needs --workdir")
        random = {
            k.strip(): float(v)
            for k, _, v in (part.partition("=") for part in args.random.split(",") if part.strip())
        }
    except ValueError as exc:
        print(f"ioc eval scenario: {exc}", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="ioc-eval-") as tmp:
        scenario = args.scenario or str(scenario_file(Path(tmp), random, args.seed))
        sim_args = ["--scenario", scenario, "--seed", str(args.seed), "--scale", str(args.scale)]
        for c in args.count:
            sim_args += ["--count", c]
        started = time.monotonic()
        report = evaluate(
            args.dsn or base.dsn,
            duration_s=duration_s,
            sim_args=sim_args,
            pre_s=args.pre,
            post_s=args.post,
            keep_db=args.keep_db,
            learn_s=learn_s,
            start=start,
            settings_overrides={"analytics_stages": args.stages} if args.stages else None,
            workdir=args.workdir,
            reuse=args.reuse,
        )
    print(format_report(report))
    print(f"(evaluated in {time.monotonic() - started:.0f} s)")
    if args.json:
        args.json.write_text(orjson.dumps(report.to_dict(), option=orjson.OPT_INDENT_2).decode())
    return 0


def parse_duration(text: str) -> float:
    """``90s``, ``45m``, ``12h``, ``2d`` or plain seconds."""
    text = text.strip()
    units = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86_400.0}
    value = float(text[:-1]) * units[text[-1]] if text and text[-1] in units else float(text)
    if value <= 0:
        raise ValueError(f"duration {text!r} must be positive")
    return value
