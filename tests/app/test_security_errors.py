"""An outage is an outage, a bug is a bug (docs/http-api.md#differences-from-the-reference-service,
item 17).

Only a database that cannot be reached answers 503 "database unavailable"; any other
store error is a 500 whose error id is in the answer and in the log line, with the
traceback. A signed token's claims are checked for range and form before they reach a
statement. On the earlier code every statement error of the PostgreSQL store was
answered as an outage, and a token with a 70-bit `sub` was a 500 on SQLite."""

from __future__ import annotations

import logging
import sqlite3
from dataclasses import replace
from datetime import timedelta

import asyncpg
import jwt
import pytest
from sqlalchemy.exc import OperationalError
from sqlmodel.ext.asyncio.session import AsyncSession

from app.sql.dialect import named
from app.sql.failures import store_error, unreachable
from app.sql.postgres import PostgresDialect
from app.sql.rows import StoreUnavailable
from tests.conftest import JWT_SECRET
from tests.utils.builders import Api, fast_password_hashing  # noqa: F401

pytestmark = pytest.mark.usefixtures("fast_password_hashing")


def signed(claims: dict[str, object]) -> dict[str, str]:
    return {"Authorization": "Bearer " + jwt.encode(claims, JWT_SECRET, algorithm="HS256")}


class TestItem17TokenClaimsAreCheckedBeforeTheDatabase:
    async def test_out_of_range_claims_are_a_401(self, api: Api) -> None:
        diner = await api.register()
        genuine = jwt.decode(diner.token, JWT_SECRET, algorithms=["HS256"])
        expires = api.services.clock.now() + timedelta(hours=1)
        for changed in [
            {"sub": str(2**70)},
            {"sub": str(2**31)},
            {"sub": "0"},
            {"sub": f"0{diner.id}"},
            {"sub": "\u0661"},  # an Arabic-Indic digit: str.isdigit() says yes
            {"sub": diner.id},  # a number where the service issues a string
            {"jti": "\ud800"},
            {"jti": "a\x00b"},
            {"jti": "j" * 65},
            {"jti": ""},
        ]:
            headers = signed({**genuine, "exp": expires, **changed})

            answer = await api.client.get("/api/user/me", headers=headers)

            assert answer.status_code == 401, (changed, answer.text)
            assert answer.json() == {"message": "unauthorized"}
        assert (await api.client.get("/api/user/me", headers=diner.headers)).is_success


class TestItem17AStoreBugIsA500WithAnErrorId:
    async def test_a_statement_the_database_refuses(
        self, api: Api, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
    ) -> None:
        dialect = api.services.store.dialect
        broken = replace(dialect.reads.menu, sql=named("SELECT id FROM no_such_table"))
        monkeypatch.setattr(dialect, "reads", replace(dialect.reads, menu=broken))

        with caplog.at_level(logging.ERROR, logger="app.errors"):
            answer = await api.client.get("/api/order/menu")

        assert answer.status_code == 500, answer.text
        error_id = answer.json()["errorId"]
        assert answer.json()["message"] == f"internal error (error id {error_id})"
        assert "no_such_table" not in answer.text
        [line] = [r for r in caplog.records if r.__dict__.get("error_id") == error_id]
        assert error_id in line.getMessage()
        assert line.exc_info is not None  # the traceback is in the log line

    async def test_an_orm_error_that_is_not_a_lost_connection(
        self, api: Api, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        admin = await api.admin()

        async def no_such_table(*_args: object, **_kwargs: object) -> object:
            raise OperationalError("SELECT", {}, sqlite3.OperationalError("no such table: x"))

        monkeypatch.setattr(AsyncSession, "exec", no_such_table)
        answer = await api.client.get("/api/franchise", headers=admin.headers)

        assert answer.status_code == 500, answer.text
        assert "errorId" in answer.json()

    async def test_a_database_that_cannot_be_reached_is_still_a_503(self, api: Api) -> None:
        dialect = api.services.store.dialect
        if not isinstance(dialect, PostgresDialect):
            pytest.skip("the SQLite store has no connection to lose")
        assert dialect._readers is not None
        await dialect._readers.close()  # what a server restart leaves the pool with

        answer = await api.client.get("/api/order/menu")

        assert answer.status_code == 503, answer.text
        assert "database is unavailable" in answer.json()["message"]
        assert int(answer.headers["retry-after"]) >= 1


class TestItem17AnOutageSaysWhichInItsLogLine:
    async def test_an_orm_statement_the_database_cannot_take_now(
        self, api: Api, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
    ) -> None:
        admin = await api.admin()

        async def locked(*_args: object, **_kwargs: object) -> object:
            raise OperationalError("SELECT", {}, sqlite3.OperationalError("database is locked"))

        monkeypatch.setattr(AsyncSession, "exec", locked)
        with caplog.at_level(logging.WARNING, logger="app.errors"):
            answer = await api.client.get("/api/franchise", headers=admin.headers)

        assert answer.status_code == 503, answer.text
        [line] = [r.getMessage() for r in caplog.records if r.name == "app.errors"]
        assert line == (
            "database unavailable on GET /api/franchise: OperationalError: database is locked"
        )


class TestItem17WhatCountsAsUnreachable:
    @pytest.mark.parametrize(
        "error",
        [
            ConnectionRefusedError(111, "Connection refused"),
            TimeoutError(),
            asyncpg.ConnectionDoesNotExistError("connection was closed in the middle"),
            asyncpg.CannotConnectNowError("the database system is starting up"),
            asyncpg.AdminShutdownError("terminating connection due to administrator command"),
            asyncpg.TooManyConnectionsError("sorry, too many clients already"),
            asyncpg.InterfaceError("connection is closed"),
            # asyncpg's answer, now and then, to a session the server ended mid-statement
            asyncpg.InternalClientError("cannot switch to state 12; another operation (2)"),
            sqlite3.OperationalError("database is locked"),
            sqlite3.OperationalError("unable to open database file"),
            OperationalError("SELECT", {}, ConnectionRefusedError(111, "refused")),
        ],
    )
    def test_an_outage(self, error: BaseException) -> None:
        assert unreachable(error)
        assert isinstance(store_error(error), StoreUnavailable)

    @pytest.mark.parametrize(
        "error",
        [
            asyncpg.DataError("invalid input for query argument $2: 1180591620717411303424"),
            asyncpg.UndefinedTableError('relation "x" does not exist'),
            asyncpg.UniqueViolationError("duplicate key value"),
            asyncpg.exceptions.DataError("invalid input syntax for type integer"),
            asyncpg.InterfaceError("the server expects 2 arguments, 1 was passed"),
            asyncpg.InternalClientError("no decoder for OID 16385"),  # asyncpg's, not a loss
            sqlite3.OperationalError("no such table: x"),
            sqlite3.IntegrityError("UNIQUE constraint failed"),
            OverflowError("Python int too large to convert to SQLite INTEGER"),
            OperationalError("SELECT", {}, sqlite3.OperationalError("no such column: y")),
        ],
    )
    def test_a_bug(self, error: BaseException) -> None:
        assert not unreachable(error)
        assert not isinstance(store_error(error), StoreUnavailable)
