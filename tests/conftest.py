"""Session-wide fixtures: real PostgreSQL and Mosquitto servers on free ports."""

from __future__ import annotations

import contextlib
import logging
import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest

from core.db import migrate
from tests.support.servers import MosquittoServer, PostgresServer
from tests.support.token_leaks import log_files, scan, token_hashes

TEMPLATE_DB = "ioc_template"

# the sha256 of every API token the tests created, gathered as their databases are dropped
TOKEN_HASHES: set[str] = set()


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "allow_error_logs: the test expects ERROR log records")


@pytest.fixture(scope="session", autouse=True)
def _bench_results_elsewhere(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Benchmarks run by tests write their figures here, not over ``benchmarks/results``."""
    before = os.environ.get("IOC_BENCH_RESULTS")
    os.environ["IOC_BENCH_RESULTS"] = str(tmp_path_factory.mktemp("bench-results"))
    yield
    if before is None:
        os.environ.pop("IOC_BENCH_RESULTS", None)
    else:
        os.environ["IOC_BENCH_RESULTS"] = before


@pytest.fixture(scope="session", autouse=True)
def _no_token_in_logs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """After the session, no log file a test process wrote holds a token the tests created."""
    yield
    leaks = scan(log_files(tmp_path_factory.getbasetemp()), TOKEN_HASHES)
    if leaks:
        shown = "\n".join(str(leak) for leak in leaks[:20])
        pytest.fail(f"{len(leaks)} log line(s) hold an API token:\n{shown}", pytrace=False)


def _harvest_tokens(server: PostgresServer) -> None:
    """Keep the token hashes of every database of a server that still runs."""
    names: list[str] = []
    with contextlib.suppress(psycopg.Error), psycopg.connect(server.dsn("postgres")) as conn:
        names = [n for (n,) in conn.execute("SELECT datname FROM pg_database WHERE datallowconn")]
    for name in names:
        with contextlib.suppress(psycopg.Error):
            TOKEN_HASHES.update(token_hashes(server.dsn(name)))


def drop_database(server: PostgresServer, name: str) -> None:
    """Drop a test database, keeping the hashes of its API tokens for the log scan."""
    with contextlib.suppress(psycopg.Error):
        TOKEN_HASHES.update(token_hashes(server.dsn(name)))
    with psycopg.connect(server.dsn("postgres"), autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture(scope="session")
def pg_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PostgresServer]:
    """One PostgreSQL for the session, with a migrated template database."""
    server = PostgresServer(tmp_path_factory.mktemp("pg"))
    server.start()
    with psycopg.connect(server.dsn("postgres"), autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {TEMPLATE_DB}")
    migrate(server.dsn(TEMPLATE_DB))
    yield server
    server.stop()


@pytest.fixture
def db_url(pg_server: PostgresServer) -> Iterator[str]:
    """A fresh, migrated database of its own for this test (real commits, real processes)."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(pg_server.dsn("postgres"), autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name} TEMPLATE {TEMPLATE_DB}")
    yield pg_server.dsn(name)
    drop_database(pg_server, name)


@pytest.fixture
def db(db_url: str) -> Iterator[psycopg.Connection[tuple[object, ...]]]:
    with psycopg.connect(db_url, autocommit=True) as conn:
        yield conn


@pytest.fixture(scope="session")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MosquittoServer]:
    """One Mosquitto for the session; tests use sensor ids of their own."""
    server = MosquittoServer(tmp_path_factory.mktemp("mqtt"))
    server.start()
    yield server
    server.stop()


@pytest.fixture
def mqtt_url(broker: MosquittoServer) -> str:
    return broker.url


@pytest.fixture
def make_pg(tmp_path: Path) -> Iterator[Callable[[], PostgresServer]]:
    """Start PostgreSQL servers of this test's own (to stop, kill and restart them)."""
    made: list[PostgresServer] = []

    def factory() -> PostgresServer:
        server = PostgresServer(tmp_path / f"pg{len(made)}")
        server.start()
        made.append(server)
        return server

    yield factory
    for server in made:
        _harvest_tokens(server)
        server.kill()


@pytest.fixture
def make_broker(tmp_path: Path) -> Iterator[Callable[..., MosquittoServer]]:
    """Start Mosquitto brokers of this test's own (to stop, kill and restart them)."""
    made: list[MosquittoServer] = []

    def factory(extra_conf: str = "") -> MosquittoServer:
        server = MosquittoServer(tmp_path / f"mqtt{len(made)}", extra_conf=extra_conf)
        server.start()
        made.append(server)
        return server

    yield factory
    for server in made:
        server.kill()


@pytest.fixture(autouse=True)
def _fail_on_error_logs(
    request: pytest.FixtureRequest, caplog: pytest.LogCaptureFixture
) -> Iterator[None]:
    """A test that makes the code log an ERROR fails, unless it says it expects one."""
    caplog.set_level(logging.INFO)
    yield
    if request.node.get_closest_marker("allow_error_logs"):
        return
    errors = [
        r
        for when in ("setup", "call")
        for r in caplog.get_records(when)  # type: ignore[arg-type]
        if r.levelno >= logging.ERROR
    ]
    if errors:
        pytest.fail(
            "unexpected ERROR logs: " + "; ".join(f"{r.name}: {r.getMessage()}" for r in errors)
        )
