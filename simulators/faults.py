"""Sensor faults applied to a round of generated readings: stuck, dropout, spike, drift, offset, offline."""

from __future__ import annotations

from collections.abc import MutableMapping

import numpy as np

from simulators.incidents import FaultKind, Incident
from simulators.models import SensorTable
from simulators.noise import FloatArray, IntArray

# a metric's everyday spread: the default size of random faults
TYPICAL: dict[str, float] = {
    "vehicle_count": 25.0,
    "count_motorbike": 20.0,
    "count_car": 6.0,
    "count_bus": 2.0,
    "count_truck": 2.0,
    "speed": 8.0,
    "occupancy": 10.0,
    "queue_length": 80.0,
    "pm25": 20.0,
    "pm10": 30.0,
    "no2": 12.0,
    "o3": 20.0,
    "co": 300.0,
    "so2": 3.0,
    "temperature": 3.0,
    "humidity": 10.0,
    "wind_speed": 2.0,
    "wind_direction": 45.0,
    "rainfall": 2.0,
    "pressure": 4.0,
    "water_level": 20.0,
    "noise": 5.0,
    "battery": 10.0,
}

# default size of a fault, in TYPICAL units (spike: added once; offset: added; drift: per hour)
DEFAULT_SIZE: dict[FaultKind, float] = {
    FaultKind.SPIKE: 8.0,
    FaultKind.OFFSET: 3.0,
    FaultKind.DRIFT: 1.0,
}


def typical(metric: str) -> float:
    return TYPICAL.get(metric, 1.0)


class FaultApplier:
    """Applies the active faults to one model's round; remembers stuck values."""

    def __init__(self) -> None:
        self.held: dict[tuple[str, str, str], float] = {}
        self._idx: dict[tuple[str, int], IntArray] = {}

    def _rows(self, inc: Incident, table: SensorTable) -> IntArray:
        key = (inc.id, id(table))
        rows = self._idx.get(key)
        if rows is None:
            rows = np.array(
                [table.index[s] for s in inc.sensors if s in table.index], dtype=np.int64
            )
            self._idx[key] = rows
        return rows

    def apply(
        self,
        table: SensorTable,
        t: FloatArray,
        values: MutableMapping[str, FloatArray],
        faults: list[Incident],
    ) -> None:
        for inc in faults:
            rows = self._rows(inc, table)
            if not len(rows):
                continue
            tt = t[rows]
            inside = (tt >= inc.start) & (tt < inc.end)
            if not inside.any():
                continue
            hit = rows[inside]
            elapsed_h = (tt[inside] - inc.start) / 3600.0
            device_level = inc.fault in (FaultKind.OFFLINE, FaultKind.DROPOUT) and not inc.metrics
            metrics = (
                list(values)
                if device_level or inc.fault is FaultKind.OFFLINE
                else list(inc.metrics)
            )
            for m in metrics:
                v = values.get(m)
                if v is None:
                    continue
                if inc.fault in (FaultKind.OFFLINE, FaultKind.DROPOUT):
                    v[hit] = np.nan
                elif inc.fault is FaultKind.STUCK:
                    for r in hit:
                        v[r] = self.held.setdefault((inc.id, table.ids[r], m), float(v[r]))
                elif inc.fault in (FaultKind.SPIKE, FaultKind.OFFSET):
                    v[hit] = v[hit] + inc.sizes.get(m, inc.magnitude)
                elif inc.fault is FaultKind.DRIFT:
                    v[hit] = v[hit] + inc.sizes.get(m, inc.magnitude) * elapsed_h
