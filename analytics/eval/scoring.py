"""Scoring of a scenario run: ground truth, alert spans, per-kind detection rate, delay, class, false alerts."""

from __future__ import annotations

import math
import statistics
from collections import Counter, defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from analytics.alerts.spatial import haversine_km
from core.operator_load import Load, format_load

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
    load: list[Load] = field(default_factory=list)  # alerts and incidents, ISA-18.2
    forecast: dict[str, Any] | None = None  # predictive warnings (analytics.eval.forecast_score)
    forecast_text: str = ""

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
            "operator_load": {x.what: x.to_dict() for x in self.load},
            "forecast": self.forecast,
            "missed": [
                {
                    "id": t.id,
                    "kind": t.kind,
                    "sensors": sorted(t.sensors),
                    "start": iso_time(t.start),
                    "end": iso_time(t.end),
                }
                for t in self.missed
            ],
            "false": [
                {
                    "time": iso_time(e.time),
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


def iso_time(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).isoformat()


def epoch_seconds(text: str) -> float:
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
                start=epoch_seconds(doc["start"]),
                end=epoch_seconds(doc["end"]),
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
    if r.forecast_text:
        lines.append(r.forecast_text)
    if r.load:
        lines.append(format_load(r.load))
    return "\n".join(lines)
