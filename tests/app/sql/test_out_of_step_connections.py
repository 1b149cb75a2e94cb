"""A PostgreSQL connection that asyncpg left out of step with the server is dropped.

When the server ends a session in the middle of a statement (a restart's fast shutdown),
asyncpg now and then raises `InternalClientError` ("cannot switch to state 12; another
operation (2) is in progress") instead of a lost connection, and leaves that connection
open: every later statement on it fails the same way. `pizza soak` met it in its
PostgreSQL restarts as a 500 (GET /api/order, in the token check). The race itself is
asyncpg's and rare, so these tests make asyncpg raise it once, where it would, and look at
what a customer and the next request see: a 503 with Retry-After, then the service as
before, on a connection of its own (the failed one is closed, never handed out again).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import httpx
import pytest
from sqlalchemy.dialects.postgresql.asyncpg import AsyncAdapt_asyncpg_connection

from tests.conftest import make_settings, running_api
from tests.utils.builders import Api, fast_password_hashing  # noqa: F401
from tests.utils.databases import empty_pg_tables

pytestmark = pytest.mark.usefixtures("fast_password_hashing")

OUT_OF_STEP = "cannot switch to state 12; another operation (2) is in progress"


@pytest.fixture
async def pg_api(
    pg_migrated_database: str, factory_url: str, factory: httpx.Client
) -> AsyncIterator[Api]:
    """The service on PostgreSQL only: SQLite has no connection to lose."""
    empty_pg_tables(pg_migrated_database)
    async with running_api(make_settings(pg_migrated_database, factory_url)) as running:
        yield running


def out_of_step_once(monkeypatch: pytest.MonkeyPatch, owner: type, method: str) -> list[Any]:
    """``owner.method`` raises what asyncpg raises for a connection out of step, the next
    time it is called; the list gets the connection it was called on."""
    original = getattr(owner, method)
    failed_on: list[Any] = []

    async def once(self: Any, *args: Any, **kwargs: Any) -> Any:
        if not failed_on:
            failed_on.append(self)
            raise asyncpg.InternalClientError(OUT_OF_STEP)
        return await original(self, *args, **kwargs)

    monkeypatch.setattr(owner, method, once)
    return failed_on


def assert_database_unavailable(answer: httpx.Response) -> None:
    assert answer.status_code == 503, answer.text
    assert "database is unavailable" in answer.json()["message"]
    assert int(answer.headers["retry-after"]) >= 1


class TestTheOrderStore:
    async def test_a_read_is_a_503_and_its_connection_leaves_the_pool(
        self, pg_api: Api, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        shop = await pg_api.shop()
        failed_on = out_of_step_once(monkeypatch, asyncpg.Connection, "fetch")

        # The token check is a read of the pool, as in the soak.
        answer = await pg_api.client.get("/api/order", headers=shop.diner.headers)

        assert_database_unavailable(answer)

        [connection] = failed_on
        assert connection.is_closed()
        for _ in range(8):  # more reads than the pool has connections: none is the old one
            history = await pg_api.client.get("/api/order", headers=shop.diner.headers)
            assert history.status_code == 200, history.text

    async def test_a_write_is_a_503_and_the_writer_is_replaced(
        self, pg_api: Api, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        shop = await pg_api.shop()
        dialect = pg_api.services.store.dialect
        failed_on = out_of_step_once(monkeypatch, asyncpg.Connection, "fetchmany")

        assert_database_unavailable(await pg_api.order(shop))

        [connection] = failed_on
        assert connection.is_closed()
        made = await pg_api.order(shop)
        assert made.status_code == 200, made.text
        assert dialect._writer is not connection
        history = await pg_api.client.get("/api/order", headers=shop.diner.headers)
        assert [order["id"] for order in history.json()["orders"]] == [made.json()["order"]["id"]]


class TestTheOrm:
    async def test_a_statement_is_a_503_and_its_connection_is_dropped(
        self, pg_api: Api, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        admin = await pg_api.admin()
        failed_on = out_of_step_once(monkeypatch, AsyncAdapt_asyncpg_connection, "_prepare")

        answer = await pg_api.client.get("/api/franchise", headers=admin.headers)

        assert_database_unavailable(answer)

        [adapted] = failed_on
        assert adapted._connection.is_closed()
        franchises = await pg_api.client.get("/api/franchise", headers=admin.headers)
        assert franchises.status_code == 200, franchises.text
