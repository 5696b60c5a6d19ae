"""Per-slot state arrays for vectorised detectors: named columns that grow as slots appear."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import numpy.typing as npt

Array = npt.NDArray[Any]

# readings are clipped to this magnitude so that squares and sums stay finite
VALUE_LIMIT = 1e100


class SlotArrays:
    """Named arrays whose first axis is the slot; grown (doubling) when a higher slot appears.

    ``spec`` maps a column name to ``(width, dtype, fill)``: width 0 is one value per
    slot, width ``k`` a row of ``k`` values per slot (e.g. a seasonal profile).
    """

    def __init__(self, spec: Mapping[str, tuple[int, type, float]]) -> None:
        self.spec = dict(spec)
        self.capacity = 0
        self.cols: dict[str, Array] = {name: self._new(name, 0) for name in self.spec}

    def _new(self, name: str, rows: int) -> Array:
        width, dtype, fill = self.spec[name]
        shape = (rows,) if width == 0 else (rows, width)
        return np.full(shape, fill, dtype=dtype)

    def ensure(self, max_slot: int) -> None:
        """Make room for slots ``0..max_slot`` (new slots start at their fill values)."""
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

    def set_state(self, state: Mapping[str, Any]) -> None:
        capacity = int(state["capacity"])
        cols: dict[str, Array] = {}
        for name in self.spec:
            width, dtype, _ = self.spec[name]
            if name not in state:  # a checkpoint from before the column existed
                cols[name] = self._new(name, capacity)
                continue
            arr: Array = np.array(state[name], dtype=dtype)
            expected = (capacity,) if width == 0 else (capacity, width)
            if arr.shape != expected:
                raise ValueError(
                    f"state column {name!r} has shape {arr.shape}, expected {expected}"
                )
            cols[name] = arr
        self.cols = cols
        self.capacity = capacity
