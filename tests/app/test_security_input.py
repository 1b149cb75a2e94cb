"""Input the reference trusted, where this service is deliberately stricter
(docs/http-api.md#differences-from-the-reference-service): SQL built from strings (item
1), prices from the client (item 2), unvalidated fields (item 12). One class per item;
each test fails on the reference's behaviour."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.utils.builders import Account, Api, fast_password_hashing  # noqa: F401
from tests.utils.users import bearer, sign_in

pytestmark = pytest.mark.usefixtures("fast_password_hashing")


class TestItem01SqlIsParameterised:
    """The reference built `UPDATE user` from strings."""

    async def test_quotes_in_name_and_email_are_stored_literally(self, api: Api) -> None:
        admin = await api.admin()
        diner = await api.register(name="plain")
        bystander = await api.register(name="bystander")
        name = "x', name='pwned', email='" + admin.email + "' -- x"
        email = "o'brien--@jwt.com"

        answer = await api.client.put(
            f"/api/user/{diner.id}", headers=diner.headers, json={"name": name, "email": email}
        )

        assert answer.status_code == 200, answer.text
        assert answer.json()["user"]["name"] == name
        assert answer.json()["user"]["email"] == email
        fresh = bearer(answer.json()["token"])
        assert (await api.client.get("/api/user/me", headers=fresh)).json()["name"] == name
        users = (await api.client.get("/api/user", headers=admin.headers)).json()["users"]
        by_id = {u["id"]: u for u in users}
        assert by_id[bystander.id]["name"] == "bystander"
        assert by_id[admin.id]["email"] == admin.email
        assert (await sign_in(api, email)).status_code == 200

    async def test_quotes_in_a_sign_in_sign_nobody_in(self, api: Api) -> None:
        await api.register()

        for email in ("' OR '1'='1", "x@jwt.com' OR 1=1 -- "):
            answer = await sign_in(api, email, "' OR '1'='1")

            assert answer.status_code == 404, email

    async def test_name_filters_match_literally(self, api: Api) -> None:
        admin = await api.admin()
        await api.register(name="100% pepperoni")
        await api.register(name="plain_cheese")
        await api.franchise(admin, name="50% off")
        await api.franchise(admin, name="o'brien's")

        async def users(pattern: str) -> list[str]:
            answer = await api.client.get(
                "/api/user", params={"name": pattern}, headers=admin.headers
            )
            assert answer.status_code == 200, answer.text
            return [u["name"] for u in answer.json()["users"]]

        async def franchises(pattern: str) -> list[str]:
            answer = await api.client.get("/api/franchise", params={"name": pattern})
            assert answer.status_code == 200, answer.text
            return [f["name"] for f in answer.json()["franchises"]]

        assert await users("' OR '1'='1") == []
        assert await users("x' OR name LIKE '%") == []
        assert await users("*%*") == ["100% pepperoni"]
        assert await users("plain_*") == ["plain_cheese"]
        assert await users("plain*") == ["plain_cheese"]
        assert await users("%") == []
        assert await franchises("' OR 1=1 -- ") == []
        assert await franchises("*%*") == ["50% off"]
        assert await franchises("o'brien*") == ["o'brien's"]


class TestItem02PricesComeFromTheMenu:
    """The reference trusted the client's price."""

    async def test_a_price_of_zero_is_ignored_everywhere(
        self, api: Api, factory: httpx.Client
    ) -> None:
        shop = await api.shop()
        veggie = shop.menu[0]

        answer = await api.client.post(
            "/api/order",
            headers=shop.diner.headers,
            json={
                "franchiseId": shop.franchise["id"],
                "storeId": shop.store["id"],
                "items": [{"menuId": veggie["id"], "description": "free pizza", "price": 0}],
            },
        )

        assert answer.status_code == 200, answer.text
        assert answer.json()["order"]["items"][0]["price"] == 0.0038
        assert answer.json()["order"]["items"][0]["description"] == "Veggie"
        made = factory.post("/api/order/verify", json={"jwt": answer.json()["jwt"]}).json()
        assert made["payload"]["order"]["items"][0]["price"] == 0.0038
        listed = await api.client.get("/api/franchise", headers=shop.admin.headers)
        assert listed.json()["franchises"][0]["stores"][0]["totalRevenue"] == 0.0038

    async def test_a_missing_price_is_no_problem(self, api: Api) -> None:
        shop = await api.shop()

        answer = await api.client.post(
            "/api/order",
            headers=shop.diner.headers,
            json={
                "franchiseId": shop.franchise["id"],
                "storeId": shop.store["id"],
                "items": [{"menuId": shop.menu[1]["id"]}],
            },
        )

        assert answer.status_code == 200, answer.text
        assert answer.json()["order"]["items"][0]["price"] == 0.0042


async def expect_400(
    api: Api,
    method: str,
    path: str,
    field: str,
    account: Account | None = None,
    **kwargs: Any,
) -> None:
    headers = {**(account.headers if account else {}), **kwargs.pop("headers", {})}
    answer = await api.client.request(method, path, headers=headers, **kwargs)
    assert answer.status_code == 400, (path, kwargs, answer.text)
    message = answer.json()["message"]
    assert message.split(":")[0] == field, (path, kwargs, message)


class TestItem12InputIsValidated:
    _expect_400 = staticmethod(expect_400)

    async def test_registration(self, api: Api) -> None:
        good = {"name": "n", "email": "n@jwt.com", "password": "pw"}
        for field, value in [
            ("email", "not an email"),
            ("email", "a@b"),
            ("email", ""),
            ("email", 7),
            ("email", "x@pizza.test"),
            ("email", "n\x00@jwt.com"),
            ("name", ""),
            ("name", "   "),
            ("name", "n" * 101),
            ("name", None),
            ("name", "a\x00b"),
            ("password", ""),
            ("password", "   "),
            ("password", "p" * 129),
        ]:
            await self._expect_400(api, "POST", "/api/auth", field, json={**good, field: value})

        assert (await api.client.post("/api/auth", json=good)).status_code == 200

    async def test_text_the_database_cannot_store_is_a_400_not_a_crash(self, api: Api) -> None:
        # NUL is legal JSON but not PostgreSQL text; a lone surrogate is not even UTF-8.
        admin = await api.admin()
        for field, raw in [
            ("name", b'{"name": "\\ud800", "email": "s@jwt.com", "password": "pw"}'),
            ("password", b'{"name": "n", "email": "s@jwt.com", "password": "\\udfff"}'),
        ]:
            await self._expect_400(
                api,
                "POST",
                "/api/auth",
                field,
                content=raw,
                headers={"Content-Type": "application/json"},
            )
        await self._expect_400(
            api, "PUT", "/api/auth", "email", json={"email": "a\x00@jwt.com", "password": "x"}
        )
        await self._expect_400(
            api,
            "PUT",
            "/api/auth",
            "password",
            content=b'{"email": "a@jwt.com", "password": "\\ud800"}',
            headers={"Content-Type": "application/json"},
        )
        for path in ("/api/user?name=a%00", "/api/franchise?name=%00*"):
            await self._expect_400(api, "GET", path, "name", admin)
        await self._expect_400(
            api,
            "PUT",
            f"/api/user/{admin.id}",
            "name",
            admin,
            content=b'{"name": "\\ud800"}',
            headers={"Content-Type": "application/json"},
        )
        assert (await api.client.get("/api/user/me", headers=admin.headers)).is_success

    async def test_user_updates(self, api: Api) -> None:
        diner = await api.register()
        path = f"/api/user/{diner.id}"
        for field, value in [
            ("email", "nope"),
            ("name", " "),
            ("password", "  "),
            ("password", ""),
        ]:
            await self._expect_400(api, "PUT", path, field, diner, json={field: value})

    async def test_prices_are_positive(self, api: Api) -> None:
        admin = await api.admin()
        item = {"title": "t", "description": "d", "image": "i.png"}
        for price in (0, -0.0001, -5, "abc", "NaN", "1", True, 1e300, 0.000000001):
            await self._expect_400(
                api, "PUT", "/api/order/menu", "price", admin, json={**item, "price": price}
            )
        # BTC has eight decimals: finer prices are rounded to them.
        menu = await api.client.put(
            "/api/order/menu", headers=admin.headers, json={**item, "price": 0.123456789}
        )
        assert [m["price"] for m in menu.json()] == [0.12345679]

    async def test_pages_and_limits_are_bounded_integers(self, api: Api) -> None:
        admin = await api.admin()
        for path in ("/api/franchise", "/api/user"):
            for query, field in [
                ("page=-1", "page"),
                ("page=abc", "page"),
                ("page=1.5", "page"),
                ("limit=100000", "limit"),
                ("limit=abc", "limit"),
                ("limit=0", "limit"),
                ("limit=-3", "limit"),
                ("name=" + "n" * 101, "name"),
            ]:
                await self._expect_400(api, "GET", f"{path}?{query}", field, admin)
        for query in ("page=0", "page=-1", "page=abc", "page=100001"):
            await self._expect_400(api, "GET", f"/api/order?{query}", "page", admin)

    async def test_orders(self, api: Api) -> None:
        shop = await api.shop()
        good: dict[str, Any] = {
            "franchiseId": shop.franchise["id"],
            "storeId": shop.store["id"],
            "items": [{"menuId": shop.menu[0]["id"]}],
        }
        for field, body in [
            ("franchiseId", {**good, "franchiseId": "abc"}),
            ("storeId", {**good, "storeId": -1}),
            ("storeId", {**good, "storeId": 2**40}),
            ("items", {**good, "items": "all of them"}),
            ("items.0.menuId", {**good, "items": [{"menuId": "x"}]}),
            ("items.0", {**good, "items": [7]}),
            # Ids are whole numbers, or their plain decimal digits: not booleans, not "01".
            ("storeId", {**good, "storeId": True}),
            ("storeId", {**good, "storeId": "01"}),
            ("storeId", {**good, "storeId": " 1"}),
            ("storeId", {**good, "storeId": "+1"}),
            ("storeId", {**good, "storeId": 1.5}),
        ]:
            await self._expect_400(api, "POST", "/api/order", field, shop.diner, json=body)
        history = await api.client.get("/api/order", headers=shop.diner.headers)
        assert history.json()["orders"] == []

    async def test_franchises_and_stores(self, api: Api) -> None:
        admin = await api.admin()
        franchise = await api.franchise(admin)
        for field, body in [
            ("name", {"name": ""}),
            ("name", {"name": "x" * 101}),
            ("name", {"name": "a\x00b"}),
            ("admins", {"name": "ok", "admins": "me"}),
        ]:
            await self._expect_400(api, "POST", "/api/franchise", field, admin, json=body)
        await self._expect_400(
            api,
            "POST",
            f"/api/franchise/{franchise['id']}/store",
            "name",
            admin,
            json={"name": "  "},
        )


class TestItem18EmailsAndNamesAreReadAsPeopleSeeThem:
    """The reference compared emails byte for byte and stored any name."""

    async def test_an_email_signs_in_however_its_accents_were_typed(self, api: Api) -> None:
        decomposed = "Re\u0301sume\u0301@jwt.com"  # e + COMBINING ACUTE ACCENT
        composed = "r\u00e9sum\u00e9@jwt.com"
        diner = await api.register(email=decomposed)

        assert diner.email == decomposed
        me = await api.client.get("/api/user/me", headers=diner.headers)
        assert me.json()["email"] == composed  # stored in one normal form (NFC), lower case
        for typed in (decomposed, composed, composed.upper()):
            assert (await sign_in(api, typed)).status_code == 200, typed
        again = await api.client.post(
            "/api/auth", json={"name": "twin", "email": composed, "password": "pw"}
        )
        assert again.status_code == 409

    async def test_names_refuse_control_characters_and_invisible_text(self, api: Api) -> None:
        admin = await api.admin()
        franchise = await api.franchise(admin)
        bad_names = [
            "\x1b[31mred\x1b[0m",  # an ANSI escape: a terminal reading the log obeys it
            "bell\x07",
            "two\nlines",
            "tab\there",
            "c1\x85control",
            "\u200b",  # a lone zero-width space
            "\u200b\u200d\ufeff",
            " \u2060 ",
            "\u3164",  # a Hangul filler: a letter that shows nothing
        ]
        for name in bad_names:
            await expect_400(
                api,
                "POST",
                "/api/auth",
                "name",
                json={"name": name, "email": "n@jwt.com", "password": "pw"},
            )
            await expect_400(
                api, "PUT", f"/api/user/{admin.id}", "name", admin, json={"name": name}
            )
            await expect_400(api, "POST", "/api/franchise", "name", admin, json={"name": name})
            await expect_400(
                api,
                "POST",
                f"/api/franchise/{franchise['id']}/store",
                "name",
                admin,
                json={"name": name},
            )
            item = {"title": name, "description": "d", "image": "i.png", "price": 1}
            await expect_400(api, "PUT", "/api/order/menu", "title", admin, json=item)
        # Letters of any script, emoji and their joiners still make a name.
        for name in ("Zoë", "Łukasz Nowak", "李小龍", "👩‍👩‍👧 family", "ﻣﺤﻤﺪ"):
            answer = await api.client.put(
                f"/api/user/{admin.id}", headers=admin.headers, json={"name": name}
            )
            assert answer.status_code == 200, (name, answer.text)
