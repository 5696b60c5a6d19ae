"""``ioc db``: apply migrations and run storage maintenance (partitions, retention)."""

from __future__ import annotations

import argparse
import logging

import psycopg

from core.db import maintain, migrate
from core.logs import setup_logging
from core.settings import Settings

logger = logging.getLogger(__name__)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="ioc db", description=__doc__)
    sub = parser.add_subparsers(dest="action", required=True)
    sub.add_parser("migrate", help="apply pending migrations (IOC_DATABASE_URL)")
    sub.add_parser("maintain", help="create partitions ahead and drop those past retention")
    args = parser.parse_args(argv)
    settings = Settings()
    setup_logging(settings.log_level, settings.log_format)
    if args.action == "migrate":
        done = migrate(settings.dsn)
        print(f"applied {len(done)} migration(s): {', '.join(done) or 'schema is up to date'}")
    else:
        with psycopg.connect(settings.dsn, autocommit=True) as conn:
            print(
                maintain(
                    conn,
                    back_days=settings.max_age_days,
                    ahead_days=7,
                    retention_days=settings.retention_days,
                )
            )
    return 0
