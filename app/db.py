"""The database engine, sessions and schema migrations.

What is done once per database (the schema, and what app/bootstrap.py sets up beside it)
runs under `schema_lock`, which every process takes: the first to start does the work,
the others wait and then find it done.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy import event, text
from sqlalchemy.engine import Connection, ExceptionContext
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine
from sqlmodel.ext.asyncio.session import AsyncSession

MIGRATIONS = Path(__file__).parent / "migrations"
SQLITE_BUSY_TIMEOUT_MS = 10_000
# pg_advisory_lock's key for "setting this database up": any constant no other code of
# ours uses; advisory locks are scoped to one database, so databases never contend.
SCHEMA_LOCK_KEY = 0x70_697A_7A61_0001  # "pizza", 1
# How often a process waiting for another's SQLite setup looks again (the lock file is
# polled, not waited on in a thread, so a waiting start can still be interrupted).
SQLITE_LOCK_POLL_S = 0.05

log = logging.getLogger("app.db")

# What asyncpg now and then raises, instead of a lost connection, when the server ends a
# session mid-statement (a restart's fast shutdown; MagicStack/asyncpg#1069), leaving the
# connection open and out of step: "cannot switch to state 12; another operation (2) is in
# progress". That connection is no use any more: it is closed (here for the ORM's pool,
# app/sql/postgres.py for the order path's), and the request is answered as with the
# database away (app/sql/failures.py). asyncpg's other InternalClientErrors (a codec, its
# schema cache, its pool) stay bugs.
_OUT_OF_STEP = "cannot switch to state"


def out_of_step(error: BaseException) -> bool:
    """Whether ``error`` is asyncpg's, for a connection it left out of step (above)."""
    return isinstance(error, asyncpg.InternalClientError) and _OUT_OF_STEP in str(error)


def create_engine(url: str) -> AsyncEngine:
    """The engine; a database error never quotes the statement's values (secrets, links)."""
    if url.startswith("sqlite"):
        engine = create_async_engine(
            url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000}, hide_parameters=True
        )

        @event.listens_for(engine.sync_engine, "connect")
        def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
            # WAL lets readers run beside the one writer; the busy timeout makes a
            # second writer (another worker process) wait instead of failing.
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.close()

        return engine
    engine = create_async_engine(
        url, pool_size=20, max_overflow=20, pool_pre_ping=True, hide_parameters=True
    )

    @event.listens_for(engine.sync_engine, "handle_error")
    def _out_of_step_is_lost(context: ExceptionContext) -> None:
        # SQLAlchemy counts a connection as lost only once asyncpg says it is closed; one
        # that asyncpg left open and out of step with the server (above) would go back to
        # the pool. Marked lost, it is closed (a pre-ping that meets it connects anew);
        # the pool's other connections are left to their own pre-ping.
        error = context.original_exception
        if out_of_step(error) or out_of_step(error.__cause__ or error):
            context.is_disconnect = True
            context.invalidate_pool_on_disconnect = False

    return engine


def session_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, class_=AsyncSession, expire_on_commit=False)


def _alembic_config(connection: Connection | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    return config


def head_revision() -> str:
    """The newest migration's revision: the schema `migrate` brings a database to."""
    head = ScriptDirectory.from_config(_alembic_config()).get_current_head()
    assert head is not None
    return head


@contextlib.asynccontextmanager
async def schema_lock(engine: AsyncEngine) -> AsyncIterator[None]:
    """Held by one process at a time per database, whatever the number of processes or
    machines: on PostgreSQL a session advisory lock on a connection of its own (released
    by PostgreSQL if the process dies), on SQLite an exclusive `flock` on a file next to
    the database (released by the kernel likewise). Not re-entrant."""
    if engine.dialect.name == "sqlite":
        async with _sqlite_lock(engine.url.database):
            yield
        return
    async with engine.connect() as connection:
        # Autocommit: the connection holds the lock, not an open transaction.
        connection = await connection.execution_options(isolation_level="AUTOCOMMIT")
        taken = await connection.scalar(
            text("SELECT pg_try_advisory_lock(:key)"), {"key": SCHEMA_LOCK_KEY}
        )
        if not taken:
            log.info("another process is setting up the database: waiting for it")
            await connection.execute(
                text("SELECT pg_advisory_lock(:key)"), {"key": SCHEMA_LOCK_KEY}
            )
        try:
            yield
        finally:
            await connection.execute(
                text("SELECT pg_advisory_unlock(:key)"), {"key": SCHEMA_LOCK_KEY}
            )


@contextlib.asynccontextmanager
async def _sqlite_lock(database: str | None) -> AsyncIterator[None]:
    if not database or database == ":memory:" or database.startswith("file:"):
        yield  # a private in-memory database: one process, nothing to share
        return
    fd = os.open(f"{database}.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        waiting = False
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if not waiting:
                    log.info("another process is setting up the database: waiting for it")
                    waiting = True
                await asyncio.sleep(SQLITE_LOCK_POLL_S)
        yield
    finally:
        # Closing the descriptor releases the lock. The file stays: removing it would let
        # a waiting process lock a file that a newcomer no longer sees.
        os.close(fd)


async def migrate(engine: AsyncEngine) -> None:
    """Bring the schema to the newest migration under `schema_lock`; data is migrated,
    never dropped."""
    async with schema_lock(engine):
        await upgrade(engine)


async def upgrade(engine: AsyncEngine) -> None:
    """`migrate` for a caller that holds `schema_lock` already."""

    def _upgrade(connection: Connection) -> None:
        command.upgrade(_alembic_config(connection), "head")

    async with engine.connect() as connection:
        sqlite = connection.dialect.name == "sqlite"
        if sqlite:
            # SQLite rebuilds a table to change it; with foreign keys enforced, dropping the
            # old copy would cascade into its children. The pragma only acts outside a
            # transaction, hence before begin().
            await connection.exec_driver_sql("PRAGMA foreign_keys=OFF")
            await connection.commit()
        try:
            async with connection.begin():
                await connection.run_sync(_upgrade)
        finally:
            if sqlite:
                await connection.exec_driver_sql("PRAGMA foreign_keys=ON")
                await connection.commit()
