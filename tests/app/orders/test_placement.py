"""A pending order as the client asked for it (RFC 7240), and "Pay" pressed again (api.md)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta

import httpx
import pytest
from sqlalchemy import update

from app.models import DinerOrder, OrderStatus, utcnow
from app.orders.placement import PENDING_TWIN_WINDOW, prefers_async, retry_after_s
from tests.conftest import make_settings, running_api
from tests.utils.builders import Api

ASYNC = {"Prefer": "respond-async"}


class TestPreferHeader:
    @pytest.mark.parametrize(
        "fields",
        [
            ["respond-async"],
            ["Respond-Async"],
            ["return=minimal, respond-async"],
            ["wait=10; x=1", "respond-async;foo=bar"],
            [" handling=lenient ,RESPOND-ASYNC "],
        ],
    )
    def test_asks_for_an_async_answer(self, fields: list[str]) -> None:
        assert prefers_async(fields)

    @pytest.mark.parametrize(
        "fields", [[], [""], ["return=minimal"], ["respond-asynchronously"], ["wait=respond-async"]]
    )
    def test_does_not(self, fields: list[str]) -> None:
        assert not prefers_async(fields)


class TestRetryAfter:
    def test_is_the_breaker_reset_while_it_is_open_else_the_retry_base(self) -> None:
        assert retry_after_s(breaker_open=True, breaker_reset_s=30.0, retry_base_s=1.0) == 30
        assert retry_after_s(breaker_open=False, breaker_reset_s=30.0, retry_base_s=2.5) == 3
        assert retry_after_s(breaker_open=False, breaker_reset_s=30.0, retry_base_s=0.1) == 1


class TestAPendingOrderAnswer:
    async def test_without_prefer_is_503_with_retry_after_and_the_order_number(
        self, database_url: str, factory_url: str, factory: httpx.Client
    ) -> None:
        settings = make_settings(database_url, factory_url, factory_auto_remediate=False)
        async with running_api(settings) as api:
            shop = await api.shop()
            factory.put("/api/vendor/chaos/fail").raise_for_status()
            answer = await api.order(shop)

        assert answer.status_code == 503, answer.text
        assert int(answer.headers["retry-after"]) >= 1
        assert "preference-applied" not in answer.headers
        body = answer.json()
        order_id = body["order"]["id"]
        assert body["order"]["status"] == "pending" and body["jwt"] is None
        message = body["message"]
        assert f"order {order_id} is saved" in message
        assert "when the factory is back" in message or "as soon as the factory is back" in message
        assert "not be charged twice" in message

    async def test_with_prefer_respond_async_is_202_with_location(
        self, database_url: str, factory_url: str, factory: httpx.Client
    ) -> None:
        settings = make_settings(database_url, factory_url, factory_auto_remediate=False)
        async with running_api(settings) as api:
            shop = await api.shop()
            factory.put("/api/vendor/chaos/fail").raise_for_status()
            answer = await api.order(shop, headers={"Prefer": "return=minimal, Respond-Async"})
            followed = await api.client.get(answer.headers["location"], headers=shop.diner.headers)

        assert answer.status_code == 202, answer.text
        assert answer.headers["preference-applied"] == "respond-async"
        order_id = answer.json()["order"]["id"]
        assert answer.headers["location"] == f"/api/order/{order_id}"
        assert "retry-after" not in answer.headers
        assert followed.json()["id"] == order_id

    async def test_a_made_pizza_is_200_whatever_the_prefer(self, api: Api) -> None:
        shop = await api.shop()
        answer = await api.order(shop, headers=ASYNC)
        assert answer.status_code == 200, answer.text
        assert "preference-applied" not in answer.headers

    async def test_an_idempotent_replay_answers_by_the_replaying_request(
        self, database_url: str, factory_url: str, factory: httpx.Client
    ) -> None:
        settings = make_settings(database_url, factory_url, factory_auto_remediate=False)
        async with running_api(settings) as api:
            shop = await api.shop()
            factory.put("/api/vendor/chaos/fail").raise_for_status()
            key = {"Idempotency-Key": "pay-1"}
            first = await api.order(shop, headers={**key, **ASYNC})
            again = await api.order(shop, headers=key)

        assert first.status_code == 202
        assert again.status_code == 503 and "retry-after" in again.headers
        assert again.json()["order"]["id"] == first.json()["order"]["id"]


async def _orders_of(api: Api, headers: dict[str, str]) -> list[dict[str, object]]:
    orders: list[dict[str, object]] = (await api.client.get("/api/order", headers=headers)).json()[
        "orders"
    ]
    return orders


class TestPressingPayAgain:
    @pytest.fixture
    async def failing(
        self, database_url: str, factory_url: str, factory: httpx.Client
    ) -> AsyncIterator[Api]:
        settings = make_settings(database_url, factory_url, factory_auto_remediate=False)
        async with running_api(settings) as api:
            factory.put("/api/vendor/chaos/fail").raise_for_status()
            yield api

    async def test_while_pending_answers_with_the_same_order(self, failing: Api) -> None:
        api = failing
        shop = await api.shop()
        first = await api.order(shop)
        again = await api.order(shop)

        assert (first.status_code, again.status_code) == (503, 503)
        order_id = first.json()["order"]["id"]
        assert again.json()["order"]["id"] == order_id
        assert f"order {order_id}" in again.json()["message"]
        assert [o["id"] for o in await _orders_of(api, shop.diner.headers)] == [order_id]

    async def test_a_different_item_list_is_a_new_order(self, failing: Api) -> None:
        api = failing
        shop = await api.shop()
        one = await api.order(shop, menu_ids=[shop.menu[0]["id"]])
        two = await api.order(shop, menu_ids=[shop.menu[0]["id"], shop.menu[1]["id"]])
        other_diner = await api.order(shop, diner=await api.register())

        ids = {r.json()["order"]["id"] for r in (one, two, other_diner)}
        assert len(ids) == 3

    async def test_an_idempotency_key_always_wins(self, failing: Api) -> None:
        api = failing
        shop = await api.shop()
        keyless = await api.order(shop)
        keyed = await api.order(shop, headers={"Idempotency-Key": "k-1"})
        keyed_again = await api.order(shop, headers={"Idempotency-Key": "k-2"})

        ids = [r.json()["order"]["id"] for r in (keyless, keyed, keyed_again)]
        assert len(set(ids)) == 3

    async def test_a_pending_twin_older_than_the_window_does_not_block(self, failing: Api) -> None:
        api = failing
        shop = await api.shop()
        first = (await api.order(shop)).json()["order"]["id"]
        async with api.services.sessions() as session:
            await session.exec(
                update(DinerOrder)
                .where(DinerOrder.id == first)  # type: ignore[arg-type]
                .values(date=utcnow() - PENDING_TWIN_WINDOW - timedelta(seconds=1))
            )
            await session.commit()

        second = (await api.order(shop)).json()["order"]["id"]
        third = (await api.order(shop)).json()["order"]["id"]

        assert second != first
        assert third == second  # the new one is the twin now

    async def test_two_presses_at_once_make_one_order(self, failing: Api) -> None:
        api = failing
        shop = await api.shop()
        answers = await asyncio.gather(*(api.order(shop) for _ in range(4)))

        assert {a.status_code for a in answers} == {503}, [a.text for a in answers]
        assert len({a.json()["order"]["id"] for a in answers}) == 1
        assert len(await _orders_of(api, shop.diner.headers)) == 1


class TestADoubleClickOnAWorkingFactory:
    async def test_both_presses_get_the_one_pizza(self, api: Api, factory: httpx.Client) -> None:
        shop = await api.shop()
        # The simulator's throttle makes a good pizza after 0.5 s: the second press comes
        # while the first still waits for it (the customer waits up to 5 s).
        factory.put("/api/vendor/chaos/throttle").raise_for_status()
        before = sum(factory.get("/api/sim/stats").json()["pizzas"].values())
        answers = await asyncio.gather(api.order(shop), api.order(shop))

        assert [a.status_code for a in answers] == [200, 200], [a.text for a in answers]
        assert len({a.json()["order"]["id"] for a in answers}) == 1
        assert answers[0].json()["jwt"] == answers[1].json()["jwt"]
        after = sum(factory.get("/api/sim/stats").json()["pizzas"].values())
        assert after - before == 1  # one pizza made


class TestAFulfilledOrder:
    async def test_never_blocks_a_new_one(self, api: Api) -> None:
        shop = await api.shop()
        first = await api.order(shop)
        second = await api.order(shop)

        assert (first.status_code, second.status_code) == (200, 200)
        assert first.json()["order"]["id"] != second.json()["order"]["id"]

    async def test_a_failed_one_neither(
        self, database_url: str, factory_url: str, factory: httpx.Client
    ) -> None:
        settings = make_settings(database_url, factory_url, factory_auto_remediate=False)
        async with running_api(settings) as api:
            shop = await api.shop()
            factory.put("/api/vendor/chaos/fail").raise_for_status()
            first = (await api.order(shop)).json()["order"]["id"]
            async with api.services.sessions() as session:
                await session.exec(
                    update(DinerOrder)
                    .where(DinerOrder.id == first)  # type: ignore[arg-type]
                    .values(status=OrderStatus.FAILED, last_reason="given up")
                )
                await session.commit()
            second = (await api.order(shop)).json()["order"]["id"]

        assert second != first
