"""``ioc analytics``: run the streaming detectors and the alert lifecycle until SIGINT/SIGTERM."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from pathlib import Path
from types import FrameType

from analytics.config import AnalyticsSettings, Partition
from analytics.stages.rules import load_rules
from core.errors import ConfigError
from core.logs import setup_logging

logger = logging.getLogger(__name__)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="ioc analytics",
        description="Streaming detectors and the alert lifecycle (settings: IOC_ANALYTICS_*).",
    )
    parser.add_argument("--partition", help="i/n: this instance's share of the sensors")
    parser.add_argument("--rules", type=Path, help="rules file (TOML, JSON or YAML)")
    parser.add_argument(
        "--detector", help="series detector: auto, robust_z, or a name of analytics.detectors"
    )
    parser.add_argument(
        "--check-rules", action="store_true", help="validate the rules, list them and exit"
    )
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    overrides: dict[str, object] = {}
    if args.partition:
        overrides["analytics_partition"] = args.partition
    if args.rules:
        overrides["analytics_rules_file"] = args.rules
    if args.detector:
        overrides["analytics_detector"] = args.detector
    try:
        settings = AnalyticsSettings(**overrides)  # type: ignore[arg-type]
        if args.partition:
            Partition.parse(args.partition)
        rules = load_rules(settings.analytics_rules_file)
    except (ConfigError, ValueError) as exc:
        print(f"ioc analytics: {exc}", file=sys.stderr)
        return 2
    if args.check_rules:
        for r in rules:
            levels = ", ".join(f"{s}={v:g}" for s, v in r.levels.items())
            print(f"{r.id:28} {r.metric:14} {r.direction:8} {levels}")
        print(f"{len(rules)} rules OK")
        return 0
    setup_logging(settings.log_level, settings.log_format)
    from analytics.alerts.incidents import start_incidents, stop_incidents
    from analytics.service.runner import AnalyticsService  # the service pulls in paho and psycopg

    stop = threading.Event()

    def _stop(signum: int, frame: FrameType | None) -> None:
        logger.info("signal %d: stopping", signum)
        stop.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    # the incident correlator: a thread of every analytics process, one leader among them
    incidents = start_incidents(
        settings.dsn, settings.incident_config, settings.analytics_incidents
    )
    try:
        AnalyticsService(settings).run(stop)
    except ConfigError as exc:
        logger.error("configuration: %s", exc)
        return 2
    finally:
        stop_incidents(incidents)
    return 0


if __name__ == "__main__":
    sys.exit(main())
