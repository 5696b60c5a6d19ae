"""The simulation engine: builds the city and turns simulated time windows into ordered MQTT messages.

Sensor ``i`` of a model with interval ``I`` reports at ``(k + phase_i)·I + jitter_ik``
for every integer ``k`` (times counted from the Unix epoch, so a run's start
does not move anyone's schedule).  One *round* ``k`` of a model is computed for
all its sensors in one vectorised call, then faults, the physical range and
rounding are applied, and ``window(a, b)`` hands out every report whose time
falls in ``[a, b)``, ordered by time.  The same seed therefore gives the same
bytes however the windows are cut.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np
import orjson

from core.codecs import KIND_FIWARE_TYPE, encode_fiware, encode_meta, encode_native, encode_senml
from core.errors import ConfigError
from core.metrics import METRICS
from core.topics import data_topic, meta_topic, status_topic
from core.types import Sensor, SensorKind
from simulators import noise
from simulators.city import City
from simulators.faults import FaultApplier
from simulators.incidents import FaultKind, Incident, IncidentKind
from simulators.models import LAYOUT_SEED, SensorModel
from simulators.noise import FloatArray
from simulators.planner import Planner

NATIVE, SENML, FIWARE = 0, 1, 2
FORMAT_NAMES = ("native", "senml", "fiware")
DEFAULT_FORMATS = {"native": 0.8, "senml": 0.1, "fiware": 0.1}
_FIWARE_METRICS: dict[SensorKind, set[str]] = {
    SensorKind.TRAFFIC_CAMERA: {
        "vehicle_count",
        "speed",
        "occupancy",
        "queue_length",
        "count_motorbike",
        "count_car",
        "count_bus",
        "count_truck",
    },
    SensorKind.AIR_QUALITY: {"pm25", "pm10", "no2", "o3", "co", "so2", "temperature", "humidity"},
    SensorKind.WATER_LEVEL: {"water_level", "rainfall"},
    SensorKind.NOISE: {"noise"},
    SensorKind.WEATHER: {
        "temperature",
        "humidity",
        "wind_speed",
        "wind_direction",
        "rainfall",
        "pressure",
    },
}


class Message(NamedTuple):
    """One MQTT message, at simulated time ``t`` (epoch s), for connection ``conn``."""

    t: float
    topic: str
    payload: bytes
    readings: int
    conn: int
    channel: str  # "data", "meta" or "status"
    retain: bool = False


def status_payload(status: str, t: float) -> bytes:
    return orjson.dumps({"status": status, "ts": round(t * 1000)})


@dataclass(slots=True)
class _Stream:
    """One model's schedule and the reports generated but not yet handed out."""

    model: SensorModel
    phase: FloatArray
    formats: np.ndarray[Any, np.dtype[np.int64]]
    conns: np.ndarray[Any, np.dtype[np.int64]]
    topics: list[str]
    next_round: int = 0
    covered: float = -math.inf  # every report before this time is generated
    t: FloatArray = field(default_factory=lambda: np.zeros(0))
    rows: np.ndarray[Any, np.dtype[np.int64]] = field(
        default_factory=lambda: np.zeros(0, dtype=np.int64)
    )
    vals: FloatArray = field(default_factory=lambda: np.zeros((0, 0)))


class Engine:
    """Generates the city's traffic of messages between simulated instants."""

    def __init__(
        self,
        models: Mapping[str, SensorModel],
        *,
        seed: int,
        start: float,
        planner: Planner | None = None,
        formats: Mapping[str, float] | None = None,
        connections: int = 1,
        gateway: str = "gw-hanoi",
        jitter: float = 0.05,
        part: tuple[int, int] = (0, 1),
    ) -> None:
        """``part = (w, n)``: this engine sends only worker ``w``'s share of ``n`` (``--workers``);
        the city (incidents, neighbours, exposure) is still the whole one, so the union of
        the workers' messages is exactly what one engine would send."""
        if not 0.0 <= jitter < 0.25:
            raise ConfigError("jitter must be in [0, 0.25) of the interval")
        self.models = dict(models)
        self.seed = seed
        self.start = start
        self.jitter = jitter
        self.connections = max(1, connections)
        w, n_parts = part
        if n_parts > 1:
            gateway = f"{gateway}-w{w + 1}"
        self.gateways = [f"{gateway}-{c + 1:02d}" for c in range(self.connections)]
        self.city = City(seed, self.models)
        for m in self.models.values():
            m.prepare(self.city)
        mine: dict[str, SensorModel] = dict(self.models)
        if n_parts > 1:
            for name, m in self.models.items():
                keys = _layout_keys(m.sensors.ids) >> np.uint64(32)
                idx = np.flatnonzero(keys % np.uint64(n_parts) == np.uint64(w))
                sub = type(m)(m.sensors.take(idx), seed, m.interval)
                City.locate(sub.sensors)
                sub.prepare(self.city)
                mine[name] = sub
        self.planner = planner
        self.faults: list[Incident] = []
        self.applier = FaultApplier()
        self.injected: list[Incident] = []
        self._reported: set[str] = set()
        self._status_done: set[tuple[str, str]] = set()
        shares = dict(formats or DEFAULT_FORMATS)
        total = sum(max(0.0, shares.get(f, 0.0)) for f in FORMAT_NAMES)
        if total <= 0:
            raise ConfigError("the payload format shares add up to 0")
        cum = np.cumsum([max(0.0, shares.get(f, 0.0)) / total for f in FORMAT_NAMES])
        self.streams: list[_Stream] = []
        for m in mine.values():
            t = m.sensors
            layout = _layout_keys(t.ids)
            fmt = np.searchsorted(cum, noise.uniform(layout, 1, 0), side="right").clip(0, 2)
            if t.kind not in KIND_FIWARE_TYPE or not set(type(m).metrics) <= _FIWARE_METRICS.get(
                t.kind, set()
            ):
                fmt[fmt == FIWARE] = NATIVE  # this kind has no FIWARE model: send native
            conns = (layout % np.uint64(self.connections)).astype(np.int64)
            phase = noise.uniform(t.keys, noise.stream_id("phase"), 0)
            first = math.floor(start / m.interval) - 1
            self.streams.append(
                _Stream(
                    m,
                    phase,
                    fmt.astype(np.int64),
                    conns,
                    [data_topic(t.kind, s) for s in t.ids],
                    next_round=first,
                )
            )
        self._plan(start)  # resolve the scenario now: a bad entry fails before anything is sent

    # --- registration and status ---------------------------------------------------

    def sensors(self) -> Iterable[tuple[Sensor, int]]:
        for st in self.streams:
            m, t = st.model, st.model.sensors
            for i, sid in enumerate(t.ids):
                attrs = {
                    "simulated": True,
                    "gateway": self.gateways[st.conns[i]],
                    "format": FORMAT_NAMES[st.formats[i]],
                }
                attrs.update(t.attrs[i])
                yield (
                    Sensor(
                        id=sid,
                        kind=t.kind,
                        name=t.names[i],
                        lat=float(t.lat[i]),
                        lon=float(t.lon[i]),
                        area=t.areas[i],
                        metrics=tuple(type(m).metrics),
                        interval_s=m.interval,
                        attributes=attrs,
                    ),
                    int(st.conns[i]),
                )

    def gateway_sensor(self, conn: int) -> Sensor:
        n = sum(int(np.sum(st.conns == conn)) for st in self.streams)
        return Sensor(
            id=self.gateways[conn],
            kind=SensorKind.GENERIC,
            name=f"simulator gateway {conn + 1} of {self.connections}",
            metrics=(),
            attributes={"simulated": True, "role": "gateway", "devices": n},
        )

    def announce(self, t: float) -> list[Message]:
        """Retained meta and ``online`` status for every gateway and device."""
        out: list[Message] = []
        online = status_payload("online", t)
        for c, gw in enumerate(self.gateways):
            out.append(
                Message(
                    t,
                    meta_topic(SensorKind.GENERIC, gw),
                    encode_meta(self.gateway_sensor(c)),
                    0,
                    c,
                    "meta",
                    True,
                )
            )
            out.append(
                Message(t, status_topic(SensorKind.GENERIC, gw), online, 0, c, "status", True)
            )
        for sensor, conn in self.sensors():
            out.append(
                Message(
                    t,
                    meta_topic(sensor.kind, sensor.id),
                    encode_meta(sensor),
                    0,
                    conn,
                    "meta",
                    True,
                )
            )
            out.append(
                Message(t, status_topic(sensor.kind, sensor.id), online, 0, conn, "status", True)
            )
        return out

    def goodbye(self, t: float) -> list[Message]:
        """Retained ``offline`` for every device, then for the gateways (clean shutdown)."""
        off = status_payload("offline", t)
        out = [
            Message(t, status_topic(s.kind, s.id), off, 0, conn, "status", True)
            for s, conn in self.sensors()
        ]
        out += [
            Message(t, status_topic(SensorKind.GENERIC, gw), off, 0, c, "status", True)
            for c, gw in enumerate(self.gateways)
        ]
        return out

    # --- time windows ----------------------------------------------------------------

    def _plan(self, until: float) -> None:
        if self.planner is None:
            return
        new = self.planner.until(until)
        if new:
            self.city.add_incidents(i for i in new if i.kind is not IncidentKind.SENSOR_FAULT)
            self.faults += [i for i in new if i.kind is IncidentKind.SENSOR_FAULT]
            self.injected += new

    def _round(self, st: _Stream) -> None:
        m = st.model
        k = st.next_round
        st.next_round += 1
        n = len(m.sensors)
        I = m.interval  # noqa: E741
        jit = (
            (2.0 * noise.uniform(m.sensors.keys, noise.stream_id("jitter"), k) - 1.0)
            * self.jitter
            * I
        )
        t = np.round(((k + st.phase) * I + jit) * 1000.0) / 1000.0
        st.covered = (k + 1) * I - self.jitter * I
        rng = np.random.default_rng(noise.key_of(self.seed, type(m).name, k))
        raw = m.values(t, rng, self.city)
        metrics = type(m).metrics
        vals: dict[str, FloatArray] = {}
        for metric in metrics:
            v = raw.get(metric)
            if v is None:
                raise ConfigError(f"sensor model {type(m).name} returned no {metric}")
            arr = np.array(v, dtype=np.float64).reshape(-1)
            if arr.shape != (n,):
                raise ConfigError(
                    f"sensor model {type(m).name}: {metric} has {arr.size} values for {n} sensors"
                )
            vals[metric] = arr
        if self.faults:
            self.applier.apply(m.sensors, t, vals, self.faults)
        block = np.empty((n, len(metrics)))
        decimals = type(m).decimals
        for j, metric in enumerate(metrics):
            spec = METRICS[metric]
            v = np.clip(vals[metric], spec.low, spec.high)  # NaN (not sent) stays NaN
            block[:, j] = np.round(v, decimals.get(metric, 2))
        st.t = np.concatenate([st.t, t])
        st.rows = np.concatenate([st.rows, np.arange(n, dtype=np.int64)])
        st.vals = np.concatenate([st.vals.reshape(-1, len(metrics)), block])

    def window(self, a: float, b: float) -> list[Message]:
        """Every message with simulated time in ``[a, b)``, in time order."""
        horizon = b + 2 * max((m.interval for m in self.models.values()), default=60.0)
        self._plan(horizon)
        picked: list[tuple[FloatArray, int, np.ndarray[Any, np.dtype[np.int64]], FloatArray]] = []
        for si, st in enumerate(self.streams):
            if not len(st.model.sensors):
                continue
            while st.covered < b:
                self._round(st)
            due = st.t < b
            keep = st.t >= a
            take = due & keep
            if take.any():
                picked.append((st.t[take], si, st.rows[take], st.vals[take]))
            rest = ~due
            st.t, st.rows, st.vals = st.t[rest], st.rows[rest], st.vals[rest]
        out = self._status_events(a, b)
        for t, si, rows, vals in picked:
            out += self._encode(self.streams[si], t, rows, vals)
        out.sort(key=lambda msg: msg.t)  # stable: ties keep model and row order
        return out

    def new_incidents(self, until: float) -> list[Incident]:
        """Injected incidents whose effect has begun by ``until`` and were not reported yet."""
        out = [
            i
            for i in self.injected
            if i.id not in self._reported and i.start <= until and i.end >= self.start
        ]
        self._reported.update(i.id for i in out)
        return sorted(out, key=lambda i: (i.start, i.id))

    def _status_events(self, a: float, b: float) -> list[Message]:
        out: list[Message] = []
        for inc in self.faults:
            if inc.fault is not FaultKind.OFFLINE:
                continue
            for sid in inc.sensors:
                for status, when in (("offline", max(inc.start, self.start)), ("online", inc.end)):
                    if a <= when < b and (inc.id + sid, status) not in self._status_done:
                        loc = self._locate(sid)
                        if loc is None:
                            continue
                        self._status_done.add((inc.id + sid, status))
                        st, i = loc
                        topic = status_topic(st.model.sensors.kind, sid)
                        out.append(
                            Message(
                                when,
                                topic,
                                status_payload(status, when),
                                0,
                                int(st.conns[i]),
                                "status",
                                True,
                            )
                        )
        return out

    def _locate(self, sid: str) -> tuple[_Stream, int] | None:
        for st in self.streams:
            i = st.model.sensors.index.get(sid)
            if i is not None:
                return st, i
        return None

    def _encode(
        self,
        st: _Stream,
        t: FloatArray,
        rows: np.ndarray[Any, np.dtype[np.int64]],
        vals: FloatArray,
    ) -> list[Message]:
        m = st.model
        metrics = type(m).metrics
        kind = m.sensors.kind
        ints = [type(m).decimals.get(x, 2) <= 0 for x in metrics]
        ids = m.sensors.ids
        out: list[Message] = []
        for ti, r, row in zip(t.tolist(), rows.tolist(), vals.tolist(), strict=True):
            values = {
                x: (int(v) if isint else v)
                for x, v, isint in zip(metrics, row, ints, strict=True)
                if v == v
            }
            if not values:
                continue  # dropped by a fault
            fmt = st.formats[r]
            sid = ids[r]
            if fmt == NATIVE:
                payload = encode_native([(ti, values)])
            elif fmt == SENML:
                payload = encode_senml(sid, [(ti, x, v) for x, v in values.items()])
            else:
                payload = encode_fiware(kind, sid, ti, values)
            out.append(Message(ti, st.topics[r], payload, len(values), int(st.conns[r]), "data"))
        return out

    @property
    def interval_max(self) -> float:
        return max((m.interval for m in self.models.values()), default=60.0)

    def sensor_counts(self) -> dict[str, int]:
        """The sensors this engine sends for (its share, with ``--workers``)."""
        return {type(st.model).name: len(st.model.sensors) for st in self.streams}


def _layout_keys(ids: list[str]) -> np.ndarray[Any, np.dtype[np.uint64]]:
    """Per-device keys independent of the seed: format, connection and worker share."""
    return np.array([noise.key_of(LAYOUT_SEED, "device", s) for s in ids], dtype=np.uint64)
