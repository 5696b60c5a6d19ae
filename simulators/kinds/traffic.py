"""Traffic cameras at intersections and along Hanoi's main roads: counts by class, speed, occupancy, queue."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from core.metrics import KIND_METRICS
from core.types import SensorKind
from simulators import geo, noise
from simulators.models import LAYOUT_SEED, SensorModel, SensorTable, register, sensor_id
from simulators.noise import FloatArray, IntArray

if TYPE_CHECKING:
    from simulators.city import City

_FREE_SPEED = {2: 30.0, 4: 38.0, 6: 46.0, 8: 56.0}  # km/h by road size
_LANE_CAPACITY = 45.0  # vehicles (mostly motorbikes) per minute per lane at capacity


@register
class TrafficCameraModel(SensorModel):
    """An AI camera counting one direction of traffic.

    Flow follows the city's demand profile; speed falls and occupancy and queues
    grow with the volume/capacity ratio (a BPR-style curve); an injected incident
    cuts throughput and speed and fills the road, spreading upstream.
    """

    name = "traffic_camera"
    kind = SensorKind.TRAFFIC_CAMERA
    metrics = KIND_METRICS[SensorKind.TRAFFIC_CAMERA]
    interval_s = 60.0
    default_count = 1873
    id_prefix = "cam"
    decimals: ClassVar[Mapping[str, int]] = {
        "vehicle_count": 0,
        "count_motorbike": 0,
        "count_car": 0,
        "count_bus": 0,
        "count_truck": 0,
        "speed": 1,
        "occupancy": 1,
        "queue_length": 0,
    }

    @classmethod
    def place(cls, n: int, prefix: str = "") -> SensorTable:
        cumlens = [geo.road_length_km(r) for r in geo.ROADS]
        weights = np.array(
            [c[-1] * (r.lanes / 4) ** 0.5 for c, r in zip(cumlens, geo.ROADS, strict=True)]
        )
        cum = np.cumsum(weights) / weights.sum()
        keys = noise.index_keys(noise.key_of(LAYOUT_SEED, cls.name), n)
        u = [noise.uniform(keys, s, 0) for s in range(1, 7)]
        road_idx = np.searchsorted(cum, u[0], side="right").clip(0, len(geo.ROADS) - 1)
        direction = np.where(u[2] < 0.5, 1, -1).astype(np.int64)
        junction = u[3] < 0.4  # snapped to the nearest waypoint: an intersection
        s_km = np.zeros(n)
        lat = np.zeros(n)
        lon = np.zeros(n)
        for r, road in enumerate(geo.ROADS):
            sel = road_idx == r
            if not sel.any():
                continue
            cl = cumlens[r]
            pts = np.array(road.points)
            s = u[1][sel] * cl[-1]
            snapped = cl[np.argmin(np.abs(cl[None, :] - s[:, None]), axis=1)]
            s = np.where(junction[sel], snapped, s)
            s_km[sel] = s
            lat[sel] = np.interp(s, cl, pts[:, 0])
            lon[sel] = np.interp(s, cl, pts[:, 1])
        # a few metres off the centre line, so cameras at one junction do not coincide
        lat = (lat + (u[4] - 0.5) * 0.0004).round(5)
        lon = (lon + (u[5] - 0.5) * 0.0004).round(5)
        district = geo.nearest_districts(lat, lon)
        areas = [geo.DISTRICTS[d].name for d in district]
        names = [
            f"{geo.ROADS[r].name} km {s:.2f} dir {'A' if d > 0 else 'B'}"
            for r, s, d in zip(road_idx.tolist(), s_km.tolist(), direction.tolist(), strict=True)
        ]
        attrs: list[dict[str, Any]] = [
            {
                "road": geo.ROADS[r].name,
                "km": round(s, 3),
                "direction": d,
                "site_type": "junction" if j else "road",
            }
            for r, s, d, j in zip(
                road_idx.tolist(), s_km.tolist(), direction.tolist(), junction.tolist(), strict=True
            )
        ]
        ids = [sensor_id(prefix, cls.id_prefix, i) for i in range(n)]
        lanes = np.array([geo.ROADS[r].lanes for r in road_idx], dtype=np.int64)
        table = SensorTable(cls.kind, ids, names, lat, lon, areas, attrs)
        table.extra.update(
            road=road_idx.astype(np.int64),
            s_km=s_km,
            direction=direction,
            lanes=lanes,
            district=district,
        )
        return table

    def __init__(self, sensors: SensorTable, seed: int, interval_s: float | None = None) -> None:
        super().__init__(sensors, seed, interval_s)
        lanes = sensors.extra.get("lanes", np.full(len(sensors), 4, dtype=np.int64))
        c = self.constant
        self.capacity = lanes / 2 * _LANE_CAPACITY * (0.8 + 0.4 * c("capacity"))  # per minute
        self.v_free = np.array([_FREE_SPEED.get(int(n), 38.0) for n in lanes]) * (
            0.9 + 0.2 * c("vfree")
        )
        self.peak_share = 0.72 + 0.3 * c("peak")  # volume/capacity at the busiest hour
        share = 0.74 + 0.12 * c("motorbike")
        self.shares = {
            "count_motorbike": share,
            "count_car": (1 - share) * 0.80,
            "count_bus": (1 - share) * 0.07,
            "count_truck": (1 - share) * 0.13,
        }

    def values(
        self, t: FloatArray, rng: np.random.Generator, city: City
    ) -> Mapping[str, FloatArray]:
        table = self.sensors
        demand = city.demand(t)
        sev = city.traffic_severity(t, table)
        rain = np.minimum(city.rain(t, table), 20.0)
        x = demand * self.peak_share * np.exp(0.08 * self.smooth("flow", t, 1200.0))
        x_through = x * (1.0 - 0.55 * sev)
        q = self.capacity * (self.interval / 60.0) * x_through
        hour = city.hour(t)
        night = (hour >= 21) | (hour < 6)  # lorries may enter the inner city only at night
        out: dict[str, FloatArray] = {}
        total = np.zeros_like(q)
        for metric, share in self.shares.items():
            s = share * (np.where(night, 3.0, 1.0) if metric == "count_truck" else 1.0)
            lam = q * s
            count = np.maximum(0.0, np.rint(lam + np.sqrt(lam) * self.normal(metric, t)))
            out[metric] = count
            total += count
        out["vehicle_count"] = total
        speed = self.v_free / (1.0 + (x / 0.85) ** 2.5) * (1.0 - 0.03 * rain) * (1.0 - 0.8 * sev)
        out["speed"] = np.maximum(1.0, speed * (1.0 + 0.05 * self.normal("speed", t)))
        occ = 2.0 + 60.0 * (x / 0.9) ** 1.6
        occ = occ + (92.0 - occ) * sev
        out["occupancy"] = occ + 2.0 * self.normal("occupancy", t)
        queue = 15.0 * x + 1800.0 * np.clip(x - 0.6, 0.0, None) ** 1.5 + 900.0 * sev
        out["queue_length"] = np.maximum(0.0, queue * (1.0 + 0.1 * self.normal("queue", t)))
        return out

    def upstream(self, i: int, hops: int, max_km: float = 2.5) -> list[int]:
        """Up to ``hops`` cameras feeding camera ``i`` (same road and direction), nearest first."""
        ex = self.sensors.extra
        road, s, d = ex["road"][i], ex["s_km"][i], ex["direction"][i]
        same: IntArray = np.flatnonzero((ex["road"] == road) & (ex["direction"] == d))
        ahead = (s - ex["s_km"][same]) * d  # > 0: before camera i in the direction of travel
        ok = (ahead >= 0) & (ahead <= max_km) & (same != i)
        cand = same[ok]
        order = np.argsort(ahead[ok], kind="stable")
        return [int(c) for c in cand[order][:hops]]
