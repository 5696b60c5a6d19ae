"""The binary COPY encoding: byte-exact, then through a real PostgreSQL."""

from __future__ import annotations

import struct
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest

from ingest.rows import HEADER, TRAILER, RowBuffer, SeriesTable

PG_EPOCH = datetime(2000, 1, 1, tzinfo=UTC)


def parse_copy(stream: memoryview | bytes) -> list[tuple[int, float, str, str]]:
    """A reference reader of PostgreSQL's binary COPY format for our four columns."""
    data = bytes(stream)
    assert data.startswith(HEADER) and data.endswith(TRAILER)
    pos, rows = len(HEADER), []
    while data[pos : pos + 2] != TRAILER:
        (nfields,) = struct.unpack_from(">h", data, pos)
        assert nfields == 4
        pos += 2
        fields = []
        for _ in range(4):
            (size,) = struct.unpack_from(">i", data, pos)
            fields.append(data[pos + 4 : pos + 4 + size])
            pos += 4 + size
        rows.append(
            (
                struct.unpack(">q", fields[0])[0],
                struct.unpack(">d", fields[1])[0],
                fields[2].decode(),
                fields[3].decode(),
            )
        )
    assert pos + 2 == len(data)
    return rows


def sample() -> tuple[RowBuffer, SeriesTable, list[tuple[int, float, str, str]]]:
    table, buf, expected = SeriesTable(), RowBuffer(), []
    base = 830_000_000_000_000
    for k, sensor in enumerate(["a", "cam-0001", "aq-hoan-kiem-lake-north", "x" * 64]):
        for metric in ["pm25", "o3", "count_motorbike"]:
            us = [base + k * 10 + i for i in range(3)]
            values = [k + i / 8 for i in range(3)]
            buf.add(us, values, table.ids(sensor, [metric] * 3))
            expected += [(u, v, sensor, metric) for u, v in zip(us, values, strict=True)]
    return buf, table, expected


@pytest.mark.parametrize("sort", [False, True])
def test_encoding_is_exact_for_every_tail_length(sort: bool) -> None:
    buf, table, expected = sample()
    rows = parse_copy(buf.encode(table, sort=sort))
    assert sorted(rows) == sorted(expected)
    lengths = [len(r[2]) + len(r[3]) for r in rows]
    assert lengths == sorted(lengths)  # grouped by tail length (COPY ignores row order)
    if sort:  # and in (series, time) order within a group

        def key(r: tuple[int, float, str, str]) -> tuple[int, int, int]:
            return len(r[2]) + len(r[3]), table.ids(r[2], [r[3]])[0], r[0]

        assert rows == sorted(rows, key=key)


def test_one_row_and_one_series() -> None:
    table, buf = SeriesTable(), RowBuffer()
    buf.add([5], [1.5], table.ids("s", ["noise"]))
    assert parse_copy(buf.encode(table, sort=True)) == [(5, 1.5, "s", "noise")]
    assert table.ids("s", ["noise", "battery"]) == [0, 1]


@pytest.mark.db
def test_copy_into_readings(db: psycopg.Connection[Any]) -> None:
    buf, table, expected = sample()
    now_us = (datetime.now(UTC) - PG_EPOCH) // timedelta(microseconds=1)
    shift = now_us - 3_600_000_000 - 830_000_000_000_000  # into existing partitions
    shifted = RowBuffer()
    shifted.add([u + shift for u in buf.us], buf.values, buf.series)
    with db.cursor().copy(
        "COPY readings (time, value, sensor, metric) FROM STDIN (FORMAT BINARY)"
    ) as cp:
        cp.write(shifted.encode(table, sort=True))
    got = db.execute("SELECT time, value, sensor, metric FROM readings").fetchall()
    assert sorted(
        ((t - PG_EPOCH) // timedelta(microseconds=1) - shift, v, s, m) for t, v, s, m in got
    ) == sorted(expected)
