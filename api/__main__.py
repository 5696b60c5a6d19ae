"""``ioc api``: serve the REST API, the live websockets and the dashboard with uvicorn."""

from __future__ import annotations

import argparse
import os
import sys

import uvicorn
from fastapi import FastAPI

from api.config import ApiSettings
from api.main import create_app
from api.server import uvicorn_options
from core.logs import setup_logging


def app_from_env() -> FastAPI:
    """The application of one worker process, configured from ``IOC_*``."""
    settings = ApiSettings()
    setup_logging(settings.log_level, settings.log_format)
    return create_app(settings)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="ioc api",
        description="REST API, /ws/alerts, /ws/readings and the dashboard. "
        "Settings come from IOC_* environment variables (see docs/api.md).",
    )
    parser.add_argument("--host", help="address to listen on (IOC_API_HOST)")
    parser.add_argument("--port", type=int, help="port to listen on (IOC_API_PORT)")
    parser.add_argument(
        "--workers",
        type=int,
        default=1,
        help="worker processes on the one port, each with its own alert reader and MQTT "
        "link (for thousands of websocket clients: one per core)",
    )
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    if args.host:
        os.environ["IOC_API_HOST"] = args.host
    if args.port is not None:
        os.environ["IOC_API_PORT"] = str(args.port)
    settings = ApiSettings()
    setup_logging(settings.log_level, settings.log_format)
    common: dict[str, object] = {
        "host": settings.api_host,
        "port": settings.api_port,
        **uvicorn_options(settings),
    }
    if args.workers > 1:
        uvicorn.run("api.__main__:app_from_env", factory=True, workers=args.workers, **common)  # type: ignore[arg-type]
    else:
        uvicorn.run(create_app(settings), **common)  # type: ignore[arg-type]
    return 0


if __name__ == "__main__":
    sys.exit(main())
