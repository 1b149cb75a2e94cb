"""The order store: writes that share a flush, and token checks that share a read, each
learn their own fate."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from decimal import Decimal

from app.security import decode_token
from app.sql.postgres import PostgresDialect
from app.sql.rows import NewOrder, StoreError
from tests.utils.builders import Api


def _order(api_shop_ids: tuple[int, int, int], key: str, menu_id: int) -> NewOrder:
    diner_id, franchise_id, store_id = api_shop_ids
    now = datetime.now(UTC)
    return NewOrder(
        diner_id=diner_id,
        franchise_id=franchise_id,
        store_id=store_id,
        date=now,
        total=Decimal("0.0050"),
        idempotency_key=key,
        request_hash=f"hash-{key}",
        twin_hash=None,
        next_attempt_at=now,
        claimed_until=None,
        last_reason=None,
        deferred_at=None,
        items=[(menu_id, "Veggie", Decimal("0.0050"))],
    )


async def test_writes_in_one_flush_are_told_what_was_stored(api: Api) -> None:
    """An order to store and a write that the database refuses, flushed together: each
    caller learns the truth about its own write, and nothing is half-written. On
    PostgreSQL each run of one kind is its own implicit transaction, so the order is
    stored; SQLite commits a flush as one transaction, so neither is."""
    shop = await api.shop()
    store = api.services.store
    ids = (shop.diner.id, shop.franchise["id"], shop.store["id"])
    menu_id = shop.menu[0]["id"]
    first = await store.insert_order(_order(ids, "first", menu_id))
    assert isinstance(first, tuple)
    first_id = first[0]

    # Queued in the same turn of the loop: one flush holds both.
    stored, refused = await asyncio.gather(
        store.insert_order(_order(ids, "second", menu_id)),
        # Not a JWT the database can hold: the driver refuses the write.
        store.fulfil(first_id, object(), datetime.now(UTC)),  # type: ignore[arg-type]
        return_exceptions=True,
    )
    assert isinstance(refused, StoreError)
    found = await store.find_order(diner_id=shop.diner.id, key="second")
    if isinstance(store.dialect, PostgresDialect):
        assert isinstance(stored, tuple)
    if isinstance(stored, tuple):
        assert found is not None and found.id == stored[0] and found.status == "pending"
    else:
        assert isinstance(stored, StoreError) and found is None
    # The refused write changed nothing.
    assert await store.order_state(first_id) == ("pending", None)


async def test_a_write_the_server_refuses_fails_alone(api: Api) -> None:
    """Three pizzas' failures recorded in one flush, one of them a reason PostgreSQL cannot
    store (a NUL character): the other two are stored, only the bad one fails."""
    shop = await api.shop()
    store = api.services.store
    ids = (shop.diner.id, shop.franchise["id"], shop.store["id"])
    menu_id = shop.menu[0]["id"]
    orders = [await store.insert_order(_order(ids, f"k{n}", menu_id)) for n in range(3)]
    order_ids = [o[0] for o in orders if isinstance(o, tuple)]
    assert len(order_ids) == 3
    now = datetime.now(UTC)
    reasons = ["rejected: one", "rejected: \x00 two", "rejected: three"]

    results = await asyncio.gather(
        *(store.fail(i, r, now) for i, r in zip(order_ids, reasons, strict=True)),
        return_exceptions=True,
    )

    assert results[0] is True and results[2] is True
    states = [await store.order_state(i) for i in order_ids]
    assert states[0] == ("failed", None) and states[2] == ("failed", None)
    if isinstance(results[1], StoreError):
        assert states[1] == ("pending", None)  # PostgreSQL: nothing half-written
    else:
        assert states[1] == ("failed", None)  # SQLite stores the character


async def test_token_checks_at_one_moment_each_get_their_own_user(api: Api) -> None:
    """Concurrent token checks (on PostgreSQL one batched statement): each gets its own
    user and roles, a session that is not there gets none, and a session checked for
    another user gets none."""
    admin = await api.admin()
    owner = await api.register("Franchise Owner")
    diner = await api.register("Checked Diner")
    franchise = await api.franchise(admin, admins=[owner.email])
    store = api.services.store
    secret = api.services.jwt_secret
    accounts = [admin, owner, diner, diner]
    sessions = [_session(a.token, secret) for a in accounts]

    checks = [store.principal(jti, user_id) for user_id, jti in sessions]
    checks.append(store.principal("no-such-session", diner.id))
    checks.append(store.principal(sessions[0][1], diner.id))  # the admin's session
    found = await asyncio.gather(*checks)

    expected_roles = [
        {("admin", None)},
        {("diner", None), ("franchisee", franchise["id"])},
        {("diner", None)},
        {("diner", None)},
    ]
    for account, roles, principal in zip(accounts, expected_roles, found, strict=False):
        assert principal is not None
        assert (principal.user_id, principal.email) == (account.id, account.email)
        assert set(principal.roles) == roles
    assert found[-2:] == [None, None]


def _session(token: str, secret: str) -> tuple[int, str]:
    decoded = decode_token(token, secret=secret, now=datetime.now(UTC))
    assert decoded is not None
    return decoded
