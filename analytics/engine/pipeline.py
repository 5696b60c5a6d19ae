"""The analytics pipeline without I/O: dedupe a micro-batch, run every stage, corroborate the signals.

The live service (MQTT in, PostgreSQL out) and the offline scenario evaluation
run this same code.  Time is event time: the clock follows the newest reading
seen and, between readings, the wall clock, so that accelerated simulations
and history replays see their own time while a city that falls silent still
sees time pass.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from analytics.alerts.spatial import Corroborator, Upgrade
from analytics.engine.base import Batch, Context, Signal, Stage, StageOutput
from analytics.engine.slots import SensorIndex, SeriesIndex, SlotArrays
from core.types import Reading

logger = logging.getLogger(__name__)


class StreamClock:
    """Event time: the newest reading's time plus the wall time elapsed since it advanced."""

    def __init__(self, wall: Callable[[], float] = time.time) -> None:
        self.wall = wall
        self.watermark = -np.inf
        self._advanced_at = wall()

    def observe(self, t: float) -> None:
        if t > self.watermark:
            self.watermark = t
            self._advanced_at = self.wall()

    def now(self) -> float:
        if not np.isfinite(self.watermark):
            return self.wall()
        return float(self.watermark) + max(0.0, self.wall() - self._advanced_at)


@dataclass(slots=True)
class Result:
    """What one micro-batch or tick produced."""

    derived: list[Reading] = field(default_factory=list)
    signals: list[Signal] = field(default_factory=list)
    upgrades: list[Upgrade] = field(default_factory=list)
    readings: int = 0
    dropped: int = 0  # duplicates and late readings


class Pipeline:
    """Stages over micro-batches, with per-series dedupe and spatial corroboration."""

    def __init__(
        self,
        stages: Iterable[Stage],
        *,
        corroborator: Corroborator | None = None,
        ctx: Context | None = None,
        clock: StreamClock | None = None,
    ) -> None:
        self.stages = list(stages)
        self.corroborator = corroborator or Corroborator()
        self.ctx = ctx or Context()
        self.clock = clock or StreamClock()
        # one slot per series and one code per sensor for the whole pipeline: a batch's
        # keys are looked up once, whichever stages use them
        self._seen = SeriesIndex()
        self.sensor_index = SensorIndex()
        for stage in self.stages:
            share = getattr(stage, "share", None)
            if callable(share):
                share(self._seen, self.sensor_index)
        self._last = SlotArrays({"t": (0, np.float64, -np.inf)})
        self.errors: dict[str, int] = {}

    def _dedupe(self, batch: Batch) -> tuple[Batch, int]:
        """Time-order the batch; drop readings not newer than their series' last one."""
        n = len(batch)
        slots = self._seen.lookup(batch.sensor, batch.metric)
        self._last.ensure(len(self._seen) - 1)
        order = np.lexsort((batch.time, slots))  # by series, then time
        s, t = slots[order], batch.time[order]
        first = np.r_[True, (s[1:] != s[:-1]) | (t[1:] != t[:-1])]
        keep_sorted = first & (t > self._last["t"][s])
        np.maximum.at(self._last["t"], s, t)
        keep = order[keep_sorted]
        keep = keep[np.argsort(batch.time[keep], kind="stable")]
        if keep.size == n and np.all(keep == np.arange(n)):
            return batch, 0
        sensors, metrics = batch.sensor, batch.metric
        out = Batch(
            sensor=[sensors[i] for i in keep],
            metric=[metrics[i] for i in keep],
            time=batch.time[keep],
            value=batch.value[keep],
        )
        return out, n - keep.size

    def process(self, batch: Batch) -> Result:
        res = Result()
        if len(batch) == 0:
            return res
        batch, res.dropped = self._dedupe(batch)
        res.readings = len(batch)
        if len(batch) == 0:
            return res
        self.clock.observe(float(batch.time.max()))
        out = StageOutput()
        for stage in self.stages:
            out.extend(self._run(stage, lambda st: st.process(batch, self.ctx)))
        return self._finish(out, res)

    def tick(self, now: float | None = None) -> Result:
        now = self.clock.now() if now is None else now
        out = StageOutput()
        for stage in self.stages:
            out.extend(self._run(stage, lambda st: st.tick(now, self.ctx)))
        self.corroborator.prune(now)
        return self._finish(out, Result())

    def _run(self, stage: Stage, call: Callable[[Stage], StageOutput]) -> StageOutput:
        try:
            return call(stage)
        except Exception:  # one broken stage must not stop the others
            self.errors[stage.name] = self.errors.get(stage.name, 0) + 1
            logger.exception("stage %s failed on a batch", stage.name)
            return StageOutput()

    def _finish(self, out: StageOutput, res: Result) -> Result:
        self.corroborator.set_registry(self.ctx.sensors)
        res.signals, res.upgrades = self.corroborator.classify(out.signals)
        res.derived = out.derived
        return res

    # -- checkpoints ------------------------------------------------------------------

    def get_states(self) -> dict[str, Any]:
        states: dict[str, Any] = {
            "pipeline": {
                "watermark": float(self.clock.watermark),
                "seen": self._seen.get_state(),
                "sensors": list(self.sensor_index.names),
                "last": self._last.get_state(),
                "corroborator": self.corroborator.get_state(),
            }
        }
        for stage in self.stages:
            try:
                states[f"stage.{stage.name}"] = stage.get_state()
            except Exception:
                logger.exception("stage %s: get_state failed", stage.name)
        return states

    def set_states(self, states: Mapping[str, Any]) -> None:
        p = states.get("pipeline")
        if p:
            self._seen.restore(p["seen"])
            self.sensor_index.restore(p.get("sensors", []))
            self._last.set_state(p["last"])
            self._last.ensure(len(self._seen) - 1)
            self.corroborator.set_state(p["corroborator"])
            self.clock.observe(float(p["watermark"]))
        for stage in self.stages:
            st = states.get(f"stage.{stage.name}")
            if st is None:
                continue
            try:
                stage.set_state(st)
            except Exception as exc:  # an incompatible checkpoint: that stage starts cold
                logger.warning(
                    "stage %s: checkpoint not usable (%s), starting cold", stage.name, exc
                )

    @property
    def watermark(self) -> float:
        return float(self.clock.watermark)
