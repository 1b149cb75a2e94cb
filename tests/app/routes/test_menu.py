"""The menu (docs/http-api.md#orders: GET and PUT /api/order/menu)."""

from __future__ import annotations

import pytest

from tests.utils.builders import Api, fast_password_hashing  # noqa: F401

pytestmark = pytest.mark.usefixtures("fast_password_hashing")


class TestMenu:
    async def test_is_public_and_empty_on_a_fresh_database(self, api: Api) -> None:
        answer = await api.client.get("/api/order/menu")

        assert answer.status_code == 200
        assert answer.json() == []

    async def test_an_admin_adds_an_item_and_gets_the_whole_menu(self, api: Api) -> None:
        admin = await api.admin()
        veggie = await api.menu_item(admin, "Veggie", 0.0038)

        answer = await api.client.put(
            "/api/order/menu",
            headers=admin.headers,
            json={
                "title": "Student",
                "description": "No topping, no sauce, just carbs",
                "image": "pizza9.png",
                "price": 0.0001,
            },
        )

        assert answer.status_code == 200, answer.text
        assert answer.json() == [
            veggie,
            {
                "id": answer.json()[1]["id"],
                "title": "Student",
                "image": "pizza9.png",
                "price": 0.0001,
                "description": "No topping, no sauce, just carbs",
            },
        ]
        assert veggie["price"] == 0.0038
        assert (await api.client.get("/api/order/menu")).json() == answer.json()

    async def test_a_diner_or_a_stranger_cannot_add(self, api: Api) -> None:
        diner = await api.register()
        item = {"title": "Free", "description": "d", "image": "i.png", "price": 1}

        refused = await api.client.put("/api/order/menu", headers=diner.headers, json=item)
        anonymous = await api.client.put("/api/order/menu", json=item)

        assert refused.status_code == 403
        assert refused.json() == {"message": "unauthorized"}
        assert anonymous.status_code == 401
        assert (await api.client.get("/api/order/menu")).json() == []

    async def test_a_bad_item_is_a_400_naming_the_field(self, api: Api) -> None:
        admin = await api.admin()
        good = {"title": "T", "description": "D", "image": "i.png", "price": 0.5}
        for field, value in [
            ("price", 0),
            ("price", -1),
            ("price", "abc"),
            ("price", None),
            ("title", "   "),
            ("title", "x" * 101),
            ("description", ""),
        ]:
            answer = await api.client.put(
                "/api/order/menu", headers=admin.headers, json={**good, field: value}
            )

            assert answer.status_code == 400, (field, value, answer.text)
            assert answer.json()["message"].startswith(f"{field}:"), answer.text
        assert (await api.client.get("/api/order/menu")).json() == []
