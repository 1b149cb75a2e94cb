"""The schema lives in three places that must agree: the SQLModel models, the Alembic
migrations, and the order path's own statements for each database. An empty database is
migrated, read back with SQLAlchemy's inspector and compared with the models; then every
statement of the order path is prepared on it, so a column or table it names that the
migrations do not build fails here, not in a customer's order."""

from __future__ import annotations

import sqlite3
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import fields
from types import ModuleType
from typing import Any

import asyncpg
from sqlalchemy import Table, inspect
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.types import TypeDecorator, TypeEngine
from sqlmodel import SQLModel

import app.models  # noqa: F401  (the tables)
from app import db
from app.config import Settings
from app.sql import postgres, sqlite
from app.sql.dialect import Reads, Sql


def _kind(column_type: TypeEngine[Any]) -> tuple[type[Any], int | None]:
    """What a column holds, as both sides can say it: the generic type (an integer of any
    width, a string of any flavour, a time) and a string's length."""
    if isinstance(column_type, TypeDecorator):
        column_type = column_type.impl_instance
    return column_type._type_affinity or type(column_type), getattr(column_type, "length", None)  # type: ignore[return-value]


def _model_table(name: str) -> Table:
    return SQLModel.metadata.tables[name]


def _uniques_of_model(table: Table) -> set[frozenset[str]]:
    found = {frozenset(c.name for c in index.columns) for index in table.indexes if index.unique}
    for constraint in table.constraints:
        if constraint.__class__.__name__ == "UniqueConstraint":
            found.add(frozenset(c.name for c in constraint.columns))  # type: ignore[attr-defined]
    return found


def _disagreements(connection: Connection) -> list[str]:
    inspector = inspect(connection)
    found: list[str] = []
    migrated = set(inspector.get_table_names()) - {"alembic_version"}
    modelled = set(SQLModel.metadata.tables)
    if migrated != modelled:
        found.append(
            f"tables: migrated only {migrated - modelled}, models only {modelled - migrated}"
        )
    for name in sorted(migrated & modelled):
        found.extend(f"{name}: {problem}" for problem in _table_disagreements(inspector, name))
    return found


def _table_disagreements(inspector: Any, name: str) -> Iterator[str]:
    model = _model_table(name)
    columns = {c["name"]: c for c in inspector.get_columns(name)}
    if set(columns) != set(model.columns.keys()):
        yield f"columns {sorted(columns)} != models' {sorted(model.columns.keys())}"
    for column in model.columns:
        reflected = columns.get(column.name)
        if reflected is None:
            continue
        if _kind(reflected["type"]) != _kind(column.type):
            yield f"{column.name}: {reflected['type']!r} is not {column.type!r}"
        if reflected["nullable"] != column.nullable:
            yield f"{column.name}: nullable {reflected['nullable']}, models {column.nullable}"
    primary = inspector.get_pk_constraint(name)["constrained_columns"]
    if primary != [c.name for c in model.primary_key.columns]:
        yield f"primary key {primary}"
    indexes = [i for i in inspector.get_indexes(name) if not i.get("duplicates_constraint")]
    plain = {i["name"]: tuple(i["column_names"]) for i in indexes if not i["unique"]}
    modelled = {i.name: tuple(c.name for c in i.columns) for i in model.indexes if not i.unique}
    if plain != modelled:
        yield f"indexes {plain} != models' {modelled}"
    uniques = {frozenset(i["column_names"]) for i in indexes if i["unique"]}
    uniques |= {frozenset(u["column_names"]) for u in inspector.get_unique_constraints(name)}
    if uniques != _uniques_of_model(model):
        yield f"unique {sorted(map(sorted, uniques))} != models' {_uniques_of_model(model)}"


def _statements(module: ModuleType) -> list[Sql]:
    """Every statement a dialect runs: its reads, its commands', and its own helpers'."""
    reads: Reads = module.READS
    found = [getattr(reads, field.name).sql for field in fields(Reads)]
    found.extend(module.STATEMENTS.values())
    found.extend(value for value in vars(module).values() if isinstance(value, Sql))
    return found


def _unprepared_on_sqlite(path: str) -> list[str]:
    connection = sqlite3.connect(path)
    refused = []
    try:
        for statement in _statements(sqlite):
            try:  # EXPLAIN compiles the statement against the schema and runs nothing
                connection.execute(f"EXPLAIN {statement.text}", defaultdict(lambda: None))
            except sqlite3.Error as error:
                refused.append(f"{error}: {statement.text}")
    finally:
        connection.close()
    return refused


async def _unprepared_on_postgres(url: str) -> list[str]:
    dsn = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    connection = await asyncpg.connect(dsn)
    refused = []
    try:
        for statement in _statements(postgres):
            try:
                await connection.prepare(statement.text)
            except asyncpg.PostgresError as error:
                refused.append(f"{error}: {statement.text}")
    finally:
        await connection.close()
    return refused


async def test_the_migrated_schema_is_the_models_and_fits_every_statement(
    empty_database_url: str,
) -> None:
    url = Settings(database_url=empty_database_url).database_url
    engine = db.create_engine(url)
    try:
        await db.migrate(engine)
        async with engine.connect() as connection:
            assert await connection.run_sync(_disagreements) == []
            is_sqlite = connection.dialect.name == "sqlite"
    finally:
        await engine.dispose()

    if is_sqlite:
        refused = _unprepared_on_sqlite(make_url(url).database or "")
    else:
        refused = await _unprepared_on_postgres(url)
    assert refused == []


def test_the_comparison_sees_a_disagreement() -> None:
    """The comparison itself can fail: a column type the models do not have is told apart."""
    from sqlalchemy import BigInteger, Integer, String

    assert _kind(BigInteger()) == _kind(Integer())
    assert _kind(String(64)) != _kind(String(55))
    assert _kind(String(64)) != _kind(Integer())
