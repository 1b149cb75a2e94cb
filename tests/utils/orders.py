"""Following orders and the factory's status the way a client and an operator do."""

from __future__ import annotations

from typing import Any

from tests.utils.builders import Api, Shop


async def status(api: Api, shop: Shop) -> dict[str, Any]:
    answer = await api.client.get("/factory/status", headers=shop.admin.headers)
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    return body


async def order_status(api: Api, shop: Shop, order_id: int) -> str:
    answer = await api.client.get(f"/api/order/{order_id}", headers=shop.diner.headers)
    assert answer.status_code == 200
    return str(answer.json()["status"])


async def all_fulfilled(api: Api, shop: Shop, ids: list[int]) -> bool:
    return all([await order_status(api, shop, i) == "fulfilled" for i in ids])


async def pending_orders(api: Api, shop: Shop, count: int) -> list[int]:
    ids = []
    for _ in range(count):
        answer = await api.order(shop)
        assert answer.status_code == 202, answer.text
        body = answer.json()
        assert body["order"]["status"] == "pending"
        assert body["jwt"] is None
        assert "factory" in body["message"].lower()
        ids.append(body["order"]["id"])
    return ids
