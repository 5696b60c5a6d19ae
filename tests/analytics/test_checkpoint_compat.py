"""Checkpoints stay loadable: a whole pipeline's state written by an earlier release resumes identically.

``data/pipeline-checkpoint.bin`` holds the states of the default pipeline (rules,
series, health, AQI, fire, camera) after two simulated days, written by the release
before the per-slot state became one ``SlotArrays``; ``data/pipeline-day3.json``
what that release produced on the third day after loading it. The current code must
load the same bytes and produce the same third day, and must produce it as well
when it runs the three days without a restart.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from analytics.config import AnalyticsSettings
from analytics.engine.base import Batch, Context
from analytics.engine.pipeline import Pipeline, Result
from analytics.service.checkpoint import decode_state, encode_state
from analytics.stages.registry import build_pipeline
from core.types import DISPLAY_TZ, Sensor, SensorKind

DATA = Path(__file__).parent / "data"
STEP = 600.0
DAY = 86_400.0
# Monday 23 November 2026, 00:00 in Hanoi
T0 = datetime(2026, 11, 23, tzinfo=DISPLAY_TZ).timestamp()

SENSORS = {
    "wl-1": Sensor(id="wl-1", kind=SensorKind.WATER_LEVEL, lat=21.03, lon=105.85),
    "wl-2": Sensor(id="wl-2", kind=SensorKind.WATER_LEVEL, lat=21.04, lon=105.86),
    "aq-1": Sensor(id="aq-1", kind=SensorKind.AIR_QUALITY, lat=21.02, lon=105.80),
    "ws-1": Sensor(
        id="ws-1", kind=SensorKind.WEATHER, area="Sóc Sơn", attributes={"fire_watch": True}
    ),
    "ns-1": Sensor(id="ns-1", kind=SensorKind.NOISE, interval_s=STEP),
}


def readings(t: float, rng: np.random.Generator) -> list[tuple[str, str, float]]:
    """The city at time ``t``: daily cycles with noise, a flood and a smog episode on day 3."""
    day = (t - T0) / DAY
    hour = ((t - T0) % DAY) / 3600.0
    cycle = math.sin(2 * math.pi * hour / 24.0)
    flood = 2.5 if 2.4 < day < 2.6 else 0.0
    smog = 180.0 if 2.3 < day < 2.7 else 0.0
    rows = [
        ("wl-1", "water_level", 4.0 + 0.3 * cycle + flood + rng.normal(0, 0.02)),
        ("wl-2", "water_level", 3.5 + 0.2 * cycle + flood + rng.normal(0, 0.02)),
        ("aq-1", "pm25", max(1.0, 35.0 + 15.0 * cycle + smog + rng.normal(0, 3.0))),
        ("aq-1", "no2", max(1.0, 40.0 + 10.0 * cycle + rng.normal(0, 3.0))),
        ("ws-1", "temperature", 30.0 + 5.0 * cycle + rng.normal(0, 0.3)),
        ("ws-1", "humidity", max(5.0, 45.0 - 10.0 * cycle + rng.normal(0, 1.0))),
        ("ws-1", "rainfall", 0.0),
        ("ws-1", "wind_speed", abs(3.0 + rng.normal(0, 0.5))),
    ]
    if day < 2.2:  # the noise meter goes silent on day 3
        rows.append(("ns-1", "noise", 60.0 + 8.0 * cycle + rng.normal(0, 1.0)))
    return rows


def stream(days: float) -> Iterator[tuple[float, Batch]]:
    rng = np.random.default_rng(7)
    for k in range(int(days * DAY / STEP)):
        t = T0 + k * STEP
        rows = readings(t, rng)
        yield (
            t,
            Batch(
                sensor=[r[0] for r in rows],
                metric=[r[1] for r in rows],
                time=np.full(len(rows), t),
                value=np.array([r[2] for r in rows]),
            ),
        )


def pipeline() -> Pipeline:
    return build_pipeline(AnalyticsSettings(), Context(sensors=dict(SENSORS)))


def summary(results: list[Result]) -> dict[str, Any]:
    signals = [
        [s.sensor, s.metric, s.rule, s.time, s.active, str(s.severity)]
        for r in results
        for s in r.signals
    ]
    derived = [
        [d.time.timestamp(), d.sensor, d.metric, round(d.value, 6)]
        for r in results
        for d in r.derived
    ]
    return {"signals": signals, "derived": derived}


def run(p: Pipeline, since: float, until: float) -> list[Result]:
    out = []
    for t, b in stream(3.0):
        if since <= t < until:
            out.append(p.process(b))
            out.append(p.tick(t + STEP / 2))
    return out


def write_fixture() -> None:
    """Write the fixture (run once, by the release whose checkpoints must stay loadable)."""
    p = pipeline()
    run(p, T0, T0 + 2 * DAY)
    blob = encode_state(p.get_states())
    resumed = pipeline()
    resumed.set_states(decode_state(blob))
    day3 = summary(run(resumed, T0 + 2 * DAY, T0 + 3 * DAY))
    DATA.mkdir(exist_ok=True)
    (DATA / "pipeline-checkpoint.bin").write_bytes(blob)
    (DATA / "pipeline-day3.json").write_text(json.dumps(day3, indent=0) + "\n")


def expected() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((DATA / "pipeline-day3.json").read_text())
    return loaded


def test_the_fixture_saw_alerts_and_derived_readings() -> None:
    day3 = expected()
    found = {(s[1], s[2]) for s in day3["signals"]}
    assert {("water_level", "series.anomaly"), ("pm25", "pm25.level")} <= found, found
    assert any(s[0] == "ns-1" for s in day3["signals"]), "the silent meter was noticed"
    assert {d[2] for d in day3["derived"]} >= {"aqi_vn"}


def test_a_checkpoint_of_the_earlier_release_resumes_identically() -> None:
    p = pipeline()
    p.set_states(decode_state((DATA / "pipeline-checkpoint.bin").read_bytes()))
    assert summary(run(p, T0 + 2 * DAY, T0 + 3 * DAY)) == expected()


def test_without_a_restart_the_third_day_is_the_same() -> None:
    p = pipeline()
    run(p, T0, T0 + 2 * DAY)
    assert summary(run(p, T0 + 2 * DAY, T0 + 3 * DAY)) == expected()


def test_todays_checkpoint_round_trips() -> None:
    p = pipeline()
    run(p, T0, T0 + 2 * DAY)
    again = pipeline()
    again.set_states(decode_state(encode_state(p.get_states())))
    assert summary(run(again, T0 + 2 * DAY, T0 + 3 * DAY)) == expected()
