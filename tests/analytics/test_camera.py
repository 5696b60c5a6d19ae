"""The traffic-camera model: incidents caught, rush hours quiet, background refits, checkpoints."""

from __future__ import annotations

import itertools
import threading
from collections.abc import Iterator, Sequence
from datetime import datetime
from typing import Any

import numpy as np
import pytest

from analytics.engine.base import Batch, Context, Signal
from analytics.service.checkpoint import decode_state, encode_state
from analytics.stages import camera
from analytics.stages.camera_stage import CameraStage, describe_traffic
from core.types import DISPLAY_TZ

MONDAY = datetime(2026, 3, 2, tzinfo=DISPLAY_TZ).timestamp()
DAY = 86_400.0
CAMS = 30
NAMES = [f"cam-{i:04d}" for i in range(CAMS)]


def traffic(
    start: float,
    end: float,
    *,
    seed: int,
    incidents: Sequence[tuple[int, float, float]] = (),
    cams: int = CAMS,
    step_s: float = 60.0,
) -> Batch:
    """A synthetic city: every camera reports its four metrics every minute.

    Each camera has its own free-flow speed, volume and occupancy; weekdays have
    a morning (07:45) and an evening (17:30) rush hour whose size varies ±15 %
    from day to day, weekends one mild late-morning bump.  An incident on
    (camera, start, end) makes traffic crawl: 8 km/h, 85 % occupancy, 400 m queue.
    """
    city = np.random.default_rng(12345)  # the cameras' character never changes
    base_speed = city.uniform(35, 55, cams)
    base_count = city.uniform(20, 60, cams)
    base_occ = city.uniform(5, 15, cams)
    rng = np.random.default_rng(seed)
    t = np.arange(start, end, step_s)
    local = t + camera.TZ_OFFSET_S
    h = (local % DAY) / 3600.0
    day = (local // DAY).astype(np.int64)
    size = {d: np.random.default_rng(int(d)).uniform(0.85, 1.15) for d in np.unique(day)}
    amp = np.array([size[d] for d in day])
    weekday = (day + 3) % 7 < 5
    rush = (
        np.where(
            weekday,
            np.exp(-(((h - 7.75) / 1.0) ** 2)) + 0.9 * np.exp(-(((h - 17.5) / 1.2) ** 2)),
            0.45 * np.exp(-(((h - 10.5) / 2.0) ** 2)),
        )
        * amp
    )
    daylight = np.clip(np.sin(np.pi * (h - 5) / 18), 0.05, None)
    n = t.size
    r = rush[None, :]
    speed = base_speed[:, None] * (1 - 0.55 * r) + rng.normal(0, 2.5, (cams, n))
    occ = base_occ[:, None] + 45 * r + rng.normal(0, 3, (cams, n))
    count = base_count[:, None] * (0.3 + 0.7 * daylight) * (1 + 0.3 * r) + rng.normal(
        0, 3, (cams, n)
    )
    queue = 10 + 150 * r + rng.normal(0, 15, (cams, n))
    for cam, t0, t1 in incidents:
        m = (t >= t0) & (t < t1)
        speed[cam, m] = rng.normal(8, 1, m.sum())
        occ[cam, m] = rng.normal(85, 3, m.sum())
        queue[cam, m] = rng.normal(400, 30, m.sum())
        count[cam, m] *= 0.4
    values = np.stack(
        [
            np.clip(count, 0, None),
            np.clip(speed, 0, 250),
            np.clip(occ, 0, 100),
            np.clip(queue, 0, None),
        ],
        axis=-1,
    )  # (cams, n, 4)
    names = [f"cam-{i:04d}" for i in range(cams)]
    cam_idx = np.tile(np.repeat(np.arange(cams), 4), n)
    return Batch(
        sensor=[names[i] for i in cam_idx],
        metric=list(camera.FEATURES) * (cams * n),
        time=np.repeat(t, cams * 4),
        value=values.transpose(1, 0, 2).reshape(-1),
    )


def chunks(batch: Batch, seconds: float = 3600.0) -> Iterator[Batch]:
    """Split a time-ordered batch into micro-batches of ``seconds`` of data."""
    edges = np.searchsorted(batch.time, np.arange(batch.time[0], batch.time[-1] + seconds, seconds))
    edges = np.unique(np.r_[edges, len(batch)])
    for a, b in itertools.pairwise(edges):
        yield Batch(batch.sensor[a:b], batch.metric[a:b], batch.time[a:b], batch.value[a:b])


def feed(stage: CameraStage, batch: Batch, ctx: Context | None = None) -> list[Signal]:
    ctx = ctx or Context()
    out: list[Signal] = []
    for b in chunks(batch):
        out.extend(stage.process(b, ctx).signals)
    return out


def local(t: float) -> datetime:
    return datetime.fromtimestamp(t, DISPLAY_TZ)


@pytest.fixture(scope="module")
def trained() -> dict[str, Any]:
    """A week of history for 30 cameras and a model fitted on it (as a checkpoint)."""
    stage = CameraStage(auto_refit=False, seed=1)
    for d in range(7):
        assert feed(stage, traffic(MONDAY + d * DAY, MONDAY + (d + 1) * DAY, seed=100 + d)) == []
    stage.refit(block=True)
    assert stage.model_version == 1
    return stage.get_state()


def restored(state: dict[str, Any], cls: type[CameraStage] = CameraStage) -> CameraStage:
    stage = cls(auto_refit=False, seed=1)
    stage.set_state(state)
    assert stage.wait_refit(60)
    assert stage.model_version == 1
    return stage


def test_catches_an_incident_and_stays_quiet_through_the_rush_hours(
    trained: dict[str, Any],
) -> None:
    stage = restored(trained)
    monday = MONDAY + 7 * DAY
    start = monday + 11 * 3600
    signals = feed(
        stage, traffic(monday, monday + DAY, seed=7, incidents=[(3, start, start + 2400)])
    )
    assert [(s.sensor, s.active) for s in signals] == [("cam-0003", True), ("cam-0003", False)]
    opened, cleared = signals
    assert start < opened.time <= start + 900  # within three 5-minute windows
    assert start + 2400 < cleared.time <= start + 2400 + 1200
    assert opened.rule == "camera.multivariate" and opened.detector == "isolation_forest"
    assert opened.metric == "speed" and opened.value is not None and opened.value < 12
    assert opened.expected_low is not None and opened.expected_low > 30
    msg = opened.message
    assert msg.startswith("speed ") and "occupancy 8" in msg, msg
    assert "traffic far slower, denser" in msg and "than usual for Monday 11:" in msg, msg
    ev = opened.evidence
    assert set(ev) >= {"features", "expected", "z", "score", "threshold", "model_version"}
    assert ev["z"]["speed"] < -5 and ev["z"]["occupancy"] > 5
    _lo, hi = ev["expected"]["occupancy"]
    assert hi < 30 and ev["features"]["occupancy"] > 80
    assert opened.score is not None and opened.score >= ev["threshold"]


@pytest.mark.slow
def test_catches_incidents_in_the_rush_hour_and_at_the_weekend(trained: dict[str, Any]) -> None:
    stage = restored(trained)
    tuesday, saturday = MONDAY + 8 * DAY, MONDAY + 12 * DAY
    rush = tuesday + 8 * 3600
    signals = feed(
        stage, traffic(tuesday, tuesday + DAY, seed=8, incidents=[(7, rush, rush + 2400)])
    )
    assert [(s.sensor, s.active) for s in signals] == [("cam-0007", True), ("cam-0007", False)]
    assert "Tuesday 08:" in signals[0].message
    morning = saturday + 10 * 3600
    signals = feed(
        stage,
        traffic(
            saturday - 3 * DAY, saturday + DAY, seed=9, incidents=[(5, morning, morning + 1800)]
        ),
    )
    assert [(s.sensor, s.active) for s in signals] == [("cam-0005", True), ("cam-0005", False)]
    assert "than usual for Saturday 10:" in signals[0].message


class GatedStage(CameraStage):
    """A stage whose refit waits for the test to open a gate."""

    def __init__(self, **kw: Any) -> None:
        super().__init__(**kw)
        self.gate = threading.Event()
        self.gate.set()
        self.entered = threading.Event()

    def _fit(self, snap: camera.Snapshot) -> camera.CameraModel | None:
        self.entered.set()
        assert self.gate.wait(60)
        return super()._fit(snap)


def test_background_refit_swaps_models_without_blocking_scoring(trained: dict[str, Any]) -> None:
    stage = restored(trained, GatedStage)
    assert isinstance(stage, GatedStage)
    first = stage.model
    stage.gate.clear()
    stage.entered.clear()
    assert stage.refit()
    assert stage.entered.wait(10)
    assert stage.refitting and not stage.refit()  # one refit at a time
    monday = MONDAY + 7 * DAY
    start = monday + 11 * 3600
    signals = feed(
        stage, traffic(monday, monday + DAY, seed=7, incidents=[(3, start, start + 2400)])
    )
    # the whole day was scored while the refit was still blocked, by the old model
    assert stage.refitting and stage.model is first
    assert [(s.sensor, s.active) for s in signals] == [("cam-0003", True), ("cam-0003", False)]
    assert signals[0].evidence["model_version"] == 1
    stage.gate.set()
    assert stage.wait_refit(60)
    assert stage.model_version == 2 and stage.model is not first


def test_checkpoint_round_trip_resumes_identically(trained: dict[str, Any]) -> None:
    a = restored(trained)
    state = decode_state(encode_state(a.get_state()))  # what the service stores
    b = restored(state)
    assert b.model is not None and a.model is not None
    assert b.model.threshold == a.model.threshold
    tuesday = MONDAY + 8 * DAY
    start = tuesday + 15 * 3600
    day = traffic(tuesday, tuesday + DAY, seed=11, incidents=[(12, start, start + 1800)])
    sa, sb = feed(a, day), feed(b, day)
    assert [(s.sensor, s.active, s.time, s.message, s.score) for s in sa] == [
        (s.sensor, s.active, s.time, s.message, s.score) for s in sb
    ]
    assert [s.sensor for s in sa] == ["cam-0012", "cam-0012"]


def test_warm_up_then_automatic_refits() -> None:
    stage = CameraStage(warmup_s=6 * 3600, refit_every_s=6 * 3600, seed=2)
    assert feed(stage, traffic(MONDAY, MONDAY + 5 * 3600, seed=1, cams=5)) == []
    assert stage.model is None and not stage.refitting
    feed(stage, traffic(MONDAY + 5 * 3600, MONDAY + 7 * 3600, seed=2, cams=5))
    assert stage.wait_refit(60)
    assert stage.model_version == 1
    feed(stage, traffic(MONDAY + 7 * 3600, MONDAY + 14 * 3600, seed=3, cams=5))
    assert stage.wait_refit(60)
    assert stage.model_version == 2
    assert stage.fit_failures == 0


def test_a_quiet_cameras_window_closes_on_tick_and_late_readings_are_counted() -> None:
    stage = CameraStage(auto_refit=False)
    ctx = Context()
    t0 = MONDAY + 600.0  # window 2 of the day
    batch = Batch(
        ["cam-a"] * 2, ["speed", "occupancy"], np.array([t0, t0 + 30]), np.array([40.0, 12.0])
    )
    stage.process(batch, ctx)
    assert stage.get_state()["history"]["latest"] == -1  # the window is still open
    stage.tick(t0 + 300 + 299, ctx)  # window end + grace not yet passed
    assert stage.get_state()["history"]["latest"] == -1
    stage.tick(t0 + 300 + 300, ctx)
    hist = stage.get_state()["history"]
    w = int(t0 // 300)
    assert hist["latest"] == w
    np.testing.assert_allclose(
        hist["values"][0, w % hist["values"].shape[1]], [np.nan, 40.0, 12.0, np.nan]
    )
    stage.process(Batch(["cam-a"], ["speed"], np.array([t0 + 100]), np.array([41.0])), ctx)
    assert stage.late_readings == 1


def test_describe_traffic_speaks_like_an_operator() -> None:
    x = np.array([120.0, 8.0, 85.0, 60.0])
    z = np.array([0.5, -9.0, 7.0, 1.0])
    lo = np.array([100.0, 30.0, 20.0, 0.0])
    hi = np.array([140.0, 45.0, 35.0, 80.0])
    msg = describe_traffic(x, z, lo, hi, "Cầu Giấy (cam-0001)", "Saturday 08:00")
    assert msg == (
        "speed 8 km/h and occupancy 85 % at Cầu Giấy (cam-0001): traffic far slower and denser "
        "than usual for Saturday 08:00 (usual speed 30–45 km/h, occupancy 20–35 %)"
    )
    z2 = np.array([0.0, 0.0, 0.0, 3.0])
    assert describe_traffic(x, z2, lo, hi, "X", "Monday 09:00") == (
        "queue 60 m at X: queues longer than usual for Monday 09:00 (usual queue 0–80 m)"
    )
