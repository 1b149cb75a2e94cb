"""A pending order as the client asked for it (RFC 7240), and "Pay" pressed again
(docs/http-api.md#post-apiorder)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import update

from app.models import DinerOrder, OrderStatus, utcnow
from app.orders.placement import PENDING_TWIN_WINDOW, prefers_async, retry_after_s
from tests.conftest import make_settings, running_api
from tests.telemetry.conftest import value
from tests.utils.builders import Api, Shop
from tests.utils.orders import distinct, status
from tests.utils.simulator import end_chaos
from tests.utils.waiting import eventually

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


class TestRespondAsyncWhileTheFactoryIsKnownToBeSlow:
    """A client that asked for respond-async does not wait FACTORY_TIMEOUT_S for a factory
    the service already knows is slow: it is answered 202 before the factory answers, and
    the call goes on in the background (the simulator's throttle answers in 0.5 s, well
    within this test's FACTORY_TIMEOUT_S of 10 s)."""

    @pytest.fixture
    async def patient(
        self, database_url: str, factory_url: str, factory: httpx.Client
    ) -> AsyncIterator[Api]:
        settings = make_settings(
            database_url, factory_url, factory_timeout_s=10.0, factory_call_max_s=10.0
        )
        async with running_api(settings) as api:
            yield api

    async def test_a_throttle_on_the_status_page_answers_202_before_the_factory(
        self, patient: Api, factory: httpx.Client
    ) -> None:
        api = patient
        shop = await api.shop()
        factory.put("/api/vendor/chaos/throttle").raise_for_status()
        await api.services.ops.probe()  # the vendor record, as read after a failed call
        chaos = (await status(api, shop))["chaos"]
        assert (chaos["type"], chaos["phase"]) == ("throttle", "running")
        before = pizzas_made(factory)

        answer = await api.order(shop, headers=ASYNC)
        assert answer.status_code == 202, answer.text  # not the pizza, 0.5 s later
        order_id = answer.json()["order"]["id"]
        assert answer.headers["location"] == f"/api/order/{order_id}"
        # The call went on: the pizza is made, once, and the order has it.
        made = await made_unseen(api, shop, order_id)
        assert made["jwt"]
        assert pizzas_made(factory) == before + 1
        # A client that did not ask for respond-async still waits for its pizza.
        plain = await api.order(shop, headers=distinct())
        assert plain.status_code == 200, plain.text

    async def test_after_a_call_that_timed_out_until_a_call_is_fast_again(
        self, patient: Api, factory: httpx.Client
    ) -> None:
        api = patient
        shop = await api.shop()
        api.services.ops.observe_timeout("no answer within FACTORY_TIMEOUT_S")  # a call's

        answer = await api.order(shop, headers=ASYNC)
        assert answer.status_code == 202, answer.text  # the factory is healthy by now
        order_id = answer.json()["order"]["id"]
        await made_unseen(api, shop, order_id)
        # That background call answered at once: the factory is no longer known as slow.
        again = await api.order(shop, headers={**ASYNC, **distinct()})
        assert again.status_code == 200, again.text


async def _orders_of(api: Api, headers: dict[str, str]) -> list[dict[str, object]]:
    orders: list[dict[str, object]] = (await api.client.get("/api/order", headers=headers)).json()[
        "orders"
    ]
    return orders


async def placed_before_the_window(api: Api, order_id: int) -> None:
    """As if the order had been placed a moment more than PENDING_TWIN_WINDOW ago."""
    async with api.services.sessions() as session:
        await session.exec(
            update(DinerOrder)
            .where(DinerOrder.id == order_id)  # type: ignore[arg-type]
            .values(date=utcnow() - PENDING_TWIN_WINDOW - timedelta(seconds=1))
        )
        await session.commit()


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
        await placed_before_the_window(api, first)

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


def pizzas_made(factory: httpx.Client) -> int:
    """Every pizza the (shared) simulator has made so far."""
    return sum(factory.get("/api/sim/stats").json()["pizzas"].values())


async def made_unseen(api: Api, shop: Shop, order_id: int) -> dict[str, Any]:
    """The order once the worker has made it, read as an operator: its customer has not
    been shown the pizza."""

    async def made() -> dict[str, Any] | None:
        answer = await api.client.get(f"/api/order/{order_id}", headers=shop.admin.headers)
        body: dict[str, Any] = answer.json()
        return body if body["status"] == "fulfilled" else None

    found = await eventually(made)
    assert found is not None
    return found


class TestPressingPayAgainAfterThePendingOrderWasMade:
    """The customer was answered "pending" (the 503 banner), the order was made meanwhile,
    and the banner still shows: "Pay" pressed again is that order, with its pizza."""

    @pytest.fixture
    async def told_pending(
        self, database_url: str, factory_url: str, factory: httpx.Client
    ) -> AsyncIterator[tuple[Api, Shop, int]]:
        """Order 1 answered 503 during chaos, then made by the worker once it is over
        (the worker's retries meanwhile never open the breaker)."""
        settings = make_settings(
            database_url, factory_url, factory_auto_remediate=False, breaker_fail_max=1000
        )
        async with running_api(settings) as api:
            shop = await api.shop()
            factory.put("/api/vendor/chaos/fail").raise_for_status()
            first = await api.order(shop)
            assert first.status_code == 503, first.text
            end_chaos(factory)
            order_id = first.json()["order"]["id"]
            await made_unseen(api, shop, order_id)
            yield api, shop, order_id

    async def test_answers_with_that_orders_pizza_and_orders_nothing(
        self, told_pending: tuple[Api, Shop, int], factory: httpx.Client
    ) -> None:
        api, shop, order_id = told_pending
        made = await made_unseen(api, shop, order_id)
        pizzas = pizzas_made(factory)
        again = await api.order(shop)

        assert again.status_code == 200, again.text
        assert again.json()["order"]["id"] == order_id
        assert again.json()["order"]["status"] == "fulfilled"
        assert again.json()["jwt"] == made["jwt"]
        assert pizzas_made(factory) == pizzas  # no second pizza, no second charge
        assert [o["id"] for o in await _orders_of(api, shop.diner.headers)] == [order_id]
        page = api.services.telemetry.render_prometheus()[0].decode()
        assert value(page, "pizza_orders_twins_total", status="fulfilled") == 1

    async def test_once_shown_the_pizza_a_further_press_is_a_new_order(
        self, told_pending: tuple[Api, Shop, int]
    ) -> None:
        api, shop, order_id = told_pending
        shown = await api.order(shop)
        assert (shown.status_code, shown.json()["order"]["id"]) == (200, order_id)

        new = await api.order(shop)
        assert new.status_code == 200, new.text
        assert new.json()["order"]["id"] != order_id
        assert len(await _orders_of(api, shop.diner.headers)) == 2

    async def test_reading_it_with_its_pizza_counts_as_shown(
        self, told_pending: tuple[Api, Shop, int]
    ) -> None:
        api, shop, order_id = told_pending
        read = await api.client.get(f"/api/order/{order_id}", headers=shop.diner.headers)
        assert read.json()["jwt"]

        new = await api.order(shop)
        assert new.status_code == 200, new.text
        assert new.json()["order"]["id"] != order_id

    async def test_presses_at_once_are_all_answered_with_the_one_pizza(
        self, told_pending: tuple[Api, Shop, int], factory: httpx.Client
    ) -> None:
        api, shop, order_id = told_pending
        pizzas = pizzas_made(factory)
        asked = [{}, ASYNC, {}, ASYNC]  # a made pizza is 200 whatever the Prefer
        answers = await asyncio.gather(*(api.order(shop, headers=h) for h in asked))

        assert [a.status_code for a in answers] == [200] * 4, [a.text for a in answers]
        assert {a.json()["order"]["id"] for a in answers} == {order_id}
        assert len({a.json()["jwt"] for a in answers}) == 1
        assert pizzas_made(factory) == pizzas
        assert len(await _orders_of(api, shop.diner.headers)) == 1

    async def test_a_made_twin_older_than_the_window_does_not_block(
        self, told_pending: tuple[Api, Shop, int]
    ) -> None:
        api, shop, order_id = told_pending
        await placed_before_the_window(api, order_id)

        new = await api.order(shop)
        assert new.status_code == 200, new.text
        assert new.json()["order"]["id"] != order_id


class TestAnOrderMadeAsTheWaitEnds:
    async def test_is_answered_with_its_pizza_not_pending(
        self,
        database_url: str,
        factory_url: str,
        factory: httpx.Client,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        """The pizza is stored, but the bookkeeping after it (link, incident, webhook) is
        still running when the customer's wait ends: the customer gets the pizza. Told
        "pending" instead, they would press "Pay" again for an order already made."""
        settings = make_settings(database_url, factory_url, factory_timeout_s=0.2)
        async with running_api(settings) as api:
            shop = await api.shop()
            ops = api.services.ops
            observe = ops.observe

            async def slow_bookkeeping(*args: Any, **kwargs: Any) -> None:
                await asyncio.sleep(1.0)  # past the customer's wait of 0.2 s
                await observe(*args, **kwargs)

            monkeypatch.setattr(ops, "observe", slow_bookkeeping)
            answer = await api.order(shop)

        assert answer.status_code == 200, answer.text
        assert answer.json()["order"]["status"] == "fulfilled"
        assert answer.json()["jwt"]


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
