"""Chaos: 100,000 readings through kill -9, a database outage, a broker restart and network faults.

Runs the two chaos scenarios of the test suite as they run in CI and prints what each
saw; ``--partition-s`` lengthens the network partition (30 s in CI).

* ``tests/ingest/test_nothing_lost.py``: kill -9 of the ingestor at a random moment,
  PostgreSQL stopped for 10 s, the broker restarted while the backlog drains;
* ``tests/ingest/test_network_faults.py``: the ingestor on a test host in its own network
  namespace; the broker cut off, then the database, then both, then 5 % packet loss.

Both end with every reading stored exactly once, or they fail.

    python -m benchmarks.chaos [--partition-s 30]
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import time
from pathlib import Path

from benchmarks import save_results

ROOT = Path(__file__).resolve().parents[1]
SCENARIOS = {
    "kill -9, database stopped, broker restarted": "tests/ingest/test_nothing_lost.py",
    "broker cut, database cut, both cut, 5 % loss": "tests/ingest/test_network_faults.py",
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--partition-s", type=float, default=30.0)
    args = parser.parse_args(argv)
    env = {**os.environ, "IOC_TEST_PARTITION_S": str(args.partition_s)}
    results: dict[str, dict[str, object]] = {}
    for name, test in SCENARIOS.items():
        t0 = time.monotonic()
        proc = subprocess.run(
            [sys.executable, "-m", "pytest", test, "-q", "-s", "-p", "no:cacheprovider"],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        said = [ln for ln in proc.stdout.splitlines() if re.search(r"readings stored", ln)]
        results[name] = {
            "passed": proc.returncode == 0,
            "seconds": round(time.monotonic() - t0, 1),
            "report": said[-1] if said else proc.stdout[-2000:],
        }
        sys.stdout.write(
            f"{name}: {'PASSED' if proc.returncode == 0 else 'FAILED'}\n  {results[name]['report']}\n"
        )
    save_results("chaos", results)
    return 0 if all(r["passed"] for r in results.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
