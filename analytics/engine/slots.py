"""Per-slot state: numpy columns that grow with new slots, and the (sensor, metric) and sensor indexes."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from analytics.engine.base import (
    IntArray,
)


class Columns:
    """Per-slot numpy columns that grow (doubling) as new slots appear."""

    def __init__(self, spec: Mapping[str, tuple[type, float]]) -> None:
        self.spec = dict(spec)
        self.size = 0
        self.cols: dict[str, np.ndarray[Any, Any]] = {
            k: np.full(0, fill, dtype=dt) for k, (dt, fill) in self.spec.items()
        }

    def ensure(self, n: int) -> None:
        if n <= self.size:
            return
        cap = max(64, 2 * self.size, n)
        for k, (dt, fill) in self.spec.items():
            new: np.ndarray[Any, Any] = np.full(cap, fill, dtype=dt)
            new[: self.size] = self.cols[k][: self.size]
            self.cols[k] = new
        self.size = cap

    def __getitem__(self, key: str) -> np.ndarray[Any, Any]:
        return self.cols[key]

    def get_state(self) -> dict[str, Any]:
        return {k: v.copy() for k, v in self.cols.items()}

    def set_state(self, state: Mapping[str, Any]) -> None:
        sizes = {len(np.asarray(state[k])) for k in self.spec}
        if len(sizes) != 1:
            raise ValueError("checkpointed columns differ in length")
        self.size = sizes.pop()
        self.cols = {k: np.array(state[k], dtype=dt) for k, (dt, _) in self.spec.items()}


class SeriesIndex:
    """Maps (sensor, metric) to small integer slots, in order of first appearance.

    Stages of one pipeline may share an index (``Pipeline`` does so): the slots of a
    batch are then looked up once, the later lookups of the same batch are free.
    """

    def __init__(self, keys: Iterable[Sequence[str]] = ()) -> None:
        self.keys: list[tuple[str, str]] = []
        self._slots: dict[tuple[str, str], int] = {}
        self._memo: tuple[Sequence[str], Sequence[str], IntArray] | None = None
        for s, m in keys:
            self.slot(s, m)

    def __len__(self) -> int:
        return len(self.keys)

    def slot(self, sensor: str, metric: str) -> int:
        key = (sensor, metric)
        slot = self._slots.get(key)
        if slot is None:
            slot = self._slots[key] = len(self.keys)
            self.keys.append(key)
        return slot

    def lookup(self, sensors: Sequence[str], metrics: Sequence[str]) -> IntArray:
        memo = self._memo
        if memo is not None and memo[0] is sensors and memo[1] is metrics:
            return memo[2]
        get = self._slots.get
        found = [get(k, -1) for k in zip(sensors, metrics, strict=True)]
        if -1 in found:
            found = [
                f if f >= 0 else self.slot(s, m)
                for f, s, m in zip(found, sensors, metrics, strict=True)
            ]
        out = np.array(found, dtype=np.int64)
        self._memo = (sensors, metrics, out)
        return out

    def restore(self, keys: Iterable[Sequence[str]]) -> None:
        """Hold these keys first, in place (the index may be shared); they must agree."""
        wanted = [(str(s), str(m)) for s, m in keys]
        n = min(len(wanted), len(self.keys))
        if self.keys[:n] != wanted[:n]:
            raise ValueError("the checkpoint's series differ from this index")
        for s, m in wanted[n:]:
            self.slot(s, m)
        self._memo = None

    def get_state(self) -> list[list[str]]:
        return [[s, m] for s, m in self.keys]


class SensorIndex:
    """Maps sensor ids to small integer codes (shareable like ``SeriesIndex``)."""

    def __init__(self, names: Iterable[str] = ()) -> None:
        self.names: list[str] = []
        self.codes: dict[str, int] = {}
        self._memo: tuple[Sequence[str], IntArray] | None = None
        for n in names:
            self.code(n)

    def __len__(self) -> int:
        return len(self.names)

    def code(self, name: str) -> int:
        c = self.codes.get(name)
        if c is None:
            c = self.codes[name] = len(self.names)
            self.names.append(name)
        return c

    def lookup(self, sensors: Sequence[str]) -> IntArray:
        memo = self._memo
        if memo is not None and memo[0] is sensors:
            return memo[1]
        get = self.codes.get
        found = [get(s, -1) for s in sensors]
        if -1 in found:
            found = [f if f >= 0 else self.code(s) for f, s in zip(found, sensors, strict=True)]
        out = np.array(found, dtype=np.int64)
        self._memo = (sensors, out)
        return out

    def restore(self, names: Iterable[str]) -> None:
        wanted = [str(n) for n in names]
        n = min(len(wanted), len(self.names))
        if self.names[:n] != wanted[:n]:
            raise ValueError("the checkpoint's sensors differ from this index")
        for name in wanted[n:]:
            self.code(name)
        self._memo = None
