"""The parts import core, never each other (import-linter contracts in pyproject.toml)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_import_contracts_hold() -> None:
    lint = shutil.which("lint-imports", path=str(Path(sys.executable).parent)) or "lint-imports"
    proc = subprocess.run([lint], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "0 broken" in proc.stdout


def test_every_module_has_a_docstring() -> None:
    import ast

    missing = []
    for pkg in ("core", "ingest", "analytics", "api", "simulators", "ioc"):
        for path in (ROOT / pkg).rglob("*.py"):
            tree = ast.parse(path.read_text())
            if not ast.get_docstring(tree):
                missing.append(str(path.relative_to(ROOT)))
    assert not missing, f"modules without a one-line docstring: {missing}"


def test_analytics_modules_are_small_and_load_no_module_by_name() -> None:
    """One concept per module: none over 500 lines, and no importlib (imports mypy and
    import-linter can see; a registry of stages is a plain dict)."""
    too_long, by_name = [], []
    for path in sorted((ROOT / "analytics").rglob("*.py")):
        text = path.read_text()
        rel = str(path.relative_to(ROOT))
        lines = text.count("\n") + (not text.endswith("\n") and bool(text))
        if lines > 500:
            too_long.append(f"{rel} ({lines} lines)")
        if "importlib" in text or "__import__" in text:
            by_name.append(rel)
    assert not too_long, f"analytics modules over 500 lines: {too_long}"
    assert not by_name, f"analytics modules that import by name: {by_name}"


def test_benchmarks_live_outside_the_packages() -> None:
    inside = [
        str(p.relative_to(ROOT))
        for pkg in ("core", "ingest", "analytics", "api", "simulators", "ioc")
        for p in (ROOT / pkg).rglob("bench*.py")
        if p.name != "bench.py" or pkg != "ioc"  # ioc/bench.py is the ``ioc bench`` command
    ]
    assert not inside, f"benchmark modules inside the packages: {inside}"
    assert (ROOT / "benchmarks" / "analytics.py").is_file()
