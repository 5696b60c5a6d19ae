"""Injected incidents and sensor faults, their time envelopes and their ground-truth records.

Every incident the simulator injects is written as one JSON line to the ground
truth file (format in docs/simulators.md, ``schema`` = ``TRUTH_SCHEMA``), so an
evaluation can measure detection rate and delay against it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

import numpy as np

from simulators.noise import FloatArray

TRUTH_SCHEMA = "ioc.sim.truth/1"


class IncidentKind(StrEnum):
    TRAFFIC_INCIDENT = "traffic_incident"
    POLLUTION_EPISODE = "pollution_episode"
    FLASH_FLOOD = "flash_flood"
    FIRE_WEATHER = "fire_weather"
    SENSOR_FAULT = "sensor_fault"


class FaultKind(StrEnum):
    STUCK = "stuck"  # the value freezes
    DROPOUT = "dropout"  # readings stop arriving, the device stays "online"
    SPIKE = "spike"  # a few absurd readings (clamped to the physical range)
    DRIFT = "drift"  # a growing bias
    OFFSET = "offset"  # a constant calibration bias
    OFFLINE = "offline"  # the device goes offline (status) and sends nothing


# what each incident does to the readings: metric -> direction
EXPECTED: dict[IncidentKind, dict[str, str]] = {
    IncidentKind.TRAFFIC_INCIDENT: {"speed": "down", "occupancy": "up", "queue_length": "up"},
    IncidentKind.POLLUTION_EPISODE: {"pm25": "up", "pm10": "up"},
    IncidentKind.FLASH_FLOOD: {"water_level": "up", "rainfall": "up"},
    IncidentKind.FIRE_WEATHER: {"temperature": "up", "humidity": "down", "wind_speed": "up"},
}

FAULT_DIRECTION: dict[FaultKind, str] = {
    FaultKind.STUCK: "flat",
    FaultKind.DROPOUT: "missing",
    FaultKind.SPIKE: "up",
    FaultKind.DRIFT: "up",
    FaultKind.OFFSET: "up",
    FaultKind.OFFLINE: "offline",
}

# which kind of sensor each incident acts on
TARGET_MODEL: dict[IncidentKind, str] = {
    IncidentKind.TRAFFIC_INCIDENT: "traffic_camera",
    IncidentKind.POLLUTION_EPISODE: "air_quality",
    IncidentKind.FLASH_FLOOD: "water_level",
    IncidentKind.FIRE_WEATHER: "weather",
}


def iso(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).isoformat().replace("+00:00", "Z")


@dataclass(slots=True)
class Incident:
    """One injected event, resolved to the sensors it affects."""

    id: str
    kind: IncidentKind
    start: float  # epoch s: the effect begins (first onset)
    end: float  # epoch s: the effect is over
    ramp_s: float  # rise (and fall) time of the effect
    magnitude: float  # kind-specific strength (see docs)
    sensors: list[str] = field(default_factory=list)
    metrics: dict[str, str] = field(default_factory=dict)  # metric -> expected direction
    onsets: dict[str, float] = field(default_factory=dict)  # sensor -> onset (spreading)
    weights: dict[str, float] = field(default_factory=dict)  # sensor -> strength share 0..1
    sizes: dict[str, float] = field(default_factory=dict)  # fault: metric -> size in its unit
    lat: float | None = None
    lon: float | None = None
    radius_km: float | None = None
    area: str = ""
    fault: FaultKind | None = None
    source: str = "scenario"
    line: int | None = None  # scenario line that placed it
    truth_tail_s: float = 0.0  # the effect outlasts ``end`` by this much (e.g. water draining)

    def envelope(self, t: FloatArray, onset: FloatArray | float | None = None) -> FloatArray:
        """0..1: rises over ``ramp_s`` from the onset, holds, falls to 0 at ``end``."""
        t0 = self.start if onset is None else onset
        ramp = max(self.ramp_s, 1e-3)
        up = np.clip((t - t0) / ramp, 0.0, 1.0)
        down = np.clip((self.end - t) / ramp, 0.0, 1.0)
        return np.asarray(np.minimum(up, down), dtype=np.float64)

    def active(self, t0: float, t1: float) -> bool:
        return self.start <= t1 and self.end >= t0

    def truth(self, seed: int) -> dict[str, Any]:
        """The ground-truth record (one JSON line)."""
        doc: dict[str, Any] = {
            "schema": TRUTH_SCHEMA,
            "id": self.id,
            "kind": self.kind.value,
            "fault": self.fault.value if self.fault else None,
            "sensors": list(self.sensors),
            "metrics": sorted(self.metrics),
            "expected": dict(sorted(self.metrics.items())),
            "start": iso(self.start),
            "end": iso(self.end + self.truth_tail_s),
            "full_effect_from": iso(min(self.start + self.ramp_s, self.end)),
            "onsets": {s: iso(t) for s, t in sorted(self.onsets.items())},
            "magnitude": self.magnitude,
            "sizes": dict(sorted(self.sizes.items())),
            "area": self.area,
            "lat": self.lat,
            "lon": self.lon,
            "radius_km": self.radius_km,
            "source": self.source,
            "seed": seed,
        }
        if self.line is not None:
            doc["scenario_line"] = self.line
        return doc
