"""``ioc notify``: the MQTT relay, the notification planner and dispatcher, until SIGINT/SIGTERM."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from pathlib import Path
from types import FrameType

from pydantic import ValidationError

from core.errors import ConfigError
from core.logs import setup_logging
from core.routing import load_routes
from notify.config import NotifySettings

logger = logging.getLogger(__name__)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="ioc notify",
        description="Publish alert events on MQTT and send notifications by the routes "
        "(settings: IOC_NOTIFY_*, see docs/notifications.md).",
    )
    parser.add_argument("--routes", type=Path, help="routes file (IOC_NOTIFY_ROUTES)")
    parser.add_argument(
        "--check-routes", action="store_true", help="validate the routes file, list it and exit"
    )
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    try:
        overrides = {"notify_routes": args.routes} if args.routes else {}
        settings = NotifySettings(**overrides)
        routes = load_routes(settings.notify_routes)
    except (ConfigError, ValidationError) as exc:
        print(f"ioc notify: {exc}", file=sys.stderr)
        return 2
    if args.check_routes:
        for r in routes.routes:
            print(f"route      {r.name:24} ≥{r.min_severity.value:8} {len(r.targets())} target(s)")
        for e in routes.escalations:
            print(f"escalation {e.name:24} ≥{e.min_severity.value:8} {len(e.steps)} step(s)")
        print(f"{len(routes.routes)} routes, {len(routes.escalations)} escalation policies OK")
        return 0
    setup_logging(settings.log_level, settings.log_format)
    from notify.service import NotifyService

    service = NotifyService(settings, routes)

    def _stop(signum: int, frame: FrameType | None) -> None:
        logger.info("signal %d: stopping", signum)
        service.stop()

    signal.signal(signal.SIGINT, _stop)
    signal.signal(signal.SIGTERM, _stop)
    service.start()
    service.wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
