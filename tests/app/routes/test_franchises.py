"""Franchises and stores (docs/http-api.md#franchises-and-stores, and the public list)."""

from __future__ import annotations

import dataclasses

import httpx
import pytest

from app.models import Role, UserRole
from tests.conftest import make_settings, running_api
from tests.utils.builders import Api, fast_password_hashing  # noqa: F401

pytestmark = pytest.mark.usefixtures("fast_password_hashing")


class TestList:
    async def test_the_public_sees_names_and_stores_only(self, api: Api) -> None:
        admin = await api.admin()
        owner = await api.register()
        franchise = await api.franchise(admin, name="pizzaPocket", admins=[owner.email])
        store = await api.store(admin, franchise["id"], name="SLC")
        diner = await api.register()

        anonymous = await api.client.get("/api/franchise")
        signed_in = await api.client.get("/api/franchise", headers=diner.headers)

        expected = {
            "franchises": [
                {
                    "id": franchise["id"],
                    "name": "pizzaPocket",
                    "stores": [{"id": store["id"], "name": "SLC"}],
                }
            ],
            "more": False,
        }
        assert anonymous.status_code == signed_in.status_code == 200
        assert anonymous.json() == signed_in.json() == expected

    async def test_an_admin_also_sees_admins_and_exact_revenue(self, api: Api) -> None:
        shop = await api.shop()
        owner = await api.register(name="owner", email="owner@jwt.com")
        async with api.services.sessions() as session:
            session.add(
                UserRole(user_id=owner.id, role=Role.FRANCHISEE, object_id=shop.franchise["id"])
            )
            await session.commit()
        veggie, pepperoni = shop.menu
        for _ in range(3):
            assert (await api.order(shop, menu_ids=[veggie["id"]])).status_code == 200
        assert (await api.order(shop, menu_ids=[pepperoni["id"]])).status_code == 200
        # 0.1 + 0.2 in binary floats is 0.30000000000000004: money must be summed exactly.
        dimes = dataclasses.replace(shop, store=await api.store(shop.admin, shop.franchise["id"]))
        for price in (0.1, 0.2):
            item = await api.menu_item(shop.admin, f"costs {price}", price)
            assert (await api.order(dimes, menu_ids=[item["id"]])).status_code == 200

        answer = await api.client.get("/api/franchise", headers=shop.admin.headers)

        assert answer.status_code == 200
        [franchise] = answer.json()["franchises"]
        assert franchise == {
            "id": shop.franchise["id"],
            "name": shop.franchise["name"],
            "admins": [{"id": owner.id, "name": "owner", "email": "owner@jwt.com"}],
            "stores": [
                {"id": shop.store["id"], "name": shop.store["name"], "totalRevenue": 0.0156},
                {"id": dimes.store["id"], "name": dimes.store["name"], "totalRevenue": 0.3},
            ],
        }
        text = answer.text.replace(" ", "")
        assert '"totalRevenue":0.0156}' in text and '"totalRevenue":0.3}' in text

    async def test_revenue_counts_fulfilled_orders_only(
        self, database_url: str, factory_url: str, factory: httpx.Client
    ) -> None:
        # No automatic remediation: the order stays pending while the test looks.
        settings = make_settings(database_url, factory_url, factory_auto_remediate=False)
        async with running_api(settings) as api:
            shop = await api.shop()
            assert (await api.order(shop)).status_code == 200
            factory.put("/api/vendor/chaos/fail").raise_for_status()
            pending = await api.order(shop, menu_ids=[shop.menu[1]["id"]])
            assert pending.status_code == 503, pending.text
            empty = await api.store(shop.admin, shop.franchise["id"])

            answer = await api.client.get("/api/franchise", headers=shop.admin.headers)

        stores = answer.json()["franchises"][0]["stores"]
        revenue = {s["id"]: s["totalRevenue"] for s in stores}
        assert revenue == {shop.store["id"]: 0.0038, empty["id"]: 0}

    async def test_pages_are_0_based_with_more(self, api: Api) -> None:
        admin = await api.admin()
        made = [await api.franchise(admin, name=f"chain {i}") for i in range(3)]

        first = await api.client.get("/api/franchise?page=0&limit=2")
        second = await api.client.get("/api/franchise?page=1&limit=2")

        assert [f["id"] for f in first.json()["franchises"]] == [made[0]["id"], made[1]["id"]]
        assert first.json()["more"] is True
        assert [f["id"] for f in second.json()["franchises"]] == [made[2]["id"]]
        assert second.json()["more"] is False

    async def test_name_filter_with_wildcards(self, api: Api) -> None:
        admin = await api.admin()
        for name in ("Pizza Pocket", "pizzaPie", "Crusty"):
            await api.franchise(admin, name=name)

        async def names(pattern: str) -> list[str]:
            answer = await api.client.get("/api/franchise", params={"name": pattern})
            assert answer.status_code == 200, answer.text
            return sorted(f["name"] for f in answer.json()["franchises"])

        assert await names("*") == ["Crusty", "Pizza Pocket", "pizzaPie"]
        assert await names("pizza*") == ["Pizza Pocket", "pizzaPie"]
        assert await names("*pocket") == ["Pizza Pocket"]
        assert await names("Crusty") == ["Crusty"]
        assert await names("Crust") == []


class TestUserFranchises:
    async def test_a_franchisee_sees_its_franchises_with_admins_and_revenue(self, api: Api) -> None:
        admin = await api.admin()
        owner = await api.register(name="owner")
        mine = await api.franchise(admin, name="mine", admins=[owner.email])
        await api.franchise(admin, name="not mine")
        store = await api.store(owner, mine["id"], name="Provo")

        answer = await api.client.get(f"/api/franchise/{owner.id}", headers=owner.headers)
        as_admin = await api.client.get(f"/api/franchise/{owner.id}", headers=admin.headers)

        assert answer.status_code == as_admin.status_code == 200
        assert (
            answer.json()
            == as_admin.json()
            == [
                {
                    "id": mine["id"],
                    "name": "mine",
                    "admins": [{"id": owner.id, "name": "owner", "email": owner.email}],
                    "stores": [{"id": store["id"], "name": "Provo", "totalRevenue": 0}],
                }
            ]
        )

    async def test_a_diner_has_none_and_cannot_look_at_others(self, api: Api) -> None:
        admin = await api.admin()
        owner = await api.register()
        await api.franchise(admin, admins=[owner.email])
        diner = await api.register()

        own = await api.client.get(f"/api/franchise/{diner.id}", headers=diner.headers)
        other = await api.client.get(f"/api/franchise/{owner.id}", headers=diner.headers)
        anonymous = await api.client.get(f"/api/franchise/{owner.id}")

        assert own.status_code == 200
        assert own.json() == []
        assert other.status_code == 403
        assert anonymous.status_code == 401


class TestCreate:
    async def test_names_its_admins_who_become_franchisees(self, api: Api) -> None:
        admin = await api.admin()
        owner = await api.register(name="owner", email="owner@jwt.com")

        answer = await api.client.post(
            "/api/franchise",
            headers=admin.headers,
            json={"name": "pizzaPocket", "admins": [{"email": "OWNER@jwt.com"}]},
        )

        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert body == {
            "id": body["id"],
            "name": "pizzaPocket",
            "admins": [{"email": "owner@jwt.com", "id": owner.id, "name": "owner"}],
        }
        me = await api.client.get("/api/user/me", headers=owner.headers)
        assert {"role": "franchisee", "objectId": body["id"]} in me.json()["roles"]

    async def test_an_unknown_admin_email_is_a_404_and_nothing_is_made(self, api: Api) -> None:
        admin = await api.admin()

        answer = await api.client.post(
            "/api/franchise",
            headers=admin.headers,
            json={"name": "ghost town", "admins": [{"email": "ghost@jwt.com"}]},
        )

        assert answer.status_code == 404
        assert "ghost@jwt.com" in answer.json()["message"]
        assert (await api.client.get("/api/franchise")).json()["franchises"] == []

    async def test_a_taken_name_is_a_409(self, api: Api) -> None:
        admin = await api.admin()
        await api.franchise(admin, name="taken")

        answer = await api.client.post(
            "/api/franchise", headers=admin.headers, json={"name": "taken", "admins": []}
        )

        assert answer.status_code == 409
        assert answer.json() == {"message": "franchise name already exists"}

    async def test_is_for_admins_only(self, api: Api) -> None:
        diner = await api.register()
        body = {"name": "mine now", "admins": [{"email": diner.email}]}

        refused = await api.client.post("/api/franchise", headers=diner.headers, json=body)
        anonymous = await api.client.post("/api/franchise", json=body)

        assert refused.status_code == 403
        assert anonymous.status_code == 401
        assert (await api.client.get("/api/franchise")).json()["franchises"] == []

    async def test_a_blank_name_is_a_400(self, api: Api) -> None:
        admin = await api.admin()

        answer = await api.client.post(
            "/api/franchise", headers=admin.headers, json={"name": "  ", "admins": []}
        )

        assert answer.status_code == 400
        assert answer.json()["message"].startswith("name:")


class TestDelete:
    async def test_an_admin_deletes_it_and_its_stores(self, api: Api) -> None:
        admin = await api.admin()
        owner = await api.register()
        franchise = await api.franchise(admin, admins=[owner.email])
        await api.store(admin, franchise["id"])

        answer = await api.client.delete(f"/api/franchise/{franchise['id']}", headers=admin.headers)

        assert answer.status_code == 200
        assert answer.json() == {"message": "franchise deleted"}
        assert (await api.client.get("/api/franchise")).json()["franchises"] == []
        roles = (await api.client.get("/api/user/me", headers=owner.headers)).json()["roles"]
        assert roles == [{"role": "diner"}]

    async def test_an_unknown_franchise_is_a_404(self, api: Api) -> None:
        admin = await api.admin()

        answer = await api.client.delete("/api/franchise/424242", headers=admin.headers)

        assert answer.status_code == 404
        assert answer.json() == {"message": "unknown franchise"}


class TestStores:
    async def test_an_admin_or_the_franchise_s_admin_creates_and_deletes(self, api: Api) -> None:
        admin = await api.admin()
        owner = await api.register()
        franchise = await api.franchise(admin, admins=[owner.email])

        by_admin = await api.client.post(
            f"/api/franchise/{franchise['id']}/store",
            headers=admin.headers,
            json={"name": "SLC"},
        )
        by_owner = await api.client.post(
            f"/api/franchise/{franchise['id']}/store",
            headers=owner.headers,
            json={"name": "Provo"},
        )

        assert by_admin.status_code == by_owner.status_code == 200
        assert by_owner.json() == {
            "id": by_owner.json()["id"],
            "franchiseId": franchise["id"],
            "name": "Provo",
        }
        for store, who in ((by_admin.json(), owner), (by_owner.json(), admin)):
            answer = await api.client.delete(
                f"/api/franchise/{franchise['id']}/store/{store['id']}", headers=who.headers
            )
            assert answer.status_code == 200
            assert answer.json() == {"message": "store deleted"}
        listed = (await api.client.get("/api/franchise")).json()["franchises"]
        assert listed[0]["stores"] == []

    async def test_another_franchisee_or_a_diner_is_refused(self, api: Api) -> None:
        admin = await api.admin()
        owner = await api.register()
        rival = await api.register()
        diner = await api.register()
        franchise = await api.franchise(admin, admins=[owner.email])
        await api.franchise(admin, admins=[rival.email])
        store = await api.store(owner, franchise["id"])
        path = f"/api/franchise/{franchise['id']}/store"

        for who in (rival, diner):
            create = await api.client.post(path, headers=who.headers, json={"name": "mine"})
            remove = await api.client.delete(f"{path}/{store['id']}", headers=who.headers)
            assert create.status_code == remove.status_code == 403
            assert create.json() == remove.json() == {"message": "unauthorized"}
        assert (await api.client.post(path, json={"name": "x"})).status_code == 401
        assert (await api.client.delete(f"{path}/{store['id']}")).status_code == 401
        stores = (await api.client.get("/api/franchise")).json()["franchises"][0]["stores"]
        assert stores == [{"id": store["id"], "name": store["name"]}]

    async def test_unknown_franchise_or_store_is_a_404(self, api: Api) -> None:
        admin = await api.admin()
        franchise = await api.franchise(admin)
        other = await api.franchise(admin)
        elsewhere = await api.store(admin, other["id"])

        no_franchise = await api.client.post(
            "/api/franchise/424242/store", headers=admin.headers, json={"name": "x"}
        )
        no_store = await api.client.delete(
            f"/api/franchise/{franchise['id']}/store/424242", headers=admin.headers
        )
        wrong_franchise = await api.client.delete(
            f"/api/franchise/{franchise['id']}/store/{elsewhere['id']}", headers=admin.headers
        )

        assert no_franchise.status_code == 404
        assert no_franchise.json() == {"message": "unknown franchise"}
        assert no_store.status_code == wrong_franchise.status_code == 404
        assert no_store.json() == {"message": "unknown store"}

    async def test_a_new_store_never_shows_a_deleted_store_s_revenue(self, api: Api) -> None:
        shop = await api.shop()
        assert (await api.order(shop)).status_code == 200
        path = f"/api/franchise/{shop.franchise['id']}/store"
        await api.client.delete(f"{path}/{shop.store['id']}", headers=shop.admin.headers)

        await api.store(shop.admin, shop.franchise["id"], name="brand new")

        answer = await api.client.get("/api/franchise", headers=shop.admin.headers)
        [store] = answer.json()["franchises"][0]["stores"]
        assert store["totalRevenue"] == 0
