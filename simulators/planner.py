"""Turns scenario incident entries and random rates into concrete incidents on concrete sensors.

Scenario entries are resolved once, at start (a sensor that does not exist is a
``ScenarioError`` naming the entry's line).  Random incidents are drawn per
Hanoi calendar day from (seed, kind, day), so the same seed injects the same
incidents whatever the start time or pace of the run.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from core.errors import ScenarioError
from simulators import geo, noise
from simulators.city import DAY_S, TZ_OFFSET_S
from simulators.faults import DEFAULT_SIZE, typical
from simulators.incidents import (
    EXPECTED,
    FAULT_DIRECTION,
    TARGET_MODEL,
    FaultKind,
    Incident,
    IncidentKind,
)
from simulators.models import SensorModel
from simulators.scenario import IncidentSpec, Scenario


class Planner:
    def __init__(
        self, models: Mapping[str, SensorModel], scenario: Scenario, seed: int, sim_start: float
    ) -> None:
        self.models = dict(models)
        self.scenario = scenario
        self.seed = seed
        self.sim_start = sim_start
        self._days_done: set[int] = set()
        self._fixed_done = False
        self.owner: dict[str, str] = {}  # sensor id -> model name
        for name, m in self.models.items():
            for s in m.sensors.ids:
                self.owner[s] = name

    # --- public ----------------------------------------------------------------------

    def until(self, t: float) -> list[Incident]:
        """Incidents not handed out yet that may act before ``t`` (call with growing ``t``)."""
        out: list[Incident] = []
        if not self._fixed_done:
            self._fixed_done = True
            out += [self.resolve(spec, i) for i, spec in enumerate(self.scenario.incidents)]
        if self.scenario.random:
            first = self._day(self.sim_start) - 2  # long incidents begun before the start
            for day in range(first, self._day(t) + 1):
                if day not in self._days_done:
                    self._days_done.add(day)
                    out += self.random_day(day)
        return out

    @staticmethod
    def _day(t: float) -> int:
        """Hanoi calendar day number (days since 1970-01-01 local)."""
        return int((t + TZ_OFFSET_S) // DAY_S)

    def resolve(self, spec: IncidentSpec, index: int) -> Incident:
        where = f"{self.scenario.path}: line {spec.line}: incidents[{index}]"
        start = spec.start(self.sim_start)
        inc = Incident(
            id=f"scn-{index + 1:03d}",
            kind=spec.kind,
            start=start,
            end=start + spec.duration_s,
            ramp_s=0.0,
            magnitude=0.0,
            fault=spec.fault,
            source="scenario",
            line=spec.line,
        )
        self._fill(
            inc,
            spec.params,
            where,
            sensor=spec.sensor,
            near=spec.near,
            area=spec.area,
            metrics=spec.metrics,
            rng=None,
        )
        return inc

    def random_day(self, day: int) -> list[Incident]:
        out: list[Incident] = []
        day_start = day * DAY_S - TZ_OFFSET_S  # Hanoi midnight
        for kind, rate in sorted(self.scenario.random.items()):
            if (
                TARGET_MODEL.get(kind, "") not in self.models
                and kind is not IncidentKind.SENSOR_FAULT
            ):
                continue
            rng = np.random.default_rng(noise.key_of(self.seed, "random", kind.value, day))
            for j in range(int(rng.poisson(rate))):
                inc = self._random_one(kind, rng, day_start)
                for _ in range(5):  # a second fault on a faulty device may show nothing at
                    if not _overlaps(inc, out):  # all (a dropout while it is offline)
                        break
                    inc = self._random_one(kind, rng, day_start)
                inc.id = f"rnd-{day}-{kind.value}-{j + 1}"
                out.append(inc)
        return out

    # --- drawing -------------------------------------------------------------------------

    def _random_one(
        self, kind: IncidentKind, rng: np.random.Generator, day_start: float
    ) -> Incident:
        params: dict[str, float] = {}
        fault: FaultKind | None = None
        if kind is IncidentKind.TRAFFIC_INCIDENT:
            start = day_start + rng.uniform(5, 23) * 3600
            duration = rng.uniform(15, 90) * 60
            params["severity"] = rng.uniform(0.6, 0.95)
        elif kind is IncidentKind.POLLUTION_EPISODE:
            start = day_start + rng.uniform(0, 24) * 3600
            duration = rng.uniform(8, 36) * 3600
            params["factor"] = rng.uniform(1.8, 3.5)
        elif kind is IncidentKind.FLASH_FLOOD:
            start = day_start + rng.uniform(12, 22) * 3600  # afternoon and evening storms
            duration = rng.uniform(45, 120) * 60
            params["rain_mm_h"] = rng.uniform(50, 100)
        elif kind is IncidentKind.FIRE_WEATHER:
            start = day_start + rng.uniform(9, 11) * 3600
            duration = rng.uniform(6, 9) * 3600
        else:
            fault = FaultKind(rng.choice([f.value for f in FaultKind]))
            start = day_start + rng.uniform(0, 24) * 3600
            duration = rng.uniform(10, 360) * 60
        inc = Incident(
            id="",
            kind=kind,
            start=start,
            end=start + duration,
            ramp_s=0.0,
            magnitude=0.0,
            fault=fault,
            source="random",
        )
        self._fill(
            inc,
            params,
            f"random {kind.value}",
            sensor=None,
            near=None,
            area=None,
            metrics=(),
            rng=rng,
        )
        return inc

    def _pick(
        self, model: str, rng: np.random.Generator | None, area: str | None, where: str
    ) -> int:
        table = self.models[model].sensors
        cand = np.arange(len(table))
        if area is not None:
            cand = np.array([i for i, a in enumerate(table.areas) if a == area], dtype=np.int64)
            if not len(cand):
                raise ScenarioError(f"{where}: no {model} sensor in {area}")
        if rng is None:
            rng = np.random.default_rng(noise.key_of(self.seed, where))
        return int(cand[int(rng.integers(len(cand)))])

    def _nearest(self, model: str, lat: float, lon: float) -> int:
        table = self.models[model].sensors
        return int(np.argmin(geo.km_between(table.lat, table.lon, lat, lon)))

    def _model_of(self, sensor: str, want: str | None, where: str) -> tuple[str, int]:
        owner = self.owner.get(sensor)
        if owner is None:
            raise ScenarioError(f"{where}: sensor {sensor!r} does not exist in this city")
        if want is not None and owner != want:
            raise ScenarioError(
                f"{where}: sensor {sensor!r} is a {owner}, this incident needs a {want}"
            )
        return owner, self.models[owner].sensors.index[sensor]

    def _center(
        self,
        model: str,
        sensor: str | None,
        near: tuple[float, float] | None,
        area: str | None,
        rng: np.random.Generator | None,
        where: str,
    ) -> tuple[float, float, str]:
        if near is not None:
            return near[0], near[1], geo.nearest_district(*near).name
        if area is not None and sensor is None:
            d = next(d for d in geo.DISTRICTS if d.name == area)
            return d.lat, d.lon, area
        table = self.models[model].sensors
        i = (
            self._model_of(sensor, model, where)[1]
            if sensor
            else self._pick(model, rng, None, where)
        )
        return float(table.lat[i]), float(table.lon[i]), table.areas[i]

    def _within(self, model: str, inc: Incident) -> list[str]:
        table = self.models[model].sensors
        assert inc.lat is not None and inc.lon is not None and inc.radius_km
        d = geo.km_between(table.lat, table.lon, inc.lat, inc.lon) / inc.radius_km
        return [table.ids[i] for i in np.flatnonzero(d <= 1.25)]

    def _require(self, model: str, where: str) -> None:
        if model not in self.models or not len(self.models[model].sensors):
            raise ScenarioError(f"{where}: this city has no {model} sensors")

    def _fill(
        self,
        inc: Incident,
        params: Mapping[str, float],
        where: str,
        *,
        sensor: str | None,
        near: tuple[float, float] | None,
        area: str | None,
        metrics: tuple[str, ...],
        rng: np.random.Generator | None,
    ) -> None:
        kind = inc.kind
        if kind is not IncidentKind.SENSOR_FAULT:
            inc.metrics = dict(EXPECTED[kind])
        if kind is IncidentKind.TRAFFIC_INCIDENT:
            model = TARGET_MODEL[kind]
            self._require(model, where)
            if sensor:
                i = self._model_of(sensor, model, where)[1]
            elif near:
                i = self._nearest(model, *near)
            else:
                i = self._pick(model, rng, area, where)
            cams = self.models[model]
            hops = int(params.get("spread", 3))
            chain = [i] + (cams.upstream(i, hops) if hasattr(cams, "upstream") else [])
            delay = params.get("spread_delay", 240.0)
            inc.magnitude = params.get("severity", 0.85)
            inc.ramp_s = params.get("ramp", 180.0)
            for h, c in enumerate(chain):
                sid = cams.sensors.ids[c]
                inc.sensors.append(sid)
                inc.onsets[sid] = inc.start + h * delay
                inc.weights[sid] = 0.85**h
            inc.lat, inc.lon = float(cams.sensors.lat[i]), float(cams.sensors.lon[i])
            inc.area = cams.sensors.areas[i]
        elif kind in (IncidentKind.POLLUTION_EPISODE, IncidentKind.FLASH_FLOOD):
            model = TARGET_MODEL[kind]
            self._require(model, where)
            inc.lat, inc.lon, inc.area = self._center(model, sensor, near, area, rng, where)
            if kind is IncidentKind.POLLUTION_EPISODE:
                inc.radius_km = params.get("radius_km", 8.0)
                inc.magnitude = params.get("factor", 2.5)
                inc.ramp_s = params.get("rise", 3 * 3600.0)
            else:
                inc.radius_km = params.get("radius_km", 2.5)
                inc.magnitude = params.get("rain_mm_h", 70.0)
                inc.ramp_s = params.get("ramp", 900.0)
                inc.truth_tail_s = 2 * 3600.0  # streets drain within about two hours
            inc.sensors = self._within(model, inc)
            if not inc.sensors:
                raise ScenarioError(
                    f"{where}: no {model} sensor within {inc.radius_km * 1.25:g} km of {inc.lat:.4f}, {inc.lon:.4f}"
                )
            for s in inc.sensors:
                inc.onsets[s] = inc.start
        elif kind is IncidentKind.FIRE_WEATHER:
            model = TARGET_MODEL[kind]
            self._require(model, where)
            table = self.models[model].sensors
            if sensor:
                inc.sensors = [sensor]
                self._model_of(sensor, model, where)
            elif area or near:
                a = area or geo.nearest_district(*near).name  # type: ignore[misc]
                inc.sensors = [s for s, ar in zip(table.ids, table.areas, strict=True) if ar == a]
            else:
                inc.sensors = [
                    s
                    for s, ar in zip(table.ids, table.areas, strict=True)
                    if ar in ("Sóc Sơn", "Ba Vì")
                ]
            if not inc.sensors:
                raise ScenarioError(
                    f"{where}: no weather station there (fire weather acts on the hill stations)"
                )
            inc.magnitude = params.get("intensity", 1.0)
            inc.ramp_s = params.get("ramp", 2 * 3600.0)
            inc.area = area or table.areas[table.index[inc.sensors[0]]]
            for s in inc.sensors:
                inc.onsets[s] = inc.start
        else:
            self._fill_fault(inc, params, where, sensor, near, area, metrics, rng)

    def _fill_fault(
        self,
        inc: Incident,
        params: Mapping[str, float],
        where: str,
        sensor: str | None,
        near: tuple[float, float] | None,
        area: str | None,
        metrics: tuple[str, ...],
        rng: np.random.Generator | None,
    ) -> None:
        assert inc.fault is not None
        if sensor:
            model, i = self._model_of(sensor, None, where)
        else:
            names = [n for n, m in self.models.items() if len(m.sensors)]
            if near:
                dists = [
                    float(
                        np.min(
                            geo.km_between(
                                self.models[n].sensors.lat, self.models[n].sensors.lon, *near
                            )
                        )
                    )
                    for n in names
                ]
                model = names[int(np.argmin(dists))]
                i = self._nearest(model, *near)
            else:
                if area:
                    names = [n for n in names if area in self.models[n].sensors.areas]
                    if not names:
                        raise ScenarioError(f"{where}: no sensor in {area}")
                r = (
                    rng
                    if rng is not None
                    else np.random.default_rng(noise.key_of(self.seed, where))
                )
                sizes = np.array([len(self.models[n].sensors) for n in names], dtype=np.float64)
                model = names[int(r.choice(len(names), p=sizes / sizes.sum()))]
                i = self._pick(model, r, area, where)
        m = self.models[model]
        sid = m.sensors.ids[i]
        own = type(m).metrics
        for metric in metrics:
            if metric not in own:
                raise ScenarioError(
                    f"{where}: sensor {sid} ({model}) does not report {metric}; it reports {', '.join(own)}"
                )
        device_level = inc.fault in (FaultKind.OFFLINE, FaultKind.DROPOUT) and not metrics
        whole = device_level or inc.fault is FaultKind.OFFLINE
        chosen = list(own) if whole else list(metrics or own[:1])
        size_units = DEFAULT_SIZE.get(inc.fault, 0.0)
        sign = 1.0
        if (
            rng is not None
            and inc.fault in (FaultKind.OFFSET, FaultKind.DRIFT)
            and rng.uniform() < 0.5
        ):
            sign = -1.0
        if inc.fault is FaultKind.SPIKE:
            # a random spike is one reading; a shorter spike than one reporting interval
            # might fall between two readings and show nothing at all
            end = inc.start + m.interval
            inc.end = end if rng is not None else max(inc.end, end)
        inc.sensors = [sid]
        inc.onsets = {sid: inc.start}
        inc.lat, inc.lon, inc.area = (
            float(m.sensors.lat[i]),
            float(m.sensors.lon[i]),
            m.sensors.areas[i],
        )
        inc.metrics = {}
        for metric in chosen:
            size = params.get("magnitude", sign * size_units * typical(metric))
            if inc.fault in (FaultKind.SPIKE, FaultKind.OFFSET, FaultKind.DRIFT):
                inc.sizes[metric] = size
                direction = "up" if size >= 0 else "down"
            else:
                direction = FAULT_DIRECTION[inc.fault]
            inc.metrics[metric] = direction
        inc.magnitude = float(next(iter(inc.sizes.values()), 0.0))
        inc.ramp_s = 0.0


def _overlaps(inc: Incident, others: list[Incident]) -> bool:
    """A sensor fault on a sensor that another fault of the same day holds at the same time."""
    if inc.fault is None:
        return False
    return any(
        o.fault is not None
        and o.start < inc.end
        and inc.start < o.end
        and not set(o.sensors).isdisjoint(inc.sensors)
        for o in others
    )
