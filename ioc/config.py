"""Settings of ``ioc demo`` (``IOC_DEMO_*``), on top of the shared ``core`` settings."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field

from core.settings import Settings


class DemoSettings(Settings):
    """What ``ioc demo`` reads from the environment; its flags override these."""

    demo_data_dir: Path | None = Field(
        default=None,
        description="database, broker state and logs; default: the user's data dir (…/ioc)",
    )
    demo_port: int = Field(default=8000, ge=1, le=65_535, description="API and dashboard port")
    demo_mqtt_port: int = Field(
        default=1883, ge=1, le=65_535, description="embedded broker port (a free one if taken)"
    )
    demo_pg_port: int = Field(
        default=5432, ge=1, le=65_535, description="embedded PostgreSQL port (a free one if taken)"
    )
    demo_broker: Literal["auto", "mosquitto", "amqtt"] = Field(
        default="auto", description="embedded broker: Mosquitto when installed, else amqtt"
    )
    demo_speed: float = Field(
        default=60.0, gt=0, le=100_000, description="simulated seconds per real second"
    )
    demo_sensors: float = Field(
        default=0.1, gt=0, le=100, description="share of Hanoi's sensors to simulate (1 = all)"
    )
    demo_stop_timeout_s: float = Field(
        default=30.0, gt=0, le=600, description="how long a component gets to stop before SIGKILL"
    )

    @property
    def external_database(self) -> bool:
        """True when IOC_DATABASE_URL was given: use it, start no PostgreSQL."""
        return "database_url" in self.model_fields_set

    @property
    def external_broker(self) -> bool:
        """True when IOC_MQTT_URL was given: use it, start no broker."""
        return "mqtt_url" in self.model_fields_set
