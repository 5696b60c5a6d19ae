"""Column buffers of a batch and their PostgreSQL binary COPY encoding, built with numpy.

A row of ``COPY readings (time, value, sensor, metric) FROM STDIN (FORMAT BINARY)``
is a fixed 26-byte head (field count, time, value) followed by the sensor and
metric as length-prefixed text (the "tail", encoded once per series).  COPY does
not care about row order, so rows are grouped by tail length; each group is a
numpy record array with a fixed-size tail field, a view into the one buffer of the
whole stream, filled in place and handed to COPY without a copy.  No Python object is made per reading beyond the decoded numbers.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

HEADER = b"PGCOPY\n\xff\r\n\x00" + b"\x00\x00\x00\x00" + b"\x00\x00\x00\x00"
TRAILER = b"\xff\xff"
COPY_COLUMNS = "(time, value, sensor, metric)"
_HEAD = 26  # bytes of a row before its tail: field count, time, value (with their lengths)
_HEADER = np.frombuffer(HEADER, np.uint8)
_TRAILER = np.frombuffer(TRAILER, np.uint8)
_MAX_SERIES = 2_000_000  # forget the tail cache past this many series


def _text(s: str) -> bytes:
    b = s.encode()
    return len(b).to_bytes(4, "big") + b


class SeriesTable:
    """(sensor, metric) -> a small integer and its encoded COPY tail."""

    def __init__(self) -> None:
        self._ids: dict[str, dict[str, int]] = {}
        self.tails: list[bytes] = []
        self._fixed: npt.NDArray[np.bytes_] | None = None
        self._lengths: npt.NDArray[np.int64] | None = None

    def ids(self, sensor: str, metrics: list[str]) -> list[int]:
        per = self._ids.get(sensor)
        if per is None:
            per = self._ids[sensor] = {}
        try:
            return list(map(per.__getitem__, metrics))
        except KeyError:
            out = []
            for m in metrics:
                i = per.get(m)
                if i is None:
                    i = per[m] = len(self.tails)
                    self.tails.append(_text(sensor) + _text(m))
                out.append(i)
            return out

    def __len__(self) -> int:
        return len(self.tails)

    def arrays(self) -> tuple[npt.NDArray[np.bytes_], npt.NDArray[np.int64]]:
        """Every tail as a fixed-width bytes array, and their lengths (cached until growth)."""
        if self._fixed is None or self._lengths is None or len(self._fixed) != len(self.tails):
            self._fixed = np.array(self.tails, dtype=np.bytes_)
            self._lengths = np.fromiter(map(len, self.tails), np.int64, len(self.tails))
        return self._fixed, self._lengths

    def trim(self) -> None:
        """Start afresh when the table grew past bounds (call between batches only)."""
        if len(self.tails) > _MAX_SERIES:
            self._ids.clear()
            self.tails.clear()
            self._fixed = self._lengths = None


class RowBuffer:
    """The readings of one batch in columns."""

    __slots__ = ("series", "us", "values")

    def __init__(self) -> None:
        self.us: list[int] = []
        self.values: list[float] = []
        self.series: list[int] = []

    def __len__(self) -> int:
        return len(self.us)

    def add(self, us: list[int], values: list[float], series: list[int]) -> None:
        self.us.extend(us)
        self.values.extend(values)
        self.series.extend(series)

    def span_us(self) -> tuple[int, int]:
        return min(self.us), max(self.us)

    def encode(
        self, table: SeriesTable, *, sort: bool, scratch: Scratch | None = None
    ) -> memoryview:
        """The whole batch as one binary COPY stream, written in place into one buffer.

        With ``scratch`` the stream is written into it and is valid until its next use.
        """
        n = len(self.us)
        us: npt.NDArray[np.int64] = np.fromiter(self.us, np.int64, n)
        values: npt.NDArray[np.float64] = np.fromiter(self.values, np.float64, n)
        series: npt.NDArray[np.int64] = np.fromiter(self.series, np.int64, n)
        if sort and n > 1:
            # index order within each group: fewer B-tree pages touched per batch
            order = np.lexsort((us, series))
            us, values, series = us[order], values[order], series[order]
        fixed, lengths = table.arrays()
        row_len = lengths[series]
        counts = np.bincount(row_len)
        groups = np.flatnonzero(counts)
        sizes = counts[groups] * (_HEAD + groups)
        size = len(HEADER) + int(sizes.sum()) + len(TRAILER)
        out = np.empty(size, np.uint8) if scratch is None else scratch.take(size)
        out[: len(HEADER)] = _HEADER
        out[len(out) - len(TRAILER) :] = _TRAILER
        offset = len(HEADER)
        for length, count, size in zip(
            groups.tolist(), counts[groups].tolist(), sizes.tolist(), strict=True
        ):
            sel = None if groups.size == 1 else np.flatnonzero(row_len == length)
            rows = np.ndarray(count, _row_dtype(length), out, offset)
            rows["n"] = 4
            rows["tl"] = 8
            rows["vl"] = 8
            if sel is None:
                rows["t"] = us
                rows["v"] = values
                rows["tail"] = fixed[series]
            else:
                rows["t"] = us[sel]
                rows["v"] = values[sel]
                rows["tail"] = fixed[series[sel]]
            offset += size
        return out.data


class Scratch:
    """A reusable byte buffer, one per writer: no fresh pages to fault in for every batch."""

    def __init__(self) -> None:
        self._buf: npt.NDArray[np.uint8] = np.empty(0, np.uint8)

    def take(self, size: int) -> npt.NDArray[np.uint8]:
        if self._buf.size < size:
            self._buf = np.empty(max(size, self._buf.size * 3 // 2), np.uint8)
        return self._buf[:size]


_ROW_DTYPES: dict[int, np.dtype[np.void]] = {}


def _row_dtype(tail: int) -> np.dtype[np.void]:
    dt = _ROW_DTYPES.get(tail)
    if dt is None:
        dt = _ROW_DTYPES[tail] = np.dtype(
            [
                ("n", ">i2"),
                ("tl", ">i4"),
                ("t", ">i8"),
                ("vl", ">i4"),
                ("v", ">f8"),
                ("tail", f"S{tail}"),
            ]
        )
    return dt
