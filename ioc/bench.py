"""``ioc bench``: runs the benchmarks of ``benchmarks/`` (``benchmarks.<name>:main``), one or all of them.

``ioc bench ingest|simulate|analytics|api|... [ARGS...]`` runs one part's benchmark in
this process with ``ARGS``; ``ioc bench all`` runs each in a process of its own
(one crash does not stop the others) and ends with a summary.
"""

from __future__ import annotations

import argparse
import importlib
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from core.progress import TaskProgress

# benchmarks/ (and the tests' server harness it uses) live in the source checkout, not
# in the installed packages: ``ioc bench`` runs from a checkout
CHECKOUT = Path(__file__).resolve().parents[1]

# benchmark name -> module whose main(argv) runs it
BENCHES: dict[str, str] = {
    "ingest": "benchmarks.ingest",
    "simulate": "benchmarks.simulators",
    "analytics": "benchmarks.analytics",
    "analytics-domain": "benchmarks.analytics_domain",
    "detectors": "benchmarks.detectors",
    "api": "benchmarks.api",
    "chaos": "benchmarks.chaos",
    "ingest-memory": "benchmarks.ingest_memory",
    "api-memory": "benchmarks.api_memory",
    "cluster": "benchmarks.cluster",
    "storage": "benchmarks.storage",
    "notify": "benchmarks.notify_latency",
    "detect": "benchmarks.detect",
    "demo-first": "benchmarks.demo_first",
}


def _checkout_on_path() -> None:
    if (CHECKOUT / "benchmarks").is_dir() and str(CHECKOUT) not in sys.path:
        sys.path.insert(0, str(CHECKOUT))


def _load(name: str) -> Callable[[list[str]], int | None] | None:
    module = BENCHES[name]
    _checkout_on_path()
    try:
        mod = importlib.import_module(module)
    except ModuleNotFoundError as exc:
        if exc.name is not None and module.startswith(exc.name):
            return None  # the part has no benchmark (yet)
        raise
    entry: Callable[[list[str]], int | None] | None = getattr(mod, "main", None)
    return entry


def run_one(name: str, argv: list[str]) -> int:
    entry = _load(name)
    if entry is None:
        print(f"ioc bench {name}: {BENCHES[name]}:main does not exist", file=sys.stderr)
        return 2
    # a spinner with the time so far on a terminal (stderr); the benchmark's own lines
    # print above it
    with TaskProgress(f"ioc bench {name}"):
        return int(entry(argv) or 0)


def run_all(argv: list[str]) -> int:
    results: list[tuple[str, str, float]] = []
    began = time.monotonic()
    for i, name in enumerate(BENCHES, 1):  # progress: which one, of how many, time so far
        print(
            f"== ioc bench {name} ({i} of {len(BENCHES)}, "
            f"{(time.monotonic() - began) / 60:.1f} min so far)",
            flush=True,
        )
        start = time.monotonic()
        proc = subprocess.run([sys.executable, "-m", "ioc", "bench", name, *argv], check=False)
        took = time.monotonic() - start
        if proc.returncode == 0:
            outcome = "ok"
        elif proc.returncode == 2 and _load_quietly(name) is None:
            outcome = "missing"
        else:
            outcome = f"failed (exit {proc.returncode})"
        results.append((name, outcome, took))
    print("\n== summary")
    for name, outcome, took in results:
        print(f"  {name:<10} {outcome:<20} {took:7.1f} s")
    return 0 if all(outcome == "ok" for _, outcome, _ in results) else 1


def _load_quietly(name: str) -> object:
    try:
        return _load(name)
    except Exception:  # a broken module is reported by its own run
        return object()


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="ioc bench",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("which", choices=[*BENCHES, "all"], help="the benchmark to run")
    parser.add_argument("args", nargs=argparse.REMAINDER, help="passed to the benchmark")
    ns = parser.parse_args(argv)
    if ns.which == "all":
        return run_all(ns.args)
    return run_one(ns.which, ns.args)
