"""Simulator settings: ``IOC_SIM_*`` environment variables on top of the shared ``Settings``.

Command-line options of ``ioc simulate`` override them.
"""

from __future__ import annotations

from pydantic import Field

from core.settings import Settings


class SimSettings(Settings):
    """What ``ioc simulate`` needs besides the broker address."""

    sim_seed: int = Field(default=42, ge=0, description="seed of readings and random incidents")
    sim_speed: float = Field(
        default=1.0, gt=0, description="simulated seconds per wall-clock second"
    )
    sim_scale: float = Field(
        default=1.0, ge=0, le=100, description="sensor counts × this (10 = ten Hanois)"
    )
    sim_formats: str = Field(
        default="native=0.8,senml=0.1,fiware=0.1", description="share of devices per payload format"
    )
    sim_connections: int = Field(default=2, ge=1, le=64, description="MQTT connections (gateways)")
    sim_workers: int = Field(default=1, ge=1, le=64, description="processes sharing the devices")
    sim_qos: int = Field(default=1, ge=0, le=1, description="QoS of readings")
    sim_window: int = Field(
        default=1000, ge=1, le=100_000, description="unacknowledged messages per connection"
    )
    sim_max_rate: float | None = Field(
        default=None, gt=0, description="readings per second at most"
    )
    sim_progress_s: float = Field(
        default=5.0, ge=0, description="seconds between progress lines (0: none)"
    )
    sim_name: str = Field(
        default="hanoi",
        pattern=r"^[A-Za-z0-9_.\-]{1,32}$",
        description="names the client ids and gateways",
    )
    sim_id_prefix: str = Field(
        default="", pattern=r"^[A-Za-z0-9_.\-]{0,16}$", description="prefix for every sensor id"
    )
