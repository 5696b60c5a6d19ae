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
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import psycopg
from psycopg.conninfo import make_conninfo

from analytics.config import AnalyticsSettings
from analytics.service import AnalyticsService
from analytics.spatial import haversine_km
from core.logs import setup_logging

DEFAULT_RANDOM = {
    "traffic_incident": 6.0,
    "pollution_episode": 1.0,
    "flash_flood": 2.0,
    "fire_weather": 1.0,
    "sensor_fault": 6.0,
}
INCIDENT_CLASSES = frozenset({"incident", "threshold"})
FAULT_CLASSES = frozenset({"probable_fault", "device"})


@dataclass(slots=True)
class Truth:
    id: str
    kind: str  # incident kind, or sensor_fault.<fault>
    sensors: frozenset[str]
    start: float
    end: float
    lat: float | None = None
    lon: float | None = None
    radius_km: float | None = None

    @property
    def is_fault(self) -> bool:
        return self.kind.startswith("sensor_fault")


@dataclass(slots=True)
class AlertEvent:
    time: float
    sensor: str
    metric: str
    rule: str
    alert_class: str
    action: str


@dataclass(slots=True)
class Span:
    """One alert from opening (or reopening) until it resolved (inf: still active)."""

    sensor: str
    alert_class: str
    start: float
    end: float


@dataclass(slots=True)
class KindScore:
    injected: int = 0
    detected: int = 0
    delays: list[float] = field(default_factory=list)
    right_class: int = 0
    matched_alerts: int = 0
    already: int = 0  # alerted only by an alert already open on its sensor (no delay)

    @property
    def rate(self) -> float:
        return self.detected / self.injected if self.injected else math.nan

    @property
    def median_delay_s(self) -> float:
        return statistics.median(self.delays) if self.delays else math.nan


@dataclass(slots=True)
class Report:
    kinds: dict[str, KindScore]
    false_alerts: int
    false_by_rule: Counter[str]
    sensors: int
    days: float
    alerts: int
    readings: int
    pipeline_s: float
    missed: list[Truth] = field(default_factory=list)
    false_events: list[AlertEvent] = field(default_factory=list)

    @property
    def sensor_days(self) -> float:
        return self.sensors * self.days

    @property
    def false_per_100_sensor_days(self) -> float:
        return 100.0 * self.false_alerts / self.sensor_days if self.sensor_days else math.nan

    @property
    def detection_rate(self) -> float:
        inj = sum(k.injected for k in self.kinds.values())
        return sum(k.detected for k in self.kinds.values()) / inj if inj else math.nan

    def to_dict(self) -> dict[str, Any]:
        return {
            "detection_rate": self.detection_rate,
            "false_alerts": self.false_alerts,
            "false_per_100_sensor_days": self.false_per_100_sensor_days,
            "sensors": self.sensors,
            "days": self.days,
            "alerts": self.alerts,
            "readings": self.readings,
            "pipeline_readings_per_s": self.readings / self.pipeline_s if self.pipeline_s else None,
            "false_by_rule": dict(self.false_by_rule.most_common()),
            "missed": [
                {
                    "id": t.id,
                    "kind": t.kind,
                    "sensors": sorted(t.sensors),
                    "start": _iso(t.start),
                    "end": _iso(t.end),
                }
                for t in self.missed
            ],
            "false": [
                {
                    "time": _iso(e.time),
                    "sensor": e.sensor,
                    "metric": e.metric,
                    "rule": e.rule,
                    "alert_class": e.alert_class,
                    "action": e.action,
                }
                for e in self.false_events
            ],
            "kinds": {
                k: {
                    "injected": s.injected,
                    "detected": s.detected,
                    "rate": s.rate,
                    "median_delay_s": s.median_delay_s,
                    "right_class": s.right_class / s.matched_alerts if s.matched_alerts else None,
                    "already_alerted": s.already,
                }
                for k, s in sorted(self.kinds.items())
            },
        }


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).isoformat()


def _epoch(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def read_truth(path: Path) -> list[Truth]:
    out = []
    for line in path.read_text("utf-8").splitlines():
        if not line.strip():
            continue
        doc = orjson.loads(line)
        kind = doc["kind"]
        if doc.get("fault"):
            kind = f"{kind}.{doc['fault']}"
        out.append(
            Truth(
                id=str(doc.get("id", "")),
                kind=kind,
                sensors=frozenset(doc["sensors"]),
                start=_epoch(doc["start"]),
                end=_epoch(doc["end"]),
                lat=doc.get("lat"),
                lon=doc.get("lon"),
                radius_km=doc.get("radius_km"),
            )
        )
    return out


def score(
    truth: list[Truth],
    events: list[AlertEvent],
    *,
    sensors: int,
    days: float,
    pre_s: float = 120.0,
    post_s: float = 900.0,
    readings: int = 0,
    pipeline_s: float = 0.0,
    positions: Mapping[str, tuple[float, float]] | None = None,
    ongoing: list[Truth] | None = None,
    spans: list[Span] | None = None,
) -> Report:
    """Match alert events to injected incidents and faults.

    An incident with a place and radius (a flash flood's storm) also acts on the other
    sensors within 1.5 radii (where the simulator's effect fades out): their alerts in
    its time window are not counted as false, though only the listed sensors count
    for its detection.  ``ongoing`` incidents (begun before the scored period, e.g. a
    day-long pollution episode) are not scored, but their alerts are not false either.
    An incident with no new alert whose sensor already had a matching alert open at
    its start (a second storm over streets still flooded by the first) counts as
    alerted, without a delay, and is counted in ``already``.
    """
    spans_by_sensor: dict[str, list[Span]] = defaultdict(list)
    for sp in spans or []:
        spans_by_sensor[sp.sensor].append(sp)
    kinds: dict[str, KindScore] = defaultdict(KindScore)
    by_sensor: dict[str, list[Truth]] = defaultdict(list)
    for tr in truth:
        kinds[tr.kind].injected += 1
    for tr in [*truth, *(ongoing or [])]:
        for s in tr.sensors:
            by_sensor[s].append(tr)
        if positions and tr.lat is not None and tr.lon is not None and tr.radius_km:
            for s, (lat, lon) in positions.items():
                if s not in tr.sensors and haversine_km(lat, lon, tr.lat, tr.lon) <= (
                    1.5 * tr.radius_km
                ):
                    by_sensor[s].append(tr)
    missed: list[Truth] = []
    for tr in truth:
        ks = kinds[tr.kind]
        lo, hi = tr.start - pre_s, tr.end + post_s
        matched = [
            e
            for e in events
            if e.sensor in tr.sensors
            and lo <= e.time <= hi
            and (tr.is_fault or e.alert_class != "device")
        ]
        if not matched:
            good = FAULT_CLASSES | INCIDENT_CLASSES if tr.is_fault else INCIDENT_CLASSES
            if any(
                sp.start < lo and sp.end >= tr.start and sp.alert_class in good
                for sensor in tr.sensors
                for sp in spans_by_sensor[sensor]
            ):
                ks.detected += 1
                ks.already += 1
            else:
                missed.append(tr)
            continue
        ks.detected += 1
        ks.delays.append(max(0.0, min(e.time for e in matched) - tr.start))
        good = FAULT_CLASSES if tr.is_fault else INCIDENT_CLASSES
        ks.matched_alerts += len(matched)
        ks.right_class += sum(e.alert_class in good for e in matched)
    false = [
        e
        for e in events
        if not any(tr.start - pre_s <= e.time <= tr.end + post_s for tr in by_sensor[e.sensor])
    ]
    return Report(
        kinds=dict(kinds),
        false_alerts=len(false),
        false_by_rule=Counter(f"{e.rule} ({e.alert_class})" for e in false),
        sensors=sensors,
        days=days,
        alerts=len(events),
        readings=readings,
        pipeline_s=pipeline_s,
        missed=missed,
        false_events=false,
    )


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
) -> tuple[AnalyticsService, set[str], float]:
    """Feed the recorded messages through the service; return it, the sensors with data, seconds."""
    svc = AnalyticsService(settings)
    svc.prepare()
    sensors: set[str] = set()
    started = time.perf_counter()
    next_tick = -math.inf
    n = 0
    with messages.open("rb") as fh:
        for line in fh:
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
            svc, sensors, seconds = run_pipeline(settings, messages, until=until)
            positions = {
                sid: (m.lat, m.lon)
                for sid, m in svc.ctx.sensors.items()
                if m.lat is not None and m.lon is not None
            }
            try:
                assert svc._conn is not None
                events = alert_events(svc._conn)
                spans = alert_spans(svc._conn)
            finally:
                svc.close()
            readings = svc.counts["readings"]
        truth = read_truth(truth_path)
    # the first hours teach the detectors what normal is: incidents and alerts in them
    # are left out of the scores
    evaluated_from = start + learn_s
    return score(
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


def format_report(r: Report) -> str:
    lines = [
        f"{'kind':<28} {'injected':>8} {'alerted':>8} {'rate':>7} {'median delay':>13} {'right class':>11}",
    ]
    for kind, s in sorted(r.kinds.items()):
        delay = "-" if math.isnan(s.median_delay_s) else f"{s.median_delay_s / 60:.1f} min"
        right = f"{100 * s.right_class / s.matched_alerts:.0f} %" if s.matched_alerts else "-"
        if s.already:
            right += f" ({s.already} already alerted)"
        lines.append(
            f"{kind:<28} {s.injected:>8} {s.detected:>8} {100 * s.rate:>6.1f}% {delay:>13} {right:>11}"
        )
    lines.append(f"all incidents and faults: {100 * r.detection_rate:.1f} % alerted (goal >= 95 %)")
    lines.append(
        f"false alerts: {r.false_alerts} over {r.sensors} sensors x {r.days:.2f} days = "
        f"{r.false_per_100_sensor_days:.2f} per 100 sensor-days (goal <= 1)"
    )
    for rule, n in r.false_by_rule.most_common(8):
        lines.append(f"  false {rule}: {n}")
    if r.pipeline_s:
        lines.append(
            f"pipeline: {r.readings:,} readings in {r.pipeline_s:.1f} s "
            f"({r.readings / r.pipeline_s:,.0f} readings/s), {r.alerts} alerts opened or reopened"
        )
    return "\n".join(lines)


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
        start = _epoch(args.start) if args.start else None
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
