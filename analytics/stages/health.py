"""The sensor health stage: stuck values, missed heartbeats, channel dropouts and devices offline.

Every finding is a DEVICE-class signal:

* ``health.stuck`` (per metric): the same value repeated far longer than the
  series usually repeats a value (``factor`` × its typical run length, and at
  least ``min_readings`` readings over ``min_s`` seconds).  A run at the
  metric's physical floor (0 vehicles, 0 mm of rain) is normal and ignored.
* ``health.dropout`` (metric ``device``): no reading for ``k`` × the sensor's
  reporting interval (announced in its meta, else learned from its readings),
  and at least ``min_gap_s``.  When most sensors fall silent at once the feed
  is down, not the sensors, and no per-sensor alert is raised.
* ``health.channel_dropout`` (per metric): one metric stops while the sensor
  keeps reporting the others.
* ``health.offline`` (metric ``device``): the device said ``offline`` on its
  status topic (usually its Last Will) or the registry says so, and stayed so for
  ``offline_grace_s``; when most devices go offline together (a gateway or the
  simulator shut down) no per-device alert is raised.
* ``health.invalid_values`` (per metric): the device keeps sending values that
  cannot be measurements (rejected by the codec as out of range or not finite).
* ``health.inconsistent`` (the total's metric): a total no longer equals the sum
  of its parts, e.g. a camera's vehicle count and its per-class counts
  (``analytics.stages.consistency``).
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Iterable, Mapping
from typing import Any, ClassVar

import numpy as np

from analytics.engine.base import (
    Batch,
    Context,
    FloatArray,
    IntArray,
    Signal,
    Stage,
    StageOutput,
    rounds,
)
from analytics.engine.slots import SensorIndex, SeriesIndex, SlotArrays
from analytics.stages.consistency import ConsistencyCheck
from analytics.stages.health_stuck import DEVICE, STUCK_EXCLUDE, StuckValues
from analytics.stages.health_stuck import health_signal as _signal
from core.types import DeviceStatus, Severity

logger = logging.getLogger(__name__)


class HealthStage(StuckValues, Stage):
    """Tracks every sensor's heartbeat and every series' repeated values."""

    name: ClassVar[str] = "health"

    def __init__(
        self,
        *,
        heartbeat_k: float = 3.0,
        min_gap_s: float = 120.0,
        stuck_factor: float = 10.0,
        stuck_min_readings: int = 10,
        stuck_min_s: float = 600.0,
        stuck_exclude: Iterable[str] = STUCK_EXCLUDE,
        storm_fraction: float = 0.5,
        invalid_count: int = 3,
        invalid_window_s: float = 3600.0,
        offline_grace_s: float = 30.0,
        floor_steps: float = 5.0,
        consistency: ConsistencyCheck | None = None,
    ) -> None:
        self.consistency = consistency or ConsistencyCheck()
        self.heartbeat_k = heartbeat_k
        self.min_gap_s = min_gap_s
        self.stuck_factor = stuck_factor
        self.stuck_min_readings = stuck_min_readings
        self.stuck_min_s = stuck_min_s
        self.stuck_exclude = frozenset(stuck_exclude)
        self.storm_fraction = storm_fraction
        self.invalid_count = invalid_count
        self.invalid_window_s = invalid_window_s
        self.offline_grace_s = offline_grace_s
        self.floor_steps = floor_steps
        self.series = SeriesIndex()
        self._s = SlotArrays(
            {
                "value": (0, np.float64, np.nan),
                "count": (0, np.int64, 0),
                "start": (0, np.float64, np.nan),
                "typical": (0, np.float64, 1.0),
                "runs": (0, np.int64, 0),
                "stuck": (0, np.bool_, False),
                "last": (0, np.float64, np.nan),
                "n": (0, np.int64, 0),
                "dropped": (0, np.bool_, False),
                "floor": (0, np.float64, np.nan),
                "ivl": (0, np.float64, np.nan),
                "gaps": (0, np.int64, 0),
                "quantum": (0, np.float64, np.inf),
                "vmin": (0, np.float64, np.inf),
                "vmax": (0, np.float64, -np.inf),
            }
        )
        self.sensor_index = SensorIndex()
        self._d = SlotArrays(
            {
                "last": (0, np.float64, np.nan),
                "interval": (0, np.float64, np.nan),
                "gaps": (0, np.int64, 0),
                "missing": (0, np.bool_, False),
            }
        )
        self.offline: dict[str, float] = {}  # sensor -> since
        self._pending: list[Signal] = []
        self._pending_offline: list[Signal] = []
        self._invalid: dict[tuple[str, str], deque[float]] = {}
        self._invalid_active: set[tuple[str, str]] = set()
        self._storm = False
        self._announced_key: tuple[int, int] = (0, -1)
        self._announced_cache: FloatArray = np.zeros(0)
        self._series_sensor: IntArray = np.zeros(0, dtype=np.int64)

    # -- events from the service ---------------------------------------------------

    def on_status(self, sensor: str, status: DeviceStatus | str, t: float) -> None:
        """A device's announced status (status topic / Last Will, or the registry)."""
        if DeviceStatus(status) is DeviceStatus.OFFLINE:
            if sensor not in self.offline:
                self.offline[sensor] = t
                self._pending_offline.append(
                    _signal(sensor, DEVICE, "health.offline", t, True, "the device went offline")
                )
        elif sensor in self.offline:
            del self.offline[sensor]
            pending = len(self._pending_offline)
            self._pending_offline = [p for p in self._pending_offline if p.sensor != sensor]
            if len(self._pending_offline) < pending:
                return  # a blip within the grace period: never alerted
            self._pending.append(
                _signal(sensor, DEVICE, "health.offline", t, False, "the device is online again")
            )

    def on_invalid(self, sensor: str, metric: str, t: float) -> None:
        """A value from the device was rejected as impossible (out of range, not finite)."""
        key = (sensor, metric)
        times = self._invalid.setdefault(key, deque(maxlen=self.invalid_count))
        times.append(t)
        recent = len(times) == self.invalid_count and t - times[0] <= self.invalid_window_s
        if recent:
            self._invalid_active.add(key)
            self._pending.append(
                _signal(
                    sensor,
                    metric,
                    "health.invalid_values",
                    t,
                    True,
                    f"{metric}: the device keeps sending impossible values "
                    f"({self.invalid_count} within {self.invalid_window_s / 60:.0f} min)",
                    Severity.WARNING,
                )
            )

    # -- readings ---------------------------------------------------------------------

    @property
    def sensors(self) -> dict[str, int]:
        return self.sensor_index.codes

    @property
    def _names(self) -> list[str]:
        return self.sensor_index.names

    def share(self, series: SeriesIndex, sensors: SensorIndex) -> None:
        """Use the pipeline's indexes (before any reading is processed)."""
        self.series = series
        self.sensor_index = sensors

    def _sensor_slots(self, sensors: list[str]) -> IntArray:
        out = self.sensor_index.lookup(sensors)
        self._d.ensure(len(self.sensor_index) - 1)
        return out

    def process(self, batch: Batch, ctx: Context) -> StageOutput:
        out = StageOutput()
        out.signals.extend(self._pending)
        self._pending = []
        if len(batch) == 0:
            return out
        self._heartbeats(batch, out)
        out.signals.extend(self.consistency.process(batch))
        slots = self.series.lookup(batch.sensor, batch.metric)
        self._s.ensure(len(self.series) - 1)
        for r in rounds(slots):
            self._runs(slots[r], batch.time[r], batch.value[r], out)
        return out

    def _heartbeats(self, batch: Batch, out: StageOutput) -> None:
        sid = self._sensor_slots(batch.sensor)
        d = self._d
        # one step per distinct (sensor, time): a pack of 8 metrics is one heartbeat
        order = np.lexsort((batch.time, sid))
        ss, tt = sid[order], batch.time[order]
        first = np.r_[True, (ss[1:] != ss[:-1]) | (tt[1:] != tt[:-1])]
        ps, pt = ss[first], tt[first]
        for r in rounds(ps):
            s, t = ps[r], pt[r]
            last = d["last"][s]
            gap = t - last
            ok = np.isfinite(gap) & (gap > 0)
            if ok.any():
                s_ok, g = s[ok], gap[ok]
                iv = d["interval"][s_ok]
                n = d["gaps"][s_ok]
                # a robust running estimate: long gaps (outages) barely move it
                g = np.where(np.isfinite(iv), np.minimum(g, 3 * iv), g)
                a = np.maximum(0.1, 1.0 / (n + 1.0))
                d["interval"][s_ok] = np.where(np.isfinite(iv), iv + a * (g - iv), g)
                d["gaps"][s_ok] = n + 1
            d["last"][s] = np.fmax(last, t)
        back = np.unique(sid[d["missing"][sid]])
        for i in back:
            d["missing"][i] = False
            name = self._names[i]
            out.signals.append(
                _signal(
                    name, DEVICE, "health.dropout", float(d["last"][i]), False, "readings resumed"
                )
            )

    def tick(self, now: float, ctx: Context) -> StageOutput:
        out = StageOutput()
        out.signals.extend(self._pending)
        self._pending = []
        self._flush_offline(now, out)
        self._expire_invalid(now, out)
        n = len(self._names)
        if n == 0:
            return out
        self._d.ensure(n - 1)
        d = self._d
        last = d["last"][:n]
        interval = d["interval"][:n].copy()
        learned = d["gaps"][:n] >= 3
        interval[~learned] = np.nan
        announced = self._announced(ctx, n)
        interval = np.where(np.isfinite(announced), announced, interval)
        limit = np.maximum(self.heartbeat_k * interval, self.min_gap_s)
        overdue = np.isfinite(limit) & (now - last > limit)
        storm = n >= 10 and overdue.mean() > self.storm_fraction
        if storm != self._storm:
            self._storm = storm
            if storm:
                logger.warning(
                    "%d of %d sensors are silent at once: the feed looks down, "
                    "no per-sensor dropout alerts",
                    int(overdue.sum()),
                    n,
                )
        if storm:
            return out
        newly = overdue & ~d["missing"][:n]
        for i in np.flatnonzero(newly):
            name = self._names[i]
            d["missing"][i] = True
            if name in self.offline:
                continue  # already alerted as offline
            silent = now - float(last[i])
            out.signals.append(
                _signal(
                    name,
                    DEVICE,
                    "health.dropout",
                    now,
                    True,
                    f"no readings for {silent / 60:.0f} min (expected every "
                    f"{float(interval[i]):.0f} s)",
                    evidence={"last_reading": float(last[i]), "interval_s": float(interval[i])},
                )
            )
        self._channels(now, limit, out)
        return out

    def _flush_offline(self, now: float, out: StageOutput) -> None:
        """Offline alerts after ``offline_grace_s``, unless most devices went offline at once."""
        if not self._pending_offline:
            return
        n_off = len(self.offline)
        known = max(len(self._names), n_off)
        if n_off >= 10 and n_off > self.storm_fraction * known:
            logger.warning(
                "%d of %d devices are offline at once (a gateway or the simulator stopped?): "
                "no per-device offline alerts",
                n_off,
                known,
            )
            self._pending_offline = []
            return
        due = [p for p in self._pending_offline if now - p.time >= self.offline_grace_s]
        if due:
            out.signals.extend(due)
            self._pending_offline = [
                p for p in self._pending_offline if now - p.time < self.offline_grace_s
            ]

    def _announced(self, ctx: Context, n: int) -> FloatArray:
        """Reporting intervals the sensors announce in their meta (NaN: not announced)."""
        key = (id(ctx.sensors), n)
        if self._announced_key != key:
            arr = np.full(n, np.nan)
            for name, i in self.sensors.items():
                meta = ctx.sensors.get(name)
                if meta is not None and meta.interval_s:
                    arr[i] = meta.interval_s
            self._announced_cache, self._announced_key = arr, key
        return self._announced_cache

    def _channels(self, now: float, sensor_limit: FloatArray, out: StageOutput) -> None:
        """A metric that stopped while its sensor keeps reporting."""
        m = len(self.series)
        if m == 0:
            return
        self._s.ensure(m - 1)
        c = self._s
        if self._series_sensor.size < m:
            extra = [
                self.sensors.get(s, -1) for s, _ in self.series.keys[self._series_sensor.size :]
            ]
            self._series_sensor = np.concatenate(
                [self._series_sensor, np.array(extra, dtype=np.int64)]
            )
        sid = self._series_sensor[:m]
        ok = sid >= 0
        d_last = np.where(ok, self._d["last"][np.maximum(sid, 0)], np.nan)
        limit = np.where(ok, sensor_limit[np.maximum(sid, 0)], np.nan)
        limit = np.fmax(limit, self.heartbeat_k * c["ivl"][:m])
        alive = (now - d_last) <= limit
        dropped = (
            ok
            & alive
            & (c["gaps"][:m] >= 10)
            & (d_last - c["last"][:m] > limit)
            & ~c["dropped"][:m]
        )
        for slot in np.flatnonzero(dropped):
            c["dropped"][slot] = True
            sensor, metric = self.series.keys[int(slot)]
            out.signals.append(
                _signal(
                    sensor,
                    metric,
                    "health.channel_dropout",
                    now,
                    True,
                    f"{metric} stopped while the device keeps reporting",
                )
            )

    def _expire_invalid(self, now: float, out: StageOutput) -> None:
        for key in list(self._invalid_active):
            times = self._invalid.get(key)
            if times and now - times[-1] > self.invalid_window_s:
                self._invalid_active.discard(key)
                out.signals.append(
                    _signal(
                        key[0],
                        key[1],
                        "health.invalid_values",
                        now,
                        False,
                        f"{key[1]}: no impossible values for a while",
                    )
                )

    # -- checkpoints -----------------------------------------------------------------

    def get_state(self) -> dict[str, Any]:
        return {
            "series": self.series.get_state(),
            "runs": self._s.get_state(),
            "sensors": list(self._names),
            "beats": self._d.get_state(),
            "offline": dict(self.offline),
            "consistency": self.consistency.get_state(),
        }

    def set_state(self, state: Mapping[str, Any]) -> None:
        self.series.restore(state["series"])
        self._s.set_state(state["runs"])
        self.sensor_index.restore(state["sensors"])
        self._d.set_state(state["beats"])
        self._series_sensor = np.zeros(0, dtype=np.int64)
        self._announced_key = (0, -1)
        self.offline = {str(k): float(v) for k, v in state["offline"].items()}
        self.consistency.set_state(state.get("consistency", {}))
