"""The simulated city of ``ioc demo``: accelerated history with incidents, then Hanoi live."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

CAMERAS = 1873  # Hanoi's AI traffic cameras; the other sensors are few and always all run
CATCH_UP_WALL_S = 180.0  # the accelerated history lasts about this long
MAX_HISTORY_S = 6 * 3600.0

# incidents of the accelerated history: (share of the history, scenario entry)
INCIDENTS: tuple[tuple[float, str], ...] = (
    (0.08, "kind: traffic_incident, duration: 40m, spread: 3"),
    (
        0.12,
        "kind: sensor_fault, fault: spike, sensor: wl-00011, metric: water_level, duration: 10m",
    ),
    (0.18, "kind: flash_flood, duration: 1h, ramp: 10m, rain_mm_h: 90"),
    (0.24, "kind: sensor_fault, fault: stuck, sensor: aq-00007, metric: pm25, duration: 90m"),
    (0.30, "kind: pollution_episode, duration: 2h, rise: 20m, factor: 3"),
    (0.36, "kind: sensor_fault, fault: offline, sensor: nm-00010, duration: 1h"),
    (0.45, "kind: traffic_incident, duration: 30m, severity: 0.9"),
    (0.55, "kind: fire_weather, duration: 3h, ramp: 30m"),
)
# random incidents per simulated day, while the city runs live
RANDOM = "{traffic_incident: 12, pollution_episode: 1, flash_flood: 1, sensor_fault: 8}"


@dataclass(frozen=True)
class CityPlan:
    """How the demo runs the simulator: accelerated history, then live.

    Ingest rejects readings from the future, so accelerated time must start in the
    past: the simulator replays the last ``history_s`` at ``speed`` with the
    incidents above until its clock meets the wall clock (about three minutes), then
    a second run continues in real time with random incidents.  Both runs have the
    same seed, so every sensor's series continues across the switch.
    """

    speed: float
    share: float

    @property
    def history_s(self) -> float:
        if self.speed <= 1:
            return 0.0
        return min(MAX_HISTORY_S, (self.speed - 1) * CATCH_UP_WALL_S)

    @property
    def cameras(self) -> int:
        return max(10, round(CAMERAS * self.share))

    def scenario(self, incidents: bool, span_s: float) -> str:
        lines = [
            "# written by ioc demo at every start",
            "version: 1",
            f"name: ioc-demo-{'history' if incidents else 'live'}",
            "seed: 42",
            "city:",
            f"  counts: {{traffic_camera: {self.cameras}}}",
            f"random: {RANDOM}",
        ]
        if incidents:
            lines.append("incidents:")
            lines += [
                f'  - {{at: "+{share * span_s:.0f}s", {entry}}}' for share, entry in INCIDENTS
            ]
        return "\n".join(lines) + "\n"

    def argv(self, sim_dir: Path) -> tuple[list[str], list[str] | None]:
        """The first run's arguments, and the live run's (None when the first is live)."""
        live_path = sim_dir / "live.yaml"
        live = ["simulate", "--scenario", str(live_path), "--speed", "1", "--progress", "60"]
        live += ["--truth", str(sim_dir / "truth-live.jsonl")]
        history = self.history_s
        if not history:
            live_path.write_text(self.scenario(True, 3600.0))
            return live, None
        live_path.write_text(self.scenario(False, 0.0))
        past = sim_dir / "history.yaml"
        past.write_text(self.scenario(True, history))
        catch_up = history / (self.speed - 1)  # wall seconds until the clocks meet
        first = [
            "simulate",
            "--scenario",
            str(past),
            "--speed",
            f"{self.speed:g}",
            "--start",
            f"now-{history:.0f}s",
            "--until",
            f"now+{catch_up:.0f}s",
            "--progress",
            "2",  # the demo's progress bar follows these lines
            "--truth",
            str(sim_dir / "truth-history.jsonl"),
        ]
        return first, live

    def describe(self) -> str:
        city = f"{self.cameras} traffic cameras and the other sensors"
        if not self.history_s:
            return f"Hanoi live: {city}, incidents from the 6th minute"
        return (
            f"Hanoi: the last {self.history_s / 3600:.1f} h at {self.speed:g}x with incidents "
            f"({self.history_s / (self.speed - 1):.0f} s), then live; {city}"
        )
