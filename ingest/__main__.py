"""``ioc ingest`` / ``python -m ingest``: run the MQTT -> PostgreSQL/TimescaleDB ingestor."""

from __future__ import annotations

import argparse
import gc
import logging
import signal
import sys
import threading
from types import FrameType

from pydantic import ValidationError

from core.logs import setup_logging
from ingest import memory
from ingest.config import IngestSettings

logger = logging.getLogger("ingest")


def _settings_help() -> str:
    lines = ["settings (environment variables):"]
    for name, f in IngestSettings.model_fields.items():
        if not name.startswith("ingest_"):
            continue
        default = f.get_default(call_default_factory=True)
        lines.append(f"  IOC_{name.upper():<32} {default!s:<14} {f.description or ''}")
    lines.append("  plus the shared IOC_MQTT_URL, IOC_DATABASE_URL, IOC_LOG_LEVEL, ... (README)")
    return "\n".join(lines)


def tune_gc() -> None:
    """Fewer collector passes: a young collection every 20,000 allocations, not 700.

    Every message allocates a handful of containers (the parsed JSON, columns, the
    ``Inbound``) and up to the receive maximum of messages stay alive until their
    batch commits, so the default thresholds cost about a tenth of the ingestor's
    CPU.  The older generations keep their default ratios, so cycles are still
    collected all the way; what start-up loaded is frozen out of the collector's sight.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(20_000, 10, 10)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="ioc ingest",
        description="Store readings from MQTT in PostgreSQL/TimescaleDB; nothing is lost: a"
        " message is acknowledged only after its batch committed.",
        epilog=_settings_help(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--leave",
        action="store_true",
        help="on SIGTERM/SIGINT, hand back the shared subscription, store what is left and end"
        " the MQTT session (scaling in: use for an instance that is not coming back)",
    )
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    try:
        settings = IngestSettings()
    except ValidationError as exc:
        print(f"ioc ingest: bad settings:\n{exc}", file=sys.stderr)
        return 2
    setup_logging(settings.log_level, settings.log_format)

    from ingest.service import Ingestor  # after logging is set up

    tune_gc()
    memory.pin_mmap_threshold()  # multi-megabyte payloads never stay on the heap

    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        logger.info("signal %s: flushing and stopping", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    ingestor = Ingestor(settings)
    ingestor.start()
    while not stop.wait(0.5):
        if not ingestor.alive:
            break
    ingestor.stop(leave=args.leave)
    return 1 if ingestor.failed else 0


if __name__ == "__main__":
    sys.exit(main())
