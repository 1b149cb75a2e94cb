"""The schema is owned by the migrations: they must build exactly what the models say."""

from __future__ import annotations

from typing import Any

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import text
from sqlalchemy.engine import Connection
from sqlmodel import SQLModel

import app.models  # noqa: F401  (the tables)
from app import db
from app.config import Settings


def _differences(connection: Connection) -> list[Any]:
    context = MigrationContext.configure(connection, opts={"compare_type": True})
    return list(compare_metadata(context, SQLModel.metadata))


async def test_migrations_build_what_the_models_describe(empty_database_url: str) -> None:
    engine = db.create_engine(Settings(database_url=empty_database_url).database_url)
    try:
        await db.migrate(engine)
        await db.migrate(engine)  # a second start finds nothing to do
        async with engine.connect() as connection:
            assert await connection.run_sync(_differences) == []
            if connection.dialect.name == "sqlite":
                # The rebuild in 0003 left foreign keys enforced for everyone after it.
                assert (await connection.execute(text("PRAGMA foreign_keys"))).scalar() == 1
    finally:
        await engine.dispose()
