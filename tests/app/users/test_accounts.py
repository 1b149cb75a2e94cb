"""Accounts, where this service is deliberately stricter than the reference
(docs/http-api.md#differences-from-the-reference-service): no built-in admin (item 4),
one account per email (items 9 and 13), roles read on every request (item 11). One class
per item; each test fails on the reference's behaviour."""

from __future__ import annotations

import asyncio

import httpx

from app.models import Role
from tests.conftest import make_settings, running_api
from tests.utils.builders import Api
from tests.utils.users import drop_roles, set_role, sign_in


class TestItem04NoBuiltInAdmin:
    async def test_the_reference_s_default_admins_cannot_sign_in(self, api: Api) -> None:
        for email in ("a@jwt.com", "admin@jwt.com"):
            for password in ("admin", "a", "password", ""):
                assert (await sign_in(api, email, password)).status_code == 404

    async def test_its_email_is_free_and_gives_no_power(self, api: Api) -> None:
        squatter = await api.register(email="a@jwt.com", password="admin")

        assert squatter.roles == [{"role": "diner"}]
        assert (await api.client.get("/api/user", headers=squatter.headers)).status_code == 403

    async def test_the_first_admin_can_come_from_configuration(
        self, database_url: str, factory_url: str, factory: httpx.Client
    ) -> None:
        settings = make_settings(
            database_url, factory_url, admin_email="Boss@jwt.com", admin_password="s3cret pw"
        )
        async with running_api(settings) as api:
            answer = await sign_in(api, "boss@jwt.com", "s3cret pw")

        assert answer.status_code == 200
        assert {"role": "admin"} in answer.json()["user"]["roles"]


class TestItem09OneAccountPerEmail:
    async def test_the_same_email_in_any_case_is_a_409(self, api: Api) -> None:
        admin = await api.admin()
        first = await api.register(email="Dup@jwt.com")

        for email in ("Dup@jwt.com", "dup@jwt.com", "DUP@JWT.COM"):
            answer = await api.client.post(
                "/api/auth", json={"name": "twin", "email": email, "password": "other pw"}
            )
            assert answer.status_code == 409, email

        users = await api.client.get("/api/user?name=twin", headers=admin.headers)
        assert users.json()["users"] == []
        assert (await sign_in(api, "dup@jwt.com")).json()["user"]["id"] == first.id
        assert (await sign_in(api, "dup@jwt.com", "other pw")).status_code == 404


class TestItem13AnEmailInUseCannotBeTaken:
    """The reference let a user take the admin's email, then sign in as the admin."""

    async def test_changing_to_an_email_in_use_is_a_409(self, api: Api) -> None:
        admin = await api.admin()
        attacker = await api.register(email="attacker@jwt.com", password="attacker pw")

        for email in (admin.email, admin.email.upper()):
            answer = await api.client.put(
                f"/api/user/{attacker.id}", headers=attacker.headers, json={"email": email}
            )
            assert answer.status_code == 409
            assert answer.json() == {"message": "email already in use"}

        assert (await sign_in(api, admin.email, attacker.password)).status_code == 404
        me = await api.client.get("/api/user/me", headers=attacker.headers)
        assert me.json()["email"] == "attacker@jwt.com"
        assert (await sign_in(api, admin.email)).json()["user"]["id"] == admin.id


class TestItem11RolesAreReadOnEveryRequest:
    """The reference trusted the roles inside the token."""

    async def test_a_revoked_franchisee_is_refused_at_once_with_the_same_token(
        self, api: Api
    ) -> None:
        admin = await api.admin()
        owner = await api.register()
        franchise = await api.franchise(admin, admins=[owner.email])
        owner = await api.login(owner.email)  # roles as of now are in nothing but the DB
        path = f"/api/franchise/{franchise['id']}/store"
        assert (await api.client.post(path, headers=owner.headers, json={"name": "a"})).is_success

        await drop_roles(api, owner.id, Role.FRANCHISEE)

        answer = await api.client.post(path, headers=owner.headers, json={"name": "b"})
        assert answer.status_code == 403

    async def test_a_revoked_admin_is_refused_at_once(self, api: Api) -> None:
        admin = await api.admin()
        assert (await api.client.get("/api/user", headers=admin.headers)).status_code == 200

        await drop_roles(api, admin.id, Role.ADMIN)

        assert (await api.client.get("/api/user", headers=admin.headers)).status_code == 403
        me = await api.client.get("/api/user/me", headers=admin.headers)
        assert {"role": "admin"} not in me.json()["roles"]

    async def test_a_granted_role_works_at_once(self, api: Api) -> None:
        admin = await api.admin()
        franchise = await api.franchise(admin)
        diner = await api.register()
        path = f"/api/franchise/{franchise['id']}/store"
        assert (
            await api.client.post(path, headers=diner.headers, json={"name": "a"})
        ).status_code == 403

        await set_role(api, diner.id, Role.FRANCHISEE, franchise["id"])

        assert (await api.client.post(path, headers=diner.headers, json={"name": "a"})).is_success


class TestItem16TheLastAdminStays:
    """The reference let the last admin delete itself: nobody was left to manage the service."""

    async def test_deleting_the_last_admin_is_a_409_that_says_why(self, api: Api) -> None:
        admin = await api.admin()
        diner = await api.register()

        answer = await api.client.delete(f"/api/user/{admin.id}", headers=admin.headers)

        assert answer.status_code == 409, answer.text
        assert "last admin" in answer.json()["message"]
        assert (await api.client.get("/api/user", headers=admin.headers)).status_code == 200
        # Any other account, another admin's included, goes as before.
        assert (await api.client.delete(f"/api/user/{diner.id}", headers=admin.headers)).is_success
        second = await api.admin()
        assert (await api.client.delete(f"/api/user/{second.id}", headers=admin.headers)).is_success
        answer = await api.client.delete(f"/api/user/{admin.id}", headers=admin.headers)
        assert answer.status_code == 409

    async def test_the_last_two_deleted_at_once_leave_one(self, api: Api) -> None:
        survivor = await api.admin()
        for _ in range(5):
            other = await api.admin()  # with `survivor`, the only two admins
            answers = await asyncio.gather(
                api.client.delete(f"/api/user/{survivor.id}", headers=other.headers),
                api.client.delete(f"/api/user/{other.id}", headers=survivor.headers),
            )

            assert sorted(a.status_code for a in answers) == [200, 409], [a.text for a in answers]
            if answers[0].status_code == 200:
                survivor = other
            users = await api.client.get("/api/user?limit=100", headers=survivor.headers)
            admins = [u for u in users.json()["users"] if {"role": "admin"} in u["roles"]]
            assert [a["id"] for a in admins] == [survivor.id]
