"""Orders (docs/http-api.md#orders): placing one, the history, one order, Idempotency-Key."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlmodel.ext.asyncio.session import AsyncSession

from app.sql.rows import StoreUnavailable
from tests.conftest import make_settings, running_api
from tests.utils.builders import Api, Shop, fast_password_hashing  # noqa: F401

pytestmark = pytest.mark.usefixtures("fast_password_hashing")


def order_body(shop: Shop, items: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    return {
        "franchiseId": shop.franchise["id"],
        "storeId": shop.store["id"],
        "items": items
        if items is not None
        else [{"menuId": shop.menu[0]["id"], "description": "Veggie", "price": 0.0038}],
    }


class TestPlaceOrder:
    async def test_a_made_pizza_is_a_200_with_a_jwt_the_factory_verifies(
        self, api: Api, factory: httpx.Client
    ) -> None:
        shop = await api.shop()
        veggie, pepperoni = shop.menu

        answer = await api.order(shop, menu_ids=[veggie["id"], pepperoni["id"]])

        assert answer.status_code == 200, answer.text
        body = answer.json()
        order = body["order"]
        assert order == {
            "id": order["id"],
            "franchiseId": shop.franchise["id"],
            "storeId": shop.store["id"],
            "date": order["date"],
            "items": [
                {
                    "id": order["items"][0]["id"],
                    "menuId": veggie["id"],
                    "description": "Veggie",
                    "price": 0.0038,
                },
                {
                    "id": order["items"][1]["id"],
                    "menuId": pepperoni["id"],
                    "description": "Pepperoni",
                    "price": 0.0042,
                },
            ],
            "status": "fulfilled",
            "jwt": body["jwt"],
        }
        assert set(body) == {"order", "jwt"}
        verified = factory.post("/api/order/verify", json={"jwt": body["jwt"]})
        assert verified.status_code == 200, verified.text
        assert verified.json()["message"] == "valid"
        assert verified.json()["payload"]["order"]["id"] == order["id"]

    async def test_numeric_string_ids_are_accepted(self, api: Api) -> None:
        shop = await api.shop()

        answer = await api.client.post(
            "/api/order",
            headers=shop.diner.headers,
            json={
                "franchiseId": str(shop.franchise["id"]),
                "storeId": str(shop.store["id"]),
                "items": [
                    {"menuId": str(shop.menu[0]["id"]), "description": "Veggie", "price": 0.0038}
                ],
            },
        )

        assert answer.status_code == 200, answer.text
        assert answer.json()["order"]["storeId"] == shop.store["id"]

    async def test_prices_and_descriptions_come_from_the_menu(self, api: Api) -> None:
        shop = await api.shop()

        answer = await api.client.post(
            "/api/order",
            headers=shop.diner.headers,
            json=order_body(
                shop, [{"menuId": shop.menu[1]["id"], "description": "Free", "price": 0}]
            ),
        )

        assert answer.status_code == 200, answer.text
        [item] = answer.json()["order"]["items"]
        assert (item["description"], item["price"]) == ("Pepperoni", 0.0042)

    async def test_the_number_of_items_is_1_to_20(self, api: Api) -> None:
        shop = await api.shop()
        one = {"menuId": shop.menu[0]["id"], "description": "Veggie", "price": 0.0038}

        for count in (0, 21):
            answer = await api.client.post(
                "/api/order", headers=shop.diner.headers, json=order_body(shop, [one] * count)
            )

            assert answer.status_code == 400, answer.text
            assert answer.json()["message"].startswith("items:"), answer.text
        twenty = await api.client.post(
            "/api/order", headers=shop.diner.headers, json=order_body(shop, [one] * 20)
        )
        assert twenty.status_code == 200, twenty.text
        assert len(twenty.json()["order"]["items"]) == 20
        history = await api.client.get("/api/order", headers=shop.diner.headers)
        assert len(history.json()["orders"]) == 1

    async def test_an_unknown_menu_item_is_a_400_naming_it(self, api: Api) -> None:
        shop = await api.shop()
        known = {"menuId": shop.menu[0]["id"]}

        answer = await api.client.post(
            "/api/order",
            headers=shop.diner.headers,
            json=order_body(shop, [known, {"menuId": 9999, "description": "x", "price": 1}]),
        )

        assert answer.status_code == 400
        assert answer.json()["message"].startswith("items.1.menuId:"), answer.text

    async def test_a_store_of_another_franchise_is_a_400_naming_the_store(self, api: Api) -> None:
        shop = await api.shop()
        other = await api.franchise(shop.admin)
        elsewhere = await api.store(shop.admin, other["id"])

        for store_id in (elsewhere["id"], 424242):
            answer = await api.client.post(
                "/api/order",
                headers=shop.diner.headers,
                json={**order_body(shop), "storeId": store_id},
            )

            assert answer.status_code == 400
            assert answer.json()["message"].startswith("storeId:"), answer.text
        history = await api.client.get("/api/order", headers=shop.diner.headers)
        assert history.json()["orders"] == []

    async def test_needs_a_token(self, api: Api) -> None:
        shop = await api.shop()

        answer = await api.client.post("/api/order", json=order_body(shop))

        assert answer.status_code == 401


class TestAPizzaTheFactoryCannotMakeNow:
    async def test_is_a_503_the_order_is_kept_and_its_jwt_is_null(
        self, database_url: str, factory_url: str, factory: httpx.Client
    ) -> None:
        # No automatic remediation: the order stays pending while the test looks.
        settings = make_settings(database_url, factory_url, factory_auto_remediate=False)
        async with running_api(settings) as api:
            shop = await api.shop()
            factory.put("/api/vendor/chaos/fail").raise_for_status()

            answer = await api.order(shop)
            history = await api.client.get("/api/order", headers=shop.diner.headers)

        # No `Prefer: respond-async`: a 2xx would read as "made" to the front end.
        assert answer.status_code == 503, answer.text
        body = answer.json()
        assert set(body) == {"order", "jwt", "message"}
        assert body["jwt"] is None
        assert f"order {body['order']['id']} is saved" in body["message"]
        assert (body["order"]["status"], body["order"]["jwt"]) == ("pending", None)
        assert history.json()["orders"] == [body["order"]]


class TestHistory:
    async def test_is_empty_at_first(self, api: Api) -> None:
        diner = await api.register()

        answer = await api.client.get("/api/order", headers=diner.headers)

        assert answer.status_code == 200
        assert answer.json() == {"dinerId": diner.id, "orders": [], "page": 1, "more": False}

    async def test_pages_are_1_based_newest_first_and_own_orders_only(self, api: Api) -> None:
        shop = await api.shop()
        other = await api.register()
        mine = []
        for _ in range(11):
            answer = await api.order(shop)
            assert answer.status_code == 200, answer.text
            mine.append(answer.json()["order"])
        assert (await api.order(shop, diner=other)).status_code == 200

        first = (await api.client.get("/api/order?page=1", headers=shop.diner.headers)).json()
        second = (await api.client.get("/api/order?page=2", headers=shop.diner.headers)).json()

        newest_first = list(reversed(mine))
        assert first["dinerId"] == shop.diner.id
        assert (first["page"], first["more"]) == (1, True)
        assert (second["page"], second["more"]) == (2, False)
        assert first["orders"] == newest_first[:10]
        assert second["orders"] == newest_first[10:]
        assert all(o["jwt"] and o["status"] == "fulfilled" for o in first["orders"])
        theirs = (await api.client.get("/api/order", headers=other.headers)).json()
        assert len(theirs["orders"]) == 1

    async def test_needs_a_token(self, api: Api) -> None:
        assert (await api.client.get("/api/order")).status_code == 401


class TestOneOrder:
    async def test_its_diner_and_an_admin_see_it_others_get_404(self, api: Api) -> None:
        shop = await api.shop()
        placed = (await api.order(shop)).json()["order"]
        stranger = await api.register()

        own = await api.client.get(f"/api/order/{placed['id']}", headers=shop.diner.headers)
        admin = await api.client.get(f"/api/order/{placed['id']}", headers=shop.admin.headers)
        other = await api.client.get(f"/api/order/{placed['id']}", headers=stranger.headers)
        missing = await api.client.get("/api/order/424242", headers=shop.diner.headers)
        anonymous = await api.client.get(f"/api/order/{placed['id']}")

        assert own.status_code == admin.status_code == 200
        assert own.json() == admin.json() == placed
        assert other.status_code == missing.status_code == 404
        assert other.json() == missing.json() == {"message": "unknown order"}
        assert anonymous.status_code == 401


class TestIdempotencyKey:
    async def test_the_same_key_and_body_answer_the_first_order(self, api: Api) -> None:
        shop = await api.shop()
        key = {"Idempotency-Key": "pay-click-1"}

        first = await api.order(shop, headers=key)
        retry = await api.order(shop, headers=key)

        assert first.status_code == retry.status_code == 200
        assert retry.json() == first.json()
        history = await api.client.get("/api/order", headers=shop.diner.headers)
        assert [o["id"] for o in history.json()["orders"]] == [first.json()["order"]["id"]]

    async def test_a_key_in_flight_is_answered_as_its_first_request(self, api: Api) -> None:
        """A request whose key is still in flight waits for the first one's answer,
        never a 503 blaming the factory while the factory is making that very order."""
        shop = await api.shop()
        key = {"Idempotency-Key": "pay-pressed-20-times"}

        answers = await asyncio.gather(*(api.order(shop, headers=key) for _ in range(20)))

        assert [a.status_code for a in answers] == [200] * 20, [a.text for a in answers]
        assert len({(a.json()["order"]["id"], a.json()["jwt"]) for a in answers}) == 1
        history = await api.client.get("/api/order", headers=shop.diner.headers)
        assert len(history.json()["orders"]) == 1

    async def test_the_same_key_with_another_body_is_a_409(self, api: Api) -> None:
        shop = await api.shop()
        key = {"Idempotency-Key": "pay-click-2"}
        first = await api.order(shop, headers=key)

        other = await api.order(shop, headers=key, menu_ids=[shop.menu[1]["id"]])

        assert first.status_code == 200
        assert other.status_code == 409
        assert "Idempotency-Key" in other.json()["message"]
        history = await api.client.get("/api/order", headers=shop.diner.headers)
        assert len(history.json()["orders"]) == 1

    async def test_the_same_key_with_an_unknown_item_is_still_the_409(self, api: Api) -> None:
        """The key's conflict comes first: the client reused a key, whatever else is wrong."""
        shop = await api.shop()
        key = {"Idempotency-Key": "pay-click-3"}
        assert (await api.order(shop, headers=key)).status_code == 200

        other = await api.order(shop, headers=key, menu_ids=[999_999])

        assert other.status_code == 409
        assert "Idempotency-Key" in other.json()["message"]
        # Without a key the same body is an unknown item, a 400.
        assert (await api.order(shop, menu_ids=[999_999])).status_code == 400

    async def test_keys_belong_to_one_user_and_no_key_orders_again(self, api: Api) -> None:
        shop = await api.shop()
        other = await api.register()
        key = {"Idempotency-Key": "shared-key"}

        mine = await api.order(shop, headers=key)
        theirs = await api.order(shop, diner=other, headers=key)
        again = [await api.order(shop), await api.order(shop)]

        assert mine.status_code == theirs.status_code == 200
        assert mine.json()["order"]["id"] != theirs.json()["order"]["id"]
        assert again[0].json()["order"]["id"] != again[1].json()["order"]["id"]
        history = await api.client.get("/api/order", headers=shop.diner.headers)
        assert len(history.json()["orders"]) == 3

    async def test_a_key_is_1_to_255_characters(self, api: Api) -> None:
        shop = await api.shop()

        for key in ("", "k" * 256):
            answer = await api.order(shop, headers={"Idempotency-Key": key})

            assert answer.status_code == 400
            assert answer.json()["message"].startswith("Idempotency-Key:"), answer.text
        assert (await api.order(shop, headers={"Idempotency-Key": "k" * 255})).status_code == 200


class TestWhileTheDatabaseIsAway:
    """A PostgreSQL restart under traffic (found by pizza soak): a clear 503 with
    Retry-After, never a 500, and the order is not stored."""

    async def test_orders_menu_and_history_answer_503_with_retry_after(
        self, api: Api, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        shop = await api.shop()
        store = api.services.store

        async def refused(*_args: Any, **_kwargs: Any) -> Any:
            raise StoreUnavailable("ConnectionRefusedError: [Errno 111] Connection refused")

        monkeypatch.setattr(store, "insert_order", refused)
        monkeypatch.setattr(store, "menu", refused)
        answers = [await api.order(shop)]
        monkeypatch.setattr(store, "principal", refused)  # the token's check reads it too
        answers += [
            await api.order(shop),
            await api.client.get("/api/order/menu"),
            await api.client.get("/api/order", headers=shop.diner.headers),
        ]
        for answer in answers:
            assert answer.status_code == 503, answer.text
            assert int(answer.headers["retry-after"]) >= 1
            assert "database is unavailable" in answer.json()["message"]
            assert "Errno" not in answer.text
        monkeypatch.undo()
        history = await api.client.get("/api/order", headers=shop.diner.headers)
        assert history.json()["orders"] == []  # nothing half-written

    async def test_a_lost_database_connection_in_the_orm_is_a_503_and_a_bug_stays_a_500(
        self, api: Api, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        shop = await api.shop()

        def failing(error: Exception) -> Any:
            async def exec_(*_args: Any, **_kwargs: Any) -> Any:
                raise error

            return exec_

        lost = OperationalError("SELECT", {}, ConnectionRefusedError(111, "refused"))
        monkeypatch.setattr(AsyncSession, "exec", failing(lost))
        answer = await api.client.get("/api/franchise", headers=shop.admin.headers)
        assert answer.status_code == 503, answer.text
        assert int(answer.headers["retry-after"]) >= 1
        bug = IntegrityError("INSERT", {}, ValueError("duplicate"))
        monkeypatch.setattr(AsyncSession, "exec", failing(bug))
        answer = await api.client.get("/api/franchise", headers=shop.admin.headers)
        assert answer.status_code == 500
        assert answer.json()["message"] == f"internal error (error id {answer.json()['errorId']})"
