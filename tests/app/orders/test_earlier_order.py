"""What a refused insert finds of its earlier order: none, one let go, or one to answer.

"None there" and "one there, too old to be this order" both let the new order be stored,
but they are different facts: the expired one must have its key cleared first.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from app.models import OrderStatus
from app.orders.placement import IDEMPOTENCY_WINDOW, Asked, NoEarlier, _earlier_by_key
from app.sql import StoredOrder

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def _stored(date: datetime, request_hash: str = "digest") -> StoredOrder:
    return StoredOrder(
        id=7,
        diner_id=1,
        franchise_id=1,
        store_id=1,
        date=date,
        status=OrderStatus.FULFILLED,
        total=Decimal("0.05"),
        jwt="pizza",
        last_reason=None,
        failure=None,
        request_hash=request_hash,
        deferred_at=date,
        items=((1, 1, "Veggie", Decimal("0.05")),),
    )


class _KeyStore:
    """The two calls `_earlier_by_key` makes of the order store."""

    def __init__(self, existing: StoredOrder | None) -> None:
        self.existing = existing
        self.forgotten: list[int] = []

    async def find_order(self, **_: Any) -> StoredOrder | None:
        return self.existing

    async def forget_key(self, order_id: int) -> None:
        self.forgotten.append(order_id)


async def _by_key(store: _KeyStore) -> object:
    return await _earlier_by_key(store, 1, "key-1", "digest", Asked(), NOW)  # type: ignore[arg-type]


async def test_no_order_with_the_key_is_not_found_and_clears_nothing() -> None:
    store = _KeyStore(None)
    assert await _by_key(store) is NoEarlier.NOT_FOUND
    assert store.forgotten == []


async def test_an_expired_order_is_let_go_and_its_key_cleared() -> None:
    store = _KeyStore(_stored(NOW - IDEMPOTENCY_WINDOW - timedelta(seconds=1)))
    assert await _by_key(store) is NoEarlier.LET_GO
    assert store.forgotten == [7]


async def test_a_recent_order_with_the_key_is_answered_as_it_stands() -> None:
    store = _KeyStore(_stored(NOW - timedelta(minutes=1)))
    status, _, body = await _by_key(store)  # type: ignore[misc]
    assert status == 200
    assert body["jwt"] == "pizza"
    assert store.forgotten == []
