"""``ioc``: one command whose subcommands run each part alone, or all of them (``ioc demo``).

Each subcommand is a ``main(argv)`` function of the part that owns it, imported
only when that subcommand runs, so ``ioc api`` never loads the simulator.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Sequence

# subcommand -> (module, function, one-line help)
COMMANDS: dict[str, tuple[str, str, str]] = {
    "demo": ("ioc.demo", "main", "run the whole system on this machine with embedded defaults"),
    "ingest": ("ingest.__main__", "main", "MQTT -> PostgreSQL/TimescaleDB ingestor"),
    "analytics": ("ioc.parts", "analytics_main", "streaming detectors and alert lifecycle"),
    "api": ("ioc.parts", "api_main", "REST API, live alert websocket and dashboard"),
    "notify": (
        "notify.__main__",
        "main",
        "alert events to MQTT, notification routing and escalation",
    ),
    "simulate": ("simulators.__main__", "main", "simulated Hanoi sensors over MQTT"),
    "db": ("ioc.dbcmd", "main", "database: migrate, maintain (partitions, retention)"),
    "detect": ("analytics.eval.offline", "detect_main", "score a timestamp,value CSV (NAB format)"),
    "eval": ("analytics.eval.cli", "main", "evaluate detectors: nab DIR | scenario"),
    "token": ("api.tokens", "main", "API tokens: create --role ROLE --name NAME"),
    "alerts": ("api.tail", "main", "alerts tail: follow the live alert stream"),
    "deadletters": ("api.deadletters_tail", "main", "deadletters tail: rejected messages"),
    "readings": ("api.export", "main", "readings export: a query as CSV, with progress"),
    "contract": ("ioc.contract", "main", "write | check docs/asyncapi.yaml and docs/schemas/"),
    "bench": (
        "ioc.bench",
        "main",
        "benchmarks (benchmarks/): ingest | simulate | analytics | api | ... | all",
    ),
}


def _usage() -> str:
    width = max(map(len, COMMANDS))
    lines = ["usage: ioc <command> [options]   (ioc <command> --help for more)", "", "commands:"]
    lines += [f"  {name:<{width}}  {help_}" for name, (_, _, help_) in COMMANDS.items()]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help", "help"):
        print(_usage())
        return 0
    name, rest = args[0], args[1:]
    if name not in COMMANDS:
        print(f"ioc: unknown command {name!r}\n\n{_usage()}", file=sys.stderr)
        return 2
    module, func, _ = COMMANDS[name]
    entry: Callable[[list[str]], int | None] = getattr(importlib.import_module(module), func)
    sys.argv = [f"ioc {name}", *rest]
    try:
        return int(entry(rest) or 0)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
