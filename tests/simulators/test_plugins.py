"""Plug-in sensor models: a small Python class, or a declaration in a scenario file."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import ClassVar

import numpy as np
import pytest

from core.errors import ConfigError, ScenarioError
from core.topics import parse_sensor_topic
from core.types import SensorKind
from simulators import SensorModel, register
from simulators.models import MODELS, builtin_models, load_plugin
from tests.simulators.util import engine, hanoi, run, series, values_of

T0 = hanoi("2026-11-23T06:00")


@pytest.fixture
def registry() -> Iterator[None]:
    before = dict(builtin_models())
    yield
    MODELS.clear()
    MODELS.update(before)


def test_the_worked_example_plugs_in(registry: None) -> None:
    assert load_plugin("tests.simulators.plugin_example") in (["car_park"], [])
    assert "car_park" in MODELS
    eng = engine(T0, counts={"car_park": 6, "traffic_camera": 5})
    msgs = eng.announce(T0) + run(eng, T0, T0 + 4 * 3600)
    metas = [m for m in msgs if m.channel == "meta" and "/generic/park-" in m.topic]
    assert len(metas) == 6 and b'"metrics":["occupancy","battery"]' in metas[0].payload
    s = series(msgs)
    early = values_of(s, "park-", "occupancy", T0, T0 + 1800)
    later = values_of(s, "park-", "occupancy", T0 + 3 * 3600, T0 + 4 * 3600)
    assert later.mean() > early.mean() + 10  # it fills after the morning peak
    assert {parse_sensor_topic(m.topic).kind for m in msgs if "park-" in m.topic} == {
        SensorKind.GENERIC
    }


def test_a_plugin_class_by_name_and_its_errors(registry: None) -> None:
    assert load_plugin("tests.simulators.plugin_example:CarParkModel") == ["car_park"]
    with pytest.raises(ConfigError, match="cannot import"):
        load_plugin("no.such.module")
    with pytest.raises(ConfigError, match="not a SensorModel"):
        load_plugin("tests.simulators.plugin_example:np")


def test_a_model_with_a_metric_outside_the_catalogue_is_refused(registry: None) -> None:
    with pytest.raises(ConfigError, match="'brightness' is not in the catalogue"):

        @register
        class Lamp(SensorModel):
            name = "lamp"
            metrics = ("brightness",)

            def values(
                self, t: np.ndarray, rng: np.random.Generator, city: object
            ) -> Mapping[str, np.ndarray]:  # type: ignore[override]
                return {}


def test_wrong_shapes_from_a_plugin_are_reported(registry: None) -> None:
    @register
    class Broken(SensorModel):
        name = "broken"
        metrics = ("battery",)
        default_count = 0
        decimals: ClassVar[Mapping[str, int]] = {}

        def values(
            self, t: np.ndarray, rng: np.random.Generator, city: object
        ) -> Mapping[str, np.ndarray]:  # type: ignore[override]
            return {"battery": np.ones(len(t) + 1)}

    eng = engine(T0, counts={"broken": 3})
    with pytest.raises(ConfigError, match="battery has 4 values for 3 sensors"):
        run(eng, T0, T0 + 120)


def test_a_declared_sensor_type_runs_without_python() -> None:
    eng = engine(
        T0,
        counts={"traffic_camera": 2},
        scenario="""
sensor_types:
  - name: pump_station
    kind: water_level
    id_prefix: pump
    count: 3
    interval_s: 120
    area: Hoàng Mai
    metrics:
      water_level: {base: 150, daily_amplitude: 10, peak_hour: 18, noise: 0.5, decimals: 1}
      battery: {base: 90}
""",
    )
    table = eng.models["pump_station"].sensors
    assert table.ids == ["pump-00001", "pump-00002", "pump-00003"] and set(table.areas) == {
        "Hoàng Mai"
    }
    s = series(run(eng, T0, T0 + 3600))
    wl = values_of(s, "pump-", "water_level")
    assert len(wl) == 90 and 135 < wl.mean() < 150  # base 150, cycle peaking at 18:00, low at 06:00
    assert set(values_of(s, "pump-", "battery").tolist()) == {90.0}


def test_a_declared_sensor_type_with_a_bad_prefix_names_its_line() -> None:
    with pytest.raises(ScenarioError, match=r"line 4: .*id_prefix '-bad' would make invalid"):
        engine(
            T0,
            scenario="seed: 1\nsensor_types:\n  - name: x\n    id_prefix: '-bad'\n    metrics: {battery: {base: 1}}\n",
        )
