"""The correlator's grouping: alert snapshots in seq order become incidents (no I/O here).

An alert joins an active incident of the same hazard whose last activity lies within
``window_s`` of the alert and that holds a neighbouring sensor: the same sensor (a
station's PM2.5, PM10 and AQI alerts), the same area (district, ward), or one within
``radius_km``.  A device's faults form one incident per device.  An alert that matches
nothing opens a new incident.  An incident is resolved once none of its alerts is
active; its severity is the highest of its alerts.

An alert that is also a neighbour of other active incidents of its hazard bridges them:
they merge into the oldest (the first stored), which takes their alerts; the others are
closed as merged into it (``Incident.absorbed``, written by the store).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from analytics.alerts.geometry import area_polygon, distance_km
from analytics.alerts.hazards import DEVICE_FAULT, Peak, Titles, hazard_of, lower_is_worse, titles

_RANK = {"info": 0, "warning": 1, "critical": 2}
# the metric an incident's title quotes first, per hazard
_TITLE_METRICS = {
    "air_pollution": ("pm25", "pm10", "aqi_vn", "aqi_us", "no2", "o3", "so2", "co"),
    "flooding": ("water_level", "rainfall"),
    "traffic": ("speed", "queue_length", "occupancy"),
    "fire_weather": ("fire_risk",),
}


def _time(v: Any) -> datetime:
    if isinstance(v, datetime):
        return v if v.tzinfo else v.replace(tzinfo=UTC)
    return datetime.fromisoformat(str(v))


def _opt_time(v: Any) -> datetime | None:
    return None if v is None else _time(v)


@dataclass(slots=True)
class Member:
    """An alert as the correlator sees it (from an ``alert_events`` snapshot or an ``alerts`` row)."""

    id: int
    sensor: str
    metric: str
    rule: str
    kind: str
    alert_class: str
    severity: str
    status: str
    value: float | None
    score: float | None
    lat: float | None
    lon: float | None
    area: str
    opened_at: datetime
    time: datetime  # updated_at: the time of its newest reading
    resolved_at: datetime | None
    suppressed: bool

    @classmethod
    def from_row(cls, r: Mapping[str, Any]) -> Member:
        return cls(
            id=int(r["id"]),
            sensor=str(r["sensor"]),
            metric=str(r["metric"]),
            rule=str(r["rule"]),
            kind=str(r.get("kind", "")),
            alert_class=str(r.get("alert_class", "")),
            severity=str(r["severity"]),
            status=str(r["status"]),
            value=r.get("value"),
            score=r.get("score"),
            lat=r.get("lat"),
            lon=r.get("lon"),
            area=str(r.get("area") or ""),
            opened_at=_time(r["opened_at"]),
            time=_time(r.get("updated_at") or r["opened_at"]),
            resolved_at=_opt_time(r.get("resolved_at")),
            suppressed=r.get("suppressed_by") is not None,
        )

    @property
    def active(self) -> bool:
        return self.status != "resolved" and not self.suppressed

    @property
    def hazard(self) -> str:
        return hazard_of(
            {"rule": self.rule, "metric": self.metric, "alert_class": self.alert_class}
        )


@dataclass(frozen=True, slots=True)
class Summary:
    """What an incident row holds besides its identity and lifecycle."""

    severity: str
    titles: Titles
    sensors: list[str]
    areas: list[str]
    kinds: list[str]
    polygon: list[tuple[float, float]] | None
    peak: Peak | None
    alert_count: int
    active_alerts: int
    first_seen: datetime
    last_seen: datetime
    resolved: bool
    resolved_at: datetime | None


@dataclass(slots=True)
class Incident:
    """An incident the correlator follows; ``id`` is None until it is stored."""

    hazard: str
    group_key: str
    id: int | None = None
    stored_severity: str = "info"
    members: dict[int, Member] = field(default_factory=dict)
    joined: set[int] = field(default_factory=set)  # alert ids not yet stored as members
    dirty: bool = False
    order: int = 0  # creation order among the unstored (the stored are older)
    # stored incidents merged into this one, not yet closed in the table, with the time
    absorbed: list[tuple[Incident, datetime]] = field(default_factory=list)

    @property
    def last_seen(self) -> datetime:
        return max(m.time for m in self.members.values())

    def add(self, m: Member) -> None:
        if m.id not in self.members:
            self.joined.add(m.id)
        self.members[m.id] = m
        self.dirty = True

    def near(self, m: Member, radius_km: float) -> bool:
        for o in self.members.values():
            if o.sensor == m.sensor or (m.area and o.area == m.area):
                return True
            if (
                None not in (o.lat, o.lon, m.lat, m.lon)
                and distance_km(o.lat, o.lon, m.lat, m.lon) <= radius_km  # type: ignore[arg-type]
            ):
                return True
        return False

    def summary(self) -> Summary:
        ms = list(self.members.values())
        severity = max((m.severity for m in ms), key=lambda s: _RANK.get(s, 0))
        sensors = sorted({m.sensor for m in ms})
        areas = sorted({m.area for m in ms if m.area})
        kinds = sorted({m.kind for m in ms if m.kind})
        where: dict[str, tuple[float, float]] = {}
        for m in ms:
            if m.lat is not None and m.lon is not None:
                where[m.sensor] = (m.lat, m.lon)
        peak = self._peak(ms, severity)
        metrics = [m for m, _ in Counter(x.metric for x in ms).most_common()]
        active = sum(1 for m in ms if m.active)
        resolved_at = max((m.resolved_at or m.time for m in ms), default=None)
        return Summary(
            severity=severity,
            titles=titles(self.hazard, sensors, areas, peak, metrics),
            sensors=sensors,
            areas=areas,
            kinds=kinds,
            polygon=area_polygon(where.values()),
            peak=peak,
            alert_count=len(ms),
            active_alerts=active,
            first_seen=min(m.opened_at for m in ms),
            last_seen=max(m.time for m in ms),
            resolved=active == 0,
            resolved_at=resolved_at if active == 0 else None,
        )

    def _peak(self, ms: list[Member], severity: str) -> Peak | None:
        worst = [m for m in ms if m.severity == severity]
        present = {m.metric for m in worst}
        metric = next((x for x in _TITLE_METRICS.get(self.hazard, ()) if x in present), None)
        if metric is None:
            metric = max(worst, key=lambda m: m.score or 0.0).metric
        values = [m.value for m in ms if m.metric == metric and m.value is not None]
        if not values:
            return Peak(metric, None)
        return Peak(metric, min(values) if lower_is_worse(metric) else max(values))


# regional hazards reach further than a street's flooding or a junction's jam
DEFAULT_RADII = {"air_pollution": 15.0, "fire_weather": 20.0, "severe_weather": 15.0}


@dataclass(frozen=True, slots=True)
class CorrelatorConfig:
    radius_km: float = 3.0
    window_s: float = 1800.0
    radii: Mapping[str, float] = field(default_factory=lambda: dict(DEFAULT_RADII))

    def radius(self, hazard: str) -> float:
        """Neighbours for this hazard: its own radius, never less than ``radius_km``."""
        return max(self.radius_km, self.radii.get(hazard, 0.0))


def parse_radii(text: str) -> dict[str, float]:
    """``air_pollution=15,fire_weather=20`` as a dict (ValueError on a bad entry)."""
    out = {}
    for part in text.split(","):
        if not part.strip():
            continue
        name, sep, value = part.partition("=")
        km = float(value)
        if not sep or not name.strip() or not 0 < km <= 100:
            raise ValueError(f"incident radius {part.strip()!r}: want hazard=km (0-100)")
        out[name.strip()] = km
    return out


class Correlator:
    """Groups alerts into incidents; ``observe`` each snapshot in seq order, then store ``dirty()``."""

    def __init__(self, config: CorrelatorConfig, incidents: Iterable[Incident] = ()) -> None:
        self.config = config
        self.incidents: list[Incident] = []
        self.by_alert: dict[int, Incident] = {}
        self._made = 0
        for inc in incidents:
            self.incidents.append(inc)
            for aid in inc.members:
                self.by_alert[aid] = inc

    def observe(self, snapshot: Mapping[str, Any]) -> Incident | None:
        """Apply one alert snapshot; return the incident it belongs to (None: it joins none)."""
        m = Member.from_row(snapshot)
        inc = self.by_alert.get(m.id)
        if inc is not None:
            inc.add(m)
            return self._bridge(inc, m) if m.active else inc
        if not m.active:
            return None
        hazard = m.hazard
        found = self._matches(m, hazard)
        if not found:
            self._made += 1
            inc = Incident(
                hazard=hazard,
                group_key=m.sensor if hazard == DEVICE_FAULT else "",
                order=self._made,
            )
            self.incidents.append(inc)
        else:
            inc = max(found, key=lambda i: len(i.members))
        inc.add(m)
        self.by_alert[m.id] = inc
        return self._bridge(inc, m) if len(found) > 1 else inc

    def _matches(self, m: Member, hazard: str, besides: Incident | None = None) -> list[Incident]:
        """The active incidents of ``hazard`` that ``m`` may join (a device: its own only)."""
        out = []
        for inc in self.incidents:
            if inc is besides or inc.hazard != hazard:
                continue
            if not any(x.active for x in inc.members.values()):
                continue
            if hazard == DEVICE_FAULT:
                if inc.group_key == m.sensor:
                    return [inc]
                continue
            if (m.time - inc.last_seen).total_seconds() > self.config.window_s:
                continue
            if inc.near(m, self.config.radius(hazard)):
                out.append(inc)
        return out

    def _bridge(self, inc: Incident, m: Member) -> Incident:
        """Merge every other incident ``m`` is a neighbour of with ``inc``; return the survivor."""
        if inc.hazard == DEVICE_FAULT:
            return inc
        others = self._matches(m, inc.hazard, besides=inc)
        if not others:
            return inc
        group = [inc, *others]
        survivor = min(group, key=_age)
        for other in group:
            if other is not survivor:
                self._absorb(survivor, other, m.time)
        return survivor

    def _absorb(self, survivor: Incident, other: Incident, at: datetime) -> None:
        for aid, member in other.members.items():
            survivor.members[aid] = member
            survivor.joined.add(aid)
            self.by_alert[aid] = survivor
        survivor.absorbed.extend(other.absorbed)
        if other.id is not None:
            survivor.absorbed.append((other, at))
        survivor.dirty = True
        self.incidents.remove(other)

    def dirty(self) -> list[Incident]:
        return [inc for inc in self.incidents if inc.dirty]

    def settle(self) -> None:
        """After the dirty incidents were stored: forget the resolved ones."""
        keep = []
        for inc in self.incidents:
            inc.dirty = False
            inc.joined.clear()
            inc.absorbed.clear()
            if any(m.active for m in inc.members.values()):
                keep.append(inc)
            else:
                for aid in inc.members:
                    self.by_alert.pop(aid, None)
        self.incidents = keep


def _age(inc: Incident) -> tuple[bool, int]:
    """Older first: the stored by id, then the new ones in the order they were made."""
    return (inc.id is None, inc.id if inc.id is not None else inc.order)


def escalated(old: str, new: str) -> bool:
    return _RANK.get(new, 0) > _RANK.get(old, 0)
