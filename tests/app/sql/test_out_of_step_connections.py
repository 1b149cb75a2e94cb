"""A PostgreSQL connection lost mid-statement, or left out of step by asyncpg, is dropped.

When the server ends a session in the middle of a statement (a restart's fast shutdown),
asyncpg now and then raises `InternalClientError` ("cannot switch to state 12; another
operation (2) is in progress") instead of a lost connection, and leaves that connection
open: every later statement on it fails the same way. `pizza soak` met it in its
PostgreSQL restarts as a 500 (GET /api/order, in the token check). That race is asyncpg's
and rare, so these tests put one connection in that state where it would happen (each of
its later calls fails as the first did), and look at what a customer and the next
requests see: a 503 with Retry-After, then the service as before, on other connections.
A real loss (the server ending the statement's own session) is tested as it is.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import asyncpg
import httpx
import pytest
from sqlalchemy.dialects.postgresql.asyncpg import AsyncAdapt_asyncpg_connection

from app.sql.dialect import named
from app.sql.rows import StoreUnavailable
from tests.conftest import BACKENDS, make_settings, running_api
from tests.utils.builders import Api, fast_password_hashing  # noqa: F401
from tests.utils.databases import empty_pg_tables

pytestmark = [
    pytest.mark.usefixtures("fast_password_hashing"),
    pytest.mark.skipif("postgresql" not in BACKENDS, reason="PostgreSQL is not in this run"),
]

OUT_OF_STEP = "cannot switch to state 12; another operation (2) is in progress"


@pytest.fixture
async def pg_api(
    pg_migrated_database: str, factory_url: str, factory: httpx.Client
) -> AsyncIterator[Api]:
    """The service on PostgreSQL only: SQLite has no connection to lose."""
    empty_pg_tables(pg_migrated_database)
    async with running_api(make_settings(pg_migrated_database, factory_url)) as running:
        yield running


def out_of_step(
    monkeypatch: pytest.MonkeyPatch, owner: type, method: str, when: Callable[[str], bool]
) -> list[Any]:
    """The first connection to call ``owner.method`` with a statement ``when`` picks is
    out of step from then on: that call and each later one on it raise as asyncpg does.
    The list gets that connection."""
    original = getattr(owner, method)
    broken: list[Any] = []

    async def call(self: Any, statement: str, *args: Any, **kwargs: Any) -> Any:
        if not broken and when(statement):
            broken.append(self)
        if broken and self is broken[0]:
            raise asyncpg.InternalClientError(OUT_OF_STEP)
        return await original(self, statement, *args, **kwargs)

    monkeypatch.setattr(owner, method, call)
    return broken


def assert_database_unavailable(answer: httpx.Response) -> None:
    assert answer.status_code == 503, answer.text
    assert "database is unavailable" in answer.json()["message"]
    assert int(answer.headers["retry-after"]) >= 1


class TestTheOrderStore:
    async def test_a_read_is_a_503_and_its_connection_leaves_the_pool(
        self, pg_api: Api, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        shop = await pg_api.shop()
        # The token check: a read of the pool, as in the soak.
        broken = out_of_step(monkeypatch, asyncpg.Connection, "fetch", lambda s: "unnest(" in s)

        answer = await pg_api.client.get("/api/order", headers=shop.diner.headers)

        assert_database_unavailable(answer)
        [connection] = broken
        assert connection.is_closed()
        for _ in range(8):  # more reads than the pool has connections
            history = await pg_api.client.get("/api/order", headers=shop.diner.headers)
            assert history.status_code == 200, history.text

    async def test_a_write_is_a_503_and_the_writer_is_replaced(
        self, pg_api: Api, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        shop = await pg_api.shop()
        broken = out_of_step(
            monkeypatch, asyncpg.Connection, "fetchmany", lambda s: "INSERT INTO" in s
        )

        assert_database_unavailable(await pg_api.order(shop))

        [connection] = broken
        assert connection.is_closed()
        made = await pg_api.order(shop)
        assert made.status_code == 200, made.text
        history = await pg_api.client.get("/api/order", headers=shop.diner.headers)
        assert [order["id"] for order in history.json()["orders"]] == [made.json()["order"]["id"]]

    async def test_a_session_the_server_ends_mid_read_is_an_outage(self, pg_api: Api) -> None:
        dialect = pg_api.services.store.dialect
        ends_itself = named("SELECT pg_terminate_backend(pg_backend_pid())")

        with pytest.raises(StoreUnavailable):
            await dialect.read(ends_itself, {})

        menu = await pg_api.client.get("/api/order/menu")
        assert menu.status_code == 200, menu.text


class TestTheOrm:
    async def test_a_statement_is_a_503_and_its_connection_is_dropped(
        self, pg_api: Api, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        admin = await pg_api.admin()
        broken = out_of_step(
            monkeypatch, AsyncAdapt_asyncpg_connection, "_prepare", lambda s: "franchise" in s
        )

        answer = await pg_api.client.get("/api/franchise", headers=admin.headers)

        assert_database_unavailable(answer)
        [adapted] = broken
        assert adapted._connection.is_closed()
        for _ in range(3):
            franchises = await pg_api.client.get("/api/franchise", headers=admin.headers)
            assert franchises.status_code == 200, franchises.text
