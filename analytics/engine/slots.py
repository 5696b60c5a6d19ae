"""Per-slot state: numpy arrays that grow with new slots, and the (sensor, metric) and sensor indexes."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from analytics.engine.base import IntArray

# readings are clipped to this magnitude so that squares and sums stay finite
VALUE_LIMIT = 1e100

Array = npt.NDArray[Any]
Width = int | tuple[int, ...]


def _tail(width: Width) -> tuple[int, ...]:
    if isinstance(width, tuple):
        return width
    return () if width == 0 else (width,)


class SlotArrays:
    """Named numpy arrays whose first axis is the slot, grown (doubling) when a higher slot appears.

    The one per-slot state of the engine: stages and detectors keep what they know of
    each series, sensor or station here. ``spec`` maps a column name to
    ``(width, dtype, fill)``: width 0 is one value per slot, ``k`` a row of ``k`` values
    per slot (e.g. a seasonal profile), a tuple a block of that shape per slot. New
    slots start at their fill values.

    Two checkpoint forms: ``get_state()`` holds every column at full capacity and the
    capacity; ``head(n)`` the first ``n`` slots only. ``set_state`` reads both (the
    capacity, when absent, is the columns' length) and fills a column the checkpoint
    does not have (it was written before the column existed).
    """

    def __init__(self, spec: Mapping[str, tuple[Width, type, Any]]) -> None:
        self.spec = {name: (_tail(w), dtype, fill) for name, (w, dtype, fill) in spec.items()}
        self.capacity = 0
        self.cols: dict[str, Array] = {name: self._new(name, 0) for name in self.spec}

    def _new(self, name: str, rows: int) -> Array:
        tail, dtype, fill = self.spec[name]
        return np.full((rows, *tail), fill, dtype=dtype)

    def __getitem__(self, name: str) -> Array:
        return self.cols[name]

    def ensure(self, max_slot: int) -> None:
        """Make room for slots ``0..max_slot``."""
        if max_slot < self.capacity:
            return
        if max_slot >= 1 << 31:
            raise ValueError(f"slot {max_slot} is too large")
        capacity = max(16, self.capacity * 2, max_slot + 1)
        for name, old in self.cols.items():
            new = self._new(name, capacity)
            new[: self.capacity] = old
            self.cols[name] = new
        self.capacity = capacity

    def get_state(self) -> dict[str, Any]:
        return {"capacity": self.capacity, **{k: v.copy() for k, v in self.cols.items()}}

    def head(self, n: int) -> dict[str, Array]:
        """The first ``n`` slots of every column (a checkpoint of the slots in use)."""
        return {k: v[:n].copy() for k, v in self.cols.items()}

    def set_state(self, state: Mapping[str, Any]) -> None:
        present = [name for name in self.spec if name in state]
        if "capacity" in state:
            capacity = int(state["capacity"])
        elif present:
            capacity = len(np.asarray(state[present[0]]))
        else:
            raise ValueError("the checkpoint holds none of these columns")
        cols: dict[str, Array] = {}
        for name, (tail, dtype, _) in self.spec.items():
            if name not in state:
                cols[name] = self._new(name, capacity)
                continue
            arr: Array = np.array(state[name], dtype=dtype)
            if arr.ndim == 1 and len(tail) > 0 and arr.size == capacity * int(np.prod(tail)):
                arr = arr.reshape(capacity, *tail)  # a block stored flat
            if arr.shape != (capacity, *tail):
                raise ValueError(
                    f"state column {name!r} has shape {arr.shape}, expected {(capacity, *tail)}"
                )
            cols[name] = arr
        self.cols = cols
        self.capacity = capacity


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
