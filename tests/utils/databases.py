"""Databases for the tests, migrated once per test run and then reset per test.

Running the migrations costs about half a second of CPU, and most tests want a
database at the newest schema with no rows: so one database per run is migrated, and
each test gets a cheap copy of it. On SQLite the copy is the migrated file, copied; on
PostgreSQL it is one migrated database per test process whose tables are emptied
(TRUNCATE ... RESTART IDENTITY, which also restarts the ids) before each test: faster
than `CREATE DATABASE ... TEMPLATE`, which copies the whole catalog. The service's start
then finds the schema current and has nothing to migrate.

Tests of the migrations themselves, and of a start on an empty database, use an empty
database instead (`empty_database_url` in tests/conftest.py).
"""

from __future__ import annotations

import asyncio
import os
import secrets
import shutil
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import psycopg

from app import db
from app.config import Settings

# A lock held longer than this by a connection a test left open fails the next test's
# reset instead of hanging the run.
RESET_LOCK_TIMEOUT = "30s"


def migrated(database_url: str) -> None:
    """Bring the database at ``database_url`` to the newest migration, as the service's
    start does. Runs in a thread of its own: the calling test may have an event loop."""

    async def migrate() -> None:
        engine = db.create_engine(Settings(_env_file=None, database_url=database_url).database_url)  # type: ignore[call-arg]
        try:
            await db.migrate(engine)
        finally:
            await engine.dispose()

    with ThreadPoolExecutor(max_workers=1) as thread:
        thread.submit(asyncio.run, migrate()).result()


def sqlite_template(folder: Path) -> Path:
    """A migrated SQLite file in ``folder``, for `copy_sqlite`."""
    template = folder / "template.db"
    migrated(f"sqlite+aiosqlite:///{template}")
    # Every connection is closed: the last one checkpointed the write-ahead log into the
    # file, so the file alone is the database.
    assert not Path(f"{template}-wal").exists()
    return template


def copy_sqlite(template: Path, folder: Path) -> str:
    """A copy of the migrated ``template`` in ``folder``; its URL."""
    target = folder / "pizza.db"
    shutil.copyfile(template, target)
    return f"sqlite+aiosqlite:///{target}"


@contextmanager
def pg_scratch_database(admin_url: str) -> Iterator[str]:
    """A database of this test process's own on the machine's PostgreSQL, dropped at the
    end; its URL."""
    name = f"pizza_test_{os.getpid()}_{secrets.token_hex(3)}"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    base = admin_url.rsplit("/", 1)[0]
    try:
        yield f"{base}/{name}"
    finally:
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def reset_pg_schema(url: str) -> None:
    """Empty the database at ``url``: no tables at all, as before the first migration."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("DROP SCHEMA public CASCADE")
        conn.execute("CREATE SCHEMA public")


def empty_pg_tables(url: str) -> None:
    """Remove every row from a migrated database but the migration's own record, and
    restart its ids: the state a fresh migration leaves."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"SET lock_timeout = '{RESET_LOCK_TIMEOUT}'")
        tables = [
            row[0]
            for row in conn.execute(
                "SELECT tablename FROM pg_tables"
                " WHERE schemaname = 'public' AND tablename <> 'alembic_version'"
            )
        ]
        names = ", ".join(f'"{table}"' for table in tables)
        conn.execute(f"TRUNCATE {names} RESTART IDENTITY CASCADE")
