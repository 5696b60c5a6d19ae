"""Per-station time buckets: per-channel sums and counts of the open bucket, closed as later readings arrive."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from itertools import repeat
from typing import Any

import numpy as np

from analytics.engine.base import (
    Batch,
    FloatArray,
    IntArray,
)
from analytics.engine.slots import SlotArrays

logger = logging.getLogger(__name__)


class Registry:
    """Sensor id <-> dense index, growing as sensors appear."""

    def __init__(self) -> None:
        self.names: list[str] = []
        self.index: dict[str, int] = {}

    def __len__(self) -> int:
        return len(self.names)

    def codes(self, names: list[str]) -> IntArray:
        out = np.fromiter(map(self.index.get, names, repeat(-1)), dtype=np.int64, count=len(names))
        if (out < 0).any():
            for i in np.flatnonzero(out < 0):
                name = names[i]
                code = self.index.get(name)
                if code is None:
                    code = len(self.names)
                    self.index[name] = code
                    self.names.append(name)
                out[i] = code
        return out

    def restore(self, names: list[str]) -> None:
        self.names = [str(n) for n in names]
        self.index = {n: i for i, n in enumerate(self.names)}


def select(batch: Batch, table: Mapping[str, int]) -> tuple[IntArray, IntArray]:
    """Positions of the batch rows whose metric is in ``table`` (finite values), and their codes."""
    codes = np.fromiter(map(table.get, batch.metric, repeat(-1)), dtype=np.int64, count=len(batch))
    pos = np.flatnonzero((codes >= 0) & np.isfinite(batch.value))
    return pos, codes[pos]


def take(items: list[str], pos: IntArray) -> list[str]:
    """``[items[i] for i in pos]`` at C speed."""
    return list(map(items.__getitem__, pos.tolist()))


@dataclass(frozen=True, slots=True)
class Closed:
    """Buckets that are complete, sorted by (station, bucket)."""

    station: IntArray
    bucket: IntArray
    sums: FloatArray  # (n, channels)
    counts: IntArray  # (n, channels)

    @property
    def size(self) -> int:
        return int(self.station.size)

    def means(self) -> FloatArray:
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(self.counts > 0, self.sums / np.maximum(self.counts, 1), np.nan)


def empty_closed(channels: int) -> Closed:
    e = np.zeros(0, np.int64)
    return Closed(e, e, np.zeros((0, channels)), np.zeros((0, channels), np.int64))


NEVER = int(np.iinfo(np.int64).min)


class Buckets:
    """Per station, the one open bucket's per-channel sums and counts; closes it when a later one starts."""

    def __init__(self, channels: int) -> None:
        self.channels = channels
        self.slots = SlotArrays(
            {
                "open": (0, np.int64, -1),
                "closed_upto": (0, np.int64, NEVER),
                "sums": (channels, np.float64, 0.0),
                "counts": (channels, np.int64, 0),
            }
        )

    @property
    def open(self) -> IntArray:
        return self.slots.cols["open"]

    @property
    def closed_upto(self) -> IntArray:
        return self.slots.cols["closed_upto"]

    @property
    def sums(self) -> FloatArray:
        return self.slots.cols["sums"]

    @property
    def counts(self) -> IntArray:
        return self.slots.cols["counts"]

    def ensure(self, max_station: int) -> None:
        self.slots.ensure(max_station)

    def add(
        self, st: IntArray, bucket: IntArray, ch: IntArray, val: FloatArray
    ) -> tuple[Closed, int]:
        """Add readings; return the buckets they completed and how many readings came too late."""
        self.ensure(int(st.max()) if st.size else -1)
        opened = self.open[st]
        late = (bucket <= self.closed_upto[st]) | ((opened >= 0) & (bucket < opened))
        n_late = int(late.sum())
        if n_late:
            keep = ~late
            st, bucket, ch, val = st[keep], bucket[keep], ch[keep], val[keep]
        if st.size == 0:
            return empty_closed(self.channels), n_late
        c = self.channels
        if (bucket == self.open[st]).all():  # the usual case: nothing completes
            n = self.open.size
            flat = st * c + ch
            self.sums[:] += np.bincount(flat, weights=val, minlength=n * c).reshape(n, c)
            self.counts[:] += np.bincount(flat, minlength=n * c).reshape(n, c)
            return empty_closed(c), n_late
        newest = self.open.copy()
        np.maximum.at(newest, st, bucket)
        touched = np.unique(st)
        carry = touched[self.open[touched] >= 0]
        g_st = np.concatenate([st, carry])
        g_b = np.concatenate([bucket, self.open[carry]])
        base = int(g_b.min())
        key = g_st * (1 << 32) + (g_b - base)
        uk, inv = np.unique(key, return_inverse=True)
        g = uk.size
        flat = inv[: st.size] * c + ch
        sums: FloatArray = np.asarray(
            np.bincount(flat, weights=val, minlength=g * c), dtype=np.float64
        ).reshape(g, c)
        counts: IntArray = np.bincount(flat, minlength=g * c).reshape(g, c).astype(np.int64)
        inv_carry = inv[st.size :]
        sums[inv_carry] += self.sums[carry]
        counts[inv_carry] += self.counts[carry]
        gs = uk >> 32
        gb = (uk & ((1 << 32) - 1)) + base
        is_open = gb == newest[gs]
        self.open[gs[is_open]] = gb[is_open]
        self.sums[gs[is_open]] = sums[is_open]
        self.counts[gs[is_open]] = counts[is_open]
        done = ~is_open
        np.maximum.at(self.closed_upto, gs[done], gb[done])
        return Closed(gs[done], gb[done], sums[done], counts[done]), n_late

    def close_before(self, limit: int) -> Closed:
        """Close the open buckets numbered below ``limit`` (their sensor went quiet)."""
        st = np.flatnonzero((self.open >= 0) & (self.open < limit)).astype(np.int64)
        if st.size == 0:
            return empty_closed(self.channels)
        out = Closed(st, self.open[st].copy(), self.sums[st].copy(), self.counts[st].copy())
        self.closed_upto[st] = np.maximum(self.closed_upto[st], self.open[st])
        self.open[st] = -1
        self.sums[st] = 0.0
        self.counts[st] = 0
        return out

    def get_state(self, n: int) -> dict[str, Any]:
        return self.slots.head(n)

    def set_state(self, state: Mapping[str, Any]) -> None:
        self.slots.set_state(state)
