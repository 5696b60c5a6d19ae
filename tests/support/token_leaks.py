"""A scan of the log files a test session wrote for any API token the tests created.

Tokens are known by their sha256 (what ``api_tokens`` stores), harvested from each test
database just before it is dropped: that covers tokens made in the test process, by
``ioc token create`` in a subprocess and through ``POST /api/v1/tokens`` alike. The scan
hashes every token-shaped word of every log line and looks it up.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import psycopg

from core.logs import redact

# a word a token could be: URL-safe runs (``new_token``), and the wider set a bearer may hold
_WORDS = (re.compile(r"[A-Za-z0-9_-]{6,256}"), re.compile(r"[A-Za-z0-9._~+/=-]{6,256}"))


@dataclass(frozen=True, slots=True)
class Leak:
    """A log line that holds a token: where, and the line with the token blanked out."""

    path: Path
    line: int
    text: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.text}"


def token_hashes(dsn: str) -> set[str]:
    """The hashes of every token in this database's ``api_tokens`` (none if it has no table)."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        if conn.execute("SELECT to_regclass('api_tokens')").fetchone() == (None,):
            return set()
        return {h for (h,) in conn.execute("SELECT token_hash FROM api_tokens")}


def _sha256(word: str) -> str:
    return hashlib.sha256(word.encode("utf-8", "surrogatepass")).hexdigest()


def scan(paths: Iterable[Path], hashes: set[str]) -> list[Leak]:
    """Every line of these files that holds a token whose sha256 is in ``hashes``."""
    leaks: list[Leak] = []
    if not hashes:
        return leaks
    for path in paths:
        with path.open(encoding="utf-8", errors="replace") as lines:
            for number, line in enumerate(lines, 1):
                found = {w for words in _WORDS for w in words.findall(line) if _sha256(w) in hashes}
                if found:
                    shown = redact(line.rstrip("\n"))
                    for word in found:
                        shown = shown.replace(word, "[token]")
                    leaks.append(Leak(path, number, shown[:300]))
    return leaks


def log_files(root: Path) -> list[Path]:
    """The log files under ``root`` (the session's temporary directory)."""
    return sorted(p for p in root.rglob("*.log") if p.is_file())
