"""Settings of ``ioc api`` (``IOC_API_*``), on top of the shared ``core`` settings."""

from __future__ import annotations

from typing import Annotated

import orjson
from pydantic import Field, field_validator
from pydantic_settings import NoDecode

from core.settings import Settings


class ApiSettings(Settings):
    """Everything ``ioc api`` reads from ``IOC_API_*``; the defaults suit one city."""

    api_host: str = Field(default="127.0.0.1", description="address to listen on")
    api_port: int = Field(default=8000, ge=0, le=65_535, description="port to listen on")
    api_cors_origins: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="origins allowed by CORS, comma separated or a JSON list; empty: CORS off",
    )
    api_migrate: bool = Field(
        default=True, description="apply pending schema migrations at start-up"
    )
    api_pool_min: int = Field(default=2, ge=1, le=100, description="database connections kept")
    api_pool_max: int = Field(default=10, ge=1, le=500, description="database connections at most")
    api_statement_timeout_ms: int = Field(
        default=15_000, ge=100, le=600_000, description="longest SQL statement of a request"
    )
    api_ws_queue: int = Field(
        default=1_000,
        ge=1,
        le=1_000_000,
        description="frames waiting for one websocket client; more and it is closed with 4008",
    )
    api_ws_heartbeat_s: float = Field(
        default=15.0, gt=0, le=3_600, description="heartbeat frame period on both websockets"
    )
    api_ws_poll_s: float = Field(
        default=5.0,
        gt=0,
        le=3_600,
        description="also read alert_events this often without a notification (safety net)",
    )
    api_ws_send_timeout_s: float = Field(
        default=10.0,
        gt=0,
        le=600,
        description="a frame stuck this long in a client's socket closes it with 4008",
    )
    api_ws_close_timeout_s: float = Field(
        default=10.0, gt=0, le=600, description="how long a too-slow client gets to take its close"
    )
    api_ws_direct_write: bool = Field(
        default=True,
        description="fan alert events out by writing each socket directly when it is idle "
        "(false: every frame through the ASGI send; for comparison)",
    )
    api_ws_deflate: bool = Field(
        default=False,
        description="permessage-deflate on websockets (costs CPU per client per frame)",
    )
    api_ws_max_clients: int = Field(
        default=10_000, ge=1, description="websocket clients per process at most"
    )
    api_max_header_bytes: int = Field(
        default=32 * 1024,
        ge=4 * 1024,
        le=1024 * 1024,
        description="request line and headers of one request at most (then 431)",
    )
    api_rate_per_token: float = Field(
        default=20.0,
        ge=0,
        le=100_000,
        description="REST requests a second per token on average, per process (0: no limit)",
    )
    api_rate_burst: int = Field(
        default=200, ge=1, le=1_000_000, description="REST requests per token in a burst"
    )
    api_ws_per_token: int = Field(
        default=20, ge=1, le=100_000, description="open websockets per token, per process"
    )
    api_token_days: float = Field(
        default=90.0,
        ge=0,
        le=3_650,
        description="lifetime of a new token unless given (0: new tokens never expire)",
    )
    api_rollup: bool = Field(
        default=True,
        description="keep the hourly rollup api_readings_1h for whole-hour buckets "
        "(plain PostgreSQL; TimescaleDB queries its hypertable)",
    )
    api_rollup_interval_s: float = Field(
        default=60.0, gt=0, le=86_400, description="how often the rollup catches up"
    )
    api_rollup_trailing_h: float = Field(
        default=2.0,
        ge=0,
        le=168,
        description="hours rolled up again every cycle, for readings that arrive late",
    )
    api_cap_sender: str = Field(
        default="ioc.hanoi.gov.vn",
        min_length=1,
        max_length=200,
        pattern=r"^[^\s,<&]+$",
        description="CAP <sender>: this operations centre's identifier",
    )
    api_cap_sender_name: str = Field(
        default="Hanoi Intelligent Operations Centre", description="CAP <senderName>"
    )
    api_maintenance_max_h: float = Field(
        default=720.0, gt=0, le=87_600, description="longest maintenance window, in hours"
    )
    api_public_metrics: bool = Field(
        default=True, description="serve /metrics without a token (false: admin token needed)"
    )
    api_public_docs: bool = Field(
        default=False,
        description="serve /docs, /redoc and /openapi.json without a token (ioc demo does)",
    )
    api_static_dir: str = Field(
        default="", description="dashboard directory; empty: the one shipped in api/static"
    )

    @field_validator("api_cors_origins", mode="before")
    @classmethod
    def _split_origins(cls, v: object) -> object:
        if isinstance(v, str):
            text = v.strip()
            if text.startswith("["):
                return orjson.loads(text)
            return [s.strip() for s in text.split(",") if s.strip()]
        return v
