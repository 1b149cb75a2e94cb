"""A failed order knows why as a value (OrderFailure), not as a sentence to match."""

from __future__ import annotations

import dataclasses
from typing import Any

import httpx
import pytest

from app.models import DinerOrder, OrderFailure
from tests.utils.builders import Api


async def stored(api: Api, order_id: int) -> DinerOrder:
    async with api.services.sessions() as session:
        order = await session.get(DinerOrder, order_id)
    assert order is not None
    return order


class TestOrderFailure:
    async def test_a_rejected_order_is_stored_as_rejected(
        self, api: Api, factory: httpx.Client, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        shop = await api.shop()
        client = api.services.factory
        original = client.create_pizza

        async def empty_order(diner: Any, order: Any, *, timeout_s: float) -> Any:
            # The factory refuses an order without items (a 4xx): a rejection.
            return await original(diner, dataclasses.replace(order, items=()), timeout_s=timeout_s)

        monkeypatch.setattr(client, "create_pizza", empty_order)
        answer = await api.order(shop)
        assert answer.status_code == 502
        order = await stored(api, answer.json()["order"]["id"])
        assert order.status == "failed"
        assert order.failure == OrderFailure.REJECTED

    async def test_an_order_of_a_deleted_store_is_stored_as_cancelled(
        self, manual_api: Api, factory: httpx.Client
    ) -> None:
        api = manual_api
        shop = await api.shop()
        factory.put("/api/vendor/chaos/fail").raise_for_status()
        answer = await api.order(shop)
        assert answer.status_code == 503  # kept pending (no Prefer: respond-async)
        deleted = await api.client.delete(
            f"/api/franchise/{shop.franchise['id']}/store/{shop.store['id']}",
            headers=shop.admin.headers,
        )
        assert deleted.status_code == 200, deleted.text
        order = await stored(api, answer.json()["order"]["id"])
        assert order.status == "failed"
        assert order.failure == OrderFailure.CANCELLED
