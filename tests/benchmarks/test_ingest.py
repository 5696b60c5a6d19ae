"""The benchmark runs end to end on a small load and reports every figure (no speed asserted)."""

from __future__ import annotations

import re

import pytest

from benchmarks.ingest import Scenario, main, payloads
from tests.support.servers import PostgresServer


def test_payloads_are_distinct_and_split_between_publishers() -> None:
    sc = Scenario("x", sensors=7, per_message=50, messages=40)
    parts = [list(payloads(sc, p, 3, 1_700_000_000_000)) for p in range(3)]
    assert sum(len(p) for p in parts) == 40
    single = Scenario("y", sensors=7, per_message=1, messages=40)
    topics_payloads = [m for p in range(3) for m in payloads(single, p, 3, 0)]
    assert len(set(topics_payloads)) == 40


@pytest.mark.slow
@pytest.mark.e2e
def test_bench_reports_ceilings_end_to_end_and_memory(
    pg_server: PostgresServer, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(
        [
            "--pack-messages",
            "100",
            "--single-messages",
            "600",
            "--sensors",
            "50",
            "--publishers",
            "1",
            "--database-url",
            pg_server.dsn("postgres"),
        ]
    )
    out = capsys.readouterr().out
    assert code == 0, out
    assert re.search(r"\(a\) packs of 50 +100 +5,000 \|", out), out
    assert re.search(r"\(b\) single, QoS 1 +600 +600 \|", out), out
    assert "goal (a)" in out and "goal (b)" in out and "CPU per message" in out
    assert "ROW COUNT WRONG" not in out
