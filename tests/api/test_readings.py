"""Readings history: raw and bucketed queries, limits, hostile parameters, streamed CSV."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import psycopg
import pytest

pytestmark = pytest.mark.db

T0 = (datetime.now(UTC) - timedelta(days=2)).replace(hour=0, minute=0, second=0, microsecond=0)


def z(t: datetime) -> str:
    return t.isoformat().replace("+00:00", "Z")


def seed(db: psycopg.Connection[Any]) -> None:
    """Two hours of one-minute readings for two sensors; a third series elsewhere."""
    with db.cursor().copy("COPY readings (time, sensor, metric, value) FROM STDIN") as cp:
        for i in range(120):
            t = T0 + timedelta(minutes=i)
            cp.write_row((t, "wl-1", "water_level", float(i)))
            cp.write_row((t, "wl-1", "rainfall", 1.0))
            cp.write_row((t, "wl-2", "water_level", 1000.0 + i))


def q(client: httpx.Client, **params: Any) -> dict[str, Any]:
    resp = client.get("/api/v1/readings", params=params)
    assert resp.status_code == 200, resp.text
    doc: dict[str, Any] = resp.json()
    return doc


def test_raw_readings(client: httpx.Client, db: psycopg.Connection[Any]) -> None:
    seed(db)
    doc = q(
        client,
        sensor="wl-1",
        metric="water_level",
        start=z(T0 + timedelta(minutes=10)),
        end=z(T0 + timedelta(minutes=13)),
    )
    assert doc["items"] == [
        {
            "time": z(T0 + timedelta(minutes=m)),
            "sensor": "wl-1",
            "metric": "water_level",
            "value": float(m),
        }
        for m in (10, 11, 12)
    ]
    assert doc["truncated"] is False
    cut = q(client, sensor="wl-1", start=z(T0), end=z(T0 + timedelta(hours=3)), limit=5)
    assert len(cut["items"]) == 5 and cut["truncated"] is True
    # several sensors, ordered by sensor, metric, time
    many = q(client, sensor=["wl-2", "wl-1"], start=z(T0), end=z(T0 + timedelta(minutes=2)))
    assert [(r["sensor"], r["metric"]) for r in many["items"]] == [
        ("wl-1", "rainfall"),
        ("wl-1", "rainfall"),
        ("wl-1", "water_level"),
        ("wl-1", "water_level"),
        ("wl-2", "water_level"),
        ("wl-2", "water_level"),
    ]


def test_buckets_with_every_aggregate(client: httpx.Client, db: psycopg.Connection[Any]) -> None:
    seed(db)
    doc = q(
        client,
        sensor="wl-1",
        metric="water_level",
        start=z(T0),
        end=z(T0 + timedelta(hours=2)),
        bucket="1h",
    )
    assert doc["bucket_s"] == 3600
    assert doc["items"] == [
        {"bucket": z(T0), "sensor": "wl-1", "metric": "water_level",
         "avg": 29.5, "min": 0.0, "max": 59.0, "count": 60, "last": 59.0},
        {"bucket": z(T0 + timedelta(hours=1)), "sensor": "wl-1", "metric": "water_level",
         "avg": 89.5, "min": 60.0, "max": 119.0, "count": 60, "last": 119.0},
    ]  # fmt: skip
    some = q(client, sensor="wl-1", metric="water_level", start=z(T0), end=z(T0 + timedelta(hours=1)),
             bucket="15m", agg="max,count")  # fmt: skip
    # only what was asked for: no null avg, min, last
    assert [b for b in some["items"]] == [
        {"bucket": z(T0 + timedelta(minutes=m)), "sensor": "wl-1", "metric": "water_level",
         "max": mx, "count": 15}
        for m, mx in ((0, 14.0), (15, 29.0), (30, 44.0), (45, 59.0))
    ]  # fmt: skip
    day = q(client, sensor=["wl-1", "wl-2"], metric="water_level", start=z(T0 - timedelta(days=3)),
            end=z(T0 + timedelta(days=1)), bucket="1d", agg=["avg", "last"])  # fmt: skip
    assert [(b["sensor"], b["avg"], b["last"]) for b in day["items"]] == [
        ("wl-1", 59.5, 119.0),
        ("wl-2", 1059.5, 1119.0),
    ]


@pytest.mark.parametrize(
    "params",
    [
        {},  # no sensor
        {"sensor": "bad id"},
        {"sensor": [f"s{i}" for i in range(51)]},
        {"sensor": "wl-1", "metric": "unicorns"},
        {"sensor": "wl-1", "start": "not a date"},
        {"sensor": "wl-1", "start": "2026-13-45T00:00:00Z"},
        {"sensor": "wl-1", "start": "NaN"},
        {"sensor": "wl-1", "start": "1700000000"},  # epoch numbers are not RFC 3339
        {"sensor": "wl-1", "start": "2026-01-01T00:00:00"},  # no zone
        {"sensor": "wl-1", "start": "0001-01-01T00:00:00Z"},
        {"sensor": "wl-1", "start": "2026-02-01T00:00:00Z", "end": "2026-01-01T00:00:00Z"},
        {"sensor": "wl-1", "start": "2026-01-01T00:00:00Z", "end": "2026-03-01T00:00:00Z"},  # raw > 31 d
        {"sensor": "wl-1", "start": "2024-01-01T00:00:00Z", "end": "2026-01-01T00:00:00Z", "bucket": "1d"},
        {"sensor": "wl-1", "start": "2026-01-01T00:00:00Z", "end": "2026-03-01T00:00:00Z", "bucket": "1m"},  # > 10,000 buckets
        {"sensor": "wl-1", "bucket": "30s"},
        {"sensor": "wl-1", "bucket": "2d"},
        {"sensor": "wl-1", "bucket": "1 fortnight"},
        {"sensor": "wl-1", "bucket": "99999999999999999h"},
        {"sensor": "wl-1", "bucket": "1h", "agg": "median"},
        {"sensor": "wl-1", "limit": 0},
        {"sensor": "wl-1", "limit": 10**12},
        {"sensor": "wl-1", "limit": "NaN"},
        {"sensor": "wl-1'; DROP TABLE readings; --"},
    ],
)  # fmt: skip
def test_hostile_parameters_are_422(shared_client: httpx.Client, params: dict[str, Any]) -> None:
    for path in ("/api/v1/readings", "/api/v1/readings/export.csv"):
        resp = shared_client.get(path, params=params)
        assert resp.status_code == 422, (path, resp.text)
        assert isinstance(resp.json()["detail"], str)


def test_csv_export_streams_everything(client: httpx.Client, db: psycopg.Connection[Any]) -> None:
    seed(db)
    params = {"sensor": ["wl-1", "wl-2"], "start": z(T0), "end": z(T0 + timedelta(hours=2))}
    with client.stream("GET", "/api/v1/readings/export.csv", params=params) as resp:
        assert resp.status_code == 200
        assert resp.headers["content-type"].startswith("text/csv")
        assert "attachment" in resp.headers["content-disposition"]
        text = "".join(resp.iter_text())
    rows = list(csv.reader(io.StringIO(text)))
    assert rows[0] == ["time", "sensor", "metric", "value"]
    assert len(rows) == 1 + 360
    assert rows[1] == [z(T0), "wl-1", "rainfall", "1.0"]
    bucketed = client.get(
        "/api/v1/readings/export.csv", params={**params, "bucket": "1h", "agg": "avg"}
    )
    rows = list(csv.reader(io.StringIO(bucketed.text)))
    assert rows[0] == ["bucket", "sensor", "metric", "avg"]  # the asked aggregates only
    assert rows[1] == [z(T0), "wl-1", "rainfall", "1.0"]
    assert len(rows) == 1 + 6


def test_averages_are_rounded_to_a_thousandth(
    client: httpx.Client, db: psycopg.Connection[Any]
) -> None:
    for k, v in enumerate((333.86, 333.9, 333.9)):
        db.execute(
            "INSERT INTO readings (time, sensor, metric, value) VALUES (%s, 'r-1', 'noise', %s)",
            (T0 + timedelta(minutes=k), v),
        )
    params = {"sensor": "r-1", "start": z(T0), "end": z(T0 + timedelta(hours=1)), "bucket": "1h"}
    assert q(client, **params)["items"][0]["avg"] == 333.887  # not 333.88666666666666
    csv_text = client.get("/api/v1/readings/export.csv", params=params).text
    assert ",333.887," in csv_text


def test_a_big_answer_is_complete(client: httpx.Client, db: psycopg.Connection[Any]) -> None:
    """More rows than BIG_ANSWER: encoded off the event loop, same shape."""
    n = 6_000
    with db.cursor().copy("COPY readings (time, sensor, metric, value) FROM STDIN") as cp:
        for i in range(n):
            cp.write_row((T0 + timedelta(minutes=i), "big-1", "noise", 40.0 + i % 7))
    doc = q(client, sensor="big-1", start=z(T0), end=z(T0 + timedelta(minutes=n)), limit=n)
    assert len(doc["items"]) == n and doc["truncated"] is False
    assert doc["items"][-1] == {
        "time": z(T0 + timedelta(minutes=n - 1)),
        "sensor": "big-1",
        "metric": "noise",
        "value": 40.0 + (n - 1) % 7,
    }


def test_every_reader_may_chart_the_last_day_but_history_needs_the_analyst(
    live_api: Any, tokens: dict[str, str], db: psycopg.Connection[Any]
) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    db.execute(
        "INSERT INTO readings VALUES (%s, 'wl-9', 'water_level', 42)", (now - timedelta(hours=1),)
    )
    for role in ("operator", "engineer"):
        headers = {"Authorization": f"Bearer {tokens[role]}"}
        with httpx.Client(base_url=live_api.url, headers=headers) as c:
            recent = c.get("/api/v1/readings", params={"sensor": "wl-9"})
            assert recent.status_code == 200, recent.text
            assert [r["value"] for r in recent.json()["items"]] == [42.0]
            old = c.get(
                "/api/v1/readings",
                params={"sensor": "wl-9", "start": z(now - timedelta(days=3)), "end": z(now)},
            )
            assert old.status_code == 403 and "analyst" in old.json()["detail"]
            assert (
                c.get("/api/v1/readings/export.csv", params={"sensor": "wl-9"}).status_code == 403
            )


def test_readings_of_a_place_bbox_area_kind(
    client: httpx.Client, db: psycopg.Connection[Any]
) -> None:
    seed(db)
    db.execute(
        "INSERT INTO sensors (id, kind, lat, lon, area) VALUES"
        " ('wl-1', 'water_level', 21.01, 105.80, 'Cầu Giấy'),"
        " ('wl-2', 'water_level', 21.03, 105.85, 'Hoàn Kiếm')"
    )
    span = {"start": z(T0), "end": z(T0 + timedelta(hours=2)), "bucket": "1h", "agg": "count"}

    def series(**params: Any) -> set[tuple[str, str]]:
        return {(b["sensor"], b["metric"]) for b in q(client, **span, **params)["items"]}

    both = {("wl-1", "water_level"), ("wl-1", "rainfall"), ("wl-2", "water_level")}
    assert series(kind="water_level") == both
    assert series(area="Cầu Giấy") == {("wl-1", "water_level"), ("wl-1", "rainfall")}
    assert series(bbox="105.84,21.02,105.86,21.04") == {("wl-2", "water_level")}
    assert series(kind="water_level", sensor="wl-2", metric="water_level") == {
        ("wl-2", "water_level")
    }  # ids and a place together: both must hold
    assert series(kind="noise") == set()
    csv_text = client.get("/api/v1/readings/export.csv", params={**span, "area": "Hoàn Kiếm"}).text
    assert csv_text.splitlines()[1:] == [
        f"{z(T0)},wl-2,water_level,60",
        f"{z(T0 + timedelta(hours=1))},wl-2,water_level,60",
    ]
    nothing = client.get("/api/v1/readings", params=span)
    assert nothing.status_code == 422 and "a place" in nothing.text
    db.execute(
        "INSERT INTO sensors (id, kind) SELECT 'n-' || i, 'noise' FROM generate_series(1, 51) i"
    )
    many = client.get("/api/v1/readings", params={**span, "kind": "noise"})
    assert many.status_code == 422 and "more than 50 sensors" in many.text
    assert client.get("/api/v1/readings", params={**span, "bbox": "1,2,3"}).status_code == 422
