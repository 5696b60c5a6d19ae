"""Spatial corroboration: an anomaly shared by neighbouring sensors is an incident, one alone a probable fault.

Neighbours are sensors of the same kind within a per-kind radius (haversine
distance on the registry's lat/lon).  When a stage leaves a signal's
``alert_class`` empty, the corroborator looks at the anomalies it has seen from
the neighbours within ``window_s`` of it: at least ``min_agree`` of them make it
an ``INCIDENT`` (a jam spreading upstream, a regional pollution episode, a
flood), none a ``PROBABLE_FAULT`` (the device).  The first sensor of a spreading
incident starts out as a probable fault; when a neighbour joins, the
corroborator also returns an upgrade for it, and the lifecycle turns its alert
into an incident.  The evidence lists the neighbours and who agreed.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from analytics.engine.base import Signal
from core.types import AlertClass, Sensor, SensorKind

EARTH_RADIUS_KM = 6371.0088

RADIUS_KM: dict[SensorKind, float] = {
    SensorKind.TRAFFIC_CAMERA: 1.5,  # a jam spreads along a corridor, junction to junction
    SensorKind.AIR_QUALITY: 10.0,  # pollution episodes are regional
    SensorKind.WATER_LEVEL: 3.0,  # one rain cell floods neighbouring streets
    SensorKind.WEATHER: 20.0,  # hill stations are far apart
    SensorKind.NOISE: 1.0,
    SensorKind.GENERIC: 1.0,
}


def parse_radius(text: str) -> dict[SensorKind, float]:
    """``traffic_camera=1.5,air_quality=10`` over the defaults."""
    out = dict(RADIUS_KM)
    for part in filter(None, (p.strip() for p in text.split(","))):
        kind, _, km = part.partition("=")
        out[SensorKind(kind.strip())] = float(km)
    return out


def haversine_km(lat1: Any, lon1: Any, lat2: Any, lon2: Any) -> Any:
    """Great-circle distance in km (numpy broadcasting)."""
    p1, p2 = np.radians(lat1), np.radians(lat2)
    dp = p2 - p1
    dl = np.radians(np.asarray(lon2) - np.asarray(lon1))
    a = np.sin(dp / 2) ** 2 + np.cos(p1) * np.cos(p2) * np.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_KM * np.arcsin(np.sqrt(np.minimum(a, 1.0)))


@dataclass(frozen=True, slots=True)
class Upgrade:
    """An earlier probable fault of ``sensor`` is now corroborated: make it an incident."""

    sensor: str
    time: float
    evidence: dict[str, Any]


class Corroborator:
    """Remembers recent anomalies per sensor and classifies new ones by their neighbours."""

    def __init__(
        self,
        window_s: float = 1800.0,
        min_agree: int = 1,
        radius_km: Mapping[SensorKind, float] | None = None,
        max_neighbours: int = 20,
    ) -> None:
        self.window_s = window_s
        self.min_agree = min_agree
        self.radius_km = dict(RADIUS_KM if radius_km is None else radius_km)
        self.max_neighbours = max_neighbours
        self.neighbours: dict[str, list[tuple[str, float]]] = {}
        self._recent: dict[str, dict[str, float]] = {}  # sensor -> metric -> last anomaly time
        self._faults: dict[str, float] = {}  # sensors with an uncorroborated anomaly -> time
        self._registry_sig: tuple[int, int] = (0, -1)
        self._kinds: dict[str, SensorKind] = {}

    # -- the neighbour graph --------------------------------------------------------

    def set_registry(self, sensors: Mapping[str, Sensor]) -> None:
        """Rebuild neighbour lists when the registry changed."""
        sig = (id(sensors), len(sensors))
        if sig == self._registry_sig:
            return
        self._registry_sig = sig
        self._kinds = {s.id: s.kind for s in sensors.values()}
        by_kind: dict[SensorKind, list[Sensor]] = {}
        for s in sensors.values():
            if s.lat is not None and s.lon is not None:
                by_kind.setdefault(s.kind, []).append(s)
        self.neighbours = {}
        for kind, group in by_kind.items():
            self.neighbours.update(self._graph(group, self.radius_km.get(kind, 1.0)))

    def _graph(self, group: list[Sensor], radius: float) -> dict[str, list[tuple[str, float]]]:
        ids = [s.id for s in group]
        lat = np.array([s.lat for s in group], dtype=np.float64)
        lon = np.array([s.lon for s in group], dtype=np.float64)
        order = np.argsort(lat)
        lat_s, lon_s = lat[order], lon[order]
        dlat = math.degrees(radius / EARTH_RADIUS_KM)
        lo = np.searchsorted(lat_s, lat_s - dlat, side="left")
        hi = np.searchsorted(lat_s, lat_s + dlat, side="right")
        out: dict[str, list[tuple[str, float]]] = {}
        for i in range(len(ids)):
            cand = np.arange(lo[i], hi[i])
            cand = cand[cand != i]
            if cand.size == 0:
                out[ids[order[i]]] = []
                continue
            dist = haversine_km(lat_s[i], lon_s[i], lat_s[cand], lon_s[cand])
            near = dist <= radius
            c, d = cand[near], dist[near]
            keep = np.argsort(d)[: self.max_neighbours]
            out[ids[order[i]]] = [(ids[order[c[k]]], round(float(d[k]), 3)) for k in keep]
        return out

    # -- anomalies ---------------------------------------------------------------------

    def observe(self, sensor: str, metric: str, t: float) -> None:
        """An anomaly known from elsewhere (e.g. another partition's alert in the database)."""
        mine = self._recent.setdefault(sensor, {})
        mine[metric] = max(t, mine.get(metric, -math.inf))

    def _agreeing(self, sensor: str, t: float) -> tuple[list[dict[str, Any]], list[str]]:
        listed = []
        agree = []
        for other, dist in self.neighbours.get(sensor, []):
            seen = self._recent.get(other)
            when = max(seen.values()) if seen else None
            ok = when is not None and abs(t - when) <= self.window_s
            listed.append({"sensor": other, "distance_km": dist, "anomalous": ok})
            if ok:
                agree.append(other)
        return listed, agree

    def classify(self, signals: Iterable[Signal]) -> tuple[list[Signal], list[Upgrade]]:
        """Fill ``alert_class`` where a stage left it empty; return upgrades for earlier faults."""
        out: list[Signal] = []
        upgrades: list[Upgrade] = []
        for sig in signals:
            if sig.alert_class is not None or not sig.active:
                if sig.alert_class is None:
                    sig = replace(sig, alert_class=AlertClass.PROBABLE_FAULT)
                out.append(sig)
                continue
            self.observe(sig.sensor, sig.metric, sig.time)
            listed, agree = self._agreeing(sig.sensor, sig.time)
            kind = self._kinds.get(sig.sensor)
            radius = self.radius_km.get(kind, 1.0) if kind else None
            incident = len(agree) >= self.min_agree
            if incident:
                text = (
                    f"{len(agree)} of {len(listed)} neighbouring sensors within {radius:g} km "
                    "show anomalies too: likely an incident"
                )
            elif listed:
                text = (
                    f"none of {len(listed)} neighbouring sensors within {radius:g} km "
                    "shows an anomaly: probably the device"
                )
            else:
                text = "no neighbouring sensor of the same kind to compare with"
            evidence = {
                **sig.evidence,
                "corroboration": text,
                "neighbours": listed,
                "agreeing": agree,
                "radius_km": radius,
                "window_s": self.window_s,
            }
            cls = AlertClass.INCIDENT if incident else AlertClass.PROBABLE_FAULT
            out.append(replace(sig, alert_class=cls, evidence=evidence))
            if incident:
                for other in agree:
                    if other in self._faults:
                        del self._faults[other]
                        o_listed, o_agree = self._agreeing(other, sig.time)
                        upgrades.append(
                            Upgrade(
                                other,
                                sig.time,
                                {
                                    "corroboration": f"corroborated by {sig.sensor} and "
                                    f"{max(len(o_agree) - 1, 0)} more neighbour(s): likely an "
                                    "incident",
                                    "neighbours": o_listed,
                                    "agreeing": o_agree,
                                },
                            )
                        )
                self._faults.pop(sig.sensor, None)
            else:
                self._faults[sig.sensor] = sig.time
        return out, upgrades

    def prune(self, now: float) -> None:
        """Forget anomalies older than the window."""
        horizon = now - self.window_s
        for sensor in list(self._recent):
            metrics = self._recent[sensor]
            for m in [m for m, t in metrics.items() if t < horizon]:
                del metrics[m]
            if not metrics:
                del self._recent[sensor]
        for sensor in [s for s, t in self._faults.items() if t < horizon]:
            del self._faults[sensor]

    def get_state(self) -> dict[str, Any]:
        return {"recent": self._recent, "faults": self._faults}

    def set_state(self, state: Mapping[str, Any]) -> None:
        self._recent = {s: dict(m) for s, m in state.get("recent", {}).items()}
        self._faults = dict(state.get("faults", {}))
