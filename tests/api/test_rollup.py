"""The hourly rollup answers whole-hour bucket queries exactly as raw readings would."""

from __future__ import annotations

import math
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import psycopg
import pytest

from api.config import ApiSettings
from api.rollup import ROLLUP_LOCK, floor_hour, hour_ranges
from ingest.store import mark_late
from tests.api.conftest import LiveApi, auth

pytestmark = pytest.mark.db

ORIGIN = datetime(2000, 1, 1, tzinfo=UTC)
NOW = datetime.now(UTC)
H = floor_hour(NOW)
SERIES = [("wl-a", "water_level"), ("wl-a", "rainfall"), ("wl-b", "water_level")]


def make_rows() -> list[tuple[datetime, str, str, float]]:
    rows = []
    t = H - timedelta(hours=30, minutes=3)
    i = 0
    while t < NOW - timedelta(seconds=30):
        for k, (sensor, metric) in enumerate(SERIES):
            if (i + k) % 5 != 0:  # series report at different moments
                rows.append((t, sensor, metric, round(50 + 20 * math.sin(i / 7 + k) + k, 3)))
        t += timedelta(minutes=7, seconds=13)
        i += 1
    return rows


ROWS = make_rows()


def expected(
    rows: list[tuple[datetime, str, str, float]],
    sensors: list[str],
    metrics: list[str] | None,
    start: datetime,
    end: datetime,
    width: timedelta,
) -> list[tuple[Any, ...]]:
    groups: dict[tuple[str, str, datetime], list[tuple[datetime, float]]] = defaultdict(list)
    for t, s, m, v in rows:
        if s in sensors and (not metrics or m in metrics) and start <= t < end:
            b = ORIGIN + ((t - ORIGIN) // width) * width
            groups[(s, m, b)].append((t, v))
    out = []
    for (s, m, b), pts in sorted(groups.items()):
        vals = [v for _, v in pts]
        last = max(pts)[1]
        out.append((b, s, m, sum(vals) / len(vals), min(vals), max(vals), len(vals), last))
    return out


def z(t: datetime) -> str:
    return t.isoformat().replace("+00:00", "Z")


def got(http: httpx.Client, **params: Any) -> list[tuple[Any, ...]]:
    resp = http.get("/api/v1/readings", params=params)
    assert resp.status_code == 200, resp.text
    return [
        (datetime.fromisoformat(r["bucket"]), r["sensor"], r["metric"], r["avg"], r["min"],
         r["max"], r["count"], r["last"])
        for r in resp.json()["items"]
    ]  # fmt: skip


def same(a: list[tuple[Any, ...]], b: list[tuple[Any, ...]]) -> bool:
    if len(a) != len(b):
        return False
    for x, y in zip(a, b, strict=True):
        if x[:3] != y[:3] or x[6] != y[6] or x[4:6] != y[4:6] or x[7] != y[7]:
            return False
        if not math.isclose(x[3], y[3], rel_tol=0, abs_tol=0.0005 + 1e-9):  # avg: 0.001
            return False
    return True


@pytest.fixture
def rolled(
    db: psycopg.Connection[Any],
    api_settings: ApiSettings,
    make_api: Callable[..., LiveApi],
    tokens: dict[str, str],
) -> Iterator[tuple[LiveApi, httpx.Client]]:
    with db.cursor().copy("COPY readings (time, sensor, metric, value) FROM STDIN") as cp:
        for row in ROWS:
            cp.write_row(row)
    live = make_api(
        api_settings.model_copy(
            update={
                "api_rollup": True,
                "api_rollup_interval_s": 0.3,
                "retention_days": 3,
                "api_rollup_trailing_h": 2,
            }
        )
    )
    deadline = time.monotonic() + 30
    target = floor_hour(NOW - timedelta(minutes=2))
    while True:  # the API's own refresher backfills three days, then keeps up
        row = (
            db.execute("SELECT watermark FROM api_rollup_state").fetchone()
            if _has_state(db)
            else None
        )
        if row and row[0] >= target:
            break
        assert time.monotonic() < deadline, "the rollup did not catch up"
        time.sleep(0.1)
    with httpx.Client(base_url=live.url, headers=auth(tokens["analyst"]), timeout=30) as http:
        yield live, http


def _has_state(db: psycopg.Connection[Any]) -> bool:
    row = db.execute("SELECT to_regclass('api_rollup_state') IS NOT NULL").fetchone()
    return bool(row and row[0])


CASES = [
    # start, end, bucket, sensors, metrics
    (H - timedelta(hours=24), H, "1h", ["wl-a"], ["water_level"]),
    (H - timedelta(hours=26, minutes=35), NOW, "1h", ["wl-a", "wl-b"], None),
    (H - timedelta(hours=29, minutes=1), H - timedelta(hours=3, minutes=17), "3h", ["wl-a"], None),
    (H - timedelta(days=2), NOW + timedelta(hours=1), "1d", ["wl-a", "wl-b"], ["water_level"]),
    (H - timedelta(hours=5, minutes=59), H + timedelta(minutes=40), "2h", ["wl-b"], None),
    (H - timedelta(hours=1), NOW, "1h", ["wl-a"], ["rainfall"]),  # mostly above the watermark
]


@pytest.mark.parametrize(("start", "end", "bucket", "sensors", "metrics"), CASES)
def test_rollup_answers_like_raw_readings(
    rolled: tuple[LiveApi, httpx.Client],
    start: datetime,
    end: datetime,
    bucket: str,
    sensors: list[str],
    metrics: list[str] | None,
) -> None:
    _, http = rolled
    width = {"1h": timedelta(hours=1), "2h": timedelta(hours=2), "3h": timedelta(hours=3),
             "1d": timedelta(days=1)}[bucket]  # fmt: skip
    params: dict[str, Any] = {"sensor": sensors, "start": z(start), "end": z(end), "bucket": bucket}
    if metrics:
        params["metric"] = metrics
    want = expected(ROWS, sensors, metrics, start, end, width)
    assert want, "the case selects no readings"
    answer = got(http, **params)
    assert same(answer, want), (answer[:3], want[:3])


def test_the_rollup_is_what_answers_and_late_readings_are_caught(
    rolled: tuple[LiveApi, httpx.Client], db: psycopg.Connection[Any]
) -> None:
    _, http = rolled
    hour = H - timedelta(hours=10)
    params = {"sensor": "wl-b", "metric": "water_level", "start": z(hour),
              "end": z(hour + timedelta(hours=1)), "bucket": "1h"}  # fmt: skip
    before = got(http, **params)
    db.execute(
        "UPDATE api_readings_1h SET max = 9999 WHERE sensor = 'wl-b' AND bucket = %s", (hour,)
    )
    assert got(http, **params)[0][5] == 9999  # read from the rollup, not from raw readings
    halves = got(http, **{**params, "bucket": "30m"})  # raw readings answer this one
    assert max(h[5] for h in halves) == before[0][5]
    # a late reading in an hour the trailing window covers is rolled up on the next cycle
    recent = max(
        floor_hour(NOW - timedelta(minutes=2)) - timedelta(hours=1), H - timedelta(hours=2)
    )
    late_t = recent + timedelta(minutes=1, seconds=1, microseconds=123)
    db.execute(
        "INSERT INTO readings (time, sensor, metric, value) VALUES (%s, 'wl-b', 'water_level', 777)",
        (late_t,),
    )
    q = {**params, "start": z(recent), "end": z(recent + timedelta(hours=1))}
    deadline = time.monotonic() + 15
    while got(http, **q)[0][5] != 777:
        assert time.monotonic() < deadline, "the late reading never reached the rollup"
        time.sleep(0.2)


def test_a_backfilled_closed_day_is_rolled_up_again(
    rolled: tuple[LiveApi, httpx.Client], db: psycopg.Connection[Any]
) -> None:
    _, http = rolled
    day = H.replace(hour=0) - timedelta(days=1)  # yesterday: closed, already rolled up
    at = day + timedelta(hours=5, minutes=30)
    params = {"sensor": "bf-1", "metric": "noise", "start": z(day),
              "end": z(day + timedelta(days=1)), "bucket": "1h"}  # fmt: skip
    assert got(http, **params) == []
    db.execute(
        "INSERT INTO readings (time, sensor, metric, value) VALUES (%s, 'bf-1', 'noise', 61.5)",
        (at,),
    )  # an import of old readings, long after the fact
    deadline = time.monotonic() + 40  # statistics reach pg_stat within ~10 s, then one cycle
    while not (answer := got(http, **params)):
        assert time.monotonic() < deadline, "the backfill never reached the rollup"
        time.sleep(0.5)
    assert answer == [(day + timedelta(hours=5), "bf-1", "noise", 61.5, 61.5, 61.5, 1, 61.5)]


def test_late_and_replayed_readings_are_read_raw_then_rolled_again(
    rolled: tuple[LiveApi, httpx.Client], db: psycopg.Connection[Any]
) -> None:
    """What the demo's history replay does: readings for hours the rollup has passed,
    older than its trailing window, on a day that has not closed."""
    _, http = rolled
    hour = H - timedelta(hours=5)
    late = [(hour + timedelta(minutes=m), "late-1", "noise", 50.0 + m) for m in (1, 20, 40)]
    params = {"sensor": "late-1", "metric": "noise", "start": z(hour - timedelta(hours=2)),
              "end": z(hour + timedelta(hours=2)), "bucket": "1h"}  # fmt: skip
    tampered = {"sensor": "wl-b", "metric": "water_level", "start": z(hour),
                "end": z(hour + timedelta(hours=1)), "bucket": "1h"}  # fmt: skip
    true_max = got(http, **tampered)[0][5]
    db.execute("SELECT pg_advisory_lock(%s)", (ROLLUP_LOCK,))  # the refresher waits
    try:
        with db.transaction():  # what the ingestor does in a batch's transaction
            with db.cursor().copy("COPY readings (time, sensor, metric, value) FROM STDIN") as cp:
                for row in late:
                    cp.write_row(row)
            us = [(t - ORIGIN) // timedelta(microseconds=1) for t, *_ in late]
            assert mark_late(db, us) == 1
            assert mark_late(db, us) == 0  # already marked
        live = (datetime.now(UTC) - ORIGIN) // timedelta(microseconds=1)
        assert mark_late(db, [live, live + 1]) == 0  # a live batch marks nothing
        db.execute(
            "UPDATE api_readings_1h SET max = 9999 WHERE sensor = 'wl-b' AND bucket = %s", (hour,)
        )
        # not rolled yet: the marked hour is read from raw readings, exactly
        assert got(http, **params) == [(hour, "late-1", "noise", 70.333, 51.0, 90.0, 3, 90.0)]
        assert got(http, **tampered)[0][5] == true_max
    finally:
        db.execute("SELECT pg_advisory_unlock(%s)", (ROLLUP_LOCK,))
    deadline = time.monotonic() + 15
    while db.execute("SELECT count(*) FROM readings_1h_stale").fetchone() != (0,):
        assert time.monotonic() < deadline, "the late hour was never rolled again"
        time.sleep(0.1)
    row = db.execute(
        "SELECT count, sum, max FROM api_readings_1h WHERE sensor = 'late-1' AND bucket = %s",
        (hour,),
    ).fetchone()
    assert row == (3, 211.0, 90.0)
    answer = got(http, **params)
    assert answer == [(hour, "late-1", "noise", 70.333, 51.0, 90.0, 3, 90.0)]
    assert got(http, **tampered)[0][5] == true_max  # the hour was rolled again whole
    resp = http.get("/api/v1/readings", params=params).json()
    assert resp["truncated"] is False


def test_hour_ranges_merge_consecutive_hours() -> None:
    hs = [H, H + timedelta(hours=1), H + timedelta(hours=3)]
    assert hour_ranges(hs) == [(H, H + timedelta(hours=2)), (hs[2], hs[2] + timedelta(hours=1))]
    assert hour_ranges([]) == []
