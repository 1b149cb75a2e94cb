"""Users (docs/http-api.md#users): me, update, list, delete."""

from __future__ import annotations

import pytest

from tests.utils.builders import PASSWORD, Api, fast_password_hashing  # noqa: F401

pytestmark = pytest.mark.usefixtures("fast_password_hashing")


class TestMe:
    async def test_is_the_signed_in_user_without_any_secret(self, api: Api) -> None:
        diner = await api.register(name="me", email="me@jwt.com")

        answer = await api.client.get("/api/user/me", headers=diner.headers)

        assert answer.status_code == 200
        assert answer.json() == {
            "id": diner.id,
            "name": "me",
            "email": "me@jwt.com",
            "roles": [{"role": "diner"}],
        }

    async def test_a_franchisee_sees_the_franchise_in_its_roles(self, api: Api) -> None:
        admin = await api.admin()
        owner = await api.register()
        franchise = await api.franchise(admin, admins=[owner.email])

        answer = await api.client.get("/api/user/me", headers=owner.headers)

        assert {"role": "franchisee", "objectId": franchise["id"]} in answer.json()["roles"]

    async def test_needs_a_token(self, api: Api) -> None:
        answer = await api.client.get("/api/user/me")

        assert answer.status_code == 401
        assert answer.json() == {"message": "unauthorized"}


class TestUpdate:
    async def test_only_the_given_fields_change(self, api: Api) -> None:
        diner = await api.register(name="before", email="keep@jwt.com")

        answer = await api.client.put(
            f"/api/user/{diner.id}", headers=diner.headers, json={"name": "after"}
        )

        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert body["user"] == {
            "id": diner.id,
            "name": "after",
            "email": "keep@jwt.com",
            "roles": [{"role": "diner"}],
        }
        # Neither the email nor the password changed, and the session goes on.
        me = await api.client.get("/api/user/me", headers=diner.headers)
        assert me.json()["name"] == "after"
        assert body["token"] == diner.token
        await api.login("keep@jwt.com", PASSWORD)

    async def test_email_and_password_change(self, api: Api) -> None:
        diner = await api.register(email="old@jwt.com")

        answer = await api.client.put(
            f"/api/user/{diner.id}",
            headers=diner.headers,
            json={"email": "new@jwt.com", "password": "new secret"},
        )

        assert answer.status_code == 200, answer.text
        assert answer.json()["user"]["email"] == "new@jwt.com"
        await api.login("new@jwt.com", "new secret")
        old = await api.client.put("/api/auth", json={"email": "old@jwt.com", "password": PASSWORD})
        assert old.status_code == 404
        stale = await api.client.put(
            "/api/auth", json={"email": "new@jwt.com", "password": PASSWORD}
        )
        assert stale.status_code == 404

    async def test_an_admin_may_update_anyone(self, api: Api) -> None:
        admin = await api.admin()
        diner = await api.register(name="rude name")

        answer = await api.client.put(
            f"/api/user/{diner.id}", headers=admin.headers, json={"name": "polite name"}
        )

        assert answer.status_code == 200
        assert answer.json()["user"]["name"] == "polite name"
        # The admin's own session is what the answer carries.
        token = answer.json()["token"]
        me = await api.client.get("/api/user/me", headers={"Authorization": f"Bearer {token}"})
        assert me.json()["id"] == admin.id

    async def test_another_diner_is_refused(self, api: Api) -> None:
        victim = await api.register(name="victim")
        other = await api.register()

        answer = await api.client.put(
            f"/api/user/{victim.id}", headers=other.headers, json={"name": "hacked"}
        )

        assert answer.status_code == 403
        assert answer.json() == {"message": "unauthorized"}
        me = await api.client.get("/api/user/me", headers=victim.headers)
        assert me.json()["name"] == "victim"

    async def test_an_unknown_user_is_a_404(self, api: Api) -> None:
        admin = await api.admin()

        answer = await api.client.put(
            "/api/user/999999", headers=admin.headers, json={"name": "ghost"}
        )

        assert answer.status_code == 404
        assert answer.json() == {"message": "unknown user"}

    async def test_needs_a_token(self, api: Api) -> None:
        diner = await api.register()

        answer = await api.client.put(f"/api/user/{diner.id}", json={"name": "x"})

        assert answer.status_code == 401


class TestList:
    async def test_pages_with_more(self, api: Api) -> None:
        admin = await api.admin()
        diners = [await api.register(name=f"page diner {i}") for i in range(3)]

        first = await api.client.get("/api/user?page=0&limit=2", headers=admin.headers)
        second = await api.client.get("/api/user?page=1&limit=2", headers=admin.headers)

        assert first.status_code == second.status_code == 200
        assert first.json()["more"] is True
        assert second.json()["more"] is False
        listed = first.json()["users"] + second.json()["users"]
        assert [u["id"] for u in listed] == [admin.id] + [d.id for d in diners]
        assert listed[1] == {
            "id": diners[0].id,
            "name": "page diner 0",
            "email": diners[0].email,
            "roles": [{"role": "diner"}],
        }
        assert {"role": "admin"} in listed[0]["roles"]

    async def test_defaults_to_the_first_ten(self, api: Api) -> None:
        admin = await api.admin()
        for i in range(10):
            await api.register(name=f"crowd {i}")

        answer = await api.client.get("/api/user", headers=admin.headers)

        assert len(answer.json()["users"]) == 10
        assert answer.json()["more"] is True

    async def test_name_filter_with_wildcards(self, api: Api) -> None:
        admin = await api.admin()
        await api.register(name="Anna Pepperoni")
        await api.register(name="Bob Veggie")
        await api.register(name="Anna")

        async def names(pattern: str) -> list[str]:
            answer = await api.client.get(
                "/api/user", params={"name": pattern}, headers=admin.headers
            )
            assert answer.status_code == 200, answer.text
            return sorted(u["name"] for u in answer.json()["users"])

        assert await names("Anna*") == ["Anna", "Anna Pepperoni"]
        assert await names("*Veggie") == ["Bob Veggie"]
        assert await names("*pepper*") == ["Anna Pepperoni"]
        assert await names("Anna") == ["Anna"]
        assert await names("nobody*") == []

    async def test_is_for_admins_only(self, api: Api) -> None:
        diner = await api.register()

        refused = await api.client.get("/api/user", headers=diner.headers)
        anonymous = await api.client.get("/api/user")

        assert refused.status_code == 403
        assert refused.json() == {"message": "unauthorized"}
        assert anonymous.status_code == 401


class TestDelete:
    async def test_the_user_is_gone(self, api: Api) -> None:
        admin = await api.admin()
        diner = await api.register(name="leaving")

        answer = await api.client.delete(f"/api/user/{diner.id}", headers=admin.headers)

        assert answer.status_code == 200
        assert answer.json() == {"message": "user deleted"}
        listed = await api.client.get("/api/user?name=leaving", headers=admin.headers)
        assert listed.json()["users"] == []
        login = await api.client.put("/api/auth", json={"email": diner.email, "password": PASSWORD})
        assert login.status_code == 404
        # The email is free again.
        await api.register(email=diner.email)

    async def test_a_new_account_never_inherits_a_deleted_one_s_orders(self, api: Api) -> None:
        shop = await api.shop()
        assert (await api.order(shop)).status_code == 200
        await api.client.delete(f"/api/user/{shop.diner.id}", headers=shop.admin.headers)

        newcomer = await api.register()
        history = await api.client.get("/api/order", headers=newcomer.headers)

        assert history.json()["orders"] == []

    async def test_is_for_admins_only(self, api: Api) -> None:
        victim = await api.register()
        diner = await api.register()

        refused = await api.client.delete(f"/api/user/{victim.id}", headers=diner.headers)
        anonymous = await api.client.delete(f"/api/user/{victim.id}")

        assert refused.status_code == 403
        assert anonymous.status_code == 401
        assert (await api.client.get("/api/user/me", headers=victim.headers)).status_code == 200

    async def test_an_unknown_user_is_a_404(self, api: Api) -> None:
        admin = await api.admin()

        answer = await api.client.delete("/api/user/424242", headers=admin.headers)

        assert answer.status_code == 404
        assert answer.json() == {"message": "unknown user"}
