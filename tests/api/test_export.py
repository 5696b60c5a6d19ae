"""``ioc readings export``: a readings query through the API into a CSV file, with progress."""

from __future__ import annotations

import csv
import io
from datetime import timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest

from api.export import main
from tests.api.conftest import LiveApi
from tests.api.test_readings import T0, seed, z

pytestmark = [pytest.mark.db]


def test_export_writes_the_place_and_range_asked_for(
    live_api: LiveApi,
    tokens: dict[str, str],
    db: psycopg.Connection[Any],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    seed(db)
    db.execute(
        "INSERT INTO sensors (id, kind, lat, lon, area) VALUES"
        " ('wl-1', 'water_level', 21.01, 105.80, 'Cầu Giấy'),"
        " ('wl-2', 'water_level', 21.03, 105.85, 'Hoàn Kiếm')"
    )
    out = tmp_path / "cau-giay.csv"
    span = ["--start", z(T0), "--end", z(T0 + timedelta(hours=1))]
    common = ["--url", live_api.url, f"--token={tokens['analyst']}", "-o", str(out)]
    code = main(
        ["export", *common, "--area", "Cầu Giấy", "--metric", "water_level", *span, "--lang=en"]
    )
    assert code == 0
    rows = list(csv.reader(io.StringIO(out.read_text())))
    assert rows[0] == ["time", "sensor", "metric", "value"]
    assert len(rows) == 61 and {r[1] for r in rows[1:]} == {"wl-1"}  # one hour of one series
    assert capsys.readouterr().out.strip() == f"60 rows written to {out}"
    assert not (tmp_path / "cau-giay.csv.part").exists()

    # bucketed, in Vietnamese
    bucketed = ["--kind", "water_level", "--bucket", "1h", "--agg", "avg", "--lang", "vi"]
    code = main(["export", *common, *bucketed, *span])
    assert code == 0
    rows = list(csv.reader(io.StringIO(out.read_text())))
    assert rows[0] == ["bucket", "sensor", "metric", "avg"] and len(rows) == 4
    assert capsys.readouterr().out.strip() == f"đã ghi 3 dòng vào {out}"


def test_a_refusal_is_said_in_the_language_and_leaves_no_file(
    live_api: LiveApi, tokens: dict[str, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "x.csv"
    args = ["export", "--url", live_api.url, "-o", str(out), "--sensor", "wl-1"]
    assert main([*args, f"--token={tokens['operator']}", "--lang", "vi"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("ioc readings export: 403 ") and "vai trò operator" in err
    assert main([*args, f"--token={tokens['analyst']}", "--bucket", "7y", "--lang", "en"]) == 1
    assert "bucket must look like 1m" in capsys.readouterr().err
    assert not out.exists() and list(tmp_path.iterdir()) == []
