"""Replays a recorded ``timestamp,value`` CSV (e.g. a NAB series) as one sensor over MQTT."""

from __future__ import annotations

import csv
import logging
import math
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from core.codecs import encode_meta, encode_native
from core.errors import ConfigError
from core.metrics import METRICS
from core.topics import SENSOR_ID_RE, data_topic, meta_topic, status_topic
from core.types import Sensor, SensorKind
from simulators.engine import Message, status_payload
from simulators.incidents import Incident

logger = logging.getLogger(__name__)


def read_series(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """(epoch seconds, values) from a ``timestamp,value`` CSV; a header row is optional.

    Timestamps are RFC 3339 / ISO 8601 (no zone = UTC, as NAB files are) or epoch seconds.
    """
    times: list[float] = []
    values: list[float] = []
    with open(path, newline="", encoding="utf-8") as fh:
        for lineno, row in enumerate(csv.reader(fh), start=1):
            if not row or not "".join(row).strip():
                continue
            if len(row) < 2:
                raise ConfigError(f"{path}: line {lineno}: expected timestamp,value")
            ts, val = row[0].strip(), row[1].strip()
            try:
                v = float(val)
            except ValueError:
                if lineno == 1:
                    continue  # header
                raise ConfigError(f"{path}: line {lineno}: value {val!r} is not a number") from None
            try:
                t = float(ts)
            except ValueError:
                try:
                    dt = datetime.fromisoformat(ts.replace("Z", "+00:00"))
                except ValueError:
                    raise ConfigError(
                        f"{path}: line {lineno}: timestamp {ts!r} is not ISO 8601"
                    ) from None
                t = (dt if dt.tzinfo else dt.replace(tzinfo=UTC)).timestamp()
            if not math.isfinite(v):
                raise ConfigError(f"{path}: line {lineno}: value {val!r} is not finite")
            times.append(t)
            values.append(v)
    if not times:
        raise ConfigError(f"{path}: no timestamp,value rows")
    t_arr = np.array(times)
    order = np.argsort(t_arr, kind="stable")
    return t_arr[order], np.array(values)[order]


class Replay:
    """A ``Source`` for the runner: one device sending a recorded series."""

    def __init__(
        self,
        path: str | Path,
        *,
        sensor: str,
        metric: str,
        kind: SensorKind = SensorKind.GENERIC,
        start: float | None = None,
        keep_timestamps: bool = False,
        out_of_range: str = "clamp",
    ) -> None:
        if not SENSOR_ID_RE.match(sensor):
            raise ConfigError(f"invalid sensor id {sensor!r}: use 1-64 of A-Z a-z 0-9 _ . -")
        spec = METRICS.get(metric)
        if spec is None or spec.derived:
            known = ", ".join(k for k, v in METRICS.items() if not v.derived)
            raise ConfigError(f"metric {metric!r} is not in the catalogue ({known})")
        if out_of_range not in ("clamp", "skip"):
            raise ConfigError("--out-of-range must be clamp or skip")
        self.seed = 0
        self.connections = 1
        self.path = str(path)
        self.sensor = sensor
        self.metric = metric
        self.kind = kind
        t, v = read_series(path)
        outside = (v < spec.low) | (v > spec.high)
        if outside.any():
            logger.warning(
                "%d of %d values are outside %s's physical range %g..%g %s: %s",
                int(outside.sum()), len(v), metric, spec.low, spec.high, spec.unit,
                "clamped" if out_of_range == "clamp" else "skipped",
            )  # fmt: skip
            if out_of_range == "clamp":
                v = np.clip(v, spec.low, spec.high)
            else:
                t, v = t[~outside], v[~outside]
        self.shift = (
            0.0
            if keep_timestamps
            else (start if start is not None else datetime.now(UTC).timestamp()) - float(t[0])
        )
        self.t = np.round((t + self.shift) * 1000.0) / 1000.0
        self.v = v
        self.pos = 0
        diffs = np.diff(self.t)
        self._interval = float(np.median(diffs)) if len(diffs) else 60.0

    @property
    def first(self) -> float:
        return float(self.t[0])

    @property
    def last(self) -> float:
        return float(self.t[-1])

    @property
    def interval_max(self) -> float:
        return self._interval

    def device(self) -> Sensor:
        return Sensor(
            id=self.sensor,
            kind=self.kind,
            name=f"replay of {Path(self.path).name}",
            metrics=(self.metric,),
            interval_s=self._interval if self._interval > 0 else None,
            attributes={
                "simulated": True,
                "replay": Path(self.path).name,
                "shift_s": round(self.shift, 3),
            },
        )

    def announce(self, t: float) -> list[Message]:
        return [
            Message(
                t,
                meta_topic(self.kind, self.sensor),
                encode_meta(self.device()),
                0,
                0,
                "meta",
                True,
            ),
            Message(
                t,
                status_topic(self.kind, self.sensor),
                status_payload("online", t),
                0,
                0,
                "status",
                True,
            ),
        ]

    def goodbye(self, t: float) -> list[Message]:
        return [
            Message(
                t,
                status_topic(self.kind, self.sensor),
                status_payload("offline", t),
                0,
                0,
                "status",
                True,
            )
        ]

    def window(self, a: float, b: float) -> list[Message]:
        end = int(np.searchsorted(self.t, b, side="left"))
        out: list[Message] = []
        topic = data_topic(self.kind, self.sensor)
        for i in range(self.pos, end):
            ti = float(self.t[i])
            if ti < a:
                continue
            payload = encode_native([(ti, {self.metric: float(self.v[i])})])
            out.append(Message(ti, topic, payload, 1, 0, "data"))
        self.pos = max(self.pos, end)
        return out

    def new_incidents(self, until: float) -> list[Incident]:
        return []

    def sensor_counts(self) -> dict[str, int]:
        return {"replay": 1}
