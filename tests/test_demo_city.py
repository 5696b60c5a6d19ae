"""The demo's simulated city: accelerated history that meets the clock, scenarios the simulator accepts."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import orjson
import pytest

from ioc.democity import CATCH_UP_WALL_S, INCIDENTS, MAX_HISTORY_S, CityPlan

ROOT = Path(__file__).resolve().parents[1]


def test_history_lasts_about_three_minutes_and_ends_at_the_clock() -> None:
    plan = CityPlan(speed=60, share=0.1)
    assert plan.history_s == pytest.approx(59 * CATCH_UP_WALL_S)
    # simulated start + speed * wall = wall clock, after history / (speed - 1) wall seconds
    wall = plan.history_s / (plan.speed - 1)
    assert -plan.history_s + plan.speed * wall == pytest.approx(wall)
    assert CityPlan(speed=100_000, share=0.1).history_s == MAX_HISTORY_S
    assert CityPlan(speed=1, share=0.1).history_s == 0
    assert CityPlan(speed=0.5, share=0.1).history_s == 0


def test_camera_share(tmp_path: Path) -> None:
    assert CityPlan(60, 1.0).cameras == 1873
    assert CityPlan(60, 0.1).cameras == 187
    assert CityPlan(60, 0.0001).cameras == 10


def test_live_only_when_not_accelerated(tmp_path: Path) -> None:
    first, then = CityPlan(speed=1, share=0.1).argv(tmp_path)
    assert then is None
    assert first[first.index("--speed") + 1] == "1"
    assert "incidents:" in (tmp_path / "live.yaml").read_text()


@pytest.mark.slow
def test_the_simulator_accepts_the_demo_scenarios_and_injects_every_incident(
    tmp_path: Path,
) -> None:
    plan = CityPlan(speed=600, share=0.01)
    first, then = plan.argv(tmp_path)
    assert then is not None and "live.yaml" in " ".join(then)
    # the same run, as fast as possible into a file instead of MQTT
    args = first[1:]
    i = args.index("--speed")
    del args[i : i + 2]
    args[args.index("--until") + 1] = "now"
    out = tmp_path / "messages.tsv"
    started = time.time()
    proc = subprocess.run(
        [sys.executable, "-m", "ioc", "simulate", *args, "--fast", "--output", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    truth = [
        orjson.loads(line)
        for line in (tmp_path / "truth-history.jsonl").read_text().splitlines()
        if line.strip()
    ]
    scripted = sorted(t["id"] for t in truth if t["id"].startswith("scn-"))
    assert scripted == [f"scn-{i:03d}" for i in range(1, len(INCIDENTS) + 1)]
    kinds = {t["kind"] for t in truth if t["id"].startswith("scn-")}
    assert kinds == {
        "traffic_incident",
        "sensor_fault",
        "flash_flood",
        "pollution_episode",
        "fire_weather",
    }
    faults = {t["fault"]: t["sensors"] for t in truth if t["id"].startswith("scn-") and t["fault"]}
    assert faults == {"spike": ["wl-00011"], "stuck": ["aq-00007"], "offline": ["nm-00010"]}
    # nothing from the future: ingest would reject it
    newest = 0.0
    for line in out.read_text(encoding="utf-8").splitlines():
        topic, _, payload = line.split("\t", 2)
        doc = orjson.loads(payload) if topic.endswith("/data") else None
        if isinstance(doc, dict) and isinstance(doc.get("ts"), int | float):
            newest = max(newest, doc["ts"] / 1000)
    assert 0 < newest <= time.time() + 5
    assert newest > started - plan.history_s
