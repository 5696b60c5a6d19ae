"""``ioc simulate --workers N``: several processes share the devices; the parent merges their counts.

Each worker builds the whole city (so incidents, neighbours and readings are
exactly those of a single process) but sends only its share of the devices,
over its own connections and gateways.  Worker 1 writes the ground truth.
"""

from __future__ import annotations

import argparse
import multiprocessing
import signal
import sys
import tempfile
from pathlib import Path
from types import FrameType
from typing import Any

import orjson

from core.errors import ConfigError
from core.logs import setup_logging
from simulators.config import SimSettings


def _child(args: argparse.Namespace, w: int, n: int, stats_path: str) -> None:
    import simulators.__main__ as cli

    settings = SimSettings()
    setup_logging(settings.log_level, settings.log_format)
    cli.PROGRESS_PREFIX = f"[w{w + 1}] "
    args.stats_file = stats_path
    if w > 0:
        args.truth = None
    if args.output:
        args.output = f"{args.output}.w{w + 1}"
    try:
        code = cli._run(args, settings, part=(w, n))
    except Exception as exc:  # reported by the parent through the exit code
        print(f"ioc simulate [w{w + 1}]: {exc}", file=sys.stderr)
        code = 2
    raise SystemExit(code)


def merge(docs: list[dict[str, Any]]) -> dict[str, Any]:
    """One stats document from the workers' documents."""
    out = dict(docs[0])
    for key in (
        "readings_sent",
        "messages_sent",
        "readings_published",
        "messages_published",
        "unacked_at_exit",
        "connections",
        "sensors_total",
    ):
        out[key] = sum(int(d[key]) for d in docs)
    for key in ("sensors", "messages_by_channel"):
        merged: dict[str, int] = {}
        for d in docs:
            for k, v in d[key].items():
                merged[k] = merged.get(k, 0) + int(v)
        out[key] = merged
    wall = max(float(d["wall_s"]) for d in docs)
    out["wall_s"] = wall
    out["readings_per_s"] = round(out["readings_sent"] / wall, 1) if wall > 0 else 0.0
    out["messages_per_s"] = round(out["messages_sent"] / wall, 1) if wall > 0 else 0.0
    out["max_lag_s"] = max(float(d["max_lag_s"]) for d in docs)
    out["fell_behind"] = any(d["fell_behind"] for d in docs)
    out["warnings"] = [w for d in docs for w in d["warnings"]]
    out["sim_end"] = max(d["sim_end"] for d in docs)
    out["workers"] = len(docs)
    return out


def run_workers(args: argparse.Namespace, n: int) -> int:
    if args.output == "-":
        raise ConfigError("--workers writes one file per worker: give --output FILE, not -")
    ctx = multiprocessing.get_context("spawn")
    with tempfile.TemporaryDirectory(prefix="ioc-sim-") as tmp:
        paths = [str(Path(tmp) / f"w{w + 1}.json") for w in range(n)]
        procs = [
            ctx.Process(target=_child, args=(args, w, n, paths[w]), name=f"sim-w{w + 1}")
            for w in range(n)
        ]
        for p in procs:
            p.start()

        def forward(signum: int, frame: FrameType | None) -> None:
            for p in procs:
                if p.is_alive():
                    p.terminate()  # SIGTERM: the worker shuts down cleanly

        old = {sig: signal.signal(sig, forward) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            for p in procs:
                p.join()
        finally:
            for sig, handler in old.items():
                signal.signal(sig, handler)
        codes = [p.exitcode or 0 for p in procs]
        docs = [orjson.loads(Path(x).read_bytes()) for x in paths if Path(x).exists()]
    if len(docs) < n:
        print(
            f"ioc simulate: {n - len(docs)} worker(s) failed (exit codes {codes})", file=sys.stderr
        )
        return max(codes) or 1
    stats = merge(docs)
    if args.stats_file:
        Path(args.stats_file).write_bytes(orjson.dumps(stats, option=orjson.OPT_INDENT_2))
    keys = (
        "readings_sent",
        "messages_sent",
        "readings_per_s",
        "messages_per_s",
        "unacked_at_exit",
        "stopped_by",
        "workers",
    )
    print(f"ioc simulate: {orjson.dumps({k: stats[k] for k in keys}).decode()}", file=sys.stderr)
    return max(codes)
