"""The session's no-token-in-logs scan finds a planted token, and only where it is."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import psycopg

from api.auth import hash_token, new_token
from api.models import Role
from api.tokens import create as create_token
from core.logs import redact
from tests.support.token_leaks import log_files, scan, token_hashes


def test_a_planted_token_is_found_by_file_and_line_and_not_shown(tmp_path: Path) -> None:
    token, other = new_token(), new_token()
    (tmp_path / "parts").mkdir()
    clean = tmp_path / "api.log"
    clean.write_text(
        "INFO uvicorn.error: connection open\n"
        + redact(f'INFO "GET /ws/alerts?token={token}&since=3 HTTP/1.1" 101\n')
        + f"INFO some other token-shaped word {other}\n"
    )
    leaky = tmp_path / "parts" / "ingest.log"
    leaky.write_text(
        "INFO started\n"
        f'INFO "WebSocket /ws/alerts?token={token}" [accepted]\n'
        f"DEBUG headers: authorization: Bearer {token}.\n"
        "INFO stopped\n"
    )
    (tmp_path / "notes.txt").write_text(token)  # not a log file

    assert log_files(tmp_path) == [clean, leaky]
    leaks = scan(log_files(tmp_path), {hash_token(token)})

    assert [(leak.path, leak.line) for leak in leaks] == [(leaky, 2), (leaky, 3)]
    for leak in leaks:
        assert token not in str(leak)
        assert str(leaky) in str(leak)
    assert scan([clean], {hash_token(token)}) == []
    assert scan([leaky], set()) == []


def test_tokens_of_a_database_are_known_by_their_hashes(
    db: psycopg.Connection[Any], db_url: str
) -> None:
    made = create_token(db, "wall-1", Role.OPERATOR, "test")
    assert hash_token(made) in token_hashes(db_url)
