"""Helpers shared by the simulator tests: build small cities and read their messages back."""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime

import numpy as np

from core.codecs import Limits, decode_readings
from core.topics import Channel, parse_sensor_topic
from core.types import DISPLAY_TZ
from simulators.build import SimConfig, build_engine
from simulators.engine import Engine, Message
from simulators.scenario import Scenario, parse_scenario, parse_text

SMALL = {"traffic_camera": 60, "air_quality": 8, "water_level": 10, "weather": 10, "noise": 5}
NO_LIMITS = Limits(max_future_skew_s=1e12, max_age_s=1e12)


def hanoi(text: str) -> float:
    """Epoch seconds of a Hanoi local time, e.g. ``2026-11-23T07:00``."""
    return datetime.fromisoformat(text).replace(tzinfo=DISPLAY_TZ).timestamp()


def engine(
    start: float,
    *,
    seed: int = 7,
    counts: dict[str, int] | None = None,
    scenario: str | None = None,
    **kw: object,
) -> Engine:
    sc = parse_scenario(parse_text(scenario, "test.yaml"), "test.yaml") if scenario else Scenario()
    # models not named get no sensors, so a test's city is exactly what it asks for
    wanted = {name: 0 for name in SMALL} | dict(counts or SMALL)
    cfg = SimConfig(start=start, seed=seed, counts=wanted, scenario=sc, **kw)  # type: ignore[arg-type]
    return build_engine(cfg)


def run(eng: Engine, start: float, end: float, step: float = 600.0) -> list[Message]:
    out: list[Message] = []
    t = start
    while t < end:
        b = min(end, t + step)
        out += eng.window(t, b)
        t = b
    return out


Series = dict[tuple[str, str], tuple[np.ndarray, np.ndarray]]


def series(messages: list[Message]) -> Series:
    """Decode every data message with the ingest codec: {(sensor, metric): (times, values)}."""
    acc: dict[tuple[str, str], list[tuple[float, float]]] = defaultdict(list)
    for m in messages:
        st = parse_sensor_topic(m.topic)
        if st.channel is not Channel.DATA:
            continue
        dec = decode_readings(st.sensor, m.payload, now=m.t, limits=NO_LIMITS)
        assert not dec.rejections, (m.topic, dec.rejections)
        assert len(dec.readings) == m.readings
        for r in dec.readings:
            acc[(r.sensor, r.metric)].append((r.time.timestamp(), r.value))
    out: Series = {}
    for key, pts in acc.items():
        arr = np.array(sorted(pts))
        out[key] = (arr[:, 0], arr[:, 1])
    return out


def values_of(
    s: Series, prefix: str, metric: str, t0: float = -np.inf, t1: float = np.inf
) -> np.ndarray:
    """All values of ``metric`` from sensors whose id starts with ``prefix`` within [t0, t1)."""
    vals = [
        v[(t >= t0) & (t < t1)]
        for (sid, m), (t, v) in s.items()
        if m == metric and sid.startswith(prefix)
    ]
    return np.concatenate(vals) if vals else np.zeros(0)
