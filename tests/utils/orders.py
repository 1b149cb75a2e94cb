"""Following orders and the factory's status the way a client and an operator do."""

from __future__ import annotations

import itertools
from typing import Any

from tests.utils.builders import Api, Shop

_keys = itertools.count(1)


def distinct() -> dict[str, str]:
    """An Idempotency-Key of its own: a new order, not "Pay" pressed again
    (docs/http-api.md#post-apiorder)."""
    return {"Idempotency-Key": f"distinct-order-{next(_keys)}"}


async def status(api: Api, shop: Shop) -> dict[str, Any]:
    answer = await api.client.get("/factory/status", headers=shop.admin.headers)
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    return body


async def in_history(api: Api, shop: Shop, kind: str) -> bool:
    """Whether /factory/status's history has an event of ``kind``. The history is written
    beside the status, a moment after it: a test waits for it (`eventually`)."""
    return kind in [event["kind"] for event in (await status(api, shop))["history"]]


async def order_status(api: Api, shop: Shop, order_id: int) -> str:
    answer = await api.client.get(f"/api/order/{order_id}", headers=shop.diner.headers)
    assert answer.status_code == 200
    return str(answer.json()["status"])


async def all_fulfilled(api: Api, shop: Shop, ids: list[int]) -> bool:
    return all([await order_status(api, shop, i) == "fulfilled" for i in ids])


async def pending_orders(api: Api, shop: Shop, count: int) -> list[int]:
    """`count` distinct orders the factory cannot make now, each answered 503 pending."""
    ids = []
    for _ in range(count):
        answer = await api.order(shop, headers=distinct())
        assert answer.status_code == 503, answer.text
        assert int(answer.headers["retry-after"]) >= 1
        body = answer.json()
        assert body["order"]["status"] == "pending"
        assert body["jwt"] is None
        assert f"order {body['order']['id']} is saved" in body["message"]
        ids.append(body["order"]["id"])
    return ids
